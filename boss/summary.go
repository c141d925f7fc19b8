package boss

import (
	"context"
	"strings"

	"github.com/bettertest/bettertest"
)

// caseCounts counts the stored test cases of runs, by run and task, as
// bettertest.CountCases counts them: each case by its last attempt, one
// that failed and then passed as flaky. Runs without cases are left out.
func (s *store) caseCounts(ctx context.Context, ids ...int64) (map[int64]map[string]bettertest.TestCounts, error) {
	out := map[int64]map[string]bettertest.TestCounts{}
	if len(ids) == 0 {
		return out, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	// Each case's last attempt (the last reported of it) and whether any
	// attempt failed, in one pass: with one max() in a group, SQLite takes
	// the group's bare columns (status) from the row that has the max. It
	// is several times faster than a window function over the same rows.
	rows, err := s.rdb.QueryContext(ctx, `SELECT run_id, task,
		SUM(status = 'passed' AND NOT failed), SUM(status = 'failed'), SUM(status = 'skipped'), SUM(status = 'passed' AND failed)
		FROM (SELECT run_id, task, status, MAX(attempt * 4294967296 + seq), SUM(status = 'failed') > 0 AS failed
			FROM cases WHERE run_id IN (?`+strings.Repeat(", ?", len(ids)-1)+`) GROUP BY run_id, task, test)
		GROUP BY run_id, task`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var task string
		var c bettertest.TestCounts
		if err := rows.Scan(&id, &task, &c.Passed, &c.Failed, &c.Skipped, &c.Flaky); err != nil {
			return nil, err
		}
		if out[id] == nil {
			out[id] = map[string]bettertest.TestCounts{}
		}
		out[id][task] = c
	}
	return out, rows.Err()
}

// storedRun reads a run with its stages from the history, its test cases counted.
func (s *store) storedRun(ctx context.Context, id int64) (bettertest.Run, error) {
	run, err := s.run(ctx, id)
	if err != nil {
		return run, err
	}
	counts, err := s.caseCounts(ctx, id)
	if err != nil {
		return run, err
	}
	bettertest.SetCounts(&run, counts[id])
	return run, nil
}

// storedRuns lists the newest runs as store.runs does, each with the count
// of its test cases.
func (s *store) storedRuns(ctx context.Context, pipeline string, limit int) ([]bettertest.Run, error) {
	runs, err := s.runs(ctx, pipeline, limit)
	if err != nil || len(runs) == 0 {
		return runs, err
	}
	ids := make([]int64, len(runs))
	for i, r := range runs {
		ids[i] = r.ID
	}
	counts, err := s.caseCounts(ctx, ids...)
	if err != nil {
		return nil, err
	}
	for i := range runs {
		var sum *bettertest.TestCounts
		for _, c := range counts[runs[i].ID] {
			if sum == nil {
				sum = &bettertest.TestCounts{}
			}
			sum.Add(c)
		}
		runs[i].Tests = sum
	}
	return runs, nil
}

// failingCases reads the stored results of the cases of a run that failed
// in some attempt, every attempt of them, in the order they came: all a run
// page needs to say what failed, without reading the cases that only passed.
func (s *store) failingCases(ctx context.Context, runID int64) ([]bettertest.TestResult, error) {
	return s.queryCases(ctx, `WHERE run_id = ? AND (task, test) IN (SELECT task, test FROM cases WHERE run_id = ? AND status = 'failed')`, runID, runID)
}

// failingResults are the results of the cases of a run that failed in some
// attempt (see failingCases): from memory while the run is active.
func (b *Boss) failingResults(ctx context.Context, id int64) ([]bettertest.TestResult, error) {
	b.mu.Lock()
	if a, ok := b.active[id]; ok {
		defer b.mu.Unlock()
		return bettertest.Failing(a.results), nil
	}
	b.mu.Unlock()
	return b.store.failingCases(ctx, id)
}
