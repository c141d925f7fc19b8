package boss_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bettertest/bettertest"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

const hello = `import bettertest as bt
p = bt.pipeline("hello")
with p.stage("main") as s:
    s.test("hi", image="bettertest/base:bookworm", command="echo hi")
`

// BenchmarkTriggerToFirstOutput measures the time from POST
// /api/pipelines/NAME/runs to the first line of the first task's output on
// /api/events, against the same pipedef run by hand from a shell (its start
// to its first output line), the way a laptop runs it.
func BenchmarkTriggerToFirstOutput(b *testing.B) {
	dir := b.TempDir()
	worker := wt.Start(b, bin, wt.Options{})
	path := pipedef(b, dir, "hello", hello)
	boss := wt.StartBoss(b, bin, wt.BossOptions{Pipedefs: []string{path}, Workers: []*wt.Worker{worker}})
	events := boss.Events(b, "/api/events")
	var viaBoss, direct []time.Duration
	for range b.N {
		start := time.Now()
		status, body := boss.Do(b, "POST", "/api/pipelines/hello/runs", nil)
		if status != 201 {
			b.Fatalf("trigger: %d %s", status, body)
		}
		var first time.Duration
		for {
			ev := events.Next(b)
			if ev.Name == bettertest.BossEventOutput && first == 0 {
				first = time.Since(start)
			}
			if ev.Name == bettertest.BossEventRun && strings.Contains(ev.Data, `"status":"passed"`) {
				break
			}
		}
		viaBoss = append(viaBoss, first)

		// The same pipedef, by hand: python3 with --report jsonl, to its first task_output line.
		cmd := exec.Command("python3", "-u", path, "--worker", worker.URL, "--token-file", worker.TokenFile, "--report", "jsonl")
		cmd.Env = append(os.Environ(), "PYTHONPATH="+filepath.Join(boss.DataDir, "python"))
		out, _ := cmd.StdoutPipe()
		start = time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		var d time.Duration
		for sc.Scan() {
			if d == 0 && strings.Contains(sc.Text(), `"event":"task_output"`) {
				d = time.Since(start)
			}
		}
		if err := cmd.Wait(); err != nil {
			b.Fatal(err)
		}
		direct = append(direct, d)
	}
	mb, md := median(viaBoss), median(direct)
	b.ReportMetric(float64(mb.Milliseconds()), "ms-boss")
	b.ReportMetric(float64(md.Milliseconds()), "ms-by-hand")
	b.ReportMetric(float64(mb)/float64(md), "ratio")
	b.Logf("trigger -> first output line: %v median via the boss (first %v) against %v by hand from a shell: %.2fx (target < 1 s)",
		mb, viaBoss[0], md, float64(mb)/float64(md))
}

// scale is full in make bench and quick in its quick mode (go test -short,
// as make bench-smoke runs every benchmark): the same path on a small size,
// so that a benchmark that no longer runs fails CI.
func scale(full, quick int) int {
	if testing.Short() {
		return quick
	}
	return full
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkEventFanOut has 100 clients on /api/events while a task writes
// 2000 timestamped lines as fast as it can, against 1 client as the peer
// (quick mode: 10 clients, 200 lines).
// Each line's delivery latency is from the moment the container wrote it to
// the moment each client read it: the whole path through the worker, the
// pipedef and the boss. The boss's peak RSS is read from /proc.
func BenchmarkEventFanOut(b *testing.B) {
	for _, n := range []int{1, scale(100, 10)} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) { fanOut(b, n) })
	}
}

