package vmlab

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"testing"
)

func TestUserData(t *testing.T) {
	got := UserData("alice", "ssh-ed25519 AAAAC3Nz alice@laptop\n", "http://10.0.2.2:4321/worker1")
	const want = `#cloud-config
users:
  - name: "alice"
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    shell: /bin/bash
    ssh_authorized_keys:
      - "ssh-ed25519 AAAAC3Nz alice@laptop"
ssh_pwauth: false
phone_home:
  url: "http://10.0.2.2:4321/worker1"
  post: [pub_key_ed25519, pub_key_ecdsa, pub_key_rsa, instance_id, hostname]
  tries: 10
`
	if got != want {
		t.Fatalf("user-data:\n%s", got)
	}
	if got := MetaData("worker1"); got != "instance-id: \"worker1\"\nlocal-hostname: \"worker1\"\n" {
		t.Fatalf("meta-data: %q", got)
	}
}

func TestPhoneHome(t *testing.T) {
	p, err := ListenPhoneHome("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// The body cloud-init's phone_home module posts: form fields, keys with newlines.
	form := url.Values{
		"pub_key_dsa": {"N/A"}, "pub_key_rsa": {"ssh-rsa AAAAB3 root@worker1\n"}, "pub_key_ed25519": {"ssh-ed25519 AAAAC3 root@worker1\n"},
		"pub_key_ecdsa": {"ecdsa-sha2-nistp256 AAAAE2 root@worker1\n"}, "instance_id": {"worker1"}, "hostname": {"worker1"}, "fqdn": {"worker1"},
	}
	resp, err := http.PostForm(fmt.Sprintf("http://127.0.0.1:%d/worker1", p.Port()), form)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("post: %v %v", err, resp)
	}
	got, err := p.Wait(context.Background())
	want := Call{Hostname: "worker1", From: "127.0.0.1", HostKeys: []string{"ssh-ed25519 AAAAC3 root@worker1", "ecdsa-sha2-nistp256 AAAAE2 root@worker1", "ssh-rsa AAAAB3 root@worker1"}}
	// A guest without RSA keys: cloud-init posts N/A for them.
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, %v", got, err)
	}
}
