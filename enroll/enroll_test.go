package enroll_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/bettertest/bettertest/enroll"
	"github.com/bettertest/bettertest/internal/testhost"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

var bin string // the bettertest binary under test

func TestMain(m *testing.M) { wt.Main(m, &bin) }

// env is the enrolling machine: a home with ~/.ssh and ~/.config/bettertest.
type env struct {
	home string
	key  testhost.Key
}

func newEnv(t testing.TB) *env {
	e := &env{home: t.TempDir(), key: testhost.NewKey(t)}
	if err := os.Mkdir(filepath.Join(e.home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) knownHosts() string { return filepath.Join(e.home, ".ssh", "known_hosts") }

// trust records the host's key, as vmlab or a careful user would.
func (e *env) trust(t testing.TB, h *testhost.Host) {
	f, err := os.OpenFile(e.knownHosts(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintln(f, h.KnownHostsLine())
}

func (e *env) cmd(args ...string) *exec.Cmd {
	cmd := exec.Command(bin, append([]string{"enroll"}, args...)...)
	// The enrolling machine's own agent and home must not leak into the test.
	cmd.Env = []string{"HOME=" + e.home, "PATH=" + os.Getenv("PATH")}
	return cmd
}

// enroll runs bettertest enroll and returns its report (stdout), its error
// output and its exit code.
func (e *env) enroll(t testing.TB, args ...string) (report, errOut string, code int) {
	t.Helper()
	return runReport(t, e.cmd(args...))
}

// runReport runs cmd and returns its stdout, its stderr and its exit code.
func runReport(t testing.TB, cmd *exec.Cmd) (report, errOut string, code int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func (e *env) args(h *testhost.Host, user string, extra ...string) []string {
	return append([]string{"--json", "--port", fmt.Sprint(h.SSHPort), "--url", h.WorkerURL, "--name", "w1", "--key", e.key.PrivatePath}, append(extra, user+"@127.0.0.1")...)
}

// line is one line of the --json report.
type line struct {
	Host       string         `json:"host"`
	Step       string         `json:"step"`
	Status     string         `json:"status"`
	Message    string         `json:"message"`
	Diff       string         `json:"diff"`
	Warning    string         `json:"warning"`
	Stderr     string         `json:"stderr"`
	Recap      map[string]int `json:"recap"`
	DurationMS int64          `json:"duration_ms"`
}

func parseReport(t testing.TB, report string) []line {
	t.Helper()
	var lines []line
	for _, l := range strings.Split(strings.TrimSpace(report), "\n") {
		var v line
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("report line %q: %v", l, err)
		}
		lines = append(lines, v)
	}
	return lines
}

// statuses is "step=status" for every step of the report.
func statuses(t testing.TB, report string) []string {
	var out []string
	for _, l := range parseReport(t, report) {
		if l.Step != "" {
			out = append(out, l.Step+"="+l.Status)
		}
	}
	return out
}

func find(t testing.TB, report, step string) line {
	t.Helper()
	for _, l := range parseReport(t, report) {
		if l.Step == step {
			return l
		}
	}
	t.Fatalf("no step %q in\n%s", step, report)
	return line{}
}

func recap(t testing.TB, report string) map[string]int {
	lines := parseReport(t, report)
	return lines[len(lines)-1].Recap
}

var freshRun = []string{
	"connect=ok", "gather facts=ok", "supported system=ok", "finish interrupted package installs=ok",
	"Docker installed=changed", "python3 installed=changed", "Docker running=changed", "bettertest binary=changed",
	"worker token=changed", "worker record=changed", "worker unit=changed", "firewall=skipped",
	"worker service=changed", "worker health=ok",
}

var noOpRun = []string{
	"connect=ok", "gather facts=ok", "supported system=ok", "finish interrupted package installs=ok",
	"Docker installed=ok", "python3 installed=ok", "Docker running=ok", "bettertest binary=ok",
	"worker token=ok", "worker record=ok", "worker unit=ok", "firewall=skipped",
	"worker service=ok", "worker health=ok",
}

func mustEqual[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %v\nwant %v", what, got, want)
	}
}

func TestEnrollFreshHostThenAgainThenANewBinary(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := testhost.Start(t, testhost.Options{Key: e.key})
	e.trust(t, h)

	report, errOut, code := e.enroll(t, e.args(h, "root")...)
	if code != 0 {
		t.Fatalf("enroll exited %d: %s\n%s", code, errOut, report)
	}
	mustEqual(t, "first run", statuses(t, report), freshRun)
	mustEqual(t, "first recap", recap(t, report), map[string]int{"ok": 5, "changed": 8, "failed": 0, "skipped": 1})

	// The token: on the host root's alone, locally 0600, the same secret.
	tokenFile := filepath.Join(e.home, ".config", "bettertest", "workers", "w1.token")
	local, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := os.Stat(tokenFile); info.Mode().Perm() != 0o600 {
		t.Fatalf("local token mode %v", info.Mode())
	}
	mustEqual(t, "host token", h.Exec(t, "stat", "-c", "%a %U", enroll.TokenPath), "600 root\n")
	mustEqual(t, "token copy", string(local), h.Exec(t, "cat", enroll.TokenPath))
	record, _ := os.ReadFile(filepath.Join(e.home, ".config", "bettertest", "workers", "w1.json"))
	mustEqual(t, "record", string(record), fmt.Sprintf("{\n  \"name\": \"w1\",\n  \"url\": %q\n}\n", h.WorkerURL))

	// The worker runs a container for the Python library.
	h.LoadImage(t, wt.Image)
	py := exec.Command("python3", "../python/examples/hello.py", "--worker", h.WorkerURL, "--token-file", tokenFile)
	py.Env = append(os.Environ(), "PYTHONPATH=../python")
	out, err := py.CombinedOutput()
	if err != nil || !regexp.MustCompile(`^hello from [0-9a-f]{12}\nLinux [0-9a-f]{12} .* GNU/Linux\n$`).Match(out) {
		t.Fatalf("the example pipedef on the enrolled worker: %v\n%s", err, out)
	}

	// Again: nothing changes, and neither Docker nor the worker restarts.
	dockerPID, workerPID := h.PID(t, "docker.service"), h.PID(t, enroll.UnitName)
	report, errOut, code = e.enroll(t, e.args(h, "root")...)
	if code != 0 {
		t.Fatalf("second enroll exited %d: %s\n%s", code, errOut, report)
	}
	mustEqual(t, "second run", statuses(t, report), noOpRun)
	mustEqual(t, "PIDs after the second run", []int{h.PID(t, "docker.service"), h.PID(t, enroll.UnitName)}, []int{dockerPID, workerPID})

	// A different binary: only the binary changes, and the worker restarts onto it.
	other := filepath.Join(t.TempDir(), "bettertest")
	build := exec.Command("go", "build", "-o", other, "-ldflags", "-X github.com/bettertest/bettertest.Version=v-upgrade-test", "github.com/bettertest/bettertest/cmd/bettertest")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the other binary: %v\n%s", err, out)
	}
	report, errOut, code = e.enroll(t, e.args(h, "root", "--binary", other)...)
	if code != 0 {
		t.Fatalf("upgrade exited %d: %s\n%s", code, errOut, report)
	}
	var changed []string
	for _, s := range statuses(t, report) {
		if strings.HasSuffix(s, "=changed") {
			changed = append(changed, s)
		}
	}
	mustEqual(t, "upgrade changes", changed, []string{"bettertest binary=changed", "worker service=changed"})
	mustEqual(t, "restart reason", find(t, report, "worker service").Message, "the worker runs an older binary: restarting it")
	if h.PID(t, enroll.UnitName) == workerPID || h.PID(t, "docker.service") != dockerPID {
		t.Fatal("the upgrade must restart the worker and leave Docker alone")
	}
	if msg := find(t, report, "worker health").Message; !strings.Contains(msg, "version v-upgrade-test,") {
		t.Fatalf("health after the upgrade: %s", msg)
	}
}

func TestKilledHalfwayThenEnrolledAgainConverges(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := testhost.Start(t, testhost.Options{Key: e.key})
	e.trust(t, h)

	// Kill enroll while it installs Docker: once the step before it reported.
	cmd := e.cmd(e.args(h, "root")...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"step":"finish interrupted package installs"`) {
			cmd.Process.Signal(syscall.SIGKILL)
			break
		}
	}
	io.Copy(io.Discard, stdout)
	cmd.Wait()

	report, errOut, code := e.enroll(t, e.args(h, "root")...)
	if code != 0 || recap(t, report)["failed"] != 0 || find(t, report, "worker health").Status != "ok" {
		t.Fatalf("the run after the kill exited %d: %s\n%s", code, errOut, report)
	}
	report, _, _ = e.enroll(t, e.args(h, "root")...)
	mustEqual(t, "the run after that", statuses(t, report), noOpRun)
}

func fingerprint(t *testing.T, authorizedKey string) string {
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorizedKey))
	if err != nil {
		t.Fatal(err)
	}
	return ssh.FingerprintSHA256(key)
}

func TestHostKeysAreVerified(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := testhost.Start(t, testhost.Options{Key: e.key})
	hostport := fmt.Sprintf("[127.0.0.1]:%d", h.SSHPort)

	// Unknown: refused, with the fingerprint to check.
	report, _, code := e.enroll(t, e.args(h, "root", "--check")...)
	mustEqual(t, "unknown host exit", code, 1)
	mustEqual(t, "unknown host", find(t, report, "connect").Message, fmt.Sprintf(
		"%s is not a known host (not in %s); its ssh-ed25519 key is %s. Check that fingerprint on the host "+
			"(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then enroll again with --accept-new-host-key to record it",
		hostport, e.knownHosts(), fingerprint(t, h.HostKeys[0])))

	// Accepted when asked, and recorded.
	if report, errOut, code := e.enroll(t, e.args(h, "root", "--check", "--accept-new-host-key")...); code != 0 {
		t.Fatalf("accept-new-host-key: %d %s\n%s", code, errOut, report)
	}
	known, _ := os.ReadFile(e.knownHosts())
	mustEqual(t, "known_hosts", string(known), h.KnownHostsLine()+"\n")

	// Changed: always refused, and nothing on the host is touched.
	old := h.HostKeys[0]
	h.RegenerateHostKeys(t)
	report, _, code = e.enroll(t, e.args(h, "root", "--accept-new-host-key")...)
	mustEqual(t, "changed key exit", code, 1)
	mustEqual(t, "changed key", find(t, report, "connect").Message, fmt.Sprintf(
		"the host key of %s has CHANGED: it is now ssh-ed25519 %s, but %s:1 has ssh-ed25519 %s. "+
			"Someone may be intercepting the connection, or the host was reinstalled; nothing was done on it. "+
			"If you trust the new key, remove the old one (ssh-keygen -R '%s') and enroll again",
		hostport, fingerprint(t, h.HostKeys[0]), e.knownHosts(), fingerprint(t, old), hostport))
	if _, _, code := h.ExecCode(t, "test", "-e", enroll.BinaryPath); code != 1 {
		t.Fatal("the host was touched")
	}
}

func TestLoginsAndCheckMode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := testhost.Start(t, testhost.Options{Key: e.key})
	e.trust(t, h)

	// A user with passwordless sudo; --check on a fresh host changes nothing.
	report, errOut, code := e.enroll(t, e.args(h, "alice", "--check")...)
	if code != 0 {
		t.Fatalf("alice --check: %d %s\n%s", code, errOut, report)
	}
	want := append([]string{"connect=ok", "passwordless sudo=ok"}, freshRun[1:len(freshRun)-1]...)
	want = append(want, "worker health=skipped")
	mustEqual(t, "check run", statuses(t, report), want)
	mustEqual(t, "check recap", recap(t, report), map[string]int{"ok": 5, "changed": 8, "failed": 0, "skipped": 2})
	if unit := find(t, report, "worker unit"); !strings.HasPrefix(unit.Diff, "--- /etc/systemd/system/bettertest-worker.service\n+++ /etc/systemd/system/bettertest-worker.service\n@@ -0,0 +1,15 @@\n+[Unit]\n") {
		t.Fatalf("the check run's unit diff:\n%s", unit.Diff)
	}
	_, lsErr, _ := h.ExecCode(t, "ls", "-d", enroll.BinaryPath, "/etc/bettertest", enroll.UnitPath, "/usr/bin/dockerd")
	mustEqual(t, "what --check made", lsErr, "ls: cannot access '/usr/local/bin/bettertest': No such file or directory\n"+
		"ls: cannot access '/etc/bettertest': No such file or directory\n"+
		"ls: cannot access '/etc/systemd/system/bettertest-worker.service': No such file or directory\n"+
		"ls: cannot access '/usr/bin/dockerd': No such file or directory\n")
	if _, err := os.Stat(filepath.Join(e.home, ".config")); !os.IsNotExist(err) {
		t.Fatalf("--check wrote local files: %v", err)
	}

	// A user without sudo: the clear error and the fix.
	report, _, code = e.enroll(t, e.args(h, "bob", "--check")...)
	mustEqual(t, "bob exit", code, 1)
	mustEqual(t, "bob", find(t, report, "passwordless sudo").Message,
		"bob cannot run sudo without a password on 127.0.0.1 (sudo -n sh -c 'id -u': sudo: a password is required): enroll as root, "+
			"pass --ask-become-pass to type bob's sudo password, or give bob passwordless sudo for every command: echo 'bob ALL=(ALL) NOPASSWD:ALL' | sudo tee /etc/sudoers.d/bettertest-bob")

	// The default key, found in ~/.ssh, with a warning that names it.
	os.WriteFile(filepath.Join(e.home, ".ssh", "id_ed25519"), must(os.ReadFile(e.key.PrivatePath)), 0o600)
	report, errOut, code = e.enroll(t, "--json", "--check", "--port", fmt.Sprint(h.SSHPort), "--url", h.WorkerURL, "root@127.0.0.1")
	if code != 0 {
		t.Fatalf("default key: %d %s\n%s", code, errOut, report)
	}
	mustEqual(t, "default key warning", parseReport(t, report)[1].Warning,
		"logged in with "+filepath.Join(e.home, ".ssh", "id_ed25519")+", found by default: pass --key to choose the key")

	// A password, prompted for on the terminal.
	report, terminal, code := e.enrollOnPTY(t, "SSH password for carol@127.0.0.1:", testhost.CarolPassword+"\n",
		"--json", "--check", "--password", "--port", fmt.Sprint(h.SSHPort), "--url", h.WorkerURL, "carol@127.0.0.1")
	if code != 0 {
		t.Fatalf("password login exited %d: %s\n%s", code, terminal, report)
	}
	mustEqual(t, "password login", find(t, report, "connect").Message[:len("logged in as carol;")], "logged in as carol;")
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestTwoHostsAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Each host on its own loopback address with the standard ports, as two
	// machines would be, so the default --url is right for both.
	hosts := []*testhost.Host{
		testhost.Start(t, testhost.Options{Key: e.key, Loopback: testhost.FreeLoopback(t)}),
		testhost.Start(t, testhost.Options{Key: e.key, Loopback: testhost.FreeLoopback(t)}),
	}
	for _, h := range hosts {
		e.trust(t, h)
	}
	report, errOut, code := e.enroll(t, "--json", "--key", e.key.PrivatePath, "root@"+hosts[0].Loopback, "root@"+hosts[1].Loopback)
	if code != 0 {
		t.Fatalf("enroll exited %d: %s\n%s", code, errOut, report)
	}
	perHost := map[string][]string{}
	for _, l := range parseReport(t, report) {
		if l.Step != "" {
			perHost[l.Host] = append(perHost[l.Host], l.Step+"="+l.Status)
		}
	}
	for _, h := range hosts {
		mustEqual(t, h.Loopback, perHost["root@"+h.Loopback], freshRun)
		record, _ := os.ReadFile(filepath.Join(e.home, ".config", "bettertest", "workers", h.Loopback+".json"))
		mustEqual(t, "record of "+h.Loopback, string(record), fmt.Sprintf("{\n  \"name\": %q,\n  \"url\": \"http://%s:9009\"\n}\n", h.Loopback, h.Loopback))
	}
}
