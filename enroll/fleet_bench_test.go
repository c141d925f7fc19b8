package enroll_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bettertest/bettertest/internal/testhost"
)

// BenchmarkEnrollInventory re-enrolls, changing nothing, the hosts of an
// inventory (8; 2 under go test -short) against one of them alone (target
// within 1.5 x) and against Ansible running the peer playbook over the same
// inventory (target at most 0.25 x).
func BenchmarkEnrollInventory(b *testing.B) {
	if _, err := exec.LookPath("ansible-playbook"); err != nil {
		b.Fatal("ansible-playbook is missing: apt-get install ansible (make bench does)")
	}
	n := 8
	if testing.Short() {
		n = 2
	}
	for range b.N {
		e := newEnv(b)
		// One inventory for both: Ansible's playbook reads worker_url and the
		// known_hosts option, which enroll has no use for.
		inventory := "[workers]\n"
		for i := range n {
			h := testhost.Start(b, testhost.Options{Key: e.key, Loopback: testhost.FreeLoopback(b)})
			e.trust(b, h)
			inventory += fmt.Sprintf("w%d ansible_host=%s worker_url=http://%s:9009\n", i, h.Loopback, h.Loopback)
		}
		// OpenSSH reads known_hosts from the passwd entry's home, not $HOME.
		inventory += "[workers:vars]\nansible_user=root\nansible_ssh_common_args=-o UserKnownHostsFile=" + e.knownHosts() + "\n"
		path := filepath.Join(b.TempDir(), "hosts")
		if err := os.WriteFile(path, []byte(inventory), 0o600); err != nil {
			b.Fatal(err)
		}
		flags := []string{"--json", "--key", e.key.PrivatePath, "-i", path}

		fresh, _ := e.timedEnroll(b, flags...)
		e.ansibleInventory(b, path) // its first run saves its own copies of the tokens
		one, oneFacts := e.noOp(b, append(flags, "w0")...)
		all, allFacts := e.noOp(b, flags...)
		ansible := e.ansibleInventory(b, path)

		b.ReportMetric(all.Seconds()/one.Seconds(), fmt.Sprintf("noop-%d-vs-1-ratio", n))
		b.ReportMetric(all.Seconds()/ansible.Seconds(), "noop-vs-ansible-ratio")
		b.ReportMetric(fresh.Seconds(), fmt.Sprintf("%d-fresh-s", n))
		b.ReportMetric(one.Seconds(), "one-noop-s")
		b.ReportMetric(all.Seconds(), fmt.Sprintf("%d-noop-s", n))
		b.ReportMetric(ansible.Seconds(), fmt.Sprintf("ansible-%d-noop-s", n))
		// The hosts share this machine's cores: the facts script of each is
		// CPU work on the same cores (a fleet's hosts each have their own).
		b.ReportMetric(oneFacts.Seconds(), "one-gather-facts-s")
		b.ReportMetric(allFacts.Seconds(), fmt.Sprintf("%d-gather-facts-slowest-s", n))
	}
	b.ReportMetric(0, "ns/op")
}

// noOp runs enroll, which must change nothing on any host, and returns its
// wall time and the slowest host's gathering of facts.
func (e *env) noOp(b testing.TB, args ...string) (took, facts time.Duration) {
	b.Helper()
	took, lines, report := e.timed(b, args...)
	for _, l := range lines {
		if l.Recap != nil && l.Recap["changed"] != 0 {
			b.Fatalf("a re-enrollment changed %s: it is not a no-op\n%s", l.Host, strings.TrimSpace(report))
		}
		if l.Step == "gather facts" {
			facts = max(facts, time.Duration(l.DurationMS)*time.Millisecond)
		}
	}
	return took, facts
}
