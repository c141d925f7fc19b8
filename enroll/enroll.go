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
	// Targets are hosts as ssh names them (USER@HOST, USER@[::1]:PORT,
	// ssh://USER@HOST:PORT, ssh_config aliases); with Inventory, groups or
	// hosts of it.
	Targets []string
	// Inventory is an Ansible inventory file to take hosts from (-i).
	Inventory  string
	Forks      int  // hosts worked on at once; 0: DefaultForks
	Remove     bool // unenroll instead: remove the worker from the hosts
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
	Terminal   bool // Out is a terminal: progress is shown as a live line
	// AskBecomePass reads sudo's password from the terminal
	// (--ask-become-pass); nil: sudo must not need one. Run asks once, for
	// the first host whose sudo wants a password, and all hosts share it.
	AskBecomePass func() ([]byte, error)
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// DefaultForks is how many hosts are worked on at once, as in Ansible.
const DefaultForks = 10

// target is one host to work on, as the command line or the inventory says
// it; Login.route fills in the rest (ssh_config, --jump, the defaults) for
// both alike.
type target struct {
	label string  // names the host in the report: as written, or its inventory name
	addr  Address // what was said of the host; port 0 and user "": not said
	login Login   // cfg.Login, with the inventory's key file
	name  string  // the worker's name; "": Config.Name, or the host as named
}

// targets lists the hosts that cfg names, on the command line or in its inventory.
func (cfg Config) targets() ([]target, error) {
	if cfg.Inventory == "" {
		if len(cfg.Targets) == 0 {
			return nil, errors.New("name at least one host to enroll: bettertest enroll USER@HOST")
		}
		var out []target
		for _, t := range cfg.Targets {
			a, err := ParseAddress(t)
			if err != nil {
				return nil, err
			}
			out = append(out, target{label: t, addr: a, login: cfg.Login})
		}
		return out, nil
	}
	inv, err := ReadInventory(cfg.Inventory)
	if err != nil {
		return nil, err
	}
	hosts, err := inv.Select(cfg.Targets)
	if err != nil {
		return nil, err
	}
	var out []target
	for _, h := range hosts {
		// As Ansible's ssh connection: ansible_host is the host given to
		// ssh, so ssh_config's blocks for it apply; ansible_user and
		// ansible_port are said outright, as a target's own USER@ and :PORT.
		t := target{label: h.Name, login: cfg.Login, name: WorkerName(strings.Trim(h.Name, "[]")),
			addr: Address{User: h.User, Host: strings.Trim(h.Address, "[]"), Port: h.Port}}
		if h.KeyFile != "" {
			t.login.KeyFile = h.KeyFile
			t.login.keySource = fmt.Sprintf("ansible_ssh_private_key_file of %s in %s:", h.Name, cfg.Inventory)
		}
		out = append(out, t)
	}
	return out, nil
}

// Run enrolls (or, with Remove, unenrolls) every target, Forks at a time,
// each with its own report, then prints a recap table. It returns an error
// when any failed.
func Run(ctx context.Context, cfg Config) error {
	targets, err := cfg.targets()
	if err != nil {
		return err
	}
	if len(targets) > 1 && (cfg.Name != "" || cfg.URL != "") {
		return errors.New("--name and --url describe one worker: enroll one host at a time to use them")
	}
	if cfg.Forks == 0 {
		cfg.Forks = DefaultForks
	}
	if cfg.Forks < 0 {
		return fmt.Errorf("--forks %d: give how many hosts to work on at once, at least 1", cfg.Forks)
	}
	var sum, arch string
	custom := cfg.Binary != ""
	if !cfg.Remove {
		if !custom {
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find this binary to install it: %w; pass --binary PATH", err)
			}
			cfg.Binary = self
		}
		if sum, arch, err = inspectBinary(cfg.Binary); err != nil {
			return err
		}
	}
	if cfg.AskBecomePass != nil {
		cfg.AskBecomePass = sync.OnceValues(cfg.AskBecomePass)
	}
	rep := &reporter{out: cfg.Out, json: cfg.JSON, color: cfg.Color, terminal: cfg.Terminal}
	results := make([]hostResult, len(targets))
	forks := make(chan struct{}, cfg.Forks)
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			forks <- struct{}{}
			defer func() { <-forks }()
			res := &results[i]
			res.host = t.label
			route, err := t.login.route(t.addr)
			var spec Spec
			if err == nil {
				spec, err = cfg.spec(t, route, sum, arch, custom)
			}
			if err == nil {
				err = runHost(ctx, cfg, t, route, spec, rep, res)
			}
			if err != nil {
				if err != errReported {
					res.recap.Add(provision.Failed)
				}
				rep.fail(t.label, err)
				res.failed = true
			}
		}()
	}
	wg.Wait()
	rep.table(results)
	var failed []string
	for _, r := range results {
		if r.failed {
			failed = append(failed, r.host)
		}
	}
	if len(failed) > 0 {
		what := "enrollment"
		if cfg.Remove {
			what = "unenrollment"
		}
		return fmt.Errorf("%s failed on %d of %d hosts (%s): see the report above", what, len(failed), len(targets), strings.Join(failed, ", "))
	}
	return nil
}

