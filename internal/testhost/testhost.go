// Package testhost starts fresh Debian 11, 12 and 13 machines for enrollment tests:
// containers of the images bettertest/testhost:RELEASE (testdata/testhost, built by
// scripts/setup-test-env.sh) with systemd as PID 1, sshd and a few users, reached
// over SSH on a loopback port like a real host. Nested Docker works inside them:
// apt-get install docker.io, then docker load and docker run.
//
// Every wait is on an event: systemd's own READY=1 datagram on a NOTIFY_SOCKET that
// the harness binds (PID 1 in a container sends it to its container manager once
// the boot's job queue has run empty), then `systemctl start ssh`, which returns
// once sshd listens (Type=notify); the container's exit ends the first wait early.
//
// The container is created with the equivalent of
//
//	docker run -d --cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add MKNOD --cap-add SYS_PTRACE \
//	  --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
//	  --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup --tmpfs /run --tmpfs /run/lock \
//	  -v /var/lib/docker -p 127.0.0.1::22 -p 127.0.0.1::9009 \
//	  --label dev.bettertest.testhost=1 -v NOTIFYDIR:/run/host/testhost \
//	  bettertest/testhost:RELEASE /usr/bin/env NOTIFY_SOCKET=/run/host/testhost/notify /sbin/init
//
// or, with Options.Loopback, -p ADDR:22:22 -p ADDR:9009:9009; with Options.Publish
// "::1", -p [::1]::22 -p [::1]::9009; with Options.Network, --network NET (a network
// that NewNetwork made, on which other hosts reach it by name). (--privileged fails
// on these machines: CAP_SYS_RESOURCE is not available.)
package testhost

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	wt "github.com/bettertest/bettertest/internal/workertest"
)

// The Debian releases that test hosts run, as Options.Release names them.
const (
	Bullseye = "bullseye" // Debian 11: systemd 247, Docker 20.10
	Bookworm = "bookworm" // Debian 12: systemd 252, Docker 20.10
	Trixie   = "trixie"   // Debian 13: systemd 257, Docker 26
)

// Releases are the releases there are test host images of, oldest first.
var Releases = []string{Bullseye, Bookworm, Trixie}

// Image is the test host image of a release that scripts/setup-test-env.sh
// builds from testdata/testhost.
func Image(release string) string { return "bettertest/testhost:" + release }

// Label marks every test host container, so that a stale one can be found with
// `docker ps -a --filter label=dev.bettertest.testhost`.
const Label = "dev.bettertest.testhost"

// CarolPassword is carol's login password. The users of a test host: root, alice
// and bob log in with the test's key, carol only with her password; alice and
// carol may sudo without a password, bob may not sudo.
const CarolPassword = "carol-password"

// WorkerPort is the host's port that WorkerURL publishes, as an enrolled worker
// listens (`bettertest worker --listen :9009`).
const WorkerPort = 9009

// keyUsers are the accounts that get the run's public key, with their home and ids
// as the image's Dockerfile makes them.
var keyUsers = []struct {
	home string
	id   int
}{{"root", 0}, {"home/alice", 1000}, {"home/bob", 1001}}

// Deadline bounds the boot of a host; it only turns a hang into a failure.
const Deadline = 2 * time.Minute

// StopTimeout bounds a host's shutdown at the end of its test, after which it is
// killed. A nested engine gives its containers 10 s to stop on SIGTERM.
const StopTimeout = 30 * time.Second

// Key is a fresh SSH key pair for a test run, written to a temporary directory.
type Key struct {
	PrivatePath string // OpenSSH private key file, mode 0600, no passphrase
	PublicPath  string // PrivatePath + ".pub"
	Public      string // authorized_keys format: "ssh-ed25519 AAAA..."
	Signer      ssh.Signer
}

