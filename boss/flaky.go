package boss

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/internal/httpapi"
	"github.com/bettertest/bettertest/internal/hub"
)

// FlakyRules say when a test is listed as flaky. A test's history is its
// outcome in each run, newest first: passed, failed, or flaky (failed, then
// passed when retried). The rules look at the newest Window runs, back to
// the last time the test passed cleanly Clear runs in a row: a test that
// did that has shown it is fixed, and what came before no longer counts.
//
//   - Same commit: it passed and failed on one commit, in one run (a retry)
//     or across runs.
//   - Flip rate: of the consecutive runs looked at, the share whose outcomes
//     differ is above Threshold, once there are at least MinFlipRuns of them
//     and at least two of them failed. A flip that came with a new commit
//     counts half: it is more likely a change (a break, a fix) than a flake.
//
// So a break and its fix is not flaky (pass, fail, pass, pass, pass: one
// failure), nor is a break that stays broken, nor a run of breaks each fixed
// by the next commit unless they flip often enough to pass the threshold at
// half weight.
type FlakyRules struct {
	Window    int     // runs looked at, newest first
	Threshold float64 // flip rate above which a test is flaky, 0..1
	Clear     int     // clean passes in a row that clear a test
}

// DefaultFlakyRules are the boss's defaults.
var DefaultFlakyRules = FlakyRules{Window: 20, Threshold: 0.3, Clear: 10}

// MinFlipRuns is how many runs the flip-rate rule needs: over fewer, a
// break and a fix or two read as a high flip rate, which is noise.
const MinFlipRuns = 10

// minFlipFailures is how many failed runs the flip-rate rule needs: a test
// is never listed on a single failure.
const minFlipFailures = 2

// newCommitFlip is what a flip that came with a new commit counts.
const newCommitFlip = 0.5

// Check says what is wrong with the rules, in terms of the boss's flags.
func (r FlakyRules) Check() error {
	switch {
	case r.Window < 2 || r.Window > 1000:
		return fmt.Errorf("--flaky-window %d: give the number of runs the rules look at, 2 to 1000", r.Window)
	case !(r.Threshold >= 0 && r.Threshold < 1):
		return fmt.Errorf("--flaky-threshold %g: give a flip rate from 0 up to (not including) 1, e.g. 0.3", r.Threshold)
	case r.Clear < 1 || r.Clear > 1000:
		return fmt.Errorf("--flaky-clear %d: give the number of clean passes in a row that clear a test, 1 to 1000", r.Clear)
	}
	return nil
}

func (r FlakyRules) String() string {
	return fmt.Sprintf("window=%d threshold=%g clear=%d", r.Window, r.Threshold, r.Clear)
}

// caseRow is one result of a test: one attempt of it in one run.
type caseRow struct {
	RunID  int64
	Commit string
	Status string
}

