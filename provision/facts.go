package provision

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Facts is what a playbook knows of a host, gathered in one round trip.
type Facts struct {
	OS             OSRelease
	Arch           string // uname -m
	Systemd        bool   // PID 1 is systemd
	PackageManager string // "apt-get", "dnf", "zypper", "pacman", or "" when none exists
	CloudInit      bool   // cloud-init is installed
	DpkgPending    bool   // dpkg has packages left unconfigured by an interrupted install
	Firewalld      bool   // firewalld is active

	Commands map[string]bool // Want.Commands found on the PATH
	// Packages holds the package manager's own status of Want.Packages that
	// it knows, and of every package it has in a broken state, as dpkg-query
	// prints ${Status}: "install ok installed", "install reinstreq
	// half-installed", ... (rpm and pacman systems: "install ok installed"
	// when rpm -q or pacman -Q knows the package).
	Packages map[string]string
	Files    map[string]File   // Want.Files and Want.Contents that exist
	Units    map[string]Unit   // Want.Units
	Ports    map[string]bool   // Want.Ports open in firewalld (when it is active)
	Dirs     map[string]bool   // Want.Dirs that exist
	Local    map[string]string // facts of the enrolling machine a playbook records
}

// OSRelease is the part of /etc/os-release that decides what to install.
type OSRelease struct {
	ID, VersionID, PrettyName string
	IDLike                    []string
}

// Installed reports whether the package manager holds pkg as fully installed.
func (f *Facts) Installed(pkg string) bool { return installedStatus(f.Packages[pkg]) }

// Broken lists the packages that dpkg holds in a state other than installed
// or removed (unpacked, half-configured, half-installed, ...), sorted.
func (f *Facts) Broken() []string {
	var broken []string
	for pkg, status := range f.Packages {
		if !installedStatus(status) && !strings.HasSuffix(status, " ok config-files") && !strings.HasSuffix(status, " ok not-installed") {
			broken = append(broken, pkg)
		}
	}
	slices.Sort(broken)
	return broken
}

// installedStatus: want (install, hold, deinstall) and error flag aside,
// "ok installed" is the one state in which a package is whole.
func installedStatus(status string) bool { return strings.HasSuffix(status, " ok installed") }

// Is reports whether the OS is id or says it is like id.
func (o OSRelease) Is(id string) bool { return o.ID == id || slices.Contains(o.IDLike, id) }

// File is a file's state. Secrets are only ever hashed: Content is read only
// for the paths a playbook names in Want.Contents.
type File struct {
	SHA256  string
	ModTime time.Time
	Inode   string // device:inode, to tell whether a process runs this very file
	Content []byte
}

// Unit is a systemd unit's state.
type Unit struct {
	Active     string    // ActiveState: "active", "inactive", "failed", ...
	Enabled    string    // UnitFileState: "enabled", "disabled", "" when there is no unit file
	ExeInode   string    // device:inode of the executable the main process started from (a replaced file keeps its old inode)
	Started    time.Time // ActiveEnterTimestamp, to the second: older systemd prints no finer
	NeedReload bool      // the unit file changed on disk since systemd loaded it
}

// Want names what a playbook needs to know beyond the basics.
type Want struct {
	Commands []string
	Packages []string // the package manager's status, by package name
	Files    []string // hash and mtime
	Contents []string // hash, mtime and content (small, non-secret files)
	Units    []string
	// RunningExe names units whose running executable is identified.
	RunningExe []string
	Ports      []string // e.g. "9009/tcp"
	Dirs       []string // whether they exist
}

// Gather reads the host's facts in one round trip.
func Gather(ctx context.Context, h Host, w Want) (*Facts, error) {
	out, err := Script(ctx, h, factsScript(w))
	if err != nil {
		return nil, fmt.Errorf("gather facts: %w", err)
	}
	return parseFacts(out)
}

