package provision

import (
	"reflect"
	"testing"
	"time"
)

func TestParseFacts(t *testing.T) {
	out := "os.id\tubuntu\nos.id_like\tdebian\nos.version_id\t24.04\nos.pretty\tUbuntu 24.04.1 LTS\narch\tx86_64\npid1\tsystemd\npm\tapt-get\n" +
		"cloudinit\t1\ndpkg_pending\t1\nfirewalld\t1\ncmd\tdockerd\n" +
		"file\t/usr/local/bin/bettertest\tabc\t1795643040.763661\t2049:1234\n" +
		"content\t/etc/x.service\tdef\t1795643041\taGVsbG8K\n" +
		"unit\tdocker.service\tMainPID=450\nunit\tdocker.service\tActiveState=active\nunit\tdocker.service\tUnitFileState=enabled\n" +
		"unit\tdocker.service\tActiveEnterTimestamp=Wed 2026-11-25 21:44:00.123456 UTC\nunit\tdocker.service\tNeedDaemonReload=no\n" +
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
		Files: map[string]File{
			"/usr/local/bin/bettertest": {SHA256: "abc", ModTime: time.Unix(1795643040, 763661000).UTC(), Inode: "2049:1234"},
			"/etc/x.service":            {SHA256: "def", ModTime: time.Unix(1795643041, 0).UTC(), Content: []byte("hello\n")},
		},
		Units: map[string]Unit{
			"docker.service":            {Active: "active", Enabled: "enabled", Started: time.Date(2026, 11, 25, 21, 44, 0, 123456000, time.UTC)},
			"bettertest-worker.service": {Active: "inactive", Enabled: "disabled", NeedReload: true, ExeInode: "2049:1234"},
		},
		Ports: map[string]bool{"9009/tcp": true},
		Dirs:  map[string]bool{"/etc/bettertest": true},
		Local: map[string]string{},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	if !got.OS.Is("debian") || got.OS.Is("fedora") {
		t.Fatal("OSRelease.Is")
	}
	if _, err := parseFacts([]byte("surprise\tline\n")); err == nil || err.Error() != `facts: unexpected line "surprise\tline"` {
		t.Fatalf("unexpected line: %v", err)
	}
}
