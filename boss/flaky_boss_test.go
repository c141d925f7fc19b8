package boss_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp/kb"

	"github.com/bettertest/bettertest"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

// wobblyPipedef is a pipeline whose tests do what plan files say, attempt
// by attempt: a plan is a file in its directory, sent to the worker as the
// test's input /plan, whose line N says whether attempt N passes. The plans
// are in plans/, or, for a pipedef in a repository (whose runs of one commit
// must differ), in plans/RUN, RUN being the boss's run id (--run-id).
// Nothing is random. "wobbly" is a task without results (one test itself);
// "unit" reports JUnit XML with a steady pkg.TestA and a pkg.TestB that
// follows its plan; "steady" always passes.
const wobblyPipedef = `import sys
import bettertest as bt
plans = %[3]q.replace("RUN", sys.argv[sys.argv.index("--run-id") + 1])
p = bt.pipeline(%[1]q)
with p.stage("test") as s:
    s.test("wobbly", image="bettertest/base:bookworm", retries=%[2]d, inputs={"/plan": bt.local(plans + "/wobbly")},
           command='test "$(sed -n "${BETTERTEST_ATTEMPT}p" /plan)" = pass')
    s.test("unit", image="bettertest/base:bookworm", retries=%[2]d, inputs={"/plan": bt.local(plans + "/unit")}, results="/results/junit.xml",
           command='''mkdir -p /results
if [ "$(sed -n "${BETTERTEST_ATTEMPT}p" /plan)" = pass ]; then b=""; else b='<failure message="too slow">took 3s</failure>'; fi
printf '<testsuite name="pkg"><testcase classname="pkg" name="TestA" time="0.5"/><testcase classname="pkg" name="TestB" time="1.25">%%s</testcase></testsuite>\n' "$b" > /results/junit.xml''')
    s.test("steady", image="bettertest/base:bookworm", command="true")
`

// wobbly is a wobblyPipedef and its plans.
type wobbly struct {
	dir, code string
}

func newWobbly(t *testing.T, name string, retries int) *wobbly {
	dir := t.TempDir()
	w := &wobbly{dir: dir}
	w.code = fmt.Sprintf(wobblyPipedef, name, retries, "plans")
	w.plan(t, "pass", "pass")
	return w
}

// newRepoWobbly is a wobblyPipedef for a repository, whose plans are per run.
func newRepoWobbly(name string) *wobbly {
	return &wobbly{code: fmt.Sprintf(wobblyPipedef, name, 0, "plans/RUN")}
}

// startWobbly starts a worker and a boss whose one pipeline is a wobblyPipedef named name.
func startWobbly(t *testing.T, name string, retries int, args ...string) (*wobbly, *wt.Boss) {
	w := newWobbly(t, name, retries)
	worker := wt.Start(t, bin, wt.Options{})
	return w, wt.StartBoss(t, bin, wt.BossOptions{Pipedefs: []string{pipedef(t, w.dir, name, w.code)}, Workers: []*wt.Worker{worker}, Args: args})
}

// plan says what the next run's attempts of wobbly and of unit's pkg.TestB do.
func (w *wobbly) plan(t *testing.T, wobblyAttempts, unitAttempts string) {
	t.Helper()
	writePlans(t, filepath.Join(w.dir, "plans"), wobblyAttempts, unitAttempts)
}

