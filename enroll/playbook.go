package enroll

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/aymanbagabas/go-udiff"

	"github.com/bettertest/bettertest/internal/atomicfile"
	"github.com/bettertest/bettertest/provision"
)

// Where enrollment puts things on a worker host.
const (
	BinaryPath = "/usr/local/bin/bettertest"
	TokenPath  = "/etc/bettertest/token"
	DataDir    = "/var/lib/bettertest/worker"
	UnitName   = "bettertest-worker.service"
	UnitPath   = "/etc/systemd/system/" + UnitName
	WorkerPort = "9009"
)

// Unit is the worker's systemd unit for the default --listen.
var Unit = UnitFile(":" + WorkerPort)

// UnitFile is the worker's systemd unit, listening on listen. Type=notify:
// systemctl start/restart returns once the worker has said READY=1 (it
// listens, and Docker has started a container).
func UnitFile(listen string) string {
	return `[Unit]
Description=bettertest worker: runs CI commands in containers
Documentation=https://github.com/bettertest/bettertest
After=docker.service network-online.target
Requires=docker.service
Wants=network-online.target

[Service]
Type=notify
ExecStart=` + BinaryPath + ` worker --listen ` + listen + ` --token-file ` + TokenPath + ` --data-dir ` + DataDir + `
Restart=on-failure
RestartSec=2s

[Install]
WantedBy=multi-user.target
`
}

// Spec is what one host's enrollment should converge to.
type Spec struct {
	Name, URL    string
	Listen       string // the worker's --listen, e.g. ":9009"
	Port         string // the port of Listen
	Binary       string // local path of the binary to install
	BinarySHA256 string
	BinaryArch   string // uname -m the binary runs on, e.g. x86_64
	CustomBinary bool   // Binary was named with --binary
	TokenFile    string // local copy of the worker's token
	RecordFile   string // local NAME.json: the worker's name and URL
	Record       []byte // what RecordFile should hold
	Health       func(ctx context.Context) (string, error)
}

// Want is what the playbook needs to know of a host.
func (spec Spec) Want() provision.Want {
	return provision.Want{
		Commands:   []string{"docker"},
		Packages:   wantPackages(),
		Files:      []string{BinaryPath, TokenPath},
		Contents:   []string{UnitPath},
		Units:      []string{"docker.service", UnitName},
		RunningExe: []string{UnitName},
		Ports:      []string{spec.Port + "/tcp"},
	}
}

// Local facts of the enrolling machine, in Facts.Local.
const (
	localTokenSHA = "token_sha256"
	localRecord   = "record"
)

// Steps is the worker playbook for spec.
func Steps(spec Spec) []provision.Step {
	return []provision.Step{
		{Name: "supported system", Plan: spec.planSystem},
		{Name: "finish interrupted package installs", Plan: planDpkg},
		{Name: "Docker installed", Plan: planDocker},
		{Name: "python3 installed", Plan: planPackage(func(d Distro) string { return d.Python })},
		{Name: "Docker running", Plan: planDockerService},
		{Name: "bettertest binary", Plan: spec.planBinary},
		{Name: "worker token", Plan: spec.planToken},
		{Name: "worker record", Plan: spec.planRecord},
		{Name: "worker unit", Plan: spec.planUnit},
		{Name: "firewall", Plan: spec.planFirewall},
		{Name: "worker service", Plan: spec.planService},
		{Name: "worker health", Plan: spec.planHealth},
	}
}

func (spec Spec) planSystem(f *provision.Facts) provision.Plan {
	d, refused := DistroOf(f.OS)
	switch {
	case refused != "":
		return provision.Plan{Fail: refused}
	case !f.Systemd:
		return provision.Plan{Fail: fmt.Sprintf("PID 1 of %s is not systemd: the worker runs as a systemd service, so enroll a host that boots with systemd", f.OS.PrettyName)}
	case f.PackageManager != d.PackageManager:
		return provision.Plan{Fail: fmt.Sprintf("%s is of %s, which installs with %s, but the host has no %s: install it, or enroll another host",
			f.OS.PrettyName, d.Family, d.PackageManager, d.PackageManager)}
	case f.Arch != spec.BinaryArch && spec.CustomBinary:
		return provision.Plan{Fail: fmt.Sprintf("the host is %s but --binary %s is built for %s: pass a build for %s", f.Arch, spec.Binary, spec.BinaryArch, f.Arch)}
	case f.Arch != spec.BinaryArch:
		return provision.Plan{Fail: fmt.Sprintf("the host is %s but this bettertest is built for %s: pass --binary PATH with a build for %s (GOARCH=%s go build ./cmd/bettertest)", f.Arch, spec.BinaryArch, f.Arch, goarch(f.Arch))}
	}
	return provision.Plan{Message: fmt.Sprintf("%s, %s, %s", f.OS.PrettyName, f.Arch, f.PackageManager)}
}

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// goarch names an architecture as Go does.
func goarch(unameM string) string {
	switch unameM {
	case "x86_64":
		return "amd64"
	case "aarch64":
		return "arm64"
	}
	return unameM
}

