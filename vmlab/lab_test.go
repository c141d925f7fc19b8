package vmlab

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestDescriptionRoundTrip(t *testing.T) {
	vm := VM{Name: "w1", User: "alice", Network: "user", Key: "/home/alice/.ssh/id ed25519", SSHPort: 2222, WorkerPort: 9010,
		Disk: "/var/lib/libvirt/images/w1.qcow2", Seed: "/var/lib/libvirt/images/w1-cidata.iso", Console: "/var/lib/libvirt/images/w1-console.log"}
	desc := vm.description()
	const want = "vmlab:console=%2Fvar%2Flib%2Flibvirt%2Fimages%2Fw1-console.log&disk=%2Fvar%2Flib%2Flibvirt%2Fimages%2Fw1.qcow2&key=%2Fhome%2Falice%2F.ssh%2Fid+ed25519&network=user" +
		"&seed=%2Fvar%2Flib%2Flibvirt%2Fimages%2Fw1-cidata.iso&ssh=2222&user=alice&worker=9010"
	if desc != want {
		t.Fatalf("description %q", desc)
	}
	got, ok := parseDescription("w1", desc+"\n")
	if !ok || got != vm {
		t.Fatalf("parsed %+v", got)
	}
	if _, ok := parseDescription("w1", "made by hand"); ok {
		t.Fatal("a domain vmlab did not make")
	}
}

func TestUpOptionsValidate(t *testing.T) {
	good := UpOptions{Memory: 4096, CPUs: 2, Disk: "20G", User: "alice", VirtType: "kvm", Network: "default"}
	if err := good.validate(); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		mutate func(*UpOptions)
		want   string
	}{
		"memory":  {func(o *UpOptions) { o.Memory = 100 }, "--memory 100: give the VM at least 256 MiB"},
		"virt":    {func(o *UpOptions) { o.VirtType = "xen" }, `--virt-type "xen": use kvm (hardware virtualization) or qemu (software emulation, slow)`},
		"network": {func(o *UpOptions) { o.Network = "bridge" }, `--network "bridge": use default (libvirt's NAT network) or user (qemu user networking, SSH on a 127.0.0.1 port)`},
		"disk":    {func(o *UpOptions) { o.Disk = "lots" }, `--disk "lots": a size such as 20G`},
		"user":    {func(o *UpOptions) { o.User = "Bob Smith" }, `--user "Bob Smith" is not a Linux user name`},
	} {
		o := good
		c.mutate(&o)
		if err := o.validate(); err == nil || err.Error() != c.want {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := checkName("Worker_1"); err == nil || err.Error() != `VM name "Worker_1": use lowercase letters, digits and '-', starting with a letter (it becomes the hostname)` {
		t.Fatalf("name: %v", err)
	}
}

func TestNeedsForwardFix(t *testing.T) {
	docker := "table ip filter {\n\tchain FORWARD {\n\t\ttype filter hook forward priority filter; policy drop;\n\t\tcounter packets 0 bytes 0 jump DOCKER-USER\n\t}\n}\n"
	fixed := "table ip filter {\n\tchain FORWARD {\n\t\ttype filter hook forward priority filter; policy drop;\n\t\tiifname \"virbr0\" accept\n\t\toifname \"virbr0\" ct state established,related accept\n\t}\n}\n"
	open := "table ip filter {\n\tchain FORWARD {\n\t\ttype filter hook forward priority filter; policy accept;\n\t}\n}\n"
	if !needsForwardFix(docker) || needsForwardFix(fixed) || needsForwardFix(open) {
		t.Fatal("needsForwardFix")
	}
}

func TestKnownHostsRecordAndForget(t *testing.T) {
	l := &Lab{Home: t.TempDir(), Out: io.Discard}
	os.MkdirAll(filepath.Join(l.Home, ".ssh"), 0o700)
	other := "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
	os.WriteFile(l.knownHosts(), []byte(other+"[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"), 0o600)
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFtWD3Os8b6jYEkVBhiLbLmMBBpBNcFBEfPcOF/jgu46 root@w1"
	if err := l.recordHostKeys("127.0.0.1", 2222, []string{key}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(l.knownHosts())
	if string(got) != other+"[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFtWD3Os8b6jYEkVBhiLbLmMBBpBNcFBEfPcOF/jgu46\n" {
		t.Fatalf("after record:\n%s", got)
	}
	if err := l.forgetHostKeys("127.0.0.1", 2222); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(l.knownHosts()); string(got) != other {
		t.Fatalf("after forget:\n%s", got)
	}
}