// judge applies the rules to a test's results, newest run first (as
// store.testHistory reads them), and says whether it is flaky and why.
func judge(pipeline, test string, rows []caseRow, rules FlakyRules) bettertest.FlakyTest {
	ft := bettertest.FlakyTest{Pipeline: pipeline, Test: test, Reasons: []string{}, Evidence: []bettertest.TestRun{}, History: []bettertest.TestRun{}}
	// Each run's outcome, from its results in the order they came: the last
	// result that is not a skip decides, and a failure before a pass makes it flaky.
	type runResults struct {
		bettertest.TestRun
		passed, failed bool
	}
	var runs []runResults
	for _, c := range rows {
		if c.Status != bettertest.StatusPassed && c.Status != bettertest.StatusFailed {
			continue // skipped: says nothing either way
		}
		if len(runs) == 0 || runs[len(runs)-1].RunID != c.RunID {
			runs = append(runs, runResults{TestRun: bettertest.TestRun{RunID: c.RunID, Commit: c.Commit}})
		}
		r := &runs[len(runs)-1]
		if c.Status == bettertest.StatusPassed {
			r.passed = true
			r.Outcome = bettertest.StatusPassed
			if r.failed {
				r.Outcome = bettertest.OutcomeFlaky
			}
		} else {
			r.failed = true
			r.Outcome = bettertest.StatusFailed
		}
	}
	for _, r := range runs {
		if r.Outcome != bettertest.StatusPassed {
			break
		}
		ft.CleanRuns++
	}
	for _, r := range runs[:min(len(runs), rules.Window)] {
		ft.History = append(ft.History, r.TestRun)
	}
	// The runs the rules look at: the newest, back to the newest streak of
	// clean passes that cleared the test (history holds Window+Clear runs,
	// so a streak that begins inside the window is seen whole).
	cut, streak := len(runs), 0
	for i, r := range runs {
		if r.Outcome == bettertest.StatusPassed {
			streak++
		} else {
			streak = 0
		}
		if streak == rules.Clear {
			cut = i + 1 - streak
			break
		}
	}
	window := runs[:min(cut, rules.Window)]

	evidence := map[int64]bool{}
	// Same commit: within a run (a retry) or across runs.
	for _, r := range window {
		if r.Outcome == bettertest.OutcomeFlaky {
			ft.Reasons = append(ft.Reasons, fmt.Sprintf("failed, then passed when retried, in run #%d%s", r.RunID, onCommit(r.Commit)))
			evidence[r.RunID] = true
		}
	}
	var commits []string
	byCommit := map[string][]runResults{}
	for _, r := range window {
		if r.Commit == "" {
			continue
		}
		if _, ok := byCommit[r.Commit]; !ok {
			commits = append(commits, r.Commit)
		}
		byCommit[r.Commit] = append(byCommit[r.Commit], r)
	}
	for _, c := range commits {
		rs := byCommit[c]
		var passedIn, failedIn []string
		for _, r := range rs {
			if r.Outcome == bettertest.StatusPassed {
				passedIn = append(passedIn, fmt.Sprintf("#%d", r.RunID))
			}
			if r.Outcome == bettertest.StatusFailed {
				failedIn = append(failedIn, fmt.Sprintf("#%d", r.RunID))
			}
		}
		if len(passedIn) == 0 || len(failedIn) == 0 {
			continue // one run's own retry is reported above
		}
		ft.Reasons = append(ft.Reasons, fmt.Sprintf("passed (run %s) and failed (run %s) on the same commit %s",
			strings.Join(passedIn, ", "), strings.Join(failedIn, ", "), short(c)))
		for _, r := range rs {
			if r.Outcome == bettertest.StatusPassed || r.Outcome == bettertest.StatusFailed {
				evidence[r.RunID] = true
			}
		}
	}
	// Flip rate: a flaky run ended passed.
	final := func(r runResults) bool { return r.Outcome != bettertest.StatusFailed }
	flips, withCommit, failures, weighted := 0, 0, 0, 0.0
	for i := range window {
		if !final(window[i]) {
			failures++
		}
		if i == 0 || final(window[i]) == final(window[i-1]) {
			continue
		}
		flips++
		if a, b := window[i].Commit, window[i-1].Commit; a != "" && b != "" && a != b {
			withCommit++
			weighted += newCommitFlip
		} else {
			weighted++
		}
	}
	if len(window) >= 2 {
		ft.FlipRate = weighted / float64(len(window)-1)
	}
	if len(window) >= MinFlipRuns && failures >= minFlipFailures && ft.FlipRate > rules.Threshold {
		counted := ""
		if withCommit > 0 {
			counted = fmt.Sprintf(", %d of them with a new commit, which count half", withCommit)
		}
		ft.Reasons = append(ft.Reasons, fmt.Sprintf("its outcome flipped in %d of %d consecutive runs%s (%.0f%%, above %.0f%%)",
			flips, len(window)-1, counted, ft.FlipRate*100, rules.Threshold*100))
		for i := 1; i < len(window); i++ {
			if final(window[i]) != final(window[i-1]) {
				evidence[window[i-1].RunID], evidence[window[i].RunID] = true, true
			}
		}
	}
	for _, r := range window {
		if evidence[r.RunID] {
			ft.Evidence = append(ft.Evidence, r.TestRun)
		}
	}
	ft.Flaky = len(ft.Reasons) > 0
	return ft
}

func short(commit string) string { return commit[:min(7, len(commit))] }

func onCommit(commit string) string {
	if commit == "" {
		return ""
	}
	return " on commit " + short(commit)
}

// TestID is a test's id in its pipeline: its task's name, or TASK/CASE for
// a test case of a task's results. Task names hold no '/', so the first one
// splits an id.
func TestID(task, testCase string) string {
	if testCase == "" {
		return task
	}
	return task + "/" + testCase
}

// checkTestID says what is wrong with a test id.
func checkTestID(test string) error {
	if test == "" || strings.HasPrefix(test, "/") || len(test) > 4096 || strings.ContainsFunc(test, unicode.IsControl) || !utf8.ValidString(test) {
		return fmt.Errorf("%w: %q: give TASK, or TASK/CASE for a test case of a task's results", errBadTest, test)
	}
	return nil
}

