package ui

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/bettertest/bettertest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ with what View renders now")

// t0 is 2026-11-26 00:00:00 UTC in milliseconds.
const t0 = int64(1795651200000)

func code(c int) *int { return &c }

func fixtureRun() *bettertest.Run {
	return &bettertest.Run{ID: 7, Pipeline: "hello", Status: "failed", Trigger: "push", Worker: "w1",
		Commit: "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", Ref: "refs/heads/main", Author: "Ada <L>",
		CommitURL: "https://github.com/o/hello/commit/0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
		CreatedMS: t0, StartedMS: t0 + 100, FinishedMS: t0 + 3350, ExitCode: code(1), Error: "the pipedef exited with status 1: see its output",
		Stages: []bettertest.Stage{
			{Name: "build", Status: "passed", StartedMS: t0 + 200, FinishedMS: t0 + 1200, Tasks: []bettertest.Task{
				{Stage: "build", Name: "compile", Kind: "build", Status: "passed", ExitCode: nil, Cached: true, StartedMS: t0 + 200, FinishedMS: t0 + 210,
					BuiltBy: 5, Artifacts: []bettertest.ArtifactEvent{
						{Path: "/out", ID: "sha256:241de8cd272ae53dba48fbd87d20a3ad4f28b62dbaa95c238a5d80119ebdd89a", Size: 18432},
						{Path: "/usr/bin/tool", ID: "sha256:0d6c1e0f8e3b5a0f6e6a2d1f4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a291", Size: 3_400_000},
					}},
			}},
			{Name: "test", Status: "failed", StartedMS: t0 + 1200, FinishedMS: t0 + 3300, Tasks: []bettertest.Task{
				{Stage: "test", Name: "unit", Kind: "test", Status: "passed", ExitCode: code(0), StartedMS: t0 + 1200, FinishedMS: t0 + 2450,
					Tests: &bettertest.TestCounts{Passed: 3, Flaky: 1}},
				{Stage: "test", Name: "lint <src>", Kind: "test", Status: "failed", ExitCode: code(2), StartedMS: t0 + 1200, FinishedMS: t0 + 3300,
					Attempts: 2, Tests: &bettertest.TestCounts{Failed: 3, Flaky: 1}, WaitedMS: 600, WaitedFor: []string{"a slot", "the cache <pip>"},
					Artifacts: []bettertest.ArtifactEvent{{Path: `/reports/"lint" <all>.html`, ID: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Size: 512}}},
			}},
			{Name: "deploy", Status: "skipped", Tasks: []bettertest.Task{{Stage: "deploy", Name: "ship", Kind: "test", Status: "skipped"}}},
		}}
}

// fixtureRunTests are the test results of fixtureRun's cases that failed in
// some attempt, as a run page holds them: lint <src> failed in two cases,
// one of them on both attempts with a long message, and vet is flaky.
func fixtureRunTests() []bettertest.TestResult {
	long := ""
	for i := 1; i <= CaseLines+3; i++ {
		long += fmt.Sprintf("line %d <of the message>\n", i)
	}
	return []bettertest.TestResult{
		{Task: "lint <src>", Case: "style", Test: "lint <src>/style", Attempt: 1, Status: "failed", Output: long},
		{Task: "lint <src>", Case: "vet", Test: "lint <src>/vet", Attempt: 1, Status: "failed", Output: "flaky"},
		{Task: "lint <src>", Case: "style", Test: "lint <src>/style", Attempt: 2, Status: "failed", Output: long},
		{Task: "lint <src>", Case: "vet", Test: "lint <src>/vet", Attempt: 2, Status: "passed"},
		{Task: "lint <src>", Case: "types", Test: "lint <src>/types", Attempt: 2, Status: "failed", Output: "a.c:3: want int, got <string>"},
		{Task: "lint <src>", Test: "lint <src>", Attempt: 2, Status: "failed", Output: "exit code 2"},
	}
}

func fixtureWorkers() []bettertest.WorkerInfo {
	return []bettertest.WorkerInfo{
		{Name: "w1", URL: "http://build1:9009", Up: true, Version: "v1", Docker: "20.10.24", Running: 1, Capacity: 2, Assigned: 1, ChangedMS: t0},
		{Name: "w2", URL: "http://build2:9009", Up: false, Error: "cannot reach it: connection refused", ChangedMS: t0 + 60000},
	}
}

func fixture(page PageKind) Model {
	m := Model{Page: page, Workers: fixtureWorkers()}
	switch page {
	case PagePipelines:
		m.Path = "/"
		m.Pipelines = []Pipeline{
			{Name: "hello", Runs: []bettertest.Run{{ID: 8, Pipeline: "hello", Status: "running", Tests: &bettertest.TestCounts{Passed: 12, Failed: 1}}, {ID: 7, Pipeline: "hello", Status: "failed", Commit: "0d1a26e67d8f", Tests: &bettertest.TestCounts{Failed: 3, Flaky: 2, Passed: 3}}, {ID: 5, Pipeline: "hello", Status: "passed"}}},
			{Name: "nightly", Runs: nil},
		}
		m.Selected = 1
	case PageRun:
		m.Path, m.Run, m.Selected = "/runs/7", fixtureRun(), 2
		m.Tests = fixtureRunTests()
		// The pipedef's own output: its traceback.
		m.Log = NewLog([]bettertest.Chunk{{Stream: "stderr", Text: "Traceback (most recent call last):\n  File \"ci.py\", line 9, in <module>\n    raise SystemExit(\"deploy <refused>\")\nSystemExit: deploy <refused>\n"}})
	case PageTask:
		m.Path, m.Run, m.Task = "/runs/7/tasks/lint%20%3Csrc%3E", fixtureRun(), "lint <src>"
		m.Log = NewLog([]bettertest.Chunk{{Stream: "stdout", Text: "checking a.c\n── attempt 2 of 2 ──\nchecking a.c\n"}, {Stream: "stderr", Text: "a.c:3: <tab> found\nexit"}})
	case PageWorkers:
		m.Path = "/workers"
	case PageFlaky:
		m.Path, m.Flaky = "/flaky", fixtureFlaky()
	}
	return m
}

