package enroll

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/bettertest/bettertest/provision"
)

// Distro is a family of Linux distributions that enrollment supports, with
// its own package manager and the Docker it packages natively.
type Distro struct {
	Family         string // as the README names it
	PackageManager string // the command, as facts name it
	Docker         string // the package that installs dockerd and docker.service
	Python         string // the package that installs python3
	// DockerRepo, when set, is the URL of a repository file to add first:
	// the family ships no Docker of its own.
	DockerRepo string
}

// Distros are the supported families, in the README's order.
var Distros = []Distro{
	{Family: "Debian, Ubuntu and their derivatives", PackageManager: "apt-get", Docker: "docker.io", Python: "python3"},
	{Family: "Fedora", PackageManager: "dnf", Docker: "moby-engine", Python: "python3"},
	{Family: "Amazon Linux 2023", PackageManager: "dnf", Docker: "docker", Python: "python3"},
	{Family: "openSUSE and SLES", PackageManager: "zypper", Docker: "docker", Python: "python3"},
	{Family: "Arch Linux and its derivatives", PackageManager: "pacman", Docker: "docker", Python: "python"},
	{Family: "the RHEL family (Rocky, Alma, CentOS Stream, Oracle)", PackageManager: "dnf", Docker: "docker-ce", Python: "python3",
		DockerRepo: "https://download.docker.com/linux/centos/docker-ce.repo"},
	{Family: "Red Hat Enterprise Linux", PackageManager: "dnf", Docker: "docker-ce", Python: "python3",
		DockerRepo: "https://download.docker.com/linux/rhel/docker-ce.repo"},
}

func distro(family string) Distro {
	i := slices.IndexFunc(Distros, func(d Distro) bool { return strings.HasPrefix(d.Family, family) })
	return Distros[i]
}

// DistroOf finds the family of the system os-release describes, or says
// why enrollment refuses it. The distribution's own ID decides before the
// ones it says it is like: Oracle Linux and Amazon Linux say they are like
// Fedora, but package Docker differently.
func DistroOf(o provision.OSRelease) (Distro, string) {
	name := fmt.Sprintf("%s (ID=%s)", orUnknown(o.PrettyName), orUnknown(o.ID))
	major, _ := strconv.Atoi(strings.SplitN(o.VersionID, ".", 2)[0])
	switch {
	case o.ID == "alpine":
		return Distro{}, name + " has no systemd (it boots with OpenRC), and the worker runs as a systemd service: enroll a host of a distribution with systemd"
	case o.ID == "amzn" && o.VersionID == "2023":
		return distro("Amazon Linux 2023"), ""
	case o.ID == "amzn":
		return Distro{}, name + " is not Amazon Linux 2023: Amazon Linux 2 has yum, not dnf, and reaches its end of life; enroll an Amazon Linux 2023 host"
	case o.ID == "rhel" && major >= 8:
		return distro("Red Hat"), ""
	case slices.Contains([]string{"rhel", "rocky", "almalinux", "centos", "ol"}, o.ID) || o.Is("rhel") || o.Is("centos"):
		if major < 8 {
			return Distro{}, name + " is older than release 8: it has yum, not dnf, and Docker's repository no longer serves it; enroll a host of release 8 or newer"
		}
		return distro("the RHEL family"), ""
	case o.Is("debian") || o.Is("ubuntu"):
		return distro("Debian"), ""
	case o.Is("fedora"):
		return distro("Fedora"), ""
	case o.Is("suse") || o.Is("opensuse") || o.Is("sles") || strings.HasPrefix(o.ID, "opensuse"):
		return distro("openSUSE"), ""
	case o.Is("arch"):
		return distro("Arch"), ""
	}
	return Distro{}, name + " is not a distribution enrollment knows how to install Docker on: it enrolls " + families() +
		" (a derivative is known by its ID_LIKE in /etc/os-release)"
}

func families() string {
	var names []string
	for _, d := range Distros[:len(Distros)-1] { // RHEL itself is named with its family
		names = append(names, d.Family)
	}
	return strings.Join(names[:len(names)-1], "; ") + "; and " + names[len(names)-1]
}

// install is the script that installs pkg with d's package manager.
func (d Distro) install(pkg string) string {
	switch d.PackageManager {
	case "apt-get":
		return aptInstall(pkg)
	case "zypper":
		return "zypper --non-interactive install --no-recommends " + pkg
	case "pacman":
		// Arch supports no partial upgrade: installing syncs and upgrades the system.
		return "pacman -Syu --noconfirm --needed " + pkg
	}
	script := "dnf install -y -q " + pkg
	if d.DockerRepo != "" && pkg == d.Docker {
		script = "curl -fsSL " + d.DockerRepo + " -o /etc/yum.repos.d/docker-ce.repo\n" + script
	}
	return script
}
