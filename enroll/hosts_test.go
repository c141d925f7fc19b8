package enroll_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/bettertest/bettertest/enroll"
	"github.com/bettertest/bettertest/internal/testhost"
)

// Every supported Debian release, fresh then no-op. Debian 11's systemd (247)
// prints start times without microseconds, and Debian 13's docker.io has no
// docker command: each release ends with a worker and docker on the PATH.
func TestEveryDebianRelease(t *testing.T) {
	t.Parallel()
	for _, release := range testhost.Releases {
		t.Run(release, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			h := testhost.Start(t, testhost.Options{Key: e.key, Release: release})
			e.trust(t, h)
			report, errOut, code := e.enroll(t, e.args(h, "alice")...)
			if code != 0 {
				t.Fatalf("enroll exited %d: %s\n%s", code, errOut, report)
			}
			mustEqual(t, "first run", statuses(t, report), withSudo(freshRun))
			report, errOut, code = e.enroll(t, e.args(h, "alice")...)
			if code != 0 {
				t.Fatalf("second enroll exited %d: %s\n%s", code, errOut, report)
			}
			mustEqual(t, "second run", statuses(t, report), withSudo(noOpRun))
			mustEqual(t, "second recap", recap(t, report), map[string]int{"ok": 14, "changed": 0, "failed": 0, "skipped": 1})
			mustEqual(t, "docker on the PATH", h.Exec(t, "sh", "-c", "command -v docker"), "/usr/bin/docker\n")
			mustEqual(t, "dpkg --audit", h.Exec(t, "dpkg", "--audit"), "")
		})
	}
}

func withSudo(run []string) []string {
	return append([]string{run[0], "passwordless sudo=ok"}, run[1:]...)
}

// A Debian 11 host that already runs Docker: it is left as it is.
func TestDebian11HostThatRunsDocker(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := testhost.Start(t, testhost.Options{Key: e.key, Release: testhost.Bullseye, Docker: true})
	e.trust(t, h)
	dockerPID := h.PID(t, "docker.service")
	report, errOut, code := e.enroll(t, e.args(h, "root")...)
	if code != 0 {
		t.Fatalf("enroll exited %d: %s\n%s", code, errOut, report)
	}
	want := append([]string(nil), freshRun...)
	want[4], want[6] = "Docker installed=ok", "Docker running=ok"
	mustEqual(t, "first run", statuses(t, report), want)
	mustEqual(t, "Docker's PID", h.PID(t, "docker.service"), dockerPID)
	report, _, code = e.enroll(t, e.args(h, "root", "--check")...)
	mustEqual(t, "--check after", []any{code, statuses(t, report)}, []any{0, noOpRun})
}

// dpkg killed while it unpacks docker.io leaves it half-installed (iHR): the
// next enrollment reinstalls it, and dpkg --audit is clean after.
func TestHalfInstalledDockerConverges(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := testhost.Start(t, testhost.Options{Key: e.key, Docker: true})
	e.trust(t, h)
	// dpkg is killed while it installs docker.io again: the package as apt
	// fetched it, with a preinst that says it runs (dpkg has marked the
	// package half-installed by then) and waits, so the kill is not a race.
	h.Exec(t, "sh", "-c", `set -e
systemctl disable --quiet --now docker.service docker.socket
d=$(mktemp -d)
dpkg-deb -R /var/cache/apt/archives/docker.io_*.deb "$d"
printf '#!/bin/sh\necho > /run/in-preinst\nexec sleep infinity\n' > "$d/DEBIAN/preinst"
chmod 0755 "$d/DEBIAN/preinst"
dpkg-deb -Zgzip -z1 -b "$d" /root/docker.io-waits.deb >/dev/null
mkfifo /run/in-preinst
setsid dpkg --unpack /root/docker.io-waits.deb >/dev/null 2>&1 &
pid=$!
read -r _ < /run/in-preinst
/bin/kill -KILL -- -$pid
wait $pid || true`)
	mustEqual(t, "the state dpkg left", h.Exec(t, "dpkg-query", "-W", "-f", "${db:Status-Abbrev}|${Status}", "docker.io"), "iHR|install reinstreq half-installed")

	report, errOut, code := e.enroll(t, e.args(h, "root")...)
	if code != 0 {
		t.Fatalf("enroll exited %d: %s\n%s", code, errOut, report)
	}
	mustEqual(t, "repair", find(t, report, "finish interrupted package installs").Message,
		"an interrupted install left docker.io (install reinstreq half-installed): reinstalling docker.io")
	mustEqual(t, "after the repair", statuses(t, report)[3:7], []string{
		"finish interrupted package installs=changed", "Docker installed=ok", "python3 installed=changed", "Docker running=changed"})
	mustEqual(t, "dpkg --audit", h.Exec(t, "dpkg", "--audit"), "")
	report, _, _ = e.enroll(t, e.args(h, "root")...)
	mustEqual(t, "the run after that", statuses(t, report), noOpRun)
}

