"""The reporters: events in, exact text out. No worker needed."""

from __future__ import annotations

import io
import json
import unittest
from typing import Any

from bettertest import HumanReporter, JsonlReporter
from bettertest._report import format_duration

# A pipeline run's events, as the pipeline emits them: a build that runs (first run) and one from
# the cache, a test that passes quietly, one that fails with its output, a skipped stage.
EVENTS: list[dict[str, Any]] = [
    {"event": "pipeline_start", "pipeline": "hello", "worker": "http://127.0.0.1:9009"},
    {"event": "stage_start", "stage": "build"},
    {"event": "task_start", "stage": "build", "task": "compile", "kind": "build", "image": "cc", "command": "make", "retries": 0},
    {"event": "task_start", "stage": "build", "task": "docs", "kind": "build", "image": "base", "command": "mkdocs", "retries": 0},
    {"event": "task_uncached", "stage": "build", "task": "compile", "key": "sha256:" + "a" * 64, "reason": "first run"},
    {"event": "task_cached", "stage": "build", "task": "docs", "key": "sha256:" + "b" * 64},
    {"event": "task_artifact", "stage": "build", "task": "docs", "path": "/site", "id": "sha256:" + "c" * 64, "size": 10240},
    {"event": "task_end", "stage": "build", "task": "docs", "kind": "build", "status": "passed", "exit_code": None,
     "duration_ms": 12, "cached": True, "error": None, "attempts": 1, "flaky": False, "quarantined": False},
    {"event": "task_output", "stage": "build", "task": "compile", "stream": "stdout", "text": "cc -O2 hello.c\n"},
    {"event": "task_artifact", "stage": "build", "task": "compile", "path": "/out", "id": "sha256:" + "d" * 64, "size": 20480},
    {"event": "task_end", "stage": "build", "task": "compile", "kind": "build", "status": "passed", "exit_code": 0,
     "duration_ms": 812, "cached": False, "error": None, "attempts": 1, "flaky": False, "quarantined": False},
    {"event": "stage_end", "stage": "build", "status": "passed", "duration_ms": 815},
    {"event": "stage_start", "stage": "test"},
    {"event": "task_start", "stage": "test", "task": "runs", "kind": "test", "image": "base", "command": "/app/out/hello", "retries": 0},
    {"event": "task_start", "stage": "test", "task": "lint", "kind": "test", "image": "base", "command": "lint", "retries": 0},
    {"event": "task_output", "stage": "test", "task": "lint", "stream": "stdout", "text": "checking hel"},
    {"event": "task_output", "stage": "test", "task": "runs", "stream": "stdout", "text": "hello\n"},
    {"event": "task_output", "stage": "test", "task": "lint", "stream": "stdout", "text": "lo.c\n"},
    {"event": "task_output", "stage": "test", "task": "lint", "stream": "stderr", "text": "hello.c:3: trailing space"},
    {"event": "task_attempt", "stage": "test", "task": "runs", "attempt": 1, "status": "passed", "exit_code": 0,
     "duration_ms": 290, "error": None},
    {"event": "task_end", "stage": "test", "task": "runs", "kind": "test", "status": "passed", "exit_code": 0,
     "duration_ms": 300, "cached": False, "error": None, "attempts": 1, "flaky": False, "quarantined": False},
    {"event": "task_attempt", "stage": "test", "task": "lint", "attempt": 1, "status": "failed", "exit_code": 1,
     "duration_ms": 240, "error": None},
    {"event": "task_end", "stage": "test", "task": "lint", "kind": "test", "status": "failed", "exit_code": 1,
     "duration_ms": 250, "cached": False, "error": None, "attempts": 1, "flaky": False, "quarantined": False},
    {"event": "stage_end", "stage": "test", "status": "failed", "duration_ms": 310},
    {"event": "stage_start", "stage": "deploy"},
    {"event": "task_start", "stage": "deploy", "task": "ship", "kind": "test", "image": "base", "command": "ship", "retries": 0},
    {"event": "task_end", "stage": "deploy", "task": "ship", "kind": "test", "status": "skipped", "exit_code": None,
     "duration_ms": 0, "cached": False, "error": None, "attempts": 0, "flaky": False, "quarantined": False},
    {"event": "stage_end", "stage": "deploy", "status": "skipped", "duration_ms": 1},
    {"event": "pipeline_end", "pipeline": "hello", "status": "failed", "duration_ms": 61_630, "passed": 3, "failed": 1,
     "skipped": 1, "cached": 1, "quarantined": 0, "error": None},
]


