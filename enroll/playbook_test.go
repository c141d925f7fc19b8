package enroll

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bettertest/bettertest/provision"
)

const sha = "1111111111111111111111111111111111111111111111111111111111111111"

func testSpec() Spec {
	return Spec{
		Name: "w1", URL: "http://w1:9009", Listen: ":9009", Port: "9009", Binary: "/tmp/bettertest", BinarySHA256: sha, BinaryArch: "x86_64",
		TokenFile: "/home/u/.config/bettertest/workers/w1.token", RecordFile: "/home/u/.config/bettertest/workers/w1.json",
		Record: []byte("{\n  \"name\": \"w1\",\n  \"url\": \"http://w1:9009\"\n}\n"),
		Health: func(context.Context) (string, error) { return "ready", nil },
	}
}

func freshFacts(id, idLike, pretty, pm string) *provision.Facts {
	return &provision.Facts{
		OS:   provision.OSRelease{ID: id, IDLike: strings.Fields(idLike), VersionID: "12", PrettyName: pretty},
		Arch: "x86_64", Systemd: true, PackageManager: pm,
		Commands: map[string]bool{}, Packages: map[string]string{}, Files: map[string]provision.File{}, Ports: map[string]bool{}, Local: map[string]string{},
		Units: map[string]provision.Unit{"docker.service": {Active: "inactive"}, UnitName: {Active: "inactive"}},
	}
}

type step struct {
	Name   string
	Status provision.Status
	Msg    string
}

// checkRun plans every step for f in check mode and returns what each says.
func checkRun(t *testing.T, spec Spec, f *provision.Facts) []step {
	t.Helper()
	var got []step
	_, _ = provision.Playbook{Steps: Steps(spec), Check: true}.Run(context.Background(), nil, f, func(ev provision.Event) {
		got = append(got, step{ev.Step, ev.Status, ev.Message})
	})
	return got
}