// fixtureFlaky is the flaky page's list as the boss ranks it: flaky tests
// first by flip rate, then the quarantined ones that are flaky no more.
func fixtureFlaky() []bettertest.FlakyTest {
	const c1, c2, c3 = "1111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "2222222bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "3333333ccccccccccccccccccccccccccccccccc"
	return []bettertest.FlakyTest{
		{Pipeline: "hello", Test: "unit/TestRace", Flaky: true, FlipRate: 0.5,
			Reasons:  []string{"failed, then passed when retried in run #9", "flipped 2 times in 5 runs"},
			Evidence: []bettertest.TestRun{{RunID: 9, Commit: c3, Outcome: "flaky"}, {RunID: 7, Commit: c2, Outcome: "failed"}},
			History: []bettertest.TestRun{{RunID: 9, Commit: c3, Outcome: "flaky"}, {RunID: 8, Commit: c2, Outcome: "passed"},
				{RunID: 7, Commit: c2, Outcome: "failed"}, {RunID: 6, Commit: c1, Outcome: "passed"}, {RunID: 5, Outcome: "passed"}}},
		{Pipeline: "hello", Test: "unit/TestDiv <zero>", Flaky: true, FlipRate: 0.25, Quarantined: true, QuarantinedBy: "ui",
			Reasons:  []string{"failed, then passed when retried in run #6"},
			Evidence: []bettertest.TestRun{{RunID: 6, Commit: c1, Outcome: "flaky"}},
			History:  []bettertest.TestRun{{RunID: 7, Commit: c2, Outcome: "failed"}, {RunID: 6, Commit: c1, Outcome: "flaky"}}},
		{Pipeline: "nightly", Test: "e2e", Flaky: true, FlipRate: 0, Quarantined: true, QuarantinedBy: "flag",
			Reasons: []string{"quarantined by the boss's --quarantine flag"}},
		{Pipeline: "hello", Test: "lint <src>", Flaky: false, FlipRate: 0, Quarantined: true, QuarantinedBy: "ui", CleanRuns: 1,
			Reasons: []string{"quarantined"},
			History: []bettertest.TestRun{{RunID: 9, Commit: c3, Outcome: "passed"}}},
	}
}

// fixtureFlakyRun is fixtureRun whose unit tests were retried: TestRace
// flipped, and TestDiv failed twice but is quarantined.
func fixtureFlakyRun() *bettertest.Run {
	r := fixtureRun()
	unit := &r.Stages[1].Tasks[0]
	unit.Attempts, unit.Flaky, unit.Quarantined = 2, true, true
	unit.Artifacts = []bettertest.ArtifactEvent{ // each attempt's coverage
		{Path: "/coverage", ID: "sha256:1111111111111111111111111111111111111111111111111111111111111111", Size: 4096, Attempt: 1},
		{Path: "/coverage", ID: "sha256:2222222222222222222222222222222222222222222222222222222222222222", Size: 4608, Attempt: 2},
	}
	return r
}

func fixtureTests() []bettertest.TestResult {
	return []bettertest.TestResult{
		{Task: "unit", Case: "TestAdd", Test: "unit/TestAdd", Attempt: 1, Status: "passed", DurationMS: 120},
		{Task: "unit", Case: "TestRace", Test: "unit/TestRace", Attempt: 1, Status: "failed", DurationMS: 2300, Output: "race_test.go:12: got 1, want 2"},
		{Task: "unit", Case: "TestDiv <zero>", Test: "unit/TestDiv <zero>", Attempt: 1, Status: "failed", DurationMS: 5, Output: "div_test.go:9: panic: <divide by zero>\n\tgoroutine 7"},
		{Task: "unit", Case: "TestSkip", Test: "unit/TestSkip", Attempt: 1, Status: "skipped"},
		{Task: "unit", Case: "TestRace", Test: "unit/TestRace", Attempt: 2, Status: "passed", DurationMS: 2100},
		{Task: "unit", Case: "TestDiv <zero>", Test: "unit/TestDiv <zero>", Attempt: 2, Status: "failed", DurationMS: 6, Output: "div_test.go:9: panic: <divide by zero>\n\tgoroutine 9"},
	}
}

// fixtureTaskTests is the task page of the retried unit task.
func fixtureTaskTests() Model {
	m := fixture(PageTask)
	m.Path, m.Run, m.Task = "/runs/7/tasks/unit", fixtureFlakyRun(), "unit"
	m.Log = NewLog([]bettertest.Chunk{{Stream: "stdout", Text: "ok\n"}})
	m.Tests, m.Flaky = fixtureTests(), fixtureFlaky()
	return m
}

// fixtureAwaiting is the run page of a pull request from a fork that no one
// approved yet.
func fixtureAwaiting() Model {
	m := fixture(PageRun)
	m.Path = "/runs/9"
	m.Run = &bettertest.Run{ID: 9, Pipeline: "hello", Status: bettertest.StatusAwaitingApproval, Trigger: "pull_request",
		Commit: "3333333ccccccccccccccccccccccccccccccccc", Ref: "refs/pull/4/head", Author: "mallory", CreatedMS: t0, Stages: []bettertest.Stage{}}
	m.Selected = 0
	return m
}

// fixtureCached is the task page of a build answered from the cache, which
// run #5 built.
func fixtureCached() Model {
	m := fixture(PageTask)
	m.Path, m.Task, m.Log = "/runs/7/tasks/compile", "compile", NewLog(nil)
	return m
}

