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
				{Stage: "build", Name: "compile", Kind: "build", Status: "passed", ExitCode: nil, Cached: true, StartedMS: t0 + 200, FinishedMS: t0 + 210},
			}},
			{Name: "test", Status: "failed", StartedMS: t0 + 1200, FinishedMS: t0 + 3300, Tasks: []bettertest.Task{
				{Stage: "test", Name: "unit", Kind: "test", Status: "passed", ExitCode: code(0), StartedMS: t0 + 1200, FinishedMS: t0 + 2450},
				{Stage: "test", Name: "lint <src>", Kind: "test", Status: "failed", ExitCode: code(2), StartedMS: t0 + 1200, FinishedMS: t0 + 3300},
			}},
			{Name: "deploy", Status: "skipped", Tasks: []bettertest.Task{{Stage: "deploy", Name: "ship", Kind: "test", Status: "skipped"}}},
		}}
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
			{Name: "hello", Runs: []bettertest.Run{{ID: 8, Pipeline: "hello", Status: "running"}, {ID: 7, Pipeline: "hello", Status: "failed", Commit: "0d1a26e67d8f"}, {ID: 5, Pipeline: "hello", Status: "passed"}}},
			{Name: "nightly", Runs: nil},
		}
		m.Selected = 1
	case PageRun:
		m.Path, m.Run, m.Selected = "/runs/7", fixtureRun(), 2
	case PageTask:
		m.Path, m.Run, m.Task = "/runs/7/tasks/lint%20%3Csrc%3E", fixtureRun(), "lint <src>"
		m.Log = NewLog([]bettertest.Chunk{{Stream: "stdout", Text: "checking a.c\n"}, {Stream: "stderr", Text: "a.c:3: <tab> found\nexit"}})
	case PageWorkers:
		m.Path = "/workers"
	}
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
	for name, m := range map[string]Model{
		"pipelines.html":      fixture(PagePipelines),
		"pipelines-help.html": help,
		"pipelines-none.html": {Page: PagePipelines, Path: "/"},
		"run.html":            fixture(PageRun),
		"task.html":           fixture(PageTask),
		"workers.html":        fixture(PageWorkers),
	} {
		golden(t, name, View(m).HTML())
	}
	// The tail of a long log, with the control to show more.
	page := View(long)
	if got := page.Main[1].HTML(); got != `<p id="log-more">5 earlier lines are not shown. <button data-action="more">Show 5 more</button></p>` {
		t.Errorf("log-more: %s", got)
	}
	if got := page.Main[2].Inner; got != strings.Repeat("x\n", TailLines) {
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
	if got := logText(tm.Log); got != "checking a.c\na.c:3: &lt;tab&gt; found\nexited\nnext\n" {
		t.Fatalf("log: %q", got)
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
	want := []Fragment{{Op: "replace", ID: "stage-1", HTML: View(r).Main[2].HTML()}}
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
