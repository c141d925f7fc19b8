package enroll_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bettertest/bettertest/enroll"
	"github.com/bettertest/bettertest/internal/testhost"
)

// byHost is each host's "step=status" list, by the host the report names.
func byHost(t testing.TB, report string) map[string][]string {
	out := map[string][]string{}
	for _, l := range parseReport(t, report) {
		if l.Step != "" {
			out[l.Host] = append(out[l.Host], l.Step+"="+l.Status)
		}
	}
	return out
}

// fleet is an inventory of two groups on two real hosts: builders logs in
// as root, testers as alice (through sudo), both with the inventory's key.
func (e *env) fleet(t *testing.T) (inventory string, b1, t1 *testhost.Host) {
	b1 = testhost.Start(t, testhost.Options{Key: e.key, Loopback: testhost.FreeLoopback(t)})
	t1 = testhost.Start(t, testhost.Options{Key: e.key, Loopback: testhost.FreeLoopback(t)})
	e.trust(t, b1)
	e.trust(t, t1)
	inventory = filepath.Join(t.TempDir(), "hosts")
	os.WriteFile(inventory, []byte(fmt.Sprintf(`# the team's inventory
[builders]
b1 ansible_host=%s ansible_user=root

[testers]
t1 ansible_host=%s

[testers:vars]
ansible_user=alice

[all:vars]
ansible_ssh_private_key_file=%s
`, b1.Loopback, t1.Loopback, e.key.PrivatePath)), 0o600)
	return inventory, b1, t1
}

var removeRun = []string{
	"connect=ok", "gather facts=ok", "local worker record removed=changed", "worker service stopped=changed",
	"worker unit removed=changed", "bettertest binary removed=changed", "worker token removed=changed",
	"worker data removed=changed", "Docker and python3 kept=ok",
}

var removedRun = []string{
	"connect=ok", "gather facts=ok", "local worker record removed=ok", "worker service stopped=ok",
	"worker unit removed=ok", "bettertest binary removed=ok", "worker token removed=ok",
	"worker data removed=ok", "Docker and python3 kept=ok",
}

// TestInventoryOfTwoGroupsThenUnenrollAndEnrollAgain enrolls the hosts of
// an Ansible inventory, by group and all at once, then unenrolls one (twice)
// and enrolls it again.
func TestInventoryOfTwoGroupsThenUnenrollAndEnrollAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	inventory, b1, t1 := e.fleet(t)
	workers := filepath.Join(e.home, ".config", "bettertest", "workers")

	// A group selects its hosts only.
	report, errOut, code := e.enroll(t, "--json", "-i", inventory, "--check", "testers")
	if code != 0 {
		t.Fatalf("enroll --check testers exited %d: %s\n%s", code, errOut, report)
	}
	if hosts := byHost(t, report); len(hosts) != 1 || hosts["t1"] == nil {
		t.Fatalf("--check testers reported on %v", hosts)
	}

	report, errOut, code = e.enroll(t, "--json", "-i", inventory)
	if code != 0 {
		t.Fatalf("enroll -i exited %d: %s\n%s", code, errOut, report)
	}
	sudoFresh := append([]string{"connect=ok", "passwordless sudo=ok"}, freshRun[1:]...)
	mustEqual(t, "fresh fleet", byHost(t, report), map[string][]string{"b1": freshRun, "t1": sudoFresh})
	for name, h := range map[string]*testhost.Host{"b1": b1, "t1": t1} {
		record, _ := os.ReadFile(filepath.Join(workers, name+".json"))
		mustEqual(t, name+".json", string(record), fmt.Sprintf("{\n  \"name\": %q,\n  \"url\": \"http://%s:9009\"\n}\n", name, h.Loopback))
	}

	// Again, as text: nothing changes, and the recap table ends the report.
	report, errOut, code = e.enroll(t, "-i", inventory, "--forks", "1")
	if code != 0 {
		t.Fatalf("no-op enroll -i exited %d: %s\n%s", code, errOut, report)
	}
	_, table, _ := strings.Cut(report, "RECAP\n")
	mustEqual(t, "recap table", table, ""+
		"b1 : ok=13  changed=0   unreachable=0   failed=0   skipped=1\n"+
		"t1 : ok=14  changed=0   unreachable=0   failed=0   skipped=1\n")

	// Unenroll b1: the worker goes, Docker and python3 stay, t1 is untouched.
	report, errOut, code = e.unenroll(t, "--json", "-i", inventory, "b1")
	if code != 0 {
		t.Fatalf("unenroll b1 exited %d: %s\n%s", code, errOut, report)
	}
	mustEqual(t, "unenroll", byHost(t, report), map[string][]string{"b1": removeRun})
	for _, p := range []string{enroll.UnitPath, enroll.BinaryPath, enroll.ConfigDir, enroll.StateDir} {
		if _, _, code := b1.ExecCode(t, "test", "-e", p); code != 1 {
			t.Errorf("%s is still on the host after unenroll", p)
		}
	}
	mustEqual(t, "unit after unenroll", b1.Exec(t, "sh", "-c", "systemctl is-active "+enroll.UnitName+"; systemctl is-enabled "+enroll.UnitName+" 2>&1; true"),
		"inactive\nFailed to get unit file state for "+enroll.UnitName+": No such file or directory\n")
	mustEqual(t, "kept", b1.Exec(t, "sh", "-c", "command -v dockerd; command -v python3; systemctl is-active docker"), "/usr/sbin/dockerd\n/usr/bin/python3\nactive\n")
	entries, _ := os.ReadDir(workers)
	var left []string
	for _, en := range entries {
		left = append(left, en.Name())
	}
	mustEqual(t, "local records after unenroll", left, []string{"t1.json", "t1.token"})
	mustEqual(t, "t1 after unenrolling b1", t1.Exec(t, "systemctl", "is-active", enroll.UnitName), "active\n")

	// Twice: all ok; through enroll --remove, the same code.
	report, errOut, code = e.enroll(t, "--json", "--remove", "-i", inventory, "b1")
	if code != 0 {
		t.Fatalf("second unenroll exited %d: %s\n%s", code, errOut, report)
	}
	mustEqual(t, "second unenroll", byHost(t, report), map[string][]string{"b1": removedRun})

	// Enroll again: Docker and python3 are there, the rest comes back.
	report, errOut, code = e.enroll(t, "--json", "-i", inventory, "builders")
	if code != 0 {
		t.Fatalf("enroll after unenroll exited %d: %s\n%s", code, errOut, report)
	}
	mustEqual(t, "enroll after unenroll", byHost(t, report), map[string][]string{"b1": {
		"connect=ok", "gather facts=ok", "supported system=ok", "finish interrupted package installs=ok",
		"Docker installed=ok", "python3 installed=ok", "Docker running=ok", "bettertest binary=changed",
		"worker token=changed", "worker record=changed", "worker unit=changed", "firewall=skipped",
		"worker service=changed", "worker health=ok",
	}})
}

// unenroll runs bettertest unenroll.
func (e *env) unenroll(t testing.TB, args ...string) (report, errOut string, code int) {
	t.Helper()
	cmd := e.cmd(args...)
	cmd.Args[1] = "unenroll" // the same code as enroll --remove, under its own name
	return runReport(t, cmd)
}
