package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/bettertest/bettertest"
)

// What bettertest run says when a run ends: each failed task with its
// failed cases (the start of each message) and its last attempt's output,
// then the pipedef's own output.
func TestFailureReport(t *testing.T) {
	one, two := 1, 2
	var long, output strings.Builder
	for i := 1; i <= caseLines+2; i++ {
		fmt.Fprintf(&long, "frame %d\n", i)
	}
	for a := 1; a <= 2; a++ {
		if a > 1 {
			fmt.Fprintf(&output, "── attempt %d of 2 ──\n", a)
		}
		for i := 1; i <= outputLines; i++ {
			fmt.Fprintf(&output, "attempt %d line %d\n", a, i)
		}
	}
	f := failed{
		base: "http://boss",
		run:  bettertest.Run{ID: 7, Status: bettertest.StatusFailed},
		tasks: []bettertest.Task{
			{Name: "unit", ExitCode: &one, Attempts: 2, Tests: &bettertest.TestCounts{Failed: 1, Flaky: 1, Passed: 3}},
			{Name: "lint me", ExitCode: &two, Attempts: 1, Tests: &bettertest.TestCounts{Failed: 1}},
		},
		tests: []bettertest.TestResult{
			{Task: "unit", Case: "TestParse", Test: "unit/TestParse", Attempt: 1, Status: "failed", Output: long.String()},
			{Task: "unit", Case: "TestCache", Test: "unit/TestCache", Attempt: 1, Status: "failed", Output: "stale"},
			{Task: "unit", Case: "TestParse", Test: "unit/TestParse", Attempt: 2, Status: "failed", Output: long.String()},
			{Task: "unit", Case: "TestCache", Test: "unit/TestCache", Attempt: 2, Status: "passed"},
			{Task: "lint me", Test: "lint me", Attempt: 1, Status: "failed", Output: "exit code 2"},
		},
		logs:    map[string]string{"unit": output.String(), "lint me": "a.py:3: unused import\n"},
		pipedef: "Traceback (most recent call last):\nRuntimeError: no tag\n",
	}
	var want strings.Builder
	want.WriteString("what failed:\n" +
		"  ✗ unit  exit 1 · 2 attempts · cases: 1 failed, 1 flaky, 3 passed\n" +
		"    failed TestParse  (failed on attempts 1, 2)\n")
	for i := 1; i <= caseLines; i++ {
		fmt.Fprintf(&want, "      | frame %d\n", i)
	}
	want.WriteString("      … 2 more lines: http://boss/runs/7/tasks/unit\n" +
		"      (the last 20 lines of attempt 2 of 2; the whole output: http://boss/runs/7/tasks/unit/raw)\n")
	for i := 1; i <= outputLines; i++ {
		fmt.Fprintf(&want, "      | attempt 2 line %d\n", i)
	}
	want.WriteString("  ✗ lint me  exit 2 · cases: 1 failed\n" +
		"      | a.py:3: unused import\n" +
		"  the pipedef's own output:\n" +
		"      | Traceback (most recent call last):\n" +
		"      | RuntimeError: no tag\n")
	plain := func(_, s string) string { return s }
	if got := strings.Join(f.report(plain), "\n") + "\n"; got != want.String() {
		t.Errorf("report\n%s\nwant\n%s", got, want.String())
	}
	// A short last attempt shows whole, from its marker on.
	f.logs["unit"] = "attempt 1\n── attempt 2 of 2 ──\nattempt 2\n"
	if got := strings.Join(tail(f.logs["unit"], 2, "URL", plain), "\n"); got != "      (attempt 2 of 2; the earlier attempts' output: URL)\n      | ── attempt 2 of 2 ──\n      | attempt 2" {
		t.Errorf("tail %q", got)
	}
	// A passed run says nothing.
	if got := (failed{run: bettertest.Run{Status: bettertest.StatusPassed}}).report(plain); got != nil {
		t.Errorf("a passed run's report: %q", got)
	}
}
