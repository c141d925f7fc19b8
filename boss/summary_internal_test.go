package boss

import (
	"context"
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