// ParseQuarantine reads a --quarantine PIPELINE/TEST value.
func ParseQuarantine(v string) ([2]string, error) {
	pipeline, test, ok := strings.Cut(v, "/")
	if !ok || pipeline == "" || checkTestID(test) != nil {
		return [2]string{}, fmt.Errorf("--quarantine %q: give PIPELINE/TASK or PIPELINE/TASK/CASE, e.g. --quarantine app/unit/TestLogin", v)
	}
	return [2]string{pipeline, test}, nil
}

// rulesKey is where the history keeps the rules its test verdicts follow.
const rulesKey = "flaky_rules"

// judgeTests applies the rules to tests after a run and records the
// verdicts, then tells watchers which pipelines' lists may have changed.
// One run's tests at a time: verdicts are made from the history in order.
func (b *Boss) judgeTests(ctx context.Context, tests [][2]string) error {
	b.judging.Lock()
	defer b.judging.Unlock()
	var pipelines []string
	verdicts := make([]bettertest.FlakyTest, 0, len(tests))
	for _, pt := range tests {
		rows, err := b.store.testHistory(ctx, pt[0], pt[1], b.rules.Window+b.rules.Clear)
		if err != nil {
			return err
		}
		verdicts = append(verdicts, judge(pt[0], pt[1], rows, b.rules))
		if !slices.Contains(pipelines, pt[0]) {
			pipelines = append(pipelines, pt[0])
		}
	}
	// In transactions of a few hundred: the history's one connection is not
	// held from the runs' own writes for long.
	for chunk := range slices.Chunk(verdicts, 500) {
		if err := b.store.saveTests(chunk); err != nil {
			return err
		}
	}
	for _, p := range pipelines {
		b.announce(hub.New(bettertest.BossEventFlaky, bettertest.FlakyEvent{Pipeline: p}))
	}
	return nil
}

// rejudgeAll makes every verdict again when the rules differ from those the
// history's verdicts follow (the boss was started with other --flaky-* flags).
func (b *Boss) rejudgeAll(ctx context.Context) error {
	was, err := b.store.meta(rulesKey)
	if err != nil {
		return fmt.Errorf("read the flaky rules: %w", err)
	}
	if was == b.rules.String() {
		return nil
	}
	tests, err := b.store.allTests(ctx)
	if err != nil {
		return fmt.Errorf("list the tests: %w", err)
	}
	if err := b.judgeTests(ctx, tests); err != nil {
		return err
	}
	if len(tests) > 0 {
		b.log.Info("judged every test by the new flaky rules", "tests", len(tests), "rules", b.rules.String(), "was", was)
	}
	return b.store.setMeta(rulesKey, b.rules.String())
}

// flaky lists the flaky and the quarantined tests of one pipeline, or of
// all when pipeline is "": flaky ones first, by flip rate.
func (b *Boss) flaky(ctx context.Context, pipeline string) ([]bettertest.FlakyTest, error) {
	quarantined, byUI, err := b.quarantined(ctx, pipeline)
	if err != nil {
		return nil, err
	}
	out, err := b.store.flakyTests(ctx, pipeline, quarantined)
	if err != nil {
		return nil, err
	}
	for i := range out {
		pt := [2]string{out[i].Pipeline, out[i].Test}
		switch {
		case slices.Contains(b.cfg.Quarantine, pt):
			out[i].Quarantined, out[i].QuarantinedBy = true, "flag"
		case slices.Contains(byUI, pt):
			out[i].Quarantined, out[i].QuarantinedBy = true, "ui"
		}
	}
	return out, nil
}