def human(events: list[dict[str, Any]], *, color: bool = False) -> str:
    out = io.StringIO()
    reporter = HumanReporter(out, color=color)
    for event in events:
        reporter.emit(event)
    return out.getvalue()


class HumanReporterTest(unittest.TestCase):
    def test_plain_text(self) -> None:
        self.assertEqual(
            human(EVENTS),
            "pipeline hello on http://127.0.0.1:9009\n"
            "stage build\n"
            "  passed   docs  0.01s  cached\n"
            "  passed   compile  0.81s  not cached: first run\n"
            "stage build passed in 0.81s\n"
            "stage test\n"
            "  passed   runs  0.30s\n"
            "  failed   lint  0.25s  exit code 1\n"
            "    | checking hello.c\n"
            "    | hello.c:3: trailing space\n"
            "stage test failed in 0.31s\n"
            "stage deploy\n"
            "  skipped  ship\n"
            "stage deploy skipped\n"
            "failed: lint\n"
            "pipeline hello failed in 1m01s: 3 passed (1 cached), 1 failed, 1 skipped; test cases: 1 failed, 1 passed\n",
        )

    def test_not_a_terminal_means_plain(self) -> None:
        out = io.StringIO()  # isatty() is False
        HumanReporter(out).emit(EVENTS[0])
        self.assertEqual(out.getvalue(), "pipeline hello on http://127.0.0.1:9009\n")

    def test_terminal_colors_and_running_line(self) -> None:
        events = EVENTS[:4] + EVENTS[7:12]
        self.assertEqual(
            human(events, color=True),
            "pipeline hello on http://127.0.0.1:9009\n"
            "stage build\n"
            "\x1b[2m  running  compile\x1b[0m"
            "\r\x1b[K\x1b[2m  running  compile, docs\x1b[0m"
            "\r\x1b[K  \x1b[32mpassed\x1b[0m   docs  0.01s  \x1b[36mcached\x1b[0m\n"
            "\x1b[2m  running  compile\x1b[0m"
            "\r\x1b[K  \x1b[32mpassed\x1b[0m   compile  0.81s\n"
            "stage build \x1b[32mpassed\x1b[0m in 0.81s\n",
        )

    def test_task_errors(self) -> None:
        events = [
            {"event": "stage_start", "stage": "s"},
            {"event": "task_start", "stage": "s", "task": "t", "kind": "test", "image": "i", "command": "c", "retries": 0},
            {"event": "task_end", "stage": "s", "task": "t", "kind": "test", "status": "failed", "exit_code": None,
             "duration_ms": 5, "cached": False, "error": "input /src: /tmp/src does not exist", "attempts": 0, "flaky": False,
             "quarantined": False},
            {"event": "task_start", "stage": "s", "task": "b", "kind": "build", "image": "i", "command": "c", "retries": 0},
            {"event": "task_uncached", "stage": "s", "task": "b", "key": "sha256:" + "a" * 64, "reason": "input /src changed"},
            {"event": "task_output", "stage": "s", "task": "b", "stream": "stdout", "text": "made nothing\n\n"},
            {"event": "task_end", "stage": "s", "task": "b", "kind": "build", "status": "failed", "exit_code": 0,
             "duration_ms": 1500, "cached": False, "error": "output /out was not made", "attempts": 1, "flaky": False,
             "quarantined": False},
            {"event": "task_start", "stage": "s", "task": "slow", "kind": "test", "image": "i", "command": "c", "retries": 0},
            {"event": "task_attempt", "stage": "s", "task": "slow", "attempt": 1, "status": "failed", "exit_code": 137,
             "duration_ms": 1990, "error": "timed out after 1 s and was killed"},
            {"event": "task_end", "stage": "s", "task": "slow", "kind": "test", "status": "failed", "exit_code": 137,
             "duration_ms": 2000, "cached": False, "error": "timed out after 1 s and was killed", "attempts": 1, "flaky": False,
             "quarantined": False},
            {"event": "stage_end", "stage": "s", "status": "failed", "duration_ms": 2100},
            {"event": "pipeline_end", "pipeline": "p", "status": "failed", "duration_ms": 2200, "passed": 0, "failed": 3,
             "skipped": 0, "cached": 0, "quarantined": 0, "error": "the pipedef raised ValueError: boom"},
        ]
        self.assertEqual(
            human(events),
            "stage s\n"
            "  failed   t  0.00s  input /src: /tmp/src does not exist\n"
            "  failed   b  1.50s  not cached: input /src changed; output /out was not made\n"
            "    | made nothing\n"
            "    | \n"
            "  failed   slow  2.00s  exit code 137; timed out after 1 s and was killed\n"
            "stage s failed in 2.10s\n"
            "failed: t, b, slow\n"
            "pipeline p failed in 2.20s: 0 passed (0 cached), 3 failed, 0 skipped; test cases: 1 failed; the pipedef raised ValueError: boom\n",
        )

    def test_attempts_test_cases_and_quarantine(self) -> None:
        def start(task: str, retries: int) -> dict[str, Any]:
            return {"event": "task_start", "stage": "t", "task": task, "kind": "test", "image": "i", "command": "c",
                    "retries": retries}

        def out(task: str, text: str) -> dict[str, Any]:
            return {"event": "task_output", "stage": "t", "task": task, "stream": "stdout", "text": text}

        def case(task: str, attempt: int, name: str, status: str, output: str = "") -> dict[str, Any]:
            return {"event": "test_case", "stage": "t", "task": task, "attempt": attempt, "name": name, "status": status,
                    "duration_ms": 10, "output": output}

        def attempt(task: str, number: int, status: str, exit_code: int, error: str | None = None) -> dict[str, Any]:
            return {"event": "task_attempt", "stage": "t", "task": task, "attempt": number, "status": status,
                    "exit_code": exit_code, "duration_ms": 100, "error": error}

        def end(task: str, status: str, exit_code: int, attempts: int, *, flaky: bool = False, quarantined: bool = False,
                error: str | None = None) -> dict[str, Any]:
            return {"event": "task_end", "stage": "t", "task": task, "kind": "test", "status": status, "exit_code": exit_code,
                    "duration_ms": 1200, "cached": False, "error": error, "attempts": attempts, "flaky": flaky,
                    "quarantined": quarantined}

        missing = "the test made no results at /r/junit.xml: make the command write its JUnit XML or go test -json output there"
        events = [
            {"event": "stage_start", "stage": "t"},
            start("net", 2), start("unit", 1), start("e2e", 0),
            out("net", "connection reset\n"),
            attempt("net", 1, "failed", 1),
            out("unit", "1 failed\n"),
            case("unit", 1, "suite.test_a", "passed"),
            case("unit", 1, "suite.test_b", "failed", "assert 1 == 2"),
            attempt("unit", 1, "failed", 0),
            out("net", "ok\n"),
            attempt("net", 2, "passed", 0),
            end("net", "passed", 0, 2, flaky=True),
            out("e2e", "done\n"),
            attempt("e2e", 1, "failed", 0, missing),
            end("e2e", "failed", 0, 1, error=missing),
            out("unit", "2 failed\n"),
            case("unit", 2, "suite.test_a", "failed", "boom"),
            case("unit", 2, "suite.test_b", "failed", "assert 1 == 2"),
            case("unit", 2, "suite.test_c", "skipped"),
            attempt("unit", 2, "failed", 1),
            end("unit", "failed", 1, 2, quarantined=True),
            {"event": "stage_end", "stage": "t", "status": "failed", "duration_ms": 1300},
            {"event": "pipeline_end", "pipeline": "p", "status": "failed", "duration_ms": 1400, "passed": 1, "failed": 2,
             "skipped": 0, "cached": 0, "quarantined": 1, "error": None},
        ]
        self.assertEqual(
            human(events),
            "stage t\n"
            "  retry    net  attempt 1 failed (exit code 1), running attempt 2 of 3\n"
            "  retry    unit  attempt 1 failed, running attempt 2 of 2\n"
            "    failed suite.test_b\n"
            "  passed   net  1.20s  flaky: passed on attempt 2 of 3\n"
            f"  failed   e2e  1.20s  {missing}\n"
            "    | done\n"
            "  failed   unit  1.20s  cases: 2 failed, 1 skipped; exit code 1; 2 attempts; quarantined: does not fail the run\n"
            "    failed suite.test_a\n"
            "      boom\n"
            "    failed suite.test_b\n"
            "      assert 1 == 2\n"
            "    | 2 failed\n"
            "stage t failed in 1.30s\n"
            "failed: e2e, unit (suite.test_a, suite.test_b)\n"
            "pipeline p failed in 1.40s: 1 passed (0 cached), 2 failed (1 quarantined), 0 skipped; "
            "test cases: 3 failed, 1 flaky, 1 skipped\n",
        )
        self.assertEqual(
            human(events[:6], color=True),
            "stage t\n"
            "\x1b[2m  running  net\x1b[0m"
            "\r\x1b[K\x1b[2m  running  net, unit\x1b[0m"
            "\r\x1b[K\x1b[2m  running  net, unit, e2e\x1b[0m"
            "\r\x1b[K  \x1b[33mretry\x1b[0m    net  attempt 1 failed (exit code 1), running attempt 2 of 3\n"
            "\x1b[2m  running  net, unit, e2e\x1b[0m",
        )

    def test_a_long_case_message_is_cut(self) -> None:
        message = "".join(f"line {i}\n" for i in range(1, 14))
        events = [
            {"event": "task_start", "stage": "t", "task": "unit", "kind": "test", "image": "i", "command": "c", "retries": 0},
            {"event": "test_case", "stage": "t", "task": "unit", "attempt": 1, "name": "a", "status": "failed",
             "duration_ms": 1, "output": message},
            {"event": "task_attempt", "stage": "t", "task": "unit", "attempt": 1, "status": "failed", "exit_code": 1,
             "duration_ms": 100, "error": None},
            {"event": "task_end", "stage": "t", "task": "unit", "kind": "test", "status": "failed", "exit_code": 1,
             "duration_ms": 100, "cached": False, "error": None, "attempts": 1, "flaky": False, "quarantined": False},
        ]
        self.assertEqual(
            human(events),
            "  failed   unit  0.10s  cases: 1 failed; exit code 1\n"
            "    failed a\n"
            + "".join(f"      line {i}\n" for i in range(1, 11))
            + "      … 3 more lines (the task's test_results have them all)\n",
        )

    def test_format_duration(self) -> None:
        self.assertEqual(
            [format_duration(ms) for ms in [0, 4, 5, 999, 59_994, 59_999, 60_000, 61_999, 3_600_000]],
            ["0.00s", "0.00s", "0.00s", "0.99s", "59.99s", "59.99s", "1m00s", "1m01s", "60m00s"],
        )


