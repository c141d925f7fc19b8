"""Pipelines end to end: pipedef scripts run as their own processes against a real worker and Docker.

Each test writes a small pipedef to a temporary directory and runs it as
``python3 pipedef.py --worker URL --token-file F --report jsonl``, so the command line, the end
of the script (atexit), the exit status and the report are the real ones. The in-process tests at
the end need no worker.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import unittest
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bettertest as bt
from bettertest import HumanReporter, Pipeline, PipelineError, Worker
from tests.workerproc import IMAGE, WorkerProcess, require_binary

PYTHON_DIR = str(Path(__file__).resolve().parents[1])
EXAMPLES = Path(PYTHON_DIR) / "examples"
SHA256 = re.compile(r"\Asha256:[0-9a-f]{64}\Z")
TIME = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")

# docs/report-jsonl.md: the fields of every event besides "event" and "time", and their JSON types.
TASK = {"stage": str, "task": str}
SCHEMA: dict[str, dict[str, Any]] = {
    "pipeline_start": {"pipeline": str, "worker": str},
    "stage_start": {"stage": str},
    "task_start": {**TASK, "kind": str, "image": str, "command": str, "retries": int},
    "task_uncached": {**TASK, "key": str, "reason": str},
    "task_cached": {**TASK, "key": str},
    "task_output": {**TASK, "stream": str, "text": str},
    "task_artifact": {**TASK, "path": str, "id": str, "size": int},
    "test_case": {**TASK, "attempt": int, "suite": str, "name": str, "status": str, "duration_ms": int, "output": str},
    "task_attempt": {**TASK, "attempt": int, "status": str, "exit_code": (int, type(None)), "duration_ms": int,
                     "error": (str, type(None))},
    "task_end": {**TASK, "kind": str, "status": str, "exit_code": (int, type(None)), "duration_ms": int, "waited_ms": int,
                 "waited_for": list, "cached": bool, "error": (str, type(None)), "attempts": int, "flaky": bool, "quarantined": bool},
    "stage_end": {"stage": str, "status": str, "duration_ms": int},
    "pipeline_end": {"pipeline": str, "status": str, "duration_ms": int, "passed": int, "failed": int,
                     "skipped": int, "cached": int, "quarantined": int, "error": (str, type(None))},
}
ENUMS = {"kind": {"build", "test", "image"}, "stream": {"stdout", "stderr"}}
STATUSES = {
    "test_case": {"passed", "failed", "skipped"},
    "task_attempt": {"passed", "failed"},
    "task_end": {"passed", "failed", "skipped"},
    "stage_end": {"passed", "failed", "skipped"},
    "pipeline_end": {"passed", "failed"},
}


@dataclass
class Run:
    code: int
    events: list[dict[str, Any]]
    stdout: str
    stderr: str


def check_schema(test: unittest.TestCase, events: list[dict[str, Any]]) -> None:
    """Every line has exactly the documented fields, of the documented types and values."""
    for event in events:
        name = event.get("event")
        test.assertIn(name, SCHEMA, event)
        fields = SCHEMA[name]
        test.assertEqual(set(event), {"event", "time", *fields}, event)
        test.assertRegex(event["time"], TIME)
        for field, kind in fields.items():
            value = event[field]
            test.assertIsInstance(value, kind, (field, event))
            if kind is int:
                test.assertNotIsInstance(value, bool, (field, event))
            if field in ENUMS:
                test.assertIn(value, ENUMS[field], event)
            if field in ("key", "id"):
                test.assertRegex(value, SHA256)
        if name in STATUSES:
            test.assertIn(event["status"], STATUSES[name], event)
    test.assertEqual(events[0]["event"], "pipeline_start")
    test.assertEqual(events[-1]["event"], "pipeline_end")


def shape(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events without what changes from run to run, in an order that parallelism cannot change.

    Times and durations go (after a check of their form), but for a test case's, which comes
    from its results file; cache keys and artifact ids become "KEY" and "ID" (after a check of
    theirs). Within a stage, each task's events are gathered in the order the tasks were called,
    since parallel tasks interleave freely.
    """
    result: list[dict[str, Any]] = []
    tasks: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        varying = ("time",) if event["event"] == "test_case" else ("time", "duration_ms", "waited_ms", "waited_for")
        event = {k: v for k, v in event.items() if k not in varying}
        for field, placeholder in (("key", "KEY"), ("id", "ID")):
            if field in event:
                assert SHA256.match(event[field]), event
                event[field] = placeholder
        if "task" in event:
            tasks.setdefault(event["task"], []).append(event)
        else:
            if event["event"] == "stage_end":
                for task_events in tasks.values():
                    result.extend(task_events)
                tasks = {}
            result.append(event)
    return result


def first(events: list[dict[str, Any]], name: str, task: str | None = None) -> dict[str, Any]:
    return next(e for e in events if e["event"] == name and (task is None or e.get("task") == task))