// writePlans writes the plans of wobbly and unit into dir.
func writePlans(t *testing.T, dir, wobblyAttempts, unitAttempts string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for task, attempts := range map[string]string{"wobbly": wobblyAttempts, "unit": unitAttempts} {
		plan := strings.Join(strings.Split(attempts, " "), "\n") + "\n"
		if err := os.WriteFile(filepath.Join(dir, task), []byte(plan), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// runJudged runs pipeline to its end and returns the run once the boss has
// judged its tests, as the pipeline's flaky event says.
func runJudged(t *testing.T, boss *wt.Boss, pipeline string) bettertest.Run {
	t.Helper()
	events := boss.Events(t, "/api/events")
	defer events.Close()
	bound := time.AfterFunc(wt.Deadline, events.Close)
	defer bound.Stop()
	r := trigger(t, boss, pipeline)
	ended := false
	for {
		ev, err := events.Read()
		if err != nil {
			t.Fatalf("run #%d: waiting for its end and its tests' verdicts: %v", r.ID, err)
		}
		switch ev.Name {
		case bettertest.BossEventRun:
			var x bettertest.Run
			mustJSON(t, ev.Data, &x)
			if x.ID == r.ID && x.Status != bettertest.StatusQueued && x.Status != bettertest.StatusRunning {
				r, ended = x, true
			}
		case bettertest.BossEventFlaky:
			var f bettertest.FlakyEvent
			mustJSON(t, ev.Data, &f)
			if ended && f.Pipeline == pipeline {
				return r
			}
		}
	}
}

func getJSON(t *testing.T, boss *wt.Boss, path string, v any) {
	t.Helper()
	status, body := boss.Do(t, http.MethodGet, path, nil)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, status, body)
	}
	mustJSON(t, string(body), v)
}

// same fails the test when got and want differ as JSON.
func same(t *testing.T, what string, got, want any) {
	t.Helper()
	g, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	w, err := json.MarshalIndent(want, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if string(g) != string(w) {
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

// taskOf finds a task of a run by name.
func taskOf(t *testing.T, boss *wt.Boss, id int64, name string) bettertest.Task {
	t.Helper()
	var r bettertest.Run
	getJSON(t, boss, fmt.Sprintf("/api/runs/%d", id), &r)
	for _, st := range r.Stages {
		for _, task := range st.Tasks {
			if task.Name == name {
				return task
			}
		}
	}
	t.Fatalf("run #%d has no task %s", id, name)
	return bettertest.Task{}
}

// A test case that fails and then passes when retried: the run passes, its
// task is marked flaky, every attempt is recorded, and the test is listed
// as flaky with that run as its evidence.
func TestARetriedFlakyTestIsRecordedMarkedAndListed(t *testing.T) {
	t.Parallel()
	w, boss := startWobbly(t, "retry", 1)
	w.plan(t, "pass", "fail pass")

	r := runJudged(t, boss, "retry")
	if r.Status != bettertest.StatusPassed {
		t.Fatalf("run #%d %s (%s), want passed: the retry passed", r.ID, r.Status, r.Error)
	}
	unit := taskOf(t, boss, r.ID, "unit")
	if unit.Status != bettertest.StatusPassed || unit.Attempts != 2 || !unit.Flaky || unit.Quarantined {
		t.Errorf("task unit: %s, %d attempts, flaky %v, quarantined %v; want passed, 2, true, false", unit.Status, unit.Attempts, unit.Flaky, unit.Quarantined)
	}
	if wob := taskOf(t, boss, r.ID, "wobbly"); wob.Attempts != 1 || wob.Flaky {
		t.Errorf("task wobbly: %d attempts, flaky %v; want 1, false", wob.Attempts, wob.Flaky)
	}

	var tests []bettertest.TestResult
	getJSON(t, boss, fmt.Sprintf("/api/runs/%d/tests?task=unit", r.ID), &tests)
	same(t, "the unit task's test results", tests, []bettertest.TestResult{
		{Task: "unit", Case: "pkg.TestA", Test: "unit/pkg.TestA", Attempt: 1, Status: "passed", DurationMS: 500},
		{Task: "unit", Case: "pkg.TestB", Test: "unit/pkg.TestB", Attempt: 1, Status: "failed", DurationMS: 1250, Output: "too slow\ntook 3s"},
		{Task: "unit", Case: "pkg.TestA", Test: "unit/pkg.TestA", Attempt: 2, Status: "passed", DurationMS: 500},
		{Task: "unit", Case: "pkg.TestB", Test: "unit/pkg.TestB", Attempt: 2, Status: "passed", DurationMS: 1250},
	})
	var all []bettertest.TestResult
	getJSON(t, boss, fmt.Sprintf("/api/runs/%d/tests", r.ID), &all)
	var names []string
	for _, x := range all {
		names = append(names, fmt.Sprintf("%s#%d %s", x.Test, x.Attempt, x.Status))
	}
	// The order of tasks of one stage is the order they ended in.
	got := strings.Join(names, ", ")
	for _, want := range []string{"wobbly#1 passed", "steady#1 passed", "unit/pkg.TestB#2 passed"} {
		if n := strings.Count(got, want); n != 1 {
			t.Errorf("the run's test results hold %q %d times, want once: %s", want, n, got)
		}
	}
	if len(all) != 6 {
		t.Errorf("the run has %d test results, want 6 (4 of unit, 1 of wobbly, 1 of steady): %s", len(all), got)
	}

	var flaky []bettertest.FlakyTest
	getJSON(t, boss, "/api/flaky", &flaky)
	same(t, "the flaky tests", flaky, []bettertest.FlakyTest{{
		Pipeline: "retry", Test: "unit/pkg.TestB", Flaky: true,
		Reasons:  []string{"failed, then passed when retried, in run #1"},
		Evidence: []bettertest.TestRun{{RunID: 1, Outcome: "flaky"}},
		History:  []bettertest.TestRun{{RunID: 1, Outcome: "flaky"}},
	}})
}

// Across runs: a pass and a fail of the same commit make a test flaky at
// once; runs that flip often make it flaky by its flip rate; clean passes
// in a row clear it.
func TestSameCommitFlipRateAndClearing(t *testing.T) {
	wt.Integration(t)
	t.Parallel()
	w := newRepoWobbly("app")
	repo := newRepo(t)
	// Runs 1 to 4 test one commit, each with its own plans.
	for run, wobbly := range []string{"pass", "fail", "pass", "pass"} {
		writePlans(t, filepath.Join(repo.work, "plans", fmt.Sprint(run+1)), wobbly, "pass")
	}
	commit := repo.commit(t, w.code, "refs/heads/main")
	worker := wt.Start(t, bin, wt.Options{})
	boss := wt.StartBoss(t, bin, wt.BossOptions{Workers: []*wt.Worker{worker}, Args: []string{
		"--repo", "app=file://" + repo.bare + ",pipedef=ci/pipeline.py,branch=main",
		"--flaky-window", "10", "--flaky-threshold", "0.4", "--flaky-clear", "2"}})
	flaky := func() []bettertest.FlakyTest {
		var out []bettertest.FlakyTest
		getJSON(t, boss, "/api/flaky?pipeline=app", &out)
		return out
	}

	// Runs 1 and 2 test one commit: wobbly passes, then fails.
	if r := runJudged(t, boss, "app"); r.Status != bettertest.StatusPassed || r.Commit != commit {
		t.Fatalf("run #%d %s on %s, want passed on %s", r.ID, r.Status, r.Commit, commit)
	}
	same(t, "after one run", flaky(), []bettertest.FlakyTest{})
	if r := runJudged(t, boss, "app"); r.Status != bettertest.StatusFailed {
		t.Fatalf("run #%d %s, want failed", r.ID, r.Status)
	}
	same(t, "after a pass and a fail of one commit", flaky(), []bettertest.FlakyTest{{
		Pipeline: "app", Test: "wobbly", Flaky: true, FlipRate: 1,
		Reasons:  []string{fmt.Sprintf("passed (run #1) and failed (run #2) on the same commit %s", commit[:7])},
		Evidence: []bettertest.TestRun{{RunID: 2, Commit: commit, Outcome: "failed"}, {RunID: 1, Commit: commit, Outcome: "passed"}},
		History:  []bettertest.TestRun{{RunID: 2, Commit: commit, Outcome: "failed"}, {RunID: 1, Commit: commit, Outcome: "passed"}},
	}})

	// Two clean passes clear it.
	runJudged(t, boss, "app")
	if got := flaky(); len(got) != 1 || got[0].CleanRuns != 1 {
		t.Fatalf("after one clean pass: %+v, want wobbly still listed, 1 clean run", got)
	}
	runJudged(t, boss, "app")
	same(t, "after two clean passes", flaky(), []bettertest.FlakyTest{})

	// New commits from here on, so only the flip rate can tell: over ten
	// runs (the window) the outcome flips 9 times in 9, each flip with a new
	// commit, which counts half.
	var commits []string
	for i, attempts := range []string{"fail", "pass", "fail", "pass", "fail", "pass", "fail", "pass", "fail", "pass"} {
		writePlans(t, filepath.Join(repo.work, "plans", fmt.Sprint(5+i)), attempts, "pass")
		commits = append(commits, repo.commit(t, w.code+fmt.Sprintf("# change %d\n", i), "refs/heads/main"))
		runJudged(t, boss, "app")
		if got := flaky(); i < 9 && len(got) != 0 {
			t.Fatalf("after %d runs on new commits: listed %+v, want nothing: the flip-rate rule needs 10 runs", i+1, got)
		}
	}
	history := []bettertest.TestRun{}
	for i := 9; i >= 0; i-- {
		outcome := "failed"
		if i%2 == 1 {
			outcome = "passed"
		}
		history = append(history, bettertest.TestRun{RunID: int64(5 + i), Commit: commits[i], Outcome: outcome})
	}
	same(t, "after nine flips", flaky(), []bettertest.FlakyTest{{
		Pipeline: "app", Test: "wobbly", Flaky: true, FlipRate: 0.5,
		Reasons:  []string{"its outcome flipped in 9 of 9 consecutive runs, 9 of them with a new commit, which count half (50%, above 40%)"},
		Evidence: history, History: history,
		CleanRuns: 1, // the last run passed
	}})
}

// Quarantined tests fail without failing the run: by the boss's flag, and
// by the API, which the next run follows.
func TestQuarantine(t *testing.T) {
	t.Parallel()
	w, boss := startWobbly(t, "q", 0, "--quarantine", "q/wobbly")
	w.plan(t, "fail", "fail")

	// wobbly is quarantined, unit's pkg.TestB is not.
	r := runJudged(t, boss, "q")
	if r.Status != bettertest.StatusFailed {
		t.Fatalf("run #%d %s, want failed: unit/pkg.TestB is not quarantined", r.ID, r.Status)
	}
	if wob, unit := taskOf(t, boss, r.ID, "wobbly"), taskOf(t, boss, r.ID, "unit"); !wob.Quarantined || unit.Quarantined {
		t.Errorf("quarantined: wobbly %v, unit %v; want true, false", wob.Quarantined, unit.Quarantined)
	}

	status, body := boss.Do(t, http.MethodPost, "/api/quarantine", bettertest.QuarantineRequest{Pipeline: "q", Test: "unit/pkg.TestB", Quarantined: true})
	if status != http.StatusOK {
		t.Fatalf("quarantine unit/pkg.TestB: %d %s", status, body)
	}
	r = runJudged(t, boss, "q")
	if r.Status != bettertest.StatusPassed {
		t.Fatalf("run #%d %s (%s), want passed: every failing test is quarantined", r.ID, r.Status, r.Error)
	}
	if wob, unit := taskOf(t, boss, r.ID, "wobbly"), taskOf(t, boss, r.ID, "unit"); wob.Status != "failed" || !wob.Quarantined || unit.Status != "failed" || !unit.Quarantined {
		t.Errorf("wobbly %s quarantined %v, unit %s quarantined %v; want both failed and quarantined", wob.Status, wob.Quarantined, unit.Status, unit.Quarantined)
	}
	var flaky []bettertest.FlakyTest
	getJSON(t, boss, "/api/flaky", &flaky)
	history := []bettertest.TestRun{{RunID: 2, Outcome: "failed"}, {RunID: 1, Outcome: "failed"}}
	same(t, "the quarantined tests", flaky, []bettertest.FlakyTest{
		{Pipeline: "q", Test: "wobbly", Reasons: []string{}, Evidence: []bettertest.TestRun{}, History: history, Quarantined: true, QuarantinedBy: "flag"},
		{Pipeline: "q", Test: "unit/pkg.TestB", Reasons: []string{}, Evidence: []bettertest.TestRun{}, History: history, Quarantined: true, QuarantinedBy: "ui"},
	})

	for _, c := range []struct {
		req    bettertest.QuarantineRequest
		status int
		want   string
	}{
		{bettertest.QuarantineRequest{Pipeline: "q", Test: "wobbly"}, http.StatusConflict,
			"q/wobbly is quarantined by the boss's --quarantine flag: restart the boss without it to release the test"},
		{bettertest.QuarantineRequest{Pipeline: "nope", Test: "wobbly", Quarantined: true}, http.StatusNotFound,
			`no pipeline "nope": the pipelines are q`},
		{bettertest.QuarantineRequest{Pipeline: "q", Test: "/x", Quarantined: true}, http.StatusBadRequest,
			`not a test id: "/x": give TASK, or TASK/CASE for a test case of a task's results`},
	} {
		status, body := boss.Do(t, http.MethodPost, "/api/quarantine", c.req)
		var e bettertest.APIError
		mustJSON(t, string(body), &e)
		if status != c.status || e.Error != c.want {
			t.Errorf("POST /api/quarantine %+v: %d %q, want %d %q", c.req, status, e.Error, c.status, c.want)
		}
	}

	// Released, it fails the run again.
	if status, body := boss.Do(t, http.MethodPost, "/api/quarantine", bettertest.QuarantineRequest{Pipeline: "q", Test: "unit/pkg.TestB"}); status != http.StatusOK {
		t.Fatalf("release unit/pkg.TestB: %d %s", status, body)
	}
	if r := runJudged(t, boss, "q"); r.Status != bettertest.StatusFailed {
		t.Fatalf("run #%d %s, want failed: unit/pkg.TestB was released", r.ID, r.Status)
	}
}

// In Chromium: f opens the Flaky page, which lists the test the retry
// showed flaky; q quarantines it and the page shows it at once; the run
// page marks the task; the Release button releases it.
func TestBrowserFlakyPage(t *testing.T) {
	t.Parallel()
	w, boss := startWobbly(t, "retry", 1)
	w.plan(t, "fail pass", "pass")
	r := runJudged(t, boss, "retry")

	tab := newTab(t, boss.URL)
	tab.open("/")
	tab.press("f")
	const row = `[...document.querySelectorAll("#f-0 .st, #f-0 .pipe, #f-0 .name, #f-0 .reasons, #f-0 button")].map(e => e.textContent).join(" | ")`
	tab.waitFor("the flaky page", `location.pathname === "/flaky" && document.getElementById("f-0") !== null`)
	tab.equal(row, fmt.Sprintf("⚠ flaky | retry | wobbly | failed, then passed when retried, in run #%d | Quarantine", r.ID))
	tab.equal(`document.title`, "Flaky tests · bettertest")
	tab.screenshot("flaky")

	tab.press("q")
	tab.waitFor("the test quarantined", row+` === "⚠ flaky | ⊡ quarantined | retry | wobbly | failed, then passed when retried, in run #`+fmt.Sprint(r.ID)+` | Release"`)
	var flaky []bettertest.FlakyTest
	getJSON(t, boss, "/api/flaky", &flaky)
	if len(flaky) != 1 || !flaky[0].Quarantined || flaky[0].QuarantinedBy != "ui" {
		t.Fatalf("after q: %+v, want wobbly quarantined by ui", flaky)
	}

	// Enter opens the evidence run, whose task card is marked.
	tab.press(kb.Enter)
	tab.waitFor("the run page", fmt.Sprintf(`location.pathname === "/runs/%d"`, r.ID))
	tab.equal(`[...document.querySelectorAll("a.task")].filter(a => a.querySelector(".name").textContent === "wobbly").map(a => a.querySelector(".marks").textContent).join()`,
		"⚠ flaky 2 attempts ⚠ known flaky")

	tab.press("f")
	tab.waitFor("the flaky page again", `location.pathname === "/flaky" && document.getElementById("f-0") !== null`)
	tab.click(`#f-0 button`)
	tab.waitFor("the test released", row+` === "⚠ flaky | retry | wobbly | failed, then passed when retried, in run #`+fmt.Sprint(r.ID)+` | Quarantine"`)
}