// golden compares got with testdata/name, byte for byte.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./ui -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from what View renders:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestViewPages(t *testing.T) {
	help := fixture(PagePipelines)
	help.Help, help.Notice = true, "hello has no runs yet: press r to start one"
	long := fixture(PageTask)
	long.Log = NewLog([]bettertest.Chunk{{Stream: "stdout", Text: strings.Repeat("x\n", TailLines+5)}})
	flakyRun := fixture(PageRun)
	flakyRun.Run = fixtureFlakyRun()
	// unit holds a listed flaky test, lint <src> is one, ship's is listed
	// only as quarantined and unitx's does not belong to unit.
	flakyRun.Flaky = []bettertest.FlakyTest{
		{Pipeline: "hello", Test: "unit/TestRace", Flaky: true},
		{Pipeline: "hello", Test: "unit/TestDiv <zero>", Flaky: true, Quarantined: true, QuarantinedBy: "ui"},
		{Pipeline: "hello", Test: "lint <src>", Flaky: true},
		{Pipeline: "hello", Test: "ship", Quarantined: true, QuarantinedBy: "flag"},
		{Pipeline: "hello", Test: "unitx/TestA", Flaky: true},
	}
	flakyHelp := fixture(PageFlaky)
	flakyHelp.Selected, flakyHelp.Help = 1, true
	// A run with more failed cases than its page lists, and a long output of the pipedef.
	manyFailures := fixture(PageRun)
	manyFailures.Tests = nil
	for i := range FailedCases + 2 {
		manyFailures.Tests = append(manyFailures.Tests, bettertest.TestResult{Task: "lint <src>", Case: fmt.Sprint("case", i),
			Test: fmt.Sprint("lint <src>/case", i), Attempt: 1, Status: "failed"})
	}
	var prints []bettertest.Chunk
	for i := range PipedefLines + 5 {
		prints = append(prints, bettertest.Chunk{Stream: "stdout", Text: fmt.Sprintf("print %d\n", i)})
	}
	manyFailures.Log = NewLog(prints)
	for name, m := range map[string]Model{
		"pipelines.html":        fixture(PagePipelines),
		"pipelines-help.html":   help,
		"pipelines-none.html":   {Page: PagePipelines, Path: "/"},
		"run.html":              fixture(PageRun),
		"task.html":             fixture(PageTask),
		"workers.html":          fixture(PageWorkers),
		"flaky.html":            flakyHelp,
		"flaky-none.html":       {Page: PageFlaky, Path: "/flaky", Workers: fixtureWorkers()},
		"run-flaky.html":        flakyRun,
		"task-tests.html":       fixtureTaskTests(),
		"run-awaiting.html":     fixtureAwaiting(),
		"task-cached.html":      fixtureCached(),
		"run-failures-cut.html": manyFailures,
	} {
		golden(t, name, View(m).HTML())
	}
	// The tail of a long log, with the control to show more.
	page := View(long)
	if got := page.Main[1].HTML(); got != `<section id="tests"></section>` {
		t.Errorf("tests of a task without test cases: %s", got)
	}
	if got := page.Main[2].HTML(); got != `<p id="log-more">5 earlier lines are not shown. <button data-action="more">Show 5 more</button></p>` {
		t.Errorf("log-more: %s", got)
	}
	if got := page.Main[3].Inner; got != strings.Repeat("x\n", TailLines) {
		t.Errorf("the log shows %d lines, want the last %d", strings.Count(got, "\n"), TailLines)
	}
}

func TestUpdateKeys(t *testing.T) {
	for _, c := range []struct {
		name    string
		m       Model
		key     string
		want    func(Model) Model
		effects []Effect
	}{
		{"j moves down", fixture(PagePipelines), "j", func(m Model) Model { m.Selected = 1; return m }, nil},
		{"ArrowUp moves up", fixture(PagePipelines), "ArrowUp", func(m Model) Model { m.Selected = 0; return m }, nil},
		{"k stops at the top", func() Model { m := fixture(PagePipelines); m.Selected = 0; return m }(), "k", func(m Model) Model { return m }, nil},
		{"ArrowDown stops at the bottom", fixture(PagePipelines), "ArrowDown", func(m Model) Model { return m }, nil},
		{"? opens the help", fixture(PagePipelines), "?", func(m Model) Model { m.Help = true; return m }, nil},
		{"Escape closes the help first", func() Model { m := fixture(PageRun); m.Help = true; return m }(), "Escape", func(m Model) Model { m.Help = false; return m }, nil},
		{"Enter on a pipeline without runs says so", fixture(PagePipelines), "Enter",
			func(m Model) Model { m.Notice = "nightly has no runs yet: press r to start one"; return m }, nil},
		{"Enter opens a pipeline's last run", func() Model { m := fixture(PagePipelines); m.Selected = 0; return m }(), "Enter",
			func(m Model) Model { m.Path = "/runs/8"; return m }, []Effect{{Kind: Load, Path: "/runs/8"}, {Kind: PushURL, Path: "/runs/8"}}},
		{"Enter opens the selected task", fixture(PageRun), "Enter",
			func(m Model) Model { m.Path = "/runs/7/tasks/lint%20%3Csrc%3E"; return m },
			[]Effect{{Kind: Load, Path: "/runs/7/tasks/lint%20%3Csrc%3E"}, {Kind: PushURL, Path: "/runs/7/tasks/lint%20%3Csrc%3E"}}},
		{"Escape goes from a task to its run", fixture(PageTask), "Escape",
			func(m Model) Model { m.Path = "/runs/7"; return m }, []Effect{{Kind: Load, Path: "/runs/7"}, {Kind: PushURL, Path: "/runs/7"}}},
		{"Backspace goes from a run to the pipelines", fixture(PageRun), "Backspace",
			func(m Model) Model { m.Path = "/"; return m }, []Effect{{Kind: Load, Path: "/"}, {Kind: PushURL, Path: "/"}}},
		{"Escape on the pipelines does nothing", fixture(PagePipelines), "Escape", func(m Model) Model { return m }, nil},
		{"r runs the selected pipeline", fixture(PagePipelines), "r",
			func(m Model) Model { m.Notice = "starting a run of nightly"; return m }, []Effect{{Kind: Trigger, Pipeline: "nightly"}}},
		{"r on a run runs its pipeline again", fixture(PageRun), "r",
			func(m Model) Model { m.Notice = "starting a run of hello"; return m }, []Effect{{Kind: Trigger, Pipeline: "hello"}}},
		{"c cancels the selected pipeline's running run", func() Model { m := fixture(PagePipelines); m.Selected = 0; return m }(), "c",
			func(m Model) Model { m.Notice = "cancelling run #8"; return m }, []Effect{{Kind: Cancel, RunID: 8}}},
		{"c on a run that ended says so", fixture(PageRun), "c",
			func(m Model) Model {
				m.Notice = "run #7 has already ended (failed): there is nothing to cancel"
				return m
			}, nil},
		{"a approves a run that awaits approval", fixtureAwaiting(), "a",
			func(m Model) Model { m.Notice = "approving run #9"; return m }, []Effect{{Kind: Approve, RunID: 9}}},
		{"a on a run that does not await approval says so", fixture(PageRun), "a",
			func(m Model) Model {
				m.Notice = "run #7 is failed: only a pull request from a fork awaits approval"
				return m
			}, nil},
		{"c cancels a run that awaits approval", fixtureAwaiting(), "c",
			func(m Model) Model { m.Notice = "cancelling run #9"; return m }, []Effect{{Kind: Cancel, RunID: 9}}},
		{"w opens the workers", fixture(PagePipelines), "w",
			func(m Model) Model { m.Path = "/workers"; return m }, []Effect{{Kind: Load, Path: "/workers"}, {Kind: PushURL, Path: "/workers"}}},
		{"p opens the pipelines", fixture(PageWorkers), "p",
			func(m Model) Model { m.Path = "/"; return m }, []Effect{{Kind: Load, Path: "/"}, {Kind: PushURL, Path: "/"}}},
		{"m on a task with nothing hidden does nothing", fixture(PageTask), "m", func(m Model) Model { return m }, nil},
		{"an unknown key does nothing", fixture(PageRun), "x", func(m Model) Model { return m }, nil},
	} {
		got := Update(c.m, Key{Key: c.key})
		want := c.want(c.m)
		want.Effects = c.effects
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, got, want)
		}
	}
}

