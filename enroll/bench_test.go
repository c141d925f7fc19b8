package enroll_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/bettertest/bettertest/enroll"
	"github.com/bettertest/bettertest/internal/testhost"
)

// ansiblePlaybook runs testdata/ansible/worker.yml against hosts, the peer of
// `bettertest enroll`, and returns how long it took.
func (e *env) ansiblePlaybook(b testing.TB, hosts ...*testhost.Host) time.Duration {
	b.Helper()
	inventory := "[workers]\n"
	for i, h := range hosts {
		inventory += fmt.Sprintf("w%d ansible_host=127.0.0.1 ansible_port=%d ansible_user=root worker_url=%s\n", i, h.SSHPort, h.WorkerURL)
	}
	// OpenSSH reads known_hosts from the passwd entry's home, not $HOME.
	inventory += "[workers:vars]\nansible_ssh_common_args=-o UserKnownHostsFile=" + e.knownHosts() + "\n"
	path := filepath.Join(b.TempDir(), "inventory")
	os.WriteFile(path, []byte(inventory), 0o600)
	return e.ansibleInventory(b, path)
}

// ansibleInventory runs testdata/ansible/worker.yml against the group
// workers of an inventory and returns how long it took.
func (e *env) ansibleInventory(b testing.TB, inventory string) time.Duration {
	b.Helper()
	dir := b.TempDir()
	unit := filepath.Join(dir, "bettertest-worker.service")
	os.WriteFile(unit, []byte(enroll.Unit), 0o644)
	workers := filepath.Join(dir, "workers")
	os.Mkdir(workers, 0o700)
	playbook, _ := filepath.Abs("../testdata/ansible/worker.yml")
	cmd := exec.Command("ansible-playbook", "-i", inventory, "--private-key", e.key.PrivatePath,
		"-e", "binary="+bin, "-e", "unit="+unit, "-e", "workers_dir="+workers, playbook)
	cmd.Env = append(os.Environ(), "HOME="+e.home, "ANSIBLE_CONFIG="+filepath.Join(filepath.Dir(playbook), "ansible.cfg"))
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("ansible-playbook: %v\n%s", err, out)
	}
	return time.Since(start)
}

// timed runs bettertest enroll, which must succeed, and returns its wall
// time, its report's lines and the report itself.
func (e *env) timed(b testing.TB, args ...string) (took time.Duration, lines []line, report string) {
	b.Helper()
	start := time.Now()
	report, errOut, code := e.enroll(b, args...)
	took = time.Since(start)
	if code != 0 {
		b.Fatalf("enroll exited %d: %s\n%s", code, errOut, report)
	}
	return took, parseReport(b, report), report
}

// timedEnroll runs bettertest enroll and returns its wall time and the time
// its package installs took (from the report).
func (e *env) timedEnroll(b testing.TB, args ...string) (total, packages time.Duration) {
	b.Helper()
	total, lines, _ := e.timed(b, args...)
	for _, l := range lines {
		if l.Step == "Docker installed" || l.Step == "python3 installed" || l.Step == "finish interrupted package installs" {
			packages += time.Duration(l.DurationMS) * time.Millisecond
		}
	}
	return total, packages
}

