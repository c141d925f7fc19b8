// Package vmlab makes local KVM/libvirt VMs from cloud images with
// cloud-init, ready for `bettertest enroll`: the manual virsh, virt-install,
// genisoimage and firewall procedure as one command per step of a VM's life.
package vmlab

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Lab is where VMs live and how vmlab talks about them.
type Lab struct {
	ImagesDir string // disks and seeds, e.g. /var/lib/libvirt/images
	Home      string // the user's home: ~/.ssh
	Out       io.Writer
	HTTP      *http.Client
	Releases  string // the Fedora release index
	Enroll    func(ctx context.Context, vm VM) error
	BootWait  time.Duration // how long a first boot may take
	DownGrace time.Duration // how long a guest may take to shut down
	Owner     *Owner        // chown files made in the user's home to the user (under sudo)
}

// Owner is the uid and gid files in the user's home should belong to.
type Owner struct{ UID, GID int }

// UpOptions are the flags of `vmlab up`.
type UpOptions struct {
	Memory    int    // MiB
	CPUs      int    //
	Disk      string // e.g. 20G
	User      string
	SSHKey    string // public key path
	Image     string // a local cloud image instead of the newest Fedora
	VirtType  string // kvm or qemu
	OSVariant string
	Network   string // default or user
	Enroll    bool
}

// VM is what vmlab knows of one of its VMs; it is kept in the libvirt
// domain's description, so it lives and dies with the domain.
type VM struct {
	Name, User, Network string
	Key                 string // private key path
	SSHPort, WorkerPort int    // user mode: forwarded from 127.0.0.1
	Disk, Seed, Console string // the console is logged to a file, to show when a boot fails
}

const descPrefix = "vmlab:"

func (vm VM) description() string {
	v := url.Values{"user": {vm.User}, "network": {vm.Network}, "key": {vm.Key}, "disk": {vm.Disk}, "seed": {vm.Seed}, "console": {vm.Console}}
	if vm.Network == "user" {
		v.Set("ssh", strconv.Itoa(vm.SSHPort))
		v.Set("worker", strconv.Itoa(vm.WorkerPort))
	}
	return descPrefix + v.Encode()
}

func parseDescription(name, desc string) (VM, bool) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(desc), descPrefix)
	if !ok {
		return VM{}, false
	}
	v, err := url.ParseQuery(rest)
	if err != nil {
		return VM{}, false
	}
	vm := VM{Name: name, User: v.Get("user"), Network: v.Get("network"), Key: v.Get("key"), Disk: v.Get("disk"), Seed: v.Get("seed"), Console: v.Get("console")}
	vm.SSHPort, _ = strconv.Atoi(v.Get("ssh"))
	vm.WorkerPort, _ = strconv.Atoi(v.Get("worker"))
	return vm, true
}

var validName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

func checkName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("VM name %q: use lowercase letters, digits and '-', starting with a letter (it becomes the hostname)", name)
	}
	return nil
}

func (l *Lab) say(format string, args ...any) {
	fmt.Fprintf(l.Out, "vmlab: "+format+"\n", args...)
}

// find returns the vmlab VM called name.
func (l *Lab) find(ctx context.Context, name string) (VM, string, error) {
	if err := checkName(name); err != nil {
		return VM{}, "", err
	}
	state, err := domainState(ctx, name)
	if err != nil {
		return VM{}, "", err
	}
	if state == "" {
		return VM{}, "", fmt.Errorf("%w: %s (vmlab list shows the VMs; vmlab up %s makes it)", errNoDomain, name, name)
	}
	desc, err := virsh(ctx, "desc", name)
	if err != nil {
		return VM{}, "", err
	}
	vm, ok := parseDescription(name, desc)
	if !ok {
		return VM{}, "", fmt.Errorf("the libvirt domain %s was not made by vmlab: manage it with virsh", name)
	}
	return vm, state, nil
}

// Address is how to reach the VM's SSH: host and port.
func (l *Lab) Address(ctx context.Context, vm VM) (string, int, error) {
	if vm.Network == "user" {
		return "127.0.0.1", vm.SSHPort, nil
	}
	out, err := virsh(ctx, "domifaddr", vm.Name, "--source", "lease")
	if err != nil {
		return "", 0, err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 4 && f[2] == "ipv4" {
			ip, _, _ := strings.Cut(f[3], "/")
			return ip, 22, nil
		}
	}
	return "", 0, fmt.Errorf("%s has no DHCP lease yet: is it running? (vmlab up %s)", vm.Name, vm.Name)
}