func TestUpdateLoadedSelectsWhereYouCameFrom(t *testing.T) {
	// From a run back to the pipelines: the run's pipeline is selected.
	m := Update(fixture(PageRun), Key{Key: "Escape"})
	pipelines := fixture(PagePipelines).Pipelines
	m = Update(m, Loaded{Path: "/", Page: PagePipelines, Pipelines: pipelines})
	if m.Page != PagePipelines || m.Selected != 0 || m.Run != nil {
		t.Fatalf("back on the pipelines: page %v selected %d", m.Page, m.Selected)
	}
	// A run opens on its first failed task.
	m = Update(m, Key{Key: "Enter"})
	m = Update(m, Loaded{Path: "/runs/8", Page: PageRun, Run: fixtureRun()})
	if m.Selected != 2 {
		t.Fatalf("a run opened with task %d selected, want 2 (the failed one)", m.Selected)
	}
	// An answer for a page already left is dropped.
	stale := Update(m, Loaded{Path: "/workers", Page: PageWorkers})
	if !reflect.DeepEqual(stale, m) {
		t.Fatalf("a stale Loaded changed the model")
	}
	// A page that does not exist shows the pipelines with a notice.
	m = Update(Update(m, Navigate{Path: "/runs/99"}), Loaded{Path: "/runs/99", Page: PagePipelines, Pipelines: pipelines, NotFound: "there is no run #99"})
	if m.Page != PagePipelines || m.Notice != "there is no run #99" {
		t.Fatalf("not found: %+v", m)
	}
}

func TestUpdateBossEvents(t *testing.T) {
	// A new run appears first in its pipeline's strip; a change replaces it.
	m := fixture(PagePipelines)
	m = Update(m, RunChanged{Run: bettertest.Run{ID: 9, Pipeline: "nightly", Status: "queued"}})
	m = Update(m, RunChanged{Run: bettertest.Run{ID: 9, Pipeline: "nightly", Status: "running"}})
	m = Update(m, RunChanged{Run: bettertest.Run{ID: 8, Pipeline: "hello", Status: "passed"}})
	if got := m.Pipelines[1].Runs; !reflect.DeepEqual(got, []bettertest.Run{{ID: 9, Pipeline: "nightly", Status: "running"}}) {
		t.Fatalf("nightly's runs: %+v", got)
	}
	if got := m.Pipelines[0].Runs[0].Status; got != "passed" {
		t.Fatalf("hello's last run: %s", got)
	}
	// The strip keeps StripRuns runs.
	for id := int64(10); id < 30; id++ {
		m = Update(m, RunChanged{Run: bettertest.Run{ID: id, Pipeline: "nightly", Status: "passed"}})
	}
	if n, first := len(m.Pipelines[1].Runs), m.Pipelines[1].Runs[0].ID; n != StripRuns || first != 29 {
		t.Fatalf("strip: %d runs, first #%d", n, first)
	}

	// On a run page: the run's own fields, new stages and tasks, changed tasks.
	r := fixture(PageRun)
	before := r.Run
	r = Update(r, RunChanged{Run: bettertest.Run{ID: 7, Pipeline: "hello", Status: "passed"}})
	r = Update(r, StageChanged{Event: bettertest.StageEvent{RunID: 7, Stage: bettertest.Stage{Name: "extra", Status: "running"}}})
	r = Update(r, TaskChanged{Event: bettertest.TaskEvent{RunID: 7, Task: bettertest.Task{Stage: "extra", Name: "more", Status: "running"}}})
	r = Update(r, TaskChanged{Event: bettertest.TaskEvent{RunID: 7, Task: bettertest.Task{Stage: "test", Name: "unit", Status: "failed"}}})
	r = Update(r, TaskChanged{Event: bettertest.TaskEvent{RunID: 3, Task: bettertest.Task{Stage: "test", Name: "other run", Status: "failed"}}})
	if r.Run.Status != "passed" || len(r.Run.Stages) != 4 || r.Run.Stages[3].Tasks[0].Name != "more" || r.Run.Stages[1].Tasks[0].Status != "failed" {
		t.Fatalf("run after events: %+v", r.Run)
	}
	if before.Status != "failed" || len(before.Stages) != 3 || before.Stages[1].Tasks[0].Status != "passed" {
		t.Fatalf("Update changed the model it was given: %+v", before)
	}

	// On a task page: its output, once; other tasks' output is not shown.
	tm := fixture(PageTask)
	tm = Update(tm, Output{Event: bettertest.OutputChunkEvent{RunID: 7, Task: "lint <src>", Seq: 1, Chunk: bettertest.Chunk{Text: "already here"}}})
	tm = Update(tm, Output{Event: bettertest.OutputChunkEvent{RunID: 7, Task: "lint <src>", Seq: 2, Chunk: bettertest.Chunk{Text: "ed\nnext\n"}}})
	tm = Update(tm, Output{Event: bettertest.OutputChunkEvent{RunID: 7, Task: "unit", Seq: 0, Chunk: bettertest.Chunk{Text: "not mine\n"}}})
	if got := logText(tm.Log); got != "checking a.c\n<span class=\"attempt\">── attempt 2 of 2 ──</span>\nchecking a.c\na.c:3: &lt;tab&gt; found\nexited\nnext\n" {
		t.Fatalf("log: %q", got)
	}
	// On a run page: the pipedef's own output, task "".
	rm := fixture(PageRun)
	rm = Update(rm, Output{Event: bettertest.OutputChunkEvent{RunID: 7, Task: "", Seq: 1, Chunk: bettertest.Chunk{Text: "late\n"}}})
	rm = Update(rm, Output{Event: bettertest.OutputChunkEvent{RunID: 7, Task: "unit", Seq: 1, Chunk: bettertest.Chunk{Text: "not mine\n"}}})
	if got := rm.Log.Lines[len(rm.Log.Lines)-2:]; !reflect.DeepEqual(got, []string{"SystemExit: deploy <refused>", "late"}) {
		t.Fatalf("the pipedef's output ends %q", got)
	}

	// Workers are replaced by name, new ones kept in name order.
	w := Update(fixture(PageWorkers), WorkerChanged{Worker: bettertest.WorkerInfo{Name: "w0", Up: true}})
	w = Update(w, WorkerChanged{Worker: bettertest.WorkerInfo{Name: "w2", Up: true}})
	var names []string
	for _, x := range w.Workers {
		names = append(names, x.Name+map[bool]string{true: "+", false: "-"}[x.Up])
	}
	if strings.Join(names, " ") != "w0+ w1+ w2+" {
		t.Fatalf("workers: %v", names)
	}
}

