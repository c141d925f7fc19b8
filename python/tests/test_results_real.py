"""Test results as the real tools write them, each case expected as the tool itself judged it.

The reports are in fixtures/results: gen/ holds the projects and the script that wrote them here
(go test, go-junit-report, gotestsum, ctest, pytest, jest-junit, PHPUnit, RSpec; see gen/SOURCE), jenkins/ the Jenkins JUnit plugin's own
fixtures (see jenkins/SOURCE).
"""

from __future__ import annotations

import unittest
from pathlib import Path

from bettertest import TestCase, parse_results

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "results"


def read(name: str) -> list[TestCase]:
    return parse_results((FIXTURES / name).read_bytes())


def verdicts(cases: list[TestCase]) -> list[tuple[str, str, float, bool, str]]:
    """Each case with the first line of its output: enough to tell a stack trace apart."""
    return [(c.name, c.status, c.duration, c.flaky, c.output.split("\n", 1)[0]) for c in cases]


INITPANIC = (
    "panic: config missing\n\ngoroutine 1 [running]:\nexample.com/goshop/initpanic.init.0()\n"
    "\texample.com/goshop/initpanic/init_test.go:5 +0x25\n"
)


class GoTest(unittest.TestCase):
    def test_packages_that_fail_without_a_failed_test(self) -> None:
        # go test: "FAIL example.com/goshop/broken [build failed]", "FAIL example.com/goshop/mainfail",
        # "FAIL example.com/goshop/initpanic", besides cart's own verdicts.
        self.assertEqual(
            read("go-test-package-failures.json"),
            [
                TestCase(
                    "example.com/goshop/broken",
                    "failed",
                    0.0,
                    "# example.com/goshop/broken [example.com/goshop/broken.test]\n"
                    "broken/broken_test.go:5:37: undefined: undefinedThing\n"
                    "FAIL\texample.com/goshop/broken [build failed]\n",
                ),
                TestCase("example.com/goshop/cart/TestAdd", "passed", 0.0, ""),
                TestCase(
                    "example.com/goshop/cart/TestTotal",
                    "failed",
                    0.0,
                    "=== RUN   TestTotal\n    cart_test.go:9: total: got 6, want 7\n--- FAIL: TestTotal (0.00s)\n",
                ),
                TestCase("example.com/goshop/cart/TestSkipped", "skipped", 0.0, ""),
                TestCase(
                    "example.com/goshop/mainfail",
                    "failed",
                    0.003,
                    "setup: the database is not there\nFAIL\texample.com/goshop/mainfail\t0.003s\n",
                ),
                TestCase(
                    "example.com/goshop/initpanic",
                    "failed",
                    0.005,
                    INITPANIC + "FAIL\texample.com/goshop/initpanic\t0.005s\n",
                ),
            ],
        )

    def test_go_junit_report_of_the_same(self) -> None:
        self.assertEqual(
            read("go-junit-report-package-failures.xml"),
            [
                TestCase("example.com/goshop/cart.TestAdd", "passed", 0.0, ""),
                TestCase("example.com/goshop/cart.TestTotal", "failed", 0.0, "Failed\n    cart_test.go:9: total: got 6, want 7"),
                TestCase("example.com/goshop/cart.TestSkipped", "skipped", 0.0, ""),
                TestCase(
                    "example.com/goshop/broken.[build failed]",
                    "failed",
                    0.0,
                    "Build error\nbroken/broken_test.go:5:37: undefined: undefinedThing",
                ),
                TestCase("example.com/goshop/mainfail.Failure", "failed", 0.0, "Runtime error\nsetup: the database is not there"),
                TestCase("example.com/goshop/initpanic.Failure", "failed", 0.0, "Runtime error\n" + INITPANIC.rstrip("\n")),
            ],
        )

    def test_gotestsum_rerun_fails(self) -> None:
        # gotestsum exited 0: TestSometimes failed, then passed on its rerun.
        self.assertEqual((FIXTURES / "gotestsum-rerun.verdict").read_text(), "gotestsum --rerun-fails exited 0\n")
        failed_run = "=== RUN   TestSometimes\n    flaky_test.go:14: first run fails\n--- FAIL: TestSometimes (0.00s)\n"
        self.assertEqual(
            read("gotestsum-rerun.xml"),
            [
                TestCase("example.com/goshop/flaky.TestSometimes", "passed", 0.0, "Failed\n" + failed_run, flaky=True),
                TestCase("example.com/goshop/flaky.TestSteady", "passed", 0.0, ""),
            ],
        )
        self.assertEqual(
            read("gotestsum-rerun.json"),
            [
                TestCase("example.com/goshop/flaky/TestSometimes", "passed", 0.0, failed_run, flaky=True),
                TestCase("example.com/goshop/flaky/TestSteady", "passed", 0.0, ""),
            ],
        )


class Pytest(unittest.TestCase):
    def test_collection_error_fixture_error_failure_skip(self) -> None:
        # pytest: "1 failed, 1 passed, 1 skipped, 2 errors": the module that does not import and the
        # fixture error are its errors.
        self.assertEqual(
            verdicts(read("pytest-real.xml")),
            [
                ("test_broken", "failed", 0.0, False, "collection failure"),
                ("test_cart.test_add", "passed", 0.0, False, ""),
                ("test_cart.test_total", "failed", 0.0, False, "assert 6 == 7"),
                ("test_cart.test_saved", "failed", 0.0, False, 'failed on setup with "ConnectionError: database refused the connection"'),
                ("test_cart.test_skipped", "skipped", 0.0, False, ""),
            ],
        )


