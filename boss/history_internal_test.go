package boss

import (
	"bytes"
	"context"
	"encoding/json"
	"iter"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bettertest/bettertest"
)

// TestAnOlderHistoryOpens opens a copy of testdata/history/history.db, the
// history an earlier boss left (see testdata/history/README.md), twice, and
// reads from it what that boss answered about it over its API, byte for byte.
func TestAnOlderHistoryOpens(t *testing.T) {
	dir := olderHistory(t)
	ctx := context.Background()
	for range 2 { // the second time, nothing is left to upgrade
		s, unfinished, err := openStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(unfinished) != 0 {
			t.Errorf("unfinished runs %v in a history whose runs all ended", unfinished)
		}
		reads := map[string]func() (any, error){ // by the file in testdata/history/api that holds the boss's answer
			"runs":                     func() (any, error) { return s.runs(ctx, "", 50) },        // GET /api/runs
			"runs-of-flaky":            func() (any, error) { return s.runs(ctx, "flaky", 50) },   // ?pipeline=flaky
			"runs-of-pipeline-limit-1": func() (any, error) { return s.runs(ctx, "pipeline", 1) }, // ?pipeline=pipeline&limit=1
			"run-1":                    func() (any, error) { return s.run(ctx, 1) },              // GET /api/runs/1
			"run-3":                    func() (any, error) { return s.run(ctx, 3) },
			"run-6":                    func() (any, error) { return s.run(ctx, 6) },
			"tests-4":                  func() (any, error) { return s.cases(ctx, 4, "") },                            // GET /api/runs/4/tests
			"tests-5-of-unit":          func() (any, error) { return s.cases(ctx, 5, "unit") },                        // ?task=unit
			"log-1-runs":               func() (any, error) { return collect(s.output(ctx, 1, "runs", math.MaxInt)) }, // GET /api/runs/1/tasks/runs/log
			"log-3-multiplies":         func() (any, error) { return collect(s.output(ctx, 3, "multiplies", math.MaxInt)) },
			"log-6-sleeps":             func() (any, error) { return collect(s.output(ctx, 6, "sleeps", math.MaxInt)) },
			"log-3":                    func() (any, error) { return collect(s.output(ctx, 3, "", math.MaxInt)) }, // GET /api/runs/3/log
		}
		files, err := filepath.Glob("testdata/history/api/*.json")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, f := range files {
			names = append(names, strings.TrimSuffix(filepath.Base(f), ".json"))
		}
		slices.Sort(names)
		if want := slices.Sorted(maps.Keys(reads)); !slices.Equal(names, want) {
			t.Fatalf("testdata/history/api holds %v, the test reads %v", names, want)
		}
		for _, name := range names {
			want, err := os.ReadFile(filepath.Join("testdata/history/api", name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			v, err := reads[name]()
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			var got bytes.Buffer
			if err := json.NewEncoder(&got).Encode(v); err != nil {
				t.Fatal(err)
			}
			if got.String() != string(want) {
				t.Errorf("%s:\n got %s\nwant %s", name, got.Bytes(), want)
			}
		}
		// The runs that made its artifacts are found, though it kept no list of them.
		const out = "sha256:241de8cd272ae53dba48fbd87d20a3ad4f28b62dbaa95c238a5d80119ebdd89a"
		if run, err := s.builtBy(ctx, out); run != 1 || err != nil {
			t.Errorf("the run that made %s: %d %v, want 1", out, run, err)
		}
		if err := s.close(); err != nil {
			t.Fatal(err)
		}
	}
}

// collect is every chunk of output, as GET .../log answers them.
func collect(chunks iter.Seq2[bettertest.Chunk, error]) ([]bettertest.Chunk, error) {
	out := []bettertest.Chunk{}
	for c, err := range chunks {
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// olderHistory is a data directory holding a copy of testdata/history/history.db.
func olderHistory(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	db, err := os.ReadFile("testdata/history/history.db")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "history.db"), db, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}