// The enrollment lock is root's alone, taken once sudo works, and a wait on it
// ends with who holds it. sudo allowed for some commands only fails the
// preflight with what is missing.
func TestLockAndSudo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := testhost.Start(t, testhost.Options{Key: e.key})
	e.trust(t, h)

	// A lock file that another user made in the sticky /run/lock, as earlier
	// enrollments by a user without sudo left it. With Debian's default
	// fs.protected_regular=2 not even root may open it; enrollment no longer
	// looks there, and a user without sudo makes no file at all.
	h.Exec(t, "install", "-o", "bob", "-m", "0644", "/dev/null", "/run/lock/bettertest-enroll.lock")
	before := h.Exec(t, "ls", "-ln", "/run/lock")
	report, _, code := e.enroll(t, e.args(h, "bob", "--check")...)
	mustEqual(t, "bob exit", code, 1)
	mustEqual(t, "bob", find(t, report, "passwordless sudo").Message,
		"bob cannot run sudo without a password on 127.0.0.1 (sudo -n sh -c 'id -u': sudo: a password is required): enroll as root, "+
			"pass --ask-become-pass to type bob's sudo password, or give bob passwordless sudo for every command: echo 'bob ALL=(ALL) NOPASSWD:ALL' | sudo tee /etc/sudoers.d/bettertest-bob")
	mustEqual(t, "/run/lock after bob", h.Exec(t, "ls", "-ln", "/run/lock"), before)
	_, _, code = h.ExecCode(t, "test", "-e", "/run/bettertest")
	mustEqual(t, "/run/bettertest after bob", code, 1)

	// sudo for apt-get and systemctl only.
	h.Exec(t, "sh", "-c", `useradd -m -s /bin/bash dave
install -d -o dave -g dave -m 0700 /home/dave/.ssh
install -o dave -g dave -m 0600 /root/.ssh/authorized_keys /home/dave/.ssh/authorized_keys
echo 'dave ALL=(root) NOPASSWD: /usr/bin/apt-get, /usr/bin/systemctl' > /etc/sudoers.d/dave`)
	report, _, code = e.enroll(t, e.args(h, "dave", "--check")...)
	mustEqual(t, "dave exit", code, 1)
	mustEqual(t, "dave", find(t, report, "passwordless sudo").Message,
		"dave may run only some commands with sudo on 127.0.0.1 ((root) NOPASSWD: /usr/bin/apt-get, /usr/bin/systemctl), "+
			"but enrollment runs every step as a shell script as root (sudo -n sh -c 'id -u': sudo: a password is required): enroll as root, "+
			"or give dave passwordless sudo for every command: echo 'dave ALL=(ALL) NOPASSWD:ALL' | sudo tee /etc/sudoers.d/bettertest-dave")

	// alice may: the lock is root's, in a directory only root may enter.
	if report, errOut, code := e.enroll(t, e.args(h, "alice", "--check")...); code != 0 {
		t.Fatalf("alice --check: %d %s\n%s", code, errOut, report)
	}
	mustEqual(t, "the lock", h.Exec(t, "stat", "-c", "%U %a %n", "/run/bettertest", "/run/bettertest/enroll.lock"),
		"root 700 /run/bettertest\nroot 644 /run/bettertest/enroll.lock\n")

	// Held by another process: the wait ends, naming it.
	h.Exec(t, "sh", "-c", `mkfifo /run/holding
systemd-run --quiet --unit holder flock /run/bettertest/enroll.lock sh -c 'echo > /run/holding; exec sleep infinity'
read -r _ < /run/holding`)
	holder := h.PID(t, "holder.service")
	report, _, code = e.enroll(t, e.args(h, "alice", "--check", "--lock-wait", "2s")...)
	mustEqual(t, "held lock exit", code, 1)
	mustEqual(t, "held lock", find(t, report, "gather facts").Message, fmt.Sprintf(
		"gather facts: the host's enrollment lock /run/bettertest/enroll.lock is held by PID %d (/usr/bin/flock /run/bettertest/enroll.lock sh -c echo > /run/holding; exec sleep infinity) "+
			"for more than 2s: another enrollment of this host runs, or a command of one that was killed; let it finish, or end it (sudo kill %d), then enroll again", holder, holder))
}

