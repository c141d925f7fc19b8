"""Start and stop a real `bettertest worker` process for the integration tests."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import tempfile
import threading
import unittest
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[2]
BINARY = REPO / "bin" / "bettertest"
IMAGE = "bettertest/base:bookworm"

_ADDR = re.compile(rb"\baddr=(\S+)")


def require_binary() -> None:
    """Skip the calling test module when the worker binary has not been built."""
    if not BINARY.exists():
        raise unittest.SkipTest(f"{BINARY} does not exist: run `make build` in {REPO} to test against a real worker")


class WorkerProcess:
    """A worker listening on a free port of 127.0.0.1, with its own 0600 token file and data directory.

    The token file and the data directory (``data_dir``: artifacts and the build cache) live in a
    temporary directory that ``stop`` removes; ``restart`` keeps them.
    """

    def __init__(self, *args: str) -> None:
        self._args = args
        self._dir = tempfile.TemporaryDirectory()
        self.token = secrets.token_hex(16)
        self.token_file = os.path.join(self._dir.name, "token")
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.token + "\n")
        self.data_dir = os.path.join(self._dir.name, "data")
        os.mkdir(self.data_dir, 0o700)
        try:
            self._start()
        except BaseException:
            self._dir.cleanup()
            raise

    def _start(self) -> None:
        self._log_changed = threading.Condition()
        self.proc = subprocess.Popen(
            [
                str(BINARY), "worker", "--listen", "127.0.0.1:0", "--token-file", self.token_file,
                "--data-dir", self.data_dir, *self._args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        self.log: list[bytes] = []
        addr = None
        # Reading the log line by line waits for the listening event; no polling.
        for line in self.proc.stderr:
            self.log.append(line)
            if b"msg=listening" in line:
                match = _ADDR.search(line)
                assert match is not None, line
                addr = match.group(1).decode()
                break
        if addr is None:
            code = self.proc.wait()
            self.proc.stderr.close()
            raise RuntimeError(f"{BINARY} worker exited with {code} before listening:\n{self.log_text()}")
        self.url = f"http://{addr}"
        # Keep draining stderr so the worker never blocks on a full pipe.
        self._drain = threading.Thread(target=self._read_log, args=(self.proc.stderr,), daemon=True)
        self._drain.start()

    def _read_log(self, stderr: IO[bytes]) -> None:
        for line in stderr:
            with self._log_changed:
                self.log.append(line)
                self._log_changed.notify_all()

    def wait_for_log(self, marker: bytes, start: int) -> bytes:
        """Wait until a log line from index start on contains marker, and return that line.

        The drain thread wakes the waiter on every new line; the 60 s bound only keeps a broken
        worker from hanging the test run.
        """

        def find() -> bytes | None:
            return next((line for line in self.log[start:] if marker in line), None)

        with self._log_changed:
            if not self._log_changed.wait_for(lambda: find() is not None, timeout=60):
                raise AssertionError(f"no worker log line with {marker!r} in 60 s:\n{self.log_text()}")
            found = find()
        assert found is not None
        return found

    def log_text(self) -> str:
        return b"".join(self.log).decode(errors="replace")

    def _wait(self) -> int:
        code = self.proc.wait()
        self._drain.join()
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code

    def stop(self) -> int:
        """Stop the worker with SIGTERM (unless it has exited), wait for it, and remove its token file."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self._wait()
        finally:
            self._dir.cleanup()

    def restart(self) -> None:
        """Stop the worker with SIGTERM, wait for it, and start it again on the same token and data directory.

        The new process listens on a new port: read ``url`` again.
        """
        self.proc.send_signal(signal.SIGTERM)
        code = self._wait()
        if code != 0:
            raise RuntimeError(f"{BINARY} worker exited with {code} on SIGTERM:\n{self.log_text()}")
        self._start()

    def kill_and_restart(self) -> None:
        """Kill the worker at once, as a crash would, then start it again with the same token file.

        The new process removes the containers the killed one left behind before it listens.
        """
        self.proc.send_signal(signal.SIGKILL)
        self._wait()
        self._start()