func factsScript(w Want) string {
	var b strings.Builder
	// On a fresh VM, cloud-init may still be installing packages: wait for it
	// to finish (its own event) before observing anything.
	b.WriteString(`command -v cloud-init >/dev/null && cloud-init status --wait >/dev/null 2>&1
unset ID ID_LIKE VERSION_ID PRETTY_NAME
[ -r /etc/os-release ] && . /etc/os-release
printf 'os.id\t%s\nos.id_like\t%s\nos.version_id\t%s\nos.pretty\t%s\n' "$ID" "$ID_LIKE" "$VERSION_ID" "$PRETTY_NAME"
printf 'arch\t%s\npid1\t%s\n' "$(uname -m)" "$(cat /proc/1/comm)"
for pm in apt-get dnf zypper pacman; do if command -v $pm >/dev/null; then printf 'pm\t%s\n' $pm; break; fi; done
command -v cloud-init >/dev/null && printf 'cloudinit\t1\n'
command -v dpkg >/dev/null && [ -n "$(dpkg --audit 2>/dev/null)" ] && printf 'dpkg_pending\t1\n'
fw=0; command -v systemctl >/dev/null && systemctl is-active --quiet firewalld 2>/dev/null && fw=1 && printf 'firewalld\t1\n'
`)
	if len(w.Packages) > 0 {
		// The wanted packages, and every package dpkg holds in a broken state.
		fmt.Fprintf(&b, `if command -v dpkg-query >/dev/null; then
	dpkg-query -W -f '${Package}\t${Status}\n' 2>/dev/null | awk -F '\t' -v want=%s 'index(want, " " $1 " ") || $2 !~ / ok (installed|config-files|not-installed)$/ { print "pkg\t" $0 }'
elif command -v rpm >/dev/null; then
	for p in %s; do rpm -q --quiet "$p" && printf 'pkg\t%%s\tinstall ok installed\n' "$p"; done
elif command -v pacman >/dev/null; then
	for p in %s; do pacman -Q "$p" >/dev/null 2>&1 && printf 'pkg\t%%s\tinstall ok installed\n' "$p"; done
fi
`, quote(" "+strings.Join(w.Packages, " ")+" "), strings.Join(quoteAll(w.Packages), " "), strings.Join(quoteAll(w.Packages), " "))
	}
	for _, c := range w.Commands {
		fmt.Fprintf(&b, "command -v %s >/dev/null && printf 'cmd\\t%%s\\n' %s\n", quote(c), quote(c))
	}
	for _, f := range w.Files {
		fmt.Fprintf(&b, "f=%s; [ -f \"$f\" ] && printf 'file\\t%%s\\t%%s\\t%%s\\t%%s\\n' \"$f\" \"$(sha256sum < \"$f\" | cut -d' ' -f1)\" \"$(stat -c %%.6Y \"$f\")\" \"$(stat -c %%d:%%i \"$f\")\"\n", quote(f))
	}
	for _, f := range w.Contents {
		fmt.Fprintf(&b, "f=%s; [ -f \"$f\" ] && printf 'content\\t%%s\\t%%s\\t%%s\\t%%s\\n' \"$f\" \"$(sha256sum < \"$f\" | cut -d' ' -f1)\" \"$(stat -c %%.6Y \"$f\")\" \"$(base64 -w0 < \"$f\")\"\n", quote(f))
	}
	for _, u := range w.Units {
		// TZ=UTC and no --timestamp: every systemd (245 has no --timestamp,
		// 247 ignores its "us") then prints "Sat 2026-11-28 19:50:41 UTC".
		fmt.Fprintf(&b, `u=%s
TZ=UTC systemctl show -p ActiveState,UnitFileState,MainPID,ActiveEnterTimestamp,NeedDaemonReload "$u" | while IFS= read -r line; do printf 'unit\t%%s\t%%s\n' "$u" "$line"; done
`, quote(u))
	}
	for _, u := range w.RunningExe {
		fmt.Fprintf(&b, `u=%s; pid=$(systemctl show -p MainPID --value "$u")
[ "${pid:-0}" -gt 0 ] && printf 'exe\t%%s\t%%s\n' "$u" "$(stat -L -c %%d:%%i /proc/$pid/exe)"
`, quote(u))
	}
	for _, d := range w.Dirs {
		fmt.Fprintf(&b, "[ -d %s ] && printf 'dir\\t%%s\\n' %s\n", quote(d), quote(d))
	}
	for _, p := range w.Ports {
		fmt.Fprintf(&b, "[ $fw = 1 ] && firewall-cmd --query-port=%s >/dev/null 2>&1 && printf 'port\\t%%s\\n' %s\n", quote(p), quote(p))
	}
	b.WriteString("true\n")
	return b.String()
}

