"""Secrets: values a pipedef gives to its tasks' containers, masked wherever output is reported.

The boss gives a pipedef the secrets its pipeline declares as a directory of files, one per
secret named after it, and passes ``--secrets-dir DIR``; from a laptop, pass a directory of your
own (each file mode 0600). :func:`secret` reads one; a pipeline masks the values of all of them in
its report.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import sys
from collections.abc import Iterable, Sequence

from .errors import ConfigError

__all__ = ["Masker", "Secret", "secret"]

REPLACEMENT = "***"
"""What a secret's value becomes in reported text."""

_NAME = re.compile(r"\A[A-Za-z0-9_.-]+\Z")
_HOW_TO_DECLARE = (
    "declare it on the boss with --secret NAME=FILE and --pipedef FILE,secrets=NAME "
    "(several: secrets=A+B), or run the pipedef with --secrets-dir DIR holding a file NAME"
)


class Secret:
    """A secret value, to be given to a task with ``secrets=``; made by :func:`secret`.

    Its ``repr`` and ``str`` name it and never show the value, so printing one, or an error
    that holds one, gives nothing away.

    Attributes:
        name: The secret's name, e.g. ``"deploy_key"``.
    """

    __slots__ = ("name", "_value")

    def __init__(self, name: str, value: str) -> None:
        """Wrap a value.

        Args:
            name: What to call it in messages.
            value: The value; not empty (an empty value cannot be masked).

        Raises:
            ValueError: The value is empty.
        """
        if not isinstance(value, str) or not value:
            raise ValueError(f"the secret {name!r} has no value: an empty secret cannot be masked")
        self.name: str = name
        self._value = value

    def __repr__(self) -> str:
        return f"Secret({self.name!r})"

    __str__ = __repr__

    def reveal(self) -> str:
        """The value itself, for code that must hand it on (the library sends it to the worker).

        Returns:
            The value.
        """
        return self._value


def _secrets_dir(argv: Sequence[str] | None) -> str | None:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--secrets-dir")
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return args.secrets_dir


def read_secrets_dir(path: str | None) -> dict[str, Secret]:
    """Read every secret of a secrets directory.

    Args:
        path: The directory, or None for no secrets.

    Returns:
        The secrets by name.

    Raises:
        ConfigError: The directory cannot be read, or a file in it is readable by group or
            others, is not text, or is empty.
    """
    if path is None:
        return {}
    try:
        names = sorted(os.listdir(path))
    except OSError as e:
        raise ConfigError(f"cannot read the secrets directory {path}: {e.strerror}: pass --secrets-dir DIR, a directory of secret files") from e
    found: dict[str, Secret] = {}
    for name in names:
        file = os.path.join(path, name)
        st = os.stat(file)
        if not _NAME.match(name) or not stat.S_ISREG(st.st_mode):
            continue
        found[name] = Secret(name, read_private_text(file, "secret file", "the secret, as text (base64 a binary one)"))
    return found