def output(events: list[dict[str, Any]], task: str, stream: str = "stdout") -> str:
    return "".join(e["text"] for e in events if e["event"] == "task_output" and e["task"] == task and e["stream"] == stream)


def start(stage: str, task: str, kind: str, command: str, image: str = IMAGE, retries: int = 0) -> dict[str, Any]:
    return {"event": "task_start", "stage": stage, "task": task, "kind": kind, "image": image, "command": command,
            "retries": retries}


def end(stage: str, task: str, kind: str, status: str, exit_code: int | None, cached: bool = False,
        error: str | None = None, attempts: int | None = None, flaky: bool = False,
        quarantined: bool = False) -> dict[str, Any]:
    """A task_end; ``attempts`` is 0 for a skipped task and 1 for the others unless given."""
    if attempts is None:
        attempts = 0 if status == "skipped" else 1
    return {"event": "task_end", "stage": stage, "task": task, "kind": kind, "status": status, "exit_code": exit_code,
            "cached": cached, "error": error, "attempts": attempts, "flaky": flaky, "quarantined": quarantined}


def attempt(stage: str, task: str, number: int, status: str, exit_code: int | None,
            error: str | None = None) -> dict[str, Any]:
    return {"event": "task_attempt", "stage": stage, "task": task, "attempt": number, "status": status,
            "exit_code": exit_code, "error": error}


def out(stage: str, task: str, text: str, stream: str = "stdout") -> dict[str, Any]:
    return {"event": "task_output", "stage": stage, "task": task, "stream": stream, "text": text}


def pipeline_end(name: str, status: str, passed: int, failed: int, skipped: int, cached: int,
                 error: str | None = None, quarantined: int = 0) -> dict[str, Any]:
    return {"event": "pipeline_end", "pipeline": name, "status": status, "passed": passed, "failed": failed,
            "skipped": skipped, "cached": cached, "quarantined": quarantined, "error": error}


class PipedefTestCase(unittest.TestCase):
    maxDiff = None
    worker_args: tuple[str, ...] = ("--max-parallel", "4")
    proc: WorkerProcess

    @classmethod
    def setUpClass(cls) -> None:
        require_binary()
        cls.proc = WorkerProcess(*cls.worker_args)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.proc.stop()

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = Path(tmp.name)

    def write(self, name: str, content: str | bytes, mode: int = 0o644) -> Path:
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode()
        path.write_bytes(content)
        os.chmod(path, mode)
        return path

    def run_pipedef(self, source: str, *args: str, report: str = "jsonl", script: Path | None = None) -> Run:
        if script is None:
            script = self.write("pipedef.py", textwrap.dedent(source))
        proc = subprocess.run(
            [sys.executable, str(script), "--worker", self.proc.url, "--token-file", self.proc.token_file,
             "--report", report, *args],
            cwd=self.dir,
            env={**os.environ, "PYTHONPATH": PYTHON_DIR},
            capture_output=True,
            text=True,
            timeout=300,
        )
        events = [json.loads(line) for line in proc.stdout.splitlines()] if report == "jsonl" else []
        if report == "jsonl":
            check_schema(self, events)
        return Run(proc.returncode, events, proc.stdout, proc.stderr)


