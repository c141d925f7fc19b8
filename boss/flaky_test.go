package boss

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/bettertest/bettertest"
)

// history builds a test's results, newest run first, from a compact form:
// one word per run, "RUN@COMMIT:STATUSES", where the statuses are its
// attempts in order (p passed, f failed, s skipped); "@COMMIT" is optional.
func history(t *testing.T, runs string) []caseRow {
	t.Helper()
	var out []caseRow
	for _, word := range strings.Fields(runs) {
		head, statuses, ok := strings.Cut(word, ":")
		if !ok {
			t.Fatalf("bad run %q", word)
		}
		id, commit, _ := strings.Cut(head, "@")
		var runID int64
		for _, c := range id {
			runID = runID*10 + int64(c-'0')
		}
		for _, s := range statuses {
			status := map[rune]string{'p': bettertest.StatusPassed, 'f': bettertest.StatusFailed, 's': bettertest.StatusSkipped}[s]
			out = append(out, caseRow{RunID: runID, Commit: commit, Status: status})
		}
	}
	return out
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFlakyRules(t *testing.T) {
	rules := FlakyRules{Window: 6, Threshold: 0.3, Clear: 3}
	cases := []struct {
		name, runs string
		want       bettertest.FlakyTest
	}{
		{
			name: "a retry that passed is flaky on its own",
			runs: "3:p 2@bbbbbbbbbb:fp 1:p",
			want: bettertest.FlakyTest{Flaky: true, FlipRate: 0, CleanRuns: 1,
				Reasons:  []string{"failed, then passed when retried, in run #2 on commit bbbbbbb"},
				Evidence: []bettertest.TestRun{{RunID: 2, Commit: "bbbbbbbbbb", Outcome: "flaky"}},
				History: []bettertest.TestRun{{RunID: 3, Outcome: "passed"}, {RunID: 2, Commit: "bbbbbbbbbb", Outcome: "flaky"},
					{RunID: 1, Outcome: "passed"}}},
		},
		{
			name: "a pass and a fail of one commit across runs",
			runs: "4@c2:f 3@c1:p 2@c1:f 1@c0:p",
			want: bettertest.FlakyTest{Flaky: true, FlipRate: 2.0 / 3,
				Reasons:  []string{"passed (run #3) and failed (run #2) on the same commit c1"},
				Evidence: []bettertest.TestRun{{RunID: 3, Commit: "c1", Outcome: "passed"}, {RunID: 2, Commit: "c1", Outcome: "failed"}},
				History: []bettertest.TestRun{{RunID: 4, Commit: "c2", Outcome: "failed"}, {RunID: 3, Commit: "c1", Outcome: "passed"},
					{RunID: 2, Commit: "c1", Outcome: "failed"}, {RunID: 1, Commit: "c0", Outcome: "passed"}}},
		},
		{
			name: "a break is not flaky: one flip, every commit consistent",
			runs: "5@e:f 4@d:f 3@c:f 2@b:p 1@a:p",
			want: bettertest.FlakyTest{FlipRate: 0.125, Reasons: []string{}, Evidence: []bettertest.TestRun{},
				History: []bettertest.TestRun{{RunID: 5, Commit: "e", Outcome: "failed"}, {RunID: 4, Commit: "d", Outcome: "failed"},
					{RunID: 3, Commit: "c", Outcome: "failed"}, {RunID: 2, Commit: "b", Outcome: "passed"}, {RunID: 1, Commit: "a", Outcome: "passed"}}},
		},
		{
			name: "flips on new commits over five runs are too few",
			runs: "5@e:p 4@d:f 3@c:p 2@b:p 1@a:f",
			want: bettertest.FlakyTest{FlipRate: 0.375, Reasons: []string{}, Evidence: []bettertest.TestRun{},
				History: []bettertest.TestRun{{RunID: 5, Commit: "e", Outcome: "passed"}, {RunID: 4, Commit: "d", Outcome: "failed"},
					{RunID: 3, Commit: "c", Outcome: "passed"}, {RunID: 2, Commit: "b", Outcome: "passed"}, {RunID: 1, Commit: "a", Outcome: "failed"}},
				CleanRuns: 1},
		},
		{
			name: "too few runs for the flip rate",
			runs: "4@d:p 3@c:f 2@b:p 1@a:f",
			want: bettertest.FlakyTest{FlipRate: 0.5, Reasons: []string{}, Evidence: []bettertest.TestRun{},
				History: []bettertest.TestRun{{RunID: 4, Commit: "d", Outcome: "passed"}, {RunID: 3, Commit: "c", Outcome: "failed"},
					{RunID: 2, Commit: "b", Outcome: "passed"}, {RunID: 1, Commit: "a", Outcome: "failed"}},
				CleanRuns: 1},
		},
		{
			name: "clean passes in a row clear what came before",
			runs: "6:p 5:p 4:p 3:fp 2@x:p 1@x:f",
			want: bettertest.FlakyTest{FlipRate: 0, Reasons: []string{}, Evidence: []bettertest.TestRun{}, CleanRuns: 3,
				History: []bettertest.TestRun{{RunID: 6, Outcome: "passed"}, {RunID: 5, Outcome: "passed"}, {RunID: 4, Outcome: "passed"},
					{RunID: 3, Outcome: "flaky"}, {RunID: 2, Commit: "x", Outcome: "passed"}, {RunID: 1, Commit: "x", Outcome: "failed"}}},
		},
		{
			name: "only what came after the clearing streak counts",
			runs: "6:fp 5:p 4:p 3:p 2@x:p 1@x:f",
			want: bettertest.FlakyTest{Flaky: true,
				Reasons:  []string{"failed, then passed when retried, in run #6"},
				Evidence: []bettertest.TestRun{{RunID: 6, Outcome: "flaky"}},
				History: []bettertest.TestRun{{RunID: 6, Outcome: "flaky"}, {RunID: 5, Outcome: "passed"}, {RunID: 4, Outcome: "passed"},
					{RunID: 3, Outcome: "passed"}, {RunID: 2, Commit: "x", Outcome: "passed"}, {RunID: 1, Commit: "x", Outcome: "failed"}}},
		},
		{
			name: "a clearing streak that begins inside the window counts whole",
			runs: "8:p 7:f 6:p 5:f 4:p 3:p 2:p 1:f",
			want: bettertest.FlakyTest{FlipRate: 1, Reasons: []string{}, Evidence: []bettertest.TestRun{}, CleanRuns: 1,
				History: []bettertest.TestRun{{RunID: 8, Outcome: "passed"}, {RunID: 7, Outcome: "failed"}, {RunID: 6, Outcome: "passed"},
					{RunID: 5, Outcome: "failed"}, {RunID: 4, Outcome: "passed"}, {RunID: 3, Outcome: "passed"}}},
		},
		{
			name: "skips say nothing, and the window holds the newest runs only",
			runs: "9:s 8:p 7:p 6:f 5:p 4:f 3:p 2@x:p 1@x:f",
			want: bettertest.FlakyTest{FlipRate: 0.8, Reasons: []string{}, Evidence: []bettertest.TestRun{},
				History: []bettertest.TestRun{{RunID: 8, Outcome: "passed"}, {RunID: 7, Outcome: "passed"}, {RunID: 6, Outcome: "failed"},
					{RunID: 5, Outcome: "passed"}, {RunID: 4, Outcome: "failed"}, {RunID: 3, Outcome: "passed"}},
				CleanRuns: 2},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.want.Pipeline, c.want.Test = "app", "unit/TestX"
			got := judge("app", "unit/TestX", history(t, c.runs), rules)
			if g, w := jsonOf(t, got), jsonOf(t, c.want); g != w {
				t.Errorf("judge(%s)\n got %s\nwant %s", c.runs, g, w)
			}
		})
	}
}

