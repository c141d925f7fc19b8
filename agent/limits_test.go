package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/agent"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

// ending is how a run ended: its error event's message and its exit code.
type ending struct {
	Error string
	Code  int
}

func endOf(t *testing.T, evs []sseEvent) ending {
	t.Helper()
	var e ending
	for _, ev := range evs {
		switch ev.Name {
		case bettertest.EventError:
			var d bettertest.ErrorEvent
			json.Unmarshal([]byte(ev.Data), &d)
			e.Error = d.Message
		case bettertest.EventExit:
			var d bettertest.ExitEvent
			json.Unmarshal([]byte(ev.Data), &d)
			e.Code = d.Code
		}
	}
	return e
}

type sseEvent struct{ Name, Data string }

func eventsOf(t *testing.T, w *wt.Worker, req bettertest.RunRequest) []sseEvent {
	t.Helper()
	var out []sseEvent
	for _, ev := range w.Run(t, req).All(t) {
		out = append(out, sseEvent{ev.Name, ev.Data})
	}
	return out
}

// health is the worker's /health answer, which must be 200.
func health(t *testing.T, w *wt.Worker) bettertest.Health {
	resp, err := w.Do(context.Background(), http.MethodGet, "/health", nil)
	if err != nil {
		t.Error(err)
		return bettertest.Health{}
	}
	defer resp.Body.Close()
	var h bettertest.Health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || resp.StatusCode != 200 {
		t.Errorf("/health: %d %v", resp.StatusCode, err)
	}
	return h
}

// A fork bomb, a memory hog and a disk filler each end with an error that
// names the limit and its flag, while the worker keeps answering /health and
// another run, beside them, runs to its end.
func TestLimitsStopAForkBombAMemoryHogAndADiskFiller(t *testing.T) {
	t.Parallel()
	// The bomb has room in memory, so that its processes run into the
	// process limit first; the hog narrows its memory to 96 MiB.
	w := wt.Start(t, bin, wt.Options{MaxParallel: 4, Args: []string{"--pids-limit", "256", "--memory", "1GiB", "--tmp-size", "16MiB"}})
	bomb := run(`bomb() { bomb | bomb & }; bomb; sleep 120`)
	// Under cgroup v2 the limit ends it at once; under v1 (no event) its timeout does.
	bomb.TimeoutS = 10
	hog := run(`head -c 400000000 /dev/zero | tail -c 400000000 > /dev/null`)
	hog.Limits = &bettertest.Limits{MemoryBytes: 96 << 20}
	filler := run(`dd if=/dev/zero of=/tmp/big bs=1M count=64 2>/dev/null`)
	var wg sync.WaitGroup
	got := make([]ending, 3)
	for i, req := range []bettertest.RunRequest{bomb, hog, filler} {
		wg.Add(1)
		go func() { defer wg.Done(); got[i] = endOf(t, eventsOf(t, w, req)) }()
	}
	// Beside them: the worker answers and a run in the fourth slot passes.
	if h := health(t, w); !h.Ready {
		t.Errorf("/health while the bombs go off: %+v", h)
	}
	if e := endOf(t, eventsOf(t, w, run("echo still here"))); e != (ending{Code: 0}) {
		t.Errorf("a run beside them: %+v", e)
	}
	wg.Wait()
	want := []ending{
		{Code: got[0].Code, Error: "the run tried to have more than 256 processes and threads at once (the worker's --pids-limit, or the task's pids limit) and was stopped: a fork bomb, or a build that needs a larger limit"},
		{Code: 137, Error: "the run used all the memory it may (96MiB, the worker's --memory or the task's memory limit) and the kernel killed a process of it: use less, or ask for a larger limit"},
		{Code: 1, Error: "the run filled its scratch space /tmp (16MiB, the worker's --tmp-size): write less there, or start the worker with a larger --tmp-size"},
	}
	for i, name := range []string{"fork bomb", "memory hog", "disk filler"} {
		if got[i] != want[i] {
			t.Errorf("%s ended %+v, want %+v", name, got[i], want[i])
		}
	}
	if h := health(t, w); !h.Ready || h.Running != 0 {
		t.Errorf("/health after them: %+v", h)
	}
}

