package agent

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-units"
	"github.com/fsnotify/fsnotify"

	"github.com/bettertest/bettertest"
)

// Limits bound what one run may take of its worker, so that nothing a run
// does (a fork bomb, a memory hog, a disk filler) takes the worker down.
// Zero means no limit.
type Limits struct {
	PIDs    int64   // --pids-limit: processes and threads of a run at once
	Memory  int64   // --memory: bytes of RAM, page cache and /tmp included; no swap
	CPUs    float64 // --cpus: CPU time, in CPUs
	TmpSize int64   // --tmp-size: bytes of the run's scratch space, a tmpfs at /tmp
}

// DefaultLimits are the worker's limits when no flag says otherwise: 4096
// processes (a build's compilers and test runners use a few hundred; a fork
// bomb is stopped long before the host's pid_max), a fair share of the
// host's memory for each of its slots (three quarters of it, divided by
// maxParallel, at least 512 MiB), all of its CPUs (the kernel shares CPU
// time fairly between the worker and its runs, so /health stays quick; a
// run may narrow it), and a 1 GiB /tmp.
func DefaultLimits(maxParallel int) Limits {
	var info syscall.Sysinfo_t
	memory := int64(1 << 30)
	if syscall.Sysinfo(&info) == nil {
		memory = int64(info.Totalram) * int64(info.Unit) * 3 / 4 / int64(max(maxParallel, 1))
	}
	return Limits{PIDs: 4096, Memory: max(memory, 512<<20), CPUs: float64(runtime.NumCPU()), TmpSize: 1 << 30}
}

// capabilities are what a run keeps of root's: what ordinary builds need
// (owning and changing files as root, dropping to another user as package
// managers do, killing their own processes, binding low ports in their own
// network namespace). Docker's default set also has NET_RAW (raw packets:
// spoofing on the run's network), MKNOD, SETFCAP, AUDIT_WRITE, which builds do not need.
var capabilities = []string{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT"}

// resources are Docker's form of limits.
func (l Limits) resources() container.Resources {
	r := container.Resources{NanoCPUs: int64(math.Round(l.CPUs * 1e9))}
	if l.PIDs > 0 {
		r.PidsLimit = &l.PIDs
	}
	if l.Memory > 0 {
		r.Memory, r.MemorySwap = l.Memory, l.Memory // no swap beyond the memory
	}
	return r
}

// narrow is the worker's limits narrowed by a run's request; a request for
// more than the worker allows is refused, naming the flag.
func (l Limits) narrow(req *bettertest.Limits) (Limits, error) {
	if req == nil {
		return l, nil
	}
	pick := func(what, flag string, worker, asked float64, show func(float64) string) (float64, error) {
		switch {
		case asked == 0:
			return worker, nil
		case worker != 0 && asked > worker:
			return 0, fmt.Errorf(`"limits" asks for %s of %s, more than this worker allows (%s %s): ask for less, or start the worker with a larger %s`,
				what, show(asked), flag, show(worker), flag)
		}
		return asked, nil
	}
	count := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	bytes := func(v float64) string { return units.BytesSize(v) }
	pids, err := pick("pids", "--pids-limit", float64(l.PIDs), float64(req.PIDs), count)
	if err != nil {
		return l, err
	}
	memory, err := pick("memory_bytes", "--memory", float64(l.Memory), float64(req.MemoryBytes), bytes)
	if err != nil {
		return l, err
	}
	cpus, err := pick("cpus", "--cpus", l.CPUs, req.CPUs, count)
	if err != nil {
		return l, err
	}
	return Limits{PIDs: int64(pids), Memory: int64(memory), CPUs: cpus, TmpSize: l.TmpSize}, nil
}

// hostConfig is how every run's container is made: under Docker's init
// (tini, which reaps orphans), with no Docker log (the worker streams the
// output itself), within the worker's limits, with the capabilities above
// only, no new privileges (setuid binaries gain nothing), a /tmp of its own
// of a bounded size, on the worker's isolated network.
func (l Limits) hostConfig(network string) container.HostConfig {
	hc := container.HostConfig{
		Init:        ptr(true),
		LogConfig:   container.LogConfig{Type: "none"},
		Resources:   l.resources(),
		CapDrop:     []string{"ALL"},
		CapAdd:      capabilities,
		SecurityOpt: []string{"no-new-privileges:true"},
		NetworkMode: container.NetworkMode(network),
	}
	if l.TmpSize > 0 {
		hc.Tmpfs = map[string]string{"/tmp": "rw,nosuid,nodev,size=" + strconv.FormatInt(l.TmpSize, 10)}
	}
	return hc
}

// exceeded says which limit a run ran into, read from its container's
// cgroups and its /tmp once its command ended: the kernel counts the forks
// that pids.max refused (pids.events) and the processes the memory limit
// killed (memory.events, or memory.oom_control under cgroup v1). "" when none.
func (l Limits) exceeded(pid int) string {
	if pid <= 0 {
		return ""
	}
	files := cgroupFiles(pid)
	switch {
	case l.Memory > 0 && counter(files("memory", "memory.events", "memory.oom_control"), "oom_kill") > 0:
		return fmt.Sprintf("the run used all the memory it may (%s, the worker's --memory or the task's memory limit) and the kernel killed a process of it: use less, or ask for a larger limit", units.BytesSize(float64(l.Memory)))
	case l.PIDs > 0 && counter(files("pids", "pids.events", "pids.events"), "max") > 0:
		return l.pidsMessage()
	case l.TmpSize > 0 && tmpFull(pid):
		return fmt.Sprintf("the run filled its scratch space /tmp (%s, the worker's --tmp-size): write less there, or start the worker with a larger --tmp-size", units.BytesSize(float64(l.TmpSize)))
	}
	return ""
}

// cgroupFiles finds a process's cgroup files, under cgroup v2 (one
// hierarchy) or v1 (one per controller), from /proc/PID/cgroup.
func cgroupFiles(pid int) func(controller, v2, v1 string) string {
	paths := map[string]string{}
	if f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid)); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			parts := strings.SplitN(sc.Text(), ":", 3)
			if len(parts) != 3 {
				continue
			}
			for _, c := range strings.Split(parts[1], ",") {
				paths[c] = parts[2] // "" is the v2 hierarchy
			}
		}
	}
	return func(controller, v2, v1 string) string {
		if p, ok := paths[controller]; ok {
			return filepath.Join("/sys/fs/cgroup", controller, p, v1)
		}
		if p, ok := paths[""]; ok {
			return filepath.Join("/sys/fs/cgroup", p, v2)
		}
		return ""
	}
}

