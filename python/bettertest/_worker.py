"""The worker client: run commands in containers on a bettertest worker and stream their output."""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import os
import queue
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

from ._artifacts import Artifact, artifact_hex, pack
from ._secrets import Secret, read_private_text
from ._sse import parse_sse
from .errors import ArtifactError, AuthError, BettertestError, ConfigError, RunError, WorkerUnreachable

__all__ = ["BuiltImage", "EventHandler", "OutputHandler", "Result", "Upload", "Worker", "read_token_file"]

OutputHandler = Callable[[str, str], None]
"""``on_output(stream, text)``: ``stream`` is ``"stdout"`` or ``"stderr"``, ``text`` a chunk of output."""

EventHandler = Callable[[str, Mapping[str, Any]], None]
"""``on_event(name, data)``: every event of a run but ``output``, as the worker sent it (``queued``,
``started``, ``uncached``, ``cached``, ``artifact``, ``result``, ``error``, ``exit``), ``data``
being its JSON object."""

# Only the connection attempt is bounded: once connected, reads wait for the worker's events
# for as long as the run takes.
_CONNECT_TIMEOUT_S = 10.0
_READ_SIZE = 65536
# Artifacts are large: move them in big blocks so the per-call overhead of Python disappears.
_BLOCK_SIZE = 1 << 20


@dataclass(frozen=True)
class Result:
    """The outcome of a run that started (or of a build answered from the cache).

    Attributes:
        exit_code: The command's exit code, as the worker reported it (0 for a cached build).
        stdout: Everything the command wrote to stdout ("" when ``capture=False``).
        stderr: Everything the command wrote to stderr ("" when ``capture=False``).
        duration: How long the container ran, in seconds, as the worker reported it.
        error: ``None`` for a run that ran to its end; otherwise the worker's message saying why
            it failed after it started: cut short (e.g. the timeout expired; ``exit_code`` is then
            the code the stopped container exited with), or an output the command did not make
            (with ``exit_code`` 0).
        run_id: The worker's id for the run; for a cached build, the id of the run that built it.
        artifacts: The outputs the worker stored, in the order it announced them.
        results: The ``results`` paths the command made, stored by the worker after the command
            ended (whatever its exit code), in the order it announced them; a path the command
            did not make is not among them.
        cached: True when the worker answered a build from its cache and ran nothing.
        cache_key: The build's cache key (``"sha256:..."``); ``None`` for a run without ``cache``.
        cache_reason: Why a build was not in the cache (e.g. ``"first run"``, ``"input /src
            changed"``); ``None`` when it was, or for a run without ``cache``.
    """

    exit_code: int
    stdout: str
    stderr: str
    duration: float
    error: str | None = None
    run_id: str = ""
    artifacts: tuple[Artifact, ...] = ()
    results: tuple[Artifact, ...] = ()
    cached: bool = False
    cache_key: str | None = None
    cache_reason: str | None = None

    @property
    def ok(self) -> bool:
        """True when the command exited with code 0 and was not cut short."""
        return self.exit_code == 0 and self.error is None


@dataclass(frozen=True)
class Upload:
    """A local file or directory made available on a worker by :meth:`Worker.upload_local`.

    Attributes:
        id: The artifact's id, ``"sha256:HEX"``, to pass as a run's input.
        size: Bytes of the archive.
        sent: Bytes of content sent to the worker: ``size``, or 0 when it already had the artifact.
    """

    id: str
    size: int
    sent: int


