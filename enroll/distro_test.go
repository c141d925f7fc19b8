package enroll_test

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/bettertest/bettertest/enroll"
	"github.com/bettertest/bettertest/provision"
)

var update = flag.Bool("update", false, "rewrite testdata/os-release/plans.golden with what the plans decide now")

// readOSRelease reads an os-release file as the facts script does: by
// sourcing it, here by os-release(5)'s rules (KEY=VALUE, shell quoting).
func readOSRelease(t *testing.T, path string) provision.OSRelease {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		if uq, err := strconv.Unquote(v); err == nil && strings.HasPrefix(v, `"`) {
			v = uq
		} else if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		vars[k] = v
	}
	return provision.OSRelease{ID: vars["ID"], VersionID: vars["VERSION_ID"], PrettyName: vars["PRETTY_NAME"], IDLike: strings.Fields(vars["ID_LIKE"])}
}

// corpus is each os-release file of testdata/os-release with what such a
// host really has: the package manager the facts find (apt-get, dnf, zypper,
// pacman; "" for none of them) and whether PID 1 is systemd.
var corpus = []struct {
	file, pm string
	systemd  bool
}{
	{"debian_11", "apt-get", true}, {"debian_12", "apt-get", true}, {"debian_13", "apt-get", true},
	{"ubuntu_2004", "apt-get", true}, {"ubuntu_2204", "apt-get", true}, {"ubuntu_2404", "apt-get", true},
	{"linuxmint_22", "apt-get", true}, {"pop_os_22_04", "apt-get", true}, {"raspbian_11", "apt-get", true},
	{"kali_2025_4", "apt-get", true}, {"elementary_7", "apt-get", true},
	{"fedora_41", "dnf", true}, {"fedora_42", "dnf", true}, {"fedora_43", "dnf", true},
	{"amazon_2023", "dnf", true}, {"amazon_2", "", true},
	{"opensuseleap_15", "zypper", true}, {"opensusetumbleweed", "zypper", true}, {"sles_15", "zypper", true},
	{"arch", "pacman", true}, {"manjaro", "pacman", true}, {"endeavouros", "pacman", true}, {"cachyos", "pacman", true},
	{"rocky_9", "dnf", true}, {"alma_9", "dnf", true}, {"alma_10", "dnf", true}, {"centos_stream_9", "dnf", true},
	{"oracle_9", "dnf", true}, {"redhat_9", "dnf", true}, {"centos_7", "", true},
	{"alpine_3_20", "", false}, {"gentoo_218", "", true}, {"nixos", "", true}, {"photon_3", "", true}, {"flatcar", "", true},
}

// TestPlansForRealOSReleases plans a fresh enrollment of a host of each
// distribution of the corpus, and compares what the plans decide (the
// system check, the Docker and python3 installs) with the golden file.
func TestPlansForRealOSReleases(t *testing.T) {
	spec := enroll.Spec{Name: "w1", BinarySHA256: "0", BinaryArch: "x86_64", Health: func(context.Context) (string, error) { return "", nil }}
	var got strings.Builder
	for _, c := range corpus {
		f := &provision.Facts{
			OS: readOSRelease(t, filepath.Join("..", "testdata", "os-release", c.file)), Arch: "x86_64", Systemd: c.systemd, PackageManager: c.pm,
			Commands: map[string]bool{}, Packages: map[string]string{}, Files: map[string]provision.File{}, Units: map[string]provision.Unit{},
			Ports: map[string]bool{}, Local: map[string]string{}, Dirs: map[string]bool{},
		}
		fmt.Fprintf(&got, "== %s\n", c.file)
		for _, s := range enroll.Steps(spec) {
			if s.Name != "supported system" && s.Name != "Docker installed" && s.Name != "python3 installed" {
				continue
			}
			p := s.Plan(f)
			switch {
			case p.Fail != "":
				fmt.Fprintf(&got, "%s: refused: %s\n", s.Name, p.Fail)
			case len(p.Actions) == 0:
				fmt.Fprintf(&got, "%s: ok: %s\n", s.Name, p.Message)
			default:
				fmt.Fprintf(&got, "%s: %s\n\t%s\n", s.Name, p.Reason, strings.ReplaceAll(p.Actions[0].Script, "\n", "\n\t"))
			}
			if p.Fail != "" {
				break
			}
		}
	}
	golden := filepath.Join("..", "testdata", "os-release", "plans.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		t.Errorf("the plans differ from %s (go test -run TestPlansForRealOSReleases -update rewrites it):\n%s", golden, got.String())
	}
}