// counter reads "key N" from a cgroup file: 0 when it is not there.
func counter(path, key string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, key+" "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// tmpFull says whether the /tmp of a process's mount namespace has no room
// left (less than a page).
func tmpFull(pid int) bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(fmt.Sprintf("/proc/%d/root/tmp", pid), &st); err != nil {
		return false
	}
	return st.Bavail*uint64(st.Bsize) < 4096
}

// limitError ends a run that ran into a limit.
type limitError struct{ detail string }

func (e limitError) Error() string { return e.detail }

// watchPIDs calls hit, once, when the kernel refuses a fork of the process
// pid's cgroup for its process limit: pids.events changes (an inotify event,
// which cgroup v2 sends; v1 sends none, so there the run goes on until its
// timeout or its end, whose error then names the limit), and its "max" count
// is no longer 0. The returned function stops the watch.
func (l Limits) watchPIDs(pid int, hit func(detail string)) (stop func()) {
	path := cgroupFiles(pid)("pids", "pids.events", "pids.events")
	if l.PIDs == 0 || path == "" {
		return func() {}
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return func() {}
	}
	if err := w.Add(path); err != nil {
		w.Close()
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case _, ok := <-w.Events:
				if !ok {
					return
				}
				if counter(path, "max") > 0 {
					hit(l.pidsMessage())
					return
				}
			case _, ok := <-w.Errors:
				if !ok {
					return
				}
			}
		}
	}()
	return func() {
		w.Close()
		<-done
	}
}

func (l Limits) pidsMessage() string {
	return fmt.Sprintf("the run tried to have more than %d processes and threads at once (the worker's --pids-limit, or the task's pids limit) and was stopped: a fork bomb, or a build that needs a larger limit", l.PIDs)
}
