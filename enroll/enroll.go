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
	"strings"
	"sync"
	"time"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/provision"
)

// Config is one run of `bettertest enroll`.
type Config struct {
	Targets []string // USER@HOST; with Inventory, groups or hosts of it
	// Inventory is an Ansible inventory file to take hosts from (-i).
	Inventory  string
	Forks      int  // hosts worked on at once; 0: DefaultForks
	Remove     bool // unenroll instead: remove the worker from the hosts
	Login      Login
	Name, URL  string // for a single target; default: the host, http://HOST:9009
	Check      bool   // report what would change, change nothing
	JSON       bool   // report as JSON lines
	Binary     string // the binary to install; default: this one
	WorkersDir string // where workers' records and tokens are kept locally
	Out        io.Writer
	Color      bool
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// DefaultForks is how many hosts are worked on at once, as in Ansible.
const DefaultForks = 10

// target is one host to work on, and how to log in to it.
type target struct {
	label      string // names the host in the report: USER@HOST, or its inventory name
	user, host string
	login      Login
	name       string // the worker's name; "": Config.Name, or the host
}

// targets lists the hosts that cfg names, on the command line or in its inventory.
func (cfg Config) targets() ([]target, error) {
	if cfg.Inventory == "" {
		if len(cfg.Targets) == 0 {
			return nil, errors.New("name at least one host to enroll: bettertest enroll USER@HOST")
		}
		var out []target
		for _, t := range cfg.Targets {
			user, host, err := splitTarget(t)
			if err != nil {
				return nil, err
			}
			out = append(out, target{label: t, user: user, host: host, login: cfg.Login})
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
		t := target{label: h.Name, user: h.User, host: h.Address, login: cfg.Login, name: h.Name}
		if t.user == "" {
			if t.user, err = currentUser(); err != nil {
				return nil, err
			}
		}
		if h.Port != 0 {
			t.login.Port = h.Port
		}
		if h.KeyFile != "" {
			t.login.KeyFile = h.KeyFile
		}
		if strings.Contains(t.host, ":") {
			t.host = "[" + strings.Trim(t.host, "[]") + "]"
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
	rep := &reporter{out: cfg.Out, json: cfg.JSON, color: cfg.Color}
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
			spec, err := cfg.spec(t, sum, arch, custom)
			if err == nil {
				err = runHost(ctx, cfg, t, spec, rep, res)
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

func (cfg Config) spec(t target, sum, arch string, custom bool) (Spec, error) {
	name, url := cfg.Name, cfg.URL
	if name == "" {
		name = t.name
	}
	if name == "" {
		name = strings.Trim(t.host, "[]")
	}
	if !validName.MatchString(name) {
		return Spec{}, fmt.Errorf("worker name %q names files, so it may only hold letters, digits, '.', '-' and '_': pass --name NAME", name)
	}
	if url == "" {
		url = "http://" + net.JoinHostPort(strings.Trim(t.host, "[]"), WorkerPort)
	}
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return Spec{}, fmt.Errorf("--url %q must start with http:// or https://", url)
	}
	record, _ := json.MarshalIndent(bettertest.WorkerRecord{Name: name, URL: url}, "", "  ")
	spec := Spec{
		Name: name, URL: url,
		Binary: cfg.Binary, BinarySHA256: sum, BinaryArch: arch, CustomBinary: custom,
		TokenFile:  filepath.Join(cfg.WorkersDir, name+".token"),
		RecordFile: filepath.Join(cfg.WorkersDir, name+".json"),
		Record:     append(record, '\n'),
	}
	spec.Health = func(ctx context.Context) (string, error) { return checkHealth(ctx, url, spec.TokenFile) }
	return spec, nil
}

// runHost connects, gathers facts and runs the worker playbook on one host,
// or with cfg.Remove the removal playbook.
func runHost(ctx context.Context, cfg Config, t target, spec Spec, rep *reporter, res *hostResult) error {
	note := func(ev provision.Event) {
		res.recap.Add(ev.Status)
		rep.event(t.label, ev)
	}
	fail := func(step string, start time.Time, err error) error {
		note(provision.Event{Step: step, Status: provision.Failed, Message: err.Error(), Duration: time.Since(start)})
		rep.recap(t.label, res.recap, spec, cfg.Check || cfg.Remove, false)
		return errReported
	}

	user, host := t.user, t.host
	start := time.Now()
	conn, err := dial(ctx, user, host, t.login)
	if conn != nil {
		for _, w := range conn.warnings {
			rep.warn(t.label, w)
		}
	}
	if err != nil {
		res.unreachable = true
		return fail("connect", start, err)
	}
	defer conn.client.Close()
	note(provision.Event{Step: "connect", Status: provision.OK, Duration: time.Since(start),
		Message: fmt.Sprintf("logged in as %s; host key %s", user, conn.fingerprint)})
	if conn.keyUsed != "" {
		rep.warn(t.label, fmt.Sprintf("logged in with %s, found by default: pass --key to choose the key", conn.keyUsed))
	}

	h := &sshHost{client: conn.client, sudo: user != "root"}
	if h.sudo {
		start = time.Now()
		out, err := (&sshHost{client: conn.client}).Run(ctx, "sudo -n true", nil)
		if err == nil && out.Code != 0 {
			err = fmt.Errorf("%s cannot run sudo without a password on %s (sudo -n true: %s): enroll as root, or give %s passwordless sudo: echo '%s ALL=(ALL) NOPASSWD:ALL' | sudo tee /etc/sudoers.d/bettertest-%s",
				user, host, strings.TrimSpace(provision.Tail(out.Stderr, 1)), user, user, user)
		}
		if err != nil {
			return fail("passwordless sudo", start, err)
		}
		note(provision.Event{Step: "passwordless sudo", Status: provision.OK, Duration: time.Since(start)})
	}

	want, steps := Want, Steps(spec)
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

	_, err = provision.Playbook{Steps: steps, Check: cfg.Check}.Run(ctx, h, facts, note)
	rep.recap(t.label, res.recap, spec, cfg.Check || cfg.Remove, err == nil)
	if err != nil {
		return errReported
	}
	return nil
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