// WorkerURL is where a worker enrolled on the VM is reached.
func (l *Lab) WorkerURL(ctx context.Context, vm VM) (string, error) {
	if vm.Network == "user" {
		return fmt.Sprintf("http://127.0.0.1:%d", vm.WorkerPort), nil
	}
	host, _, err := l.Address(ctx, vm)
	return "http://" + net.JoinHostPort(host, "9009"), err
}

// Up makes the VM, or starts it if it is stopped, or reports it if it runs.
func (l *Lab) Up(ctx context.Context, name string, opt UpOptions) error {
	if err := checkName(name); err != nil {
		return err
	}
	switch state, err := domainState(ctx, name); {
	case err != nil:
		return err
	case state == "running":
		vm, _, err := l.find(ctx, name)
		if err != nil {
			return err
		}
		l.say("%s is already running", name)
		return l.report(ctx, vm)
	case state != "":
		vm, _, err := l.find(ctx, name)
		if err != nil {
			return err
		}
		l.say("%s is %s: starting it", name, state)
		if _, err := virsh(ctx, "start", name); err != nil {
			return err
		}
		return l.report(ctx, vm)
	}
	if err := opt.validate(); err != nil {
		return err
	}
	if err := l.preflight(ctx, opt.VirtType, opt.Network); err != nil {
		return err
	}
	vm := VM{Name: name, User: opt.User, Network: opt.Network,
		Disk: filepath.Join(l.ImagesDir, name+".qcow2"), Seed: filepath.Join(l.ImagesDir, name+"-cidata.iso"),
		Console: filepath.Join(l.ImagesDir, name+"-console.log")}

	pub, err := l.publicKey(opt.SSHKey)
	if err != nil {
		return err
	}
	vm.Key = strings.TrimSuffix(opt.SSHKey, ".pub")
	if opt.SSHKey == "" {
		vm.Key = strings.TrimSuffix(pub.path, ".pub")
	}

	base, err := l.baseImage(ctx, opt.Image)
	if err != nil {
		return err
	}
	l.say("disk %s: a copy-on-write overlay of %s, %s", vm.Disk, base, opt.Disk)
	if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, vm.Disk, opt.Disk).CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img create %s: %v: %s", vm.Disk, err, strings.TrimSpace(string(out)))
	}
	made := true
	defer func() {
		if made { // anything failed before the domain exists: leave nothing behind
			os.Remove(vm.Disk)
			os.Remove(vm.Seed)
		}
	}()

	// The guest's phone_home reaches the host at 10.0.2.2 in user mode (qemu's
	// alias of the host's loopback), else at the default network's bridge.
	listen, guestSees := "127.0.0.1", "10.0.2.2"
	if vm.Network == "default" {
		if listen, err = bridgeAddress(ctx); err != nil {
			return err
		}
		guestSees = listen
	}
	phone, err := ListenPhoneHome(net.JoinHostPort(listen, "0"))
	if err != nil {
		return err
	}
	defer phone.Close()
	phoneURL := fmt.Sprintf("http://%s/%s", net.JoinHostPort(guestSees, strconv.Itoa(phone.Port())), name)
	l.say("seed %s: user %s with %s, phone_home to %s", vm.Seed, vm.User, pub.path, phoneURL)
	if err := makeSeed(ctx, vm.Seed, UserData(vm.User, pub.line, phoneURL), MetaData(name)); err != nil {
		return err
	}
	if vm.Network == "user" {
		if vm.SSHPort, err = freePort(); err != nil {
			return err
		}
		if vm.WorkerPort, err = freePort(); err != nil {
			return err
		}
	}

	l.say("virt-install %s (%s, %d MiB, %d CPUs, %s network)", name, opt.VirtType, opt.Memory, opt.CPUs, vm.Network)
	args := []string{"--connect", URI, "--name", name, "--memory", strconv.Itoa(opt.Memory), "--vcpus", strconv.Itoa(opt.CPUs),
		"--virt-type", opt.VirtType, "--os-variant", opt.OSVariant, "--import", "--noautoconsole", "--graphics", "none",
		"--disk", "path=" + vm.Disk + ",bus=virtio", "--disk", "path=" + vm.Seed + ",device=cdrom",
		"--serial", "pty,log.file=" + vm.Console + ",log.append=off",
		"--metadata", "description=" + vm.description()}
	if vm.Network == "user" {
		// libvirt 9.0's <interface type='user'> wants passt, which it rejects here: use qemu's own
		// user networking, with SSH and the worker port forwarded from the host's loopback only.
		// One word with "=": the value starts with "-", which virt-install would take for an option.
		args = append(args, "--network", "none", fmt.Sprintf("--qemu-commandline="+
			"-netdev user,id=vmlab0,hostfwd=tcp:127.0.0.1:%d-:22,hostfwd=tcp:127.0.0.1:%d-:9009 -device virtio-net-pci,netdev=vmlab0,addr=0x10",
			vm.SSHPort, vm.WorkerPort))
	} else {
		args = append(args, "--network", "network=default,model=virtio")
	}
	if out, err := exec.CommandContext(ctx, "virt-install", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("virt-install %s failed: %v:\n%s", name, err, strings.TrimSpace(string(out)))
	}
	made = false

	life, err := watchLifecycle(ctx, name)
	if err != nil {
		return err
	}
	defer life.close()
	l.say("waiting for %s to boot and phone home (first boot; about a minute under emulation)", name)
	waitCtx, cancel := context.WithTimeoutCause(ctx, l.BootWait, fmt.Errorf("%s did not phone home within %s (did cloud-init find its seed?); the end of its console, %s:\n%s",
		name, l.BootWait, vm.Console, consoleTail(vm.Console)))
	defer cancel()
	go func() {
		if _, stopped := <-life.stopped(); stopped {
			cancel()
		}
	}()
	call, err := phone.Wait(waitCtx)
	if err != nil {
		if state, _ := domainState(ctx, name); state != "running" {
			return fmt.Errorf("%s stopped while booting (it is %s); the end of its console, %s:\n%s\nthen: vmlab destroy %s", name, state, vm.Console, consoleTail(vm.Console), name)
		}
		return fmt.Errorf("%w\nthe end of its console, %s:\n%s", err, vm.Console, consoleTail(vm.Console))
	}
	// The VM's address: the forwarded port, or where its phone_home came from.
	host, port := "127.0.0.1", vm.SSHPort
	if vm.Network == "default" {
		host, port = call.From, 22
	}
	if err := l.recordHostKeys(host, port, call.HostKeys); err != nil {
		return err
	}
	l.say("%s phoned home; recorded its host keys in %s", name, l.knownHosts())
	if err := l.report(ctx, vm); err != nil {
		return err
	}
	if opt.Enroll {
		return l.Enroll(ctx, vm)
	}
	return nil
}