// aptInstall installs packages, first waiting for another apt or dpkg (a
// fresh VM's unattended upgrades, say) to let go of the lock. Its status
// lines on stdout are the step's progress.
func aptInstall(pkgs string) string {
	return `export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -q
apt-get -o DPkg::Lock::Timeout=600 -o APT::Status-Fd=1 install -y -q --no-install-recommends ` + pkgs
}

// planDpkg finishes what an interrupted install left: dpkg configures what
// it unpacked, and a package it left half-installed (killed while unpacking)
// is installed again, since nothing else makes it whole.
func planDpkg(f *provision.Facts) provision.Plan {
	if f.PackageManager != "apt-get" {
		return provision.Plan{Skip: "not a dpkg system"}
	}
	broken := f.Broken()
	if !f.DpkgPending && len(broken) == 0 {
		return provision.Plan{Message: "nothing pending"}
	}
	var reinstall, states []string
	for _, pkg := range broken {
		status := f.Packages[pkg]
		states = append(states, pkg+" ("+status+")")
		if strings.Contains(status, " reinstreq ") || strings.HasSuffix(status, " half-installed") {
			reinstall = append(reinstall, pkg)
		}
	}
	reason := "dpkg has unconfigured packages from an interrupted install"
	if len(states) > 0 {
		reason = "an interrupted install left " + strings.Join(states, ", ")
	}
	actions := []provision.Action{{Script: "DEBIAN_FRONTEND=noninteractive dpkg --configure -a"}}
	if len(reinstall) > 0 {
		reason += ": reinstalling " + strings.Join(reinstall, " ")
		actions = append(actions, provision.Action{Script: aptInstall("--reinstall " + strings.Join(reinstall, " "))})
	}
	return provision.Plan{
		Reason:  reason,
		Actions: actions,
		After: func(f *provision.Facts) {
			f.DpkgPending = false
			for _, pkg := range broken {
				f.Packages[pkg] = "install ok installed"
			}
		},
	}
}

// planPackage installs the package of the host's distribution that pkgOf
// names, when the package manager does not hold it as installed.
func planPackage(pkgOf func(Distro) string) func(f *provision.Facts) provision.Plan {
	return func(f *provision.Facts) provision.Plan {
		d, _ := DistroOf(f.OS) // supported: the first step checked
		pkg := pkgOf(d)
		if f.Installed(pkg) {
			return provision.Plan{Message: pkg + " is installed"}
		}
		return provision.Plan{
			Reason:  notInstalled(f, pkg) + ": installing it",
			Actions: []provision.Action{{Script: d.install(pkg)}},
			After:   func(f *provision.Facts) { f.Packages[pkg] = "install ok installed" },
		}
	}
}

func notInstalled(f *provision.Facts, pkg string) string {
	if status, known := f.Packages[pkg]; known {
		return fmt.Sprintf("%s is not whole (%s)", pkg, status)
	}
	return pkg + " is not installed"
}

// planDocker installs the distribution's Docker, and the docker command with
// it: Debian 13 moved the CLI from docker.io to docker-cli, which docker.io
// only recommends, so on apt systems it is installed where docker.io did not
// bring it. The other families' Docker packages bring the CLI themselves.
func planDocker(f *provision.Facts) provision.Plan {
	d, _ := DistroOf(f.OS) // supported: the first step checked
	if d.PackageManager != "apt-get" {
		return planPackage(func(d Distro) string { return d.Docker })(f)
	}
	installed, cli := f.Installed(d.Docker), f.Commands["docker"]
	after := func(f *provision.Facts) {
		f.Packages[d.Docker] = "install ok installed"
		f.Commands["docker"] = true
	}
	switch {
	case installed && cli:
		return provision.Plan{Message: d.Docker + " is installed, with docker on the PATH"}
	case installed:
		return provision.Plan{
			Reason:  d.Docker + " is installed but the docker command is not (this release ships it in docker-cli): installing docker-cli",
			Actions: []provision.Action{{Script: aptInstall("docker-cli")}},
			After:   after,
		}
	}
	return provision.Plan{
		Reason: notInstalled(f, d.Docker) + ": installing it",
		Actions: []provision.Action{{Script: aptInstall(d.Docker) + `
command -v docker >/dev/null || apt-get -o DPkg::Lock::Timeout=600 -o APT::Status-Fd=1 install -y -q --no-install-recommends docker-cli`}},
		After: after,
	}
}