// NewKey makes a fresh ed25519 key pair in a temporary directory of t.
func NewKey(t testing.TB) Key {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "bettertest-testhost")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	k := Key{
		PrivatePath: filepath.Join(t.TempDir(), "id_ed25519"),
		Public:      strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(signer.PublicKey())), "\n"),
		Signer:      signer,
	}
	k.PublicPath = k.PrivatePath + ".pub"
	if err := os.WriteFile(k.PrivatePath, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.PublicPath, []byte(k.Public+" bettertest-testhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return k
}

// Options shape a test host.
type Options struct {
	Key Key // installed in the authorized_keys of root, alice and bob; required

	// Loopback, if set, is a loopback address of the host's own (see FreeLoopback)
	// on which it publishes the standard ports 22 and 9009, so that it is reached
	// as root@ADDR and http://ADDR:9009, like a machine on a network. If empty, the
	// host publishes on 127.0.0.1 with ports that the OS picks.
	Loopback string

	// Publish, if set, is the loopback address on which the host publishes its
	// ports, which the OS picks: "::1" for a host reached over IPv6. The
	// default is 127.0.0.1. Not with Loopback.
	Publish string

	// Network, if set, is a Docker network made by NewNetwork that the host
	// joins: other hosts on it reach this one by its Name (a bastion, say).
	Network string

	// Release is the Debian release the host runs: Bullseye, Bookworm (the
	// default) or Trixie.
	Release string

	// Docker, if set, makes a host that already runs Docker, as one set up by
	// hand before enrollment: docker.io (and docker-cli, where the release
	// has it) installed from the release's own packages, docker.service
	// enabled and started.
	Docker bool

	// WorkerPort is the port inside the host that WorkerURL publishes, for a
	// worker that listens elsewhere than WorkerPort (enroll --listen).
	WorkerPort int
}

// NewNetwork makes a Docker network for test hosts to talk to each other by
// name (Options.Network), removed when the test ends, after its hosts.
func NewNetwork(t testing.TB) string {
	t.Helper()
	wt.Integration(t)
	docker, err := client.NewClientWithOpts(client.WithHost(client.DefaultDockerHost), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "testhost-net-" + hex.EncodeToString(b)
	if _, err := docker.NetworkCreate(context.Background(), name, network.CreateOptions{Labels: map[string]string{Label: "1", Label + ".test": t.Name()}}); err != nil {
		t.Fatalf("testhost: creating the network %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := docker.NetworkRemove(context.Background(), name); err != nil {
			t.Errorf("testhost: removing the network %s: %v", name, err)
		}
		docker.Close()
	})
	return name
}

// FreeLoopback returns a random address in 127.0.0.0/8, outside 127.0.0.0/16, on
// which ports 22 and 9009 are free, for Options.Loopback.
func FreeLoopback(t testing.TB) string {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	addr := fmt.Sprintf("127.%d.%d.%d", 1+int(b[0])%254, b[1], 1+int(b[2])%254)
	for _, port := range []int{22, WorkerPort} {
		l, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("testhost: port %d on %s is taken (a listener on all addresses?): %v", port, addr, err)
		}
		l.Close()
	}
	return addr
}

// Host is a running test host.
type Host struct {
	Name      string   // the container's name, also its hostname
	Loopback  string   // the address it is reached on: 127.0.0.1 or Options.Loopback
	SSHAddr   string   // "Loopback:PORT", the published port 22
	SSHPort   int      // PORT in SSHAddr
	WorkerURL string   // "http://Loopback:PORT", the published port 9009
	HostKeys  []string // sshd's public keys, ed25519 first: "ssh-ed25519 AAAA..."

	docker *client.Client
	id     string
}