def read_private_text(path: str | os.PathLike[str], what: str, holds: str) -> str:
    """Read a file that holds a secret (a token, a key): its text without surrounding whitespace.

    Args:
        path: The file.
        what: What the file is, for messages, e.g. ``"token file"``.
        holds: What it must hold, for messages, e.g. ``"the worker's token"``.

    Returns:
        The text.

    Raises:
        ConfigError: The file cannot be read, is readable by group or others (a secret's file
            must have mode 0600 or stricter), is not UTF-8 text, or is empty.
    """
    where = os.fspath(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise ConfigError(f"cannot read the {what} {where}: {e.strerror}") from e
    if mode & 0o077:
        raise ConfigError(
            f"the {what} {where} is readable by group or others (mode {stat.S_IMODE(mode):04o}): run chmod 600 {where}"
        )
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except OSError as e:
        raise ConfigError(f"cannot read the {what} {where}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"the {what} {where} is not text: it must hold {holds}") from e
    if not text:
        raise ConfigError(f"the {what} {where} is empty: it must hold {holds}")
    return text


def secret(name: str, argv: Sequence[str] | None = None) -> Secret:
    """A secret of the pipeline, to give to a task: ``secrets={"/run/secrets/key": bt.secret("deploy_key")}``.

    Reads the file NAME of the directory ``--secrets-dir DIR`` names on the command line (the
    boss passes it; from a laptop pass your own, each file mode 0600). Surrounding whitespace of
    the file's text is not part of the value, as with a token file.

    Args:
        name: The secret's name.
        argv: The arguments to read ``--secrets-dir`` from; ``sys.argv[1:]`` by default.

    Returns:
        The secret.

    Raises:
        ConfigError: The pipeline has no secret of that name (the message lists those it has and
            says how to declare one), or its file cannot be used.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{name!r} cannot be a secret's name: use letters, digits, '_', '.' and '-'")
    path = _secrets_dir(argv)
    if path is None:
        raise ConfigError(f"the pipeline has no secrets, so none named {name!r}: {_HOW_TO_DECLARE}")
    secrets = read_secrets_dir(path)
    if name not in secrets:
        has = ", ".join(sorted(secrets)) or "none"
        raise ConfigError(f"the pipeline has no secret named {name!r} (it has: {has}): {_HOW_TO_DECLARE}")
    return secrets[name]


class Masker:
    """Replaces every secret value in text with ``***``, at once or stream by stream.

    Every character that belongs to an occurrence of any value is hidden; occurrences that
    overlap are one ``***``. A stream (:meth:`stream`) gives exactly what :meth:`mask` gives for
    the whole text, however the text comes in chunks: it holds back the end of a chunk that may
    be the start of a value until the next chunk shows whether it is. The Go masker of the worker
    and the boss (internal/mask) does the same.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        """Set up a masker.

        Args:
            values: The values to hide; empty ones are ignored.
        """
        self._values: list[str] = []
        for v in values:
            self.add(v)

    def add(self, value: str) -> None:
        """Hide one more value from now on, also in the streams made already.

        Args:
            value: The value; an empty one is ignored.
        """
        if value and value not in self._values:
            self._values.append(value)

    def __bool__(self) -> bool:
        return bool(self._values)

    def mask(self, text: str) -> str:
        """The text with every value hidden.

        Args:
            text: Any text.

        Returns:
            The masked text.
        """
        return self._replace(text, self._stretches(text), len(text)) if self._values else text

    def stream(self) -> MaskStream:
        """A stream of text (one task's stdout, say) to mask chunk by chunk.

        Returns:
            The stream.
        """
        return MaskStream(self)

    def _stretches(self, text: str) -> list[list[int]]:
        occurrences = []
        for v in self._values:
            i = text.find(v)
            while i >= 0:
                occurrences.append([i, i + len(v)])
                i = text.find(v, i + 1)
        occurrences.sort()
        merged: list[list[int]] = []
        for start, end in occurrences:
            if merged and start < merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        return merged

    def _open_prefix(self, text: str) -> int:
        longest = 0
        for v in self._values:
            for i in range(max(len(text) - len(v) + 1, 0), len(text) - longest):
                if v.startswith(text[i:]):
                    longest = len(text) - i
                    break
        return longest

    @staticmethod
    def _replace(text: str, stretches: list[list[int]], end: int) -> str:
        parts, at = [], 0
        for start, stop in stretches:
            if start >= end:
                break
            parts.append(text[at:start])
            parts.append(REPLACEMENT)
            at = min(stop, end)
        parts.append(text[at:end])
        return "".join(parts)


class MaskStream:
    """One stream of text being masked; made by :meth:`Masker.stream`."""

    def __init__(self, masker: Masker) -> None:
        self._masker = masker
        self._held = ""

    def write(self, chunk: str) -> str:
        """Add a chunk.

        Args:
            chunk: The next text of the stream.

        Returns:
            What can be shown now, masked (maybe ""); the rest waits for the next chunk or :meth:`flush`.
        """
        m = self._masker
        if not m:
            return chunk
        text = self._held + chunk
        stretches = m._stretches(text)
        cut = len(text) - m._open_prefix(text)
        for start, stop in stretches:  # a stretch over the cut may still grow
            if start < cut < stop:
                cut = start
        self._held = text[cut:]
        return m._replace(text, stretches, cut)

    def flush(self) -> str:
        """End the stream.

        Returns:
            What it held back, masked.
        """
        text, self._held = self._held, ""
        return self._masker.mask(text)
