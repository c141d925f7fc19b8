package boss_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bettertest/bettertest"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

// BenchmarkArtifactDownload measures the download of a 500 MiB artifact
// (quick mode: 8 MiB) through the boss, a file and a directory (whose
// archive the boss rewrites as it streams), against the same archive
// straight from the worker, taking turns, best of 3 each: MB/s and their
// ratio (target ≥ 0.5: the boss adds a hop and copies in user space, where
// the worker sends its file with sendfile), and the boss's peak RSS growth
// over its RSS before the downloads (target < 32 MiB: it streams, it holds
// no artifact).
func BenchmarkArtifactDownload(b *testing.B) {
	size := scale(500<<20, 8<<20)
	dir := b.TempDir()
	code := fmt.Sprintf(`import bettertest as bt
p = bt.pipeline("big")
with p.stage("build") as s:
    s.build("make", image="bettertest/base:bookworm", command="head -c %d /dev/urandom > /file && mkdir /dir && cp /file /dir/data",
            outputs=["/file", "/dir"])
`, size)
	worker := wt.Start(b, bin, wt.Options{})
	boss := wt.StartBoss(b, bin, wt.BossOptions{Pipedefs: []string{pipedef(b, dir, "big", code)}, Workers: []*wt.Worker{worker}})
	status, body := boss.Do(b, http.MethodPost, "/api/pipelines/big/runs", nil)
	if status != http.StatusCreated {
		b.Fatalf("trigger: %d %s", status, body)
	}
	boss.WaitLog(b, `msg="run ended"`, 1) // its end, from the boss's log
	var run bettertest.Run
	boss.JSON(b, "/api/runs/1", &run)
	if run.Status != bettertest.StatusPassed {
		b.Fatalf("the build: %+v\n%s", run, boss.Stderr())
	}
	// get reads a URL to its end and says how long it took.
	get := func(url, token string) time.Duration {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			b.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK || n < int64(size) {
			b.Fatalf("GET %s: %d, %d bytes, %v", url, resp.StatusCode, n, err)
		}
		return time.Since(start)
	}
	idle := rss(b, boss.Pid(), "VmRSS:")
	for range b.N {
		for _, a := range run.Stages[0].Tasks[0].Artifacts {
			viaBoss, direct := time.Duration(1<<62), time.Duration(1<<62)
			for range 3 {
				viaBoss = min(viaBoss, get(boss.URL+bettertest.ArtifactPath(run.ID, a.ID), ""))
				direct = min(direct, get(worker.URL+"/artifacts/"+strings.TrimPrefix(a.ID, "sha256:"), worker.Token))
			}
			mbs := func(d time.Duration) float64 { return float64(size) / 1e6 / d.Seconds() }
			ratio := mbs(viaBoss) / mbs(direct)
			b.ReportMetric(ratio, "ratio-"+strings.TrimPrefix(a.Path, "/"))
			b.Logf("%s (%d MiB): %.0f MB/s through the boss against %.0f MB/s from the worker: %.2fx (target >= 0.5)",
				a.Path, size>>20, mbs(viaBoss), mbs(direct), ratio)
		}
	}
	growth := float64(rss(b, boss.Pid(), "VmHWM:")-idle) / 1024
	b.ReportMetric(growth, "MiB-growth")
	b.Logf("the boss's RSS: %.1f MiB before the downloads, peak growth %.1f MiB (target < 32 MiB)", float64(idle)/1024, growth)
}
