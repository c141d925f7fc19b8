"""bettertest: the client library for pipedefs.

A pipedef is a plain Python script that runs commands in containers on a bettertest worker::

    import sys
    import bettertest

    worker = bettertest.connect()  # reads --worker URL --token-file PATH
    result = worker.run("bettertest/base:bookworm", "make test")
    sys.exit(result.exit_code)
"""

from ._connect import connect
from ._sse import SSEEvent, parse_sse
from ._worker import OutputHandler, Result, Worker, read_token_file
from .errors import AuthError, BettertestError, ConfigError, RunError, WorkerUnreachable

__all__ = [
    "AuthError",
    "BettertestError",
    "ConfigError",
    "OutputHandler",
    "Result",
    "RunError",
    "SSEEvent",
    "Worker",
    "WorkerUnreachable",
    "connect",
    "parse_sse",
    "read_token_file",
]

__version__ = "0.1.0"