// wantPackages are the packages whose state the playbook reads: every
// family's Docker and python3, and Debian 13's docker-cli.
func wantPackages() []string {
	pkgs := []string{"docker-cli"}
	for _, d := range Distros {
		for _, p := range []string{d.Docker, d.Python} {
			if !slices.Contains(pkgs, p) {
				pkgs = append(pkgs, p)
			}
		}
	}
	return pkgs
}

// planDockerService makes sure Docker is enabled and running, and never
// restarts or reconfigures one that already is.
func planDockerService(f *provision.Facts) provision.Plan {
	u := f.Units["docker.service"]
	if u.Active == "active" && u.Enabled == "enabled" {
		return provision.Plan{Message: "enabled and active"}
	}
	return provision.Plan{
		Reason:  fmt.Sprintf("enabling and starting docker.service (it was %s, %s)", orUnknown(u.Active), orNone(u.Enabled, "not enabled")),
		Actions: []provision.Action{{Script: "systemctl enable --now docker.service"}},
		After: func(f *provision.Facts) {
			u.Active, u.Enabled = "active", "enabled"
			f.Units["docker.service"] = u
		},
	}
}

// planBinary installs the binary by upload to a temporary file, verified,
// then renamed into place: a running binary is never overwritten in place.
func (spec Spec) planBinary(f *provision.Facts) provision.Plan {
	have := f.Files[BinaryPath].SHA256
	if have == spec.BinarySHA256 {
		return provision.Plan{Message: "sha256 " + short(have) + " is current"}
	}
	reason := "not installed"
	if have != "" {
		reason = fmt.Sprintf("sha256 %s differs from %s", short(have), short(spec.BinarySHA256))
	}
	script := `set -e
dir=$(dirname ` + BinaryPath + `)
mkdir -p "$dir"
rm -f "$dir"/.bettertest.*
tmp=$(mktemp "$dir/.bettertest.XXXXXX")
trap 'rm -f "$tmp"' EXIT HUP INT TERM
cat > "$tmp"
chmod 0755 "$tmp"
got=$(sha256sum < "$tmp" | cut -d' ' -f1)
if [ "$got" != ` + spec.BinarySHA256 + ` ]; then
	echo "the uploaded binary has sha256 $got, not ` + spec.BinarySHA256 + `: the upload was corrupted; run enroll again" >&2
	exit 1
fi
mv -f "$tmp" ` + BinaryPath
	return provision.Plan{
		Reason:  reason,
		Actions: []provision.Action{{Script: script, Stdin: func() (io.ReadCloser, error) { return os.Open(spec.Binary) }}},
		After: func(f *provision.Facts) {
			f.Files[BinaryPath] = provision.File{SHA256: spec.BinarySHA256, ModTime: time.Now(), Inode: "(new)"}
		},
	}
}

// planToken creates the token once on the host, never overwriting it, and
// keeps a local copy (mode 0600) for pipedefs and the boss.
func (spec Spec) planToken(f *provision.Facts) provision.Plan {
	remote, exists := f.Files[TokenPath]
	if exists && remote.SHA256 == f.Local[localTokenSHA] {
		return provision.Plan{Message: "exists; local copy " + spec.TokenFile + " is current"}
	}
	var actions []provision.Action
	reason := "local copy " + spec.TokenFile + " is missing or differs"
	if !exists {
		reason = "no token on the host yet"
		actions = append(actions, provision.Action{Script: `set -e
install -d -m 0700 -o root -g root ` + dirOf(TokenPath) + `
umask 077
tmp=$(mktemp ` + dirOf(TokenPath) + `/.token.XXXXXX)
trap 'rm -f "$tmp"' EXIT HUP INT TERM
head -c 32 /dev/urandom | base64 > "$tmp"
# -n: a token that exists is never replaced, even by a concurrent enrollment
mv -n "$tmp" ` + TokenPath})
	}
	actions = append(actions, provision.Action{Local: func(ctx context.Context, h provision.Host) error {
		token, err := provision.Script(ctx, h, "cat "+TokenPath)
		if err != nil {
			return fmt.Errorf("read the token back: %w", err)
		}
		return atomicfile.WriteFile(spec.TokenFile, append(token, '\n'), 0o600)
	}})
	return provision.Plan{
		Reason:  reason,
		Actions: actions,
		After: func(f *provision.Facts) {
			f.Files[TokenPath] = provision.File{SHA256: "(created)"}
			f.Local[localTokenSHA] = "(created)"
		},
	}
}