func TestUpdateActions(t *testing.T) {
	long := fixture(PageTask)
	long.Log = NewLog([]bettertest.Chunk{{Text: strings.Repeat("x\n", TailLines+MoreLines+7)}})
	got := Update(long, Action{Name: "more"}).Log.Start
	if got != 7 {
		t.Fatalf("more: start %d, want 7", got)
	}
	if got := Update(Update(long, Action{Name: "more"}), Key{Key: "m"}).Log.Start; got != 0 {
		t.Fatalf("more again: start %d, want 0", got)
	}
	run := Update(fixture(PageRun), Action{Name: "run", Pipeline: "hello"})
	if !reflect.DeepEqual(run.Effects, []Effect{{Kind: Trigger, Pipeline: "hello"}}) {
		t.Fatalf("run: %+v", run.Effects)
	}
	cancel := Update(fixture(PageRun), Action{Name: "cancel", RunID: 8})
	if !reflect.DeepEqual(cancel.Effects, []Effect{{Kind: Cancel, RunID: 8}}) || cancel.Notice != "cancelling run #8" {
		t.Fatalf("cancel: %+v", cancel)
	}
	triggered := Update(fixture(PagePipelines), Triggered{Run: bettertest.Run{ID: 12}})
	if triggered.Path != "/runs/12" || !reflect.DeepEqual(triggered.Effects, []Effect{{Kind: Load, Path: "/runs/12"}, {Kind: PushURL, Path: "/runs/12"}}) {
		t.Fatalf("triggered: %+v", triggered)
	}
	if h := Update(fixture(PageRun), Action{Name: "help"}); !h.Help || Update(h, Action{Name: "help"}).Help {
		t.Fatalf("the help button does not toggle the help")
	}
	if n := Update(fixture(PageRun), Notice{Text: "no"}); n.Notice != "no" {
		t.Fatalf("notice: %q", n.Notice)
	}
}

func TestDiff(t *testing.T) {
	m := fixture(PageTask)
	old := View(m)
	m = Update(m, Output{Event: bettertest.OutputChunkEvent{RunID: 7, Task: "lint <src>", Seq: 2, Chunk: bettertest.Chunk{Text: "ed <ok>\n"}}})
	if got := Diff(old, View(m)); !reflect.DeepEqual(got, []Fragment{{Op: "append", ID: "log", HTML: "ed &lt;ok&gt;\n"}}) {
		t.Fatalf("output: %+v", got)
	}
	r := fixture(PageRun)
	old = View(r)
	r = Update(r, Key{Key: "k"})
	got := Diff(old, View(r))
	want := []Fragment{{Op: "replace", ID: "stage-1", HTML: View(r).Main[3].HTML()}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("selection within a stage: %+v", got)
	}
	// A new page replaces <main> and the title.
	p := View(fixture(PagePipelines))
	got = Diff(old, p)
	if !reflect.DeepEqual(got, []Fragment{{Op: "title", HTML: "Pipelines · bettertest"}, {Op: "replace", ID: "main", HTML: p.MainHTML()}}) {
		t.Fatalf("page change: %+v", got)
	}
	if got := Diff(p, p); got != nil {
		t.Fatalf("no change: %+v", got)
	}
}

// Live output keeps the page to the tail: shown lines are trimmed back to
// TailLines once they reach twice that, unless the viewer asked for more.
func TestLiveLogKeepsToTheTail(t *testing.T) {
	var l Log
	for i := range 2*TailLines + 1 {
		l.Append(fmt.Sprintf("%d\n", i))
	}
	if l.Start != TailLines+1 || len(l.Lines) != 2*TailLines+1 {
		t.Fatalf("after %d lines: start %d", len(l.Lines), l.Start)
	}
	m := fixture(PageTask)
	m.Log = NewLog([]bettertest.Chunk{{Text: strings.Repeat("x\n", TailLines+10)}})
	m = Update(m, Key{Key: "m"})
	if !m.Log.Pinned || m.Log.Start != 0 {
		t.Fatalf("after more: %+v", m.Log.Start)
	}
	for i := range 3 * TailLines {
		m = Update(m, Output{Event: bettertest.OutputChunkEvent{RunID: 7, Task: "lint <src>", Seq: 1 + i, Chunk: bettertest.Chunk{Text: "y\n"}}})
	}
	if m.Log.Start != 0 {
		t.Fatalf("a pinned log was trimmed to %d", m.Log.Start)
	}
}

func TestUpdateFlakyKeys(t *testing.T) {
	at := func(i int) Model { m := fixture(PageFlaky); m.Selected = i; return m }
	nav := func(path string) []Effect { return []Effect{{Kind: Load, Path: path}, {Kind: PushURL, Path: path}} }
	for _, c := range []struct {
		name    string
		m       Model
		key     string
		want    func(Model) Model
		effects []Effect
	}{
		{"f opens the flaky tests", fixture(PageRun), "f", func(m Model) Model { m.Path = "/flaky"; return m }, nav("/flaky")},
		{"j moves down the flaky tests", at(0), "j", func(m Model) Model { m.Selected = 1; return m }, nil},
		{"k stops at the top", at(0), "k", func(m Model) Model { return m }, nil},
		{"j stops at the bottom", at(3), "j", func(m Model) Model { return m }, nil},
		{"q quarantines a flaky test", at(0), "q",
			func(m Model) Model { m.Notice = "quarantining hello/unit/TestRace"; return m },
			[]Effect{{Kind: Quarantine, Pipeline: "hello", Test: "unit/TestRace", On: true}}},
		{"q releases a test quarantined in the UI", at(1), "q",
			func(m Model) Model { m.Notice = "releasing hello/unit/TestDiv <zero>"; return m },
			[]Effect{{Kind: Quarantine, Pipeline: "hello", Test: "unit/TestDiv <zero>", On: false}}},
		{"q on a test quarantined by the flag says how to release it", at(2), "q",
			func(m Model) Model {
				m.Notice = "nightly/e2e is quarantined by the boss's --quarantine flag: restart the boss without it to release it"
				return m
			}, nil},
		{"q elsewhere does nothing", fixture(PageRun), "q", func(m Model) Model { return m }, nil},
		{"Enter opens the newest run that shows the flakiness", at(1), "Enter", func(m Model) Model { m.Path = "/runs/6"; return m }, nav("/runs/6")},
		{"Enter without evidence opens the newest run", at(3), "Enter", func(m Model) Model { m.Path = "/runs/9"; return m }, nav("/runs/9")},
		{"Enter on a test that never ran says so", at(2), "Enter",
			func(m Model) Model {
				m.Notice = "nightly/e2e has not run since it was quarantined: there is no run to open"
				return m
			}, nil},
		{"Enter on the empty list does nothing", Model{Page: PageFlaky, Path: "/flaky"}, "Enter", func(m Model) Model { return m }, nil},
		{"Escape goes from the flaky tests to the pipelines", at(1), "Escape", func(m Model) Model { m.Path = "/"; return m }, nav("/")},
		{"Backspace too", at(1), "Backspace", func(m Model) Model { m.Path = "/"; return m }, nav("/")},
	} {
		got := Update(c.m, Key{Key: c.key})
		want := c.want(c.m)
		want.Effects = c.effects
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, got, want)
		}
	}
}

