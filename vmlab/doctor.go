package vmlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Check is one preflight check.
type Check struct {
	Name    string
	OK      bool
	Detail  string // what OK means
	Problem string // what is wrong when not OK
	Fix     string // what to do about it
}

// forwardRules let libvirt's bridge through Docker's FORWARD policy (drop).
var forwardRules = [][]string{
	{"insert", "rule", "ip", "filter", "FORWARD", "iifname", "virbr0", "accept"},
	{"insert", "rule", "ip", "filter", "FORWARD", "oifname", "virbr0", "ct", "state", "related,established", "accept"},
}

// ForwardUnit keeps the forward rules across reboots.
const ForwardUnit = `[Unit]
Description=vmlab: let libvirt's bridge virbr0 through Docker's FORWARD policy
After=docker.service libvirtd.service

[Service]
Type=oneshot
ExecStart=/usr/sbin/nft ` + "insert rule ip filter FORWARD iifname virbr0 accept" + `
ExecStart=/usr/sbin/nft ` + "insert rule ip filter FORWARD oifname virbr0 ct state related,established accept" + `

[Install]
WantedBy=multi-user.target
`

// ForwardUnitPath is where `vmlab doctor --install-forward-unit` puts it.
const ForwardUnitPath = "/etc/systemd/system/vmlab-forward.service"

// needsForwardFix reads `nft list chain ip filter FORWARD`: Docker set its
// policy to drop, and nothing lets virbr0 through yet.
func needsForwardFix(chain string) bool {
	return strings.Contains(chain, "policy drop") && !strings.Contains(chain, `iifname "virbr0" accept`)
}

// checks inspects the machine for the given virtualization type and network.
func checks(ctx context.Context, virtType, network string) []Check {
	var cs []Check
	var missing []string
	for _, tool := range []string{"virsh", "virt-install", "qemu-img", "genisoimage"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	cs = append(cs, Check{Name: "tools", OK: len(missing) == 0, Detail: "virsh, virt-install, qemu-img, genisoimage",
		Problem: "missing " + strings.Join(missing, ", "),
		Fix:     "apt-get install libvirt-clients virtinst qemu-utils genisoimage (Debian, Ubuntu) or dnf install libvirt-client virt-install qemu-img genisoimage (Fedora)"})
	if len(missing) > 0 {
		return cs
	}
	if virtType == "kvm" {
		cpu, _ := os.ReadFile("/proc/cpuinfo")
		f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
		if err == nil {
			f.Close()
		}
		hw := strings.Contains(string(cpu), " vmx") || strings.Contains(string(cpu), " svm")
		cs = append(cs, Check{Name: "virtualization", OK: err == nil && hw, Detail: "/dev/kvm and VT-x/AMD-V",
			Problem: "no usable /dev/kvm, or the CPU shows no VT-x/AMD-V",
			Fix:     "enable VT-x or AMD-V in the firmware and load kvm_intel or kvm_amd; or use --virt-type qemu (software emulation, slow)"})
	}
	_, err := virsh(ctx, "version")
	cs = append(cs, Check{Name: "libvirtd", OK: err == nil, Detail: "answers at " + URI,
		Problem: fmt.Sprintf("does not answer at %s (%v)", URI, err), Fix: "sudo systemctl enable --now libvirtd"})
	if err != nil || network != "default" {
		return cs
	}
	info, err := virsh(ctx, "net-info", "default")
	active := err == nil && field(info, "Active") == "yes"
	cs = append(cs, Check{Name: "default network", OK: active, Detail: "defined and active",
		Problem: "not active, or not defined",
		Fix:     "virsh --connect qemu:///system net-start default (vmlab up does it); if it is not defined: virsh net-define /usr/share/libvirt/networks/default.xml"})
	if chain, err := exec.CommandContext(ctx, "nft", "list", "chain", "ip", "filter", "FORWARD").Output(); err == nil {
		persist := "to keep it across reboots: vmlab doctor --install-forward-unit"
		if _, err := os.Stat(ForwardUnitPath); err == nil {
			persist += " (installed)"
		}
		cs = append(cs, Check{Name: "Docker's FORWARD policy", OK: !needsForwardFix(string(chain)), Detail: "lets virbr0 through",
			Problem: "drops the traffic of VMs on virbr0 (Docker set the policy to drop)",
			Fix: "vmlab up applies: nft insert rule ip filter FORWARD iifname virbr0 accept (and related,established back); " +
				persist})
	}
	return cs
}

// preflight checks the machine before making a VM, applying the fixes that
// are safe to apply: starting the default network and the forward rules.
func (l *Lab) preflight(ctx context.Context, virtType, network string) error {
	for _, c := range checks(ctx, virtType, network) {
		switch {
		case c.OK:
		case c.Name == "default network":
			if _, err := virsh(ctx, "net-start", "default"); err != nil {
				return fmt.Errorf("start libvirt's default network: %w; %s", err, c.Fix)
			}
			l.say("started libvirt's default network")
		case c.Name == "Docker's FORWARD policy":
			for _, rule := range forwardRules {
				if out, err := exec.CommandContext(ctx, "nft", rule...).CombinedOutput(); err != nil {
					return fmt.Errorf("nft %s: %v: %s", strings.Join(rule, " "), err, out)
				}
			}
			l.say("let virbr0 through Docker's FORWARD policy (until reboot; vmlab doctor --install-forward-unit keeps it)")
		default:
			return fmt.Errorf("%s %s: %s", c.Name, c.Problem, c.Fix)
		}
	}
	return nil
}

// Doctor prints every check and what to do about each failing one.
func (l *Lab) Doctor(ctx context.Context, virtType, network string, installUnit bool) error {
	failed := 0
	for _, c := range checks(ctx, virtType, network) {
		if c.OK {
			fmt.Fprintf(l.Out, "ok       %s: %s\n", c.Name, c.Detail)
			continue
		}
		failed++
		fmt.Fprintf(l.Out, "problem  %s: %s\n         fix: %s\n", c.Name, c.Problem, c.Fix)
	}
	if installUnit {
		if err := os.WriteFile(ForwardUnitPath, []byte(ForwardUnit), 0o644); err != nil {
			return err
		}
		if out, err := exec.CommandContext(ctx, "systemctl", "enable", "--now", "vmlab-forward.service").CombinedOutput(); err != nil {
			return fmt.Errorf("systemctl enable --now vmlab-forward.service: %v: %s", err, out)
		}
		fmt.Fprintf(l.Out, "installed %s\n", ForwardUnitPath)
	}
	if failed > 0 {
		return errors.New("vmlab doctor found problems: see the fixes above")
	}
	return nil
}

// field reads "Key: value" lines, as virsh prints them.
func field(out, key string) string {
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