func fanOut(b *testing.B, subscribers int) {
	lines := scale(2000, 200)
	dir := b.TempDir()
	worker := wt.Start(b, bin, wt.Options{})
	path := pipedef(b, dir, "busy", fmt.Sprintf(`import bettertest as bt
p = bt.pipeline("busy")
with p.stage("main") as s:
    s.test("lines", image="bettertest/base:bookworm", command="for i in $(seq %d); do date +%%s%%N; done")
`, lines))
	boss := wt.StartBoss(b, bin, wt.BossOptions{Pipedefs: []string{path}, Workers: []*wt.Worker{worker}})
	for range b.N {
		var mu sync.Mutex
		var latencies []time.Duration
		var wg sync.WaitGroup
		streams := make([]*wt.Stream, subscribers)
		for i := range streams {
			streams[i] = boss.Events(b, "/api/events")
		}
		for _, s := range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []time.Duration
				for {
					ev, err := s.Read()
					if err != nil {
						return
					}
					now := time.Now()
					if ev.Name == bettertest.BossEventOutput {
						// The clients share the machine with the boss: they find the
						// timestamps without decoding the JSON ("1795...\n" lines).
						for _, l := range strings.Split(ev.Data, `\n`) {
							if i := strings.LastIndexByte(l, '"'); i >= 0 {
								l = l[i+1:]
							}
							if ns, err := strconv.ParseInt(l, 10, 64); err == nil && len(l) == 19 {
								mine = append(mine, now.Sub(time.Unix(0, ns)))
							}
						}
					}
					if ev.Name == bettertest.BossEventRun && strings.Contains(ev.Data, `"status":"passed"`) {
						break
					}
				}
				mu.Lock()
				latencies = append(latencies, mine...)
				mu.Unlock()
			}()
		}
		status, body := boss.Do(b, "POST", "/api/pipelines/busy/runs", nil)
		if status != 201 {
			b.Fatalf("trigger: %d %s", status, body)
		}
		wg.Wait()
		if len(latencies) != subscribers*lines {
			b.Fatalf("got %d line deliveries, want %d", len(latencies), subscribers*lines)
		}
		slices.Sort(latencies)
		p50, p99 := latencies[len(latencies)/2], latencies[len(latencies)*99/100]
		rss := peakRSS(b, boss.Pid())
		b.ReportMetric(float64(p99.Microseconds())/1000, "ms-p99")
		b.ReportMetric(float64(rss)/1024, "MiB-rss")
		b.Logf("%d subscribers, %d lines: delivery latency p50 %v, p99 %v (target p99 < 50 ms); boss peak RSS %.1f MiB",
			subscribers, lines, p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), float64(rss)/1024)
		for _, s := range streams {
			s.Close()
		}
	}
}

// peakRSS is a process's VmHWM in KiB.
func peakRSS(b *testing.B, pid int) int { return rss(b, pid, "VmHWM:") }

// rss is a line of a process's /proc/PID/status in KiB: "VmRSS:" (now) or
// "VmHWM:" (its peak).
func rss(b *testing.B, pid int, field string) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// BenchmarkBossMemoryUnderOutput measures the boss's peak RSS growth over
// its idle RSS (target < 64 MiB each) while one task writes 1 GiB of output
// as fast as it can, and while a pipedef writes 200 MiB without a newline
// (quick mode: 32 MiB and 16 MiB). No one watches: this is what a run costs
// the boss by itself, whatever it writes.
func BenchmarkBossMemoryUnderOutput(b *testing.B) {
	taskBytes, lineBytes := scale(1<<30, 32<<20), scale(200<<20, 16<<20)
	b.Run(fmt.Sprintf("task=%dMiB", taskBytes>>20), func(b *testing.B) {
		// 100-byte lines: "x" * 99 and a newline.
		bossMemory(b, fmt.Sprintf(`import bettertest as bt
p = bt.pipeline("flood")
with p.stage("main") as s:
    s.test("flood", image="bettertest/base:bookworm", command="yes %s | head -c %d")
`, strings.Repeat("x", 99), taskBytes), taskBytes)
	})
	b.Run(fmt.Sprintf("pipedef-line=%dMiB", lineBytes>>20), func(b *testing.B) {
		bossMemory(b, fmt.Sprintf(`import sys
piece = "x" * (1 << 20)
for _ in range(%d):
    sys.stdout.write(piece)
sys.stdout.write("\n")
`, lineBytes>>20), lineBytes)
	})
}

func bossMemory(b *testing.B, code string, size int) {
	dir := b.TempDir()
	worker := wt.Start(b, bin, wt.Options{})
	boss := wt.StartBoss(b, bin, wt.BossOptions{Pipedefs: []string{pipedef(b, dir, "flood", code)}, Workers: []*wt.Worker{worker}})
	for i := range b.N {
		idle := rss(b, boss.Pid(), "VmRSS:")
		start := time.Now()
		status, body := boss.Do(b, "POST", "/api/pipelines/flood/runs", nil)
		if status != 201 {
			b.Fatalf("trigger: %d %s", status, body)
		}
		// Its end, from the boss's log: an event stream would be a watcher.
		boss.WaitLog(b, `msg="run ended"`, i+1)
		took := time.Since(start)
		if got := strings.Count(boss.Stderr(), "status=passed exit=0"); got != i+1 {
			b.Fatalf("the run did not pass:\n%s", boss.Stderr())
		}
		peak := rss(b, boss.Pid(), "VmHWM:")
		growth := float64(peak-idle) / 1024
		b.ReportMetric(growth, "MiB-growth")
		b.Logf("%d MiB of output in %v (%.0f MiB/s): boss RSS idle %.1f MiB, peak %.1f MiB: growth %.1f MiB = %.2fx idle (target growth < 64 MiB)",
			size>>20, took.Round(time.Millisecond), float64(size>>20)/took.Seconds(), float64(idle)/1024, float64(peak)/1024, growth, growth*1024/float64(idle))
	}
}