func TestUpdateQuarantineAction(t *testing.T) {
	// A click on another row's button selects that row.
	m := Update(fixture(PageFlaky), Action{Name: "quarantine", Pipeline: "hello", Test: "lint <src>", On: false})
	if m.Selected != 3 || m.Notice != "releasing hello/lint <src>" ||
		!reflect.DeepEqual(m.Effects, []Effect{{Kind: Quarantine, Pipeline: "hello", Test: "lint <src>", On: false}}) {
		t.Fatalf("release by button: %+v", m)
	}
	// A test the page does not list (e.g. from a run page) is quarantined all the same.
	r := Update(fixture(PageRun), Action{Name: "quarantine", Pipeline: "hello", Test: "unit", On: true})
	if r.Selected != 2 || r.Notice != "quarantining hello/unit" ||
		!reflect.DeepEqual(r.Effects, []Effect{{Kind: Quarantine, Pipeline: "hello", Test: "unit", On: true}}) {
		t.Fatalf("quarantine from a run page: %+v", r)
	}
	// The flag's quarantine cannot be released from the UI.
	f := Update(fixture(PageFlaky), Action{Name: "quarantine", Pipeline: "nightly", Test: "e2e", On: false})
	if f.Effects != nil || f.Selected != 0 || f.Notice != "nightly/e2e is quarantined by the boss's --quarantine flag: restart the boss without it to release it" {
		t.Fatalf("release of the flag's quarantine: %+v", f)
	}
}

func TestUpdateFlakyChanged(t *testing.T) {
	reload := func(path string) []Effect { return []Effect{{Kind: Load, Path: path}} }
	for _, c := range []struct {
		name     string
		m        Model
		pipeline string
		effects  []Effect
	}{
		{"the flaky page shows every pipeline's", fixture(PageFlaky), "other", reload("/flaky")},
		{"a run page of the pipeline", fixture(PageRun), "hello", reload("/runs/7")},
		{"a task page of the pipeline", fixture(PageTask), "hello", reload("/runs/7/tasks/lint%20%3Csrc%3E")},
		{"a run page of another pipeline", fixture(PageRun), "nightly", nil},
		{"the pipelines page", fixture(PagePipelines), "hello", nil},
		{"the workers page", fixture(PageWorkers), "hello", nil},
	} {
		got := Update(c.m, FlakyChanged{Pipeline: c.pipeline})
		want := c.m
		want.Effects = c.effects
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, got, want)
		}
	}

	// q, the boss quarantines, FlakyChanged, reload: the list comes back in a
	// new order and the toggled test stays selected, the notice stays.
	m := fixture(PageFlaky)
	m = Update(m, Key{Key: "q"})
	m = Update(m, FlakyChanged{Pipeline: "hello"})
	list := fixtureFlaky()
	list[0].Quarantined, list[0].QuarantinedBy = true, "ui"
	list[0], list[1] = list[1], list[0]
	m = Update(m, Loaded{Path: "/flaky", Page: PageFlaky, Flaky: list})
	if m.Selected != 1 || m.Notice != "quarantining hello/unit/TestRace" || !reflect.DeepEqual(m.Flaky, list) {
		t.Fatalf("after the reload: selected %d, notice %q", m.Selected, m.Notice)
	}
	// A test that left the list leaves the selection where it was, within the list.
	m = Update(m, Loaded{Path: "/flaky", Page: PageFlaky, Flaky: list[:1]})
	if m.Selected != 0 {
		t.Fatalf("after the test left: selected %d", m.Selected)
	}

	// A run page's reload keeps its selected task: it does not jump to the first failed one.
	r := Update(fixture(PageRun), Key{Key: "k"})
	r = Update(r, FlakyChanged{Pipeline: "hello"})
	r = Update(r, Loaded{Path: "/runs/7", Page: PageRun, Run: fixtureFlakyRun(), Flaky: fixtureFlaky()})
	if r.Selected != 1 || len(r.Flaky) != 4 {
		t.Fatalf("run page after the reload: selected %d", r.Selected)
	}
	// A new run opens on its failed task, as before.
	r = Update(Update(r, Navigate{Path: "/runs/9"}), Loaded{Path: "/runs/9", Page: PageRun, Run: func() *bettertest.Run { x := fixtureRun(); x.ID = 9; return x }()})
	if r.Selected != 2 {
		t.Fatalf("a new run: selected %d", r.Selected)
	}

	// A task page's reload keeps the earlier output the viewer asked for.
	tm := fixture(PageTask)
	lines := []bettertest.Chunk{{Text: strings.Repeat("x\n", TailLines+10)}}
	tm.Log = NewLog(lines)
	tm = Update(tm, Key{Key: "m"})
	tm = Update(tm, Loaded{Path: tm.Path, Page: PageTask, Run: fixtureRun(), Task: "lint <src>", Log: NewLog(lines), Tests: fixtureTests()})
	if tm.Log.Start != 0 || !tm.Log.Pinned || len(tm.Tests) != 6 {
		t.Fatalf("task page after the reload: start %d, %d tests", tm.Log.Start, len(tm.Tests))
	}
}

