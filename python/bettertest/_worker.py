"""The worker client: run commands in containers on a bettertest worker and stream their output."""

from __future__ import annotations

import http.client
import json
import math
import os
import stat
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ._sse import parse_sse
from .errors import AuthError, BettertestError, ConfigError, RunError, WorkerUnreachable

__all__ = ["OutputHandler", "Result", "Worker", "read_token_file"]

OutputHandler = Callable[[str, str], None]
"""``on_output(stream, text)``: ``stream`` is ``"stdout"`` or ``"stderr"``, ``text`` a chunk of output."""

# Only the connection attempt is bounded: once connected, reads wait for the worker's events
# for as long as the run takes.
_CONNECT_TIMEOUT_S = 10.0
_READ_SIZE = 65536


@dataclass(frozen=True)
class Result:
    """The outcome of a run that started.

    Attributes:
        exit_code: The command's exit code, as the worker reported it.
        stdout: Everything the command wrote to stdout ("" when ``capture=False``).
        stderr: Everything the command wrote to stderr ("" when ``capture=False``).
        duration: How long the container ran, in seconds.
        error: ``None`` for a run that ran to its end; otherwise the worker's message saying why
            it was cut short (e.g. the timeout expired). ``exit_code`` is then the code the
            stopped container exited with.
        run_id: The worker's id for the run.
    """

    exit_code: int
    stdout: str
    stderr: str
    duration: float
    error: str | None = None
    run_id: str = ""

    @property
    def ok(self) -> bool:
        """True when the command exited with code 0 and was not cut short."""
        return self.exit_code == 0 and self.error is None