func (o *UpOptions) validate() error {
	switch {
	case o.Memory < 256:
		return fmt.Errorf("--memory %d: give the VM at least 256 MiB", o.Memory)
	case o.CPUs < 1:
		return fmt.Errorf("--cpus %d: give the VM at least one CPU", o.CPUs)
	case o.VirtType != "kvm" && o.VirtType != "qemu":
		return fmt.Errorf("--virt-type %q: use kvm (hardware virtualization) or qemu (software emulation, slow)", o.VirtType)
	case o.Network != "default" && o.Network != "user":
		return fmt.Errorf("--network %q: use default (libvirt's NAT network) or user (qemu user networking, SSH on a 127.0.0.1 port)", o.Network)
	case !regexp.MustCompile(`^[1-9][0-9]*[KMGT]?$`).MatchString(o.Disk):
		return fmt.Errorf("--disk %q: a size such as 20G", o.Disk)
	case !regexp.MustCompile(`^[a-z_][a-z0-9_-]*$`).MatchString(o.User):
		return fmt.Errorf("--user %q is not a Linux user name", o.User)
	}
	return nil
}

func (l *Lab) report(ctx context.Context, vm VM) error {
	if vm.Network == "user" {
		l.say("%s: ssh -p %d -i %s %s@127.0.0.1 (or vmlab ssh %s); a worker enrolled there answers at http://127.0.0.1:%d",
			vm.Name, vm.SSHPort, vm.Key, vm.User, vm.Name, vm.WorkerPort)
		return nil
	}
	host, _, err := l.Address(ctx, vm)
	if err != nil {
		return err
	}
	l.say("%s: ssh -i %s %s@%s (or vmlab ssh %s)", vm.Name, vm.Key, vm.User, host, vm.Name)
	return nil
}