func quoteAll(ss []string) []string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = quote(s)
	}
	return q
}

// quote makes s one word for sh.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func parseFacts(out []byte) (*Facts, error) {
	f := &Facts{Commands: map[string]bool{}, Packages: map[string]string{}, Files: map[string]File{}, Units: map[string]Unit{}, Ports: map[string]bool{}, Local: map[string]string{}, Dirs: map[string]bool{}}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		field := strings.Split(sc.Text(), "\t")
		switch {
		case field[0] == "os.id" && len(field) == 2:
			f.OS.ID = field[1]
		case field[0] == "os.id_like" && len(field) == 2:
			f.OS.IDLike = strings.Fields(field[1])
		case field[0] == "os.version_id" && len(field) == 2:
			f.OS.VersionID = field[1]
		case field[0] == "os.pretty" && len(field) == 2:
			f.OS.PrettyName = field[1]
		case field[0] == "arch" && len(field) == 2:
			f.Arch = field[1]
		case field[0] == "pid1" && len(field) == 2:
			f.Systemd = field[1] == "systemd"
		case field[0] == "pm" && len(field) == 2:
			f.PackageManager = field[1]
		case field[0] == "cloudinit":
			f.CloudInit = true
		case field[0] == "dpkg_pending":
			f.DpkgPending = true
		case field[0] == "firewalld":
			f.Firewalld = true
		case field[0] == "pkg" && len(field) == 3:
			f.Packages[field[1]] = field[2]
		case field[0] == "cmd" && len(field) == 2:
			f.Commands[field[1]] = true
		case field[0] == "file" && len(field) == 5, field[0] == "content" && len(field) == 5:
			mtime, err := parseUnixMicro(field[3])
			if err != nil {
				return nil, fmt.Errorf("facts: mtime of %s: %w", field[1], err)
			}
			file := File{SHA256: field[2], ModTime: mtime}
			if field[0] == "file" {
				file.Inode = field[4]
			} else {
				if file.Content, err = base64.StdEncoding.DecodeString(field[4]); err != nil {
					return nil, fmt.Errorf("facts: content of %s: %w", field[1], err)
				}
			}
			f.Files[field[1]] = file
		case field[0] == "unit" && len(field) == 3:
			u := f.Units[field[1]]
			key, value, _ := strings.Cut(field[2], "=")
			switch key {
			case "ActiveState":
				u.Active = value
			case "UnitFileState":
				u.Enabled = value
			case "NeedDaemonReload":
				u.NeedReload = value == "yes"
			case "ActiveEnterTimestamp":
				if value != "" {
					t, err := ParseSystemdTime(value)
					if err != nil {
						return nil, fmt.Errorf("facts: start time of %s: %w", field[1], err)
					}
					u.Started = t
				}
			}
			f.Units[field[1]] = u
		case field[0] == "exe" && len(field) == 3:
			u := f.Units[field[1]]
			u.ExeInode = field[2]
			f.Units[field[1]] = u
		case field[0] == "dir" && len(field) == 2:
			f.Dirs[field[1]] = true
		case field[0] == "port" && len(field) == 2:
			f.Ports[field[1]] = true
		default:
			return nil, fmt.Errorf("facts: unexpected line %q", sc.Text())
		}
	}
	return f, sc.Err()
}

// ParseSystemdTime parses a timestamp as systemctl show prints it with TZ=UTC
// (every release from 245 to 257): "Sat 2026-11-28 19:50:41 UTC", to the second.
func ParseSystemdTime(s string) (time.Time, error) {
	t, err := time.Parse("Mon 2006-01-02 15:04:05 MST", s)
	if err != nil || t.Location() != time.UTC {
		return time.Time{}, fmt.Errorf("%q is not a timestamp as systemctl show prints it with TZ=UTC (Sat 2026-11-28 19:50:41 UTC)", s)
	}
	return t, nil
}

// parseUnixMicro parses "SECONDS.MICROS" as stat -c %.6Y prints it.
func parseUnixMicro(s string) (time.Time, error) {
	sec, frac, _ := strings.Cut(s, ".")
	secs, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	var micros int64
	if frac != "" {
		if micros, err = strconv.ParseInt((frac + "000000")[:6], 10, 64); err != nil {
			return time.Time{}, err
		}
	}
	return time.Unix(secs, micros*1000).UTC(), nil
}
