package enroll_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/creack/pty"

	"github.com/bettertest/bettertest/internal/testhost"
)

const davePassword = "dave-sudo-password"

// addDave adds dave, who logs in with the test's key and may sudo only with
// his password, as on a host where sudo is not passwordless.
func addDave(t testing.TB, h *testhost.Host) {
	t.Helper()
	h.Exec(t, "sh", "-c", `set -e
useradd -m -s /bin/bash dave
echo 'dave:`+davePassword+`' | chpasswd
install -d -m 0700 -o dave -g dave /home/dave/.ssh
install -m 0600 -o dave -g dave /root/.ssh/authorized_keys /home/dave/.ssh/authorized_keys
echo 'dave ALL=(ALL) ALL' > /etc/sudoers.d/dave
chmod 0440 /etc/sudoers.d/dave`)
}

// enrollOnPTY runs enroll with a terminal, types typed at its first prompt
// and returns its report (stdout), all it wrote on the terminal (prompt
// first) and its exit code.
func (e *env) enrollOnPTY(t *testing.T, prompt, typed string, args ...string) (report, terminal string, code int) {
	t.Helper()
	cmd := e.cmd(args...)
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var stdout bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, &stdout, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	r := bufio.NewReader(ptmx)
	got, err := r.ReadString(':')
	if err != nil || got != prompt {
		t.Fatalf("prompt %q: %v", got, err)
	}
	fmt.Fprint(ptmx, typed)
	rest := make(chan string)
	go func() { b, _ := io.ReadAll(r); rest <- string(b) }()
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	ptmx.Close()
	return stdout.String(), got + <-rest, code
}

func TestSudoWithAPassword(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	hosts := []*testhost.Host{testhost.Start(t, testhost.Options{Key: e.key}), testhost.Start(t, testhost.Options{Key: e.key})}
	var targets []string
	for _, h := range hosts {
		e.trust(t, h)
		addDave(t, h)
		targets = append(targets, fmt.Sprintf("dave@127.0.0.1:%d", h.SSHPort))
	}
	const prompt = "sudo password (--ask-become-pass):"

	// Without the flag: the error says to pass it.
	report, _, code := e.enroll(t, "--json", "--check", "--key", e.key.PrivatePath, targets[0])
	mustEqual(t, "without --ask-become-pass exit", code, 1)
	mustEqual(t, "without --ask-become-pass", find(t, report, "passwordless sudo").Message,
		"dave cannot run sudo without a password on 127.0.0.1 (sudo -n sh -c 'id -u': sudo: a password is required): enroll as root, "+
			"pass --ask-become-pass to type dave's sudo password, or give dave passwordless sudo for every command: echo 'dave ALL=(ALL) NOPASSWD:ALL' | sudo tee /etc/sudoers.d/bettertest-dave")

	// A real enrollment, every command (the binary's upload too) through sudo -S.
	report, terminal, code := e.enrollOnPTY(t, prompt, davePassword+"\n",
		"--json", "--ask-become-pass", "--key", e.key.PrivatePath, "--name", "w1", "--url", hosts[0].WorkerURL, targets[0])
	if code != 0 {
		t.Fatalf("enroll --ask-become-pass exited %d: %s\n%s", code, terminal, report)
	}
	mustEqual(t, "fresh run with a sudo password", statuses(t, report), append([]string{"connect=ok", "sudo=ok"}, freshRun[1:]...))
	mustEqual(t, "sudo", find(t, report, "sudo").Message, "with the password from --ask-become-pass")
	mustEqual(t, "the binary, installed by root", hosts[0].Exec(t, "stat", "-c", "%U %a", "/usr/local/bin/bettertest"), "root 755\n")
	if strings.Contains(report, davePassword) || strings.Contains(hosts[0].Exec(t, "journalctl", "--no-pager", "-o", "cat"), davePassword) {
		t.Fatal("the password is in the report or the host's journal")
	}

	// Two hosts: one prompt for both.
	report, terminal, code = e.enrollOnPTY(t, prompt, davePassword+"\n", append([]string{"--json", "--check", "-K", "--key", e.key.PrivatePath}, targets...)...)
	if code != 0 {
		t.Fatalf("two hosts exited %d: %s\n%s", code, terminal, report)
	}
	mustEqual(t, "prompts for two hosts", strings.Count(terminal, prompt), 1)
	for _, target := range targets {
		n := 0
		for _, l := range parseReport(t, report) {
			if l.Host == target && l.Step == "sudo" && l.Status == "ok" {
				n++
			}
		}
		mustEqual(t, "sudo=ok on "+target, n, 1)
	}

	// A wrong password: refused, with what sudo said.
	report, _, code = e.enrollOnPTY(t, prompt, "wrong\n", "--json", "--check", "-K", "--key", e.key.PrivatePath, targets[1])
	mustEqual(t, "wrong password exit", code, 1)
	mustEqual(t, "wrong password", find(t, report, "sudo").Message, "sudo on 127.0.0.1 refused the password typed for --ask-become-pass "+
		"(Sorry, try again.; sudo: no password was provided; sudo: 1 incorrect password attempt): run again and type dave's password there, or check that dave may sudo (sudo -l)")
}
