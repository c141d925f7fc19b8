package provision

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseFacts(t *testing.T) {
	out := "os.id\tubuntu\nos.id_like\tdebian\nos.version_id\t24.04\nos.pretty\tUbuntu 24.04.1 LTS\narch\tx86_64\npid1\tsystemd\npm\tapt-get\n" +
		"cloudinit\t1\ndpkg_pending\t1\nfirewalld\t1\ncmd\tdockerd\n" +
		"pkg\tdocker.io\tinstall reinstreq half-installed\npkg\tpython3\tinstall ok installed\npkg\tlibfoo\tinstall ok unpacked\npkg\told\tdeinstall ok config-files\n" +
		"file\t/usr/local/bin/bettertest\tabc\t1795643040.763661\t2049:1234\n" +
		"content\t/etc/x.service\tdef\t1795643041\taGVsbG8K\n" +
		"unit\tdocker.service\tMainPID=450\nunit\tdocker.service\tActiveState=active\nunit\tdocker.service\tUnitFileState=enabled\n" +
		"unit\tdocker.service\tActiveEnterTimestamp=Wed 2026-11-25 21:44:00 UTC\nunit\tdocker.service\tNeedDaemonReload=no\n" +
		"unit\tbettertest-worker.service\tActiveState=inactive\nunit\tbettertest-worker.service\tUnitFileState=disabled\n" +
		"unit\tbettertest-worker.service\tActiveEnterTimestamp=\nunit\tbettertest-worker.service\tNeedDaemonReload=yes\n" +
		"exe\tbettertest-worker.service\t2049:1234\n" +
		"port\t9009/tcp\n" +
		"dir\t/etc/bettertest\n"
	got, err := parseFacts([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := &Facts{
		OS:   OSRelease{ID: "ubuntu", IDLike: []string{"debian"}, VersionID: "24.04", PrettyName: "Ubuntu 24.04.1 LTS"},
		Arch: "x86_64", Systemd: true, PackageManager: "apt-get", CloudInit: true, DpkgPending: true, Firewalld: true,
		Commands: map[string]bool{"dockerd": true},
		Packages: map[string]string{"docker.io": "install reinstreq half-installed", "python3": "install ok installed", "libfoo": "install ok unpacked", "old": "deinstall ok config-files"},
		Files: map[string]File{
			"/usr/local/bin/bettertest": {SHA256: "abc", ModTime: time.Unix(1795643040, 763661000).UTC(), Inode: "2049:1234"},
			"/etc/x.service":            {SHA256: "def", ModTime: time.Unix(1795643041, 0).UTC(), Content: []byte("hello\n")},
		},
		Units: map[string]Unit{
			"docker.service":            {Active: "active", Enabled: "enabled", Started: time.Date(2026, 11, 25, 21, 44, 0, 0, time.UTC)},
			"bettertest-worker.service": {Active: "inactive", Enabled: "disabled", NeedReload: true, ExeInode: "2049:1234"},
		},
		Ports: map[string]bool{"9009/tcp": true},
		Dirs:  map[string]bool{"/etc/bettertest": true},
		Local: map[string]string{},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	if !got.Installed("python3") || got.Installed("docker.io") || got.Installed("old") || got.Installed("missing") {
		t.Fatal("Facts.Installed")
	}
	if b := got.Broken(); !reflect.DeepEqual(b, []string{"docker.io", "libfoo"}) {
		t.Fatalf("Facts.Broken: %v", b)
	}
	if !got.OS.Is("debian") || got.OS.Is("fedora") {
		t.Fatal("OSRelease.Is")
	}
	if _, err := parseFacts([]byte("surprise\tline\n")); err == nil || err.Error() != `facts: unexpected line "surprise\tline"` {
		t.Fatalf("unexpected line: %v", err)
	}
}

// TestUnitsAsEverySystemdPrintsThem parses what systemctl show printed, with
// TZ=UTC as the facts script runs it, for an active unit (ssh.service) and one
// that does not exist, on each Debian release's own systemd (captured from
// the test hosts of internal/testhost; the file names the release).
func TestUnitsAsEverySystemdPrintsThem(t *testing.T) {
	for file, started := range map[string]time.Time{
		"systemd-247-bullseye.txt": time.Date(2026, 11, 28, 21, 53, 2, 0, time.UTC),
		"systemd-252-bookworm.txt": time.Date(2026, 11, 28, 21, 53, 5, 0, time.UTC),
		"systemd-257-trixie.txt":   time.Date(2026, 11, 28, 21, 53, 2, 0, time.UTC),
	} {
		b, err := os.ReadFile(filepath.Join("testdata", "systemctl-show", file))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		var out strings.Builder
		for i, l := range lines {
			unit := "ssh.service"
			if i >= len(lines)/2 {
				unit = "missing.service"
			}
			fmt.Fprintf(&out, "unit\t%s\t%s\n", unit, l)
		}
		got, err := parseFacts([]byte(out.String()))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		want := map[string]Unit{
			"ssh.service":     {Active: "active", Enabled: "enabled", Started: started},
			"missing.service": {Active: "inactive"},
		}
		if !reflect.DeepEqual(got.Units, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", file, got.Units, want)
		}
	}
	if _, err := ParseSystemdTime("Sat 2026-11-28 20:50:41 CET"); err == nil || err.Error() != `"Sat 2026-11-28 20:50:41 CET" is not a timestamp as systemctl show prints it with TZ=UTC (Sat 2026-11-28 19:50:41 UTC)` {
		t.Fatalf("another zone: %v", err)
	}
}
