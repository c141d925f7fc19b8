package boss_test

import (
	"bufio"
	"bytes"
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
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			fleetLoad(b, load{runs: 1, workers: 1, clients: n, lines: scale(2000, 200)})
		})
	}
}

// BenchmarkFleetLoad has 20 runs at once over 10 workers (real worker
// processes, capacity 2 each), each run's task writing 500 timestamped lines
// as fast as it can, while 100 UI tabs and 100 /api/events clients follow,
// against 1 run on 1 worker with 1 client (quick mode: 4 runs, 2 workers,
// 10 tabs and clients, 50 lines). It reports the event p99 from container
// write to client read (target < 50 ms) and the boss's CPU time per output
// event, from /proc.
func BenchmarkFleetLoad(b *testing.B) {
	lines := scale(500, 50)
	b.Run("floor", func(b *testing.B) { fleetLoad(b, load{runs: 1, workers: 1, clients: 1, lines: lines}) })
	// The same runs with one client: what the machine's load alone does to
	// the latency, apart from the boss's fan-out to its watchers.
	b.Run("runs-only", func(b *testing.B) {
		fleetLoad(b, load{runs: scale(20, 4), workers: scale(10, 2), clients: 1, lines: lines})
	})
	b.Run("fleet", func(b *testing.B) {
		fleetLoad(b, load{runs: scale(20, 4), workers: scale(10, 2), clients: scale(100, 10), tabs: scale(100, 10), lines: lines})
	})
}

// load is what fleetLoad puts on a boss.
type load struct {
	runs, workers, clients, tabs, lines int
}

func fleetLoad(b *testing.B, l load) {
	dir := b.TempDir()
	workers := make([]*wt.Worker, l.workers)
	for i := range workers {
		workers[i] = wt.Start(b, bin, wt.Options{MaxParallel: 2})
	}
	path := pipedef(b, dir, "busy", fmt.Sprintf(`import bettertest as bt
p = bt.pipeline("busy")
with p.stage("main") as s:
    s.test("lines", image="bettertest/base:bookworm", command="for i in $(seq %d); do date +%%s%%N; done")
`, l.lines))
	boss := wt.StartBoss(b, bin, wt.BossOptions{Pipedefs: []string{path}, Workers: workers})
	ready := boss.Events(b, "/api/events")
	for up := 0; up < l.workers; {
		if ev := ready.Next(b); ev.Name == bettertest.BossEventWorker && strings.Contains(ev.Data, `"up":true`) {
			up++
		}
	}
	ready.Close()
	for range b.N {
		var mu sync.Mutex
		var latencies []time.Duration
		var wg sync.WaitGroup
		streams := make([]*wt.Stream, l.clients)
		for i := range streams {
			streams[i] = boss.Events(b, "/api/events")
		}
		tabs := make([]*wt.Stream, l.tabs)
		for i := range tabs {
			tabs[i] = boss.Events(b, "/ui/events?path=/")
			go func(s *wt.Stream) { // a tab reads what it is sent, as a browser does
				for {
					if _, err := s.Read(); err != nil {
						return
					}
				}
			}(tabs[i])
		}
		events := 0
		for ci, s := range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []time.Duration
				passed, seen := 0, 0
				for passed < l.runs {
					ev, err := s.Read()
					if err != nil {
						return
					}
					now := time.Now()
					if ev.Name == bettertest.BossEventOutput {
						seen++
						// The clients share the machine with the boss: they find the
						// timestamps without decoding the JSON ("1795...\n" lines).
						for _, line := range strings.Split(ev.Data, `\n`) {
							if i := strings.LastIndexByte(line, '"'); i >= 0 {
								line = line[i+1:]
							}
							if ns, err := strconv.ParseInt(line, 10, 64); err == nil && len(line) == 19 {
								mine = append(mine, now.Sub(time.Unix(0, ns)))
							}
						}
					}
					if ev.Name == bettertest.BossEventRun && strings.Contains(ev.Data, `"status":"passed"`) {
						passed++
					}
				}
				mu.Lock()
				latencies = append(latencies, mine...)
				if ci == 0 {
					events = seen
				}
				mu.Unlock()
			}()
		}
		cpu := cpuTime(b, boss.Pid())
		for range l.runs {
			if status, body := boss.Do(b, "POST", "/api/pipelines/busy/runs", nil); status != 201 {
				b.Fatalf("trigger: %d %s", status, body)
			}
		}
		wg.Wait()
		cpu = cpuTime(b, boss.Pid()) - cpu
		if want := l.clients * l.runs * l.lines; len(latencies) != want {
			b.Fatalf("got %d line deliveries, want %d", len(latencies), want)
		}
		slices.Sort(latencies)
		p50, p99 := latencies[len(latencies)/2], latencies[len(latencies)*99/100]
		rss := peakRSS(b, boss.Pid())
		perEvent := cpu / time.Duration(max(events, 1))
		b.ReportMetric(float64(p99.Microseconds())/1000, "ms-p99")
		b.ReportMetric(float64(perEvent.Microseconds()), "us-cpu/event")
		b.ReportMetric(float64(rss)/1024, "MiB-rss")
		b.Logf("%d runs on %d workers, %d clients, %d tabs, %d lines a run: delivery latency p50 %v, p99 %v (target p99 < 50 ms); boss CPU %v for %d output events = %v an event; peak RSS %.1f MiB",
			l.runs, l.workers, l.clients, l.tabs, l.lines, p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond),
			cpu.Round(time.Millisecond), events, perEvent.Round(time.Microsecond), float64(rss)/1024)
		for _, s := range append(streams, tabs...) {
			s.Close()
		}
	}
}

// cpuTime is the user and system time a process has used (/proc/PID/stat).
func cpuTime(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The fields after the command's name, which is in parentheses: utime and stime are the 12th and 13th.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
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
