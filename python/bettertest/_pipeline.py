"""Pipelines: stages run in order, the tasks of a stage run in parallel; builds cache, tests don't.

The script is imperative: a task starts on the worker the moment it is called and returns a
handle; leaving a stage's ``with`` block waits for its tasks. Nothing describes a graph for
something else to run::

    import bettertest as bt

    p = bt.pipeline("hello")
    with p.stage("build") as s:
        app = s.build("compile", image="bettertest/cc:bookworm", command="cc -O2 -o /out/hello /src/hello.c",
                      inputs={"/src": bt.local("src")}, outputs=["/out"])
    with p.stage("test") as s:
        s.test("runs", image="bettertest/base:bookworm", command="/app/out/hello", inputs={"/app": app})
"""

from __future__ import annotations

import argparse
import atexit
import itertools
import os
import posixpath
import re
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Union

from ._artifacts import Artifact, unpack
from ._connect import parse_command_line
from ._ignore import SourceFilter
from ._report import HumanReporter, JsonlReporter, MaskingReporter, Reporter
from ._results import TestCase, parse_results
from ._secrets import Masker, Secret, read_secrets_dir
from ._worker import Result, Upload, Worker
from .errors import ArtifactError, BettertestError, PipelineError, ResultsError

__all__ = ["Build", "BuildOutput", "Image", "Input", "Local", "Pipeline", "Service", "Stage", "Task", "TestResult", "local",
           "pipeline", "service"]


@dataclass(frozen=True)
class Local:
    """A file or directory on the machine running the pipedef, to be used as a task's input.

    Made by :func:`local`. It is packed and sent to the worker when a task that uses it starts,
    once per pipeline however many tasks use it, and only when the worker does not already hold
    the same content. A directory is packed as source: without ``.git``, without what its
    ``.gitignore`` files ignore, and without what ``exclude`` names (see
    :class:`bettertest.SourceFilter`), so a fetch, a new tag or a build's leftovers do not change
    it, and one commit is the same input in every checkout of it.

    Attributes:
        path: The absolute local path.
        exclude: More patterns to leave out, with gitignore's meaning, relative to ``path``.
    """

    path: str
    exclude: tuple[str, ...] = ()


def local(path: str | os.PathLike[str], *, exclude: Sequence[str] = ()) -> Local:
    """Name a local file or directory as a task's input: ``inputs={"/src": bt.local("src")}``.

    A directory leaves out ``.git``, what its ``.gitignore`` files ignore, and ``exclude``.

    Args:
        path: The file or directory; a relative path is relative to the current directory now.
            It is read when a task using it starts; a path that does not exist then fails that task.
        exclude: Patterns of what else to leave out, with gitignore's meaning, relative to
            ``path``: ``exclude=["*.log", "/node_modules/"]``.

    Returns:
        The input.
    """
    if isinstance(exclude, str):
        raise TypeError(f"exclude={exclude!r}: give a list of patterns, e.g. exclude=[{exclude!r}]")
    return Local(os.path.abspath(path), tuple(exclude))


@dataclass(frozen=True)
class Service:
    """A container started beside a test, reachable from it by its name. Made by :func:`service`.

    Attributes:
        image: The Docker image, or an image the pipeline builds (its tag once built).
        command: A shell command to run instead of the image's own, or ``None``.
        ready: A shell command that exits 0 inside the service once it is ready (e.g.
            ``"pg_isready"``), or a TCP port it is ready once it listens on.
        env: Environment variables of the service.
    """

    image: str | Image
    command: str | None
    ready: str | int
    env: Mapping[str, str] | None = None

    def _request(self) -> dict[str, Any]:
        request: dict[str, Any] = {"image": self.image}
        if self.command is not None:
            request["command"] = self.command
        if self.env:
            request["env"] = dict(self.env)
        request["ready"] = {"port": self.ready} if isinstance(self.ready, int) else {"command": self.ready}
        return request


def service(image: str | Image, *, ready: str | int, command: str | None = None, env: Mapping[str, str] | None = None) -> Service:
    """A service for a test: ``services={"db": bt.service(image="postgres:16", ready="pg_isready")}``.

    The worker starts it on a network private to the test's run, waits until it is ready (a
    Docker health check that runs ``ready``, or that sees a socket listening on the port
    ``ready``: the wait is Docker's health_status event, not a poll), then starts the test's
    command, which reaches it by its name (``db:5432``). Its output is part of the test's,
    each line labelled ``[db]``. It is removed when the test ends, whatever happened.

    Args:
        image: The Docker image, or an image the pipeline builds (:meth:`Stage.image`): a test
            with the service waits for it, as for its own ``image=``, and fails when it failed.
        ready: A shell command that exits 0 once the service is ready, or a TCP port number.
            A port check needs ``grep`` in the image (it reads ``/proc/net/tcp``).
        command: A shell command to run instead of the image's own.
        env: Environment variables of the service.

    Returns:
        The service.

    Raises:
        ValueError: ``ready`` is neither a command nor a port from 1 to 65535.
    """
    if isinstance(ready, bool) or not (isinstance(ready, str) and ready.strip() or isinstance(ready, int) and 0 < ready < 65536):
        raise ValueError(f"ready must be a shell command (e.g. 'pg_isready') or a TCP port from 1 to 65535, not {ready!r}")
    return Service(image, command, ready, None if env is None else dict(env))


@dataclass(frozen=True)
class BuildOutput:
    """One output of a build, to be mounted exactly at an input path. Made by :meth:`Build.artifact`.

    Attributes:
        build: The build.
        path: The output's container path in the build, e.g. ``"/out"``.
    """

    build: Build
    path: str


Input = Union[Local, "Build", BuildOutput, str]
"""What a task's input may be: a :class:`Local`, a build's handle (all its outputs, each at the
input path + its own path), a :class:`BuildOutput`, or an artifact id ``"sha256:..."``."""


@dataclass(frozen=True)
class TestResult:
    """One test case of one attempt of a test, as its ``results`` file reported it.

    Attributes:
        attempt: Which attempt of the test it comes from, counting from 1.
        case: The test case, as :func:`bettertest.parse_results` read it.
    """

    __test__ = False  # not a test class, though its name says so to test runners

    attempt: int
    case: TestCase


@dataclass
class _Attempt:
    """One run of a task's command, and what its results file held."""

    number: int
    # The pipeline's clock when the worker started the command (or answered from its cache).
    started: float | None = None
    duration: float = 0.0
    result: Result | None = None
    error: str | None = None
    cases: list[TestCase] = field(default_factory=list)
    # The pipeline's clock when the worker said the attempt waits for a slot.
    queued: float | None = None

    @property
    def ran(self) -> bool:
        return self.started is not None

    @property
    def failed_cases(self) -> list[TestCase]:
        return [case for case in self.cases if case.status == "failed"]

    @property
    def status(self) -> str:
        ok = self.result is not None and self.result.ok and self.error is None and not self.failed_cases
        return "passed" if ok else "failed"