// A run may narrow the worker's limits, never widen them; and it may run as
// another user. Every run keeps only the capabilities builds need, with no
// new privileges.
func TestARunNarrowsLimitsRunsAsAUserAndHasFewCapabilities(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{Args: []string{"--pids-limit", "256", "--memory", "1GiB"}})
	narrow := run(`bomb() { bomb | bomb & }; bomb; sleep 120`)
	narrow.Limits = &bettertest.Limits{PIDs: 32}
	narrow.TimeoutS = 10
	if e := endOf(t, eventsOf(t, w, narrow)); e.Error != "the run tried to have more than 32 processes and threads at once (the worker's --pids-limit, or the task's pids limit) and was stopped: a fork bomb, or a build that needs a larger limit" {
		t.Errorf("a run narrowed to 32 processes: %+v", e)
	}
	for _, c := range []struct {
		limits bettertest.Limits
		want   string
	}{
		{bettertest.Limits{PIDs: 1000}, `"limits" asks for pids of 1000, more than this worker allows (--pids-limit 256): ask for less, or start the worker with a larger --pids-limit`},
		{bettertest.Limits{MemoryBytes: 2 << 30}, `"limits" asks for memory_bytes of 2GiB, more than this worker allows (--memory 1GiB): ask for less, or start the worker with a larger --memory`},
		{bettertest.Limits{PIDs: -1}, `"limits" must be positive numbers ("pids", "memory_bytes", "cpus"), or left out`},
	} {
		req := run("true")
		req.Limits = &c.limits
		body, _ := json.Marshal(req)
		resp, err := w.Do(context.Background(), http.MethodPost, "/run", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf(`{"error":%q}`, c.want) + "\n"; resp.StatusCode != 400 || string(b) != want {
			t.Errorf("limits %+v: %d %s, want 400 %s", c.limits, resp.StatusCode, b, want)
		}
	}
	user := run(`id -u; id -g`)
	user.User = "65534:65534"
	if out := outputOf(t, w, user); out != "65534\n65534\n" {
		t.Errorf("user 65534: %q", out)
	}
	// CapEff as the kernel shows it: CHOWN DAC_OVERRIDE FOWNER FSETID KILL
	// SETGID SETUID SETPCAP NET_BIND_SERVICE SYS_CHROOT; NoNewPrivs set.
	if out := outputOf(t, w, run(`grep -E '^(CapEff|NoNewPrivs)' /proc/self/status`)); out != "CapEff:\t00000000000405fb\nNoNewPrivs:\t1\n" {
		t.Errorf("capabilities: %q", out)
	}
}

// outputOf runs req and returns its stdout; it must exit 0.
func outputOf(t *testing.T, w *wt.Worker, req bettertest.RunRequest) string {
	t.Helper()
	var out strings.Builder
	for _, ev := range w.Run(t, req).All(t) {
		switch ev.Name {
		case bettertest.EventOutput:
			var o bettertest.OutputEvent
			json.Unmarshal([]byte(ev.Data), &o)
			out.WriteString(o.Text)
		case bettertest.EventExit:
			var e bettertest.ExitEvent
			json.Unmarshal([]byte(ev.Data), &e)
			if e.Code != 0 {
				t.Errorf("%q exited %d: %s", req.Command, e.Code, out.String())
			}
		}
	}
	return out.String()
}

