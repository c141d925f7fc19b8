"""Command-line entry point for pipedefs: build a Worker from --worker and --token-file."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from ._worker import Worker
from .errors import ConfigError

__all__ = ["connect"]


def connect(argv: Sequence[str] | None = None) -> Worker:
    """Make a Worker from the pipedef's command line.

    Reads ``--worker URL`` and ``--token-file PATH`` (also as ``--worker=URL``) and leaves every
    other argument alone, so a pipedef can parse its own. The same pipedef then runs from a
    laptop (``python3 ci.py --worker URL --token-file F``) or from the boss.

    Args:
        argv: The arguments to read; ``sys.argv[1:]`` by default.

    Returns:
        A Worker for that URL and token. Nothing is sent to the worker yet.

    Raises:
        SystemExit: With status 2 and a usage message on stderr when a flag is missing, or the URL
            or token file cannot be used. Like argparse, which also exits this way on a
            malformed flag, so every command-line mistake ends the same way.
    """
    worker, _ = parse_command_line(argv)
    return worker


def parse_command_line(
    argv: Sequence[str] | None, add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
) -> tuple[Worker, argparse.Namespace]:
    """Read ``--worker`` and ``--token-file``, and the caller's own flags, from a command line.

    Args:
        argv: The arguments to read; ``sys.argv[1:]`` when None. Unknown arguments are left alone.
        add_arguments: Adds more flags to the parser (e.g. ``--report``); their values come back
            in the namespace.

    Returns:
        The Worker and the parsed namespace.

    Raises:
        SystemExit: With status 2 and a usage message on stderr, as :func:`connect` describes.
    """
    parser = argparse.ArgumentParser(
        prog=os.path.basename(sys.argv[0]) or "pipedef",
        add_help=False,
        allow_abbrev=False,
    )
    parser.add_argument("--worker", metavar="URL", help="the worker's URL, e.g. http://host:9009, or unix:/PATH")
    parser.add_argument("--token-file", metavar="PATH", help="a file holding the worker's token")
    if add_arguments is not None:
        add_arguments(parser)
    args, _ = parser.parse_known_args(argv)
    if args.worker is None:
        parser.error("--worker is required: pass the worker URL, e.g. --worker http://host:9009")
    unix = args.worker.startswith("unix:")
    if unix and args.token_file is not None:
        parser.error("--token-file goes with an http(s) --worker URL: a unix: socket adds the credential itself")
    if not unix and args.token_file is None:
        parser.error("--token-file is required: pass the path of a file holding the worker's token")
    try:
        if unix:
            return Worker(args.worker), args
        return Worker(args.worker, token_file=args.token_file), args
    except ConfigError as e:
        parser.error(str(e))