class Task:
    """The handle of a task: a test, or (as :class:`Build`) a build. Made by :meth:`Stage.test`.

    Its attributes change while it runs; after its stage's ``with`` block they are final. A test
    with ``retries`` may run its command more than once: ``status``, ``exit_code``, ``error`` and
    ``result`` are those of its last attempt.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        stage: Stage,
        name: str,
        kind: str,
        image: str | Image,
        command: str,
        env: Mapping[str, str] | None,
        workdir: str | None,
        timeout: float | None,
        *,
        results: str | None = None,
        artifacts: Sequence[str] = (),
        retries: int = 0,
        secrets: Mapping[str, Secret] | None = None,
        user: str | None = None,
        run_options: Mapping[str, Any] | None = None,
        suite: str | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._stage = stage
        self.name: str = name
        """The task's name, unique in its pipeline."""
        self.kind: str = kind
        """``"build"`` or ``"test"``."""
        # An image the pipeline builds is known once its task is over.
        self._image_task = image if isinstance(image, Image) else None
        self.image: str = image if isinstance(image, str) else f"(the image {image.name!r})"
        """The Docker image it runs in; for an image the pipeline builds, its tag once built."""
        self.command: str = command
        """The shell command it runs."""
        self._env = None if env is None else dict(env)
        self._workdir = workdir
        self._timeout = timeout
        self._results = results
        self._kept = tuple(artifacts)
        self.suite: str = suite or name
        """What its cases' ids begin with: ``suite=``, or its name. History and quarantine are by ``SUITE/CASE``."""
        self._retries = retries
        self._secrets = _check_secrets(secrets)
        self._user = user
        self._run_options = {k: v for k, v in (run_options or {}).items() if v is not None}
        self._status = "running"
        self._result: Result | None = None
        self._error: str | None = None
        self._duration: float | None = None
        self._waited = 0.0  # seconds it waited: for its image, a slot of the worker, a dependency cache
        self._waited_for: list[str] = []  # what it waited for, in the order it first did
        self._attempts = 0
        self._line_open = False  # its output so far ends inside a line
        self._test_results: list[TestResult] = []
        self._quarantined = False
        self._started = pipeline._clock()
        self._done = threading.Event()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._stage.name}/{self.name} {self._status}>"

    @property
    def stage(self) -> str:
        """The name of the task's stage."""
        return self._stage.name

    @property
    def status(self) -> str:
        """``"running"``, then ``"passed"``, ``"failed"`` or ``"skipped"`` (an earlier stage failed)."""
        return self._status

    @property
    def result(self) -> Result | None:
        """The worker's result of the last attempt; ``None`` while running, for a skipped task, or when
        it could not start."""
        return self._result

    @property
    def exit_code(self) -> int | None:
        """The command's exit code; ``None`` when no command ran (skipped, cached, or could not start)."""
        if self._result is None or self._result.cached:
            return None
        return self._result.exit_code

    @property
    def error(self) -> str | None:
        """Why the task failed other than by a plain non-zero exit code (an input that could not be
        sent, a timeout, a missing output, missing or unreadable results, a worker that refused
        it), or ``None``."""
        return self._error

    @property
    def cached(self) -> bool:
        """True for a build the worker answered from its cache: nothing ran."""
        return self._result is not None and self._result.cached

    @property
    def duration(self) -> float | None:
        """Seconds from the call to the end, as the pipedef saw them, without the time it waited
        (for the image it runs in, a free slot of the worker, a dependency cache another run
        held); ``None`` while running."""
        return self._duration

    @property
    def attempts(self) -> int:
        """How many times the command started (or a build was answered from the cache): 1, more
        for a retried test, 0 when it never started (skipped, an input that could not be sent, a
        missing image)."""
        return self._attempts

    @property
    def flaky(self) -> bool:
        """True for a test that passed after a failed attempt, or whose results show a case that
        failed and then passed on a rerun (gotestsum ``--rerun-fails``, Surefire)."""
        if self._status != "passed":
            return False
        return self._attempts > 1 or any(r.case.flaky for r in self._test_results if r.attempt == self._attempts)

    @property
    def quarantined(self) -> bool:
        """True for a failed test whose failure is quarantined (see :class:`Pipeline`): it does not
        fail its stage or the pipeline, though its status stays ``"failed"``."""
        return self._quarantined

    @property
    def test_results(self) -> tuple[TestResult, ...]:
        """The test cases its ``results`` file reported, of every attempt in turn, in the file's order."""
        return tuple(self._test_results)

    def wait(self) -> str:
        """Wait until the task is over.

        Returns:
            Its status: ``"passed"``, ``"failed"`` or ``"skipped"``.
        """
        self._done.wait()
        return self._status

    def _end(
        self, status: str, result: Result | None, error: str | None, failed_cases: Sequence[TestCase] = ()
    ) -> None:
        """Record the end and report it, unless the task was ended already; call with the pipeline's lock held.

        ``failed_cases`` are the failed test cases of the last attempt, which decide whether a
        failed test is quarantined.
        """
        if self._status != "running":
            return
        self._status = status
        self._result = result
        self._error = error
        self._duration = self._pipeline._clock() - self._started - self._waited
        self._quarantined = status == "failed" and self.kind == "test" and self._covered(failed_cases, error)
        self._pipeline._emit(
            {
                "event": "task_end",
                "stage": self.stage,
                "task": self.name,
                "kind": self.kind,
                "status": status,
                "exit_code": self.exit_code,
                "duration_ms": 0 if status == "skipped" else round(self._duration * 1000),
                "waited_ms": round(self._waited * 1000),
                "waited_for": list(self._waited_for),
                "cached": self.cached,
                "error": error,
                "attempts": self._attempts,
                "flaky": self.flaky,
                "quarantined": self._quarantined,
            }
        )
        self._done.set()

    def _covered(self, failed_cases: Sequence[TestCase], error: str | None) -> bool:
        """Whether the quarantine covers a failure: the task is quarantined, or every failed test
        case is and nothing else went wrong (an error, or a failure without a failed case, is
        the task's own, which only quarantining TASK covers)."""
        quarantine = self._pipeline.quarantine
        if self.name in quarantine or self.suite in quarantine:
            return True
        if not failed_cases or error is not None:
            return False
        return all(f"{self.suite}/{case.name}" in quarantine for case in failed_cases)

    def _run(self, locals_: Mapping[str, Local], inputs: dict[str, str]) -> None:
        pipeline = self._pipeline
        try:
            if self._image_task is not None:
                built = self._image_task
                if self._wait_for(built, "its image") != "passed" or built.tag is None:
                    raise _InputError(f"its image {built.name!r} {built.status}: there is no image to run it in")
                self.image = built.tag
            for name, request in (self._run_options.get("services") or {}).items():
                if isinstance(request["image"], Image):
                    built = request["image"]
                    if self._wait_for(built, f"the image of service {name}") != "passed" or built.tag is None:
                        raise _InputError(f"the image {built.name!r} of its service {name!r} {built.status}: there is no image to run it in")
                    request["image"] = built.tag
            for path, value in locals_.items():
                try:
                    inputs[path] = pipeline._upload(value).id
                except BettertestError as e:
                    raise _InputError(f"input {path}: {e}") from e
        except Exception as e:
            with pipeline._lock:
                self._end("failed", None, _task_error(e))
            return
        for number in itertools.count(1):
            if number > 1:
                # Where one attempt's output ends and the next one's starts, in the output itself:
                # wherever it is shown (the report, the boss's log and raw log), the marker is there.
                self._on_output("stdout", ("\n" if self._line_open else "") + f"── attempt {number} of {self._retries + 1} ──\n")
            attempt = self._attempt(number, inputs)
            with pipeline._lock:
                if self._status != "running":
                    return  # ended meanwhile (the pipedef stopped): nothing more to report or run
                if attempt.ran:
                    self._report(attempt)
                # An attempt that never started (a refused request, a missing image) is not
                # retried: nothing of the test ran, and another attempt would meet the same refusal.
                if not (attempt.ran and attempt.status == "failed" and number <= self._retries):
                    self._end(attempt.status, attempt.result, attempt.error, attempt.failed_cases)
                    return

    def _attempt(self, number: int, inputs: Mapping[str, str]) -> _Attempt:
        """Run the command once and read its results; every problem ends up in the attempt, none is raised."""
        pipeline = self._pipeline
        attempt = _Attempt(number)

        def on_event(name: str, data: Mapping[str, Any]) -> None:
            # The worker holds a run back for a free slot (queued), then for the dependency
            # caches another run holds (cache_wait): all of it is waiting, not work.
            if name in ("queued", "cache_wait"):
                self._waiting(f"the cache {data.get('name')}" if name == "cache_wait" else "a slot")
                if attempt.queued is None:
                    attempt.queued = pipeline._clock()
            if name in ("started", "cached"):
                attempt.started = pipeline._clock()
                if attempt.queued is not None:
                    self._waited += attempt.started - attempt.queued
                with pipeline._lock:
                    if self._status == "running":
                        self._attempts = number
            self._on_event(name, data)

        try:
            attempt.result = pipeline.worker.run(
                self.image,
                self.command,
                workdir=self._workdir,
                timeout=self._timeout,
                inputs=inputs,
                secrets=self._secrets,
                user=self._user,
                **self._run_options,
                **self._run_args(number),
                on_output=self._on_output,
                on_event=on_event,
            )
            attempt.error = attempt.result.error
            if attempt.error is not None:
                # The worker names its API's field; the pipedef's argument is timeout=.
                attempt.error = attempt.error.replace(
                    "raise timeout_s if the command needs longer", "raise the task's timeout= if the command needs longer"
                )
            if self._results is not None:
                self._read_results(attempt, attempt.result, self._results)
        except Exception as e:
            attempt.error = _task_error(e)
        if attempt.started is not None:
            attempt.duration = pipeline._clock() - attempt.started
        return attempt

    @property
    def artifacts(self) -> tuple[Artifact, ...]:
        """What its last attempt kept of its ``artifacts=`` paths, in their order; a path the
        command did not make is left out. Empty before the attempt ends."""
        if self._result is None:
            return ()
        return tuple(a for path in self._kept for a in self._result.results if a.path == path)

    def _run_args(self, number: int) -> dict[str, Any]:
        """The arguments of ``Worker.run`` that differ between a test and a build."""
        # The worker collects results and kept artifacts alike, whatever the exit code: both
        # are its "results" paths, each named once.
        collect = list(dict.fromkeys(([] if self._results is None else [self._results]) + list(self._kept)))
        # BETTERTEST_ATTEMPT is information for the command, as CI=true is: which attempt this is.
        return {
            "env": {**(self._env or {}), "BETTERTEST_ATTEMPT": str(number)},
            "results": collect or None,
        }

    def _read_results(self, attempt: _Attempt, result: Result, path: str) -> None:
        """Put the test cases of the attempt's results into it; results that are missing or cannot
        be read fail the attempt, unless it failed already."""
        try:
            stored = [a for a in result.results if a.path == path]
            files = self._fetch_results(stored[0]) if stored else []
            for where, data in files:
                try:
                    attempt.cases.extend(parse_results(data))
                except ResultsError as e:
                    raise ResultsError(f"results at {where}: {e}") from e
        except BettertestError as e:
            problem = str(e)
        else:
            if files or not result.ok:
                return  # a command that failed need not have written its results
            inside = " (no *.xml or *.json file in it)" if stored else ""
            problem = (
                f"the test made no results at {path}{inside}: "
                "make the command write its JUnit XML or go test -json output there"
            )
        if attempt.error is None:
            attempt.error = problem

    def _fetch_results(self, artifact: Artifact) -> list[tuple[str, bytes]]:
        """Download a results artifact: its results files as (container path, content), in order."""
        with tempfile.TemporaryDirectory(prefix="bettertest-results-") as tmp:
            try:
                root = _fetch(self._pipeline.worker, artifact, os.path.join(tmp, "results"), os.path.join(tmp, "artifact.tar"))
            except BettertestError as e:
                raise ArtifactError(f"results at {artifact.path}: {e}") from e
            files: list[tuple[str, bytes]] = []
            for where, local_path in _results_files(root, artifact.path):
                with open(local_path, "rb") as f:
                    files.append((where, f.read()))
            return files

    def _report(self, attempt: _Attempt) -> None:
        """Report an attempt's test cases and, for a test, the attempt; call with the pipeline's lock held."""
        if self.kind != "test":
            return
        base = {"stage": self.stage, "task": self.name, "attempt": attempt.number}
        for case in attempt.cases:
            self._test_results.append(TestResult(attempt.number, case))
            if case.flaky:
                # Its failed runs in the report come first, as the attempts they were: the boss
                # then sees a failure and a pass of one case in one run, its strongest sign of a flake.
                self._pipeline._emit(
                    {
                        "event": "test_case",
                        **base,
                        "suite": self.suite,
                        "name": case.name,
                        "status": "failed",
                        "duration_ms": 0,
                        "output": case.output,
                    }
                )
            self._pipeline._emit(
                {
                    "event": "test_case",
                    **base,
                    "suite": self.suite,
                    "name": case.name,
                    "status": case.status,
                    "duration_ms": round(case.duration * 1000),
                    "output": case.output,
                }
            )
        self._pipeline._emit(
            {
                "event": "task_attempt",
                **base,
                "status": attempt.status,
                "exit_code": None if attempt.result is None else attempt.result.exit_code,
                "duration_ms": round(attempt.duration * 1000),
                "error": attempt.error,
            }
        )

    def _waiting(self, what: str) -> None:
        if what not in self._waited_for:
            self._waited_for.append(what)

    def _wait_for(self, image: Image, what: str) -> str:
        """Wait for an image the pipeline builds, counting the wait as waiting, not work."""
        if image._done.is_set():
            return image.status
        self._waiting(what)
        began = self._pipeline._clock()
        status = image.wait()
        self._waited += self._pipeline._clock() - began
        return status

    def _on_output(self, stream: str, text: str) -> None:
        if text:
            self._line_open = not text.endswith("\n")
        self._pipeline._emit_locked(
            {"event": "task_output", "stage": self.stage, "task": self.name, "stream": stream, "text": text}
        )

    def _on_event(self, name: str, data: Mapping[str, Any]) -> None:
        event: dict[str, Any] = {"stage": self.stage, "task": self.name}
        if name == "uncached":
            event.update(event="task_uncached", key=data["key"], reason=data["reason"])
        elif name == "cached":
            event.update(event="task_cached", key=data["key"])
        elif name == "artifact" or (name == "result" and data["path"] in self._kept):
            event.update(event="task_artifact", path=data["path"], id=data["id"], size=data["size"])
        else:
            return
        self._pipeline._emit_locked(event)


