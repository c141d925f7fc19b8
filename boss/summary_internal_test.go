package boss

import (
	"context"
	"database/sql"
	"reflect"
	"testing"

	"github.com/bettertest/bettertest"
)

// TestCountsOfAnOlderHistory counts the test cases of the runs of the older
// history (testdata/history): the store's counts are those that
// bettertest.CountCases makes of the same stored results, and the flaky
// run's case that failed and passed on its retry counts as flaky.
func TestCountsOfAnOlderHistory(t *testing.T) {
	s, _, err := openStore(olderHistory(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	ctx := context.Background()
	counts, err := s.caseCounts(ctx, 1, 2, 3, 4, 5, 6)
	if err != nil {
		t.Fatal(err)
	}
	for id := int64(1); id <= 6; id++ {
		results, err := s.cases(ctx, id, "")
		if err != nil {
			t.Fatal(err)
		}
		failing, err := s.failingCases(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if w, g := jsonOf(t, bettertest.Failing(results)), jsonOf(t, failing); w != g {
			t.Errorf("run %d: the store's failing cases %s, Failing's %s", id, g, w)
		}
		want, got := bettertest.CountCases(results), counts[id]
		if len(want) == 0 {
			want = nil
		}
		if w, g := jsonOf(t, want), jsonOf(t, got); w != g {
			t.Errorf("run %d: store counts %s, CountCases %s", id, g, w)
		}
	}
	got := jsonOf(t, counts)
	want := `{"1":{"lint":{"passed":1,"failed":0,"skipped":0,"flaky":0},"runs":{"passed":1,"failed":0,"skipped":0,"flaky":0}},` +
		`"2":{"lint":{"passed":1,"failed":0,"skipped":0,"flaky":0},"runs":{"passed":1,"failed":0,"skipped":0,"flaky":0}},` +
		`"3":{"adds":{"passed":1,"failed":0,"skipped":0,"flaky":0},"multiplies":{"passed":0,"failed":1,"skipped":0,"flaky":0}},` +
		`"4":{"unit":{"passed":1,"failed":0,"skipped":1,"flaky":1}},"5":{"unit":{"passed":1,"failed":0,"skipped":1,"flaky":1}}}`
	if got != want {
		t.Errorf("counts\n got %s\nwant %s", got, want)
	}
	runs, err := s.storedRuns(ctx, "flaky", 50)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := jsonOf(t, runs[0].Tests), `{"passed":1,"failed":0,"skipped":1,"flaky":1}`; got != want {
		t.Errorf("run 5's counts %s, want %s", got, want)
	}
	run, err := s.storedRun(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := jsonOf(t, []any{run.Tests, run.Stages[0].Tests, run.Stages[0].Tasks[0].Tests}),
		`[{"passed":1,"failed":0,"skipped":1,"flaky":1},{"passed":1,"failed":0,"skipped":1,"flaky":1},{"passed":1,"failed":0,"skipped":1,"flaky":1}]`; got != want {
		t.Errorf("run 5's counts %s, want %s", got, want)
	}
}

// A run of this boss has its counts read from its tasks' rows; one that
// was running when the boss stopped has them counted from its cases, which
// its tasks' rows may lag.
func TestStoredCounts(t *testing.T) {
	dir := t.TempDir()
	s, _, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	save := func(id int64, status string, c *bettertest.TestCounts) {
		t.Helper()
		err := s.w.do(func(tx *sql.Tx) error {
			if err := s.saveRun(tx, bettertest.Run{ID: id, Pipeline: "p", Status: status}); err != nil {
				return err
			}
			if err := s.saveStage(tx, id, 0, bettertest.Stage{Name: "test", Status: status}); err != nil {
				return err
			}
			if err := s.saveTask(tx, id, 0, bettertest.Task{Stage: "test", Name: "build", Kind: "build", Status: status}); err != nil {
				return err
			}
			return s.saveTask(tx, id, 1, bettertest.Task{Stage: "test", Name: "unit", Kind: "test", Status: status, Tests: c})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	results := []bettertest.TestResult{
		{Task: "unit", Case: "a", Test: "unit/a", Attempt: 1, Status: "failed"},
		{Task: "unit", Case: "b", Test: "unit/b", Attempt: 1, Status: "passed"},
		{Task: "unit", Case: "a", Test: "unit/a", Attempt: 2, Status: "passed"},
	}
	var ids []int64
	for range 2 {
		id, err := s.createRun(bettertest.Run{Pipeline: "p", Status: "queued", Trigger: "api", CreatedMS: 1})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.appendRun(id, "p", "", nil, nil, 0, results); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// The first ended with its counts saved (other than its few cases say:
	// they are what is read); the second's row lags its cases.
	save(ids[0], "failed", &bettertest.TestCounts{Passed: 5, Failed: 2})
	save(ids[1], "running", &bettertest.TestCounts{Failed: 1, Passed: 1})
	s.close()
	if s, _, err = openStore(dir); err != nil { // the second is interrupted
		t.Fatal(err)
	}
	defer s.close()
	counts, err := s.storedCounts(ctx, ids...)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := jsonOf(t, counts), `{"1":{"unit":{"passed":5,"failed":2,"skipped":0,"flaky":0}},"2":{"unit":{"passed":1,"failed":0,"skipped":0,"flaky":1}}}`; got != want {
		t.Errorf("counts %s, want %s", got, want)
	}
	run, err := s.storedRun(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if run.Stages[0].Tasks[0].Tests != nil || jsonOf(t, run.Tests) != `{"passed":5,"failed":2,"skipped":0,"flaky":0}` {
		t.Errorf("run %d: build %v, run %v", ids[0], run.Stages[0].Tasks[0].Tests, run.Tests)
	}
}

// What a task waited for is kept with it, and its time at work leaves it out.
func TestStoredWaits(t *testing.T) {
	s, _, err := openStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	id, err := s.createRun(bettertest.Run{Pipeline: "p", Status: "queued", Trigger: "api", CreatedMS: 1})
	if err != nil {
		t.Fatal(err)
	}
	task := bettertest.Task{Stage: "test", Name: "unit", Kind: "test", Status: "passed", StartedMS: 1000, FinishedMS: 5000,
		WaitedMS: 2500, WaitedFor: []string{"its image", "the cache pip"}, Artifacts: []bettertest.ArtifactEvent{}}
	err = s.w.do(func(tx *sql.Tx) error {
		return s.saveWhole(tx, bettertest.Run{ID: id, Pipeline: "p", Status: "passed", Stages: []bettertest.Stage{{Name: "test", Status: "passed", Tasks: []bettertest.Task{task}}}})
	})
	if err != nil {
		t.Fatal(err)
	}
	run, err := s.run(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	got := run.Stages[0].Tasks[0]
	if !reflect.DeepEqual(got, task) || got.WorkMS() != 1500 || got.WaitedForText() != "its image, the cache pip" {
		t.Errorf("read back %+v (work %d ms), want %+v", got, got.WorkMS(), task)
	}
}