// Start starts a fresh host and returns once it has booted and sshd accepts
// connections. The host and its volume are removed when the test ends.
func Start(t testing.TB, opt Options) *Host {
	t.Helper()
	wt.Integration(t)
	if opt.Key.Public == "" {
		t.Fatal("testhost.Start: Options.Key is empty; make one with testhost.NewKey(t)")
	}
	if opt.Release == "" {
		opt.Release = Bookworm
	}
	if !slices.Contains(Releases, opt.Release) {
		t.Fatalf("testhost.Start: Options.Release %q is none of %v", opt.Release, Releases)
	}
	image := Image(opt.Release)
	docker, err := client.NewClientWithOpts(client.WithHost(client.DefaultDockerHost), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { docker.Close() })
	ctx := context.Background()
	info, err := docker.Info(ctx)
	if err != nil {
		t.Fatalf("testhost: the Docker engine does not answer: %v (run scripts/setup-test-env.sh)", err)
	}
	if info.CgroupVersion != "1" {
		// The host's cgroup tree is bound into the container for systemd; with
		// cgroup v2 that would hand it the host's root cgroup.
		t.Fatalf("testhost: the engine reports cgroup v%s; these run options are made for cgroup v1", info.CgroupVersion)
	}

	// systemd, as PID 1 in a container, sends READY=1 to its container manager's
	// NOTIFY_SOCKET. A unix socket path must stay short, so not under t.TempDir().
	sockDir, err := os.MkdirTemp("", "testhost")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(sockDir, "notify"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	ready := make(chan error, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := notify.Read(buf)
			if err != nil {
				ready <- err
				return
			}
			for _, line := range strings.Split(string(buf[:n]), "\n") {
				if line == "READY=1" {
					ready <- nil
					return
				}
			}
		}
	}()

	b := make([]byte, 4)
	_, _ = rand.Read(b)
	h := &Host{Name: "testhost-" + hex.EncodeToString(b), Loopback: "127.0.0.1", docker: docker}
	if opt.WorkerPort == 0 {
		opt.WorkerPort = WorkerPort
	}
	sshPort, workerPort := nat.Port("22/tcp"), nat.Port(fmt.Sprintf("%d/tcp", opt.WorkerPort))
	if opt.Publish != "" {
		h.Loopback = opt.Publish
	}
	bindings := nat.PortMap{sshPort: {{HostIP: h.Loopback}}, workerPort: {{HostIP: h.Loopback}}}
	if opt.Loopback != "" {
		h.Loopback = opt.Loopback
		bindings = nat.PortMap{
			sshPort:    {{HostIP: h.Loopback, HostPort: "22"}},
			workerPort: {{HostIP: h.Loopback, HostPort: strconv.Itoa(WorkerPort)}},
		}
	}
	created, err := docker.ContainerCreate(ctx,
		&container.Config{
			Image:    image,
			Hostname: h.Name,
			// Set for PID 1 alone, not in the container's environment that execs inherit.
			Cmd:          []string{"/usr/bin/env", "NOTIFY_SOCKET=/run/host/testhost/notify", "/sbin/init"},
			ExposedPorts: nat.PortSet{sshPort: {}, workerPort: {}},
			Labels:       map[string]string{Label: "1", Label + ".test": t.Name()},
		},
		&container.HostConfig{
			CapAdd:       []string{"SYS_ADMIN", "NET_ADMIN", "MKNOD", "SYS_PTRACE"},
			SecurityOpt:  []string{"seccomp=unconfined", "apparmor=unconfined"},
			CgroupnsMode: container.CgroupnsModeHost,
			Binds:        []string{"/sys/fs/cgroup:/sys/fs/cgroup", sockDir + ":/run/host/testhost"},
			Tmpfs:        map[string]string{"/run": "", "/run/lock": ""},
			// The nested engine's overlay2 needs a directory that is not on overlayfs.
			Mounts:       []mount.Mount{{Type: mount.TypeVolume, Target: "/var/lib/docker"}},
			PortBindings: bindings,
		}, networking(opt.Network), nil, h.Name)
	if err != nil {
		if client.IsErrNotFound(err) {
			t.Fatalf("testhost: the image %s is missing: run `bash scripts/setup-test-env.sh` (%v)", image, err)
		}
		t.Fatalf("testhost: creating the container: %v", err)
	}
	h.id = created.ID
	t.Cleanup(func() {
		if t.Failed() {
			out, _, _ := h.exec(nil, "journalctl", "--boot", "--no-pager", "--lines=60", "--output=short-monotonic")
			t.Logf("testhost %s: the end of its journal:\n%s", h.Name, out)
		}
		// Shut down like a machine (the image's stop signal makes systemd power off)
		// rather than kill it: a nested engine then stops its containers, whose
		// cgroups, with the host's cgroup namespace, live in this machine's tree
		// and would otherwise be left behind there.
		stopTimeout := int(StopTimeout / time.Second)
		if err := docker.ContainerStop(context.Background(), h.id, container.StopOptions{Timeout: &stopTimeout}); err != nil {
			t.Errorf("testhost: stopping %s: %v", h.Name, err)
		}
		err := docker.ContainerRemove(context.Background(), h.id, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil {
			t.Errorf("testhost: removing %s: %v", h.Name, err)
		}
	})
	if err := docker.CopyToContainer(ctx, h.id, "/", authorizedKeys(opt.Key.Public), container.CopyToContainerOptions{}); err != nil {
		t.Fatalf("testhost: installing the key in %s: %v", h.Name, err)
	}

	exited, waitErr := docker.ContainerWait(ctx, h.id, container.WaitConditionNextExit)
	if err := docker.ContainerStart(ctx, h.id, container.StartOptions{}); err != nil {
		t.Fatalf("testhost: starting %s: %v", h.Name, err)
	}
	deadline := time.NewTimer(Deadline)
	defer deadline.Stop()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("testhost: reading systemd's notifications from %s: %v", h.Name, err)
		}
	case w := <-exited:
		t.Fatalf("testhost: %s exited with code %d while booting; see `docker logs`", h.Name, w.StatusCode)
	case err := <-waitErr:
		t.Fatalf("testhost: waiting on %s: %v", h.Name, err)
	case <-deadline.C:
		t.Fatalf("testhost: systemd in %s did not report READY=1 within %v", h.Name, Deadline)
	}

	if state, _, _ := h.exec(nil, "systemctl", "is-system-running"); state != "running\n" {
		failed, _, _ := h.exec(nil, "systemctl", "--failed", "--plain", "--no-legend")
		t.Logf("testhost: %s booted %q; failed units:\n%s", h.Name, strings.TrimSpace(state), failed)
	}
	// Already started by the boot; this returns once sshd listens, or fails if it cannot.
	if _, stderr, code := h.exec(nil, "systemctl", "start", "ssh"); code != 0 {
		status, _, _ := h.exec(nil, "systemctl", "status", "--no-pager", "ssh")
		t.Fatalf("testhost: ssh.service in %s does not start: %s\n%s", h.Name, strings.TrimSpace(stderr), status)
	}

	inspect, err := docker.ContainerInspect(ctx, h.id)
	if err != nil {
		t.Fatal(err)
	}
	h.SSHPort = h.publishedPort(t, inspect, sshPort)
	h.SSHAddr = net.JoinHostPort(h.Loopback, strconv.Itoa(h.SSHPort))
	h.WorkerURL = "http://" + net.JoinHostPort(h.Loopback, strconv.Itoa(h.publishedPort(t, inspect, workerPort)))
	h.readHostKeys(t)
	if opt.Docker {
		// apt-get starts docker.service as it installs it; is-active says it
		// runs. Where docker-cli exists (trixie), docker.io only recommends it.
		h.Exec(t, "sh", "-c", `set -e
apt-get update -qq
cli=$(apt-cache show docker-cli >/dev/null 2>&1 && echo docker-cli || true)
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io $cli >/dev/null
systemctl is-active docker.service`)
	}
	return h
}