// quarantined lists the quarantined tests of pipeline (of all when it is
// ""), each once, the --quarantine flag's first; and, apart, every test
// quarantined from the UI or the API.
func (b *Boss) quarantined(ctx context.Context, pipeline string) (tests, byUI [][2]string, err error) {
	byUI, err = b.store.quarantined(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, pt := range append(slices.Clone(b.cfg.Quarantine), byUI...) {
		if (pipeline == "" || pt[0] == pipeline) && !slices.Contains(tests, pt) {
			tests = append(tests, pt)
		}
	}
	return tests, byUI, nil
}

var errBadTest = errors.New("not a test id")

var errFlagQuarantine = errors.New("quarantined by the boss's --quarantine flag: restart the boss without it to release the test")

// quarantine quarantines or releases a test of a pipeline, and tells watchers.
func (b *Boss) quarantine(pipeline, test string, on bool) error {
	if _, ok := b.pipeline(pipeline); !ok {
		return fmt.Errorf("%w %q", errNoPipeline, pipeline)
	}
	if err := checkTestID(test); err != nil {
		return err
	}
	if !on && slices.Contains(b.cfg.Quarantine, [2]string{pipeline, test}) {
		return errFlagQuarantine
	}
	if err := b.store.setQuarantine(pipeline, test, on); err != nil {
		return err
	}
	b.announce(hub.New(bettertest.BossEventFlaky, bettertest.FlakyEvent{Pipeline: pipeline}))
	return nil
}

// quarantineArgs are the pipedef's --quarantine arguments for a run of pipeline.
func (b *Boss) quarantineArgs(ctx context.Context, pipeline string) ([]string, error) {
	tests, _, err := b.quarantined(ctx, pipeline)
	if err != nil {
		return nil, err
	}
	var args []string
	for _, pt := range tests {
		args = append(args, "--quarantine", pt[1])
	}
	return args, nil
}

// handleFlaky answers GET /api/flaky[?pipeline=NAME]: the flaky and the
// quarantined tests, flaky ones first by flip rate.
func (b *Boss) handleFlaky(w http.ResponseWriter, r *http.Request) {
	pipeline := r.URL.Query().Get("pipeline")
	if _, ok := b.pipeline(pipeline); pipeline != "" && !ok {
		b.writeNoPipeline(w, pipeline)
		return
	}
	out, err := b.flaky(r.Context(), pipeline)
	if err != nil {
		b.api().Error(w, r, fmt.Errorf("read the flaky tests: %w", err))
		return
	}
	httpapi.JSON(w, http.StatusOK, out)
}

// handleTests answers GET /api/runs/{id}/tests[?task=NAME]: the run's test
// results, every attempt, in the order they came.
func (b *Boss) handleTests(w http.ResponseWriter, r *http.Request) {
	id, ok := runID(w, r)
	if !ok {
		return
	}
	if _, err := b.runByID(r.Context(), id); err != nil {
		b.writeRunError(w, r, id, err)
		return
	}
	out, err := b.testResults(r.Context(), id, r.URL.Query().Get("task"))
	if err != nil {
		b.api().Error(w, r, fmt.Errorf("read the test results of run %d: %w", id, err))
		return
	}
	httpapi.JSON(w, http.StatusOK, out)
}

// liveResults are the test results of run id so far, when the engine holds
// it (active, or ended and not all written yet): read off the engine, since
// a run's results are only ever appended to.
func (b *Boss) liveResults(id int64) (results []bettertest.TestResult, active bool) {
	b.do(func(e *engine) {
		a, ok := e.active[id]
		if !ok {
			a, ok = e.ended[id] // its last results may not be written yet
		}
		if ok {
			active, results = true, a.results[:len(a.results):len(a.results)]
		}
	})
	return results, active
}

// testResults are a run's test results so far, of one task or of all when
// task is "": from memory while the engine holds the run (the store may not
// have the newest yet), else from the cache of ended runs' or the store.
func (b *Boss) testResults(ctx context.Context, id int64, task string) ([]bettertest.TestResult, error) {
	results, active := b.liveResults(id)
	if active {
		out := []bettertest.TestResult{}
		for _, t := range results {
			if task == "" || t.Task == task {
				out = append(out, t)
			}
		}
		return out, nil
	}
	if out, ok := b.endedCases.get(id, task); ok {
		return out, nil
	}
	out, err := b.store.cases(ctx, id, task)
	if err != nil {
		return nil, err
	}
	b.endedCases.put(id, task, out) // all written: its end is
	return out, nil
}

// handleQuarantine answers POST /api/quarantine: quarantine a test, or release it.
func (b *Boss) handleQuarantine(w http.ResponseWriter, r *http.Request) {
	var req bettertest.QuarantineRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		httpapi.Fail(w, httpapi.Invalid, fmt.Sprintf(`the body is not a quarantine request (%v): send {"pipeline": "NAME", "test": "TASK/CASE", "quarantined": true}`, err))
		return
	}
	err := b.quarantine(req.Pipeline, req.Test, req.Quarantined)
	switch {
	case errors.Is(err, errNoPipeline):
		b.writeNoPipeline(w, req.Pipeline)
	case errors.Is(err, errFlagQuarantine):
		httpapi.Fail(w, httpapi.Conflict, fmt.Sprintf("%s/%s is %v", req.Pipeline, req.Test, err))
	case errors.Is(err, errBadTest):
		httpapi.Fail(w, httpapi.Invalid, err.Error())
	case err != nil:
		b.api().Error(w, r, fmt.Errorf("quarantine %s/%s: %w", req.Pipeline, req.Test, err))
	default:
		httpapi.JSON(w, http.StatusOK, req)
	}
}
