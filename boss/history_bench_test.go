package boss_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the boss's own SQLite driver

	"github.com/bettertest/bettertest"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

// historyPipelines are the pipelines of BenchmarkRunHistory, each with its
// share of the runs in twentieths (legacy: a pipeline the boss no longer has).
var historyPipelines = []struct {
	name  string
	share int
}{{"app", 9}, {"api", 5}, {"web", 3}, {"legacy", 1}, {"docs", 1}, {"e2e", 1}}

// historyPipeline is the pipeline of the history's run number id: the
// shares interleave, as runs of busy and quiet pipelines do.
func historyPipeline(id int) string {
	n := id % 20
	for _, p := range historyPipelines {
		if n < p.share {
			return p.name
		}
		n -= p.share
	}
	panic("the shares add up to 20")
}

// writeHistory writes runs ended runs straight into the history.db of
// dataDir, which a boss made and left, in one transaction, in the tables
// and columns the boss keeps them in: each run has two stages and three
// tasks. Making them by running them would take days.
func writeHistory(b *testing.B, dataDir string, runs int) {
	b.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir, "history.db")+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback()
	prepare := func(q string) *sql.Stmt {
		st, err := tx.Prepare(q)
		if err != nil {
			b.Fatal(err)
		}
		return st
	}
	run := prepare(`INSERT INTO runs (id, pipeline, status, trigger, worker, created_ms, started_ms, finished_ms, exit_code, error,
		commit_sha, ref, author, commit_url) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	stage := prepare(`INSERT INTO stages (run_id, idx, name, status, started_ms, finished_ms) VALUES (?, ?, ?, ?, ?, ?)`)
	task := prepare(`INSERT INTO tasks (run_id, idx, stage, name, kind, status, exit_code, cached, reason, error, started_ms, finished_ms,
		artifacts, attempts, flaky, quarantined) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	for id := 1; id <= runs; id++ {
		created := start + int64(id)*60_000
		status, code, errText := bettertest.StatusPassed, 0, ""
		if id%7 == 0 {
			status, code, errText = bettertest.StatusFailed, 1, "the pipedef exited with status 1: see its output"
		}
		sha := fmt.Sprintf("%040x", id*2654435761)
		if _, err := run.Exec(id, historyPipeline(id), status, "push", "w0", created, created+200, created+45_000, code, errText,
			sha, "refs/heads/main", "octocat", "https://github.com/o/app/commit/"+sha); err != nil {
			b.Fatal(err)
		}
		for i, name := range []string{"build", "test"} {
			if _, err := stage.Exec(id, i, name, status, created+200+int64(i)*20_000, created+20_000+int64(i)*25_000); err != nil {
				b.Fatal(err)
			}
		}
		for i, t := range []struct{ stage, name, kind, status string }{
			{"build", "compile", "build", bettertest.StatusPassed}, {"test", "unit", "test", status}, {"test", "lint", "test", bettertest.StatusPassed},
		} {
			if _, err := task.Exec(id, i, t.stage, t.name, t.kind, t.status, code*(i%2), i == 0 && id%2 == 0, "", "",
				created+300, created+44_000, "[]", 1, false, false); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRunHistory measures, on a history of 100,000 runs (quick mode:
// 5,000) written straight into the boss's history.db, the whole answer of
// the pipelines page and of GET /api/runs?pipeline=NAME for the busiest
// and the quietest pipeline, p50 and p99 over 200 requests each (quick
// mode: 20; target p99 < 20 ms), against GET /api/workers: the floor.
func BenchmarkRunHistory(b *testing.B) {
	runs, requests := scale(100_000, 5_000), scale(200, 20)
	dir := b.TempDir()
	opts := wt.BossOptions{DataDir: b.TempDir()}
	for _, p := range historyPipelines {
		if p.name != "legacy" {
			opts.Pipedefs = append(opts.Pipedefs, pipedef(b, dir, p.name, hello))
		}
	}
	// The boss makes its history, then leaves it to be filled.
	began := time.Now()
	if err := wt.StartBoss(b, bin, opts).Stop(); err != nil {
		b.Fatal(err)
	}
	b.Logf("the boss started and stopped on an empty history in %v", time.Since(began).Round(time.Millisecond))
	began = time.Now()
	writeHistory(b, opts.DataDir, runs)
	b.Logf("wrote %d runs into history.db in %v", runs, time.Since(began).Round(time.Millisecond))
	began = time.Now()
	boss := wt.StartBoss(b, bin, opts)
	b.Logf("the boss started on them in %v", time.Since(began).Round(time.Millisecond))

	var listed []bettertest.Run
	if err := json.Unmarshal(get(b, boss, "/api/runs?pipeline=e2e"), &listed); err != nil || len(listed) != 50 || listed[0].ID != int64(runs-1) {
		b.Fatalf("GET /api/runs?pipeline=e2e: %d runs (%v); want 50, the first #%d", len(listed), err, runs-1)
	}
	for range b.N {
		floor50, floor99 := sample(requests, func() time.Duration { return wholeAnswer(b, boss, "/api/workers") })
		b.Logf("%-32s p50 %6.2f ms, p99 %6.2f ms (the floor)", "GET /api/workers", floor50, floor99)
		for _, c := range []struct{ name, path string }{
			{"pipelines-page", "/"},
			{"runs-of-busiest", "/api/runs?pipeline=app"},
			{"runs-of-quietest", "/api/runs?pipeline=e2e"},
		} {
			p50, p99 := sample(requests, func() time.Duration { return wholeAnswer(b, boss, c.path) })
			b.ReportMetric(p99, "ms-p99-"+c.name)
			b.ReportMetric(p50/floor50, "x-floor-p50-"+c.name)
			b.Logf("%-32s p50 %6.2f ms, p99 %6.2f ms: %5.1fx the floor's p50, %5.1fx its p99, over %d runs (target p99 < 20 ms)",
				"GET "+c.path, p50, p99, p50/floor50, p99/floor99, runs)
		}
	}
}
