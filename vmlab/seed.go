package vmlab

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// q quotes a string for YAML: a JSON string is a valid YAML scalar, and
// nothing in it can break out of it.
func q(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// UserData is the cloud-init user-data of a VM: the user with passwordless
// sudo and the public key, and a phone_home POST of the VM's SSH host keys to
// phoneHomeURL once boot is done.
func UserData(user, publicKey, phoneHomeURL string) string {
	return `#cloud-config
users:
  - name: ` + q(user) + `
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    shell: /bin/bash
    ssh_authorized_keys:
      - ` + q(strings.TrimSpace(publicKey)) + `
ssh_pwauth: false
phone_home:
  url: ` + q(phoneHomeURL) + `
  post: [pub_key_ed25519, pub_key_ecdsa, pub_key_rsa, instance_id, hostname]
  tries: 10
`
}

// MetaData is the NoCloud meta-data of a VM.
func MetaData(name string) string {
	return "instance-id: " + q(name) + "\nlocal-hostname: " + q(name) + "\n"
}

// makeSeed writes the NoCloud seed ISO (volume label cidata) to path.
func makeSeed(ctx context.Context, path, userData, metaData string) error {
	dir, err := os.MkdirTemp("", "vmlab-seed")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for name, content := range map[string]string{"user-data": userData, "meta-data": metaData} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	out, err := exec.CommandContext(ctx, "genisoimage", "-quiet", "-output", path, "-volid", "cidata", "-joliet", "-rock",
		filepath.Join(dir, "user-data"), filepath.Join(dir, "meta-data")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("make the cloud-init seed with genisoimage: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// PhoneHome is a one-shot listener for cloud-init's phone_home POST: the
// guest's own word that it has booted, carrying its SSH host keys.
type PhoneHome struct {
	ln  net.Listener
	got chan Call
	srv *http.Server
}

// Call is what the guest posted.
type Call struct {
	HostKeys []string // authorized_keys format, ed25519 first
	Hostname string
	From     string // the guest's address as seen by the listener
}

// ListenPhoneHome listens on addr (host:0 picks a port).
func ListenPhoneHome(addr string) (*PhoneHome, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for the VM's phone_home on %s: %w", addr, err)
	}
	p := &PhoneHome{ln: ln, got: make(chan Call, 1)}
	p.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(p.serve)}
	go p.srv.Serve(ln)
	return p, nil
}

// Port is the port the listener got.
func (p *PhoneHome) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *PhoneHome) serve(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		http.Error(w, "vmlab expects cloud-init's phone_home POST", http.StatusBadRequest)
		return
	}
	call := Call{Hostname: r.PostForm.Get("hostname")}
	call.From, _, _ = net.SplitHostPort(r.RemoteAddr)
	for _, field := range []string{"pub_key_ed25519", "pub_key_ecdsa", "pub_key_rsa"} {
		// cloud-init sends "N/A" for the key types the guest does not have.
		if k := strings.TrimSpace(r.PostForm.Get(field)); k != "" && k != "N/A" {
			call.HostKeys = append(call.HostKeys, k)
		}
	}
	select {
	case p.got <- call:
	default: // a retry after the first call: already answered
	}
}

// Wait returns the first call, or fails when ctx ends first.
func (p *PhoneHome) Wait(ctx context.Context) (Call, error) {
	select {
	case c := <-p.got:
		return c, nil
	case <-ctx.Done():
		return Call{}, context.Cause(ctx)
	}
}

// Close stops listening.
func (p *PhoneHome) Close() error { return p.srv.Close() }
