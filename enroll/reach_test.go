package enroll_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/creack/pty"

	"github.com/bettertest/bettertest/internal/testhost"
)

// addKnownHost appends a known_hosts line.
func (e *env) addKnownHost(t testing.TB, line string) {
	t.Helper()
	f, err := os.OpenFile(e.knownHosts(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintln(f, line)
}

// jumpPair is a target and a bastion on a Docker network of their own: the
// bastion is reached on 127.0.0.1, the target from the bastion by its name.
func jumpPair(t testing.TB, e *env) (target, bastion *testhost.Host) {
	net := testhost.NewNetwork(t)
	target = testhost.Start(t, testhost.Options{Key: e.key, Network: net})
	bastion = testhost.Start(t, testhost.Options{Key: e.key, Network: net})
	return target, bastion
}

// writeSSHConfig makes ~/.ssh/config with worker1 behind bastion.
func (e *env) writeSSHConfig(t testing.TB, target, bastion *testhost.Host) string {
	t.Helper()
	path := filepath.Join(e.home, ".ssh", "config")
	config := fmt.Sprintf(`Host worker1
  HostName %s
  User root
  IdentityFile %s
  ProxyJump bastion

Host bastion
  HostName 127.0.0.1
  Port %d
  User alice
  IdentityFile %s

Host broken
  HostName 127.0.0.1
  Port 1
`, target.Name, e.key.PrivatePath, bastion.SSHPort, e.key.PrivatePath)
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestEnrollAnSSHConfigAliasThroughABastion(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	target, bastion := jumpPair(t, e)
	config := e.writeSSHConfig(t, target, bastion)
	bastionAddr := fmt.Sprintf("[127.0.0.1]:%d", bastion.SSHPort)

	// The bastion's key is checked first, like the target's.
	report, _, code := e.enroll(t, "--json", "--url", target.WorkerURL, "worker1")
	mustEqual(t, "unknown bastion exit", code, 1)
	mustEqual(t, "unknown bastion", find(t, report, "connect").Message, fmt.Sprintf(
		"jump host 1 of 1, alice@127.0.0.1:%d: %s is not a known host (not in %s); its ssh-ed25519 key is %s. Check that fingerprint on the host "+
			"(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then enroll again with --accept-new-host-key to record it "+
			"(ssh_config: bastion in %s: HostName 127.0.0.1, User alice, Port %d, IdentityFile %s)",
		bastion.SSHPort, bastionAddr, e.knownHosts(), fingerprint(t, bastion.HostKeys[0]), config, bastion.SSHPort, e.key.PrivatePath))

	// Then the target's, under the name the bastion reaches it by.
	e.trust(t, bastion)
	report, _, code = e.enroll(t, "--json", "--url", target.WorkerURL, "worker1")
	mustEqual(t, "unknown target exit", code, 1)
	mustEqual(t, "unknown target", find(t, report, "connect").Message, fmt.Sprintf(
		"%s is not a known host (not in %s); its ssh-ed25519 key is %s. Check that fingerprint on the host "+
			"(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then enroll again with --accept-new-host-key to record it "+
			"(ssh_config: worker1 in %s: HostName %s, User root, IdentityFile %s, ProxyJump bastion)",
		target.Name, e.knownHosts(), fingerprint(t, target.HostKeys[0]), config, target.Name, e.key.PrivatePath))

	// Both known: the alias enrolls through the bastion, named as the alias.
	e.addKnownHost(t, target.KnownHostsLineAs(target.Name))
	report, errOut, code := e.enroll(t, "--json", "--url", target.WorkerURL, "worker1")
	if code != 0 {
		t.Fatalf("enroll worker1 exited %d: %s\n%s", code, errOut, report)
	}
	mustEqual(t, "fresh run through the bastion", statuses(t, report), freshRun)
	mustEqual(t, "connect", find(t, report, "connect").Message, fmt.Sprintf("logged in as root; host key ssh-ed25519 %s; through alice@127.0.0.1:%d",
		fingerprint(t, target.HostKeys[0]), bastion.SSHPort))
	record, _ := os.ReadFile(filepath.Join(e.home, ".config", "bettertest", "workers", "worker1.json"))
	mustEqual(t, "record", string(record), fmt.Sprintf("{\n  \"name\": \"worker1\",\n  \"url\": %q\n}\n", target.WorkerURL))

	// --jump and --ssh-config FILE: the same host again, a no-op.
	moved := filepath.Join(t.TempDir(), "other-config")
	if err := os.Rename(config, moved); err != nil {
		t.Fatal(err)
	}
	report, errOut, code = e.enroll(t, "--json", "--ssh-config", moved, "--jump", fmt.Sprintf("alice@127.0.0.1:%d", bastion.SSHPort),
		"--key", e.key.PrivatePath, "--name", "worker1", "--url", target.WorkerURL, "root@"+target.Name)
	if code != 0 {
		t.Fatalf("enroll --jump exited %d: %s\n%s", code, errOut, report)
	}
	mustEqual(t, "no-op run with --jump", statuses(t, report), noOpRun)

	// An error names the configuration that shaped the connection.
	report, _, code = e.enroll(t, "--json", "--ssh-config", moved, "--key", e.key.PrivatePath, "root@broken")
	mustEqual(t, "broken exit", code, 1)
	mustEqual(t, "broken", find(t, report, "connect").Message,
		"connect to 127.0.0.1:1: dial tcp 127.0.0.1:1: connect: connection refused: check the host and --port, and that sshd runs there "+
			"(ssh_config: broken in "+moved+": HostName 127.0.0.1, Port 1)")

	// A bastion whose key changed is refused, and the target is not touched.
	old := bastion.HostKeys[0]
	bastion.RegenerateHostKeys(t)
	report, _, code = e.enroll(t, "--json", "--ssh-config", moved, "--accept-new-host-key", "--url", target.WorkerURL, "worker1")
	mustEqual(t, "changed bastion exit", code, 1)
	mustEqual(t, "changed bastion", find(t, report, "connect").Message, fmt.Sprintf(
		"jump host 1 of 1, alice@127.0.0.1:%d: the host key of %s has CHANGED: it is now ssh-ed25519 %s, but %s:1 has ssh-ed25519 %s. "+
			"Someone may be intercepting the connection, or the host was reinstalled; nothing was done on it. "+
			"If you trust the new key, remove the old one (ssh-keygen -R '%s') and enroll again "+
			"(ssh_config: bastion in %s: HostName 127.0.0.1, User alice, Port %d, IdentityFile %s)",
		bastion.SSHPort, bastionAddr, fingerprint(t, bastion.HostKeys[0]), e.knownHosts(), fingerprint(t, old), bastionAddr,
		moved, bastion.SSHPort, e.key.PrivatePath))
}

func TestEnrollOverIPv6(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := testhost.Start(t, testhost.Options{Key: e.key, Publish: "::1"})
	e.trust(t, h)
	target := fmt.Sprintf("root@[::1]:%d", h.SSHPort)
	report, errOut, code := e.enroll(t, "--json", "--key", e.key.PrivatePath, "--url", h.WorkerURL, target)
	if code != 0 {
		t.Fatalf("enroll %s exited %d: %s\n%s", target, code, errOut, report)
	}
	mustEqual(t, "fresh run over IPv6", statuses(t, report), freshRun)
	// The worker is named from the address: no colons or brackets in file names.
	record, err := os.ReadFile(filepath.Join(e.home, ".config", "bettertest", "workers", "0--1.json"))
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "record", string(record), fmt.Sprintf("{\n  \"name\": \"0--1\",\n  \"url\": %q\n}\n", h.WorkerURL))

	report, _, _ = e.enroll(t, "--json", "--key", e.key.PrivatePath, "--url", h.WorkerURL, fmt.Sprintf("ssh://root@[::1]:%d", h.SSHPort))
	mustEqual(t, "no-op run as ssh://", statuses(t, report), noOpRun)
}

// TestProgressOnATerminal enrolls a fresh host with the report on a
// terminal: apt's install shows as a live line, rewritten in place, and
// every report line clears it first.
func TestProgressOnATerminal(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := testhost.Start(t, testhost.Options{Key: e.key})
	e.trust(t, h)
	cmd := e.cmd("--key", e.key.PrivatePath, "--port", fmt.Sprint(h.SSHPort), "--name", "w1", "--url", h.WorkerURL, "root@127.0.0.1")
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	out, _ := io.ReadAll(ptmx) // EIO once the terminal's last user has gone
	if err := cmd.Wait(); err != nil {
		t.Fatalf("enroll on a terminal: %v\n%q", err, out)
	}
	// The live lines of the Docker step, in order, without repeats.
	live := regexp.MustCompile(`\r\x1b\[K…        \[root@127\.0\.0\.1\] Docker installed: (\d+)% (\w+) ([^\r\n]*)`)
	var percents []int
	var unpacked []string
	for _, m := range live.FindAllStringSubmatch(string(out), -1) {
		p, _ := strconv.Atoi(m[1])
		percents = append(percents, p)
		if m[2] == "Unpacking" {
			unpacked = append(unpacked, strings.Fields(m[3])[0])
		}
	}
	if len(percents) == 0 || !slices.IsSorted(percents) || !slices.Contains(unpacked, "docker.io") {
		t.Fatalf("no live line of apt's progress that rises and unpacks docker.io: %v %v\n%q", percents, unpacked, out)
	}
	// The step's own line clears the live line and follows it.
	if !regexp.MustCompile(`\r\x1b\[K\x1b\[33mchanged \x1b\[0m \[root@127\.0\.0\.1\] Docker installed \(`).Match(out) {
		t.Fatalf("the Docker step's line does not clear the live line:\n%q", out)
	}
}