// The flip-rate rule: over enough runs, with two failures at least, a flip
// that came with a new commit counting half.
func TestFlipRate(t *testing.T) {
	rules := FlakyRules{Window: 20, Threshold: 0.3, Clear: 10}
	for _, c := range []struct {
		name, runs string
		flaky      bool
		rate       float64
		reasons    []string
	}{
		{"a break and its fix (the issue's example)", "5:p 4:p 3:p 2:f 1:p", false, 0.5, []string{}},
		{"a break and its fix over enough runs: one failure", "10:p 9:p 8:p 7:p 6:p 5:p 4:p 3:p 2:f 1:p", false, 2.0 / 9, []string{}},
		{"two breaks each fixed by the next commit", "10@j:p 9@i:p 8@h:f 7@g:p 6@f:p 5@e:p 4@d:f 3@c:p 2@b:p 1@a:p", false, 2.0 / 9, []string{}},
		{"a break that stays broken", "10@j:f 9@i:f 8@h:f 7@g:f 6@f:f 5@e:p 4@d:p 3@c:p 2@b:p 1@a:p", false, 0.5 / 9, []string{}},
		{"flips on one code", "10:p 9:f 8:p 7:f 6:p 5:p 4:f 3:p 2:f 1:p", true, 8.0 / 9,
			[]string{"its outcome flipped in 8 of 9 consecutive runs (89%, above 30%)"}},
		{"flips each with a new commit count half", "10@j:p 9@i:f 8@h:p 7@g:f 6@f:p 5@e:f 4@d:p 3@c:f 2@b:p 1@a:f", true, 0.5,
			[]string{"its outcome flipped in 9 of 9 consecutive runs, 9 of them with a new commit, which count half (50%, above 30%)"}},
		{"too few runs", "9:p 8:f 7:p 6:f 5:p 4:f 3:p 2:f 1:p", false, 1, []string{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := judge("app", "unit/TestX", history(t, c.runs), rules)
			if got.Flaky != c.flaky || got.FlipRate != c.rate || jsonOf(t, got.Reasons) != jsonOf(t, c.reasons) {
				t.Errorf("judge(%s): flaky %v, rate %v, reasons %q; want %v, %v, %q", c.runs, got.Flaky, got.FlipRate, got.Reasons, c.flaky, c.rate, c.reasons)
			}
		})
	}
}

