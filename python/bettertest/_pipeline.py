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
import os
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Union

from ._artifacts import Artifact, unpack
from ._connect import parse_command_line
from ._report import HumanReporter, JsonlReporter, Reporter
from ._worker import Result, Upload, Worker
from .errors import BettertestError, PipelineError

__all__ = ["Build", "BuildOutput", "Input", "Local", "Pipeline", "Stage", "Task", "local", "pipeline"]


@dataclass(frozen=True)
class Local:
    """A file or directory on the machine running the pipedef, to be used as a task's input.

    Made by :func:`local`. It is packed and sent to the worker when a task that uses it starts,
    once per pipeline however many tasks use it, and only when the worker does not already hold
    the same content.

    Attributes:
        path: The absolute local path.
    """

    path: str


def local(path: str | os.PathLike[str]) -> Local:
    """Name a local file or directory as a task's input: ``inputs={"/src": bt.local("src")}``.

    Args:
        path: The file or directory; a relative path is relative to the current directory now.
            It is read when a task using it starts; a path that does not exist then fails that task.

    Returns:
        The input.
    """
    return Local(os.path.abspath(path))


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


class Task:
    """The handle of a task: a test, or (as :class:`Build`) a build. Made by :meth:`Stage.test`.

    Its attributes change while it runs; after its stage's ``with`` block they are final.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        stage: Stage,
        name: str,
        kind: str,
        image: str,
        command: str,
        env: Mapping[str, str] | None,
        workdir: str | None,
        timeout: float | None,
    ) -> None:
        self._pipeline = pipeline
        self._stage = stage
        self.name: str = name
        self.commit: str | None = None
        """The commit being tested, when the boss runs the pipeline from a repository (``--commit``)."""
        self.ref: str | None = None
        """The ref that commit was pushed to, e.g. ``refs/heads/main`` (``--ref``); None run by hand."""
        """The task's name, unique in its pipeline."""
        self.kind: str = kind
        """``"build"`` or ``"test"``."""
        self.image: str = image
        """The Docker image it runs in."""
        self.command: str = command
        """The shell command it runs."""
        self._env = None if env is None else dict(env)
        self._workdir = workdir
        self._timeout = timeout
        self._status = "running"
        self._result: Result | None = None
        self._error: str | None = None
        self._duration: float | None = None
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
        """The worker's result; ``None`` while running, for a skipped task, or when it could not start."""
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
        sent, a timeout, a missing output, a worker that refused it), or ``None``."""
        return self._error

    @property
    def cached(self) -> bool:
        """True for a build the worker answered from its cache: nothing ran."""
        return self._result is not None and self._result.cached

    @property
    def duration(self) -> float | None:
        """Seconds from the call to the end, as the pipedef saw them; ``None`` while running."""
        return self._duration

    def wait(self) -> str:
        """Wait until the task is over.

        Returns:
            Its status: ``"passed"``, ``"failed"`` or ``"skipped"``.
        """
        self._done.wait()
        return self._status

    def _end(self, status: str, result: Result | None, error: str | None) -> None:
        """Record the end and report it, unless the task was ended already; call with the pipeline's lock held."""
        if self._status != "running":
            return
        self._status = status
        self._result = result
        self._error = error
        self._duration = self._pipeline._clock() - self._started
        self._pipeline._emit(
            {
                "event": "task_end",
                "stage": self.stage,
                "task": self.name,
                "kind": self.kind,
                "status": status,
                "exit_code": self.exit_code,
                "duration_ms": 0 if status == "skipped" else round(self._duration * 1000),
                "cached": self.cached,
                "error": error,
            }
        )
        self._done.set()

    def _run(self, locals_: Mapping[str, Local], inputs: dict[str, str]) -> None:
        pipeline = self._pipeline
        error: str | None = None
        result: Result | None = None
        try:
            for path, value in locals_.items():
                try:
                    inputs[path] = pipeline._upload(value).id
                except BettertestError as e:
                    raise _InputError(f"input {path}: {e}") from e
            result = pipeline.worker.run(
                self.image,
                self.command,
                env=self._env,
                workdir=self._workdir,
                timeout=self._timeout,
                inputs=inputs,
                **self._build_args(),
                on_output=self._on_output,
                on_event=self._on_event,
            )
        except BettertestError as e:
            error = str(e)
        except Exception as e:  # a bug: report it on the task rather than lose it in a thread
            error = "".join(traceback.format_exception_only(type(e), e)).strip()
            traceback.print_exc()
        with pipeline._lock:
            if result is not None:
                error = result.error
                self._end("passed" if result.ok else "failed", result, error)
            else:
                self._end("failed", None, error)

    def _build_args(self) -> dict[str, Any]:
        return {}

    def _on_output(self, stream: str, text: str) -> None:
        self._pipeline._emit_locked(
            {"event": "task_output", "stage": self.stage, "task": self.name, "stream": stream, "text": text}
        )

    def _on_event(self, name: str, data: Mapping[str, Any]) -> None:
        event: dict[str, Any] = {"stage": self.stage, "task": self.name}
        if name == "uncached":
            event.update(event="task_uncached", key=data["key"], reason=data["reason"])
        elif name == "cached":
            event.update(event="task_cached", key=data["key"])
        elif name == "artifact":
            event.update(event="task_artifact", path=data["path"], id=data["id"], size=data["size"])
        else:
            return
        self._pipeline._emit_locked(event)


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
        paths = []
        with tempfile.TemporaryDirectory(prefix="bettertest-download-") as tmp:
            archive = os.path.join(tmp, "artifact.tar")
            for artifact in self.artifacts:
                self._pipeline.worker.download_artifact(artifact.id, archive)
                unpack(archive, dest, artifact.path)
                paths.append(os.path.join(dest, artifact.path.lstrip("/")))
        return paths

    def _build_args(self) -> dict[str, Any]:
        return {"outputs": self.outputs, "cache": True, "name": f"{self._pipeline.name}/{self.name}"}


