// Package enroll turns a Linux host reachable over SSH into a running
// bettertest worker: the worker playbook (playbook.go), the SSH side (ssh.go)
// and the report (report.go).
package enroll

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/provision"
)

// Config is one run of `bettertest enroll`.
type Config struct {
	Targets    []string // USER@HOST
	Login      Login
	Name, URL  string        // for a single target; default: the host, http://HOST:PORT
	Listen     string        // the worker's --listen on the host; default ":9009"
	LockWait   time.Duration // bounds the wait for the host's enrollment lock; default DefaultLockWait
	Check      bool          // report what would change, change nothing
	JSON       bool          // report as JSON lines
	Binary     string        // the binary to install; default: this one
	WorkersDir string        // where workers' records and tokens are kept locally
	Out        io.Writer
	Color      bool
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Run enrolls every target in parallel. It returns an error when any failed.
func Run(ctx context.Context, cfg Config) error {
	if len(cfg.Targets) == 0 {
		return errors.New("name at least one host to enroll: bettertest enroll USER@HOST")
	}
	if len(cfg.Targets) > 1 && (cfg.Name != "" || cfg.URL != "") {
		return errors.New("--name and --url describe one worker: enroll one host at a time to use them")
	}
	custom := cfg.Binary != ""
	if !custom {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find this binary to install it: %w; pass --binary PATH", err)
		}
		cfg.Binary = self
	}
	sum, arch, err := inspectBinary(cfg.Binary)
	if err != nil {
		return err
	}
	rep := &reporter{out: cfg.Out, json: cfg.JSON, color: cfg.Color}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	for _, target := range cfg.Targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			spec, err := cfg.spec(target, sum, arch, custom)
			if err == nil {
				err = enrollHost(ctx, cfg, target, spec, rep)
			}
			if err != nil {
				rep.fail(target, err)
				mu.Lock()
				failed = append(failed, target)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(failed) > 0 {
		return fmt.Errorf("enrollment failed on %d of %d hosts (%s): see the report above", len(failed), len(cfg.Targets), strings.Join(failed, ", "))
	}
	return nil
}

func splitTarget(target string) (user, host string, err error) {
	user, host, found := strings.Cut(target, "@")
	if !found {
		host = target
		u, err := currentUser()
		if err != nil {
			return "", "", err
		}
		user = u
	}
	if user == "" || host == "" || strings.ContainsAny(target, " /") {
		return "", "", fmt.Errorf("%q is not USER@HOST: name the host as user@host or host", target)
	}
	return user, host, nil
}

func currentUser() (string, error) {
	u, err := user.Current()
	if err != nil {
		return "", fmt.Errorf("who is logging in? %w: name the host as USER@HOST", err)
	}
	return u.Username, nil
}

func (cfg Config) spec(target, sum, arch string, custom bool) (Spec, error) {
	_, host, err := splitTarget(target)
	if err != nil {
		return Spec{}, err
	}
	name, url := cfg.Name, cfg.URL
	if name == "" {
		name = strings.Trim(host, "[]")
	}
	if !validName.MatchString(name) {
		return Spec{}, fmt.Errorf("worker name %q names files, so it may only hold letters, digits, '.', '-' and '_': pass --name NAME", name)
	}
	listen := cfg.Listen
	if listen == "" {
		listen = ":" + WorkerPort
	}
	_, port, err := net.SplitHostPort(listen)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 1 || n > 65535 {
		return Spec{}, fmt.Errorf("--listen %q is not [ADDRESS]:PORT with a port from 1 to 65535, e.g. :9010", listen)
	}
	if url == "" {
		url = "http://" + net.JoinHostPort(strings.Trim(host, "[]"), port)
	}
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return Spec{}, fmt.Errorf("--url %q must start with http:// or https://", url)
	}
	record, _ := json.MarshalIndent(bettertest.WorkerRecord{Name: name, URL: url}, "", "  ")
	spec := Spec{
		Name: name, URL: url, Listen: listen, Port: port,
		Binary: cfg.Binary, BinarySHA256: sum, BinaryArch: arch, CustomBinary: custom,
		TokenFile:  filepath.Join(cfg.WorkersDir, name+".token"),
		RecordFile: filepath.Join(cfg.WorkersDir, name+".json"),
		Record:     append(record, '\n'),
	}
	spec.Health = func(ctx context.Context) (string, error) { return checkHealth(ctx, url, spec.TokenFile) }
	return spec, nil
}

