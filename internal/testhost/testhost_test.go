package testhost_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/bettertest/bettertest/internal/testhost"
)

// knownHosts writes lines to a known_hosts file and returns a host key callback that checks against it.
func knownHosts(t *testing.T, lines ...string) ssh.HostKeyCallback {
	t.Helper()
	path := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cb, err := knownhosts.New(path)
	if err != nil {
		t.Fatal(err)
	}
	return cb
}

// dial logs in over the host's loopback port. The known_hosts file holds only the
// ed25519 key, so the client must ask for that algorithm: x/crypto/ssh prefers ECDSA.
func dial(h *testhost.Host, user string, auth ssh.AuthMethod, hostKeys ssh.HostKeyCallback) (*ssh.Client, error) {
	return ssh.Dial("tcp", h.SSHAddr, &ssh.ClientConfig{
		User:              user,
		Auth:              []ssh.AuthMethod{auth},
		HostKeyCallback:   hostKeys,
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
	})
}

func mustDial(t *testing.T, h *testhost.Host, user string, auth ssh.AuthMethod, hostKeys ssh.HostKeyCallback) *ssh.Client {
	t.Helper()
	c, err := dial(h, user, auth, hostKeys)
	if err != nil {
		t.Fatalf("ssh %s@%s: %v", user, h.SSHAddr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// run runs cmd in a new session and returns its output and exit code.
func run(t *testing.T, c *ssh.Client, cmd string) (stdout, stderr string, code int) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out, errOut bytes.Buffer
	s.Stdout, s.Stderr = &out, &errOut
	err = s.Run(cmd)
	var exit *ssh.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitStatus()
	case err != nil:
		t.Fatalf("ssh %q: %v", cmd, err)
	}
	return out.String(), errOut.String(), code
}

type result struct {
	Stdout, Stderr string
	Code           int
}

func check(t *testing.T, c *ssh.Client, cmd string, want result) {
	t.Helper()
	var got result
	got.Stdout, got.Stderr, got.Code = run(t, c, cmd)
	if got != want {
		t.Errorf("ssh %s: %q = %+v, want %+v", c.User(), cmd, got, want)
	}
}

func TestHost(t *testing.T) {
	t.Parallel()
	key := testhost.NewKey(t)
	start := time.Now()
	h := testhost.Start(t, testhost.Options{Key: key})
	t.Logf("%s booted, sshd ready in %v", h.Name, time.Since(start).Round(time.Millisecond))

	if want := "127.0.0.1:" + strconv.Itoa(h.SSHPort); h.SSHAddr != want {
		t.Errorf("SSHAddr = %q, want %q", h.SSHAddr, want)
	}
	if !regexp.MustCompile(`^http://127\.0\.0\.1:[0-9]+$`).MatchString(h.WorkerURL) || h.WorkerURL == "http://"+h.SSHAddr {
		t.Errorf("WorkerURL = %q, want http://127.0.0.1:PORT with a port of its own", h.WorkerURL)
	}
	var types []string
	for _, k := range h.HostKeys {
		types = append(types, strings.Fields(k)[0])
	}
	if got, want := strings.Join(types, " "), "ssh-ed25519 ecdsa-sha2-nistp256 ssh-rsa"; got != want {
		t.Errorf("HostKeys have types %q, want %q", got, want)
	}
	if got, want := h.KnownHostsLine(), fmt.Sprintf("[127.0.0.1]:%d %s", h.SSHPort, h.HostKeys[0]); got != want {
		t.Errorf("KnownHostsLine() = %q, want %q", got, want)
	}
	hostKeys := knownHosts(t, h.KnownHostsLine())
	withKey := ssh.PublicKeys(key.Signer)

	root := mustDial(t, h, "root", withKey, hostKeys)
	check(t, root, "id -un", result{Stdout: "root\n"})
	alice := mustDial(t, h, "alice", withKey, hostKeys)
	check(t, alice, "sudo -n id -un", result{Stdout: "root\n"})
	bob := mustDial(t, h, "bob", withKey, hostKeys)
	check(t, bob, "id -un", result{Stdout: "bob\n"})
	check(t, bob, "sudo -n true", result{Stderr: "sudo: a password is required\n", Code: 1})
	carol := mustDial(t, h, "carol", ssh.Password(testhost.CarolPassword), hostKeys)
	check(t, carol, "sudo -n id -un", result{Stdout: "root\n"})
	_, err := dial(h, "carol", withKey, hostKeys)
	if want := "ssh: handshake failed: ssh: unable to authenticate, attempted methods [none publickey], no supported methods remain"; err == nil || err.Error() != want {
		t.Errorf("carol with the key: err = %v, want %s", err, want)
	}
	// After the logins too: logind and the user managers did not fail.
	check(t, root, "systemctl is-system-running", result{Stdout: "running\n"})

	if got, want := h.Exec(t, "cat", "/root/.ssh/authorized_keys"), key.Public+"\n"; got != want {
		t.Errorf("root's authorized_keys = %q, want %q", got, want)
	}
	if got, want := h.Exec(t, "stat", "-c", "%U %a", "/home/alice/.ssh", "/home/alice/.ssh/authorized_keys"), "alice 700\nalice 600\n"; got != want {
		t.Errorf("alice's ~/.ssh owners and modes = %q, want %q", got, want)
	}
	var got result
	got.Stdout, got.Stderr, got.Code = h.ExecCode(t, "sh", "-c", "echo out; echo err >&2; exit 3")
	if want := (result{"out\n", "err\n", 3}); got != want {
		t.Errorf("ExecCode = %+v, want %+v", got, want)
	}

	pid := h.PID(t, "ssh")
	if want := strings.TrimSpace(h.Exec(t, "cat", "/run/sshd.pid")); strconv.Itoa(pid) != want {
		t.Errorf("PID(ssh) = %d, want %s from /run/sshd.pid", pid, want)
	}
	oldKeys := h.HostKeys
	h.RegenerateHostKeys(t)
	if h.HostKeys[0] == oldKeys[0] {
		t.Errorf("RegenerateHostKeys kept the ed25519 key %s", oldKeys[0])
	}
	if newPID := h.PID(t, "ssh"); newPID == pid || newPID == 0 {
		t.Errorf("PID(ssh) after RegenerateHostKeys = %d, want a new sshd (was %d)", newPID, pid)
	}
	_, err = dial(h, "root", withKey, hostKeys)
	var keyErr *knownhosts.KeyError
	if !errors.As(err, &keyErr) || len(keyErr.Want) != 1 {
		t.Errorf("with the old known_hosts: err = %v, want a knownhosts.KeyError for the changed key", err)
	}
	check(t, mustDial(t, h, "root", withKey, knownHosts(t, h.KnownHostsLine())), "id -un", result{Stdout: "root\n"})
	// The session opened before the restart lives on, as on a real machine.
	check(t, root, "id -un", result{Stdout: "root\n"})
}

// Every host is a machine of its own: its own host keys and machine id, and
// with Options.Loopback its own address with the standard ports.
func TestHostsDiffer(t *testing.T) {
	t.Parallel()
	key := testhost.NewKey(t)
	a := testhost.Start(t, testhost.Options{Key: key})
	addr := testhost.FreeLoopback(t)
	b := testhost.Start(t, testhost.Options{Key: key, Loopback: addr})
	got := []string{b.Loopback, b.SSHAddr, strconv.Itoa(b.SSHPort), b.WorkerURL, b.KnownHostsLine()}
	want := []string{addr, addr + ":22", "22", "http://" + addr + ":9009", addr + " " + b.HostKeys[0]}
	if !slices.Equal(got, want) {
		t.Errorf("a host on its own loopback address: Loopback, SSHAddr, SSHPort, WorkerURL, KnownHostsLine() = %q, want %q", got, want)
	}
	check(t, mustDial(t, b, "root", ssh.PublicKeys(key.Signer), knownHosts(t, b.KnownHostsLine())), "id -un", result{Stdout: "root\n"})
	if a.Loopback != "127.0.0.1" {
		t.Errorf("Loopback = %q by default, want 127.0.0.1", a.Loopback)
	}
	if a.HostKeys[0] == b.HostKeys[0] {
		t.Errorf("two hosts share the host key %s", a.HostKeys[0])
	}
	if ma, mb := a.Exec(t, "cat", "/etc/machine-id"), b.Exec(t, "cat", "/etc/machine-id"); ma == mb {
		t.Errorf("two hosts share the machine id %s", ma)
	}
	if a.SSHPort == b.SSHPort {
		t.Errorf("two hosts share the SSH port %d", a.SSHPort)
	}
}

// Enrollment installs Debian's docker.io in the host, and the worker then runs
// containers on that nested engine.
func TestNestedDocker(t *testing.T) {
	t.Parallel()
	// Registered first, so it runs after the host is gone.
	var nested string
	t.Cleanup(func() {
		if _, err := os.Stat("/sys/fs/cgroup/pids/docker/" + nested); nested != "" && !os.IsNotExist(err) {
			t.Errorf("the nested container %s left its cgroup on this machine: %v", nested, err)
		}
	})
	h := testhost.Start(t, testhost.Options{Key: testhost.NewKey(t)})
	start := time.Now()
	h.Exec(t, "sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null")
	t.Logf("apt-get install docker.io: %v", time.Since(start).Round(time.Millisecond))
	if got := h.Exec(t, "systemctl", "is-active", "docker"); got != "active\n" {
		t.Errorf("docker.service is %q, want active", got)
	}
	if got := h.Exec(t, "docker", "info", "--format", "{{.Driver}}"); got != "overlay2\n" {
		t.Errorf("the nested engine's storage driver is %q, want overlay2", got)
	}
	start = time.Now()
	h.LoadImage(t, "bettertest/base:bookworm")
	t.Logf("LoadImage: %v", time.Since(start).Round(time.Millisecond))
	if got := h.Exec(t, "docker", "run", "--rm", "bettertest/base:bookworm", "echo", "hi"); got != "hi\n" {
		t.Errorf("docker run in the host printed %q, want hi", got)
	}
	// Left running, as a worker leaves its spare containers, for the host's shutdown to stop.
	nested = strings.TrimSpace(h.Exec(t, "docker", "run", "-d", "--init", "bettertest/base:bookworm", "sleep", "infinity"))
	if got := h.Exec(t, "systemctl", "is-system-running"); got != "running\n" {
		t.Errorf("is-system-running = %q, want running", got)
	}
}

// Each release boots its own systemd, and Options.Docker makes a host whose
// engine (the release's own docker.io) already runs containers: on trixie,
// Docker 26 does only with the image's drop-in for its IPv6 setting.
func TestReleases(t *testing.T) {
	t.Parallel()
	for release, want := range map[string]string{
		testhost.Bullseye: "11 systemd 247 20.10.5+dfsg1",
		testhost.Bookworm: "12 systemd 252 20.10.24+dfsg1",
		testhost.Trixie:   "13 systemd 257 26.1.5+dfsg1",
	} {
		t.Run(release, func(t *testing.T) {
			t.Parallel()
			h := testhost.Start(t, testhost.Options{Key: testhost.NewKey(t), Release: release, Docker: true})
			got := h.Exec(t, "sh", "-c", `. /etc/os-release; printf '%s %s %s' "$VERSION_ID" "$(systemctl --version | head -n1 | cut -d' ' -f1,2)" "$(docker version --format '{{.Server.Version}}')"`)
			if got != want {
				t.Errorf("release, systemd and Docker: %q, want %q", got, want)
			}
			h.LoadImage(t, "bettertest/base:bookworm")
			if got := h.Exec(t, "docker", "run", "--rm", "--init", "bettertest/base:bookworm", "echo", "hi"); got != "hi\n" {
				t.Errorf("docker run in the host printed %q, want hi", got)
			}
		})
	}
}