func networking(name string) *network.NetworkingConfig {
	if name == "" {
		return nil
	}
	return &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{name: {}}}
}

// authorizedKeys is a tar archive, for extraction at /, that gives each key user
// an ~/.ssh/authorized_keys holding public, with the modes and owners sshd requires.
func authorizedKeys(public string) io.Reader {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := []byte(public + "\n")
	for _, u := range keyUsers {
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: u.home + "/.ssh/", Mode: 0o700, Uid: u.id, Gid: u.id})
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: u.home + "/.ssh/authorized_keys", Mode: 0o600, Uid: u.id, Gid: u.id, Size: int64(len(body))})
		_, _ = tw.Write(body)
	}
	_ = tw.Close()
	return &buf
}

func (h *Host) publishedPort(t testing.TB, inspect container.InspectResponse, port nat.Port) int {
	t.Helper()
	for _, b := range inspect.NetworkSettings.Ports[port] {
		if b.HostIP == h.Loopback {
			p, err := strconv.Atoi(b.HostPort)
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
	}
	t.Fatalf("testhost: %s publishes %s on no port of %s: %v", h.Name, port, h.Loopback, inspect.NetworkSettings.Ports)
	return 0
}

// readHostKeys reads sshd's public host keys, ed25519 first, without their comments.
func (h *Host) readHostKeys(t testing.TB) {
	t.Helper()
	out := h.Exec(t, "cat", "/etc/ssh/ssh_host_ed25519_key.pub", "/etc/ssh/ssh_host_ecdsa_key.pub", "/etc/ssh/ssh_host_rsa_key.pub")
	h.HostKeys = nil
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			t.Fatalf("testhost: a malformed host key in %s: %q: %v", h.Name, line, err)
		}
		h.HostKeys = append(h.HostKeys, strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(key)), "\n"))
	}
}

// KnownHostsLine is the known_hosts line for the host's SSH address with its
// ed25519 key, unhashed, as OpenSSH writes it: "[127.0.0.1]:PORT ssh-ed25519 AAAA...",
// or "ADDR ssh-ed25519 AAAA..." on a loopback address of its own (port 22).
func (h *Host) KnownHostsLine() string {
	return h.KnownHostsLineAs(h.SSHAddr)
}