def _task_error(e: Exception) -> str:
    """What an exception that ended a task's work says on the task.

    A BettertestError says it all. Anything else is a bug: it is reported on the task rather than
    lost in the task's thread, and its traceback goes to stderr.
    """
    if isinstance(e, BettertestError):
        return str(e)
    traceback.print_exception(e)
    return "".join(traceback.format_exception_only(type(e), e)).strip()


def _fetch(worker: Worker, artifact: Artifact, dest: str, archive: str) -> str:
    """Download an artifact into the file ``archive`` and unpack it at ``dest`` + its path, which is returned."""
    worker.download_artifact(artifact.id, archive)
    unpack(archive, dest, artifact.path)
    return os.path.join(dest, artifact.path.lstrip("/"))


def _results_files(root: str, path: str) -> list[tuple[str, str]]:
    """The results files of unpacked results, as (container path, local path) pairs.

    A file is itself. A directory gives every regular file under it whose name ends in ``.xml``
    or ``.json``, sorted by relative path; symlinks are not followed, so nothing outside it is read.
    """
    if os.path.islink(root):
        return []  # an artifact's top entry is a file or a directory: never read through a link
    if not os.path.isdir(root):
        return [(path, root)]
    found: list[tuple[str, str]] = []
    for parent, _, names in os.walk(root):
        for name in names:
            local_path = os.path.join(parent, name)
            if name.endswith((".xml", ".json")) and not os.path.islink(local_path) and os.path.isfile(local_path):
                found.append((os.path.relpath(local_path, root), local_path))
    found.sort()
    return [(posixpath.join(path, relative), local_path) for relative, local_path in found]