// enrollHost connects, gathers facts and runs the playbook on one host.
func enrollHost(ctx context.Context, cfg Config, target string, spec Spec, rep *reporter) error {
	var recap provision.Recap
	note := func(ev provision.Event) {
		recap.Add(ev.Status)
		rep.event(target, ev)
	}
	fail := func(step string, start time.Time, err error) error {
		note(provision.Event{Step: step, Status: provision.Failed, Message: err.Error(), Duration: time.Since(start)})
		rep.recap(target, recap, spec, cfg.Check, false)
		return errReported
	}

	user, host, _ := splitTarget(target)
	start := time.Now()
	conn, err := dial(ctx, user, host, cfg.Login)
	if conn != nil {
		for _, w := range conn.warnings {
			rep.warn(target, w)
		}
	}
	if err != nil {
		return fail("connect", start, err)
	}
	defer conn.client.Close()
	note(provision.Event{Step: "connect", Status: provision.OK, Duration: time.Since(start),
		Message: fmt.Sprintf("logged in as %s; host key %s", user, conn.fingerprint)})
	if conn.keyUsed != "" {
		rep.warn(target, fmt.Sprintf("logged in with %s, found by default: pass --key to choose the key", conn.keyUsed))
	}

	lockWait := cfg.LockWait
	if lockWait == 0 {
		lockWait = DefaultLockWait
	}
	h := &sshHost{client: conn.client, sudo: user != "root", lockWait: lockWait}
	if h.sudo {
		start = time.Now()
		if err := checkSudo(ctx, h, user, host); err != nil {
			return fail("passwordless sudo", start, err)
		}
		note(provision.Event{Step: "passwordless sudo", Status: provision.OK, Duration: time.Since(start)})
	}

	start = time.Now()
	facts, err := provision.Gather(ctx, h, spec.Want())
	if err != nil {
		return fail("gather facts", start, err)
	}
	facts.Local[localTokenSHA] = fileSHA256(spec.TokenFile)
	if b, err := os.ReadFile(spec.RecordFile); err == nil {
		facts.Local[localRecord] = string(b)
	}
	note(provision.Event{Step: "gather facts", Status: provision.OK, Duration: time.Since(start)})

	_, err = provision.Playbook{Steps: Steps(spec), Check: cfg.Check}.Run(ctx, h, facts, note)
	rep.recap(target, recap, spec, cfg.Check, err == nil)
	if err != nil {
		return errReported
	}
	return nil
}

// sudoShell is what enrollment needs of sudo: every step is a shell script
// that runs as root.
const sudoShell = "sudo -n sh -c 'id -u'"

// checkSudo proves that user may run a shell as root without a password, as
// every step does. When sudo allows only some commands, it says which.
func checkSudo(ctx context.Context, h *sshHost, user, host string) error {
	out, err := h.exec(ctx, sudoShell, nil)
	if err != nil {
		return err
	}
	if out.Code == 0 && string(out.Stdout) == "0\n" {
		return nil
	}
	why := strings.TrimSpace(provision.Tail(out.Stderr, 1))
	if why == "" {
		why = fmt.Sprintf("exit status %d, output %q", out.Code, out.Stdout)
	}
	fix := fmt.Sprintf("enroll as root, or give %s passwordless sudo for every command: echo '%s ALL=(ALL) NOPASSWD:ALL' | sudo tee /etc/sudoers.d/bettertest-%s", user, user, user)
	list, err := h.exec(ctx, "sudo -n -l", nil)
	if err == nil && list.Code == 0 {
		var allowed []string
		for _, l := range strings.Split(string(list.Stdout), "\n") {
			if strings.HasPrefix(l, "    (") {
				allowed = append(allowed, strings.TrimSpace(l))
			}
		}
		return fmt.Errorf("%s may run only some commands with sudo on %s (%s), but enrollment runs every step as a shell script as root (%s: %s): %s",
			user, host, strings.Join(allowed, "; "), sudoShell, why, fix)
	}
	return fmt.Errorf("%s cannot run sudo without a password on %s (%s: %s): %s", user, host, sudoShell, why, fix)
}

// errReported is a failure already shown in the host's report.
var errReported = errors.New("reported")

func checkHealth(ctx context.Context, url, tokenFile string) (string, error) {
	token, err := bettertest.ReadTokenFile(tokenFile)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+string(token))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s/health: %w: the worker runs, but this machine cannot reach it there; open port %s on the way, or pass --url with an address that reaches it", url, err, WorkerPort)
	}
	defer resp.Body.Close()
	var h bettertest.Health
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&h); err != nil || resp.StatusCode != http.StatusOK || !h.Ready {
		return "", fmt.Errorf("GET %s/health answered %s (ready %v, %s): see journalctl -u %s on the host", url, resp.Status, h.Ready, h.Error, UnitName)
	}
	return fmt.Sprintf("ready at %s: version %s, Docker %s, capacity %d", url, h.Version, h.Docker, h.Capacity), nil
}

// inspectBinary returns the binary's sha256 and the architecture it runs on,
// as uname -m names it.
func inspectBinary(path string) (sum, arch string, err error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", "", fmt.Errorf("binary %s is not a Linux executable (%v): pass --binary with a bettertest built for the host", path, err)
	}
	machine := f.Machine
	f.Close()
	switch machine {
	case elf.EM_X86_64:
		arch = "x86_64"
	case elf.EM_AARCH64:
		arch = "aarch64"
	default:
		return "", "", fmt.Errorf("binary %s is built for %s, which enroll does not know: build for amd64 or arm64", path, machine)
	}
	sum = fileSHA256(path)
	if sum == "" {
		return "", "", fmt.Errorf("read %s to install it: cannot open it", path)
	}
	return sum, arch, nil
}

// fileSHA256 is the file's sha256, or "" when it cannot be read.
func fileSHA256(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}
