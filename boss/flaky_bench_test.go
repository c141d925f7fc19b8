package boss_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bettertest/bettertest"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

// suiteBench is a pipeline whose one test task reports cases test cases in
// JUnit XML. Every 100th case fails in every other run (which run this is
// comes from a counter file beside the pipedef), so cases/100 tests flip.
func suiteBench(cases int) string {
	return strings.Replace(`import os
import bettertest as bt
counter = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs")
n = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
open(counter, "w").write(str(n))
p = bt.pipeline("suite")
with p.stage("test") as s:
    s.test("unit", image="bettertest/base:bookworm", results="/results/junit.xml", command=(
        "mkdir -p /results && seq CASES | awk -v r=%d 'BEGIN { print \"<testsuite name=\\\"unit\\\">\" } "
        "{ printf \"<testcase classname=\\\"pkg\\\" name=\\\"T%%05d\\\" time=\\\"0.001\\\">\", $1; "
        "if ($1 %% 100 == 0 && (r + $1 / 100) %% 2 == 0) printf \"<failure message=\\\"boom\\\"/>\"; print \"</testcase>\" } "
        "END { print \"</testsuite>\" }' > /results/junit.xml" % n))
`, "CASES", strconv.Itoa(cases), 1)
}

// BenchmarkFlakyPage100kResults runs suiteBench 10 times, which records
// 100,000 test-case results (quick mode: 10 runs of 1,000 cases; 10 runs are the
// fewest the flip-rate rule judges), and then measures the flaky page (target: the
// whole answer in under 50 ms) and the API's flaky list against GET
// /api/workers, the server's floor. It also reports how long the boss took
// to judge a run's 10,000 tests after the run ended.
func BenchmarkFlakyPage100kResults(b *testing.B) {
	runs, cases, requests := 10, scale(10_000, 1_000), scale(50, 10) // 10 runs: the fewest the flip-rate rule judges
	flaky := cases / 100
	worker := wt.Start(b, bin, wt.Options{})
	dir := b.TempDir()
	path := pipedef(b, dir, "suite", suiteBench(cases))
	// The pipedef counts its runs in a file beside it, as the sandbox's user.
	if err := os.Chmod(dir, 0o777); err != nil {
		b.Fatal(err)
	}
	boss := wt.StartBoss(b, bin, wt.BossOptions{Pipedefs: []string{path}, Workers: []*wt.Worker{worker}})
	var judging []time.Duration
	for range runs {
		// The verdicts come after the run's end: its pipeline's flaky event says they are in.
		events := boss.Events(b, "/api/events")
		judged := make(chan time.Time, 1)
		go func() {
			defer close(judged)
			for {
				ev, err := events.Read()
				if err != nil {
					return
				}
				if ev.Name == bettertest.BossEventFlaky {
					judged <- time.Now()
					return
				}
			}
		}()
		r := runToEnd(b, boss, "suite")
		at, ok := <-judged
		events.Close()
		if !ok {
			b.Fatalf("run #%d: the event stream ended before the verdicts on its tests", r.ID)
		}
		judging = append(judging, at.Sub(time.UnixMilli(r.FinishedMS)))
		if r.Status != bettertest.StatusFailed {
			b.Fatalf("run #%d %s, want failed: %d of its tests fail", r.ID, r.Status, flaky)
		}
	}
	var results []bettertest.TestResult
	if err := json.Unmarshal(get(b, boss, fmt.Sprintf("/api/runs/%d/tests", runs)), &results); err != nil || len(results) != cases {
		b.Fatalf("the last run has %d test results (%v), want %d", len(results), err, cases)
	}
	var listed []bettertest.FlakyTest
	if err := json.Unmarshal(get(b, boss, "/api/flaky"), &listed); err != nil || len(listed) != flaky {
		b.Fatalf("%d flaky tests (%v), want %d", len(listed), err, flaky)
	}
	measure := func(path string) (p50, p99 float64) {
		return sample(requests, func() time.Duration { return wholeAnswer(b, boss, path) })
	}
	target := func(path string) string {
		if path == "/flaky" {
			return " (target < 50 ms)"
		}
		return ""
	}
	for range b.N {
		j50, j99 := percentiles(judging)
		b.ReportMetric(j50, "ms-p50-judge-10k-tests")
		b.Logf("%-20s p50 %7.2f ms, max %7.2f ms: judging a run's %d tests after it ended", "verdicts", j50, j99, cases)
		floor50, floor99 := measure("/api/workers")
		b.Logf("%-20s p50 %7.2f ms, p99 %7.2f ms (the floor)", "GET /api/workers", floor50, floor99)
		for _, path := range []string{"/flaky", "/api/flaky", fmt.Sprintf("/api/runs/%d/tests", runs)} {
			p50, p99 := measure(path)
			b.ReportMetric(p50, "ms-p50-"+path)
			b.Logf("%-20s p50 %7.2f ms, p99 %7.2f ms: %5.1fx the floor's p50, with %d results and %d flaky tests%s",
				"GET "+path, p50, p99, p50/floor50, runs*cases, flaky, target(path))
		}
	}
}

// wholeAnswer is the time a GET of path takes, to the end of its 200 answer,
// on a kept-alive connection.
func wholeAnswer(b *testing.B, boss *wt.Boss, path string) time.Duration {
	start := time.Now()
	resp, err := http.Get(boss.URL + path)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %s %v", path, resp.Status, err)
	}
	return time.Since(start)
}