// Down shuts the VM down gracefully, then forcibly after the grace period.
func (l *Lab) Down(ctx context.Context, name string) error {
	_, state, err := l.find(ctx, name)
	if err != nil {
		return err
	}
	if state != "running" {
		l.say("%s is already %s", name, state)
		return nil
	}
	life, err := watchLifecycle(ctx, name)
	if err != nil {
		return err
	}
	defer life.close()
	stopped := life.stopped()
	l.say("shutting %s down (forced after %s)", name, l.DownGrace)
	if _, err := virsh(ctx, "shutdown", name); err != nil {
		return err
	}
	select {
	case _, ok := <-stopped:
		if !ok {
			return fmt.Errorf("libvirt's event stream for %s ended before it stopped: check virsh --connect %s domstate %s", name, URI, name)
		}
		l.say("%s is shut off", name)
		return nil
	case <-time.After(l.DownGrace):
	case <-ctx.Done():
		return ctx.Err()
	}
	l.say("%s did not shut down within %s: forcing it off", name, l.DownGrace)
	_, err = virsh(ctx, "destroy", name)
	return err
}

// Destroy removes the VM, its disks and the host keys recorded for it.
func (l *Lab) Destroy(ctx context.Context, name string) error {
	vm, state, err := l.find(ctx, name)
	if err != nil {
		return err
	}
	host, port, addrErr := l.Address(ctx, vm)
	if state != "shut off" {
		if _, err := virsh(ctx, "destroy", name); err != nil {
			return err
		}
	}
	if _, err := virsh(ctx, "undefine", name); err != nil {
		return err
	}
	for _, f := range []string{vm.Disk, vm.Seed, vm.Console} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", f, err)
		}
	}
	if addrErr == nil {
		if err := l.forgetHostKeys(host, port); err != nil {
			return err
		}
	}
	l.say("destroyed %s and its disks %s, %s", name, vm.Disk, vm.Seed)
	return nil
}

// List prints vmlab's VMs with their state and address.
func (l *Lab) List(ctx context.Context) error {
	out, err := virsh(ctx, "list", "--all", "--name")
	if err != nil {
		return err
	}
	fmt.Fprintf(l.Out, "%-20s %-10s %s\n", "NAME", "STATE", "SSH")
	for _, name := range strings.Fields(out) {
		vm, state, err := l.find(ctx, name)
		if err != nil {
			continue // not one of vmlab's
		}
		where := "-"
		if host, port, err := l.Address(ctx, vm); err == nil {
			where = fmt.Sprintf("%s@%s", vm.User, net.JoinHostPort(host, strconv.Itoa(port)))
		}
		fmt.Fprintf(l.Out, "%-20s %-10s %s\n", name, state, where)
	}
	return nil
}

// IP prints the address the VM's SSH is reached at.
func (l *Lab) IP(ctx context.Context, name string) error {
	vm, _, err := l.find(ctx, name)
	if err != nil {
		return err
	}
	host, port, err := l.Address(ctx, vm)
	if err != nil {
		return err
	}
	if port == 22 {
		fmt.Fprintln(l.Out, host)
	} else {
		fmt.Fprintln(l.Out, net.JoinHostPort(host, strconv.Itoa(port)))
	}
	return nil
}

// SSHCommand is the ssh command line that logs in to the VM.
func (l *Lab) SSHCommand(ctx context.Context, name string, command []string) ([]string, error) {
	vm, _, err := l.find(ctx, name)
	if err != nil {
		return nil, err
	}
	host, port, err := l.Address(ctx, vm)
	if err != nil {
		return nil, err
	}
	args := []string{"ssh", "-i", vm.Key, "-p", strconv.Itoa(port), "-o", "UserKnownHostsFile=" + l.knownHosts(), vm.User + "@" + host}
	if len(command) > 0 {
		args = append(append(args, "--"), command...)
	}
	return args, nil
}

func (l *Lab) knownHosts() string { return filepath.Join(l.Home, ".ssh", "known_hosts") }

// recordHostKeys replaces what known_hosts says of host:port with keys.
func (l *Lab) recordHostKeys(host string, port int, keys []string) error {
	if len(keys) == 0 {
		return errors.New("the VM phoned home without SSH host keys: is cloud-init's phone_home posting pub_key_*?")
	}
	pattern := knownhosts.Normalize(net.JoinHostPort(host, strconv.Itoa(port)))
	var lines []string
	for _, k := range keys {
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k))
		if err != nil {
			return fmt.Errorf("the VM posted a host key that does not parse (%q): %w", k, err)
		}
		lines = append(lines, knownhosts.Line([]string{pattern}, pub))
	}
	return l.rewriteKnownHosts(pattern, lines)
}

func (l *Lab) forgetHostKeys(host string, port int) error {
	return l.rewriteKnownHosts(knownhosts.Normalize(net.JoinHostPort(host, strconv.Itoa(port))), nil)
}

