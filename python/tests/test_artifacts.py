"""Artifacts: canonical packing and safe unpacking (no worker), then upload, download and dedupe
against a real worker process."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import stat
import tarfile
import tempfile
import unittest
from pathlib import Path

import bettertest
from bettertest import ArtifactError, AuthError, RunError, Worker, pack, unpack
from tests.workerproc import IMAGE, WorkerProcess, require_binary


def packed(path: str | os.PathLike[str]) -> tuple[bettertest.Packed, bytes]:
    out = io.BytesIO()
    result = pack(path, out)
    return result, out.getvalue()


def members(data: bytes) -> list[tuple[str, str, int, int, int, str, str, int, str]]:
    """Every header field that packing fixes, per entry, in archive order."""
    kinds = {tarfile.REGTYPE: "file", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink"}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return [
            (m.name, kinds.get(m.type, repr(m.type)), m.mode, m.uid, m.gid, m.uname, m.gname, m.mtime, m.linkname)
            for m in tar.getmembers()
        ]


def write(path: Path, content: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.chmod(path, mode)


def tree_listing(root: Path) -> list[tuple[str, str, int, bytes]]:
    """(relative path, kind, permission bits, content or link target) for everything under root."""
    listing = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath, name)
            st = p.lstat()
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                listing.append((rel, "symlink", 0, os.readlink(p).encode()))
            elif stat.S_ISDIR(st.st_mode):
                listing.append((rel, "dir", stat.S_IMODE(st.st_mode), b""))
            else:
                listing.append((rel, "file", stat.S_IMODE(st.st_mode), p.read_bytes()))
    return sorted(listing)


class TempDirTest(unittest.TestCase):
    maxDiff = None

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = Path(tmp.name)

    def make_tree(self, root: Path, *, file_mode: int = 0o644, exec_mode: int = 0o755) -> Path:
        write(root / "b.txt", b"bee\n", file_mode)
        write(root / "a" / "z", b"zed", file_mode)
        write(root / "a" / "run", b"#!/bin/sh\necho hi\n", exec_mode)
        write(root / "a.txt", b"", file_mode)
        (root / "empty").mkdir()
        os.symlink("../b.txt", root / "a" / "link")
        os.symlink("/nowhere/at/all", root / "dangling")
        return root


class PackTest(TempDirTest):
    def test_canonical_entries(self) -> None:
        result, data = packed(self.make_tree(self.dir / "src"))
        self.assertEqual(
            members(data),
            [
                ("artifact", "dir", 0o755, 0, 0, "", "", 0, ""),
                # Depth first, children by name: "a/..." before "a.txt".
                ("artifact/a", "dir", 0o755, 0, 0, "", "", 0, ""),
                ("artifact/a/link", "symlink", 0o777, 0, 0, "", "", 0, "../b.txt"),
                ("artifact/a/run", "file", 0o755, 0, 0, "", "", 0, ""),
                ("artifact/a/z", "file", 0o644, 0, 0, "", "", 0, ""),
                ("artifact/a.txt", "file", 0o644, 0, 0, "", "", 0, ""),
                ("artifact/b.txt", "file", 0o644, 0, 0, "", "", 0, ""),
                ("artifact/dangling", "symlink", 0o777, 0, 0, "", "", 0, "/nowhere/at/all"),
                ("artifact/empty", "dir", 0o755, 0, 0, "", "", 0, ""),
            ],
        )
        self.assertEqual(result, bettertest.Packed("sha256:" + hashlib.sha256(data).hexdigest(), len(data)))
        # Pinned: a change of the format changes every id, and with them every cache key.
        self.assertEqual(result.id, "sha256:a654f13ddeae9c56a8ff4a14755d216a96459c0b71fe5b954ecacb79a17cf1bc")

    def test_same_files_same_id(self) -> None:
        first = self.make_tree(self.dir / "first")
        # The same files written later, by another owner, with other permission bits and umask.
        old_umask = os.umask(0o077)
        try:
            second = self.make_tree(self.dir / "second", file_mode=0o600, exec_mode=0o700)
        finally:
            os.umask(old_umask)
        for dirpath, dirnames, filenames in os.walk(second):
            for name in [*dirnames, *filenames]:
                os.lchown(os.path.join(dirpath, name), 1234, 5678)
                if not os.path.islink(os.path.join(dirpath, name)):
                    os.utime(os.path.join(dirpath, name), (1_000_000_000, 1_000_000_000))
        self.assertEqual(packed(first), packed(first))
        self.assertEqual(packed(first), packed(second))

    def test_contents_change_the_id(self) -> None:
        root = self.make_tree(self.dir / "src")
        before, _ = packed(root)
        write(root / "a" / "z", b"zee")
        after, _ = packed(root)
        os.chmod(root / "a" / "z", 0o744)
        executable, _ = packed(root)
        self.assertEqual(len({before.id, after.id, executable.id}), 3)

    def test_a_file(self) -> None:
        write(self.dir / "tool", b"\x7fELF", 0o750)
        result, data = packed(self.dir / "tool")
        self.assertEqual(members(data), [("artifact", "file", 0o755, 0, 0, "", "", 0, "")])
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            f = tar.extractfile("artifact")
            assert f is not None
            self.assertEqual(f.read(), b"\x7fELF")

    def test_hard_links_are_whole_files(self) -> None:
        write(self.dir / "src" / "one", b"same inode")
        os.link(self.dir / "src" / "one", self.dir / "src" / "two")
        _, data = packed(self.dir / "src")
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            self.assertEqual(
                [(m.name, m.isreg(), m.size) for m in tar.getmembers()],
                [("artifact", False, 0), ("artifact/one", True, 10), ("artifact/two", True, 10)],
            )

    def test_a_symlink_named_itself_is_followed(self) -> None:
        root = self.make_tree(self.dir / "src")
        os.symlink(root, self.dir / "current")
        self.assertEqual(packed(self.dir / "current"), packed(root))

    def test_long_and_unicode_names(self) -> None:
        long_name = "x" * 150
        write(self.dir / "src" / long_name / "ünïcödé", b"1")
        _, data = packed(self.dir / "src")
        self.assertEqual(
            [m[0] for m in members(data)],
            ["artifact", f"artifact/{long_name}", f"artifact/{long_name}/ünïcödé"],
        )

    def test_deeper_than_the_recursion_limit(self) -> None:
        deep = self.dir / "src"
        # os.makedirs and shutil.rmtree recurse too, so one level at a time.
        levels = [str(deep) + "/d" * i for i in range(1101)]
        for level in levels:
            os.mkdir(level)
        self.addCleanup(lambda: [os.rmdir(level) for level in reversed(levels)])
        _, data = packed(deep)
        self.assertEqual(len(members(data)), 1101)
        self.assertEqual(members(data)[-1][0], "artifact" + "/d" * 1100)

    def test_missing(self) -> None:
        with self.assertRaises(ArtifactError) as cm:
            pack(self.dir / "nope", io.BytesIO())
        self.assertEqual(str(cm.exception), f"{self.dir}/nope does not exist")

    def test_fifo_is_refused(self) -> None:
        (self.dir / "src").mkdir()
        os.mkfifo(self.dir / "src" / "pipe")
        with self.assertRaises(ArtifactError) as cm:
            pack(self.dir / "src", io.BytesIO())
        self.assertEqual(
            str(cm.exception),
            f"cannot pack {self.dir}/src/pipe: it is a fifo; an artifact holds only files, directories and symlinks",
        )

    def test_socket_is_refused(self) -> None:
        (self.dir / "src").mkdir()
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(self.dir / "src" / "sock"))
            with self.assertRaises(ArtifactError) as cm:
                pack(self.dir / "src", io.BytesIO())
        self.assertEqual(
            str(cm.exception),
            f"cannot pack {self.dir}/src/sock: it is a socket; an artifact holds only files, directories and symlinks",
        )


class UnpackTest(TempDirTest):
    def archive(self, data: bytes) -> Path:
        path = self.dir / "a.tar"
        path.write_bytes(data)
        return path

    def test_round_trip(self) -> None:
        src = self.make_tree(self.dir / "src")
        _, data = packed(src)
        unpack(self.archive(data), self.dir / "dest", "/out")
        self.assertEqual(tree_listing(self.dir / "dest" / "out"), tree_listing(src))
        self.assertEqual(os.listdir(self.dir / "dest"), ["out"])

    def test_a_file_lands_at_its_path(self) -> None:
        write(self.dir / "tool", b"#!/bin/sh\n", 0o755)
        _, data = packed(self.dir / "tool")
        unpack(self.archive(data), self.dir / "dest", "/usr/bin/tool")
        self.assertEqual(tree_listing(self.dir / "dest"), [
            ("usr", "dir", 0o755, b""),
            ("usr/bin", "dir", 0o755, b""),
            ("usr/bin/tool", "file", 0o755, b"#!/bin/sh\n"),
        ])

    def tar_of(self, *infos: tuple[tarfile.TarInfo, bytes]) -> Path:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as tar:
            for info, content in infos:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        return self.archive(out.getvalue())

    def test_hard_links_are_relocated(self) -> None:
        top = tarfile.TarInfo("artifact/")
        top.type = tarfile.DIRTYPE
        link = tarfile.TarInfo("artifact/two")
        link.type = tarfile.LNKTYPE
        link.linkname = "artifact/one"
        unpack(self.tar_of((top, b""), (tarfile.TarInfo("artifact/one"), b"1"), (link, b"")), self.dir / "dest", "/out")
        self.assertEqual(os.stat(self.dir / "dest/out/one").st_ino, os.stat(self.dir / "dest/out/two").st_ino)

    def test_entry_outside_artifact(self) -> None:
        archive = self.tar_of((tarfile.TarInfo("etc/passwd"), b"x"))
        with self.assertRaises(ArtifactError) as cm:
            unpack(archive, self.dir / "dest", "/out")
        self.assertEqual(
            str(cm.exception),
            f"the archive {archive} holds 'etc/passwd', outside its top-level entry 'artifact': it is not an artifact",
        )

    def test_escapes_are_refused(self) -> None:
        def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = target
            return info

        top = tarfile.TarInfo("artifact")
        top.type = tarfile.DIRTYPE
        cases = [
            ([tarfile.TarInfo("artifact/../../escaped")],
             f"'out/../../escaped' would be extracted to '{self.dir}/escaped', which is outside the destination"),
            # Symlinks may point anywhere, but nothing is written through them.
            ([link("artifact/up", "../.."), tarfile.TarInfo("artifact/up/escaped")],
             f"'out/up/escaped' would be extracted to '{self.dir}/escaped', which is outside the destination"),
            ([link("artifact/tmp", str(self.dir)), tarfile.TarInfo("artifact/tmp/escaped")],
             f"'out/tmp/escaped' would be extracted to '{self.dir}/escaped', which is outside the destination"),
            ([tarfile.TarInfo("artifact/x"), link("artifact/hard", "artifact/../../escaped", tarfile.LNKTYPE)],
             f"'out/hard' would link to '{self.dir}/escaped', which is outside the destination"),
        ]
        (self.dir / "escaped").write_bytes(b"outside")
        for entries, message in cases:
            with self.subTest(entries=[e.name for e in entries]):
                with self.assertRaises(ArtifactError) as cm:
                    unpack(self.tar_of((top, b""), *((e, b"x" if e.isreg() else b"") for e in entries)), self.dir / "dest", "/out")
                self.assertEqual(str(cm.exception), f"refused to unpack the artifact of /out into {self.dir}/dest: {message}")
                self.assertEqual((self.dir / "escaped").read_bytes(), b"outside")
                shutil.rmtree(self.dir / "dest")

    def test_symlinks_may_point_anywhere(self) -> None:
        src = self.dir / "src"
        src.mkdir()
        os.symlink("/usr/lib/libz.so.1", src / "libz.so")
        os.symlink("../../..", src / "up")
        _, data = packed(src)
        unpack(self.archive(data), self.dir / "dest", "/out")
        self.assertEqual(
            (os.readlink(self.dir / "dest/out/libz.so"), os.readlink(self.dir / "dest/out/up")),
            ("/usr/lib/libz.so.1", "../../.."),
        )

    def test_not_a_tar(self) -> None:
        with self.assertRaises(ArtifactError) as cm:
            unpack(self.archive(b"hello" * 200), self.dir / "dest", "/out")
        self.assertEqual(str(cm.exception), "the artifact of /out is not a readable tar archive: invalid header")


class WorkerArtifactsTest(TempDirTest):
    proc: WorkerProcess
    worker: Worker

    @classmethod
    def setUpClass(cls) -> None:
        require_binary()
        cls.proc = WorkerProcess("--cache-size", "64MiB")
        cls.worker = Worker(cls.proc.url, token_file=cls.proc.token_file)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.proc.stop()

    def random_file(self, name: str, size: int) -> Path:
        path = self.dir / name
        with open(path, "wb") as f:
            f.write(os.urandom(size))
        return path

    def test_upload_local_sends_content_once(self) -> None:
        src = self.make_tree(self.dir / "src")
        write(src / "random", os.urandom(3_000_000))
        expected, data = packed(src)
        self.assertFalse(self.worker.has_artifact(expected.id))
        first = self.worker.upload_local(src)
        self.assertEqual(first, bettertest.Upload(expected.id, expected.size, expected.size))
        self.assertTrue(self.worker.has_artifact(expected.id))
        # The same content again, from a copy: the worker has it, so no content moves.
        shutil.copytree(src, self.dir / "copy", symlinks=True)
        self.assertEqual(self.worker.upload_local(self.dir / "copy"), bettertest.Upload(expected.id, expected.size, 0))
        # Sent anyway, the worker keeps what it has and says so.
        archive = self.dir / "a.tar"
        archive.write_bytes(data)
        self.assertFalse(self.worker.upload_artifact(archive, expected.id))

    def test_download_is_byte_for_byte(self) -> None:
        self.random_file("big", 20_000_001)
        archive = self.dir / "big.tar"
        with open(archive, "wb") as f:
            digest = pack(self.dir / "big", f).id
        self.assertTrue(self.worker.upload_artifact(archive, digest))
        size = self.worker.download_artifact(digest, self.dir / "back.tar")
        self.assertEqual(size, archive.stat().st_size)
        self.assertEqual((self.dir / "back.tar").read_bytes(), archive.read_bytes())
        self.assertEqual(sorted(os.listdir(self.dir)), ["back.tar", "big", "big.tar"])

    def test_wrong_digest_is_refused(self) -> None:
        archive = self.random_file("a.tar", 100_000)
        wrong = "sha256:" + "0" * 64
        with self.assertRaises(ArtifactError) as cm:
            self.worker.upload_artifact(archive, wrong)
        actual = hashlib.sha256(archive.read_bytes()).hexdigest()
        self.assertEqual(
            str(cm.exception),
            f"the worker at {self.proc.url} refused the upload of the artifact {wrong} (HTTP 400): artifact {wrong} was "
            f"not stored: digest mismatch: the content's sha256 is {actual}, not {'0' * 64}: the upload was damaged, "
            "or the URL names another artifact",
        )
        self.assertFalse(self.worker.has_artifact(wrong))
        self.assertFalse(self.worker.has_artifact("sha256:" + actual))

    def test_larger_than_the_cache(self) -> None:
        archive = self.random_file("a.tar", 65 * 1024 * 1024)
        digest = "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest()
        with self.assertRaises(ArtifactError) as cm:
            self.worker.upload_artifact(archive, digest)
        self.assertEqual(
            str(cm.exception),
            f"the worker at {self.proc.url} refused the upload of the artifact {digest} (HTTP 413): "
            "the artifact is 68157440 bytes, more than this worker's --cache-size of 67108864 bytes: raise --cache-size",
        )

    def test_missing_artifact(self) -> None:
        missing = "sha256:" + "1" * 64
        with self.assertRaises(ArtifactError) as cm:
            self.worker.download_artifact(missing, self.dir / "x.tar")
        self.assertEqual(
            str(cm.exception),
            f"the worker at {self.proc.url} does not have the artifact {missing}: it was never stored there or was "
            "evicted from its cache; run the build again",
        )
        self.assertEqual(os.listdir(self.dir), [])
        with self.assertRaises(RunError) as cm2:
            self.worker.run(IMAGE, "true", inputs={"/src": missing}, on_output=lambda s, t: None)
        self.assertEqual(
            str(cm2.exception),
            f"the worker at {self.proc.url} refused the run (HTTP 422): input /src: artifact {missing} is not on "
            f"this worker: upload it first (PUT /artifacts/{'1' * 64})",
        )

    def test_bad_ids(self) -> None:
        for bad in ["", "sha256:abc", "md5:" + "0" * 64, "sha256:" + "A" * 64]:
            with self.subTest(id=bad):
                with self.assertRaises(ValueError) as cm:
                    self.worker.has_artifact(bad)
                self.assertEqual(
                    str(cm.exception), f"{bad!r} is not an artifact id: it must be sha256: and 64 lowercase hex digits"
                )

    def test_wrong_token(self) -> None:
        worker = Worker(self.proc.url, token="wrong")
        archive = self.random_file("a.tar", 5_000_000)
        digest = "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest()
        for call in [
            lambda: worker.has_artifact(digest),
            lambda: worker.upload_artifact(archive, digest),
            lambda: worker.download_artifact(digest, self.dir / "x"),
        ]:
            with self.assertRaises(AuthError):
                call()

    def test_through_a_run(self) -> None:
        # A local tree in, copied by the command, out as an output, back here: the same files.
        src = self.make_tree(self.dir / "src")
        write(src / "random", os.urandom(1_000_000))
        upload = self.worker.upload_local(src)
        result = self.worker.run(
            IMAGE, "cp -a /src /out", inputs={"/src": upload.id}, outputs=["/out"], on_output=lambda s, t: None
        )
        self.assertEqual((result.exit_code, result.error, [a.path for a in result.artifacts]), (0, None, ["/out"]))
        self.worker.download_artifact(result.artifacts[0].id, self.dir / "out.tar")
        unpack(self.dir / "out.tar", self.dir / "back", "/out")
        self.assertEqual(tree_listing(self.dir / "back" / "out"), tree_listing(src))


if __name__ == "__main__":
    unittest.main()