func TestUpdateTestChanged(t *testing.T) {
	m := fixtureTaskTests()
	// What the model holds has room to grow: an append must not write into it.
	given := fixtureTests()
	given[4], given[5] = bettertest.TestResult{}, bettertest.TestResult{}
	m.Tests = given[:4]
	ev := func(runID int64, r bettertest.TestResult) Msg {
		return TestChanged{Event: bettertest.TestResultsEvent{RunID: runID, Task: r.Task, Attempt: r.Attempt, Results: []bettertest.TestResult{r}}}
	}
	all := fixtureTests()
	m = Update(m, ev(7, all[4]))                                                                    // new: appended
	m = Update(m, ev(7, all[1]))                                                                    // loaded with the page already
	m = Update(m, ev(7, all[4]))                                                                    // twice
	m = Update(m, ev(8, all[5]))                                                                    // another run
	m = Update(m, ev(7, bettertest.TestResult{Task: "lint <src>", Test: "lint <src>", Attempt: 1})) // another task
	m = Update(m, ev(7, all[5]))
	if !reflect.DeepEqual(m.Tests, all) {
		t.Fatalf("tests:\n got %+v\nwant %+v", m.Tests, all)
	}
	if !reflect.DeepEqual(given[4:], []bettertest.TestResult{{}, {}}) {
		t.Fatalf("Update changed the model it was given: %+v", given)
	}
	// The run's page keeps those of the cases that failed in some attempt,
	// for what failed: TestRace's pass on attempt 2 too; other pages keep none.
	run := fixture(PageRun)
	run.Tests = nil
	for _, r := range all {
		run = Update(run, ev(7, r))
	}
	if want := []bettertest.TestResult{all[1], all[2], all[4], all[5]}; !reflect.DeepEqual(run.Tests, want) {
		t.Fatalf("the run page took %+v", run.Tests)
	}
	if r := Update(run, ev(8, all[1])); len(r.Tests) != 4 {
		t.Fatalf("a run page took another run's test result: %+v", r.Tests)
	}
	if r := Update(fixture(PageWorkers), ev(7, all[0])); r.Tests != nil {
		t.Fatalf("the workers page took a test result: %+v", r.Tests)
	}
}

// A test result on a task page changes its test cases and nothing else:
// the summary, and the case it is of, which moves from the failed ones at
// the top to its place among those that passed.
func TestDiffTestChanged(t *testing.T) {
	m := fixtureTaskTests()
	m.Tests = fixtureTests()[:4]
	old := View(m)
	r4 := fixtureTests()[4]
	m = Update(m, TestChanged{Event: bettertest.TestResultsEvent{RunID: 7, Task: r4.Task, Attempt: r4.Attempt, Results: []bettertest.TestResult{r4}}})
	cur := View(m)
	if got, want := old.Main[1].List.Keys, []string{"unit/TestRace", "unit/TestDiv <zero>", "unit/TestAdd", "unit/TestSkip"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("cases before: %q, want %q", got, want)
	}
	if got, want := cur.Main[1].List.Keys, []string{"unit/TestDiv <zero>", "unit/TestAdd", "unit/TestRace", "unit/TestSkip"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("cases after: %q, want %q", got, want)
	}
	want := []Fragment{
		{Op: "replace", ID: "tests", Path: []int{1}, HTML: `<p class="meta">4 test cases · 1 failed · 1 flaky · 1 passed · 1 skipped</p>`},
		{Op: "remove", ID: "tests", Path: []int{2, 0}, N: 1},
		{Op: "insert", ID: "tests", Path: []int{2, 2}, HTML: `<li><span class="st st-passed">✓ passed</span> <span class="name">TestRace</span> <span class="dur">2.10s</span> ` +
			`<span class="attempts">failed on attempt 1, passed on 2</span> <span class="st st-flaky" title="failed, then passed on attempt 2">⚠ flaky</span> ` +
			`<span class="st st-known" title="listed as flaky: see Flaky tests">⚠ known flaky</span><details><summary>the failure of attempt 1</summary>` +
			`<pre class="output">race_test.go:12: got 1, want 2</pre></details></li>`},
	}
	if got := Diff(old, cur); !reflect.DeepEqual(got, want) {
		t.Fatalf("diff:\n got %+v\nwant %+v", got, want)
	}
	// The first result of a task without any fills its empty region.
	e := fixture(PageTask)
	old = View(e)
	e = Update(e, TestChanged{Event: bettertest.TestResultsEvent{RunID: 7, Task: "lint <src>", Attempt: 1,
		Results: []bettertest.TestResult{{Task: "lint <src>", Test: "lint <src>", Attempt: 1, Status: "failed", Output: "<x>"}}}})
	cur = View(e)
	want = []Fragment{{Op: "append", ID: "tests", HTML: `<h2>Test cases</h2><p class="meta">1 test case · 1 failed</p><ul class="cases"><li><span class="st st-failed">✗ failed</span> <span class="name">lint &lt;src&gt;</span><pre class="output">&lt;x&gt;</pre></li></ul>`}}
	if got := Diff(old, cur); !reflect.DeepEqual(got, want) {
		t.Fatalf("first result:\n got %+v\nwant %+v", got, want)
	}
}

func TestViewLoginAndUser(t *testing.T) {
	golden(t, "login.html", LoginPage(Login{Next: "/runs/7"}))
	golden(t, "login-failed.html", LoginPage(Login{Name: `al"<ice>`, Next: "/", Notice: "Wrong name or password."}))
	m := fixture(PagePipelines)
	m.User = "alice <a>"
	golden(t, "pipelines-user.html", View(m).HTML())
}

// A commit URL comes from a webhook's payload: only http and https become links.
func TestViewCommitLinksOnlyHTTP(t *testing.T) {
	for _, c := range []struct{ url, want string }{
		{"https://github.com/o/hello/commit/0d1a26e", `commit <a href="https://github.com/o/hello/commit/0d1a26e"><code>0d1a26e</code></a> on refs/heads/main by Ada &lt;L&gt;`},
		{"HTTP://example.com/c?a=1&b=2", `commit <a href="HTTP://example.com/c?a=1&amp;b=2"><code>0d1a26e</code></a> on refs/heads/main by Ada &lt;L&gt;`},
		{"javascript:alert(document.cookie)", `commit <code>0d1a26e</code> on refs/heads/main by Ada &lt;L&gt;`},
		{" JavaScript:alert(1)", `commit <code>0d1a26e</code> on refs/heads/main by Ada &lt;L&gt;`},
		{"data:text/html,<script>alert(1)</script>", `commit <code>0d1a26e</code> on refs/heads/main by Ada &lt;L&gt;`},
		{"//evil.example/x", `commit <code>0d1a26e</code> on refs/heads/main by Ada &lt;L&gt;`},
	} {
		r := fixtureRun()
		r.CommitURL = c.url
		if got := commit(r); got != c.want {
			t.Errorf("commit URL %q:\n got %s\nwant %s", c.url, got, c.want)
		}
	}
}

