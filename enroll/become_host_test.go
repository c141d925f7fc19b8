package enroll

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bettertest/bettertest/internal/testhost"
)

// TestSudoPasswordIsWrittenOnlyWhenAsked runs commands with input through
// sudo -S on a real host, as erin, whose sudo wants a password for every
// command but sh. Where sudo asks, it gets the password and the command its
// input; where it does not ask, the command gets its input and nothing else.
func TestSudoPasswordIsWrittenOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	key := testhost.NewKey(t)
	h := testhost.Start(t, testhost.Options{Key: key})
	h.Exec(t, "sh", "-c", `set -e
useradd -m -s /bin/bash erin
echo 'erin:erin-password' | chpasswd
install -d -m 0700 -o erin -g erin /home/erin/.ssh
install -m 0600 -o erin -g erin /root/.ssh/authorized_keys /home/erin/.ssh/authorized_keys
printf '%s\n' 'erin ALL=(ALL) ALL' > /etc/sudoers.d/erin
chmod 0440 /etc/sudoers.d/erin`)
	knownHosts := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(knownHosts, []byte(h.KnownHostsLine()+"\n"), 0o600)
	conn, err := dial(context.Background(), Route{Target: Hop{Address: Address{User: "erin", Host: "127.0.0.1", Port: h.SSHPort}}},
		Login{KeyFile: key.PrivatePath, KnownHosts: knownHosts})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	run := func(password, input string) (stdout, stderr string, code int) {
		t.Helper()
		host := &sshHost{client: conn.client, sudo: true, password: []byte(password), lockWait: DefaultLockWait}
		out, err := host.Run(context.Background(), `printf '%s|' "$(id -un)"; cat`, strings.NewReader(input))
		if err != nil {
			t.Fatal(err)
		}
		return string(out.Stdout), string(out.Stderr), out.Code
	}

	// sudo asks: the password first, then the input.
	stdout, stderr, code := run("erin-password", "the input\n")
	if stdout != "root|the input\n" || stderr != "" || code != 0 {
		t.Fatalf("with a prompt: %q %q %d", stdout, stderr, code)
	}
	// A wrong password: refused, nothing runs.
	stdout, stderr, code = run("wrong", "the input\n")
	if stdout != "" || stderr != "Sorry, try again.\n\nsudo: no password was provided\nsudo: 1 incorrect password attempt\n" || code != 1 {
		t.Fatalf("a wrong password: %q %q %d", stdout, stderr, code)
	}
	// sudo does not ask (NOPASSWD for sh): the command's input alone. (The
	// password is a wrong one, which sudo would refuse had it asked.)
	h.Exec(t, "sh", "-c", `printf '%s\n' 'erin ALL=(ALL) NOPASSWD: /usr/bin/sh' >> /etc/sudoers.d/erin`)
	stdout, stderr, code = run("never-written", "the input\n")
	if stdout != "root|the input\n" || stderr != "" || code != 0 {
		t.Fatalf("without a prompt: %q %q %d", stdout, stderr, code)
	}
}