class StagesTest(PipedefTestCase):
    def test_a_failure_skips_the_later_stages(self) -> None:
        run = self.run_pipedef("""
            import bettertest as bt

            p = bt.pipeline("skipping")
            with p.stage("one") as s:
                s.test("fine", image="bettertest/base:bookworm", command="echo out >&2")
                s.test("broken", image="bettertest/base:bookworm", command="exit 3")
            with p.stage("two") as s:
                s.build("make", image="bettertest/base:bookworm", command="mkdir /out", outputs=["/out"])
                s.test("check", image="bettertest/base:bookworm", command="true")
            print("the script goes on; its prints go to stderr")
        """)
        self.assertEqual((run.code, run.stderr), (1, "the script goes on; its prints go to stderr\n"))
        self.assertEqual(
            shape(run.events),
            [
                {"event": "pipeline_start", "pipeline": "skipping", "worker": self.proc.url},
                {"event": "stage_start", "stage": "one"},
                start("one", "fine", "test", "echo out >&2"),
                out("one", "fine", "out\n", "stderr"),
                attempt("one", "fine", 1, "passed", 0),
                end("one", "fine", "test", "passed", 0),
                start("one", "broken", "test", "exit 3"),
                attempt("one", "broken", 1, "failed", 3),
                end("one", "broken", "test", "failed", 3),
                {"event": "stage_end", "stage": "one", "status": "failed"},
                {"event": "stage_start", "stage": "two"},
                start("two", "make", "build", "mkdir /out"),
                end("two", "make", "build", "skipped", None),
                start("two", "check", "test", "true"),
                end("two", "check", "test", "skipped", None),
                {"event": "stage_end", "stage": "two", "status": "skipped"},
                pipeline_end("skipping", "failed", passed=1, failed=1, skipped=2, cached=0),
            ],
        )

    def test_tasks_of_a_stage_run_in_parallel(self) -> None:
        # Each task prints the time (the containers share the host's clock) before and after its
        # sleep: the tasks overlap when each one started before the other ended.
        run = self.run_pipedef("""
            import bettertest as bt

            p = bt.pipeline("parallel")
            with p.stage("both") as s:
                for name in ("left", "right"):
                    s.test(name, image="bettertest/base:bookworm", command="date +%s%N; sleep 1; date +%s%N")
        """)
        self.assertEqual(run.code, 0, run.stderr)
        (left_start, left_end), (right_start, right_end) = (
            [int(line) for line in output(run.events, name).split()] for name in ("left", "right")
        )
        self.assertLess(left_start, right_end)
        self.assertLess(right_start, left_end)
        self.assertEqual(run.events[-1]["status"], "passed")

    def test_exit_status(self) -> None:
        source = """
            import sys
            import bettertest as bt

            p = bt.pipeline("status")
            with p.stage("one") as s:
                s.test("ok", image="bettertest/base:bookworm", command="true")
            {end}
        """
        for ending, code, status, error in [
            ("", 0, "passed", None),
            # A passed pipeline leaves the script's own exit status alone.
            ("sys.exit(3)", 3, "passed", None),
            ("raise RuntimeError('boom')", 1, "failed", "the pipedef raised RuntimeError: boom"),
        ]:
            with self.subTest(ending=ending):
                run = self.run_pipedef(source.format(end=ending))
                self.assertEqual(run.code, code, run.stderr)
                self.assertEqual(shape(run.events)[-1], pipeline_end("status", status, 1, 0, 0, 0, error))
                if error:
                    self.assertEqual(run.stderr.splitlines()[-1], "RuntimeError: boom")
                    self.assertEqual(run.stderr.splitlines()[0], "Traceback (most recent call last):")
                else:
                    self.assertEqual(run.stderr, "")

    def test_timeout(self) -> None:
        run = self.run_pipedef("""
            import bettertest as bt

            p = bt.pipeline("timeout")
            with p.stage("one") as s:
                s.test("slow", image="bettertest/base:bookworm", command="sleep 30", timeout=1)
        """)
        self.assertEqual(run.code, 1)
        error = "timed out after 1 s and was killed: raise the task's timeout= if the command needs longer"
        self.assertEqual(
            shape(run.events)[3:5],
            [attempt("one", "slow", 1, "failed", 137, error), end("one", "slow", "test", "failed", 137, error=error)],
        )

    def test_ctrl_c_completes_the_report_and_stops_the_run(self) -> None:
        script = self.write("pipedef.py", textwrap.dedent("""
            import bettertest as bt

            p = bt.pipeline("interrupted")
            with p.stage("one") as s:
                s.test("long", image="bettertest/base:bookworm", command="echo started; sleep 30")
        """))
        log_start = len(self.proc.log)
        proc = subprocess.Popen(
            [sys.executable, str(script), "--worker", self.proc.url, "--token-file", self.proc.token_file, "--report", "jsonl"],
            env={**os.environ, "PYTHONPATH": PYTHON_DIR}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert proc.stdout is not None and proc.stderr is not None
        events = []
        for line in proc.stdout:
            events.append(json.loads(line))
            if events[-1]["event"] == "task_output":
                proc.send_signal(signal.SIGINT)
        self.assertEqual(proc.wait(timeout=60), 1)
        proc.stdout.close()
        self.assertEqual(proc.stderr.read().splitlines()[-1], "KeyboardInterrupt")
        proc.stderr.close()
        check_schema(self, events)
        self.assertEqual(
            shape(events)[2:],
            [
                start("one", "long", "test", "echo started; sleep 30"),
                out("one", "long", "started\n"),
                end("one", "long", "test", "failed", None, error="the pipedef stopped (KeyboardInterrupt) before the task ended"),
                {"event": "stage_end", "stage": "one", "status": "failed"},
                pipeline_end("interrupted", "failed", 0, 1, 0, 0, "the pipedef raised KeyboardInterrupt"),
            ],
        )
        # The pipedef's connection closed with it, so the worker killed the container.
        line = self.proc.wait_for_log(b"outcome=cancelled", log_start)
        self.assertRegex(
            line.decode(),
            r'\Atime=\S+ level=INFO msg=run id=[0-9a-f]{12} name="" image=bettertest/base:bookworm exit=137 '
            r'outcome=cancelled duration=\S+ detail="the client disconnected"\n\Z',
        )

    def test_command_line_errors(self) -> None:
        script = self.write("pipedef.py", "import bettertest as bt\nbt.pipeline('p')\nprint('never')\n")
        for args, message in [
            ([], "pipedef.py: error: --worker is required: pass the worker URL, e.g. --worker http://host:9009"),
            (["--worker", "http://h:1"],
             "pipedef.py: error: --token-file is required: pass the path of a file holding the worker's token"),
            (["--worker", "http://h:1", "--token-file", self.proc.token_file, "--report", "xml"],
             "pipedef.py: error: argument --report: invalid choice: 'xml' (choose from 'human', 'jsonl')"),
            (["--worker", "http://h:1", "--token-file", self.proc.token_file, "--quarantine", "unit/"],
             "pipedef.py: error: argument --quarantine: 'unit/' cannot be quarantined: name a test as TASK or TASK/CASE, "
             "e.g. 'unit' or 'unit/TestLogin'"),
        ]:
            with self.subTest(args=args):
                proc = subprocess.run([sys.executable, str(script), *args], env={**os.environ, "PYTHONPATH": PYTHON_DIR},
                                      capture_output=True, text=True, timeout=60)
                self.assertEqual((proc.returncode, proc.stdout), (2, ""))
                self.assertEqual(
                    proc.stderr,
                    "usage: pipedef.py [--worker URL] [--token-file PATH] [--report {human,jsonl}]\n"
                    "                  [--commit SHA] [--ref REF] [--quarantine TEST]\n"
                    "                  [--secrets-dir DIR]\n" + message + "\n",
                )

    def test_human_report(self) -> None:
        self.write("src/a", "alpha\n")
        run = self.run_pipedef("""
            import bettertest as bt

            p = bt.pipeline("human")
            with p.stage("build") as s:
                app = s.build("copy", image="bettertest/base:bookworm", command="cp -r /src /out",
                              inputs={"/src": bt.local("src")}, outputs=["/out"])
            with p.stage("test") as s:
                s.test("bad", image="bettertest/base:bookworm", command="cat /app/out/a; echo oops; exit 2",
                       inputs={"/app": app})
            with p.stage("deploy") as s:
                s.test("ship", image="bettertest/base:bookworm", command="true")
        """, report="human")
        self.assertEqual(run.code, 1)
        # Durations differ from run to run; everything else is exact.
        text = re.sub(r"\b\d+\.\d\ds\b", "D", run.stdout)
        self.assertEqual(
            text,
            f"pipeline human on {self.proc.url}\n"
            "stage build\n"
            "  passed   copy  D  not cached: first run\n"
            "stage build passed in D\n"
            "stage test\n"
            "  failed   bad  D  exit code 2\n"
            "    | alpha\n"
            "    | oops\n"
            "stage test failed in D\n"
            "stage deploy\n"
            "  skipped  ship\n"
            "stage deploy skipped\n"
            "failed: bad\n"
            "pipeline human failed in D: 1 passed (0 cached), 1 failed, 1 skipped; test cases: 1 failed\n",
        )
        self.assertEqual(run.stderr, "")


BUILD_AND_TEST = """
    import bettertest as bt

    p = bt.pipeline("cache")
    with p.stage("build") as s:
        s.build("copy", image="bettertest/base:bookworm", command="cp -r /src /out && echo copied",
                inputs={"/src": bt.local("src")}, outputs=["/out"])
        s.test("check", image="bettertest/base:bookworm", command="cat /src/a", inputs={"/src": bt.local("src")})
"""


class CacheTest(PipedefTestCase):
    def expected(self, build: list[dict[str, Any]], text: str, cached: int) -> list[dict[str, Any]]:
        return [
            {"event": "pipeline_start", "pipeline": "cache", "worker": self.proc.url},
            {"event": "stage_start", "stage": "build"},
            start("build", "copy", "build", "cp -r /src /out && echo copied"),
            *build,
            start("build", "check", "test", "cat /src/a"),
            out("build", "check", text),
            attempt("build", "check", 1, "passed", 0),
            end("build", "check", "test", "passed", 0),
            {"event": "stage_end", "stage": "build", "status": "passed"},
            pipeline_end("cache", "passed", passed=2, failed=0, skipped=0, cached=cached),
        ]

    def test_builds_cache_and_tests_never_do(self) -> None:
        self.write("src/a", "one\n")
        built = [
            {"event": "task_uncached", "stage": "build", "task": "copy", "key": "KEY", "reason": "first run"},
            out("build", "copy", "copied\n"),
            {"event": "task_artifact", "stage": "build", "task": "copy", "path": "/out", "id": "ID", "size": 2560},
            end("build", "copy", "build", "passed", 0),
        ]
        one = self.run_pipedef(BUILD_AND_TEST)
        self.assertEqual((one.code, one.stderr), (0, ""))
        self.assertEqual(shape(one.events), self.expected(built, "one\n", 0))

        # The same again: the build comes from the cache, the test runs.
        second = self.run_pipedef(BUILD_AND_TEST)
        self.assertEqual(
            shape(second.events),
            self.expected(
                [
                    {"event": "task_cached", "stage": "build", "task": "copy", "key": "KEY"},
                    {"event": "task_artifact", "stage": "build", "task": "copy", "path": "/out", "id": "ID", "size": 2560},
                    end("build", "copy", "build", "passed", None, cached=True),
                ],
                "one\n",
                1,
            ),
        )
        self.assertEqual(first(second.events, "task_cached")["key"], first(one.events, "task_uncached")["key"])
        self.assertEqual(first(second.events, "task_artifact")["id"], first(one.events, "task_artifact")["id"])

        # A changed input: built again, and the report says why.
        self.write("src/a", "two\n")
        third = self.run_pipedef(BUILD_AND_TEST)
        changed = [dict(built[0], reason="input /src changed"), *built[1:]]
        self.assertEqual(shape(third.events), self.expected(changed, "two\n", 0))
        self.assertNotEqual(first(third.events, "task_uncached")["key"], first(one.events, "task_uncached")["key"])

    def test_local_inputs_are_sent_once(self) -> None:
        # The pipedef counts the uploads through the real Worker.upload_local: one per distinct
        # path and pipeline run, and content only when the worker does not have it.
        self.write("src/a", os.urandom(100_000))
        source = """
            import json, sys
            import bettertest as bt

            p = bt.pipeline("once")
            calls = []
            upload_local = p.worker.upload_local
            def counted(path, **kwargs):
                upload = upload_local(path, **kwargs)
                calls.append([path, upload.sent == upload.size, upload.sent])
                return upload
            p.worker.upload_local = counted
            with p.stage("one") as s:
                for i in range(3):
                    s.test(f"t{i}", image="bettertest/base:bookworm", command="cmp /a/a /b/a",
                           inputs={"/a": bt.local("src"), "/b": bt.local("./src/")})
            with p.stage("two") as s:
                s.test("again", image="bettertest/base:bookworm", command="true", inputs={"/src": bt.local("src")})
            print(json.dumps(calls))
        """
        one = self.run_pipedef(source)
        self.assertEqual(one.code, 0, one.stderr)
        src = str(self.dir / "src")
        size = bt.pack(src, io.BytesIO()).size
        self.assertEqual(json.loads(one.stderr), [[src, True, size]])
        second = self.run_pipedef(source)
        self.assertEqual(json.loads(second.stderr), [[src, False, 0]])
        self.assertEqual(shape(second.events)[-1], pipeline_end("once", "passed", 4, 0, 0, 0))


class RestartTest(PipedefTestCase):
    def test_the_cache_survives_a_restart(self) -> None:
        self.write("src/a", "kept\n")
        one = self.run_pipedef(BUILD_AND_TEST)
        self.assertEqual(first(one.events, "task_uncached")["reason"], "first run")
        self.proc.restart()
        second = self.run_pipedef(BUILD_AND_TEST)
        self.assertEqual(second.code, 0, second.stderr)
        self.assertEqual(
            [e["event"] for e in second.events if e.get("task") == "copy"],
            ["task_start", "task_cached", "task_artifact", "task_end"],
        )
        self.assertEqual(second.events[0]["worker"], self.proc.url)
        self.assertEqual(first(second.events, "task_cached")["key"], first(one.events, "task_uncached")["key"])


class HandlesTest(PipedefTestCase):
    def test_outputs_as_inputs_and_download(self) -> None:
        blob = os.urandom(3_000_000)
        self.write("src/blob", blob)
        run = self.run_pipedef("""
            import json, sys
            import bettertest as bt

            dest = sys.argv[sys.argv.index("--dest") + 1]
            p = bt.pipeline("handles")
            with p.stage("build") as s:
                app = s.build("make", image="bettertest/base:bookworm",
                              command="mkdir -p /out/bin && cp /src/blob /out/blob && printf '#!/bin/sh\\\\necho hello\\\\n' > /out/bin/hello"
                                      " && chmod 755 /out/bin/hello && ln -s bin/hello /out/hi && echo made > /notes",
                              inputs={"/src": bt.local("src")}, outputs=["/out", "/notes"])
            with p.stage("use") as s:
                s.test("whole", image="bettertest/base:bookworm", command="cmp /app/out/blob /src/blob && /app/out/hi && cat /app/notes",
                       inputs={"/app": app, "/src": bt.local("src")})
                s.test("one", image="bettertest/base:bookworm", command="ls /o; cat /n", inputs={"/o": app.artifact("/out"), "/n": app.artifact("/notes")})
            paths = app.download(dest)
            print(json.dumps({
                "paths": paths, "status": app.status, "exit_code": app.exit_code, "cached": app.cached,
                "artifacts": [a.path for a in app.artifacts], "error": app.error,
            }))
        """, "--dest", str(self.dir / "dest"))
        self.assertEqual(run.code, 0, run.stderr)
        self.assertEqual(
            json.loads(run.stderr),
            {"paths": [str(self.dir / "dest" / "out"), str(self.dir / "dest" / "notes")], "status": "passed",
             "exit_code": 0, "cached": False, "artifacts": ["/out", "/notes"], "error": None},
        )
        self.assertEqual(output(run.events, "whole"), "hello\nmade\n")
        self.assertEqual(output(run.events, "one"), "bin\nblob\nhi\nmade\n")
        dest = self.dir / "dest"
        self.assertEqual(sorted(str(p.relative_to(dest)) for p in dest.rglob("*")),
                         ["notes", "out", "out/bin", "out/bin/hello", "out/blob", "out/hi"])
        self.assertEqual((dest / "out" / "blob").read_bytes(), blob)
        self.assertEqual(((dest / "out/bin/hello").stat().st_mode & 0o777, os.readlink(dest / "out/hi")), (0o755, "bin/hello"))
        self.assertEqual((dest / "notes").read_text(), "made\n")
        self.assertEqual(subprocess.run([dest / "out/hi"], capture_output=True, text=True).stdout, "hello\n")

    def test_a_failing_test_keeps_its_artifacts(self) -> None:
        run = self.run_pipedef("""
            import json, sys, tarfile
            import bettertest as bt

            p = bt.pipeline("kept")
            with p.stage("test") as s:
                t = s.test("e2e", image="bettertest/base:bookworm",
                           command="mkdir -p /coverage/html /r && echo \\"attempt $BETTERTEST_ATTEMPT\\" > /coverage/html/index.html"
                                   " && printf 'png' > /shot.png"
                                   " && echo '<testsuite><testcase name=\\"login\\"><failure message=\\"no button\\"/></testcase></testsuite>' > /r/junit.xml"
                                   " && exit 3",
                           results="/r/junit.xml", artifacts=["/coverage", "/shot.png", "/missing"], retries=1)
            kept = {}
            for a in t.artifacts:
                p.worker.download_artifact(a.id, "a.tar")
                with tarfile.open("a.tar") as tar:
                    kept[a.path] = {m.name: tar.extractfile(m).read().decode() if m.isfile() else m.type.decode() for m in tar}
            print(json.dumps({"status": t.status, "exit_code": t.exit_code, "kept": kept}))
        """)
        self.assertEqual(run.code, 1, run.stderr)
        self.assertEqual(json.loads(run.stderr.splitlines()[-1]), {
            "status": "failed", "exit_code": 3,
            "kept": {"/coverage": {"artifact": "5", "artifact/html": "5", "artifact/html/index.html": "attempt 2\n"},
                     "/shot.png": {"artifact": "png"}},
        })
        # Every attempt's artifacts are reported, like a build's outputs; the results file is not one.
        arts = [e for e in run.events if e["event"] == "task_artifact"]
        self.assertEqual([(e["path"], e["task"]) for e in arts], [("/coverage", "e2e"), ("/shot.png", "e2e")] * 2)
        self.assertNotEqual(arts[0]["id"], arts[2]["id"])  # attempt 1 wrote other coverage
        self.assertEqual(arts[1]["id"], arts[3]["id"])
        self.assertEqual([e["name"] for e in run.events if e["event"] == "test_case"], ["login", "login"])

    def test_a_build_of_the_same_stage_is_not_an_input(self) -> None:
        run = self.run_pipedef("""
            import bettertest as bt

            p = bt.pipeline("same")
            with p.stage("build") as s:
                app = s.build("make", image="bettertest/base:bookworm", command="mkdir /out", outputs=["/out"])
                s.test("use", image="bettertest/base:bookworm", command="ls /app", inputs={"/app": app})
        """)
        message = (
            "the task 'use' uses the build 'make' of its own stage 'build' as its input /app: a build's outputs "
            "exist once its stage is over; move the task to a later stage"
        )
        self.assertEqual(run.code, 1)
        self.assertEqual(run.stderr.splitlines()[-1], f"bettertest.errors.PipelineError: {message}")
        self.assertEqual(
            shape(run.events)[2:],
            [
                start("build", "make", "build", "mkdir /out"),
                {"event": "task_uncached", "stage": "build", "task": "make", "key": "KEY", "reason": "first run"},
                {"event": "task_artifact", "stage": "build", "task": "make", "path": "/out", "id": "ID", "size": 1536},
                end("build", "make", "build", "passed", 0),
                {"event": "stage_end", "stage": "build", "status": "failed"},
                pipeline_end("same", "failed", 1, 0, 0, 0, f"the pipedef raised PipelineError: {message}"),
            ],
        )

    def test_task_errors(self) -> None:
        run = self.run_pipedef("""
            import bettertest as bt

            p = bt.pipeline("errors")
            with p.stage("one") as s:
                s.test("missing", image="bettertest/base:bookworm", command="true", inputs={"/src": bt.local("nope")})
                s.build("lazy", image="bettertest/base:bookworm", command="echo did nothing", outputs=["/out"])
                s.test("no-image", image="127.0.0.1:1/none:latest", command="true")
        """)
        self.assertEqual((run.code, run.stderr), (1, ""))
        ends = {e["task"]: e for e in shape(run.events) if e["event"] == "task_end"}
        self.assertEqual(ends["missing"], end("one", "missing", "test", "failed", None,
                                              error=f"input /src: {self.dir}/nope does not exist", attempts=0))
        self.assertEqual(
            ends["lazy"],
            end("one", "lazy", "build", "failed", 0,
                error="output /out does not exist after the command: make the command create it, or fix the path in outputs"),
        )
        self.assertEqual((ends["no-image"]["exit_code"], ends["no-image"]["attempts"]), (None, 0))
        self.assertRegex(
            ends["no-image"]["error"],
            rf"\Athe worker at {re.escape(self.proc.url)} could not start the run: image 127\.0\.0\.1:1/none:latest is not "
            r"on this worker and pulling it failed \(.+\): load it there \(docker load\) or fix the name\Z",
        )


class ExampleTest(PipedefTestCase):
    def test_the_example_pipeline(self) -> None:
        images = subprocess.run(["docker", "images", "-q", "bettertest/cc:bookworm"], capture_output=True, text=True, check=True)
        if not images.stdout.strip():
            self.skipTest("the image bettertest/cc:bookworm is missing: scripts/setup-test-env.sh builds it")
        run = self.run_pipedef("", script=EXAMPLES / "pipeline.py")
        self.assertEqual(run.code, 0, run.stdout + run.stderr)
        self.assertEqual(output(run.events, "runs"), "hello, world\n")
        self.assertEqual(shape(run.events)[-1], pipeline_end("hello", "passed", 3, 0, 0, 0))

    def test_the_flaky_example(self) -> None:
        run = self.run_pipedef("", script=EXAMPLES / "flaky.py")
        self.assertEqual(run.code, 0, run.stdout + run.stderr)
        cases = [(e["attempt"], e["name"], e["status"], e["duration_ms"], e["output"]) for e in run.events if e["event"] == "test_case"]
        self.assertEqual(
            cases,
            [
                (1, "pkg.TestParse", "passed", 12, ""),
                (1, "pkg.TestCache", "failed", 250, "cache miss: expected hit\ngot a stale entry after 2 ms"),
                (1, "pkg.TestNetwork", "skipped", 0, ""),
                (2, "pkg.TestParse", "passed", 12, ""),
                (2, "pkg.TestCache", "passed", 250, ""),
                (2, "pkg.TestNetwork", "skipped", 0, ""),
            ],
        )
        end = first(run.events, "task_end", "unit")
        self.assertEqual((end["status"], end["attempts"], end["flaky"], end["quarantined"]), ("passed", 2, True, False))


class InProcessTest(unittest.TestCase):
    """The pipeline's own rules, in this process, with a reporter on a string and a fixed clock.

    Nothing listens on the worker URL: a task that runs fails to reach it.
    """

    maxDiff = None

    def setUp(self) -> None:
        self.out = io.StringIO()
        ticks = iter(range(0, 10**6, 250))
        self.pipeline = Pipeline(
            "unit", Worker("http://127.0.0.1:1", token="t"), HumanReporter(self.out), clock=lambda: next(ticks) / 1000
        )

    def test_skipped_stages_run_nothing(self) -> None:
        p = self.pipeline
        with self.assertRaises(ValueError):
            with p.stage("one"):
                raise ValueError("the script failed here")
        with p.stage("two") as s:
            build = s.build("make", image=IMAGE, command="make", outputs=["/out"])
        with p.stage("three") as s:
            test = s.test("check", image=IMAGE, command="make check", inputs={"/bin": build.artifact("/out"), "/app": build})
        self.assertEqual(p.end(), "failed")
        self.assertEqual(p.end(), "failed")
        self.assertEqual(
            (build.status, build.exit_code, build.artifacts, test.status, test.result, s.status, p.status),
            ("skipped", None, (), "skipped", None, "skipped", "failed"),
        )
        self.assertEqual(
            self.out.getvalue(),
            "pipeline unit on http://127.0.0.1:1\n"
            "stage one\n"
            "stage one failed in 0.25s\n"
            "stage two\n"
            "  skipped  make\n"
            "stage two skipped\n"
            "stage three\n"
            "  skipped  check\n"
            "stage three skipped\n"
            "pipeline unit failed in 2.75s: 0 passed (0 cached), 0 failed, 2 skipped\n",
        )

    def test_an_unreachable_worker_fails_the_task(self) -> None:
        with self.pipeline.stage("one") as s:
            task = s.test("t", image=IMAGE, command="true")
        self.assertEqual(self.pipeline.end(), "failed")
        error = (
            "cannot reach the worker at http://127.0.0.1:1: Connection refused; check that `bettertest worker` is "
            "running there and that the URL names its listening address"
        )
        self.assertEqual((task.status, task.error, task.exit_code, task.duration), ("failed", error, None, 0.25))
        self.assertEqual(
            self.out.getvalue(),
            "pipeline unit on http://127.0.0.1:1\n"
            "stage one\n"
            f"  failed   t  0.25s  {error}\n"
            "stage one failed in 0.75s\n"
            "failed: t\n"
            "pipeline unit failed in 1.25s: 0 passed (0 cached), 1 failed, 0 skipped\n",
        )

    def test_artifacts_are_checked(self) -> None:
        with self.pipeline.stage("s") as s:
            for bad, message in [
                ("/coverage", "artifacts must be a list of container paths, e.g. ['/coverage'], not the string '/coverage'"),
                (["coverage"], "each of artifacts must be the absolute container path of a file or directory, e.g. '/coverage', not 'coverage'"),
                (["/a/../b"], "each of artifacts must be the absolute container path of a file or directory, e.g. '/coverage', not '/a/../b'"),
                (["/c", "/c"], "artifacts names a path twice: name each once, not ['/c', '/c']"),
            ]:
                with self.assertRaises(ValueError) as caught:
                    s.test("t", image=IMAGE, command="true", artifacts=bad)  # type: ignore[arg-type]
                self.assertEqual(str(caught.exception), message)

    def assert_misuse(self, message: str, call: Any) -> None:
        with self.assertRaises(PipelineError) as cm:
            call()
        self.assertEqual(str(cm.exception), message)

    def test_misuse(self) -> None:
        p = self.pipeline
        outside = p.stage("outside")
        self.assert_misuse(
            "the task 't' was called outside the with block of its stage 'outside': call it inside `with p.stage('outside') as s:`",
            lambda: outside.test("t", image=IMAGE, command="true"),
        )
        self.assert_misuse("'a/b' cannot be a stage name: use a non-empty, printable name without '/'", lambda: p.stage("a/b"))
        one = p.stage("one")
        with self.assertRaises(ValueError):
            with one:  # fails the pipeline, so the next stages are skipped and run nothing
                raise ValueError
        self.assert_misuse("the stage 'one' was entered before: make a new stage with p.stage(...)", lambda: one.__enter__())
        with p.stage("two") as s:
            build = s.build("make", image=IMAGE, command="make", outputs=["/out"])
            test = s.test("check", image=IMAGE, command="true")
            self.assert_misuse(
                "the stage 'inner' was entered inside the stage 'two': stages run one after another, not nested",
                lambda: p.stage("inner").__enter__(),
            )
            self.assert_misuse(
                "the pipeline 'unit' already has a task named 'make' (in the stage 'two'): task names must be unique, "
                "since the worker remembers builds by pipeline and task name",
                lambda: s.test("make", image=IMAGE, command="true"),
            )
            self.assert_misuse(
                "the task 'use' uses the build 'make' of its own stage 'two' as its input /app: a build's outputs "
                "exist once its stage is over; move the task to a later stage",
                lambda: s.test("use", image=IMAGE, command="true", inputs={"/app": build}),
            )
            self.assert_misuse("'' cannot be a task name: use a non-empty, printable name without '/'",
                               lambda: s.test("", image=IMAGE, command="true"))
        with p.stage("three") as s:
            self.assert_misuse(
                "the input /x of the task 'use' is the test 'check': only a build has outputs to mount",
                lambda: s.test("use", image=IMAGE, command="true", inputs={"/x": test}),
            )
            self.assert_misuse(
                "the input /x of the task 'use' is a int: pass bt.local(PATH), a build's handle, build.artifact(PATH) "
                "or an artifact id 'sha256:...'",
                lambda: s.test("use", image=IMAGE, command="true", inputs={"/x": 3}),  # type: ignore[dict-item]
            )
            self.assert_misuse("the build 'make' has no output '/bin': its outputs are /out", lambda: build.artifact("/bin"))
            with self.assertRaises(ValueError) as cm:
                s.test("slow", image=IMAGE, command="true", timeout=0)
            self.assertEqual(str(cm.exception), "timeout must be a positive number of seconds, not 0")
            # From an earlier, skipped stage: fine to name, and skipped along with this one.
            used = s.test("use", image=IMAGE, command="true", inputs={"/app": build})
        self.assertEqual(used.status, "skipped")
        self.assert_misuse(
            "the build 'make' skipped: it has no outputs to download", lambda: build.download(tempfile.gettempdir())
        )
        p.end()
        self.assert_misuse("the pipeline 'unit' has ended: no stage can start", lambda: p.stage("late").__enter__())

    def test_local_paths_are_absolute_at_once(self) -> None:
        self.assertEqual(bt.local("src"), bt.Local(os.path.join(os.getcwd(), "src")))
        self.assertEqual(bt.local("/a/b/../c/"), bt.Local("/a/c"))


if __name__ == "__main__":
    unittest.main()