def read_token_file(path: str | os.PathLike[str]) -> str:
    """Read a worker token from a file.

    Args:
        path: The file; its content, with surrounding whitespace removed, is the token.

    Returns:
        The token.

    Raises:
        ConfigError: The file cannot be read, is readable by group or others (a secret must have
            mode 0600, as the worker also requires), is empty, or holds characters a token
            cannot have.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise ConfigError(f"cannot read the token file {os.fspath(path)}: {e.strerror}") from e
    if mode & 0o077:
        raise ConfigError(
            f"the token file {os.fspath(path)} is readable by group or others "
            f"(mode {stat.S_IMODE(mode):04o}): run chmod 600 {os.fspath(path)}"
        )
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as e:
        raise ConfigError(f"cannot read the token file {os.fspath(path)}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"the token file {os.fspath(path)} is not text: it must hold the worker's token") from e
    if not token:
        raise ConfigError(f"the token file {os.fspath(path)} is empty: it must hold the worker's token")
    if not (token.isascii() and token.isprintable()):
        raise ConfigError(
            f"the token file {os.fspath(path)} holds more than a token: "
            "it must hold the worker's token alone, in printable ASCII"
        )
    return token


def _json_object(raw: str | bytes) -> dict[str, Any] | None:
    """The JSON object in raw, or None when raw is not one."""
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _print_output(stream: str, text: str) -> None:
    f = sys.stdout if stream == "stdout" else sys.stderr
    f.write(text)
    f.flush()


class Worker:
    """A client for one bettertest worker.

    Every call opens its own connection, so one ``Worker`` may be shared between threads to
    run commands in parallel.

    Example::

        worker = Worker("http://127.0.0.1:9009", token_file="/etc/bettertest/token")
        result = worker.run("bettertest/base:bookworm", "uname -a")
        sys.exit(result.exit_code)
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
    ) -> None:
        """Set up a client; nothing is sent until a method is called.

        Args:
            url: The worker's base URL, e.g. ``http://host:9009``.
            token: The worker's token. Pass exactly one of ``token`` and ``token_file``.
            token_file: A file holding the worker's token.

        Raises:
            ConfigError: The URL is not an http(s) URL, or the token file cannot be used.
            TypeError: Neither or both of ``token`` and ``token_file`` were given.
        """
        if (token is None) == (token_file is None):
            raise TypeError("Worker() needs exactly one of token= or token_file=")
        if token_file is not None:
            token = read_token_file(token_file)
        assert token is not None
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1 or parts.query or parts.fragment:
            raise ConfigError(f"the worker URL {url!r} is not valid: it must look like http://host:9009")
        self.url: str = url.rstrip("/")
        """The worker's base URL, without a trailing slash."""
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = port
        self._path = parts.path.rstrip("/")
        self._token = token

    def __repr__(self) -> str:
        return f"Worker({self.url!r})"

    def health(self) -> dict[str, Any]:
        """Ask the worker how it is.

        Returns:
            The worker's answer, e.g. ``{"ready": True, "version": "...", "docker": "...",
            "running": 0, "capacity": 2}``. A worker that is not ready answers with
            ``"ready": False`` and an ``"error"`` saying why; that is returned, not raised.

        Raises:
            WorkerUnreachable: No connection could be made.
            AuthError: The worker rejected the token.
            BettertestError: The worker answered with an error or with something that is not JSON.
        """
        conn, resp = self._request("GET", "/health", None, "application/json")
        try:
            # 503 is the worker's answer when it is not ready (e.g. Docker is down): still a health report.
            if resp.status not in (200, 503):
                self._raise_for_status(resp, "the health check", BettertestError)
            body = self._read_body(resp, "the health check")
        finally:
            conn.close()
        health = _json_object(body)
        if health is None:
            raise BettertestError(f"the worker at {self.url} answered the health check with something else than a JSON object: {body[:200]!r}")
        return health

    def run(
        self,
        image: str,
        command: str,
        *,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        timeout: float | None = None,
        on_output: OutputHandler | None = None,
        capture: bool = True,
    ) -> Result:
        """Run ``sh -c COMMAND`` in a new container and stream its output while it runs.

        A non-zero exit code is not an error: it is returned in the result. A run that started
        and was then cut short by the worker (e.g. its timeout expired) is not raised either: the
        result's ``error`` holds the worker's message and ``ok`` is False. With the default output
        handler that message is also written to ``sys.stderr``.

        Args:
            image: The Docker image, e.g. ``"bettertest/base:bookworm"``. The worker pulls it
                only when it does not have it.
            command: A shell command line, run as ``sh -c command``.
            env: Environment variables for the command.
            workdir: An absolute path in the container to run the command in.
            timeout: Seconds the command may run before the worker stops it; rounded up to whole
                seconds. ``None`` means no limit.
            on_output: Called with ``(stream, text)`` for each chunk of output as it arrives,
                ``stream`` being ``"stdout"`` or ``"stderr"``. Chunks are not split on line
                boundaries. By default stdout text goes to ``sys.stdout`` and stderr text to
                ``sys.stderr``, flushed at once. An exception raised by ``on_output`` (like a
                KeyboardInterrupt during the run) propagates out of ``run``; the connection is
                closed, and the worker then kills the container.
            capture: Keep the whole output in ``Result.stdout`` and ``Result.stderr``. Pass False
                for large outputs you only stream (both are then "").

        Returns:
            The run's result.

        Raises:
            ValueError: ``timeout`` is not positive.
            WorkerUnreachable: No connection could be made.
            AuthError: The worker rejected the token.
            RunError: The worker refused the request, could not start the run (e.g. the image is
                missing), or the stream ended before the run's exit (worker stopped, connection lost).
        """
        request: dict[str, Any] = {"image": image, "command": command}
        if env is not None:
            request["env"] = dict(env)
        if workdir is not None:
            request["workdir"] = workdir
        if timeout is not None:
            if not timeout > 0:
                raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
            request["timeout_s"] = math.ceil(timeout)
        body = json.dumps(request).encode("utf-8")
        conn, resp = self._request("POST", "/run", body, "text/event-stream")
        try:
            if resp.status != 200:
                self._raise_for_status(resp, "the run", RunError)
            content_type = resp.getheader("Content-Type", "")
            if content_type.split(";")[0].strip() != "text/event-stream":
                raise RunError(f"the worker at {self.url} answered the run with {content_type or 'no content type'} instead of an event stream")
            return self._follow(resp, on_output, capture)
        finally:
            conn.close()

    def _follow(self, resp: http.client.HTTPResponse, on_output: OutputHandler | None, capture: bool) -> Result:
        write = _print_output if on_output is None else on_output
        stdout: list[str] = []
        stderr: list[str] = []
        run_id = ""
        started = False
        error: str | None = None
        for event in parse_sse(self._chunks(resp)):
            name = event.name
            if name == "output":
                payload = self._payload(event.name, event.data)
                stream = payload.get("stream")
                text = payload.get("text")
                if not isinstance(stream, str) or not isinstance(text, str):
                    raise RunError(f"the worker at {self.url} sent a malformed output event: {event.data[:200]!r}")
                if capture:
                    if stream == "stdout":
                        stdout.append(text)
                    elif stream == "stderr":
                        stderr.append(text)
                write(stream, text)
            elif name == "started":
                run_id = str(self._payload(name, event.data).get("id", ""))
                started = True
            elif name == "error":
                message = str(self._payload(name, event.data).get("message", ""))
                if not started:
                    raise RunError(f"the worker at {self.url} could not start the run: {message}")
                error = message
                if on_output is None:
                    sys.stderr.write(f"bettertest: run {run_id} was cut short: {message}\n")
                    sys.stderr.flush()
            elif name == "exit":
                payload = self._payload(name, event.data)
                code = payload.get("code")
                duration_ms = payload.get("duration_ms")
                if not isinstance(code, int) or not isinstance(duration_ms, (int, float)):
                    raise RunError(f"the worker at {self.url} sent a malformed exit event: {event.data[:200]!r}")
                return Result(
                    exit_code=code,
                    stdout="".join(stdout),
                    stderr="".join(stderr),
                    duration=duration_ms / 1000,
                    error=error,
                    run_id=run_id,
                )
            # "queued" and event names this client does not know yet need nothing from us.
        stage = "after the run started" if started else "before the run started"
        detail = f" (its last error: {error})" if error is not None else ""
        raise RunError(
            f"the worker at {self.url} closed the event stream {stage} without the run's exit{detail}: "
            "the worker stopped or the connection was lost; see the worker's log"
        )

    def _payload(self, name: str, data: str) -> dict[str, Any]:
        payload = _json_object(data)
        if payload is None:
            raise RunError(f"the worker at {self.url} sent a malformed {name} event: {data[:200]!r}")
        return payload

    def _chunks(self, resp: http.client.HTTPResponse) -> Iterator[bytes]:
        while True:
            try:
                chunk = resp.read1(_READ_SIZE)
            except http.client.IncompleteRead:
                return  # the body ended early because the worker went away; _follow reports the missing exit
            except (OSError, http.client.HTTPException) as e:
                raise RunError(f"lost the connection to the worker at {self.url} during the run: {e!r}") from e
            if not chunk:
                return
            yield chunk

    def _request(
        self, method: str, path: str, body: bytes | None, accept: str
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn_class = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = conn_class(self._host, self._port, timeout=_CONNECT_TIMEOUT_S)
        try:
            conn.connect()
        except OSError as e:
            conn.close()
            reason = e.strerror or str(e) or type(e).__name__
            raise WorkerUnreachable(
                f"cannot reach the worker at {self.url}: {reason}; check that `bettertest worker` "
                "is running there and that the URL names its listening address"
            ) from e
        assert conn.sock is not None
        conn.sock.settimeout(None)
        headers = {"Authorization": f"Bearer {self._token}", "Accept": accept}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, self._path + path, body=body, headers=headers)
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise WorkerUnreachable(f"lost the connection to the worker at {self.url} before it answered: {e!r}") from e

    def _read_body(self, resp: http.client.HTTPResponse, what: str) -> bytes:
        try:
            return resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise WorkerUnreachable(f"lost the connection to the worker at {self.url} while reading its answer to {what}: {e!r}") from e

    def _raise_for_status(self, resp: http.client.HTTPResponse, what: str, error_class: type[BettertestError]) -> None:
        body = self._read_body(resp, what)
        decoded = _json_object(body)
        if decoded is not None and isinstance(decoded.get("error"), str):
            message = decoded["error"]
        else:
            message = body.decode("utf-8", "replace").strip()[:500] or resp.reason
        if resp.status == 401:
            raise AuthError(
                f"the worker at {self.url} rejected the token: {message}; "
                "check that --token-file names a file holding the same token as the worker's --token-file"
            )
        raise error_class(f"the worker at {self.url} refused {what} (HTTP {resp.status}): {message}")
