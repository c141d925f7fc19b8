package agent_test

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bettertest/bettertest"
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

// BenchmarkHealthUnderAttack is /health's p99 on a worker while a fork bomb
// and a memory hog run in two of its three slots, against the same worker
// idle just before (target: at most 2x).
func BenchmarkHealthUnderAttack(b *testing.B) {
	requests := 400
	if testing.Short() {
		requests = 40
	}
	w := wt.Start(b, bin, wt.Options{MaxParallel: 3, Args: []string{"--memory", "256MiB"}})
	p99 := func() time.Duration {
		var ds []time.Duration
		for range requests {
			start := time.Now()
			resp, err := w.Do(context.Background(), http.MethodGet, "/health", nil)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("/health: %s", resp.Status)
			}
			ds = append(ds, time.Since(start))
		}
		slices.Sort(ds)
		return ds[len(ds)*99/100]
	}
	for range b.N {
		idle := p99()
		bomb := run(`bomb() { bomb | bomb & }; bomb; sleep 600`)
		bomb.TimeoutS = 600
		hog := run(`while :; do head -c 1000000000 /dev/zero | tail -c 1000000000 > /dev/null; done`)
		hog.TimeoutS = 600
		streams := []*wt.Stream{w.Run(b, bomb), w.Run(b, hog)}
		for _, s := range streams {
			if ev := s.Next(b); ev.Name != "started" {
				b.Fatalf("first event %+v", ev)
			}
		}
		loaded := p99()
		for _, s := range streams {
			s.Close() // the worker kills them
		}
		b.ReportMetric(float64(loaded)/float64(idle), "ratio")
		b.Logf("/health p99 %v with a fork bomb and a memory hog running against %v idle: %.2fx (target <= 2x)",
			loaded.Round(10*time.Microsecond), idle.Round(10*time.Microsecond), float64(loaded)/float64(idle))
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkEchoLimits is the round trip of `echo hi` (as in
// BenchmarkEchoRoundTrip) on a worker with its default limits against one
// with every limit off, alternating (target: at most 1.1x).
func BenchmarkEchoLimits(b *testing.B) {
	on := wt.Start(b, bin, wt.Options{})
	off := wt.Start(b, bin, wt.Options{Args: []string{"--pids-limit", "0", "--memory", "0", "--tmp-size", "0"}})
	echo := func(w *wt.Worker) time.Duration {
		start := time.Now()
		if evs := w.Run(b, run("echo hi")).All(b); len(evs) != 3 || evs[2].Name != "exit" {
			b.Fatalf("unexpected events %v", evs)
		}
		return time.Since(start)
	}
	echo(on) // warm both
	echo(off)
	var withLimits, without time.Duration
	b.ResetTimer()
	for range b.N {
		withLimits += echo(on)
		without += echo(off)
	}
	b.ReportMetric(float64(withLimits)/float64(without), "ratio")
	b.Logf("echo round trip with limits %v, without %v (mean of %d): %.2fx (target <= 1.1x)",
		(withLimits / time.Duration(b.N)).Round(100*time.Microsecond), (without / time.Duration(b.N)).Round(100*time.Microsecond), b.N,
		float64(withLimits)/float64(without))
	b.ReportMetric(0, "ns/op")
}

// BenchmarkServiceReadyToFirstOutput is the time from a service's
// service_ready event to the run's first output line (target < 1 s), against
// the time the service took to become ready, in the same runs.
func BenchmarkServiceReadyToFirstOutput(b *testing.B) {
	w := wt.Start(b, bin, wt.Options{})
	req := run("echo first")
	req.Services = map[string]bettertest.Service{"db": listener}
	var toOutput, toReady time.Duration
	b.ResetTimer()
	for range b.N {
		s := w.Run(b, req)
		var ready time.Time
		t0 := time.Now()
		for {
			ev := s.Next(b)
			if ev.Name == bettertest.EventServiceReady {
				ready = time.Now()
				toReady += ready.Sub(t0)
			}
			if ev.Name == bettertest.EventOutput && !strings.HasPrefix(ev.Data, `{"stream":"stdout","text":"[db]`) {
				toOutput += time.Since(ready)
				break
			}
		}
		s.All(b)
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(ms(toOutput), "ready-to-output-ms/op")
	b.ReportMetric(ms(toReady), "request-to-ready-ms/op")
	b.ReportMetric(0, "ns/op")
}