// hostResult is one host's line of the recap table.
type hostResult struct {
	host        string
	recap       provision.Recap
	unreachable bool // the host could not be logged in to
	failed      bool
}

func currentUser() (string, error) {
	u, err := user.Current()
	if err != nil {
		return "", fmt.Errorf("who is logging in? %w: name the host as USER@HOST", err)
	}
	return u.Username, nil
}

func (cfg Config) spec(t target, route Route, sum, arch string, custom bool) (Spec, error) {
	name, url := cfg.Name, cfg.URL
	if name == "" {
		name = t.name
	}
	if name == "" {
		// An ssh_config alias names the worker as the user knows the host.
		name = WorkerName(route.Target.Alias)
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
		url = WorkerURL(route.Target.Host, port)
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
	spec.Health = func(ctx context.Context) (string, error) { return checkHealth(ctx, url, port, spec.TokenFile) }
	return spec, nil
}

// runHost connects, gathers facts and runs the worker playbook on one host,
// or with cfg.Remove the removal playbook.
func runHost(ctx context.Context, cfg Config, t target, route Route, spec Spec, rep *reporter, res *hostResult) error {
	note := func(ev provision.Event) {
		res.recap.Add(ev.Status)
		rep.event(t.label, ev)
	}
	fail := func(step string, start time.Time, err error) error {
		note(provision.Event{Step: step, Status: provision.Failed, Message: err.Error(), Duration: time.Since(start)})
		rep.recap(t.label, res.recap, spec, cfg.Check || cfg.Remove, false)
		return errReported
	}

	user, host := route.Target.User, route.Target.Host
	start := time.Now()
	conn, err := dial(ctx, route, t.login)
	if conn != nil {
		for _, w := range conn.warnings {
			rep.warn(t.label, w)
		}
	}
	if err != nil {
		res.unreachable = true
		return fail("connect", start, err)
	}
	defer conn.Close()
	msg := fmt.Sprintf("logged in as %s; host key %s", user, conn.fingerprint)
	for _, j := range route.Jumps {
		msg += "; through " + j.String()
	}
	note(provision.Event{Step: "connect", Status: provision.OK, Duration: time.Since(start), Message: msg})
	if conn.keyUsed != "" {
		rep.warn(t.label, fmt.Sprintf("logged in with %s, found by default: pass --key to choose the key", conn.keyUsed))
	}

	lockWait := cfg.LockWait
	if lockWait == 0 {
		lockWait = DefaultLockWait
	}
	h := &sshHost{client: conn.client, sudo: user != "root", lockWait: lockWait}
	if h.sudo {
		start = time.Now()
		step, msg, err := cfg.becomeRoot(ctx, h, user, host)
		if err != nil {
			return fail(step, start, err)
		}
		note(provision.Event{Step: step, Status: provision.OK, Duration: time.Since(start), Message: msg})
	}

	want, steps := spec.Want(), Steps(spec)
	if cfg.Remove {
		want, steps = RemoveWant, RemoveSteps(spec)
	}
	start = time.Now()
	facts, err := provision.Gather(ctx, h, want)
	if err != nil {
		return fail("gather facts", start, err)
	}
	facts.Local[localTokenSHA] = fileSHA256(spec.TokenFile)
	if b, err := os.ReadFile(spec.RecordFile); err == nil {
		facts.Local[localRecord] = string(b)
	}
	note(provision.Event{Step: "gather facts", Status: provision.OK, Duration: time.Since(start)})

	h.progress = func(p progress) { rep.progress(t.label, h.step, h.stepStart, p) }
	for i, s := range steps {
		steps[i].Plan = func(f *provision.Facts) provision.Plan {
			// A step's actions run right after its plan: the progress they
			// show is the step's.
			h.step, h.stepStart = s.Name, time.Now()
			return s.Plan(f)
		}
	}
	_, err = provision.Playbook{Steps: steps, Check: cfg.Check}.Run(ctx, h, facts, note)
	rep.recap(t.label, res.recap, spec, cfg.Check || cfg.Remove, err == nil)
	if err != nil {
		return errReported
	}
	return nil
}

// sudoShell is what enrollment needs of sudo: every step is a shell script
// that runs as root.
const sudoShell = "sh -c 'id -u'"

// becomeRoot proves that user may run a shell as root through sudo, as every
// step does: without a password, or else with the one --ask-become-pass
// reads (then h uses it). When sudo allows only some commands, it says which.
func (cfg Config) becomeRoot(ctx context.Context, h *sshHost, user, host string) (step, msg string, err error) {
	out, err := h.exec(ctx, "sudo -n "+sudoShell, nil, nil)
	if err != nil {
		return "passwordless sudo", "", err
	}
	if out.Code == 0 && string(out.Stdout) == "0\n" {
		return "passwordless sudo", "", nil
	}
	why := strings.TrimSpace(provision.Tail(out.Stderr, 1))
	if why == "" {
		why = fmt.Sprintf("exit status %d, output %q", out.Code, out.Stdout)
	}
	passwordRequired := strings.Contains(why, "password is required")
	if cfg.AskBecomePass != nil && passwordRequired {
		return cfg.becomeWithPassword(ctx, h, user, host)
	}
	fix := fmt.Sprintf("or give %s passwordless sudo for every command: echo '%s ALL=(ALL) NOPASSWD:ALL' | sudo tee /etc/sudoers.d/bettertest-%s", user, user, user)
	list, err := h.exec(ctx, "sudo -n -l", nil, nil)
	if err == nil && list.Code == 0 {
		var allowed []string
		for _, l := range strings.Split(string(list.Stdout), "\n") {
			if strings.HasPrefix(l, "    (") {
				allowed = append(allowed, strings.TrimSpace(l))
			}
		}
		return "passwordless sudo", "", fmt.Errorf("%s may run only some commands with sudo on %s (%s), but enrollment runs every step as a shell script as root (sudo -n %s: %s): enroll as root, %s",
			user, host, strings.Join(allowed, "; "), sudoShell, why, fix)
	}
	if passwordRequired {
		fix = fmt.Sprintf("pass --ask-become-pass to type %s's sudo password, %s", user, fix)
	}
	return "passwordless sudo", "", fmt.Errorf("%s cannot run sudo without a password on %s (sudo -n %s: %s): enroll as root, %s", user, host, sudoShell, why, fix)
}

// becomeWithPassword asks for sudo's password once and proves that it lets
// user run a shell as root on host.
func (cfg Config) becomeWithPassword(ctx context.Context, h *sshHost, user, host string) (step, msg string, err error) {
	password, err := cfg.AskBecomePass()
	if err != nil {
		return "sudo", "", err
	}
	h.password = password
	out, err := h.asRoot(ctx, sudoShell, nil)
	if err == nil && (out.Code != 0 || string(out.Stdout) != "0\n") {
		err = fmt.Errorf("sudo on %s refused the password typed for --ask-become-pass (%s): run again and type %s's password there, or check that %s may sudo (sudo -l)",
			host, oneLine(out.Stderr), user, user)
	}
	if err != nil {
		return "sudo", "", err
	}
	return "sudo", "with the password from --ask-become-pass", nil
}

// oneLine joins the non-empty lines of a command's output with "; ".
func oneLine(b []byte) string {
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}

// errReported is a failure already shown in the host's report.
var errReported = errors.New("reported")

func checkHealth(ctx context.Context, url, port, tokenFile string) (string, error) {
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
		return "", fmt.Errorf("GET %s/health: %w: the worker runs, but this machine cannot reach it there; open port %s on the way, or pass --url with an address that reaches it", url, err, port)
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