// rewriteKnownHosts drops the lines for pattern and appends add.
func (l *Lab) rewriteKnownHosts(pattern string, add []string) error {
	path := l.knownHosts()
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var keep []string
	for _, line := range strings.Split(strings.TrimRight(string(old), "\n"), "\n") {
		if f := strings.Fields(line); line == "" || (len(f) > 0 && f[0] == pattern) {
			continue
		}
		keep = append(keep, line)
	}
	content := strings.Join(append(keep, add...), "\n")
	if content != "" {
		content += "\n"
	}
	if err := l.mkdirOwned(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return l.writeOwned(path, []byte(content), 0o600)
}

type publicKey struct{ path, line string }

// publicKey reads the given public key, or the user's default one, creating
// an ed25519 key pair when there is none.
func (l *Lab) publicKey(path string) (publicKey, error) {
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return publicKey{}, fmt.Errorf("--ssh-key: %w", err)
		}
		if _, _, _, _, err := ssh.ParseAuthorizedKey(b); err != nil {
			return publicKey{}, fmt.Errorf("--ssh-key %s is not an SSH public key (%v): pass the .pub file", path, err)
		}
		return publicKey{path, strings.TrimSpace(string(b))}, nil
	}
	dir := filepath.Join(l.Home, ".ssh")
	for _, name := range []string{"id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
			return publicKey{filepath.Join(dir, name), strings.TrimSpace(string(b))}, nil
		}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return publicKey{}, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "vmlab")
	if err != nil {
		return publicKey{}, err
	}
	sshPub, _ := ssh.NewPublicKey(pub)
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " vmlab"
	if err := l.mkdirOwned(dir, 0o700); err != nil {
		return publicKey{}, err
	}
	if err := l.writeOwned(filepath.Join(dir, "id_ed25519"), pem.EncodeToMemory(block), 0o600); err != nil {
		return publicKey{}, err
	}
	if err := l.writeOwned(filepath.Join(dir, "id_ed25519.pub"), []byte(line+"\n"), 0o644); err != nil {
		return publicKey{}, err
	}
	l.say("created the SSH key %s (there was none)", filepath.Join(dir, "id_ed25519"))
	return publicKey{filepath.Join(dir, "id_ed25519.pub"), line}, nil
}

func (l *Lab) mkdirOwned(dir string, mode os.FileMode) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, mode); err != nil {
		return err
	}
	return l.chown(dir)
}

func (l *Lab) writeOwned(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".vmlab-tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := l.chown(tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

func (l *Lab) chown(path string) error {
	if l.Owner == nil {
		return nil
	}
	return os.Chown(path, l.Owner.UID, l.Owner.GID)
}

// baseImage is the image given with --image, or the newest Fedora Cloud image,
// downloaded once into ImagesDir/vmlab-base.
func (l *Lab) baseImage(ctx context.Context, image string) (string, error) {
	if image != "" {
		abs, err := filepath.Abs(image)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("--image: %w", err)
		}
		l.say("base image %s", abs)
		return abs, nil
	}
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]
	img, err := NewestFedora(ctx, l.HTTP, l.Releases, arch)
	if err != nil {
		return "", fmt.Errorf("find the newest Fedora Cloud image: %w", err)
	}
	dir := filepath.Join(l.ImagesDir, "vmlab-base")
	if _, err := os.Stat(filepath.Join(dir, img.Name)); err == nil {
		l.say("base image %s (downloaded before)", img.Name)
	} else {
		l.say("downloading %s", img.URL)
	}
	path, err := Download(ctx, l.HTTP, img, dir, func(done, total int64) {
		l.say("  %d of %d MiB", done>>20, total>>20)
	})
	if err != nil {
		return "", err
	}
	return path, nil
}

// consoleTail is the end of a console log, for error messages.
func consoleTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(strings.ReplaceAll(string(b), "\r", ""), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// freePort asks the OS for a free port on 127.0.0.1. The port is free
// again when qemu binds it a moment later.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// bridgeAddress is the host's address on libvirt's default network.
func bridgeAddress(ctx context.Context) (string, error) {
	out, err := virsh(ctx, "net-dumpxml", "default")
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`<ip address=['"]([0-9.]+)['"]`).FindStringSubmatch(out)
	if m == nil {
		return "", errors.New("libvirt's default network has no IPv4 address: vmlab doctor says how to fix it")
	}
	return m[1], nil
}