// Runs are on a network of the worker's own, on which containers cannot
// reach each other, and from whose bridge nothing reaches the host: read
// from the configuration (GUIDE §5: tests send no traffic to private
// addresses).
func TestRunsAreIsolatedFromTheHostAndEachOther(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	owner, err := agent.WorkerIdentity(w.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	network, bridge := agent.RunNetworkName(owner), agent.RunBridgeName(owner)
	out, err := exec.Command("docker", "network", "inspect", network, "--format",
		`{{.Driver}} {{index .Options "com.docker.network.bridge.name"}} icc={{index .Options "com.docker.network.bridge.enable_icc"}}`).CombinedOutput()
	if got, want := string(out), "bridge "+bridge+" icc=false\n"; err != nil || got != want {
		t.Errorf("network %s: %q %v, want %q", network, got, err, want)
	}
	// A run's container is on it.
	sleeper := run("sleep 60")
	sleeper.TimeoutS = 60
	s := w.Run(t, sleeper)
	var started bettertest.StartedEvent
	if ev := s.Next(t); ev.Name != bettertest.EventStarted || json.Unmarshal([]byte(ev.Data), &started) != nil {
		t.Fatalf("first event %+v", ev)
	}
	mode, err := exec.Command("docker", "inspect", "bettertest-"+started.ID, "--format", "{{.HostConfig.NetworkMode}}").CombinedOutput()
	if err != nil || string(mode) != network+"\n" {
		t.Errorf("a run's container is on %q (%v), want %s", mode, err, network)
	}
	s.Close()
	rules, err := exec.Command("iptables", "-S", "INPUT").CombinedOutput()
	if err != nil || !strings.Contains(string(rules), "\n-A INPUT -i "+bridge+" -j DROP\n") {
		t.Errorf("iptables -S INPUT has no rule for %s: %s %v", bridge, rules, err)
	}
	// A run may ask to reach the host only of a worker that allows it.
	req := run("true")
	req.ReachHost = true
	body, _ := json.Marshal(req)
	resp, err := w.Do(context.Background(), http.MethodPost, "/run", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `{"error":"\"reach_host\" asks to reach the worker's host, which this worker does not allow: runs are kept from it; start the worker with --allow-reach-host if its runs may be trusted with it"}` + "\n"; resp.StatusCode != 400 || string(b) != want {
		t.Errorf("reach_host on a worker that does not allow it: %d %s", resp.StatusCode, b)
	}
	open := wt.Start(t, bin, wt.Options{Args: []string{"--allow-reach-host"}})
	sleeper = run("sleep 60")
	sleeper.TimeoutS, sleeper.ReachHost = 60, true
	s = open.Run(t, sleeper)
	if ev := s.Next(t); ev.Name != bettertest.EventStarted || json.Unmarshal([]byte(ev.Data), &started) != nil {
		t.Fatalf("first event %+v", ev)
	}
	if mode, err := exec.Command("docker", "inspect", "bettertest-"+started.ID, "--format", "{{.HostConfig.NetworkMode}}").CombinedOutput(); err != nil || string(mode) != "bridge\n" {
		t.Errorf("a run that asked to reach the host is on %q (%v), want Docker's bridge", mode, err)
	}
	s.Close()

	// A stopped worker leaves neither behind.
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("docker", "network", "inspect", network).CombinedOutput(); err == nil {
		t.Errorf("the network outlived its worker: %s", out)
	}
	if rules, _ := exec.Command("iptables", "-S", "INPUT").CombinedOutput(); strings.Contains(string(rules), bridge) {
		t.Errorf("the rule outlived its worker: %s", rules)
	}
}

// A run whose outputs fill the worker's data dir ends with an error that
// says so, and the worker keeps serving. The data dir is a real 16 MiB tmpfs.
func TestAFullDataDirEndsTheRunThatFilledIt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	w := wt.Start(t, bin, wt.Options{DataDir: dir, CacheSize: "1GiB"})
	filler := run("mkdir /out && head -c 40000000 /dev/urandom > /out/big")
	filler.Outputs = []string{"/out"}
	if e := endOf(t, eventsOf(t, w, filler)); e != (ending{Code: 0, Error: "output /out: the worker's data dir " + dir + " is full: free space there, or give the worker a smaller --cache-size than its disk holds"}) {
		t.Errorf("the run that filled the data dir ended %+v", e)
	}
	if h := health(t, w); !h.Ready {
		t.Errorf("/health after the data dir filled: %+v", h)
	}
	if out := outputOf(t, w, run("echo still serving")); out != "still serving\n" {
		t.Errorf("the next run: %q", out)
	}
}