func TestFlakyRulesAndQuarantineFlagsAreChecked(t *testing.T) {
	for _, c := range []struct {
		rules FlakyRules
		want  string
	}{
		{FlakyRules{Window: 1, Threshold: 0.3, Clear: 10}, "--flaky-window 1: give the number of runs the rules look at, 2 to 1000"},
		{FlakyRules{Window: 20, Threshold: 1, Clear: 10}, "--flaky-threshold 1: give a flip rate from 0 up to (not including) 1, e.g. 0.3"},
		{FlakyRules{Window: 20, Threshold: 0.3, Clear: 0}, "--flaky-clear 0: give the number of clean passes in a row that clear a test, 1 to 1000"},
	} {
		if err := c.rules.Check(); err == nil || err.Error() != c.want {
			t.Errorf("%+v: got %v, want %s", c.rules, err, c.want)
		}
	}
	if err := DefaultFlakyRules.Check(); err != nil {
		t.Errorf("the defaults: %v", err)
	}
	for v, want := range map[string][2]string{"app/unit": {"app", "unit"}, "app/unit/pkg/TestA/sub": {"app", "unit/pkg/TestA/sub"}} {
		if got, err := ParseQuarantine(v); err != nil || got != want {
			t.Errorf("ParseQuarantine(%q) = %v, %v; want %v", v, got, err, want)
		}
	}
	for _, v := range []string{"app", "/unit", "app/", "app//x", "app/a\x00b"} {
		want := `--quarantine "` + strings.ReplaceAll(v, "\x00", `\x00`) + `": give PIPELINE/TASK or PIPELINE/TASK/CASE, e.g. --quarantine app/unit/TestLogin`
		if _, err := ParseQuarantine(v); err == nil || err.Error() != want {
			t.Errorf("ParseQuarantine(%q): got %v, want %s", v, err, want)
		}
	}
}
