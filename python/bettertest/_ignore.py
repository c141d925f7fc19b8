"""Which files of a local source stay out of its archive: ``.git``, what ``.gitignore`` files say,
and the patterns a pipedef gives (``bt.local(".", exclude=[...])``).

The patterns have gitignore's meaning (git-scm.com/docs/gitignore): ``#`` starts a comment, ``!``
re-includes, a trailing ``/`` matches directories only, a pattern with a ``/`` before its end is
relative to its file's directory and otherwise matches a name at any depth, ``*`` and ``?`` stay
within a path segment, ``**`` spans them, ``[a-z]`` is a set. The last pattern that matches
decides; a deeper ``.gitignore`` decides over the ones above it, and ``exclude`` over them all.
Git itself is not asked: a pipedef's sandbox may not reach the repository a worktree points to.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["SourceFilter"]


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool


def _compile(line: str) -> _Pattern | None:
    line = line.rstrip("\n").rstrip("\r")
    if not line.endswith("\\ "):
        line = line.rstrip(" ")
    if not line or line.startswith("#"):
        return None
    negate = line.startswith("!")
    if negate:
        line = line[1:]
    elif line.startswith("\\!") or line.startswith("\\#"):
        line = line[1:]
    dir_only = line.endswith("/")
    line = line.rstrip("/")
    if not line:
        return None
    anchored = "/" in line
    line = line.lstrip("/")
    out = [] if anchored else ["(?:.*/)?"]
    i = 0
    while i < len(line):
        c = line[i]
        if line.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif line.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = line.find("]", i + 2)
            if end < 0:
                out.append(re.escape(c))
                i += 1
                continue
            body = line[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        elif c == "\\" and i + 1 < len(line):
            out.append(re.escape(line[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return _Pattern(re.compile("".join(out) + r"\Z", re.DOTALL), negate, dir_only)


def _patterns(lines: Sequence[str]) -> list[_Pattern]:
    return [p for p in (_compile(line) for line in lines) if p is not None]


class SourceFilter:
    """Says which paths under a root stay out of its archive.

    Args:
        root: The directory being packed.
        exclude: More patterns, relative to ``root``, with gitignore's meaning.
    """

    def __init__(self, root: str, exclude: Sequence[str] = ()) -> None:
        self._root = root
        self._exclude = _patterns(exclude)
        self._files: dict[str, list[_Pattern]] = {}

    def _gitignore(self, directory: str) -> list[_Pattern]:
        """The patterns of ``directory``'s .gitignore (``""`` is the root), read once."""
        if directory not in self._files:
            path = os.path.join(self._root, directory, ".gitignore")
            try:
                with open(path, encoding="utf-8", errors="surrogateescape") as f:
                    self._files[directory] = _patterns(f.read().split("\n"))
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                self._files[directory] = []
        return self._files[directory]

    def skip(self, path: str, is_dir: bool) -> bool:
        """Whether ``path`` (relative to the root, ``/``-separated) stays out."""
        parts = path.split("/")
        if parts[-1] == ".git":
            return True  # a repository's own data, or a worktree's pointer to it: never source
        skipped = False
        for depth in range(len(parts)):
            base = "/".join(parts[:depth])
            rel = "/".join(parts[depth:])
            for p in self._gitignore(base):
                if (is_dir or not p.dir_only) and p.regex.match(rel):
                    skipped = not p.negate
        for p in self._exclude:
            if (is_dir or not p.dir_only) and p.regex.match(path):
                skipped = not p.negate
        return skipped
