package bettertest

import (
	"fmt"
	"strings"
)

// TestCounts counts a task's, a stage's or a run's test cases by how they
// ended, each case once, by its last attempt: a case that failed and then
// passed when retried is flaky, neither failed nor passed. A test task
// without results is one case itself.
type TestCounts struct {
	Passed  int `json:"passed"`
	Failed  int `json:"failed"`
	Skipped int `json:"skipped"`
	Flaky   int `json:"flaky"`
}

// Total is how many cases it counts.
func (c TestCounts) Total() int { return c.Passed + c.Failed + c.Skipped + c.Flaky }

// String is the counts in words, those that are not 0 and failures first:
// "2 failed, 1 flaky, 40 passed, 3 skipped"; "no test cases" when there are none.
func (c TestCounts) String() string {
	var parts []string
	for _, n := range []struct {
		n    int
		word string
	}{{c.Failed, "failed"}, {c.Flaky, "flaky"}, {c.Passed, "passed"}, {c.Skipped, "skipped"}} {
		if n.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n.n, n.word))
		}
	}
	if len(parts) == 0 {
		return "no test cases"
	}
	return strings.Join(parts, ", ")
}

// Add adds o to c.
func (c *TestCounts) Add(o TestCounts) {
	c.Passed, c.Failed, c.Skipped, c.Flaky = c.Passed+o.Passed, c.Failed+o.Failed, c.Skipped+o.Skipped, c.Flaky+o.Flaky
}

// Case is how a test case ended, from its last attempt's status and
// whether an attempt of it failed: failed, flaky, passed or skipped.
func Case(last string, anyFailed bool) string {
	if last == StatusPassed && anyFailed {
		return OutcomeFlaky
	}
	return last
}

func (c *TestCounts) count(outcome string) {
	switch outcome {
	case StatusPassed:
		c.Passed++
	case StatusFailed:
		c.Failed++
	case StatusSkipped:
		c.Skipped++
	case OutcomeFlaky:
		c.Flaky++
	}
}

// CaseOutcomes is, for each test case of results (one task's or a run's, in
// the order they came), how it ended (see Case), keyed by its task and test
// id, in the order the cases first came.
func CaseOutcomes(results []TestResult) (keys [][2]string, outcomes map[[2]string]string) {
	type state struct {
		last      TestResult
		anyFailed bool
	}
	states := map[[2]string]*state{}
	for _, t := range results {
		k := [2]string{t.Task, t.Test}
		s := states[k]
		if s == nil {
			s = &state{last: t}
			states[k] = s
			keys = append(keys, k)
		}
		if t.Attempt >= s.last.Attempt {
			s.last = t
		}
		s.anyFailed = s.anyFailed || t.Status == StatusFailed
	}
	outcomes = make(map[[2]string]string, len(states))
	for k, s := range states {
		outcomes[k] = Case(s.last.Status, s.anyFailed)
	}
	return keys, outcomes
}

// CountCases counts the test cases of results by task.
func CountCases(results []TestResult) map[string]TestCounts {
	_, outcomes := CaseOutcomes(results)
	out := map[string]TestCounts{}
	for k, o := range outcomes {
		c := out[k[0]]
		c.count(o)
		out[k[0]] = c
	}
	return out
}

// CountTask counts the test cases of one task in results.
func CountTask(results []TestResult, task string) *TestCounts {
	var mine []TestResult
	for _, t := range results {
		if t.Task == task {
			mine = append(mine, t)
		}
	}
	if len(mine) == 0 {
		return nil
	}
	c := CountCases(mine)[task]
	return &c
}

// StageCounts sums the counts of a stage's tasks: nil when none has test cases.
func StageCounts(st Stage) *TestCounts {
	var sum *TestCounts
	for _, t := range st.Tasks {
		if t.Tests != nil {
			if sum == nil {
				sum = &TestCounts{}
			}
			sum.Add(*t.Tests)
		}
	}
	return sum
}

// TotalCounts sums the counts of the tasks of stages: nil when none has test cases.
func TotalCounts(stages []Stage) *TestCounts {
	var sum *TestCounts
	for _, st := range stages {
		if c := StageCounts(st); c != nil {
			if sum == nil {
				sum = &TestCounts{}
			}
			sum.Add(*c)
		}
	}
	return sum
}

// SumCounts sets the counts of a run's stages and of the run itself as the
// sums of its tasks' counts.
func SumCounts(r *Run) {
	for si := range r.Stages {
		r.Stages[si].Tests = StageCounts(r.Stages[si])
	}
	r.Tests = TotalCounts(r.Stages)
}

// SetCounts sets the counts of a run's tasks from byTask (see CountCases),
// then those of its stages and of itself (see SumCounts).
func SetCounts(r *Run, byTask map[string]TestCounts) {
	for si := range r.Stages {
		for ti := range r.Stages[si].Tasks {
			t := &r.Stages[si].Tasks[ti]
			t.Tests = nil
			if c, ok := byTask[t.Name]; ok {
				t.Tests = &c
			}
		}
	}
	SumCounts(r)
}

// FailedCase is a test case whose last attempt failed.
type FailedCase struct {
	Last     TestResult // its last attempt
	Attempts []int      // the attempts it failed in
}

// FailedCases are the test cases of results whose last attempt failed, by
// task, in the order they first came. A task's own case (a test without
// results, or an attempt that failed without a failed case) is left out:
// it says no more than the task's own status.
func FailedCases(results []TestResult) map[string][]FailedCase {
	keys, outcomes := CaseOutcomes(results)
	byKey := map[[2]string]*FailedCase{}
	for _, t := range results {
		k := [2]string{t.Task, t.Test}
		if outcomes[k] != StatusFailed || t.Case == "" {
			continue
		}
		c := byKey[k]
		if c == nil {
			c = &FailedCase{}
			byKey[k] = c
		}
		if t.Attempt >= c.Last.Attempt {
			c.Last = t
		}
		if t.Status == StatusFailed {
			c.Attempts = append(c.Attempts, t.Attempt)
		}
	}
	out := map[string][]FailedCase{}
	for _, k := range keys {
		if c := byKey[k]; c != nil {
			out[k[0]] = append(out[k[0]], *c)
		}
	}
	return out
}

// Failing are the results of the cases of results that failed in some
// attempt, every attempt of them, in order: what FailedCases needs.
func Failing(results []TestResult) []TestResult {
	failed := map[[2]string]bool{}
	for _, t := range results {
		if t.Status == StatusFailed {
			failed[[2]string{t.Task, t.Test}] = true
		}
	}
	out := []TestResult{}
	for _, t := range results {
		if failed[[2]string{t.Task, t.Test}] {
			out = append(out, t)
		}
	}
	return out
}