class JsonlReporterTest(unittest.TestCase):
    def test_lines(self) -> None:
        out = io.BytesIO()
        clock = iter([1795652401.0, 1795652401.1234, 1795652462.9999])
        reporter = JsonlReporter(out, wall_clock=lambda: next(clock))
        reporter.emit(EVENTS[0])
        reporter.emit({"event": "task_output", "stage": "s", "task": "t", "stream": "stdout", "text": "é \"q\"\n\udcff"})
        reporter.emit(EVENTS[-1])
        self.assertEqual(
            out.getvalue().decode("utf-8"),
            '{"event":"pipeline_start","time":"2026-11-26T00:20:01.000Z","pipeline":"hello","worker":"http://127.0.0.1:9009"}\n'
            '{"event":"task_output","time":"2026-11-26T00:20:01.123Z","stage":"s","task":"t","stream":"stdout",'
            '"text":"é \\"q\\"\\n\\udcff"}\n'
            '{"event":"pipeline_end","time":"2026-11-26T00:21:02.999Z","pipeline":"hello","status":"failed",'
            '"duration_ms":61630,"passed":3,"failed":1,"skipped":1,"cached":1,"quarantined":0,"error":null}\n',
        )
        self.assertEqual(json.loads(out.getvalue().splitlines()[1])["text"], 'é "q"\n\udcff')


if __name__ == "__main__":
    unittest.main()
