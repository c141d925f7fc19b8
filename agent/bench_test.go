package agent_test

import (
	"os/exec"
	"testing"
	"time"

	wt "github.com/bettertest/bettertest/internal/workertest"
)

// BenchmarkEchoRoundTrip measures `echo hi` through the worker API against
// `docker run --rm IMAGE echo hi`, alternating the two so that both see the
// same machine, and reports their ratio (target: at most 0.8).
func BenchmarkEchoRoundTrip(b *testing.B) {
	w := wt.Start(b, bin, wt.Options{})
	viaWorker := func() {
		evs := w.Run(b, run("echo hi")).All(b)
		if len(evs) != 3 || evs[2].Name != "exit" {
			b.Fatalf("unexpected events %v", evs)
		}
	}
	viaCLI := func() {
		if out, err := exec.Command("docker", "run", "--rm", wt.Image, "echo", "hi").CombinedOutput(); err != nil || string(out) != "hi\n" {
			b.Fatalf("docker run: %v %q", err, out)
		}
	}
	viaWorker() // warm both paths once
	viaCLI()
	var worker, cli time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		viaWorker()
		t1 := time.Now()
		viaCLI()
		worker += t1.Sub(t0)
		cli += time.Since(t1)
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(ms(worker), "worker-ms/op")
	b.ReportMetric(ms(cli), "docker-cli-ms/op")
	b.ReportMetric(float64(worker)/float64(cli), "ratio")
	b.ReportMetric(0, "ns/op")
}