class Build(Task):
    """The handle of a build, made by :meth:`Stage.build`: its outputs can be inputs of later stages' tasks, or be downloaded.

    ``inputs={"/app": build}`` mounts each output at ``/app`` + its path (``/out`` at ``/app/out``);
    ``inputs={"/bin/tool": build.artifact("/usr/bin/tool")}`` mounts one output exactly there.
    """

    def __init__(self, *args: Any, outputs: Sequence[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outputs: tuple[str, ...] = tuple(outputs)
        """The container paths the build makes."""

    @property
    def artifacts(self) -> tuple[Artifact, ...]:
        """The stored outputs, one per output path once the build passed; empty before."""
        return () if self._result is None else self._result.artifacts

    def artifact(self, path: str) -> BuildOutput:
        """One output, to be mounted exactly at an input path: ``inputs={"/bin/hello": app.artifact("/out/hello")}``.

        Args:
            path: One of the build's output paths.

        Returns:
            The output.

        Raises:
            PipelineError: ``path`` is not one of the build's outputs.
        """
        if path not in self.outputs:
            raise PipelineError(
                f"the build {self.name!r} has no output {path!r}: its outputs are {', '.join(self.outputs) or 'none'}"
            )
        return BuildOutput(self, path)

    def download(self, dest: str | os.PathLike[str]) -> list[str]:
        """Bring the build's outputs to this machine: each output goes to ``dest`` + its path.

        Waits for the build if it is still running. ``/out`` lands at ``dest/out``; existing
        files there are replaced. Archives are unpacked safely: nothing is written outside ``dest``.

        Args:
            dest: A local directory; made when missing.

        Returns:
            The local path of each output, in the order of the build's outputs.

        Raises:
            PipelineError: The build did not pass, so it has no outputs.
            ArtifactError: An output could not be fetched or unpacked.
            WorkerUnreachable: No connection could be made.
        """
        status = self.wait()
        if status != "passed":
            raise PipelineError(f"the build {self.name!r} {status}: it has no outputs to download")
        dest = os.fspath(dest)
        os.makedirs(dest, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="bettertest-download-") as tmp:
            archive = os.path.join(tmp, "artifact.tar")
            return [_fetch(self._pipeline.worker, artifact, dest, archive) for artifact in self.artifacts]

    def _run_args(self, number: int) -> dict[str, Any]:
        return {"env": self._env, "outputs": self.outputs, "cache": True, "name": f"{self._pipeline.name}/{self.name}"}


class _InputError(BettertestError):
    pass


class Image(Task):
    """The handle of an image the pipeline builds, made by :meth:`Stage.image`: pass it as a
    task's ``image=``.

    The worker builds it from a Dockerfile in a local context directory, through Docker's build
    API, and keeps it under a tag derived from what it is made of (``bettertest/built:KEY``, the
    key being a digest of the context, the Dockerfile's path, the build args and the IDs of its
    FROM images): an image built before is answered at once, with no build. A task that runs in
    it waits for it, so it may be in the same stage.
    """

    def __init__(self, pipeline: Pipeline, stage: Stage, name: str, context: Local, dockerfile: str,
                 build_args: Mapping[str, str] | None) -> None:
        super().__init__(pipeline, stage, name, "image", dockerfile, f"docker build -f {dockerfile} {context.path}", None, None, None)
        self._context = context
        self._dockerfile = dockerfile
        self._build_args = dict(build_args or {})
        self.tag: str | None = None
        """The image's tag on the worker, once built: ``bettertest/built:KEY``."""

    def _run(self, locals_: Mapping[str, Local], inputs: dict[str, str]) -> None:
        pipeline = self._pipeline
        reason: list[str] = []

        def on_event(name: str, data: Mapping[str, Any]) -> None:
            if name == "uncached":
                reason.append(str(data.get("reason", "")))
            self._on_event(name, data)

        try:
            try:
                context = pipeline._upload(self._context).id
            except BettertestError as e:
                raise _InputError(f"context {self._context.path}: {e}") from e
            started = pipeline._clock()
            built = pipeline.worker.build_image(
                context, dockerfile=self._dockerfile, build_args=self._build_args,
                name=f"{pipeline.name}/{self.name}", on_output=self._on_output, on_event=on_event,
            )
        except Exception as e:
            with pipeline._lock:
                self._end("failed", None, _task_error(e))
            return
        with pipeline._lock:
            self.tag = built.tag
            self._attempts = 1
            result = Result(exit_code=0, stdout="", stderr="", duration=pipeline._clock() - started,
                            cached=built.cached, cache_key=built.key, cache_reason=built.reason)
            if built.cached:
                pipeline._emit({"event": "task_cached", "stage": self.stage, "task": self.name, "key": built.key})
            self._end("passed", result, None)


class Stage:
    """A stage: use it as ``with p.stage("name") as s:``; its tasks run in parallel.

    Leaving the ``with`` block waits for every task. When an earlier stage failed, the stage is
    skipped: its tasks are reported and returned as handles, but nothing runs.
    """

    def __init__(self, pipeline: Pipeline, name: str) -> None:
        self._pipeline = pipeline
        self.name: str = name
        """The stage's name."""
        self.tasks: list[Task] = []
        """Its tasks, in the order they were called."""
        self._status = "pending"
        self._skipped = False
        self._started = 0.0

    def __repr__(self) -> str:
        return f"<Stage {self.name} {self._status}>"

    @property
    def status(self) -> str:
        """``"pending"``, ``"running"``, then ``"passed"``, ``"failed"`` or ``"skipped"``."""
        return self._status

    def __enter__(self) -> Stage:
        p = self._pipeline
        with p._lock:
            if self._status != "pending":
                raise PipelineError(f"the stage {self.name!r} was entered before: make a new stage with p.stage(...)")
            if p._current is not None:
                raise PipelineError(
                    f"the stage {self.name!r} was entered inside the stage {p._current.name!r}: stages run one after another, not nested"
                )
            if p._ended:
                raise PipelineError(f"the pipeline {p.name!r} has ended: no stage can start")
            p._current = self
            p.stages.append(self)
            self._skipped = p._failed
            self._status = "running"
            self._started = p._clock()
            p._emit({"event": "stage_start", "stage": self.name})
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        p = self._pipeline
        # On an exception in the block the tasks that started still finish and are reported; on a
        # KeyboardInterrupt (or SystemExit) the user wants out now: the running tasks are abandoned,
        # and their connections close with the process, which makes the worker kill them.
        interrupted: BaseException | None = None
        if exc_type is None or issubclass(exc_type, Exception):
            try:
                for task in self.tasks:
                    task.wait()
            except BaseException as e:  # a KeyboardInterrupt while waiting: the same, one step later
                interrupted = e
        stopped_by = exc_type if interrupted is None else type(interrupted)
        with p._lock:
            for task in self.tasks:
                if stopped_by is not None:
                    task._end("failed", None, f"the pipedef stopped ({stopped_by.__name__}) before the task ended")
            if self._skipped:
                self._status = "skipped"
            elif stopped_by is not None or any(t.status == "failed" and not t.quarantined for t in self.tasks):
                self._status = "failed"
                p._failed = True
            else:
                self._status = "passed"
            p._current = None
            event: dict[str, Any] = {"event": "stage_end", "stage": self.name, "status": self._status}
            event["duration_ms"] = round((p._clock() - self._started) * 1000)
            p._emit(event)
        if interrupted is not None:
            raise interrupted

    def image(
        self,
        name: str,
        *,
        context: Local,
        dockerfile: str = "Dockerfile",
        build_args: Mapping[str, str] | None = None,
    ) -> Image:
        """Start building an image on the worker, to run later tasks in: ``image=img``.

        ``img = s.image("ci", context=bt.local("ci"))`` builds ``ci/Dockerfile``; a task given
        ``image=img`` (in this stage or a later one) waits for it and runs in it. The worker
        caches it like a build: by the context's content, the Dockerfile's path, the build args
        and the IDs of the images its FROM lines name, which must be on the worker (it never
        pulls: build them in an earlier image, or load them there). The build's progress is the
        task's output.

        Args:
            name: The task's name, unique in the pipeline.
            context: The local directory sent as the build's context, ``bt.local(PATH)``.
            dockerfile: The Dockerfile's path inside the context.
            build_args: Values of the Dockerfile's ``ARG``s; part of the key.

        Returns:
            The image's handle, at once; it builds in the background.

        Raises:
            PipelineError: Called outside this stage's ``with`` block, a name used before, or a
                context that is not ``bt.local(PATH)``.
        """
        if not isinstance(context, Local):
            raise PipelineError(
                f"the context of the image {name!r} is a {type(context).__name__}: pass bt.local(PATH), the directory holding the Dockerfile"
            )
        if not isinstance(dockerfile, str) or not dockerfile or dockerfile.startswith("/") or posixpath.normpath(dockerfile) != dockerfile or dockerfile.startswith(".."):
            raise PipelineError(f"dockerfile {dockerfile!r} must be a relative path inside the context, e.g. 'Dockerfile' or 'ci/Dockerfile'")
        task = Image(self._pipeline, self, name, context, dockerfile, build_args)
        self._start(task, {})
        return task

    def build(
        self,
        name: str,
        *,
        image: str | Image,
        command: str,
        inputs: Mapping[str, Input] | None = None,
        outputs: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        timeout: float | None = None,
        secrets: Mapping[str, Secret] | None = None,
        user: str | None = None,
        pids: int | None = None,
        memory: int | None = None,
        cpus: float | None = None,
        reach_host: bool = False,
        caches: Mapping[str, str] | None = None,
    ) -> Build:
        """Start a build: a run the worker caches by its image, command, env, workdir, inputs and outputs.

        A build whose key the worker knows is answered at once from its cache, with the outputs
        it stored then; nothing runs. Otherwise the report says why it was not cached.

        Args:
            name: The task's name, unique in the pipeline; the worker remembers the build as
                ``PIPELINE/NAME``.
            image: The Docker image, or an image the pipeline builds (see :meth:`image`).
            command: A shell command line, run as ``sh -c command``.
            inputs: What to mount read-only, by container path; see :data:`Input`.
            outputs: Container paths (files or directories) to keep as artifacts when the command
                exits 0; a path the command did not make fails the build.
            env: Environment variables for the command.
            workdir: An absolute path in the container to run the command in.
            timeout: Seconds the command may run.
            secrets: Secrets for the command (see :meth:`test`). The worker's cache key holds
                where they go, not their values: a rotated secret does not rebuild, so a build
                must not put a secret into its outputs.
            user: Who the command runs as (see :meth:`test`); part of the cache key.
            pids: The most processes at once (see :meth:`test`).
            memory: The most bytes of memory (see :meth:`test`).
            cpus: The most CPU time, in CPUs (see :meth:`test`).
            reach_host: Reach the worker's host's services (see :meth:`test`).
            caches: Dependency caches (see :meth:`test`); never part of the cache key.

        Returns:
            The build's handle, at once; the build runs in the background.

        Raises:
            PipelineError: Called outside this stage's ``with`` block, a name used before, or an
                input that cannot be used (see :data:`Input`).
            ValueError: ``timeout`` is not positive, or ``secrets`` is not as described.
        """
        task = Build(self._pipeline, self, name, "build", image, command, env, workdir, timeout, outputs=outputs, secrets=secrets,
                     user=user, run_options={"pids": pids, "memory": memory, "cpus": cpus, "reach_host": reach_host or None,
                                             "caches": _check_caches(caches)})
        self._start(task, inputs or {})
        return task

    def test(
        self,
        name: str,
        *,
        image: str | Image,
        command: str,
        inputs: Mapping[str, Input] | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        timeout: float | None = None,
        results: str | None = None,
        artifacts: Sequence[str] = (),
        retries: int = 0,
        suite: str | None = None,
        secrets: Mapping[str, Secret] | None = None,
        user: str | None = None,
        pids: int | None = None,
        memory: int | None = None,
        cpus: float | None = None,
        reach_host: bool = False,
        services: Mapping[str, Service] | None = None,
        caches: Mapping[str, str] | None = None,
    ) -> Task:
        """Start a test: a run that always runs, never from a cache.

        An attempt passes when its command exits 0 and its results (if any) hold no failed test
        case. The test's status is that of its last attempt.

        Args:
            name: The task's name, unique in the pipeline.
            image: The Docker image, or an image the pipeline builds (see :meth:`image`).
            command: A shell command line, run as ``sh -c command``. It sees ``BETTERTEST_ATTEMPT``
                in its environment: ``"1"``, then ``"2"``... when it is retried.
            inputs: What to mount read-only, by container path; see :data:`Input`.
            env: Environment variables for the command.
            workdir: An absolute path in the container to run the command in.
            timeout: Seconds the command may run.
            results: The container path of the test's report, a file or a directory, e.g.
                ``"/results/junit.xml"``. After each attempt, whatever its exit code, it is
                fetched and read with :func:`bettertest.parse_results` (JUnit XML or ``go test
                -json`` output); of a directory, every ``*.xml`` and ``*.json`` file under it, in
                the order of their paths. Each test case is reported and kept in
                :attr:`Task.test_results`. A failed case fails the attempt, as do results that
                cannot be read, or none at all when the command exited 0.
            artifacts: Container paths (files or directories) to keep, e.g. ``["/coverage",
                "/screenshots"]``. After each attempt, whatever its exit code (a failing test's
                screenshots are the ones you want), each path the command made is stored on the
                worker as an artifact, reported like a build's outputs and kept in
                :attr:`Task.artifacts`; the boss lists them on the task's page, to download. A
                path the command did not make is skipped.
            retries: How many more times a failed attempt is run, e.g. 2 for at most 3
                attempts. A test that passes after a failed attempt passes and is flaky
                (:attr:`Task.flaky`). An attempt that could not start (the worker refused it,
                the image is missing) is not run again.
            suite: The suite its test cases belong to; the task's name by default. A case's id
                is ``SUITE/CASE``: its history, flakiness and quarantine follow it, so shards
                that share a suite (``s.test("unit-1", ..., suite="unit")``,
                ``s.test("unit-2", ..., suite="unit")``) keep a case's history when it moves
                between them. Quarantining ``SUITE`` covers all their cases.
            secrets: Secrets for the command, from :func:`bettertest.secret`, by where they go:
                a container path makes a read-only file there (mode 0400), ``"env:NAME"`` an
                environment variable, e.g. ``{"/run/secrets/deploy": bt.secret("deploy_key"),
                "env:REGISTRY_PASSWORD": bt.secret("registry")}``. Their values are masked
                (``***``) in the output and the report.
            user: Who the command runs as, ``NAME`` or ``UID[:GID]`` of the image, e.g.
                ``"65534"`` (nobody); root by default.
            pids: The most processes and threads the command may have at once; the
                worker's ``--pids-limit`` by default. A task may narrow a worker's limits,
                never widen them.
            memory: The most bytes of memory it may use, ``/tmp`` included; the worker's
                ``--memory`` by default.
            cpus: The most CPU time it may use, in CPUs; the worker's ``--cpus`` by default.
                A task that runs into a limit fails with an error that names it.
            reach_host: Run where the command reaches services on the worker's host (Docker's
                default network); the worker refuses it unless started with
                ``--allow-reach-host``.
            services: Containers beside the test, by the name its command reaches them by,
                from :func:`bettertest.service`: ``{"db": bt.service(image="postgres:16",
                ready="pg_isready")}``. The command starts once every service is ready.
            caches: Named dependency caches, by container path, e.g. ``{"/root/.cache/pip":
                "pip"}``: directories that persist on the worker across runs, mounted
                read-write. One run at a time holds a cache; another waits for it. The worker
                counts them in its ``--cache-size``; ``DELETE /caches/NAME`` clears one.

        Returns:
            The test's handle, at once; the test runs in the background.

        Raises:
            PipelineError: Called outside this stage's ``with`` block, a name used before, or an
                input that cannot be used (see :data:`Input`).
            ValueError: ``timeout`` is not positive, ``results`` or one of ``artifacts`` is not
                an absolute container path, ``artifacts`` names a path twice, ``retries`` is not a whole number, 0 or more, or ``secrets`` is not as
                described.
        """
        if results is not None and not _container_path(results):
            raise ValueError(
                "results must be the absolute container path of the test's results file or directory, "
                f"e.g. '/results/junit.xml', not {results!r}"
            )
        if isinstance(artifacts, str):
            raise ValueError(f"artifacts must be a list of container paths, e.g. ['/coverage'], not the string {artifacts!r}")
        for path in artifacts:
            if not _container_path(path):
                raise ValueError(
                    f"each of artifacts must be the absolute container path of a file or directory, e.g. '/coverage', not {path!r}"
                )
        if len(set(artifacts)) != len(artifacts):
            raise ValueError(f"artifacts names a path twice: name each once, not {list(artifacts)!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be how many more times to run a failed test: 0 or more, e.g. 2, not {retries!r}")
        if suite is not None:
            _check_name("suite", suite)
        task = Task(
            self._pipeline, self, name, "test", image, command, env, workdir, timeout,
            results=results, artifacts=tuple(artifacts), retries=retries, secrets=secrets, suite=suite,
            user=user, run_options={"pids": pids, "memory": memory, "cpus": cpus, "reach_host": reach_host or None,
                                    "services": _check_services(services), "caches": _check_caches(caches)},
        )
        self._start(task, inputs or {})
        return task

    def _start(self, task: Task, inputs: Mapping[str, Input]) -> None:
        p = self._pipeline
        if task._timeout is not None and not task._timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {task._timeout!r}")
        _check_name("task", task.name)
        with p._lock:
            if p._current is not self:
                raise PipelineError(
                    f"the task {task.name!r} was called outside the with block of its stage {self.name!r}: "
                    f"call it inside `with p.stage({self.name!r}) as s:`"
                )
            for stage in p.stages:
                for other in stage.tasks:
                    if other.name == task.name:
                        raise PipelineError(
                            f"the pipeline {p.name!r} already has a task named {task.name!r} (in the stage {stage.name!r}): "
                            "task names must be unique, since the worker remembers builds by pipeline and task name"
                        )
            locals_, ids = self._inputs(task, inputs)
            for s in task._secrets.values():
                p._masker.add(s.reveal())
            self.tasks.append(task)
            p._emit(
                {
                    "event": "task_start",
                    "stage": self.name,
                    "task": task.name,
                    "kind": task.kind,
                    "image": task.image,
                    "command": task.command,
                    "retries": task._retries,
                }
            )
            if self._skipped:
                task._end("skipped", None, None)
                return
        threading.Thread(target=task._run, args=(locals_, ids), name=f"bettertest {task.name}", daemon=True).start()

    def _inputs(self, task: Task, inputs: Mapping[str, Input]) -> tuple[dict[str, Local], dict[str, str]]:
        """Sort inputs into local paths (sent when the task starts) and artifact ids (known now)."""
        locals_: dict[str, Local] = {}
        ids: dict[str, str] = {}
        for path, value in inputs.items():
            if isinstance(value, Local):
                locals_[path] = value
            elif isinstance(value, str):
                if not re.fullmatch(r"sha256:[0-9a-f]{64}", value):
                    raise PipelineError(
                        f"the input {path} of the task {task.name!r} is the string {value!r}, which is not an artifact id: "
                        f"to send a local file or directory, pass bt.local({value!r})"
                    )
                ids[path] = value
            elif isinstance(value, Build):
                self._check_build(task, path, value)
                for artifact in value.artifacts:
                    ids[path.rstrip("/") + artifact.path] = artifact.id
            elif isinstance(value, BuildOutput):
                self._check_build(task, path, value.build)
                if not self._skipped:
                    found = [a.id for a in value.build.artifacts if a.path == value.path]
                    if not found:
                        raise PipelineError(f"the build {value.build.name!r} stored no artifact for its output {value.path}")
                    ids[path] = found[0]
            elif isinstance(value, Task):
                raise PipelineError(
                    f"the input {path} of the task {task.name!r} is the test {value.name!r}: "
                    "only a build has outputs to mount"
                )
            else:
                raise PipelineError(
                    f"the input {path} of the task {task.name!r} is a {type(value).__name__}: pass bt.local(PATH), "
                    "a build's handle, build.artifact(PATH) or an artifact id 'sha256:...'"
                )
        return locals_, ids

    def _check_build(self, task: Task, path: str, build: Build) -> None:
        if build._stage is self:
            raise PipelineError(
                f"the task {task.name!r} uses the build {build.name!r} of its own stage {self.name!r} as its input {path}: "
                "a build's outputs exist once its stage is over; move the task to a later stage"
            )
        if not self._skipped and build.status != "passed":
            raise PipelineError(
                f"the task {task.name!r} uses the build {build.name!r} as its input {path}, "
                f"but that build {build.status}: it has no outputs"
            )


def _container_path(path: object) -> bool:
    """Whether path is a clean absolute container path other than ``/``."""
    return isinstance(path, str) and path.startswith("/") and path != "/" and posixpath.normpath(path) == path


def _check_name(what: str, name: str) -> None:
    if not isinstance(name, str) or not name or "/" in name or not name.isprintable():
        raise PipelineError(f"{name!r} cannot be a {what} name: use a non-empty, printable name without '/'")


def _check_secrets(secrets: Mapping[str, Secret] | None) -> dict[str, Secret]:
    """Check a task's ``secrets=``: container paths or ``env:NAME``, each to a Secret."""
    checked: dict[str, Secret] = {}
    for target, value in (secrets or {}).items():
        if not isinstance(value, Secret):
            raise ValueError(
                f"the secret for {target!r} is a {type(value).__name__}: pass bt.secret(NAME), so that its value is masked"
            )
        env = target.removeprefix("env:") if isinstance(target, str) else ""
        if isinstance(target, str) and target.startswith("env:"):
            if not (env.isidentifier() and env.isascii()):
                raise ValueError(f"{target!r} does not name an environment variable: use env:NAME, e.g. 'env:TOKEN'")
        elif not (isinstance(target, str) and target.startswith("/") and target != "/" and posixpath.normpath(target) == target):
            raise ValueError(
                f"{target!r} is not where a secret can go: use an absolute container path, e.g. '/run/secrets/key', or 'env:NAME'"
            )
        checked[target] = value
    return checked


def _check_services(services: Mapping[str, Service] | None) -> dict[str, dict[str, Any]] | None:
    """Check a test's ``services=`` and return them as the worker's API takes them."""
    if not services:
        return None
    checked: dict[str, dict[str, Any]] = {}
    for name, value in services.items():
        if not isinstance(value, Service):
            raise ValueError(f"the service {name!r} is a {type(value).__name__}: pass bt.service(image=..., ready=...)")
        if not (isinstance(name, str) and re.fullmatch(r"[a-z][a-z0-9-]{0,30}", name)):
            raise ValueError(f"{name!r} cannot name a service: it is the host name the test reaches it by, e.g. 'db'")
        checked[name] = value._request()
    return checked


def _check_caches(caches: Mapping[str, str] | None) -> dict[str, str] | None:
    """Check a task's ``caches=``: container paths to cache names."""
    if not caches:
        return None
    for target, name in caches.items():
        if not (isinstance(target, str) and target.startswith("/") and target != "/" and posixpath.normpath(target) == target):
            raise ValueError(f"{target!r} is not where a cache can go: use an absolute container path, e.g. '/root/.cache/pip'")
        if not (isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name)):
            raise ValueError(f"{name!r} cannot name a cache: use letters, digits, '.', '_' and '-', e.g. 'pip'")
    return dict(caches)


def _check_test(test: str) -> str:
    """Check the name of a quarantined test, ``TASK`` or ``TASK/CASE``, and return it."""
    task, slash, case = test.partition("/") if isinstance(test, str) else ("", "", "")
    if not task or not task.isprintable() or (slash and not case):
        raise PipelineError(
            f"{test!r} cannot be quarantined: name a test as TASK or TASK/CASE, e.g. 'unit' or 'unit/TestLogin'"
        )
    return test


class Pipeline:
    """A pipeline run: stages in order, a report of everything, a status at the end.

    Made by :func:`pipeline`, which also ends it when the script ends. A Pipeline made directly
    (e.g. in a test, with a reporter of your own) is ended by calling :meth:`end`.

    Quarantine: a failed test is *quarantined*, and does not fail its stage or the pipeline
    (its status stays ``"failed"``), when the test itself is quarantined (``TASK``), or when every
    test case that failed in its last attempt is (``TASK/CASE``, the case's name as its results
    name it) and nothing else went wrong in that attempt.
    """

    def __init__(
        self,
        name: str,
        worker: Worker,
        reporter: Reporter,
        *,
        quarantine: Iterable[str] = (),
        secrets: Iterable[Secret] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Start a pipeline run and report its start.

        Args:
            name: The pipeline's name; builds are remembered by the worker as ``NAME/TASK``.
            worker: The worker every task runs on.
            reporter: Where the events go, e.g. a :class:`bettertest.HumanReporter`.
            quarantine: The quarantined tests, each ``TASK`` or ``TASK/CASE`` (split at the first
                '/': a case's name may hold more).
            secrets: The pipeline's secrets, whose values the report masks (``***``) wherever
                they appear: output, errors, test cases. The secrets its tasks are given are
                masked too.
            clock: Seconds from a monotonic clock, for durations; injectable for tests.

        Raises:
            PipelineError: The name is empty or holds a '/', or a quarantined test is not
                ``TASK`` or ``TASK/CASE``.
        """
        _check_name("pipeline", name)
        self.name: str = name
        """The pipeline's name."""
        self.worker: Worker = worker
        """The worker its tasks run on."""
        self.quarantine: frozenset[str] = frozenset(_check_test(test) for test in quarantine)
        """The quarantined tests, each ``TASK`` or ``TASK/CASE``."""
        self.commit: str | None = None
        """The commit being tested, when the boss runs the pipeline from a repository (``--commit``)."""
        self.ref: str | None = None
        """The ref that commit was pushed to, e.g. ``refs/heads/main`` (``--ref``); None run by hand."""
        self.stages: list[Stage] = []
        """The stages entered so far, in order."""
        self._masker = Masker(s.reveal() for s in secrets)
        self._reporter: Reporter = MaskingReporter(reporter, self._masker)
        self._clock = clock
        # One lock orders the state changes and the events, so the report never interleaves.
        self._lock = threading.RLock()
        self._current: Stage | None = None
        self._failed = False
        self._ended = False
        self._status = "running"
        self._uploads: dict[Local, Future[Upload]] = {}
        self._started = clock()
        self._emit({"event": "pipeline_start", "pipeline": name, "worker": worker.url})

    def __repr__(self) -> str:
        return f"<Pipeline {self.name} {self._status}>"

    @property
    def status(self) -> str:
        """``"running"`` until it ends, then ``"passed"`` or ``"failed"``."""
        return self._status

    @property
    def tasks(self) -> list[Task]:
        """Every task of every stage, in the order they were called."""
        return [task for stage in self.stages for task in stage.tasks]

    def stage(self, name: str) -> Stage:
        """A new stage, to be entered with ``with``.

        Args:
            name: The stage's name.

        Returns:
            The stage; it starts when its ``with`` block is entered.

        Raises:
            PipelineError: The name is empty or holds a '/'.
        """
        _check_name("stage", name)
        return Stage(self, name)

    def end(self, error: BaseException | None = None) -> str:
        """End the run and report its summary. Only the first call does anything.

        Args:
            error: An exception the script raised, which fails the pipeline.

        Returns:
            The pipeline's status, ``"passed"`` or ``"failed"``.
        """
        with self._lock:
            if self._ended:
                return self._status
            self._ended = True
            for task in self.tasks:
                task._end("failed", None, "the pipedef ended before the task did")
            message = None
            if error is not None:
                text = str(error)
                message = f"the pipedef raised {type(error).__name__}" + (f": {text}" if text else "")
            self._status = "failed" if self._failed or error is not None else "passed"
            tasks = self.tasks
            self._emit(
                {
                    "event": "pipeline_end",
                    "pipeline": self.name,
                    "status": self._status,
                    "duration_ms": round((self._clock() - self._started) * 1000),
                    "passed": sum(t.status == "passed" for t in tasks),
                    "failed": sum(t.status == "failed" for t in tasks),
                    "skipped": sum(t.status == "skipped" for t in tasks),
                    "cached": sum(t.cached for t in tasks),
                    "quarantined": sum(t.quarantined for t in tasks),
                    "error": message,
                }
            )
            return self._status

    def _emit(self, event: dict[str, Any]) -> None:
        self._reporter.emit(event)

    def _emit_locked(self, event: dict[str, Any]) -> None:
        with self._lock:
            if not self._ended:
                self._reporter.emit(event)

    def _upload(self, value: Local) -> Upload:
        """Send a local path to the worker, once per pipeline run however many tasks ask for it."""
        with self._lock:
            future = self._uploads.get(value)
            owner = future is None
            if future is None:
                future = self._uploads[value] = Future()
        if owner:
            try:
                future.set_result(self.worker.upload_local(value.path, skip=SourceFilter(value.path, value.exclude).skip))
            except BaseException as e:
                future.set_exception(e)
        return future.result()


def _quarantine_argument(value: str) -> str:
    try:
        return _check_test(value)
    except PipelineError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


# The pipelines made by pipeline(), ended when the script ends.
_pipelines: list[Pipeline] = []
_uncaught: BaseException | None = None
_previous_excepthook = sys.excepthook


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    # Python calls this for an exception that ends the script, before the atexit handlers run:
    # the only place where the end of the script can learn that it failed.
    global _uncaught
    _uncaught = exc
    _previous_excepthook(exc_type, exc, tb)


def _at_exit() -> None:
    # A pipeline has no end call: the script's end is its end. atexit handlers run last in first
    # out, and this one is registered when bettertest is imported, so it runs after those of the
    # script. sys.exit() inside an atexit handler does not change the exit status, so a failed
    # pipeline ends the process with os._exit(1), after flushing what the report wrote (os._exit
    # flushes nothing). A passed pipeline leaves the status alone: the script's own sys.exit(N) stands.
    failed = False
    for p in _pipelines:
        if p.end(_uncaught) == "failed":
            failed = True
    if failed:
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            if stream is not None:
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
        os._exit(1)


atexit.register(_at_exit)


def pipeline(name: str, argv: Sequence[str] | None = None) -> Pipeline:
    """Start a pipeline run on the worker named on the command line.

    Reads ``--worker URL``, ``--token-file PATH``, ``--report human|jsonl`` (default
    ``human``), ``--secrets-dir DIR`` (the pipeline's secrets, see :func:`bettertest.secret`;
    their values are masked in the report), ``--quarantine TEST`` (repeated; ``TASK`` or ``TASK/CASE``, see :class:`Pipeline`;
    the boss passes the pipeline's quarantined tests) and, when the boss runs it from a
    repository, ``--commit SHA --ref REF`` (``p.commit``, ``p.ref``); it leaves other arguments
    alone. The run ends when the script ends: the summary (human) or ``pipeline_end`` line
    (jsonl) is written then, and a failed pipeline makes the process exit with status 1. With
    ``--report jsonl``, stdout carries only the report's lines (see docs/report-jsonl.md); the
    script's own ``print`` output goes to stderr.

    Args:
        name: The pipeline's name; builds are remembered by the worker as ``NAME/TASK``.
        argv: The arguments to read; ``sys.argv[1:]`` by default.

    Returns:
        The pipeline, started.

    Raises:
        SystemExit: With status 2 and a usage message on stderr when a flag is missing or wrong.
        PipelineError: The name is empty or holds a '/'.
    """
    global _previous_excepthook
    _check_name("pipeline", name)
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--report", choices=("human", "jsonl"), default="human", help="how to report: human (default) or jsonl"
        )
        # The boss adds these when the pipeline comes from a repository.
        parser.add_argument("--commit", metavar="SHA", help="the commit being tested (set by the boss)")
        parser.add_argument("--ref", metavar="REF", help="the ref it was pushed to, e.g. refs/heads/main (set by the boss)")
        parser.add_argument(
            "--quarantine", metavar="TEST", action="append", default=[], type=_quarantine_argument,
            help="a test whose failure does not fail the run: TASK or TASK/CASE; repeatable (set by the boss)",
        )
        parser.add_argument("--secrets-dir", metavar="DIR", help="a directory of secret files, one per secret (set by the boss)")

    worker, args = parse_command_line(argv, add_arguments)
    try:
        secrets = read_secrets_dir(args.secrets_dir)
    except BettertestError as e:  # a command-line mistake: it ends as parse_command_line's do
        sys.stderr.write(f"{os.path.basename(sys.argv[0]) or 'pipedef'}: error: {e}\n")
        raise SystemExit(2) from e
    reporter: Reporter
    if args.report == "jsonl":
        sys.stdout.flush()
        reporter = JsonlReporter(sys.stdout.buffer)
        # The report owns stdout, so a reader can take every line as an event.
        sys.stdout = sys.stderr
    else:
        reporter = HumanReporter(sys.stdout)
    if sys.excepthook is not _excepthook:
        _previous_excepthook = sys.excepthook
        sys.excepthook = _excepthook
    p = Pipeline(name, worker, reporter, quarantine=args.quarantine, secrets=secrets.values())
    p.commit, p.ref = args.commit, args.ref
    _pipelines.append(p)
    return p
