package boss_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/bettertest/bettertest"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

// sharded runs one suite as two shards, and swaps the shards' reports (as
// the real tools wrote them, python/tests/fixtures/results) between runs: a
// case moves from unit-1 to unit-2.
const sharded = `import sys
import bettertest as bt
run = int(sys.argv[sys.argv.index("--run-id") + 1])
reports = ["go-test-package-failures.json", "gotestsum-rerun.json"]
if run % 2 == 0:
    reports.reverse()
p = bt.pipeline("sharded")
with p.stage("test") as s:
    for i, report in enumerate(reports):
        s.test(f"unit-{i + 1}", image="bettertest/base:bookworm", command=f"cp /reports/{report} /r.json",
               inputs={"/reports": bt.local("reports")}, results="/r.json", suite="unit")
`

func TestShardsOfASuiteShareTheirCasesHistoryAndQuarantine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	realReports(t, dir, "go-test-package-failures.json", "gotestsum-rerun.json")
	worker := wt.Start(t, bin, wt.Options{})
	boss := wt.StartBoss(t, bin, wt.BossOptions{Pipedefs: []string{pipedef(t, dir, "sharded", sharded)}, Workers: []*wt.Worker{worker},
		Args: []string{"--quarantine", "sharded/unit"}})
	w := watch(t, boss, "/api/events")
	var got []string
	for i := 0; i < 2; i++ {
		r := trigger(t, boss, "sharded")
		w.until(t, fmt.Sprintf("run %d to end", r.ID), func() bool { return w.status(r.ID) == "passed" || w.status(r.ID) == "failed" })
		var results []bettertest.TestResult
		boss.JSON(t, fmt.Sprintf("/api/runs/%d/tests", r.ID), &results)
		for _, res := range results {
			if res.Case == "example.com/goshop/cart/TestTotal" {
				got = append(got, fmt.Sprintf("run %d %s: %s in %s %s", r.ID, w.status(r.ID), res.Test, res.Task, res.Status))
			}
		}
	}
	// The suite is quarantined: its failures, in either shard, do not fail the runs.
	want := []string{
		"run 1 passed: unit/example.com/goshop/cart/TestTotal in unit-1 failed",
		"run 2 passed: unit/example.com/goshop/cart/TestTotal in unit-2 failed",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the case across shards:\n%q\nwant\n%q", got, want)
	}
}

// rerun reports what gotestsum --rerun-fails wrote (python/tests/fixtures/results):
// TestSometimes failed, then passed on its rerun.
const rerun = `import bettertest as bt
p = bt.pipeline("rerun")
with p.stage("test") as s:
    s.test("unit", image="bettertest/base:bookworm", command="cp /reports/gotestsum-rerun.json /r.json",
           inputs={"/reports": bt.local("reports")}, results="/r.json")
`

func TestARerunInAReportIsFlakyInItsRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	realReports(t, dir, "gotestsum-rerun.json")
	worker := wt.Start(t, bin, wt.Options{})
	boss := wt.StartBoss(t, bin, wt.BossOptions{Pipedefs: []string{pipedef(t, dir, "rerun", rerun)}, Workers: []*wt.Worker{worker}})
	if r := runJudged(t, boss, "rerun"); r.Status != bettertest.StatusPassed {
		t.Fatalf("run #%d %s, want passed", r.ID, r.Status)
	}
	var flaky []bettertest.FlakyTest
	getJSON(t, boss, "/api/flaky?pipeline=rerun", &flaky)
	same(t, "after one run", flaky, []bettertest.FlakyTest{{
		Pipeline: "rerun", Test: "unit/example.com/goshop/flaky/TestSometimes", Flaky: true,
		Reasons:  []string{"failed, then passed when retried, in run #1"},
		Evidence: []bettertest.TestRun{{RunID: 1, Outcome: "flaky"}},
		History:  []bettertest.TestRun{{RunID: 1, Outcome: "flaky"}},
	}})
}

// realReports copies reports the real tools wrote (python/tests/fixtures/results)
// to dir/reports, beside a pipedef.
func realReports(t *testing.T, dir string, names ...string) {
	t.Helper()
	reports := filepath.Join(dir, "reports")
	if err := os.Mkdir(reports, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join("..", "python", "tests", "fixtures", "results", name))
		if err == nil {
			err = os.WriteFile(filepath.Join(reports, name), data, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
