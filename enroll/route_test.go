package enroll

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestParseAddress(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Address
	}{
		{"build1", Address{Host: "build1"}},
		{"alice@build1", Address{User: "alice", Host: "build1"}},
		{"alice@build1:2222", Address{User: "alice", Host: "build1", Port: 2222}},
		{"alice@::1", Address{User: "alice", Host: "::1"}},
		{"alice@[::1]", Address{User: "alice", Host: "::1"}},
		{"alice@[::1]:2222", Address{User: "alice", Host: "::1", Port: 2222}},
		{"[2001:db8::42]:22", Address{Host: "2001:db8::42", Port: 22}},
		{"alice@[fe80::1%eth0]:22", Address{User: "alice", Host: "fe80::1%eth0", Port: 22}},
		{"ssh://alice@build1:2222", Address{User: "alice", Host: "build1", Port: 2222}},
		{"ssh://alice@[::1]:2222/", Address{User: "alice", Host: "::1", Port: 2222}},
		{"ssh://build1", Address{Host: "build1"}},
		{"a@b@build1", Address{User: "a@b", Host: "build1"}},
	} {
		got, err := ParseAddress(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseAddress(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	const forms = "; write host, user@host, user@host:port, user@[::1]:port or ssh://user@host:port"
	for in, want := range map[string]string{
		"@build1":          `"@build1" is not USER@HOST: the user before @ is empty` + forms,
		"alice@":           `"alice@" is not USER@HOST: the host is empty` + forms,
		"alice@[::1":       `"alice@[::1" is not USER@HOST: the [ of an IPv6 address is not closed` + forms,
		"alice@[::1]2222":  `"alice@[::1]2222" is not USER@HOST: only :PORT may follow ]` + forms,
		"alice@[build1]":   `"alice@[build1]" is not USER@HOST: brackets hold an IPv6 address` + forms,
		"alice@build1:ssh": `"alice@build1:ssh" is not USER@HOST: port "ssh" is not a number from 1 to 65535` + forms,
		"alice@[::1]:0":    `"alice@[::1]:0" is not USER@HOST: port "0" is not a number from 1 to 65535` + forms,
		"alice@a:b:c":      `"alice@a:b:c" is not USER@HOST: it is not an IPv6 address; put one in brackets to add a port` + forms,
		"alice@build 1":    `"alice@build 1" is not USER@HOST: it holds a space or a slash` + forms,
	} {
		_, err := ParseAddress(in)
		if err == nil || err.Error() != want {
			t.Errorf("ParseAddress(%q): %v\nwant %s", in, err, want)
		}
	}
}

func TestWorkerNameAndURLOfIPv6(t *testing.T) {
	for _, c := range []struct{ host, name, url string }{
		{"::1", "0--1", "http://[::1]:9009"},
		{"2001:db8::42", "2001-db8--42", "http://[2001:db8::42]:9009"},
		{"fe80::", "fe80--0", "http://[fe80::]:9009"},
		{"fe80::1%eth0", "fe80--1-eth0", "http://[fe80::1%25eth0]:9009"},
		{"2001:DB8:0:0:0:0:0:1", "2001-db8--1", "http://[2001:DB8:0:0:0:0:0:1]:9009"},
		{"192.0.2.7", "192.0.2.7", "http://192.0.2.7:9009"},
		{"build1.example.com", "build1.example.com", "http://build1.example.com:9009"},
	} {
		if got := WorkerName(c.host); got != c.name || !validName.MatchString(got) {
			t.Errorf("WorkerName(%q) = %q, want %q", c.host, got, c.name)
		}
		if got := WorkerURL(c.host, WorkerPort); got != c.url {
			t.Errorf("WorkerURL(%q) = %q, want %q", c.host, got, c.url)
		}
	}
}

func TestResolveWithSSHConfig(t *testing.T) {
	dir := t.TempDir()
	sshDir := filepath.Join(dir, ".ssh")
	os.Mkdir(sshDir, 0o700)
	included := filepath.Join(sshDir, "workers.conf")
	os.WriteFile(included, []byte("Host worker2\n  HostName 192.0.2.2\n  User carol\n"), 0o600)
	config := filepath.Join(sshDir, "config")
	os.WriteFile(config, []byte(`Include `+included+`
Host worker1
  HostName 192.0.2.1
  User alice
  Port 2222
  IdentityFile ~/.ssh/worker1_%r
  ProxyJump ops@bastion:2200

Host bastion
  HostName 192.0.2.254
  IdentityFile %d/.ssh/bastion

Host deep
  HostName 192.0.2.9
  ProxyJump worker1

Host loop1
  ProxyJump loop2
Host loop2
  ProxyJump loop1

Match host *.lab
  User builder
`), 0o600)
	cfg, err := LoadSSHConfig(config, true)
	if err != nil {
		t.Fatal(err)
	}
	login := Login{SSHDir: sshDir, SSHConfig: cfg}
	me, _ := currentUser()

	for _, c := range []struct {
		login  Login
		target string
		want   Route
	}{
		{login, "worker1", Route{
			Jumps: []Hop{{Address: Address{User: "ops", Host: "192.0.2.254", Port: 2200}, Alias: "bastion",
				IdentityFiles: []string{dir + "/.ssh/bastion"},
				FromConfig:    "bastion in " + config + ": HostName 192.0.2.254, IdentityFile " + dir + "/.ssh/bastion"}},
			Target: Hop{Address: Address{User: "alice", Host: "192.0.2.1", Port: 2222}, Alias: "worker1",
				IdentityFiles: []string{sshDir + "/worker1_alice"},
				FromConfig:    "worker1 in " + config + ": HostName 192.0.2.1, User alice, Port 2222, IdentityFile " + sshDir + "/worker1_alice, ProxyJump ops@bastion:2200"}},
		},
		// The target's own user and port win over ssh_config's; --jump replaces ProxyJump.
		{Login{SSHDir: sshDir, SSHConfig: cfg, Jump: "root@[::1]:22"}, "bob@worker1:22", Route{
			Jumps: []Hop{{Address: Address{User: "root", Host: "::1", Port: 22}, Alias: "::1"}},
			Target: Hop{Address: Address{User: "bob", Host: "192.0.2.1", Port: 22}, Alias: "worker1",
				IdentityFiles: []string{sshDir + "/worker1_bob"},
				FromConfig:    "worker1 in " + config + ": HostName 192.0.2.1, IdentityFile " + sshDir + "/worker1_bob"}},
		},
		// Include and Match.
		{login, "worker2", Route{Target: Hop{Address: Address{User: "carol", Host: "192.0.2.2", Port: 22}, Alias: "worker2",
			FromConfig: "worker2 in " + config + ": HostName 192.0.2.2, User carol"}}},
		{login, "build.lab", Route{Target: Hop{Address: Address{User: "builder", Host: "build.lab", Port: 22}, Alias: "build.lab",
			FromConfig: "build.lab in " + config + ": User builder"}}},
		// A jump host's own ProxyJump comes first.
		{login, "deep", Route{
			Jumps: []Hop{
				{Address: Address{User: "ops", Host: "192.0.2.254", Port: 2200}, Alias: "bastion",
					IdentityFiles: []string{dir + "/.ssh/bastion"},
					FromConfig:    "bastion in " + config + ": HostName 192.0.2.254, IdentityFile " + dir + "/.ssh/bastion"},
				{Address: Address{User: "alice", Host: "192.0.2.1", Port: 2222}, Alias: "worker1",
					IdentityFiles: []string{sshDir + "/worker1_alice"},
					FromConfig:    "worker1 in " + config + ": HostName 192.0.2.1, User alice, Port 2222, IdentityFile " + sshDir + "/worker1_alice, ProxyJump ops@bastion:2200"},
			},
			Target: Hop{Address: Address{User: me, Host: "192.0.2.9", Port: 22}, Alias: "deep",
				FromConfig: "deep in " + config + ": HostName 192.0.2.9, ProxyJump worker1"}},
		},
		// --port beats the default; nothing from ssh_config for a plain host.
		{Login{SSHDir: sshDir, SSHConfig: cfg, Port: 2022}, "[::1]", Route{Target: Hop{Address: Address{User: me, Host: "::1", Port: 2022}, Alias: "::1"}}},
	} {
		got, err := c.login.resolve(c.target)
		if err != nil {
			t.Fatalf("resolve(%q): %v", c.target, err)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("resolve(%q):\n got %#v\nwant %#v", c.target, got, c.want)
		}
	}

	_, err = login.resolve("loop1")
	if want := "more than 8 jump hosts on the way to loop1: is there a loop of ProxyJump in " + config + "?"; err == nil || err.Error() != want {
		t.Errorf("a loop of ProxyJump: %v", err)
	}

	_, err = LoadSSHConfig(filepath.Join(dir, "missing"), true)
	if want := "read the SSH client configuration: open " + dir + "/missing: no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("a missing --ssh-config: %v", err)
	}
	if got, err := LoadSSHConfig(filepath.Join(dir, "missing"), false); err != nil || got.config != nil {
		t.Errorf("a missing ~/.ssh/config: %v", err)
	}
}

// An inventory host is reached as a command-line target is: ansible_host is
// looked up in ssh_config, ansible_user and ansible_port are the target's own,
// and --jump applies; the worker is named after the inventory hostname.
func TestInventoryHostsResolveLikeTargets(t *testing.T) {
	dir := t.TempDir()
	sshDir := filepath.Join(dir, ".ssh")
	os.Mkdir(sshDir, 0o700)
	config := filepath.Join(sshDir, "config")
	os.WriteFile(config, []byte(`Host worker1
  HostName 192.0.2.1
  User alice
  Port 2222
  ProxyJump ops@192.0.2.254:2200
`), 0o600)
	inventory := filepath.Join(dir, "hosts")
	os.WriteFile(inventory, []byte(`[fleet]
w1 ansible_host=worker1
w2 ansible_host=worker1 ansible_user=bob ansible_port=22 ansible_ssh_private_key_file=/keys/w2
v6 ansible_host=::1
`), 0o600)
	sshConfig, err := LoadSSHConfig(config, true)
	if err != nil {
		t.Fatal(err)
	}
	me, _ := currentUser()
	bastion := Hop{Address: Address{User: "ops", Host: "192.0.2.254", Port: 2200}, Alias: "192.0.2.254"}
	fromConfig := "worker1 in " + config + ": HostName 192.0.2.1, "
	type resolved struct {
		Label, Name, Key, URL string
		Route                 Route
	}
	for _, c := range []struct {
		jump string
		want []resolved
	}{
		{"", []resolved{
			{"w1", "w1", "", "http://192.0.2.1:9009", Route{Jumps: []Hop{bastion},
				Target: Hop{Address: Address{User: "alice", Host: "192.0.2.1", Port: 2222}, Alias: "worker1",
					FromConfig: fromConfig + "User alice, Port 2222, ProxyJump ops@192.0.2.254:2200"}}},
			{"w2", "w2", "/keys/w2", "http://192.0.2.1:9009", Route{Jumps: []Hop{bastion},
				Target: Hop{Address: Address{User: "bob", Host: "192.0.2.1", Port: 22}, Alias: "worker1",
					FromConfig: fromConfig + "ProxyJump ops@192.0.2.254:2200"}}},
			{"v6", "v6", "", "http://[::1]:9009", Route{Target: Hop{Address: Address{User: me, Host: "::1", Port: 22}, Alias: "::1"}}},
		}},
		{"root@[::1]:2200", []resolved{
			{"w1", "w1", "", "http://192.0.2.1:9009", Route{Jumps: []Hop{{Address: Address{User: "root", Host: "::1", Port: 2200}, Alias: "::1"}},
				Target: Hop{Address: Address{User: "alice", Host: "192.0.2.1", Port: 2222}, Alias: "worker1",
					FromConfig: fromConfig + "User alice, Port 2222"}}},
		}},
	} {
		cfg := Config{Inventory: inventory, WorkersDir: dir, Login: Login{SSHDir: sshDir, SSHConfig: sshConfig, Jump: c.jump}}
		if c.jump != "" {
			cfg.Targets = []string{"w1"}
		}
		targets, err := cfg.targets()
		if err != nil {
			t.Fatal(err)
		}
		var got []resolved
		for _, tg := range targets {
			route, err := tg.login.route(tg.addr)
			if err != nil {
				t.Fatalf("%s: %v", tg.label, err)
			}
			spec, err := cfg.spec(tg, route, "", "x86_64", false)
			if err != nil {
				t.Fatalf("%s: %v", tg.label, err)
			}
			got = append(got, resolved{tg.label, spec.Name, tg.login.KeyFile, spec.URL, route})
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("--jump %q:\n got %#v\nwant %#v", c.jump, got, c.want)
		}
	}
}
