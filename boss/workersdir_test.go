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

// writeRecord saves a worker as enrollment does: its token, then its record
// by a rename.
func writeRecord(t *testing.T, dir, name string, w *wt.Worker) {
	t.Helper()
	token, err := os.ReadFile(w.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".token"), token, 0o600); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "."+name+".json.tmp1")
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("{\n  \"name\": %q,\n  \"url\": %q\n}\n", name, w.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name+".json")); err != nil {
		t.Fatal(err)
	}
}

// workers is GET /api/workers without the fields that vary from run to run.
func workers(t *testing.T, b *wt.Boss) []bettertest.WorkerInfo {
	t.Helper()
	var out []bettertest.WorkerInfo
	b.JSON(t, "/api/workers", &out)
	for i := range out {
		out[i].Version, out[i].Docker, out[i].ChangedMS = "", "", 0
	}
	return out
}

// A running boss gains a worker when its record appears in --workers-dir,
// and loses it when the record is removed, once the run it has ends.
func TestBossPicksUpWorkersFromTheWorkersDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	worker := wt.Start(t, bin, wt.Options{MaxParallel: 1})
	g := gate(t, dir, "w9")
	boss := wt.StartBoss(t, bin, wt.BossOptions{Pipedefs: []string{pipedef(t, dir, "gated", gated)}})
	w := watch(t, boss, "/api/events")
	if got := workers(t, boss); len(got) != 0 {
		t.Fatalf("workers before any record: %+v", got)
	}

	writeRecord(t, boss.WorkersDir, "w9", worker)
	w.until(t, "w9 up", func() bool { return w.workers["w9"].Up })
	up := bettertest.WorkerInfo{Name: "w9", URL: worker.URL, Up: true, Capacity: 1}
	if got := workers(t, boss); !reflect.DeepEqual(got, []bettertest.WorkerInfo{up}) {
		t.Fatalf("workers after the record: %+v", got)
	}

	r1 := trigger(t, boss, "gated")
	w.until(t, "run 1 on w9", func() bool { return w.status(r1.ID) == "running" && w.runs[r1.ID].Worker == "w9" })

	// The record goes: the running run goes on, a new one waits.
	if err := os.Remove(filepath.Join(boss.WorkersDir, "w9.json")); err != nil {
		t.Fatal(err)
	}
	const leaving = "its record was removed: it takes no new runs, and leaves once its runs end"
	w.until(t, "w9 leaving", func() bool { return w.workers["w9"].Error == leaving })
	r2 := trigger(t, boss, "gated")
	if r2.Status != bettertest.StatusQueued {
		t.Fatalf("a run while the only worker leaves: %+v", r2)
	}
	if got, want := workers(t, boss), []bettertest.WorkerInfo{{Name: "w9", URL: worker.URL, Up: true, Capacity: 1, Assigned: 1, Running: 0, Error: leaving}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("workers while w9 leaves:\n got %+v\nwant %+v", got, want)
	}

	open(t, g, 0)
	w.until(t, "run 1 passed and w9 removed", func() bool { return w.status(r1.ID) == bettertest.StatusPassed && w.workers["w9"].Removed })
	if got := workers(t, boss); len(got) != 0 {
		t.Fatalf("workers after w9 left: %+v", got)
	}
	if w.status(r2.ID) != bettertest.StatusQueued {
		t.Fatalf("run 2 is %s with no worker", w.status(r2.ID))
	}

	// Enrolled again: it comes back and takes the waiting run.
	writeRecord(t, boss.WorkersDir, "w9", worker)
	w.until(t, "run 2 on w9", func() bool { return w.status(r2.ID) == "running" && w.runs[r2.ID].Worker == "w9" })
	open(t, g, 0)
	w.until(t, "run 2 passed", func() bool { return w.status(r2.ID) == bettertest.StatusPassed })

	// Enrolled again elsewhere (another URL and token): the same worker, reached there.
	moved := wt.Start(t, bin, wt.Options{MaxParallel: 2})
	writeRecord(t, boss.WorkersDir, "w9", moved)
	w.until(t, "w9 up at its new URL", func() bool { return w.workers["w9"].URL == moved.URL && w.workers["w9"].Capacity == 2 })
	if got := workers(t, boss); !reflect.DeepEqual(got, []bettertest.WorkerInfo{{Name: "w9", URL: moved.URL, Up: true, Capacity: 2}}) {
		t.Fatalf("workers after w9 moved: %+v", got)
	}
}