// BenchmarkEnrollVsAnsible enrolls twin fresh hosts side by side, one with
// bettertest and one with the equivalent Ansible playbook, then re-runs both.
// Targets: a no-op re-enroll under 1 s and at most 0.25 x Ansible's; fresh
// enrollment time beyond the package manager's own under 5 s.
func BenchmarkEnrollVsAnsible(b *testing.B) {
	if _, err := exec.LookPath("ansible-playbook"); err != nil {
		b.Fatal("ansible-playbook is missing: apt-get install ansible (make bench does)")
	}
	for range b.N {
		e := newEnv(b)
		// Started one after the other: Start fails the benchmark through b, which
		// only works from the benchmark's own goroutine.
		hosts := []*testhost.Host{testhost.Start(b, testhost.Options{Key: e.key}), testhost.Start(b, testhost.Options{Key: e.key})}
		for _, h := range hosts {
			e.trust(b, h)
		}
		var wg sync.WaitGroup
		args := e.args(hosts[0], "root")
		var btFresh, btPackages, anFresh time.Duration
		wg.Add(2)
		go func() { defer wg.Done(); btFresh, btPackages = e.timedEnroll(b, args...) }()
		go func() { defer wg.Done(); anFresh = e.ansiblePlaybook(b, hosts[1]) }()
		wg.Wait()
		btNoop, _ := e.timedEnroll(b, args...)
		anNoop := e.ansiblePlaybook(b, hosts[1])

		b.ReportMetric(btFresh.Seconds(), "bettertest-fresh-s")
		b.ReportMetric((btFresh - btPackages).Seconds(), "bettertest-fresh-beyond-packages-s")
		b.ReportMetric(anFresh.Seconds(), "ansible-fresh-s")
		b.ReportMetric(btNoop.Seconds(), "bettertest-noop-s")
		b.ReportMetric(anNoop.Seconds(), "ansible-noop-s")
		b.ReportMetric(btNoop.Seconds()/anNoop.Seconds(), "noop-ratio")
		b.ReportMetric(btFresh.Seconds()/anFresh.Seconds(), "fresh-ratio")
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkEnrollFourHostsInParallel enrolls one fresh host, then four at
// once with one command, then re-runs both. Target: four within 1.5 x one.
// Its quick mode (go test -short, as make bench-smoke runs it) enrolls two
// at once instead of four.
func BenchmarkEnrollFourHostsInParallel(b *testing.B) {
	parallel := 4
	if testing.Short() {
		parallel = 2
	}
	for range b.N {
		e := newEnv(b)
		hosts := make([]*testhost.Host, 1+parallel)
		for i := range hosts {
			hosts[i] = testhost.Start(b, testhost.Options{Key: e.key, Loopback: testhost.FreeLoopback(b)})
		}
		var four []string
		for i, h := range hosts {
			e.trust(b, h)
			if i > 0 {
				four = append(four, "root@"+h.Loopback)
			}
		}
		flags := []string{"--json", "--key", e.key.PrivatePath}
		oneFresh, _ := e.timedEnroll(b, append(flags, "root@"+hosts[0].Loopback)...)
		fourFresh, _ := e.timedEnroll(b, append(flags, four...)...)
		oneNoop, _ := e.timedEnroll(b, append(flags, "root@"+hosts[0].Loopback)...)
		fourNoop, _ := e.timedEnroll(b, append(flags, four...)...)
		b.ReportMetric(fourFresh.Seconds()/oneFresh.Seconds(), fmt.Sprintf("fresh-%d-vs-1-ratio", parallel))
		b.ReportMetric(fourNoop.Seconds()/oneNoop.Seconds(), fmt.Sprintf("noop-%d-vs-1-ratio", parallel))
		b.ReportMetric(oneFresh.Seconds(), "one-fresh-s")
		b.ReportMetric(fourFresh.Seconds(), fmt.Sprintf("%d-fresh-s", parallel))
		b.ReportMetric(oneNoop.Seconds(), "one-noop-s")
		b.ReportMetric(fourNoop.Seconds(), fmt.Sprintf("%d-noop-s", parallel))
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkNoOpThroughAJumpHost re-enrolls one enrolled host, directly and
// through a second host acting as bastion, in turns. Target: through the
// bastion within 1.5 x direct. Its quick mode (go test -short) runs one
// round instead of five.
func BenchmarkNoOpThroughAJumpHost(b *testing.B) {
	rounds := 5
	if testing.Short() {
		rounds = 1
	}
	for range b.N {
		e := newEnv(b)
		target, bastion := jumpPair(b, e)
		e.trust(b, target)
		e.trust(b, bastion)
		e.addKnownHost(b, target.KnownHostsLineAs(target.Name))
		direct := e.args(target, "root")
		jump := []string{"--json", "--key", e.key.PrivatePath, "--name", "w1", "--url", target.WorkerURL,
			"--jump", fmt.Sprintf("alice@127.0.0.1:%d", bastion.SSHPort), "root@" + target.Name}
		e.timedEnroll(b, direct...) // the fresh enrollment
		var directNoop, jumpNoop time.Duration
		for range rounds {
			d, _ := e.timedEnroll(b, direct...)
			j, _ := e.timedEnroll(b, jump...)
			directNoop += d
			jumpNoop += j
		}
		b.ReportMetric(jumpNoop.Seconds()/directNoop.Seconds(), "jump-vs-direct-ratio")
		b.ReportMetric(directNoop.Seconds()/float64(rounds), "direct-noop-s")
		b.ReportMetric(jumpNoop.Seconds()/float64(rounds), "jump-noop-s")
	}
	b.ReportMetric(0, "ns/op")
}