class Jest(unittest.TestCase):
    def test_jest_junit(self) -> None:
        # jest: "Tests: 1 failed, 1 skipped, 1 todo, 1 passed", "Test Suites: 2 failed" (broken.test.js
        # did not load). jest-junit writes the todo test like a passed one: there is nothing to tell
        # them apart. With reportTestSuiteErrors, the suite that did not load is two failed cases.
        self.assertEqual(
            verdicts(read("jest-junit.xml")),
            [
                (" adds. adds", "passed", 0.002, False, ""),
                (" totals. totals", "failed", 0.035, False, "Error: expect(received).toBe(expected) // Object.is equality"),
                (" saves. saves", "skipped", 0.0, False, ""),
                (" checks out. checks out", "passed", 0.0, False, ""),
                ("Test suite failed to run.broken.test.js", "failed", 0.0, False, "  ● Test suite failed to run"),
                (
                    "Test suite failed to run.broken.test.js",
                    "failed",
                    0.0,
                    False,
                    '{"code":"MODULE_NOT_FOUND","hint":"","requireStack":["/work/wt-17/python/tests/fixtures/results/gen/jsshop/'
                    'broken.test.js"],"siblingWithSimilarExtensionFound":false,"moduleName":"./not-a-module",'
                    '"_originalMessage":"Cannot find module \'./not-a-module\' from \'broken.test.js\'"}',
                ),
            ],
        )


class PHPUnit(unittest.TestCase):
    def test_failure_error_skipped_incomplete(self) -> None:
        # phpunit: ".FESI", "Tests: 5, Assertions: 2, Errors: 1, Failures: 1, Skipped: 1, Incomplete: 1."
        # PHPUnit writes the incomplete test as <skipped/>, like the skipped one: neither passed nor
        # failed.
        self.assertEqual(
            verdicts(read("phpunit.xml")),
            [
                ("CartTest.testAdd", "passed", 0.001426, False, ""),
                ("CartTest.testTotal", "failed", 0.000292, False, "CartTest::testTotal"),
                ("CartTest.testSave", "failed", 0.000199, False, "CartTest::testSave"),
                ("CartTest.testSkipped", "skipped", 6.7e-05, False, ""),
                ("CartTest.testIncomplete", "skipped", 6.1e-05, False, ""),
            ],
        )


class RSpec(unittest.TestCase):
    def test_failure_error_pending_skipped(self) -> None:
        # rspec: ".FF**", "5 examples, 2 failures, 2 pending": "Cart totals" and "Cart saves" failed
        # (an exception is a failure to rspec), "Cart discounts" (pending) and "Cart pays" (xit) pending.
        self.assertEqual(
            verdicts(read("rspec.xml")),
            [
                ("spec.cart_spec.Cart adds", "passed", 0.000459, False, ""),
                ("spec.cart_spec.Cart totals", "failed", 0.011419, False, " expected: 7      got: 6  (compared using ==) "),
                ("spec.cart_spec.Cart saves", "failed", 0.005061, False, "database refused the connection"),
                ("spec.cart_spec.Cart discounts", "skipped", 0.000152, False, ""),
                ("spec.cart_spec.Cart pays", "skipped", 3e-06, False, ""),
            ],
        )


class CTest(unittest.TestCase):
    def test_disabled_is_skipped(self) -> None:
        # ctest: "passes ... Passed", "fails ... ***Failed", "someday ... ***Not Run (Disabled)".
        self.assertEqual(
            read("ctest.xml"),
            [
                TestCase("passes.passes", "passed", 0.00138103, ""),
                TestCase("fails.fails", "failed", 0.00140249, ""),
                TestCase("someday.someday", "skipped", 0.0, ""),
            ],
        )


class Jenkins(unittest.TestCase):
    def test_suite_level_error_is_a_failed_case(self) -> None:
        self.assertEqual(
            verdicts(read("jenkins/junit-report-6700.xml")),
            [("gda.device.detector.XHDetectorTest.<init>", "failed", 0.0, False, "gda/device/detector/DAServer")],
        )

    def test_negative_time_is_an_unknown_duration(self) -> None:
        self.assertEqual(
            read("jenkins/junit-report-bad-duration.xml"),
            [TestCase("DummyTest.testDummyMethod", "passed", 0.0, ""), TestCase("DummyTest.testDummyMethod", "passed", 100.0, "")],
        )

    def test_surefire_reruns(self) -> None:
        self.assertEqual(
            verdicts(read("jenkins/TEST-io.olamy.FlakyTest.xml")),
            [("io.olamy.FlakyTest.testApp", "passed", 0.001, True, "obvious fail")],
        )
        flaky = read("jenkins/TEST-io.olamy.FlakyTest.xml")[0]
        self.assertEqual(flaky.output.count("junit.framework.AssertionFailedError: "), 2)
        self.assertEqual(
            verdicts(read("jenkins/TEST-io.olamy.AlwaysFailTest.xml")),
            [("io.olamy.AlwaysFailTest.testApp", "failed", 0.001, False, "built to fail")],
        )


if __name__ == "__main__":
    unittest.main()
