package boss_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/internal/sse"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

var bin string // the bettertest binary under test

func TestMain(m *testing.M) { wt.Main(m, &bin) }

// pipedef writes a pipedef script into dir and returns its path.
func pipedef(t testing.TB, dir, name, code string) string {
	t.Helper()
	path := filepath.Join(dir, name+".py")
	if err := os.WriteFile(path, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	// Pipedefs run sandboxed as nobody: their directory must be open to others.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// logText is the text of the output that path (a log API) answers, its
// chunks joined.
func logText(t testing.TB, b *wt.Boss, path string) string {
	t.Helper()
	var chunks []bettertest.Chunk
	b.JSON(t, path, &chunks)
	var text strings.Builder
	for _, c := range chunks {
		text.WriteString(c.Text)
	}
	return text.String()
}

// gated is a pipedef that uses no worker: it waits until the test writes to
// the FIFO named after its worker, then exits with what it read.
const gated = `import os, sys
name = sys.argv[sys.argv.index("--worker-name") + 1]
gate = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gate-" + name)
with open(gate) as f:
    sys.exit(int(f.read()))
`

// gate makes the FIFO a gated pipedef on the worker named name waits on,
// readable by the sandbox's user.
func gate(t *testing.T, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, "gate-"+name)
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// open lets the gated run waiting on path exit with code. Opening a FIFO for
// writing waits for its reader, the run.
func open(t *testing.T, path string, code int) {
	t.Helper()
	if err := os.WriteFile(path, []byte(fmt.Sprint(code)), 0); err != nil {
		t.Fatal(err)
	}
}

// watcher follows /api/events and keeps the latest state of each run and worker.
type watcher struct {
	s       *wt.Stream
	runs    map[int64]bettertest.Run
	workers map[string]bettertest.WorkerInfo
	log     []string // every event, shortened
}

func watch(t *testing.T, b *wt.Boss, path string) *watcher {
	return &watcher{s: b.Events(t, path), runs: map[int64]bettertest.Run{}, workers: map[string]bettertest.WorkerInfo{}}
}

// until reads events until ok says the state is reached.
func (w *watcher) until(t *testing.T, what string, ok func() bool) {
	t.Helper()
	// A bound that turns a hang into a failure with the events seen so far.
	bound := time.AfterFunc(wt.Deadline, w.s.Close)
	defer bound.Stop()
	for !ok() {
		ev, err := w.s.Read()
		if err != nil {
			t.Fatalf("waiting for %s: %v; events so far:\n%s", what, err, strings.Join(w.log, "\n"))
		}
		switch ev.Name {
		case bettertest.BossEventRun:
			var r bettertest.Run
			mustJSON(t, ev.Data, &r)
			w.runs[r.ID] = r
			w.log = append(w.log, fmt.Sprintf("run %d %s %s %s", r.ID, r.Status, r.Worker, r.Error))
		case bettertest.BossEventWorker:
			var wi bettertest.WorkerInfo
			mustJSON(t, ev.Data, &wi)
			w.workers[wi.Name] = wi
			w.log = append(w.log, fmt.Sprintf("worker %s up=%v running=%d assigned=%d %s", wi.Name, wi.Up, wi.Running, wi.Assigned, wi.Error))
		default:
			w.log = append(w.log, ev.Name+" "+ev.Data)
		}
	}
}

func mustJSON(t testing.TB, data string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(data), v); err != nil {
		t.Fatalf("%v: %s", err, data)
	}
}

func (w *watcher) status(id int64) string { return w.runs[id].Status }

func trigger(t testing.TB, b *wt.Boss, pipeline string) bettertest.Run {
	t.Helper()
	status, body := b.Do(t, http.MethodPost, "/api/pipelines/"+pipeline+"/runs", nil)
	if status != http.StatusCreated {
		t.Fatalf("trigger %s: %d %s", pipeline, status, body)
	}
	var r bettertest.Run
	mustJSON(t, string(body), &r)
	return r
}

// Two workers of capacity 1 and three runs: two start at once, one on each
// worker, and the third starts the moment one of them ends, on that worker.
func TestRunsGoToFreeWorkersAndQueue(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := wt.Start(t, bin, wt.Options{MaxParallel: 1})
	b := wt.Start(t, bin, wt.Options{MaxParallel: 1})
	gates := map[string]string{"w0": gate(t, dir, "w0"), "w1": gate(t, dir, "w1")}
	boss := wt.StartBoss(t, bin, wt.BossOptions{Pipedefs: []string{pipedef(t, dir, "gated", gated)}, Workers: []*wt.Worker{a, b}})
	w := watch(t, boss, "/api/events")
	w.until(t, "both workers up", func() bool { return w.workers["w0"].Up && w.workers["w1"].Up })

	r1, r2, r3 := trigger(t, boss, "gated"), trigger(t, boss, "gated"), trigger(t, boss, "gated")
	if r1.Status != "running" || r2.Status != "running" || r3.Status != "queued" {
		t.Fatalf("answers to the triggers: %+v %+v %+v", r1, r2, r3)
	}
	w.until(t, "two runs running and one queued", func() bool {
		return w.status(r1.ID) == "running" && w.status(r2.ID) == "running" && w.status(r3.ID) == "queued"
	})
	first, second := w.runs[r1.ID].Worker, w.runs[r2.ID].Worker
	if first == second {
		t.Fatalf("runs 1 and 2 both on %s", first)
	}
	open(t, gates[first], 0)
	w.until(t, "run 1 to pass and run 3 to start", func() bool {
		return w.status(r1.ID) == "passed" && w.status(r3.ID) == "running"
	})
	if got := w.runs[r3.ID].Worker; got != first {
		t.Fatalf("run 3 went to %s, want %s, whose slot opened", got, first)
	}
	open(t, gates[first], 0)
	open(t, gates[second], 3)
	w.until(t, "every run to end", func() bool { return w.status(r2.ID) == "failed" && w.status(r3.ID) == "passed" })
	var runs []bettertest.Run
	boss.JSON(t, "/api/runs?pipeline=gated", &runs)
	var got []string
	for _, r := range runs {
		got = append(got, fmt.Sprintf("%d %s %s %d %s", r.ID, r.Status, r.Worker, *r.ExitCode, r.Error))
	}
	want := []string{
		fmt.Sprintf("3 passed %s 0 ", first),
		fmt.Sprintf("2 failed %s 3 the pipedef exited with status 3: see its output", second),
		fmt.Sprintf("1 passed %s 0 ", first),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("history:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A long task on the worker, for runs that are stopped in the middle.
const sleeper = `import bettertest as bt
p = bt.pipeline("sleeper")
with p.stage("main") as s:
    s.test("sleep", image="bettertest/base:bookworm", command="echo started; sleep 300")
`

func waitForOutput(t *testing.T, w *watcher, text string) {
	t.Helper()
	seen := func() bool {
		for _, l := range w.log {
			if strings.HasPrefix(l, "output ") && strings.Contains(l, fmt.Sprintf(`"text":%q`, text)) {
				return true
			}
		}
		return false
	}
	w.until(t, "output "+text, seen)
}

func TestWorkerDownMidRunFailsItAndComesBack(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	worker := wt.Start(t, bin, wt.Options{})
	boss := wt.StartBoss(t, bin, wt.BossOptions{Pipedefs: []string{pipedef(t, dir, "sleeper", sleeper)}, Workers: []*wt.Worker{worker}})
	w := watch(t, boss, "/api/events")
	w.until(t, "the worker up", func() bool { return w.workers["w0"].Up })
	r := trigger(t, boss, "sleeper")
	waitForOutput(t, w, "started\n")

	worker.Kill()
	w.until(t, "the run to fail", func() bool { return w.status(r.ID) == "failed" })
	down := w.workers["w0"]
	if down.Up || down.Error != "its event stream broke (unexpected EOF)" {
		t.Fatalf("worker after the kill: %+v", down)
	}
	if got := w.runs[r.ID].Error; got != "worker w0 went down during the run (its event stream broke (unexpected EOF)): the run was stopped; run it again" {
		t.Fatalf("the run's error: %q", got)
	}

	// The same worker comes back at the same address: the boss reconnects.
	wt.Start(t, bin, wt.Options{Listen: strings.TrimPrefix(worker.URL, "http://"), TokenFile: worker.TokenFile, DataDir: worker.DataDir})
	w.until(t, "the worker up again", func() bool { return w.workers["w0"].Up })
}

func TestCancelStopsThePipedefAndItsContainer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	worker := wt.Start(t, bin, wt.Options{})
	boss := wt.StartBoss(t, bin, wt.BossOptions{Pipedefs: []string{pipedef(t, dir, "sleeper", sleeper)}, Workers: []*wt.Worker{worker}})
	w := watch(t, boss, "/api/events")
	r := trigger(t, boss, "sleeper")
	waitForOutput(t, w, "started\n")
	// The worker says when the run's container is gone.
	resp, err := worker.Do(t.Context(), http.MethodGet, "/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	workerEvents := sse.NewReader(resp.Body)
	// A late viewer of the task gets its output so far, then the rest live.
	taskLog := boss.Events(t, fmt.Sprintf("/api/runs/%d/tasks/sleep/log", r.ID))
	if ev := taskLog.Next(t); ev.Name != "output" || ev.Data != fmt.Sprintf(`{"run_id":%d,"task":"sleep","seq":0,"stream":"stdout","text":"started\n"}`, r.ID) {
		t.Fatalf("the log's first event: %+v", ev)
	}

	status, body := boss.Do(t, http.MethodPost, fmt.Sprintf("/api/runs/%d/cancel", r.ID), nil)
	if status != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", status, body)
	}
	w.until(t, "the run cancelled", func() bool { return w.status(r.ID) == "cancelled" })
	// The log ends with the task's end.
	var te bettertest.TaskEvent
	ev := taskLog.Next(t)
	mustJSON(t, ev.Data, &te)
	if ev.Name != "task" || te.Name != "sleep" || te.Status != "cancelled" {
		t.Fatalf("the log's last event: %+v", ev)
	}
	if _, err := taskLog.Read(); err != io.EOF {
		t.Fatalf("the log goes on after the task's end: %v", err)
	}
	for {
		ev, err := workerEvents.Next()
		if err != nil {
			t.Fatalf("the worker's events: %v", err)
		}
		if ev.Name == bettertest.EventRunEnd {
			if !strings.Contains(ev.Data, `"outcome":"cancelled"`) {
				t.Fatalf("the worker's run ended as %s", ev.Data)
			}
			break
		}
	}
	if got := w.runs[r.ID]; got.Error != "cancelled" || got.ExitCode != nil {
		t.Fatalf("cancelled run: %+v", got)
	}
	status, body = boss.Do(t, http.MethodPost, fmt.Sprintf("/api/runs/%d/cancel", r.ID), nil)
	if want := fmt.Sprintf(`{"error":"run %d has already ended (cancelled): there is nothing to cancel"}`+"\n", r.ID); status != 409 || string(body) != want {
		t.Fatalf("second cancel: %d %s", status, body)
	}
}

// gatedBoss is a boss with one worker and the pipeline "gated", on a data
// dir of its own, with the worker up: runs wait at the gate g.
func gatedBoss(t *testing.T) (boss *wt.Boss, opts wt.BossOptions, w *watcher, g string) {
	dir := t.TempDir()
	worker := wt.Start(t, bin, wt.Options{})
	g = gate(t, dir, "w0")
	opts = wt.BossOptions{Pipedefs: []string{pipedef(t, dir, "gated", gated)}, Workers: []*wt.Worker{worker}, DataDir: t.TempDir()}
	boss = wt.StartBoss(t, bin, opts)
	w = watch(t, boss, "/api/events")
	w.until(t, "the worker up", func() bool { return w.workers["w0"].Up })
	return boss, opts, w, g
}

func TestKilledBossMarksRunsInterruptedAndKeepsHistory(t *testing.T) {
	t.Parallel()
	boss, opts, w, g := gatedBoss(t)
	done := trigger(t, boss, "gated")
	open(t, g, 0)
	w.until(t, "run 1 passed", func() bool { return w.status(done.ID) == "passed" })
	inFlight := trigger(t, boss, "gated")
	w.until(t, "run 2 running", func() bool { return w.status(inFlight.ID) == "running" })

	boss.Kill()
	again := wt.StartBoss(t, bin, opts)
	var runs []bettertest.Run
	again.JSON(t, "/api/runs", &runs)
	var got []string
	for _, r := range runs {
		got = append(got, fmt.Sprintf("%d %s %s", r.ID, r.Status, r.Error))
	}
	want := []string{"2 interrupted the boss stopped while this run was queued or running: run it again", "1 passed "}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after the restart:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A second boss on a data dir in use is refused before it changes
// anything: the first's live run goes on and ends as its own.
func TestOneBossPerDataDir(t *testing.T) {
	t.Parallel()
	boss, opts, w, g := gatedBoss(t)
	live := trigger(t, boss, "gated")
	w.until(t, "the run running", func() bool { return w.status(live.ID) == "running" })

	out, err := exec.Command(bin, "boss", "--listen", "127.0.0.1:0", "--data-dir", opts.DataDir, "--pipedef", opts.Pipedefs[0]).CombinedOutput()
	want := fmt.Sprintf("bettertest boss: --data-dir %s is in use by another boss (pid %d): stop it, or give each boss a data dir of its own\n", opts.DataDir, boss.Pid())
	if err == nil || string(out) != want {
		t.Fatalf("second boss: %v\n%s\nwant %s", err, out, want)
	}
	open(t, g, 0)
	w.until(t, "the run passed", func() bool { return w.status(live.ID) == "passed" })
}

func TestMalformedReportLinesAreKeptAsOutput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	worker := wt.Start(t, bin, wt.Options{})
	boss := wt.StartBoss(t, bin, wt.BossOptions{Workers: []*wt.Worker{worker}, Pipedefs: []string{pipedef(t, dir, "noisy", `import sys
print("not json")
print('{"event": "stage_start", "time": "2026-11-26T00:00:00.000Z", "stage": "s"}')
print('{"no": "event"}')
print("[1, 2")
sys.stderr.write("a warning\n")
sys.exit(3)
`)}})
	w := watch(t, boss, "/api/events")
	r := trigger(t, boss, "noisy")
	w.until(t, "the run to end", func() bool { return w.status(r.ID) == "failed" })
	var run bettertest.Run
	boss.JSON(t, fmt.Sprintf("/api/runs/%d", r.ID), &run)
	if len(run.Stages) != 1 || run.Stages[0].Name != "s" || run.Stages[0].Status != "failed" || *run.ExitCode != 3 ||
		run.Error != "the pipedef exited with status 3: see its output" {
		t.Fatalf("run: %+v", run)
	}
	var out []bettertest.Chunk
	boss.JSON(t, fmt.Sprintf("/api/runs/%d/log", r.ID), &out)
	var stdout, stderr string
	for _, c := range out {
		if c.Stream == "stdout" {
			stdout += c.Text
		} else {
			stderr += c.Text
		}
	}
	if stdout != "not json\n{\"no\": \"event\"}\n[1, 2\n" || stderr != "a warning\n" {
		t.Fatalf("pipedef output: stdout %q stderr %q", stdout, stderr)
	}
}

// A line far longer than any report line (10 MiB, no newline until its
// end) is the pipedef's output, kept whole but in pieces, never as one
// string; the report goes on after it.
func TestAnOverlongLineIsOutputInPieces(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	worker := wt.Start(t, bin, wt.Options{})
	boss := wt.StartBoss(t, bin, wt.BossOptions{Workers: []*wt.Worker{worker}, Pipedefs: []string{pipedef(t, dir, "long", `import sys
sys.stdout.write("x" * (10 << 20) + "\n")
print('{"event": "stage_start", "time": "2026-11-26T00:00:00.000Z", "stage": "after"}')
print("done")
`)}})
	w := watch(t, boss, "/api/events")
	r := trigger(t, boss, "long")
	w.until(t, "the run to end", func() bool { return w.status(r.ID) == "passed" })
	var run bettertest.Run
	boss.JSON(t, fmt.Sprintf("/api/runs/%d", r.ID), &run)
	if len(run.Stages) != 1 || run.Stages[0].Name != "after" {
		t.Fatalf("run: %+v", run)
	}
	var out []bettertest.Chunk
	boss.JSON(t, fmt.Sprintf("/api/runs/%d/log", r.ID), &out)
	var stdout strings.Builder
	longest := 0
	for _, c := range out {
		stdout.WriteString(c.Text)
		longest = max(longest, len(c.Text))
	}
	if want := strings.Repeat("x", 10<<20) + "\ndone\n"; stdout.String() != want {
		t.Fatalf("pipedef output: %d bytes, want %d", stdout.Len(), len(want))
	}
	if longest > 256<<10 {
		t.Fatalf("a chunk of %d bytes: the line was held whole", longest)
	}
}

func TestAPIBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	worker := wt.Start(t, bin, wt.Options{})
	boss := wt.StartBoss(t, bin, wt.BossOptions{Workers: []*wt.Worker{worker}, Pipedefs: []string{pipedef(t, dir, "p", "")}})
	for _, c := range []struct {
		method, path string
		body         any
		status       int
		msg          string
	}{
		{"POST", "/api/pipelines/nope/runs", nil, 404, `no pipeline "nope": the pipelines are p`},
		{"POST", "/api/pipelines/p/runs", map[string]string{"trigger": "cron"}, 400, `trigger "cron" is not one of api, ui, cli`},
		{"POST", "/api/pipelines/p/runs", map[string]string{"who": "me"}, 400, `the body is not a trigger request (json: unknown field "who"): send nothing, or {"trigger": "api"}`},
		{"GET", "/api/runs/abc", nil, 400, `run id "abc" is not a run number`},
		{"GET", "/api/runs/0", nil, 400, `run id "0" is not a run number`},
		{"GET", "/api/runs/99", nil, 404, `no run 99`},
		{"POST", "/api/runs/99/cancel", nil, 404, `no run 99`},
		{"GET", "/api/runs/99/tasks/t/log", nil, 404, `no run 99`},
		{"GET", "/api/runs?pipeline=nope", nil, 404, `no pipeline "nope": the pipelines are p`},
		{"GET", "/api/runs?limit=0", nil, 400, `limit "0" must be a number from 1 to 1000`},
		{"GET", "/api/events?run=x", nil, 400, `run "x" is not a run number`},
		{"GET", "/api/nothing", nil, 404, `no such endpoint /api/nothing: the API is under /api (pipelines, runs, flaky, quarantine, workers, events)`},
		{"DELETE", "/api/runs/1", nil, 405, `DELETE is not allowed on /api/runs/1`},
	} {
		status, body := boss.Do(t, c.method, c.path, c.body)
		want, _ := json.Marshal(bettertest.APIError{Error: c.msg})
		if status != c.status || string(body) != string(want)+"\n" {
			t.Errorf("%s %s: %d %s, want %d %s", c.method, c.path, status, body, c.status, want)
		}
	}
}

// The events of a whole run, in order, as a watcher of /api/events sees them.
func TestEventOrderOfAWholeRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	worker := wt.Start(t, bin, wt.Options{})
	boss := wt.StartBoss(t, bin, wt.BossOptions{Workers: []*wt.Worker{worker}, Pipedefs: []string{pipedef(t, dir, "order", `import bettertest as bt
p = bt.pipeline("order")
with p.stage("build") as s:
    app = s.build("compile", image="bettertest/base:bookworm", command="echo built; mkdir /out; echo x > /out/x", outputs=["/out"])
with p.stage("test") as s:
    s.test("check", image="bettertest/base:bookworm", command="cat /app/out/x", inputs={"/app": app})
`)}})
	w := watch(t, boss, "/api/events")
	w.until(t, "the worker up", func() bool { return w.workers["w0"].Up })
	w.log = nil
	r := trigger(t, boss, "order")
	w.until(t, "the run to end", func() bool { return w.status(r.ID) == "passed" })
	var got []string
	for _, l := range w.log {
		if strings.HasPrefix(l, "worker ") {
			continue
		}
		got = append(got, shorten(t, l))
	}
	want := []string{
		"run 1 queued  ",
		"run 1 running w0 ",
		"stage build running",
		"task compile running  cached=false attempts=0",
		"task compile running first run cached=false attempts=0",
		"output compile stdout \"built\\n\"",
		"task compile running first run cached=false attempts=0 /out",
		"task compile passed first run cached=false attempts=1 /out",
		"stage build passed",
		"stage test running",
		"task check running  cached=false attempts=0",
		"output check stdout \"x\\n\"",
		"test check attempt 1 passed", // a test without results is one test case
		"task check running  cached=false attempts=1",
		"task check passed  cached=false attempts=1",
		"stage test passed",
		"run 1 passed w0 ",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("events:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// shorten keeps what the order test compares of stage, task and output events.
func shorten(t *testing.T, l string) string {
	name, data, _ := strings.Cut(l, " ")
	switch name {
	case "stage":
		var st bettertest.StageEvent
		mustJSON(t, data, &st)
		return fmt.Sprintf("stage %s %s", st.Name, st.Status)
	case "task":
		var te bettertest.TaskEvent
		mustJSON(t, data, &te)
		var paths []string
		for _, a := range te.Artifacts {
			paths = append(paths, a.Path)
		}
		return strings.TrimSpace(fmt.Sprintf("task %s %s %s cached=%v attempts=%d %s", te.Name, te.Status, te.Reason, te.Cached, te.Attempts, strings.Join(paths, ",")))
	case "tests":
		var tr bettertest.TestResultsEvent
		mustJSON(t, data, &tr)
		var lines []string
		for _, r := range tr.Results {
			lines = append(lines, fmt.Sprintf("test %s attempt %d %s", r.Test, r.Attempt, r.Status))
		}
		return strings.Join(lines, "\n")
	case "output":
		var o bettertest.OutputChunkEvent
		mustJSON(t, data, &o)
		return fmt.Sprintf("output %s %s %q", o.Task, o.Stream, o.Text)
	}
	return l
}

func TestEveryRunsPipelinesOnASchedule(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// One slot: the scheduled run waits on the gate alone, and the next
	// ones queue behind it (and the scheduler adds no more while one is queued).
	worker := wt.Start(t, bin, wt.Options{MaxParallel: 1})
	g := gate(t, dir, "w0")
	boss := wt.StartBoss(t, bin, wt.BossOptions{Pipedefs: []string{pipedef(t, dir, "gated", gated)}, Workers: []*wt.Worker{worker},
		Args: []string{"--every", "100ms"}})
	w := watch(t, boss, "/api/events")
	w.until(t, "a scheduled run", func() bool { return w.runs[1].Trigger == "schedule" && w.status(1) == "running" })
	open(t, g, 0)
	w.until(t, "it to pass", func() bool { return w.status(1) == "passed" })
}