func TestFreshDebianHost(t *testing.T) {
	got := checkRun(t, testSpec(), freshFacts("debian", "", "Debian GNU/Linux 12 (bookworm)", "apt-get"))
	want := []step{
		{"supported system", provision.OK, "Debian GNU/Linux 12 (bookworm), x86_64, apt-get"},
		{"finish interrupted package installs", provision.OK, "nothing pending"},
		{"Docker installed", provision.Changed, "would change: docker.io is not installed: installing it"},
		{"python3 installed", provision.Changed, "would change: python3 is not installed: installing it"},
		{"Docker running", provision.Changed, "would change: enabling and starting docker.service (it was inactive, not enabled)"},
		{"bettertest binary", provision.Changed, "would change: not installed"},
		{"worker token", provision.Changed, "would change: no token on the host yet"},
		{"worker record", provision.Changed, "would change: /home/u/.config/bettertest/workers/w1.json is missing or differs"},
		{"worker unit", provision.Changed, "would change: /etc/systemd/system/bettertest-worker.service is missing"},
		{"firewall", provision.Skipped, "firewalld is not active"},
		{"worker service", provision.Changed, "would change: the worker is inactive: restarting it"},
		{"worker health", provision.Skipped, "check mode: the host would change first"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got\n%v\nwant\n%v", got, want)
	}
}

func TestEnrolledHostIsAllOK(t *testing.T) {
	f := freshFacts("debian", "", "Debian GNU/Linux 12 (bookworm)", "apt-get")
	started := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	f.Commands = map[string]bool{"docker": true}
	f.Packages = map[string]string{"docker.io": "install ok installed", "python3": "install ok installed"}
	f.Files = map[string]provision.File{
		BinaryPath: {SHA256: sha, Inode: "8:1"}, TokenPath: {SHA256: "tok"},
		UnitPath: {SHA256: "u", Content: []byte(Unit), ModTime: started.Add(-time.Minute)},
	}
	f.Local = map[string]string{localTokenSHA: "tok", localRecord: string(testSpec().Record)}
	f.Units = map[string]provision.Unit{
		"docker.service": {Active: "active", Enabled: "enabled"},
		UnitName:         {Active: "active", Enabled: "enabled", ExeInode: "8:1", Started: started},
	}
	for _, s := range checkRun(t, testSpec(), f) {
		if s.Status != provision.OK && s.Status != provision.Skipped {
			t.Errorf("step %q: %s %s", s.Name, s.Status, s.Msg)
		}
	}
}

// The packages of each distribution: see distro_test.go. On apt hosts,
// docker-cli comes with docker.io where docker.io lacks the docker command
// (Debian 13).
func TestAptAndDpkg(t *testing.T) {
	withCLI := aptInstall("docker.io") + "\ncommand -v docker >/dev/null || apt-get -o DPkg::Lock::Timeout=600 -o APT::Status-Fd=1 install -y -q --no-install-recommends docker-cli"
	for _, c := range []struct{ id, idLike string }{{"debian", ""}, {"ubuntu", "debian"}} {
		if p := planDocker(freshFacts(c.id, c.idLike, c.id, "apt-get")); len(p.Actions) != 1 || p.Actions[0].Script != withCLI {
			t.Errorf("%s: %+v", c.id, p.Actions)
		}
	}
	const wantApt = "export DEBIAN_FRONTEND=noninteractive\napt-get -o DPkg::Lock::Timeout=600 update -q\n" +
		"apt-get -o DPkg::Lock::Timeout=600 -o APT::Status-Fd=1 install -y -q --no-install-recommends docker.io"
	if got := aptInstall("docker.io"); got != wantApt {
		t.Fatalf("apt script:\n%s", got)
	}
	// dpkg recovery applies to apt hosts only.
	fedora := freshFacts("fedora", "", "Fedora Linux 43", "dnf")
	if p := planDpkg(fedora); p.Skip != "not a dpkg system" {
		t.Fatalf("fedora dpkg plan: %+v", p)
	}
}

func TestRefusedHosts(t *testing.T) {
	for name, c := range map[string]struct {
		mutate func(f *provision.Facts)
		custom bool
		want   string
	}{
		"no systemd": {func(f *provision.Facts) { f.Systemd = false }, false,
			"PID 1 of Debian GNU/Linux 12 (bookworm) is not systemd: the worker runs as a systemd service, so enroll a host that boots with systemd"},
		"alpine": {func(f *provision.Facts) {
			f.OS = provision.OSRelease{ID: "alpine", PrettyName: "Alpine Linux v3.20"}
		}, false, "Alpine Linux v3.20 (ID=alpine) has no systemd (it boots with OpenRC), and the worker runs as a systemd service: enroll a host of a distribution with systemd"},
		"arm host": {func(f *provision.Facts) { f.Arch = "aarch64" }, false,
			"the host is aarch64 but this bettertest is built for x86_64: pass --binary PATH with a build for aarch64 (GOARCH=arm64 go build ./cmd/bettertest)"},
		"arm host, wrong --binary": {func(f *provision.Facts) { f.Arch = "aarch64" }, true,
			"the host is aarch64 but --binary /tmp/bettertest is built for x86_64: pass a build for aarch64"},
	} {
		f := freshFacts("debian", "", "Debian GNU/Linux 12 (bookworm)", "apt-get")
		c.mutate(f)
		spec := testSpec()
		spec.CustomBinary = c.custom
		if got := spec.planSystem(f); got.Fail != c.want {
			t.Errorf("%s: got %q", name, got.Fail)
		}
	}
}

func TestWhenTheWorkerRestarts(t *testing.T) {
	started := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	running := provision.Unit{Active: "active", Enabled: "enabled", ExeInode: "8:1", Started: started}
	for name, c := range map[string]struct {
		unit      provision.Unit
		unitMtime time.Time
		want      string
	}{
		"current":    {running, started.Add(-time.Second), "running the installed binary and unit"},
		"stopped":    {provision.Unit{Active: "failed"}, started, "the worker is failed: restarting it"},
		"old binary": {provision.Unit{Active: "active", Enabled: "enabled", ExeInode: "8:0", Started: started}, started.Add(-time.Second), "the worker runs an older binary: restarting it"},
		"unit newer": {running, started.Add(time.Second), "the unit changed since the worker started: restarting it"},
		// systemd prints the start to the second: a unit written in the same second came first.
		"unit same second": {running, started.Add(999 * time.Millisecond), "running the installed binary and unit"},
		"not enabled":      {provision.Unit{Active: "active", Enabled: "disabled", ExeInode: "8:1", Started: started}, started.Add(-time.Second), "the worker is not enabled at boot"},
		"reload pending":   {provision.Unit{Active: "active", Enabled: "enabled", ExeInode: "8:1", Started: started, NeedReload: true}, started.Add(-time.Second), "the unit changed since the worker started: restarting it"},
	} {
		f := freshFacts("debian", "", "Debian", "apt-get")
		f.Units[UnitName] = c.unit
		f.Files[UnitPath] = provision.File{ModTime: c.unitMtime}
		f.Files[BinaryPath] = provision.File{SHA256: sha, Inode: "8:1"}
		p := testSpec().planService(f)
		got := p.Reason
		if len(p.Actions) == 0 {
			got = p.Message
		}
		if got != c.want {
			t.Errorf("%s: got %q, want %q", name, got, c.want)
		}
	}
}

func TestUnitFile(t *testing.T) {
	const want = `[Unit]
Description=bettertest worker: runs CI commands in containers
Documentation=https://github.com/bettertest/bettertest
After=docker.service network-online.target
Requires=docker.service
Wants=network-online.target

[Service]
Type=notify
ExecStart=/usr/local/bin/bettertest worker --listen :9009 --token-file /etc/bettertest/token --data-dir /var/lib/bettertest/worker
Restart=on-failure
RestartSec=2s

[Install]
WantedBy=multi-user.target
`
	if Unit != want {
		t.Fatalf("unit:\n%s", Unit)
	}
	// A changed unit shows as a diff in check mode.
	f := freshFacts("debian", "", "Debian", "apt-get")
	f.Files[UnitPath] = provision.File{Content: []byte(strings.Replace(Unit, "RestartSec=2s", "RestartSec=5s", 1))}
	const diff = `--- /etc/systemd/system/bettertest-worker.service
+++ /etc/systemd/system/bettertest-worker.service
@@ -9,7 +9,7 @@
 Type=notify
 ExecStart=/usr/local/bin/bettertest worker --listen :9009 --token-file /etc/bettertest/token --data-dir /var/lib/bettertest/worker
 Restart=on-failure
-RestartSec=5s
+RestartSec=2s
 
 [Install]
 WantedBy=multi-user.target
`
	if p := testSpec().planUnit(f); p.Diff != diff || p.Reason != UnitPath+" differs" {
		t.Fatalf("diff:\n%s", p.Diff)
	}
}

func TestFirewall(t *testing.T) {
	f := freshFacts("fedora", "", "Fedora", "dnf")
	f.Firewalld = true
	p := testSpec().planFirewall(f)
	if p.Reason != "firewalld blocks 9009/tcp" || p.Actions[0].Script != "firewall-cmd --permanent --add-port=9009/tcp && firewall-cmd --add-port=9009/tcp" {
		t.Fatalf("%+v", p)
	}
	f.Ports["9009/tcp"] = true
	if p := testSpec().planFirewall(f); p.Message != "9009/tcp is open" || len(p.Actions) != 0 {
		t.Fatalf("%+v", p)
	}
}

// A package dpkg left half-installed (dpkg killed while unpacking) is
// reinstalled; only "install ok installed" counts as installed.
func TestInterruptedInstallsAreRepaired(t *testing.T) {
	f := freshFacts("debian", "", "Debian GNU/Linux 12 (bookworm)", "apt-get")
	f.DpkgPending = true
	f.Packages = map[string]string{"docker.io": "install reinstreq half-installed", "containerd": "install ok unpacked", "python3": "install ok installed"}
	p := planDpkg(f)
	if p.Reason != "an interrupted install left containerd (install ok unpacked), docker.io (install reinstreq half-installed): reinstalling docker.io" ||
		len(p.Actions) != 2 || p.Actions[0].Script != "DEBIAN_FRONTEND=noninteractive dpkg --configure -a" || p.Actions[1].Script != aptInstall("--reinstall docker.io") {
		t.Fatalf("%+v", p)
	}
	if p := planDocker(f); p.Reason != "docker.io is not whole (install reinstreq half-installed): installing it" {
		t.Fatalf("docker plan before the repair: %+v", p)
	}
	got := checkRun(t, testSpec(), f)
	if got[1].Status != provision.Changed || got[2] != (step{"Docker installed", provision.Changed, "would change: docker.io is installed but the docker command is not (this release ships it in docker-cli): installing docker-cli"}) || got[3].Status != provision.OK {
		t.Fatalf("after the repair: %v", got[:4])
	}
}

// Debian 13's docker.io has no docker command: docker-cli brings it.
func TestDockerCLI(t *testing.T) {
	f := freshFacts("debian", "", "Debian GNU/Linux 13 (trixie)", "apt-get")
	f.Packages["docker.io"] = "install ok installed"
	p := planDocker(f)
	if len(p.Actions) != 1 || p.Actions[0].Script != aptInstall("docker-cli") {
		t.Fatalf("%+v", p)
	}
	f.Commands["docker"] = true
	if p := planDocker(f); p.Message != "docker.io is installed, with docker on the PATH" || len(p.Actions) != 0 {
		t.Fatalf("%+v", p)
	}
}

func TestListenOtherPort(t *testing.T) {
	spec := testSpec()
	spec.Listen, spec.Port = ":9010", "9010"
	if got, want := UnitFile(":9010"), strings.Replace(Unit, "--listen :9009 ", "--listen :9010 ", 1); got != want || got == Unit {
		t.Fatalf("unit:\n%s", got)
	}
	if w := spec.Want(); !reflect.DeepEqual(w.Ports, []string{"9010/tcp"}) {
		t.Fatalf("%v", w.Ports)
	}
}

// --listen's port goes into the default URL, hence into NAME.json, for a
// host named by name and by IPv6 address alike.
func TestListenInTheRecord(t *testing.T) {
	cfg := Config{Listen: "0.0.0.0:9010", WorkersDir: "/w", Targets: []string{"alice@build1", "root@[::1]:2200"}}
	specs := func() ([]Spec, error) {
		targets, err := cfg.targets()
		if err != nil {
			t.Fatal(err)
		}
		var specs []Spec
		for _, tg := range targets {
			route, err := tg.login.route(tg.addr)
			if err != nil {
				t.Fatal(err)
			}
			spec, err := cfg.spec(tg, route, sha, "x86_64", false)
			if err != nil {
				return nil, err
			}
			specs = append(specs, spec)
		}
		return specs, nil
	}
	got, err := specs()
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, spec := range got {
		have = append(have, spec.Listen, spec.Port, spec.URL, string(spec.Record))
	}
	want := []string{
		"0.0.0.0:9010", "9010", "http://build1:9010", "{\n  \"name\": \"build1\",\n  \"url\": \"http://build1:9010\"\n}\n",
		"0.0.0.0:9010", "9010", "http://[::1]:9010", "{\n  \"name\": \"0--1\",\n  \"url\": \"http://[::1]:9010\"\n}\n",
	}
	if !reflect.DeepEqual(have, want) {
		t.Fatalf("got %q\nwant %q", have, want)
	}
	cfg.Listen = "9010"
	if _, err := specs(); err == nil || err.Error() != `--listen "9010" is not [ADDRESS]:PORT with a port from 1 to 65535, e.g. :9010` {
		t.Fatalf("a bare port: %v", err)
	}
}
