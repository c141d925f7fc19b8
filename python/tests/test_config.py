"""connect(), Worker() set-up and token files; none of these need a worker."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import sys
import tempfile
import unittest

import bettertest
from bettertest import ConfigError, Worker, WorkerUnreachable


class TempDirTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name

    def write(self, name: str, content: bytes) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(content)
        os.chmod(path, 0o600)
        return path


class TokenFileTest(TempDirTest):
    def test_token_is_trimmed_content(self) -> None:
        self.assertEqual(bettertest.read_token_file(self.write("t", b"  s3cret-token\n\n")), "s3cret-token")

    def test_missing_file(self) -> None:
        path = os.path.join(self.dir, "nope")
        with self.assertRaises(ConfigError) as cm:
            bettertest.read_token_file(path)
        self.assertEqual(str(cm.exception), f"cannot read the token file {path}: No such file or directory")

    def test_file_readable_by_others(self) -> None:
        path = self.write("t", b"s3cret")
        os.chmod(path, 0o644)
        with self.assertRaises(ConfigError) as cm:
            bettertest.read_token_file(path)
        self.assertEqual(str(cm.exception), f"the token file {path} is readable by group or others (mode 0644): run chmod 600 {path}")

    def test_empty_file(self) -> None:
        path = self.write("t", b" \n")
        with self.assertRaises(ConfigError) as cm:
            bettertest.read_token_file(path)
        self.assertEqual(str(cm.exception), f"the token file {path} is empty: it must hold the worker's token")

    def test_two_lines(self) -> None:
        path = self.write("t", b"abc\ndef\n")
        with self.assertRaises(ConfigError) as cm:
            bettertest.read_token_file(path)
        self.assertEqual(
            str(cm.exception),
            f"the token file {path} holds more than a token: it must hold the worker's token alone, in printable ASCII",
        )

    def test_binary(self) -> None:
        path = self.write("t", b"\xff\xfe")
        with self.assertRaises(ConfigError) as cm:
            bettertest.read_token_file(path)
        self.assertEqual(str(cm.exception), f"the token file {path} is not text: it must hold the worker's token")


class WorkerSetupTest(TempDirTest):
    def test_url(self) -> None:
        self.assertEqual(Worker("http://127.0.0.1:9009/", token="t").url, "http://127.0.0.1:9009")
        self.assertEqual(repr(Worker("https://ci.example:9009/w", token="t")), "Worker('https://ci.example:9009/w')")

    def test_bad_urls(self) -> None:
        for url in ["127.0.0.1:9009", "ftp://host:1", "http://", "http://host:99999", "http://host:9/?x=1", "http://host:x"]:
            with self.subTest(url=url):
                with self.assertRaises(ConfigError) as cm:
                    Worker(url, token="t")
                self.assertEqual(str(cm.exception), f"the worker URL {url!r} is not valid: it must look like http://host:9009")

    def test_token_or_token_file(self) -> None:
        path = self.write("t", b"tok\n")
        with self.assertRaises(TypeError) as cm:
            Worker("http://h:1")
        self.assertEqual(str(cm.exception), "Worker() needs exactly one of token= or token_file=")
        with self.assertRaises(TypeError):
            Worker("http://h:1", token="a", token_file=path)

    def test_unix_socket_urls(self) -> None:
        worker = Worker("unix:/run/bettertest/worker.sock")
        self.assertEqual((worker.url, worker._token), ("unix:/run/bettertest/worker.sock", None))
        with self.assertRaises(ConfigError) as cm:
            Worker("unix:worker.sock")
        self.assertEqual(
            str(cm.exception),
            "the worker URL 'unix:worker.sock' is not valid: a unix: URL names an absolute path, e.g. unix:/run/bettertest/worker.sock",
        )
        with self.assertRaises(TypeError) as cm2:
            Worker("unix:/w.sock", token="t")
        self.assertEqual(str(cm2.exception), "Worker() takes no token for a unix: URL: the socket adds the credential")

    def test_unreachable_unix_socket(self) -> None:
        path = os.path.join(self.dir, "worker.sock")
        with self.assertRaises(WorkerUnreachable) as cm:
            Worker("unix:" + path).health()
        self.assertEqual(
            str(cm.exception),
            f"cannot reach the worker at unix:{path}: No such file or directory; check that "
            "`bettertest worker` is running there and that the URL names its listening address",
        )

    def test_unreachable(self) -> None:
        # A port that was just free: nothing listens there, so the connection is refused.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        worker = Worker(f"http://127.0.0.1:{port}", token="t")
        expected = (
            f"cannot reach the worker at http://127.0.0.1:{port}: Connection refused; check that "
            "`bettertest worker` is running there and that the URL names its listening address"
        )
        with self.assertRaises(WorkerUnreachable) as cm:
            worker.run("bettertest/base:bookworm", "true")
        self.assertEqual(str(cm.exception), expected)
        with self.assertRaises(WorkerUnreachable) as cm:
            worker.health()
        self.assertEqual(str(cm.exception), expected)

    def test_timeout_must_be_positive(self) -> None:
        worker = Worker("http://127.0.0.1:1", token="t")
        for timeout in [0, -1, float("nan")]:
            with self.subTest(timeout=timeout):
                with self.assertRaises(ValueError) as cm:
                    worker.run("bettertest/base:bookworm", "true", timeout=timeout)
                self.assertEqual(str(cm.exception), f"timeout must be a positive number of seconds, not {timeout!r}")


class ConnectTest(TempDirTest):
    def connect_error(self, argv: list[str]) -> str:
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), self.assertRaises(SystemExit) as cm:
            bettertest.connect(argv)
        self.assertEqual(cm.exception.code, 2)
        return stderr.getvalue().splitlines()[-1]

    def test_flags_and_other_args(self) -> None:
        path = self.write("t", b"tok\n")
        worker = bettertest.connect(["--stage", "lint", "--worker", "http://127.0.0.1:9009", f"--token-file={path}", "extra"])
        self.assertEqual(worker.url, "http://127.0.0.1:9009")
        self.assertEqual(worker._token, "tok")

    def test_unix_socket_needs_no_token_file(self) -> None:
        self.assertEqual(bettertest.connect(["--worker", "unix:/run/bettertest/worker.sock"]).url, "unix:/run/bettertest/worker.sock")
        self.assertEqual(
            self.connect_error(["--worker", "unix:/w.sock", "--token-file", self.write("t", b"tok\n")]),
            f"{self.prog()}: error: --token-file goes with an http(s) --worker URL: a unix: socket adds the credential itself",
        )

    def test_no_abbreviations(self) -> None:
        # A pipedef's own --work flag must not be taken for --worker.
        path = self.write("t", b"tok\n")
        worker = bettertest.connect(["--work", "x", "--worker", "http://h:1", "--token-file", path])
        self.assertEqual(worker.url, "http://h:1")

    def test_missing_worker(self) -> None:
        self.assertEqual(
            self.connect_error(["--token-file", "x"]),
            f"{self.prog()}: error: --worker is required: pass the worker URL, e.g. --worker http://host:9009",
        )

    def test_missing_token_file(self) -> None:
        self.assertEqual(
            self.connect_error(["--worker", "http://h:1"]),
            f"{self.prog()}: error: --token-file is required: pass the path of a file holding the worker's token",
        )

    def test_unreadable_token_file(self) -> None:
        path = os.path.join(self.dir, "missing")
        self.assertEqual(
            self.connect_error(["--worker", "http://h:1", "--token-file", path]),
            f"{self.prog()}: error: cannot read the token file {path}: No such file or directory",
        )

    def test_bad_url(self) -> None:
        path = self.write("t", b"tok\n")
        self.assertEqual(
            self.connect_error(["--worker", "h:1", "--token-file", path]),
            f"{self.prog()}: error: the worker URL 'h:1' is not valid: it must look like http://host:9009",
        )

    @staticmethod
    def prog() -> str:
        return os.path.basename(sys.argv[0])


if __name__ == "__main__":
    unittest.main()
