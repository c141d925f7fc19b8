package vmlab_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	wt "github.com/bettertest/bettertest/internal/workertest"
)

// VMImage is the Debian 12 cloud image that scripts/setup-test-env.sh builds
// from Debian packages (Fedora's images cannot be downloaded here).
const VMImage = "/var/lib/bettertest/debian12-cloud.qcow2"

var bin string // the bettertest binary under test

func TestMain(m *testing.M) { wt.Main(m, &bin) }

type lab struct {
	t    *testing.T
	home string
	bin  string // vmlab: the binary dispatches on the name it is called by
}

func (l lab) run(args ...string) (string, error) {
	cmd := exec.Command(l.bin, args...)
	cmd.Env = []string{"HOME=" + l.home, "PATH=" + os.Getenv("PATH")}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (l lab) must(args ...string) string {
	l.t.Helper()
	out, err := l.run(args...)
	if err != nil {
		l.t.Fatalf("vmlab %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func virshState(t *testing.T, name string) string {
	out, _ := exec.Command("virsh", "--connect", "qemu:///system", "domstate", name).CombinedOutput()
	return strings.TrimSpace(string(out))
}

// TestUpSSHDownDestroy is the acceptance run: up, SSH in as the user with the
// key (the host key checked against what vmlab recorded from phone_home), sudo,
// up again changes nothing, down, destroy leaves nothing behind. Software
// emulation and user networking, as this machine allows; about two minutes.
func TestUpSSHDownDestroy(t *testing.T) {
	wt.Integration(t) // libvirt, qemu
	if _, err := os.Stat(VMImage); err != nil {
		t.Fatalf("%v: make test builds it (scripts/setup-test-env.sh)", err)
	}
	l := lab{t: t, home: t.TempDir(), bin: filepath.Join(t.TempDir(), "vmlab")}
	if err := os.Symlink(bin, l.bin); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 3)
	rand.Read(b)
	name := "vmlabtest-" + hex.EncodeToString(b)
	t.Cleanup(func() { l.run("destroy", name) }) // whatever happened

	out := l.must("up", name, "--image", VMImage, "--virt-type", "qemu", "--network", "user", "--os-variant", "debian11",
		"--memory", "1024", "--cpus", "2", "--disk", "4G", "--user", "tester")
	if !strings.Contains(out, "vmlab: created the SSH key "+filepath.Join(l.home, ".ssh", "id_ed25519")+" (there was none)\n") ||
		!strings.Contains(out, "phoned home; recorded its host keys in "+filepath.Join(l.home, ".ssh", "known_hosts")+"\n") {
		t.Fatalf("up said:\n%s", out)
	}
	addr := strings.TrimSpace(l.must("ip", name))
	if !regexp.MustCompile(`^127\.0\.0\.1:\d+$`).MatchString(addr) {
		t.Fatalf("vmlab ip: %q", addr)
	}

	// SSH in with the key, the host key verified strictly (no trust on first use).
	keyPEM, err := os.ReadFile(filepath.Join(l.home, ".ssh", "id_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	known, err := knownhosts.New(filepath.Join(l.home, ".ssh", "known_hosts"))
	if err != nil {
		t.Fatal(err)
	}
	client, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: "tester", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: known, HostKeyAlgorithms: []string{ssh.KeyAlgoED25519}})
	if err != nil {
		t.Fatalf("ssh tester@%s: %v", addr, err)
	}
	for cmd, want := range map[string]string{"id -un": "tester\n", "sudo -n true && echo sudo-ok": "sudo-ok\n", "hostname": name + "\n"} {
		sess, _ := client.NewSession()
		got, err := sess.Output(cmd)
		sess.Close()
		if err != nil || string(got) != want {
			t.Fatalf("%s: %q, %v", cmd, got, err)
		}
	}
	client.Close()

	// up again: a no-op that says so.
	if out := l.must("up", name, "--image", VMImage, "--virt-type", "qemu", "--network", "user", "--os-variant", "debian11", "--user", "tester"); !strings.HasPrefix(out, "vmlab: "+name+" is already running\n") {
		t.Fatalf("second up:\n%s", out)
	}
	if s := l.must("list"); !strings.Contains(s, fmt.Sprintf("%-20s %-10s tester@%s\n", name, "running", addr)) {
		t.Fatalf("list:\n%s", s)
	}

	l.must("down", name)
	if s := virshState(t, name); s != "shut off" {
		t.Fatalf("after down: %q", s)
	}

	l.must("destroy", name)
	if s := virshState(t, name); !strings.Contains(s, "failed to get domain") {
		t.Fatalf("after destroy, virsh domstate says %q", s)
	}
	for _, f := range []string{name + ".qcow2", name + "-cidata.iso"} {
		if _, err := os.Stat(filepath.Join("/var/lib/libvirt/images", f)); !os.IsNotExist(err) {
			t.Fatalf("%s is still there: %v", f, err)
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the forwarded port %s is still taken: %v", addr, err)
	}
	ln.Close()
	if kh, _ := os.ReadFile(filepath.Join(l.home, ".ssh", "known_hosts")); len(kh) != 0 {
		t.Fatalf("known_hosts still has:\n%s", kh)
	}
}
