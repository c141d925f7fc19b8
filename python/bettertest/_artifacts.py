"""Artifacts: the canonical tar archive of a file or directory, and unpacking one safely.

An artifact is a tar archive with one top-level entry named ``artifact``: the file itself, or the
directory with everything under ``artifact/...``. It is named by its sha256 (``sha256:HEX``).
Packing is deterministic, so the same files always give the same id, whoever owns them, whenever
they were written and whatever the umask was:

- entries depth first, the children of a directory sorted by name (bytewise, as the path
  components compare), so ``a/b`` comes before ``a.txt``;
- owner 0:0 with empty user and group names, mtime 0;
- mode 0755 for directories and for files with any execute bit, 0644 for other files;
- symlinks stay symlinks (their target as it is), files are always whole regular entries (never
  hard links to an earlier entry);
- POSIX pax format, UTF-8 names.

Anything else (a fifo, a device, a socket) is refused, naming its path.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import tarfile
from dataclasses import dataclass
from collections.abc import Callable
from typing import BinaryIO

from .errors import ArtifactError

__all__ = ["Artifact", "Packed", "pack", "unpack", "artifact_hex"]

_TOP = "artifact"
_COPY_SIZE = 1 << 20


@dataclass(frozen=True)
class Artifact:
    """An output of a build, stored on the worker.

    Attributes:
        path: The container path it was packed from, e.g. ``"/out"``.
        id: Its content's name, ``"sha256:HEX"``.
        size: Bytes of the archive.
    """

    path: str
    id: str
    size: int


@dataclass(frozen=True)
class Packed:
    """A canonical archive written by :func:`pack`.

    Attributes:
        id: ``"sha256:HEX"`` of the archive's bytes.
        size: Bytes of the archive.
    """

    id: str
    size: int


def artifact_hex(artifact_id: str) -> str:
    """The hex digest of an artifact id, as it appears in the worker's URLs.

    Args:
        artifact_id: ``"sha256:"`` followed by 64 lowercase hex digits.

    Returns:
        The 64 hex digits.

    Raises:
        ValueError: The id does not have that form.
    """
    prefix, _, digest = artifact_id.partition(":")
    if prefix != "sha256" or len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
        raise ValueError(f"{artifact_id!r} is not an artifact id: it must be sha256: and 64 lowercase hex digits")
    return digest


class _HashingWriter:
    """A write-only file that hashes and counts what passes through it on its way to another."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self._out.write(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def pack(
    source: str | os.PathLike[str], out: BinaryIO, *, skip: Callable[[str, bool], bool] | None = None
) -> Packed:
    """Write the canonical archive of a file or directory, hashing it on the way.

    A symlink given as ``source`` itself is followed (you named what it points to); symlinks
    inside a directory are archived as symlinks.

    Args:
        source: The file or directory to pack.
        out: Where the archive's bytes go, e.g. a temporary file opened for writing.
        skip: Called with each path inside a directory ``source`` (relative, ``/``-separated)
            and whether it is a directory; what it says True of is left out, a directory with all
            it holds (see :class:`bettertest.SourceFilter`).

    Returns:
        The archive's id and size.

    Raises:
        ArtifactError: ``source`` does not exist or cannot be read, or holds something other than
            files, directories and symlinks.
    """
    root = os.fspath(source)
    try:
        root_stat = os.stat(root)
    except FileNotFoundError as e:
        raise ArtifactError(f"{root} does not exist") from e
    except OSError as e:
        raise ArtifactError(f"cannot read {root}: {e.strerror}") from e
    writer = _HashingWriter(out)
    path = root
    try:
        with tarfile.open(fileobj=writer, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
            tar.copybufsize = _COPY_SIZE
            # An explicit stack rather than recursion: trees may be deeper than Python's recursion limit.
            stack: list[tuple[str, str, os.stat_result]] = [(root, _TOP, root_stat)]
            while stack:
                path, name, st = stack.pop()
                if stat.S_ISDIR(st.st_mode):
                    info = _info(name)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
                    with os.scandir(path) as it:
                        children = sorted(it, key=lambda entry: os.fsencode(entry.name), reverse=True)
                    for child in children:
                        child_stat = child.stat(follow_symlinks=False)
                        rel = f"{name}/{child.name}"[len(_TOP) + 1 :]
                        if skip is None or not skip(rel, stat.S_ISDIR(child_stat.st_mode)):
                            stack.append((child.path, f"{name}/{child.name}", child_stat))
                elif stat.S_ISREG(st.st_mode):
                    info = _info(name)
                    info.mode = 0o755 if st.st_mode & 0o111 else 0o644
                    info.size = st.st_size
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                elif stat.S_ISLNK(st.st_mode):
                    info = _info(name)
                    info.type = tarfile.SYMTYPE
                    info.mode = 0o777
                    info.linkname = os.readlink(path)
                    tar.addfile(info)
                else:
                    raise ArtifactError(
                        f"cannot pack {path}: it is a {_kind(st.st_mode)}; an artifact holds only files, "
                        "directories and symlinks"
                    )
    except ArtifactError:
        raise
    except OSError as e:
        # tarfile reports a file that shrank while it was read as a bare OSError without a strerror.
        raise ArtifactError(f"cannot pack {path}: {e.strerror or e}") from e
    except UnicodeEncodeError as e:
        raise ArtifactError(f"cannot pack {path}: its name is not valid UTF-8") from e
    return Packed(f"sha256:{writer.hexdigest()}", writer.size)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    return "special file"


def unpack(archive: str | os.PathLike[str], dest: str | os.PathLike[str], path: str) -> None:
    """Unpack an artifact so that its top-level ``artifact`` entry lands at ``dest/path``.

    ``unpack(a, "build", "/out")`` puts the archive of ``/out`` at ``build/out``. The archive goes
    through tarfile's ``data`` filter: nothing is written outside ``dest`` (no absolute names, no
    ``..``, no hard links pointing out, nothing written through a symlink), and no device or fifo
    is made. Symlinks are kept as they are, wherever they point (``lib.so -> /usr/lib/...``).
    Existing files are replaced.

    Args:
        archive: The archive file.
        dest: The local directory to unpack under; made when missing.
        path: The container path the artifact was packed from (absolute); its place under dest.

    Returns:
        None.

    Raises:
        ArtifactError: The archive cannot be read, has an entry outside ``artifact``, or would write
            outside ``dest``.
    """
    target = posixpath.normpath(path).strip("/")
    if not path.startswith("/") or target.startswith(".."):
        raise ValueError(f"the path {path!r} must be an absolute container path, e.g. '/out'")
    dest = os.fspath(dest)
    try:
        with tarfile.open(archive, mode="r:") as tar:
            members = []
            for member in tar:
                member.name = _relocate(member.name, target, archive)
                if member.islnk():
                    member.linkname = _relocate(member.linkname, target, archive)
                if member.name:
                    members.append(member)
            tar.extractall(dest, members=members, filter=_filter)
    except tarfile.FilterError as e:
        raise ArtifactError(f"refused to unpack the artifact of {path} into {dest}: {e}") from e
    except tarfile.TarError as e:
        raise ArtifactError(f"the artifact of {path} is not a readable tar archive: {e}") from e
    except OSError as e:
        raise ArtifactError(f"cannot unpack the artifact of {path} into {dest}: {e.strerror or e}") from e


def _filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """tarfile's ``data`` filter, except that a symlink may point anywhere.

    Outputs hold links like ``lib.so -> /usr/lib/x86_64-linux-gnu/libz.so.1``, which ``data``
    refuses. A link is only dangerous when something is written through it; the filter still
    refuses every entry whose own path resolves outside ``dest`` (it resolves the links already
    unpacked), so nothing is.
    """
    if not member.issym():
        return tarfile.data_filter(member, dest)
    return tarfile.data_filter(member.replace(linkname=".", deep=False), dest).replace(linkname=member.linkname, deep=False)


def _relocate(name: str, target: str, archive: str | os.PathLike[str]) -> str:
    name = name.rstrip("/")
    if name == _TOP:
        return target
    if name.startswith(_TOP + "/"):
        rest = name[len(_TOP) + 1:]
        return f"{target}/{rest}" if target else rest
    raise ArtifactError(
        f"the archive {os.fspath(archive)} holds {name!r}, outside its top-level entry {_TOP!r}: it is not an artifact"
    )
