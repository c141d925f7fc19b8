package boss_test

import (
	"fmt"
	"net/http"
	"os/exec"
	"testing"

	"github.com/bettertest/bettertest"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

// mountSmall mounts a tmpfs of size on a new directory, a disk that fills
// up for real; it is unmounted when the test ends, after what the test
// started there has stopped.
func mountSmall(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a %s tmpfs (the tests run as root): %v\n%s", size, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
		}
	})
	return dir
}

// A run whose output (32 MiB) fills the boss's disk (24 MiB) ends, failed,
// saying where the disk is full; it never reads as running. New runs are
// refused with 507 until there is room, and then the ended run's end is
// written before them.
func TestAFullDiskEndsTheRunAndRefusesNewOnes(t *testing.T) {
	wt.Integration(t) // before the mount: it needs root
	t.Parallel()
	dataDir := mountSmall(t, "24m")
	worker := wt.Start(t, bin, wt.Options{})
	opts := wt.BossOptions{Workers: []*wt.Worker{worker}, DataDir: dataDir, Pipedefs: []string{pipedef(t, t.TempDir(), "flood", `import bettertest as bt
p = bt.pipeline("flood")
with p.stage("main") as s:
    s.test("flood", image="bettertest/base:bookworm", command="yes xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx | head -c 33554432")
`)}}
	boss := wt.StartBoss(t, bin, opts)
	w := watch(t, boss, "/api/events")
	full := fmt.Sprintf("disk full at %s: free space there, then try again", dataDir)

	first := trigger(t, boss, "flood")
	w.until(t, "the run failed", func() bool { return w.status(first.ID) == bettertest.StatusFailed })
	var run bettertest.Run
	boss.JSON(t, fmt.Sprintf("/api/runs/%d", first.ID), &run)
	if run.Status != bettertest.StatusFailed || run.Error != full {
		t.Fatalf("the run that filled the disk: %s %q, want failed %q", run.Status, run.Error, full)
	}
	status, body := boss.Do(t, http.MethodPost, "/api/pipelines/flood/runs", nil)
	if want := fmt.Sprintf(`{"error":%q}`+"\n", full); status != http.StatusInsufficientStorage || string(body) != want {
		t.Fatalf("a trigger on a full disk: %d %s, want 507 %s", status, body, want)
	}

	if out, err := exec.Command("mount", "-o", "remount,size=128m", dataDir).CombinedOutput(); err != nil {
		t.Fatalf("make room: %v\n%s", err, out)
	}
	second := trigger(t, boss, "flood")
	w.until(t, "the next run passed", func() bool { return w.status(second.ID) == bettertest.StatusPassed })
	if err := boss.Stop(); err != nil {
		t.Fatal(err)
	}
	again := wt.StartBoss(t, bin, opts)
	var runs []bettertest.Run
	again.JSON(t, "/api/runs", &runs)
	got := fmt.Sprint(len(runs))
	for _, r := range runs {
		got += fmt.Sprintf(" | %d %s %s", r.ID, r.Status, r.Error)
	}
	if want := fmt.Sprintf("2 | %d passed  | %d failed %s", second.ID, first.ID, full); got != want {
		t.Fatalf("the history after a restart: %s\nwant %s", got, want)
	}
}