// KnownHostsLineAs is the known_hosts line for the host's ed25519 key under
// another address: its Name, as a bastion on its Network reaches it.
func (h *Host) KnownHostsLineAs(hostport string) string {
	key, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(h.HostKeys[0])) // parsed once already
	return knownhosts.Line([]string{hostport}, key)
}

// Exec runs cmd in the host as root and returns its stdout. The test fails if it
// exits non-zero; the failure shows its stderr.
func (h *Host) Exec(t testing.TB, cmd ...string) string {
	t.Helper()
	stdout, stderr, code := h.ExecCode(t, cmd...)
	if code != 0 {
		t.Fatalf("testhost: %q in %s exited with code %d\nstdout:\n%s\nstderr:\n%s", cmd, h.Name, code, stdout, stderr)
	}
	return stdout
}

// ExecCode runs cmd in the host as root and returns its output and exit code.
// The test fails only if the command cannot be run.
func (h *Host) ExecCode(t testing.TB, cmd ...string) (stdout, stderr string, code int) {
	t.Helper()
	stdout, stderr, code, err := h.execInput(nil, cmd...)
	if err != nil {
		t.Fatalf("testhost: running %q in %s: %v", cmd, h.Name, err)
	}
	return stdout, stderr, code
}

// exec is ExecCode for the harness's own use, where a failure to run counts as
// a failed command; it shows up in stderr.
func (h *Host) exec(stdin io.Reader, cmd ...string) (stdout, stderr string, code int) {
	stdout, stderr, code, err := h.execInput(stdin, cmd...)
	if err != nil {
		return stdout, err.Error(), -1
	}
	return stdout, stderr, code
}

func (h *Host) execInput(stdin io.Reader, cmd ...string) (stdout, stderr string, code int, err error) {
	ctx := context.Background()
	created, err := h.docker.ContainerExecCreate(ctx, h.id, container.ExecOptions{
		Cmd: cmd, AttachStdin: stdin != nil, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		return "", "", 0, err
	}
	att, err := h.docker.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		return "", "", 0, err
	}
	defer att.Close()
	fed := make(chan error, 1)
	if stdin != nil {
		go func() {
			_, err := io.Copy(att.Conn, stdin)
			if cerr := att.CloseWrite(); err == nil {
				err = cerr
			}
			fed <- err
		}()
	} else {
		fed <- nil
	}
	var out, errOut bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &errOut, att.Reader); err != nil {
		return out.String(), errOut.String(), 0, fmt.Errorf("reading its output: %w", err)
	}
	if err := <-fed; err != nil {
		return out.String(), errOut.String(), 0, fmt.Errorf("writing its input: %w", err)
	}
	// The daemon records the exit code before it closes the output streams.
	res, err := h.docker.ContainerExecInspect(ctx, created.ID)
	if err != nil {
		return out.String(), errOut.String(), 0, err
	}
	if res.Running {
		return out.String(), errOut.String(), 0, errors.New("its output ended but it still runs")
	}
	return out.String(), errOut.String(), res.ExitCode, nil
}

// LoadImage copies image from the machine's engine into the host's own Docker
// engine (docker save | docker load), which must be running.
func (h *Host) LoadImage(t testing.TB, image string) {
	t.Helper()
	saved, err := h.docker.ImageSave(context.Background(), []string{image})
	if err != nil {
		t.Fatalf("testhost: docker save %s: %v", image, err)
	}
	defer saved.Close()
	stdout, stderr, code := h.exec(saved, "docker", "load")
	if code != 0 {
		t.Fatalf("testhost: docker load of %s in %s exited with code %d (is docker.service running there?)\n%s%s", image, h.Name, code, stdout, stderr)
	}
}

// RegenerateHostKeys gives the host new SSH host keys and restarts sshd, as a
// reinstalled machine at the same address would look. HostKeys follows.
func (h *Host) RegenerateHostKeys(t testing.TB) {
	t.Helper()
	h.Exec(t, "sh", "-c", "rm -f /etc/ssh/ssh_host_* && ssh-keygen -A && systemctl restart ssh")
	h.readHostKeys(t)
}

// PID is the main PID of a systemd unit, 0 if it has none.
func (h *Host) PID(t testing.TB, unit string) int {
	t.Helper()
	out := strings.TrimSpace(h.Exec(t, "systemctl", "show", "--property=MainPID", "--value", unit))
	pid, err := strconv.Atoi(out)
	if err != nil {
		t.Fatalf("testhost: the MainPID of %s in %s: %q", unit, h.Name, out)
	}
	return pid
}