func (spec Spec) planRecord(f *provision.Facts) provision.Plan {
	if f.Local[localRecord] == string(spec.Record) {
		return provision.Plan{Message: spec.RecordFile + " is current"}
	}
	return provision.Plan{
		Reason: spec.RecordFile + " is missing or differs",
		Diff:   udiff.Unified(spec.RecordFile, spec.RecordFile, f.Local[localRecord], string(spec.Record)),
		Actions: []provision.Action{{Local: func(context.Context, provision.Host) error {
			return atomicfile.WriteFile(spec.RecordFile, spec.Record, 0o600)
		}}},
		After: func(f *provision.Facts) { f.Local[localRecord] = string(spec.Record) },
	}
}

func (spec Spec) planUnit(f *provision.Facts) provision.Plan {
	Unit := UnitFile(spec.Listen)
	have, exists := f.Files[UnitPath]
	if exists && string(have.Content) == Unit {
		return provision.Plan{Message: UnitPath + " is current"}
	}
	reason := UnitPath + " differs"
	if !exists {
		reason = UnitPath + " is missing"
	}
	return provision.Plan{
		Reason: reason,
		Diff:   udiff.Unified(UnitPath, UnitPath, string(have.Content), Unit),
		Actions: []provision.Action{{
			Script: `set -e
tmp=$(mktemp ` + UnitPath + `.XXXXXX)
trap 'rm -f "$tmp"' EXIT HUP INT TERM
cat > "$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" ` + UnitPath,
			Stdin: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(Unit)), nil },
		}},
		After: func(f *provision.Facts) {
			f.Files[UnitPath] = provision.File{SHA256: sha256Hex([]byte(Unit)), ModTime: time.Now(), Content: []byte(Unit)}
		},
	}
}

func (spec Spec) planFirewall(f *provision.Facts) provision.Plan {
	port := spec.Port + "/tcp"
	switch {
	case !f.Firewalld:
		return provision.Plan{Skip: "firewalld is not active"}
	case f.Ports[port]:
		return provision.Plan{Message: port + " is open"}
	}
	return provision.Plan{
		Reason:  "firewalld blocks " + port,
		Actions: []provision.Action{{Script: "firewall-cmd --permanent --add-port=" + port + " && firewall-cmd --add-port=" + port}},
		After:   func(f *provision.Facts) { f.Ports[port] = true },
	}
}

// planService starts or restarts the worker when it is not running what is
// installed: the running executable's inode is the installed file's (a
// replaced binary is a new inode). That is observed, not remembered, so a run
// killed between installing and restarting is finished by the next one.
func (spec Spec) planService(f *provision.Facts) provision.Plan {
	u := f.Units[UnitName]
	unit := f.Files[UnitPath]
	var reason string
	switch {
	case u.Active != "active":
		reason = "the worker is " + orUnknown(u.Active)
	case u.ExeInode != f.Files[BinaryPath].Inode:
		reason = "the worker runs an older binary"
	// To the second: systemd prints no finer start time.
	case u.NeedReload || unit.ModTime.Truncate(time.Second).After(u.Started):
		reason = "the unit changed since the worker started"
	case u.Enabled != "enabled":
		return provision.Plan{
			Reason:  "the worker is not enabled at boot",
			Actions: []provision.Action{{Script: "systemctl enable --quiet " + UnitName}},
			After:   func(f *provision.Facts) { u.Enabled = "enabled"; f.Units[UnitName] = u },
		}
	default:
		return provision.Plan{Message: "running the installed binary and unit"}
	}
	return provision.Plan{
		Reason: reason + ": restarting it",
		// Type=notify: restart returns once the worker is ready, or fails.
		// A worker that cannot start is left stopped, not restarting every
		// 2 s, with what holds its port in case that was it.
		Actions: []provision.Action{{Script: `systemctl daemon-reload
if ! systemctl restart ` + UnitName + `; then
	systemctl stop ` + UnitName + `
	systemctl disable --quiet ` + UnitName + `
	journalctl -u ` + UnitName + ` -n 15 --no-pager -o cat >&2
	echo "the worker does not start; it is left stopped and disabled. What listens on port ` + spec.Port + ` (ss -ltnp):" >&2
	ss -ltnp 'sport = :` + spec.Port + `' >&2
	exit 1
fi
systemctl enable --quiet ` + UnitName}},
		After: func(f *provision.Facts) {
			f.Units[UnitName] = provision.Unit{Active: "active", Enabled: "enabled", ExeInode: f.Files[BinaryPath].Inode, Started: time.Now()}
		},
	}
}

func (spec Spec) planHealth(*provision.Facts) provision.Plan {
	return provision.Plan{Verify: spec.Health}
}

func dirOf(path string) string { return path[:strings.LastIndexByte(path, '/')] }

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