// A port taken on the host: the worker is left stopped, with what holds the
// port; --listen moves it, into the record and the URL.
func TestPortTakenThenListen(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := testhost.Start(t, testhost.Options{Key: e.key, WorkerPort: 9010})
	e.trust(t, h)
	// sshd says READY=1 once it listens: systemd-run returns then.
	h.Exec(t, "systemd-run", "--quiet", "--unit", "squatter", "-p", "Type=notify", "/usr/sbin/sshd", "-D", "-p", "9009", "-o", "PidFile=none")
	report, _, code := e.enroll(t, e.args(h, "root")...)
	mustEqual(t, "exit", code, 1)
	failed := find(t, report, "worker service")
	listening := h.Exec(t, "ss", "-ltnp", "sport = :9009")
	if !strings.HasSuffix(failed.Stderr, "the worker does not start; it is left stopped and disabled. What listens on port 9009 (ss -ltnp):\n"+strings.TrimSuffix(listening, "\n")) {
		t.Fatalf("the failed start says:\n%s\nwant it to end with what holds the port:\n%s", failed.Stderr, listening)
	}
	_, _, active := h.ExecCode(t, "systemctl", "is-active", "--quiet", enroll.UnitName)
	mustEqual(t, "is-active", active, 3)
	enabled, _, _ := h.ExecCode(t, "systemctl", "is-enabled", enroll.UnitName)
	mustEqual(t, "is-enabled", enabled, "disabled\n")

	report, errOut, code := e.enroll(t, e.args(h, "root", "--listen", ":9010")...)
	if code != 0 {
		t.Fatalf("--listen :9010 exited %d: %s\n%s", code, errOut, report)
	}
	record, _ := os.ReadFile(filepath.Join(e.home, ".config", "bettertest", "workers", "w1.json"))
	mustEqual(t, "record", string(record), fmt.Sprintf("{\n  \"name\": \"w1\",\n  \"url\": %q\n}\n", h.WorkerURL))
	mustEqual(t, "ExecStart", h.Exec(t, "systemctl", "show", "-p", "ExecStart", "--value", enroll.UnitName)[:len("{ path=/usr/local/bin/bettertest ; argv[]=/usr/local/bin/bettertest worker --listen :9010 ")],
		"{ path=/usr/local/bin/bettertest ; argv[]=/usr/local/bin/bettertest worker --listen :9010 ")
	report, _, code = e.enroll(t, e.args(h, "root", "--listen", ":9010")...)
	mustEqual(t, "no-op", []any{code, statuses(t, report)}, []any{0, noOpRun})
}

// Ready means a container can start: on a host whose Docker answers but
// cannot start one (here docker-init, which every run uses, is gone), the
// worker never says ready, and enrollment fails with why; once the host is
// fixed, the next enrollment converges.
func TestWorkerReadyOnlyWhenAContainerStarts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := testhost.Start(t, testhost.Options{Key: e.key, Docker: true})
	e.trust(t, h)
	init := strings.TrimSpace(h.Exec(t, "sh", "-c", "command -v docker-init"))
	h.Exec(t, "mv", init, init+".away")
	report, _, code := e.enroll(t, e.args(h, "root")...)
	mustEqual(t, "exit", code, 1)
	failed := find(t, report, "worker service")
	if !regexp.MustCompile(`(?m)^bettertest worker: the Docker engine at unix:///var/run/docker.sock answers but cannot run a container: start a container of bettertest-probe:[0-9a-f]{16}: .*docker-init.*: see the engine's log \(journalctl -u docker\)$`).MatchString(failed.Stderr) {
		t.Fatalf("the failed start says:\n%s", failed.Stderr)
	}
	h.Exec(t, "mv", init+".away", init)
	report, errOut, code := e.enroll(t, e.args(h, "root")...)
	if code != 0 || find(t, report, "worker health").Status != "ok" {
		t.Fatalf("after the fix: %d %s\n%s", code, errOut, report)
	}
}
