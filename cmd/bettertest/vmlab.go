package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/bettertest/bettertest/enroll"
	"github.com/bettertest/bettertest/vmlab"
)

const vmlabUsage = `Usage: vmlab COMMAND [flags] NAME      (also: bettertest vmlab ...)

Make local KVM/libvirt VMs from cloud images with cloud-init, ready for
bettertest enroll. Always talks to qemu:///system (run it with sudo).

Commands:
  up NAME        make the VM (or start it if stopped), wait until it has booted,
                 record its SSH host keys in ~/.ssh/known_hosts
  down NAME      shut it down gracefully, forcibly after a grace period
  destroy NAME   remove the VM, its disks and its known_hosts entries
  list           the VMs vmlab made, with state and SSH address
  ip NAME        the address its SSH answers at
  ssh NAME [-- CMD...]  log in (or run CMD) as its user
  doctor         check this machine, and say how to fix what is missing
`

func runVMLab(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, vmlabUsage)
		return usageError{errors.New("name a command")}
	}
	lab, err := newLab(stdout)
	if err != nil {
		return err
	}
	cmd, args := args[0], args[1:]
	fs := newFlagSet("vmlab "+cmd, vmlabUsage, stderr)
	var opt vmlab.UpOptions
	var installUnit bool
	switch cmd {
	case "up":
		fs.IntVar(&opt.Memory, "memory", 4096, "memory in MiB")
		fs.IntVar(&opt.CPUs, "cpus", 2, "virtual CPUs")
		fs.StringVar(&opt.Disk, "disk", "20G", "disk size")
		fs.StringVar(&opt.User, "user", lab.user, "the user made in the VM, with your SSH key and passwordless sudo")
		fs.StringVar(&opt.SSHKey, "ssh-key", "", "public key to authorize (default: ~/.ssh/id_ed25519.pub or id_ecdsa.pub or id_rsa.pub; made if there is none)")
		fs.StringVar(&opt.Image, "image", "", "a local cloud image (default: the newest Fedora Cloud Base, downloaded once and verified)")
		fs.StringVar(&opt.VirtType, "virt-type", "kvm", "kvm, or qemu for software emulation")
		fs.StringVar(&opt.OSVariant, "os-variant", "fedora-unknown", "libosinfo name of the image's OS (osinfo-query os)")
		fs.StringVar(&opt.Network, "network", "default", "default (libvirt's NAT network) or user (qemu user networking, SSH on a 127.0.0.1 port)")
		fs.BoolVar(&opt.Enroll, "enroll", false, "run bettertest enroll against the VM once it is up")
	case "doctor":
		fs.StringVar(&opt.VirtType, "virt-type", "kvm", "kvm or qemu")
		fs.StringVar(&opt.Network, "network", "default", "default or user")
		fs.BoolVar(&installUnit, "install-forward-unit", false, "install "+vmlab.ForwardUnitPath+", which keeps virbr0 allowed through Docker's firewall across reboots")
	case "down", "destroy", "list", "ip", "ssh":
	default:
		return usageError{fmt.Errorf("unknown command %q: vmlab --help lists them", cmd)}
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	names := fs.Args()
	if cmd == "list" || cmd == "doctor" {
		if len(names) > 0 {
			return usageError{fmt.Errorf("vmlab %s takes no VM name", cmd)}
		}
	} else if len(names) == 0 || (cmd != "ssh" && len(names) > 1) {
		return usageError{fmt.Errorf("vmlab %s takes one VM name", cmd)}
	}
	switch cmd {
	case "up":
		return lab.Up(ctx, names[0], opt)
	case "down":
		return lab.Down(ctx, names[0])
	case "destroy":
		return lab.Destroy(ctx, names[0])
	case "list":
		return lab.List(ctx)
	case "ip":
		return lab.IP(ctx, names[0])
	case "doctor":
		return lab.Doctor(ctx, opt.VirtType, opt.Network, installUnit)
	}
	// ssh NAME [-- CMD...]: become ssh, so the terminal is the user's.
	argv, err := lab.SSHCommand(ctx, names[0], names[1:])
	if err != nil {
		return err
	}
	path, err := exec.LookPath("ssh")
	if err != nil {
		return errors.New("ssh is not installed: install openssh-client")
	}
	return syscall.Exec(path, argv, os.Environ())
}

type labEnv struct {
	*vmlab.Lab
	user string
}

// newLab finds the user vmlab works for. Under sudo that is the user who ran
// sudo (SUDO_USER, which sudo sets): their key, their known_hosts.
func newLab(out io.Writer) (labEnv, error) {
	u, err := user.Current()
	if err != nil {
		return labEnv{}, err
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return labEnv{}, err
	}
	env := labEnv{Lab: &vmlab.Lab{
		ImagesDir: "/var/lib/libvirt/images", Home: home, Out: out,
		HTTP: &http.Client{Timeout: 30 * time.Minute}, Releases: vmlab.FedoraReleases,
		BootWait: 15 * time.Minute, DownGrace: 60 * time.Second,
	}, user: u.Username}
	if sudoUser := os.Getenv("SUDO_USER"); sudoUser != "" && u.Uid == "0" {
		su, err := user.Lookup(sudoUser)
		if err != nil {
			return labEnv{}, fmt.Errorf("the user who ran sudo, %s: %w", sudoUser, err)
		}
		uid, _ := strconv.Atoi(su.Uid)
		gid, _ := strconv.Atoi(su.Gid)
		env.Home, env.user, env.Owner = su.HomeDir, su.Username, &vmlab.Owner{UID: uid, GID: gid}
	}
	env.Lab.Enroll = func(ctx context.Context, vm vmlab.VM) error {
		host, port, err := env.Address(ctx, vm)
		if err != nil {
			return err
		}
		url, err := env.WorkerURL(ctx, vm)
		if err != nil {
			return err
		}
		self, err := os.Executable()
		if err != nil {
			return err
		}
		return enroll.Run(ctx, enroll.Config{
			Targets: []string{vm.User + "@" + host}, Name: vm.Name, URL: url, Binary: self, Out: out,
			Login: enroll.Login{Port: port, KeyFile: vm.Key, SSHDir: filepath.Join(env.Home, ".ssh"),
				KnownHosts: filepath.Join(env.Home, ".ssh", "known_hosts")},
			WorkersDir: filepath.Join(env.Home, ".config", "bettertest", "workers"),
		})
	}
	return env, nil
}
