"""Retries, test results and quarantine, end to end: pipedefs against a real worker and Docker.

A flaky test here is not left to chance: a plan file, uploaded as an input, says on its line N
whether attempt N passes, and the command reads its attempt from BETTERTEST_ATTEMPT.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import unittest
from pathlib import Path
from typing import Any

from bettertest import HumanReporter, Pipeline, PipelineError, RunError, Worker, unpack
from tests.test_pipeline import PipedefTestCase, attempt, end, out, pipeline_end, shape, start
from tests.workerproc import IMAGE, WorkerProcess, require_binary

PLAN = 'echo "attempt $BETTERTEST_ATTEMPT"; test "$(sed -n "${BETTERTEST_ATTEMPT}p" /plan/plan)" = pass'

JUNIT = """<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="suite" tests="3">
    <testcase classname="suite" name="test_pass" time="0.012"/>
    <testcase classname="suite" name="test_fail" time="0.5"><failure message="assert 1 == 2">test_suite.py:7: AssertionError</failure></testcase>
    <testcase classname="suite" name="test_skip" time="0"><skipped message="later"/></testcase>
  </testsuite>
</testsuites>
"""

PASS_XML = '<testsuite name="smoke"><testcase classname="smoke" name="test_ok" time="0.003"/></testsuite>\n'

GO_JSON = "".join(
    json.dumps(event) + "\n"
    for event in [
        {"Action": "start", "Package": "example.com/app"},
        {"Action": "run", "Package": "example.com/app", "Test": "TestLogin"},
        {"Action": "output", "Package": "example.com/app", "Test": "TestLogin", "Output": "=== RUN   TestLogin\n"},
        {"Action": "output", "Package": "example.com/app", "Test": "TestLogin", "Output": "    login_test.go:9: got 401\n"},
        {"Action": "fail", "Package": "example.com/app", "Test": "TestLogin", "Elapsed": 0.25},
        {"Action": "run", "Package": "example.com/app", "Test": "TestLogout"},
        {"Action": "pass", "Package": "example.com/app", "Test": "TestLogout", "Elapsed": 0.01},
        {"Action": "run", "Package": "example.com/app", "Test": "TestSlow"},
        {"Action": "skip", "Package": "example.com/app", "Test": "TestSlow", "Elapsed": 0},
        {"Action": "fail", "Package": "example.com/app", "Elapsed": 0.3},
    ]
)


def case(stage: str, task: str, number: int, name: str, status: str, duration_ms: int, output: str = "") -> dict[str, Any]:
    return {"event": "test_case", "stage": stage, "task": task, "attempt": number, "suite": task, "name": name,
            "status": status, "duration_ms": duration_ms, "output": output}


def junit_cases(stage: str, task: str, number: int = 1) -> list[dict[str, Any]]:
    return [
        case(stage, task, number, "suite.test_pass", "passed", 12),
        case(stage, task, number, "suite.test_fail", "failed", 500, "assert 1 == 2\ntest_suite.py:7: AssertionError"),
        case(stage, task, number, "suite.test_skip", "skipped", 0),
    ]


def go_cases(stage: str, task: str) -> list[dict[str, Any]]:
    return [
        case(stage, task, 1, "example.com/app/TestLogin", "failed", 250, "=== RUN   TestLogin\n    login_test.go:9: got 401\n"),
        case(stage, task, 1, "example.com/app/TestLogout", "passed", 10),
        case(stage, task, 1, "example.com/app/TestSlow", "skipped", 0),
    ]


class RetriesTest(PipedefTestCase):
    SOURCE = f"""
        import json, sys
        import bettertest as bt

        p = bt.pipeline("flaky")
        command = {PLAN!r}
        with p.stage("one") as s:
            flaky = s.test("flaky", image="bettertest/base:bookworm", command=command,
                           inputs={{"/plan": bt.local("flaky")}}, retries=2)
        with p.stage("two") as s:
            broken = s.test("broken", image="bettertest/base:bookworm", command=command,
                            inputs={{"/plan": bt.local("broken")}}, retries=2)
        print(json.dumps([[t.status, t.exit_code, t.attempts, t.flaky, t.quarantined, t.error] for t in (flaky, broken)]),
              file=sys.stderr)
    """

    def setUp(self) -> None:
        super().setUp()
        self.write("flaky/plan", "fail\npass\n")
        self.write("broken/plan", "fail\nfail\nfail\n")

    def test_a_failed_attempt_runs_again(self) -> None:
        run = self.run_pipedef(self.SOURCE)
        self.assertEqual(run.code, 1)
        self.assertEqual(json.loads(run.stderr), [["passed", 0, 2, True, False, None], ["failed", 1, 3, False, False, None]])
        self.assertEqual(
            shape(run.events),
            [
                {"event": "pipeline_start", "pipeline": "flaky", "worker": self.proc.url},
                {"event": "stage_start", "stage": "one"},
                start("one", "flaky", "test", PLAN, retries=2),
                out("one", "flaky", "attempt 1\n"),
                attempt("one", "flaky", 1, "failed", 1),
                out("one", "flaky", "── attempt 2 of 3 ──\n"),
                out("one", "flaky", "attempt 2\n"),
                attempt("one", "flaky", 2, "passed", 0),
                end("one", "flaky", "test", "passed", 0, attempts=2, flaky=True),
                {"event": "stage_end", "stage": "one", "status": "passed"},
                {"event": "stage_start", "stage": "two"},
                start("two", "broken", "test", PLAN, retries=2),
                out("two", "broken", "attempt 1\n"),
                attempt("two", "broken", 1, "failed", 1),
                out("two", "broken", "── attempt 2 of 3 ──\n"),
                out("two", "broken", "attempt 2\n"),
                attempt("two", "broken", 2, "failed", 1),
                out("two", "broken", "── attempt 3 of 3 ──\n"),
                out("two", "broken", "attempt 3\n"),
                attempt("two", "broken", 3, "failed", 1),
                end("two", "broken", "test", "failed", 1, attempts=3),
                {"event": "stage_end", "stage": "two", "status": "failed"},
                pipeline_end("flaky", "failed", passed=1, failed=1, skipped=0, cached=0),
            ],
        )

    def test_human_report(self) -> None:
        run = self.run_pipedef(self.SOURCE, report="human")
        self.assertEqual((run.code, json.loads(run.stderr)[1]), (1, ["failed", 1, 3, False, False, None]))
        self.assertEqual(
            re.sub(r"\b\d+\.\d\ds\b", "D", run.stdout),
            f"pipeline flaky on {self.proc.url}\n"
            "stage one\n"
            "  retry    flaky  attempt 1 failed (exit code 1), running attempt 2 of 3\n"
            "  passed   flaky  D  flaky: passed on attempt 2 of 3\n"
            "stage one passed in D\n"
            "stage two\n"
            "  retry    broken  attempt 1 failed (exit code 1), running attempt 2 of 3\n"
            "  retry    broken  attempt 2 failed (exit code 1), running attempt 3 of 3\n"
            "  failed   broken  D  exit code 1; 3 attempts\n"
            "    | ── attempt 3 of 3 ──\n"
            "    | attempt 3\n"
            "stage two failed in D\n"
            "failed: broken\n"
            "pipeline flaky failed in D: 1 passed (0 cached), 1 failed, 0 skipped; test cases: 1 failed, 1 flaky\n",
        )


class ResultsTest(PipedefTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.write("in/junit.xml", JUNIT)
        self.write("in/pass.xml", PASS_XML)
        self.write("in/go.json", GO_JSON)

    def test_results_are_read_after_every_attempt(self) -> None:
        tasks = [
            # name, command, results, retries
            ("junit", "mkdir /results && cp /in/junit.xml /results/ && exit 1", "/results/junit.xml", 0),
            ("go", "cp /in/go.json /go.json", "/go.json", 0),
            ("passes", "cp /in/pass.xml /r.xml", "/r.xml", 0),
            ("dir", "mkdir -p /r/a && cp /in/go.json /r/a/c.json && cp /in/pass.xml /r/b.xml && echo notes > /r/notes.txt"
                    " && ln -s b.xml /r/link.xml", "/r", 0),
            ("retried", 'if [ "$BETTERTEST_ATTEMPT" = 1 ]; then cp /in/junit.xml /r.xml; else cp /in/pass.xml /r.xml; fi',
             "/r.xml", 1),
            ("missing", "true", "/results/junit.xml", 0),
            ("missing-after-a-failure", "exit 2", "/results/junit.xml", 0),
            ("empty-dir", "mkdir /r", "/r", 0),
            ("garbage", "echo 'not a report' > /out.txt", "/out.txt", 0),
        ]
        run = self.run_pipedef(f"""
            import json
            import bettertest as bt

            p = bt.pipeline("results")
            with p.stage("test") as s:
                handles = [s.test(name, image="bettertest/base:bookworm", command=command, inputs={{"/in": bt.local("in")}},
                                  results=results, retries=retries)
                           for name, command, results, retries in {tasks!r}]
            print(json.dumps({{t.name: [[r.attempt, r.case.name, r.case.status] for r in t.test_results]
                              for t in handles if t.test_results}}))
        """)
        self.assertEqual(run.code, 1)
        self.assertEqual(
            json.loads(run.stderr),
            {
                "junit": [[1, "suite.test_pass", "passed"], [1, "suite.test_fail", "failed"], [1, "suite.test_skip", "skipped"]],
                "go": [[1, "example.com/app/TestLogin", "failed"], [1, "example.com/app/TestLogout", "passed"],
                       [1, "example.com/app/TestSlow", "skipped"]],
                "passes": [[1, "smoke.test_ok", "passed"]],
                "dir": [[1, "example.com/app/TestLogin", "failed"], [1, "example.com/app/TestLogout", "passed"],
                        [1, "example.com/app/TestSlow", "skipped"], [1, "smoke.test_ok", "passed"]],
                "retried": [[1, "suite.test_pass", "passed"], [1, "suite.test_fail", "failed"], [1, "suite.test_skip", "skipped"],
                            [2, "smoke.test_ok", "passed"]],
            },
        )
        missing = "the test made no results at /results/junit.xml: make the command write its JUnit XML or go test -json output there"
        empty = ("the test made no results at /r (no *.xml or *.json file in it): make the command write its JUnit XML "
                 "or go test -json output there")
        garbage = ("results at /out.txt: the test results are in an unknown format (they start with 'not a report'): "
                   "expected JUnit XML or go test -json output")
        smoke = case("test", "passes", 1, "smoke.test_ok", "passed", 3)
        self.assertEqual(
            shape(run.events),
            [
                {"event": "pipeline_start", "pipeline": "results", "worker": self.proc.url},
                {"event": "stage_start", "stage": "test"},
                start("test", "junit", "test", tasks[0][1]),
                *junit_cases("test", "junit"),
                attempt("test", "junit", 1, "failed", 1),
                end("test", "junit", "test", "failed", 1),
                start("test", "go", "test", tasks[1][1]),
                *go_cases("test", "go"),
                attempt("test", "go", 1, "failed", 0),
                end("test", "go", "test", "failed", 0),
                start("test", "passes", "test", tasks[2][1]),
                smoke,
                attempt("test", "passes", 1, "passed", 0),
                end("test", "passes", "test", "passed", 0),
                start("test", "dir", "test", tasks[3][1]),
                *go_cases("test", "dir"),
                dict(smoke, task="dir", suite="dir"),
                attempt("test", "dir", 1, "failed", 0),
                end("test", "dir", "test", "failed", 0),
                start("test", "retried", "test", tasks[4][1], retries=1),
                *junit_cases("test", "retried"),
                attempt("test", "retried", 1, "failed", 0),
                out("test", "retried", "── attempt 2 of 2 ──\n"),
                dict(smoke, task="retried", suite="retried", attempt=2),
                attempt("test", "retried", 2, "passed", 0),
                end("test", "retried", "test", "passed", 0, attempts=2, flaky=True),
                start("test", "missing", "test", "true"),
                attempt("test", "missing", 1, "failed", 0, missing),
                end("test", "missing", "test", "failed", 0, error=missing),
                start("test", "missing-after-a-failure", "test", "exit 2"),
                attempt("test", "missing-after-a-failure", 1, "failed", 2),
                end("test", "missing-after-a-failure", "test", "failed", 2),
                start("test", "empty-dir", "test", "mkdir /r"),
                attempt("test", "empty-dir", 1, "failed", 0, empty),
                end("test", "empty-dir", "test", "failed", 0, error=empty),
                start("test", "garbage", "test", tasks[8][1]),
                attempt("test", "garbage", 1, "failed", 0, garbage),
                end("test", "garbage", "test", "failed", 0, error=garbage),
                {"event": "stage_end", "stage": "test", "status": "failed"},
                pipeline_end("results", "failed", passed=2, failed=7, skipped=0, cached=0),
            ],
        )


class QuarantineTest(PipedefTestCase):
    SOURCE = """
        import bettertest as bt

        p = bt.pipeline("quarantine")
        with p.stage("test") as s:
            s.test("unit", image="bettertest/base:bookworm", command="cp /in/go.json /go.json; exit 1",
                   inputs={"/in": bt.local("in")}, results="/go.json")
        with p.stage("deploy") as s:
            s.test("ship", image="bettertest/base:bookworm", command="true")
    """

    def expected(self, quarantined: bool) -> list[dict[str, Any]]:
        status = "passed" if quarantined else "failed"
        if quarantined:
            ship = [attempt("deploy", "ship", 1, "passed", 0), end("deploy", "ship", "test", "passed", 0)]
        else:
            ship = [end("deploy", "ship", "test", "skipped", None)]
        return [
            {"event": "pipeline_start", "pipeline": "quarantine", "worker": self.proc.url},
            {"event": "stage_start", "stage": "test"},
            start("test", "unit", "test", "cp /in/go.json /go.json; exit 1"),
            *go_cases("test", "unit"),
            attempt("test", "unit", 1, "failed", 1),
            end("test", "unit", "test", "failed", 1, quarantined=quarantined),
            {"event": "stage_end", "stage": "test", "status": status},
            {"event": "stage_start", "stage": "deploy"},
            start("deploy", "ship", "test", "true"),
            *ship,
            {"event": "stage_end", "stage": "deploy", "status": "passed" if quarantined else "skipped"},
            pipeline_end("quarantine", status, passed=int(quarantined), failed=1, skipped=int(not quarantined), cached=0,
                         quarantined=int(quarantined)),
        ]

    def test_quarantined_failures_do_not_fail_the_run(self) -> None:
        self.write("in/go.json", GO_JSON)
        for args, quarantined in [
            (["--quarantine", "unit"], True),
            # A case's name may hold '/': the test is split at the first one.
            (["--quarantine", "unit/example.com/app/TestLogin"], True),
            (["--quarantine", "ship", "--quarantine", "unit/example.com/app/TestLogin"], True),
            # A passing case or another task does not cover the failure.
            (["--quarantine", "unit/example.com/app/TestLogout", "--quarantine", "ship"], False),
            ([], False),
        ]:
            with self.subTest(args=args):
                run = self.run_pipedef(self.SOURCE, *args)
                self.assertEqual((run.code, run.stderr), (0 if quarantined else 1, ""))
                self.assertEqual(shape(run.events), self.expected(quarantined))

    def test_a_quarantined_case_does_not_cover_an_error(self) -> None:
        # The failed case is quarantined, but the attempt also failed on results it could not read.
        self.write("in/go.json", GO_JSON)
        command = "mkdir /r && cp /in/go.json /r/a.json && echo junk > /r/b.xml; exit 1"
        run = self.run_pipedef(f"""
            import bettertest as bt

            p = bt.pipeline("quarantine")
            with p.stage("test") as s:
                s.test("unit", image="bettertest/base:bookworm", command={command!r}, inputs={{"/in": bt.local("in")}},
                       results="/r")
        """, "--quarantine", "unit/example.com/app/TestLogin")
        error = ("results at /r/b.xml: the test results are in an unknown format (they start with 'junk'): "
                 "expected JUnit XML or go test -json output")
        self.assertEqual((run.code, run.stderr), (1, ""))
        self.assertEqual(
            shape(run.events)[2:],
            [
                start("test", "unit", "test", command),
                *go_cases("test", "unit"),
                attempt("test", "unit", 1, "failed", 1, error),
                end("test", "unit", "test", "failed", 1, error=error),
                {"event": "stage_end", "stage": "test", "status": "failed"},
                pipeline_end("quarantine", "failed", passed=0, failed=1, skipped=0, cached=0),
            ],
        )

    def test_quarantine_never_hides_a_failure_it_does_not_name(self) -> None:
        # go test -json as go wrote it (fixtures/results/gen): cart's TestTotal fails, and three
        # packages fail with no failed test of their own.
        real = Path(__file__).resolve().parent / "fixtures" / "results" / "go-test-package-failures.json"
        self.write("in/go.json", real.read_text())
        total = ["--quarantine", "unit/example.com/goshop/cart/TestTotal"]
        packages = [a for p in ("broken", "mainfail", "initpanic") for a in ("--quarantine", f"unit/example.com/goshop/{p}")]
        for args, quarantined in [(total, False), (total + packages, True)]:
            with self.subTest(args=args):
                run = self.run_pipedef(self.SOURCE, *args)
                ends = [e for e in run.events if e["event"] == "task_end" and e["task"] == "unit"]
                self.assertEqual(
                    (run.code, run.stderr, [(e["status"], e["quarantined"]) for e in ends]),
                    (0 if quarantined else 1, "", [("failed", quarantined)]),
                )

    def test_a_rerun_that_passed_in_the_report_passes_flaky(self) -> None:
        # gotestsum --rerun-fails as gotestsum wrote it (fixtures/results/gen): TestSometimes failed,
        # then passed on its rerun, and gotestsum exited 0.
        real = Path(__file__).resolve().parent / "fixtures" / "results" / "gotestsum-rerun.json"
        self.write("in/go.json", real.read_text())
        run = self.run_pipedef(self.SOURCE.replace("exit 1", "exit 0"))
        cases = [(e["name"], e["status"]) for e in run.events if e["event"] == "test_case"]
        ends = [(e["task"], e["status"], e["flaky"]) for e in run.events if e["event"] == "task_end"]
        self.assertEqual(
            (run.code, run.stderr, cases, ends),
            (
                0,
                "",
                # Its failed run first: the boss sees a failure and a pass of one case in one run.
                [
                    ("example.com/goshop/flaky/TestSometimes", "failed"),
                    ("example.com/goshop/flaky/TestSometimes", "passed"),
                    ("example.com/goshop/flaky/TestSteady", "passed"),
                ],
                [("unit", "passed", True), ("ship", "passed", False)],
            ),
        )


class WorkerResultsTest(unittest.TestCase):
    """Worker.run's results: the worker's result events, without a pipeline."""

    maxDiff = None

    @classmethod
    def setUpClass(cls) -> None:
        require_binary()
        cls.proc = WorkerProcess()
        cls.worker = Worker(cls.proc.url, token_file=cls.proc.token_file)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.proc.stop()

    def test_results_come_back_whatever_the_exit_code(self) -> None:
        result = self.worker.run(IMAGE, "mkdir /r && echo made > /r/report.xml; exit 3", results=["/missing", "/r"],
                                 on_output=lambda stream, text: None)
        self.assertEqual((result.exit_code, result.error, result.artifacts), (3, None, ()))
        self.assertEqual([(a.path, a.size) for a in result.results], [("/r", 2560)])
        with tempfile.TemporaryDirectory() as tmp:
            archive = os.path.join(tmp, "r.tar")
            self.worker.download_artifact(result.results[0].id, archive)
            unpack(archive, tmp, "/r")
            self.assertEqual(sorted(os.listdir(os.path.join(tmp, "r"))), ["report.xml"])
            self.assertEqual(Path(tmp, "r", "report.xml").read_text(), "made\n")

    def test_a_build_cannot_have_results(self) -> None:
        with self.assertRaises(RunError) as cm:
            self.worker.run(IMAGE, "true", results=["/r"], cache=True)
        self.assertEqual(
            str(cm.exception),
            f'the worker at {self.proc.url} refused the run (HTTP 400): "results" are for tests, which always run: '
            'a build ("cache": true) cannot have them',
        )


class ArgumentsTest(unittest.TestCase):
    """Wrong arguments are refused at the call, with what to pass; no worker needed."""

    def setUp(self) -> None:
        self.pipeline = Pipeline("unit", Worker("http://127.0.0.1:1", token="t"), HumanReporter(io.StringIO()))

    def test_retries_and_results(self) -> None:
        with self.pipeline.stage("one") as s:
            for kwargs, message in [
                ({"retries": -1}, "retries must be how many more times to run a failed test: 0 or more, e.g. 2, not -1"),
                ({"retries": True}, "retries must be how many more times to run a failed test: 0 or more, e.g. 2, not True"),
                ({"retries": 1.5}, "retries must be how many more times to run a failed test: 0 or more, e.g. 2, not 1.5"),
                ({"results": "relative"}, "results must be the absolute container path of the test's results file or "
                                          "directory, e.g. '/results/junit.xml', not 'relative'"),
                ({"results": "/"}, "results must be the absolute container path of the test's results file or "
                                   "directory, e.g. '/results/junit.xml', not '/'"),
                ({"results": "/r/../x"}, "results must be the absolute container path of the test's results file or "
                                         "directory, e.g. '/results/junit.xml', not '/r/../x'"),
            ]:
                with self.subTest(kwargs=kwargs):
                    with self.assertRaises(ValueError) as cm:
                        s.test("t", image=IMAGE, command="true", **kwargs)
                    self.assertEqual(str(cm.exception), message)
            self.assertEqual(s.tasks, [])
        self.assertEqual(self.pipeline.end(), "passed")

    def test_quarantine(self) -> None:
        worker = Worker("http://127.0.0.1:1", token="t")
        self.assertEqual(
            Pipeline("p", worker, HumanReporter(io.StringIO()), quarantine=["unit", "unit/a/b", "unit"]).quarantine,
            frozenset({"unit", "unit/a/b"}),
        )
        for test in ["", "/case", "unit/", "\n"]:
            with self.subTest(test=test):
                with self.assertRaises(PipelineError) as cm:
                    Pipeline("p", worker, HumanReporter(io.StringIO()), quarantine=[test])
                self.assertEqual(
                    str(cm.exception),
                    f"{test!r} cannot be quarantined: name a test as TASK or TASK/CASE, e.g. 'unit' or 'unit/TestLogin'",
                )


if __name__ == "__main__":
    unittest.main()