class _InputError(BettertestError):
    pass


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
            elif stopped_by is not None or any(t.status == "failed" for t in self.tasks):
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

    def build(
        self,
        name: str,
        *,
        image: str,
        command: str,
        inputs: Mapping[str, Input] | None = None,
        outputs: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        timeout: float | None = None,
    ) -> Build:
        """Start a build: a run the worker caches by its image, command, env, workdir, inputs and outputs.

        A build whose key the worker knows is answered at once from its cache, with the outputs
        it stored then; nothing runs. Otherwise the report says why it was not cached.

        Args:
            name: The task's name, unique in the pipeline; the worker remembers the build as
                ``PIPELINE/NAME``.
            image: The Docker image.
            command: A shell command line, run as ``sh -c command``.
            inputs: What to mount read-only, by container path; see :data:`Input`.
            outputs: Container paths (files or directories) to keep as artifacts when the command
                exits 0; a path the command did not make fails the build.
            env: Environment variables for the command.
            workdir: An absolute path in the container to run the command in.
            timeout: Seconds the command may run.

        Returns:
            The build's handle, at once; the build runs in the background.

        Raises:
            PipelineError: Called outside this stage's ``with`` block, a name used before, or an
                input that cannot be used (see :data:`Input`).
            ValueError: ``timeout`` is not positive.
        """
        task = Build(self._pipeline, self, name, "build", image, command, env, workdir, timeout, outputs=outputs)
        self._start(task, inputs or {})
        return task

    def test(
        self,
        name: str,
        *,
        image: str,
        command: str,
        inputs: Mapping[str, Input] | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        timeout: float | None = None,
    ) -> Task:
        """Start a test: a run that always runs, never from a cache, and passes when it exits 0.

        Args:
            name: The task's name, unique in the pipeline.
            image: The Docker image.
            command: A shell command line, run as ``sh -c command``.
            inputs: What to mount read-only, by container path; see :data:`Input`.
            env: Environment variables for the command.
            workdir: An absolute path in the container to run the command in.
            timeout: Seconds the command may run.

        Returns:
            The test's handle, at once; the test runs in the background.

        Raises:
            PipelineError: Called outside this stage's ``with`` block, a name used before, or an
                input that cannot be used (see :data:`Input`).
            ValueError: ``timeout`` is not positive.
        """
        task = Task(self._pipeline, self, name, "test", image, command, env, workdir, timeout)
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
            self.tasks.append(task)
            p._emit(
                {
                    "event": "task_start",
                    "stage": self.name,
                    "task": task.name,
                    "kind": task.kind,
                    "image": task.image,
                    "command": task.command,
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


def _check_name(what: str, name: str) -> None:
    if not isinstance(name, str) or not name or "/" in name or not name.isprintable():
        raise PipelineError(f"{name!r} cannot be a {what} name: use a non-empty, printable name without '/'")


class Pipeline:
    """A pipeline run: stages in order, a report of everything, a status at the end.

    Made by :func:`pipeline`, which also ends it when the script ends. A Pipeline made directly
    (e.g. in a test, with a reporter of your own) is ended by calling :meth:`end`.
    """

    def __init__(self, name: str, worker: Worker, reporter: Reporter, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Start a pipeline run and report its start.

        Args:
            name: The pipeline's name; builds are remembered by the worker as ``NAME/TASK``.
            worker: The worker every task runs on.
            reporter: Where the events go, e.g. a :class:`bettertest.HumanReporter`.
            clock: Seconds from a monotonic clock, for durations; injectable for tests.

        Raises:
            PipelineError: The name is empty or holds a '/'.
        """
        _check_name("pipeline", name)
        self.name: str = name
        """The pipeline's name."""
        self.worker: Worker = worker
        """The worker its tasks run on."""
        self.stages: list[Stage] = []
        """The stages entered so far, in order."""
        self._reporter = reporter
        self._clock = clock
        # One lock orders the state changes and the events, so the report never interleaves.
        self._lock = threading.RLock()
        self._current: Stage | None = None
        self._failed = False
        self._ended = False
        self._status = "running"
        self._uploads: dict[str, Future[Upload]] = {}
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
            future = self._uploads.get(value.path)
            owner = future is None
            if future is None:
                future = self._uploads[value.path] = Future()
        if owner:
            try:
                future.set_result(self.worker.upload_local(value.path))
            except BaseException as e:
                future.set_exception(e)
        return future.result()


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
    ``human``) and, when the boss runs it from a repository, ``--commit SHA --ref REF``
    (``p.commit``, ``p.ref``); it leaves other arguments alone. The run ends when the script ends: the summary
    (human) or ``pipeline_end`` line (jsonl) is written then, and a failed pipeline makes the
    process exit with status 1. With ``--report jsonl``, stdout carries only the report's lines
    (see docs/report-jsonl.md); the script's own ``print`` output goes to stderr.

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

    worker, args = parse_command_line(argv, add_arguments)
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
    p = Pipeline(name, worker, reporter)
    p.commit, p.ref = args.commit, args.ref
    _pipelines.append(p)
    return p