// However much a task writes, a log holds at most HeldLines lines and
// HeldBytes of them; what came before is counted, and the page says the
// raw log has it. A pinned log is bounded too, and an overlong line is
// shown in pieces.
func TestLogIsBounded(t *testing.T) {
	var l Log
	for i := range 3 * HeldLines {
		l.Append(fmt.Sprintf("%d\n", i))
	}
	if len(l.Lines) > 2*HeldLines || l.Dropped+len(l.Lines) != 3*HeldLines || l.Lines[len(l.Lines)-1] != fmt.Sprint(3*HeldLines-1) {
		t.Fatalf("after %d lines: holds %d, dropped %d, last %q", 3*HeldLines, len(l.Lines), l.Dropped, l.Lines[len(l.Lines)-1])
	}
	m := fixture(PageTask)
	m.Log = NewLog([]bettertest.Chunk{{Text: strings.Repeat("x\n", HeldLines+TailLines+MoreLines)}})
	if m.Log.Dropped != 0 || len(m.Log.Lines) != HeldLines+TailLines+MoreLines {
		t.Fatalf("a log under twice the bound: dropped %d, holds %d", m.Log.Dropped, len(m.Log.Lines))
	}
	m.Log = NewLog([]bettertest.Chunk{{Text: strings.Repeat("x\n", 2*HeldLines+1)}})
	if m.Log.Dropped != HeldLines+1 || len(m.Log.Lines) != HeldLines || m.Log.Start != HeldLines-TailLines {
		t.Fatalf("a log over twice the bound: dropped %d, holds %d, start %d", m.Log.Dropped, len(m.Log.Lines), m.Log.Start)
	}
	if got, want := View(m).Main[2].HTML(), `<p id="log-more">41001 earlier lines are not shown. <button data-action="more">Show 10000 more</button> The first 21001 lines are only in the <a href="/runs/7/tasks/lint%20%3Csrc%3E/raw">raw log</a>.</p>`; got != want {
		t.Errorf("log-more:\n got %s\nwant %s", got, want)
	}
	m = Update(Update(m, Key{Key: "m"}), Key{Key: "m"})
	if got, want := View(m).Main[2].HTML(), `<p id="log-more">The first 21001 lines are only in the <a href="/runs/7/tasks/lint%20%3Csrc%3E/raw">raw log</a>.</p>`; got != want {
		t.Errorf("log-more, all held lines shown:\n got %s\nwant %s", got, want)
	}
	for i := range 2 * HeldLines {
		m = Update(m, Output{Event: bettertest.OutputChunkEvent{RunID: 7, Task: "lint <src>", Seq: 1 + i, Chunk: bettertest.Chunk{Text: "y\n"}}})
	}
	if !m.Log.Pinned || len(m.Log.Lines) > 2*HeldLines {
		t.Fatalf("a pinned log holds %d lines", len(m.Log.Lines))
	}

	var big Log
	line := strings.Repeat("é", MaxLine) // 2 bytes each: pieces end on whole runes
	big.Append(line[:len(line)-1])
	big.Append(line[len(line)-1:] + "\n")
	if len(big.Lines) != 2 || big.Lines[0] != line[:MaxLine] || big.Lines[1] != line[MaxLine:] || big.Partial != "" {
		t.Fatalf("a line of %d bytes: %d pieces of %v bytes, partial %d", len(line), len(big.Lines), len(big.Lines[0]), len(big.Partial))
	}
	var wide Log
	for range HeldBytes / MaxLine * 3 {
		wide.Append(strings.Repeat("w", MaxLine-1) + "\n")
	}
	if wide.held > 2*HeldBytes {
		t.Fatalf("a log of long lines holds %d bytes", wide.held)
	}
}

// A tab's stream begins with what changed since the page it was sent: the
// regions whose HTML changed, whole; nothing when nothing did; the whole
// page for a version it does not know.
func TestDiffFromAPageVersion(t *testing.T) {
	m := fixture(PageTask)
	sent := View(m)
	if got := DiffFrom(sent.Version(), sent); len(got) != 0 || got == nil {
		t.Errorf("nothing changed: %#v", got)
	}
	m = Update(m, Output{Event: bettertest.OutputChunkEvent{RunID: 7, Task: "lint <src>", Seq: m.Log.Chunks, Chunk: bettertest.Chunk{Text: "more\n"}}})
	now := View(m)
	want := []Fragment{{Op: "replace", ID: "log", HTML: now.Main[3].HTML()}}
	if got := DiffFrom(sent.Version(), now); !reflect.DeepEqual(got, want) {
		t.Errorf("a line of output later:\n got %#v\nwant %#v", got, want)
	}
	for _, version := range []string{"", "x", "a b c d e:f", strings.Repeat("z ", 9)} {
		if got, want := DiffFrom(version, now), Diff(Page{}, now); !reflect.DeepEqual(got, want) {
			t.Errorf("version %q: %d fragments, want the whole page's %d", version, len(got), len(want))
		}
	}
	if got, want := Diff(Page{}, View(fixture(PageRun))), DiffFrom(sent.Version(), View(fixture(PageRun))); !reflect.DeepEqual(got, want) {
		t.Errorf("another page: %d fragments, want the whole page's %d", len(want), len(got))
	}
}

// A run that failed before any task did shows what its pipedef said, and
// nothing when it said nothing.
func TestFailuresOfThePipedefAlone(t *testing.T) {
	m := Model{Page: PageRun, Path: "/runs/3", Run: &bettertest.Run{ID: 3, Pipeline: "p", Status: bettertest.StatusFailed, Stages: []bettertest.Stage{}}}
	ids := func(p Page) []string {
		var out []string
		for _, r := range p.Main {
			out = append(out, r.ID)
		}
		return out
	}
	if got := ids(View(m)); !reflect.DeepEqual(got, []string{"head"}) {
		t.Errorf("a failed run without output shows %v", got)
	}
	m.Log = NewLog([]bettertest.Chunk{{Stream: "stderr", Text: "Traceback (most recent call last):\nValueError: <no>"}})
	page := View(m)
	if got := ids(page); !reflect.DeepEqual(got, []string{"head", "failures"}) {
		t.Fatalf("a failed run with output shows %v", got)
	}
	if got, want := page.Main[1].HTML(), `<section id="failures" class="failures"><h2>What failed</h2><h3>The pipedef's own output</h3>`+
		`<pre class="output">Traceback (most recent call last):`+"\n"+`ValueError: &lt;no&gt;</pre></section>`; got != want {
		t.Errorf("failures\n got %s\nwant %s", got, want)
	}
	m.Run.Status = bettertest.StatusCancelled
	if got := ids(View(m)); !reflect.DeepEqual(got, []string{"head"}) {
		t.Errorf("a cancelled run shows %v", got)
	}
}
