package boss

import (
	"context"
	"database/sql"
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
	return out, scanCounts(rows, out)
}

// scanCounts adds rows of (run, task, passed, failed, skipped, flaky) to
// out, and closes them.
func scanCounts(rows *sql.Rows, out map[int64]map[string]bettertest.TestCounts) error {
	defer rows.Close()
	for rows.Next() {
		var id int64
		var task string
		var c bettertest.TestCounts
		if err := rows.Scan(&id, &task, &c.Passed, &c.Failed, &c.Skipped, &c.Flaky); err != nil {
			return err
		}
		if out[id] == nil {
			out[id] = map[string]bettertest.TestCounts{}
		}
		out[id][task] = c
	}
	return rows.Err()
}

// countColumns are the columns of a task's row that hold its test cases
// counted, as it was saved last.
var countColumns = []string{"tests_passed", "tests_failed", "tests_skipped", "tests_flaky"}

// storedCounts are the test cases of runs counted, by run and task: what
// their tasks saved for the runs marked counted (ended runs of a boss that
// counts: a few rows a run), else counted from their stored cases (see
// caseCounts). Runs without cases are left out.
func (s *store) storedCounts(ctx context.Context, ids ...int64) (map[int64]map[string]bettertest.TestCounts, error) {
	if len(ids) == 0 {
		return map[int64]map[string]bettertest.TestCounts{}, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	in := `(?` + strings.Repeat(", ?", len(ids)-1) + `)`
	rows, err := s.rdb.QueryContext(ctx, `SELECT id FROM runs WHERE id IN `+in+` AND counted IS NULL`, args...)
	if err != nil {
		return nil, err
	}
	var uncounted []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		uncounted = append(uncounted, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out, err := s.caseCounts(ctx, uncounted...)
	if err != nil {
		return nil, err
	}
	rows, err = s.rdb.QueryContext(ctx, `SELECT t.run_id, t.name, `+strings.Join(countColumns, ", ")+` FROM tasks t JOIN runs r ON r.id = t.run_id
		WHERE t.run_id IN `+in+` AND r.counted = 1 AND t.tests_passed IS NOT NULL`, args...)
	if err != nil {
		return nil, err
	}
	return out, scanCounts(rows, out)
}

// storedRun reads a run with its stages from the history, its test cases counted.
func (s *store) storedRun(ctx context.Context, id int64) (bettertest.Run, error) {
	run, err := s.run(ctx, id)
	if err != nil {
		return run, err
	}
	counts, err := s.storedCounts(ctx, id)
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
	counts, err := s.storedCounts(ctx, ids...)
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
	results, active := b.liveResults(id)
	if active {
		return bettertest.Failing(results), nil
	}
	return b.store.failingCases(ctx, id)
}