@dataclass(frozen=True)
class BuiltImage:
    """An image a worker built (or had built before) with :meth:`Worker.build_image`.

    Attributes:
        tag: Its content-derived tag on the worker, ``"bettertest/built:KEYHEX"``: a run's ``image``.
        id: Docker's image ID, ``"sha256:..."``.
        key: The build's key: a digest of the context, the Dockerfile's path, the build args and
            the IDs of its FROM images on the worker.
        cached: True when the worker had the image and built nothing.
        reason: Why it was built (e.g. ``"not built on this worker yet"``); ``None`` when cached.
        duration: Seconds the build took; 0 when cached.
    """

    tag: str
    id: str
    key: str
    cached: bool
    reason: str | None
    duration: float


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
    token = read_private_text(path, "token file", "the worker's token")
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
            url: The worker's base URL, e.g. ``http://host:9009``; or ``unix:/PATH``, a Unix
                socket that reaches one worker and adds the credential itself (the boss hands
                its sandboxed pipedefs such a socket, so they never hold a worker's token).
            token: The worker's token. Pass exactly one of ``token`` and ``token_file`` for an
                http(s) URL, and neither for a ``unix:`` URL.
            token_file: A file holding the worker's token.

        Raises:
            ConfigError: The URL is not an http(s) or unix URL, or the token file cannot be used.
            TypeError: Neither or both of ``token`` and ``token_file`` were given for an http(s)
                URL, or one was given for a ``unix:`` URL.
        """
        self._unix: str | None = None
        if url.startswith("unix:"):
            if token is not None or token_file is not None:
                raise TypeError("Worker() takes no token for a unix: URL: the socket adds the credential")
            self._unix = url.removeprefix("unix:")
            if not os.path.isabs(self._unix):
                raise ConfigError(f"the worker URL {url!r} is not valid: a unix: URL names an absolute path, e.g. unix:/run/bettertest/worker.sock")
            self.url = url
            self._https, self._host, self._port, self._path, self._token = False, "localhost", None, "", None
            return
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
        self._host: str = parts.hostname
        self._port: int | None = port
        self._path = parts.path.rstrip("/")
        self._token: str | None = token

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
        inputs: Mapping[str, str] | None = None,
        outputs: Sequence[str] | None = None,
        results: Sequence[str] | None = None,
        cache: bool = False,
        name: str | None = None,
        secrets: Mapping[str, Secret] | None = None,
        user: str | None = None,
        pids: int | None = None,
        memory: int | None = None,
        cpus: float | None = None,
        reach_host: bool = False,
        services: Mapping[str, Mapping[str, Any]] | None = None,
        caches: Mapping[str, str] | None = None,
        on_output: OutputHandler | None = None,
        on_event: EventHandler | None = None,
        capture: bool = True,
    ) -> Result:
        """Run ``sh -c COMMAND`` in a new container and stream its output while it runs.

        A non-zero exit code is not an error: it is returned in the result. A run that started
        and then failed on the worker's side (its timeout expired, an output was not made) is not
        raised either: the result's ``error`` holds the worker's message and ``ok`` is False.
        With the default output handler that message is also written to ``sys.stderr``.

        Args:
            image: The Docker image, e.g. ``"bettertest/base:bookworm"``. The worker pulls it
                only when it does not have it.
            command: A shell command line, run as ``sh -c command``.
            env: Environment variables for the command.
            workdir: An absolute path in the container to run the command in.
            timeout: Seconds the command may run before the worker stops it; rounded up to whole
                seconds. ``None`` means no limit.
            inputs: Artifacts to mount read-only, by container path: ``{"/src": "sha256:..."}``.
                The worker must have them (see :meth:`upload_local`); a missing one is refused.
            outputs: Container paths (files or directories) the worker packs into artifacts
                after the command exits 0; they come back in ``Result.artifacts``. A path the
                command did not make fails the run (``Result.error`` names it).
            results: Container paths (files or directories) of test reports, e.g.
                ``["/results/junit.xml"]``. After the command ends, whatever its exit code and
                also after a timeout, the worker packs each path the command made into an
                artifact; they come back in ``Result.results`` (download them with
                :meth:`download_artifact`). A path the command did not make is left out, not an
                error. A build (``cache=True``) cannot have results: the worker refuses it.
            cache: Make the run a build: the worker answers it from its cache when it has run
                the same image, command, env, workdir, inputs and outputs before
                (``Result.cached``), and otherwise says why not (``Result.cache_reason``).
            name: Which build this is, e.g. ``"pipeline/task"``, so the worker's reason for a
                cache miss compares with that build's last run.
            secrets: Secrets for the command, by where they go: a container path (a read-only
                file, mode 0400) or ``"env:NAME"`` (an environment variable), e.g.
                ``{"/run/secrets/key": bt.secret("deploy_key")}``. The worker masks their values
                (``***``) in the output; a build's cache key holds where they go, not their values.
            user: Who the command runs as, ``NAME`` or ``UID[:GID]`` of the image, e.g.
                ``"65534"``; root by default. Part of a build's cache key.
            pids: At most this many processes and threads at once; the worker's
                ``--pids-limit`` by default. It may be narrowed, never widened.
            memory: At most this many bytes of memory (``/tmp`` included); the worker's
                ``--memory`` by default. It may be narrowed, never widened.
            cpus: At most this much CPU time, in CPUs (e.g. ``1.5``); the worker's ``--cpus``
                by default. It may be narrowed, never widened. A run that exceeds a limit ends
                with ``Result.error`` naming it.
            reach_host: Run on Docker's default network, from which the command reaches
                services on the worker's host; refused (``RunError``) unless the worker was
                started with ``--allow-reach-host``. Runs are kept from the host otherwise.
            services: Containers started beside the run, by name, each as the worker's API takes
                it: ``{"image": ..., "command": ..., "env": {...}, "ready": {"command": ...} or
                {"port": N}}``; the command starts once all are ready, and reaches each by its
                name. Their output comes labelled (``[db] ...``); they are removed when the run ends.
            caches: Named dependency caches to mount read-write, by container path, e.g.
                ``{"/root/.cache/pip": "pip"}``: directories that persist on the worker across
                runs, never part of a build's key; a run waits while another holds one.
            on_output: Called with ``(stream, text)`` for each chunk of output as it arrives,
                ``stream`` being ``"stdout"`` or ``"stderr"``. Chunks are not split on line
                boundaries. By default stdout text goes to ``sys.stdout`` and stderr text to
                ``sys.stderr``, flushed at once. An exception raised by ``on_output`` (like a
                KeyboardInterrupt during the run) propagates out of ``run``; the connection is
                closed, and the worker then kills the container.
            on_event: Called with ``(name, data)`` for every other event as it arrives (see
                :data:`EventHandler`), e.g. ``("cached", {"key": ..., "run_id": ...,
                "duration_ms": ...})`` or ``("artifact", {"path": "/out", "id": ..., "size": ...})``
                (``result`` events carry the same data).
                Exceptions propagate like those of ``on_output``.
            capture: Keep the whole output in ``Result.stdout`` and ``Result.stderr``. Pass False
                for large outputs you only stream (both are then "").

        Returns:
            The run's result.

        Raises:
            ValueError: ``timeout`` is not positive.
            WorkerUnreachable: No connection could be made.
            AuthError: The worker rejected the token.
            RunError: The worker refused the request (e.g. an input it does not have: HTTP 422;
                ``results`` with ``cache``: HTTP 400), could not start the run (e.g. the image is
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
        if inputs:
            request["inputs"] = dict(inputs)
        if outputs:
            request["outputs"] = list(outputs)
        if results:
            request["results"] = list(results)
        if cache:
            request["cache"] = True
        if name is not None:
            request["name"] = name
        if secrets:
            request["secrets"] = [
                {"env": target[4:], "value": s.reveal()} if target.startswith("env:") else {"path": target, "value": s.reveal()}
                for target, s in secrets.items()
            ]
        if user is not None:
            request["user"] = user
        if reach_host:
            request["reach_host"] = True
        if services:
            request["services"] = {name: dict(svc) for name, svc in services.items()}
        if caches:
            request["caches"] = dict(caches)
        limits = {k: v for k, v in (("pids", pids), ("memory_bytes", memory), ("cpus", cpus)) if v is not None}
        if limits:
            request["limits"] = limits
        body = json.dumps(request).encode("utf-8")
        conn, resp = self._request("POST", "/run", body, "text/event-stream")
        try:
            if resp.status != 200:
                self._raise_for_status(resp, "the run", RunError)
            content_type = resp.getheader("Content-Type", "")
            if content_type.split(";")[0].strip() != "text/event-stream":
                raise RunError(f"the worker at {self.url} answered the run with {content_type or 'no content type'} instead of an event stream")
            return self.follow(self._chunks(resp), on_output=on_output, on_event=on_event, capture=capture)
        finally:
            conn.close()

    def build_image(
        self,
        context: str,
        *,
        dockerfile: str | None = None,
        build_args: Mapping[str, str] | None = None,
        name: str | None = None,
        on_output: OutputHandler | None = None,
        on_event: EventHandler | None = None,
    ) -> BuiltImage:
        """Build an image on the worker from a Dockerfile in a context directory it holds.

        The worker keys the image by the context, the Dockerfile's path, the build args and the
        IDs of the images the Dockerfile starts FROM on that worker (it never pulls them), and
        builds only when it has no image of that key.

        Args:
            context: The context directory's artifact id (see :meth:`upload_local`).
            dockerfile: The Dockerfile's path inside the context; ``"Dockerfile"`` by default.
            build_args: Values of the Dockerfile's ``ARG``s.
            name: Which image this is, e.g. ``"pipeline/name"``, for the worker's log.
            on_output: Called with ``("stdout", text)`` for the build's progress; by default it
                goes to ``sys.stdout``.
            on_event: Called with ``(name, data)`` for the other events (``uncached``, ``queued``,
                ``image``).

        Returns:
            The image.

        Raises:
            WorkerUnreachable: No connection could be made.
            AuthError: The worker rejected the token.
            RunError: The worker refused the request (e.g. a context it does not hold: HTTP 422),
                a FROM image is missing, or the build failed; the message says which.
        """
        request: dict[str, Any] = {"context": context}
        if dockerfile is not None:
            request["dockerfile"] = dockerfile
        if build_args:
            request["build_args"] = dict(build_args)
        if name is not None:
            request["name"] = name
        write = _print_output if on_output is None else on_output
        conn, resp = self._request("POST", "/images", json.dumps(request).encode("utf-8"), "text/event-stream")
        reason: str | None = None
        try:
            if resp.status != 200:
                self._raise_for_status(resp, "the image build", RunError)
            for event in parse_sse(self._chunks(resp)):
                payload = self._payload(event.name, event.data)
                if event.name == "output":
                    write(str(payload.get("stream", "stdout")), str(payload.get("text", "")))
                    continue
                if on_event is not None:
                    on_event(event.name, payload)
                if event.name == "uncached":
                    reason = self._field(event.name, payload, event.data, "reason", str)
                elif event.name == "error":
                    raise RunError(f"the worker at {self.url} could not build the image: {payload.get('message', '')}")
                elif event.name == "image":
                    return BuiltImage(
                        tag=self._field(event.name, payload, event.data, "tag", str),
                        id=self._field(event.name, payload, event.data, "id", str),
                        key=self._field(event.name, payload, event.data, "key", str),
                        cached=payload.get("cached") is True,
                        reason=reason,
                        duration=self._field(event.name, payload, event.data, "duration_ms", int) / 1000,
                    )
        finally:
            conn.close()
        raise RunError(
            f"the worker at {self.url} closed the event stream before the image was built: "
            "the worker stopped or the connection was lost; see the worker's log"
        )

    def follow(
        self,
        chunks: Iterable[bytes],
        *,
        on_output: OutputHandler | None = None,
        on_event: EventHandler | None = None,
        capture: bool = True,
    ) -> Result:
        """Follow a run's event stream to its end: what :meth:`run` does with the worker's answer.

        ``run`` sends the request and hands the response body here; a recorded stream (the body
        of ``POST /run`` saved as bytes) can be replayed through the same handling, e.g. to
        measure the library apart from the network, or to test an event handler.

        Args:
            chunks: The body of a ``POST /run`` answer, as bytes in chunks of any size (they
                need not end on event or UTF-8 boundaries).
            on_output: As for :meth:`run`.
            on_event: As for :meth:`run`.
            capture: As for :meth:`run`.

        Returns:
            The run's result, once its ``exit`` event is read.

        Raises:
            RunError: The stream holds a malformed event, the worker could not start the run,
                or the stream ended before the run's exit.
        """
        write = _print_output if on_output is None else on_output
        stdout: list[str] = []
        stderr: list[str] = []
        # The stored paths: "artifact" events (outputs) and "result" events (test reports).
        stored: dict[str, list[Artifact]] = {"artifact": [], "result": []}
        run_id = ""
        started = False  # a container started, or the cache answered: an error now is the run's, not the start's
        cached = False
        cache_key: str | None = None
        cache_reason: str | None = None
        error: str | None = None
        for event in parse_sse(chunks):
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
                continue
            payload = self._payload(name, event.data)
            if name == "started":
                run_id = str(payload.get("id", ""))
                started = True
            elif name == "uncached":
                cache_key = self._field(name, payload, event.data, "key", str)
                cache_reason = self._field(name, payload, event.data, "reason", str)
            elif name == "cached":
                cache_key = self._field(name, payload, event.data, "key", str)
                run_id = str(payload.get("run_id", ""))
                cached = started = True
            elif name in stored:
                stored[name].append(
                    Artifact(
                        path=self._field(name, payload, event.data, "path", str),
                        id=self._field(name, payload, event.data, "id", str),
                        size=self._field(name, payload, event.data, "size", int),
                    )
                )
            elif name == "error":
                message = str(payload.get("message", ""))
                if not started:
                    raise RunError(f"the worker at {self.url} could not start the run: {message}")
                error = message
                if on_output is None:
                    sys.stderr.write(f"bettertest: run {run_id} was cut short: {message}\n")
                    sys.stderr.flush()
            if on_event is not None:
                on_event(name, payload)
            if name == "exit":
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
                    artifacts=tuple(stored["artifact"]),
                    results=tuple(stored["result"]),
                    cached=cached,
                    cache_key=cache_key,
                    cache_reason=cache_reason,
                )
            # "queued" and event names this client does not know yet need nothing more from us.
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

    def _field(self, name: str, payload: Mapping[str, Any], data: str, key: str, kind: type[Any]) -> Any:
        value = payload.get(key)
        # bool is an int to Python, never to JSON.
        if not isinstance(value, kind) or isinstance(value, bool):
            raise RunError(f"the worker at {self.url} sent a malformed {name} event: {data[:200]!r}")
        return value

    def has_artifact(self, artifact_id: str) -> bool:
        """Ask whether the worker holds an artifact.

        Args:
            artifact_id: ``"sha256:HEX"``.

        Returns:
            True when the worker has it.

        Raises:
            ValueError: ``artifact_id`` is not ``sha256:`` and 64 lowercase hex digits.
            WorkerUnreachable: No connection could be made.
            AuthError: The worker rejected the token.
            ArtifactError: The worker answered with something else than 200 or 404.
        """
        path = f"/artifacts/{artifact_hex(artifact_id)}"
        conn, resp = self._request("HEAD", path, None, "*/*")
        try:
            if resp.status == 200:
                return True
            if resp.status == 404:
                return False
            self._raise_for_status(resp, f"the question whether it has the artifact {artifact_id}", ArtifactError)
        finally:
            conn.close()

    def upload_artifact(self, file_path: str | os.PathLike[str], artifact_id: str) -> bool:
        """Send an archive to the worker, streaming it from a file.

        The worker hashes the content as it arrives and keeps it only when it matches the id.
        Content is always sent: call :meth:`has_artifact` first to send nothing when the worker
        already has it (:meth:`upload_local` does both).

        Args:
            file_path: The archive, e.g. written by :func:`bettertest.pack`.
            artifact_id: Its ``"sha256:HEX"``.

        Returns:
            True when the worker stored it now, False when it already had it.

        Raises:
            ValueError: ``artifact_id`` is not ``sha256:`` and 64 lowercase hex digits.
            ArtifactError: The file cannot be read, or the worker refused the content: it does
                not match the id (HTTP 400), or it is larger than the worker's cache (HTTP 413).
            WorkerUnreachable: No connection could be made, or it broke before the worker answered.
            AuthError: The worker rejected the token.
        """
        path = f"/artifacts/{artifact_hex(artifact_id)}"
        try:
            f = open(file_path, "rb")
        except OSError as e:
            raise ArtifactError(f"cannot read the archive {os.fspath(file_path)} to upload: {e.strerror}") from e
        with f:
            size = os.fstat(f.fileno()).st_size
            conn = self._connect()
            headers = self._headers({"Content-Type": "application/x-tar", "Content-Length": str(size)})
            try:
                try:
                    conn.request("PUT", self._path + path, body=f, headers=headers)
                except (BrokenPipeError, ConnectionResetError):
                    # The worker may answer and close before it has read everything (a refused
                    # token, a body over its cache size): its answer says why, so read it.
                    pass
                except OSError as e:
                    raise ArtifactError(f"cannot upload the archive {os.fspath(file_path)}: {e.strerror or e}") from e
                try:
                    resp = conn.getresponse()
                except (OSError, http.client.HTTPException) as e:
                    raise WorkerUnreachable(
                        f"lost the connection to the worker at {self.url} while uploading the artifact {artifact_id}: {e!r}"
                    ) from e
                if resp.status == 201:
                    return True
                if resp.status == 200:
                    return False
                self._raise_for_status(resp, f"the upload of the artifact {artifact_id}", ArtifactError)
            finally:
                conn.close()

    def download_artifact(self, artifact_id: str, dest_file: str | os.PathLike[str]) -> int:
        """Fetch an archive from the worker into a file, checking its sha256.

        The content is written to a temporary file next to ``dest_file`` and renamed onto it only
        when it is complete and matches the id, so ``dest_file`` never holds a partial download.

        Args:
            artifact_id: ``"sha256:HEX"``.
            dest_file: Where the archive goes; replaced if it exists.

        Returns:
            Bytes written.

        Raises:
            ValueError: ``artifact_id`` is not ``sha256:`` and 64 lowercase hex digits.
            ArtifactError: The worker does not have it (HTTP 404), its content does not match the
                id, or the file cannot be written.
            WorkerUnreachable: No connection could be made, or it broke during the download.
            AuthError: The worker rejected the token.
        """
        digest = artifact_hex(artifact_id)
        dest = os.fspath(dest_file)
        conn, resp = self._request("GET", f"/artifacts/{digest}", None, "application/x-tar")
        try:
            if resp.status == 404:
                resp.read()
                raise ArtifactError(
                    f"the worker at {self.url} does not have the artifact {artifact_id}: it was never stored "
                    "there or was evicted from its cache; run the build again"
                )
            if resp.status != 200:
                self._raise_for_status(resp, f"the download of the artifact {artifact_id}", ArtifactError)
            try:
                fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest) or ".", prefix=".bettertest-download-")
            except OSError as e:
                raise ArtifactError(f"cannot write the artifact {artifact_id} next to {dest}: {e.strerror}") from e
            try:
                with os.fdopen(fd, "wb") as out:
                    size, hexdigest = self._copy_body(resp, out, artifact_id)
                if hexdigest != digest:
                    raise ArtifactError(
                        f"the worker at {self.url} sent content with sha256:{hexdigest} for the artifact "
                        f"{artifact_id}: the stored artifact is damaged; see the worker's log"
                    )
                os.replace(tmp, dest)
            except BaseException:
                os.unlink(tmp)
                raise
            return size
        finally:
            conn.close()

    def _copy_body(self, resp: http.client.HTTPResponse, out: Any, artifact_id: str) -> tuple[int, str]:
        # Reading, writing and hashing one after another caps a download near 400 MB/s here; the
        # hash runs in a thread of its own (hashlib releases the GIL), in step with the writes.
        h = hashlib.sha256()
        chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=8)

        def hash_chunks() -> None:
            while (chunk := chunks.get()) is not None:
                h.update(chunk)

        hasher = threading.Thread(target=hash_chunks, name="bettertest sha256", daemon=True)
        hasher.start()
        size = 0
        try:
            while True:
                try:
                    chunk = resp.read(_BLOCK_SIZE)
                except (OSError, http.client.HTTPException) as e:
                    raise WorkerUnreachable(
                        f"lost the connection to the worker at {self.url} while downloading the artifact {artifact_id}: {e!r}"
                    ) from e
                if not chunk:
                    break
                chunks.put(chunk)
                try:
                    out.write(chunk)
                except OSError as e:
                    raise ArtifactError(f"cannot write the artifact {artifact_id}: {e.strerror}") from e
                size += len(chunk)
        finally:
            chunks.put(None)
            hasher.join()
        expected = resp.getheader("Content-Length")
        if expected is not None and expected.isdigit() and int(expected) != size:
            raise WorkerUnreachable(
                f"the download of the artifact {artifact_id} from {self.url} ended after {size} of {expected} bytes"
            )
        return size, h.hexdigest()

    def upload_local(self, path: str | os.PathLike[str], *, skip: Callable[[str, bool], bool] | None = None) -> Upload:
        """Make a local file or directory available on the worker as an artifact.

        The path is packed into a temporary file in its canonical form (see
        :func:`bettertest.pack`) while it is hashed; the content is then sent only when the worker
        does not already have it.

        Args:
            path: The local file or directory; relative paths are relative to the current directory.
            skip: What of a directory to leave out, as :func:`bettertest.pack` takes it.

        Returns:
            Its id and size, and how many bytes of content were sent (0 when the worker had it).

        Raises:
            ArtifactError: The path does not exist, cannot be read or holds something an artifact
                cannot; or the worker refused the upload.
            WorkerUnreachable: No connection could be made.
            AuthError: The worker rejected the token.
        """
        with tempfile.NamedTemporaryFile(prefix="bettertest-pack-", suffix=".tar") as tmp:
            packed = pack(path, tmp, skip=skip)
            tmp.flush()
            if self.has_artifact(packed.id):
                return Upload(packed.id, packed.size, 0)
            self.upload_artifact(tmp.name, packed.id)
            return Upload(packed.id, packed.size, packed.size)

    def _chunks(self, resp: http.client.HTTPResponse) -> Iterator[bytes]:
        while True:
            try:
                chunk = resp.read1(_READ_SIZE)
            except http.client.IncompleteRead:
                return  # the body ended early because the worker went away; follow reports the missing exit
            except (OSError, http.client.HTTPException) as e:
                raise RunError(f"lost the connection to the worker at {self.url} during the run: {e!r}") from e
            if not chunk:
                return
            yield chunk

    def _connect(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self._unix is not None:
            conn = _UnixConnection(self._unix, timeout=_CONNECT_TIMEOUT_S, blocksize=_BLOCK_SIZE)
        elif self._https:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=_CONNECT_TIMEOUT_S, blocksize=_BLOCK_SIZE)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=_CONNECT_TIMEOUT_S, blocksize=_BLOCK_SIZE)
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
        return conn

    def _headers(self, headers: dict[str, str]) -> dict[str, str]:
        """headers and the worker's token; none through a unix: socket, which adds it."""
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _request(
        self, method: str, path: str, body: bytes | None, accept: str
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn = self._connect()
        headers = self._headers({"Accept": accept})
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

    def _raise_for_status(self, resp: http.client.HTTPResponse, what: str, error_class: type[BettertestError]) -> NoReturn:
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


class _UnixConnection(http.client.HTTPConnection):
    """An HTTP connection over a Unix socket (a ``unix:/PATH`` worker URL)."""

    def __init__(self, path: str, *, timeout: float, blocksize: int) -> None:
        super().__init__("localhost", timeout=timeout, blocksize=blocksize)
        self._socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock
