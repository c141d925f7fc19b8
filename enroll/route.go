package enroll

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"
)

// SSHConfig is OpenSSH's client configuration as enrollment reads it:
// HostName, User, Port, IdentityFile and ProxyJump of the Host (and Match
// host/user) blocks that match a name, with Include, as
// github.com/kevinburke/ssh_config parses them.
type SSHConfig struct {
	Path   string // the file read, for errors; "" when there is none
	config *ssh_config.Config
}

// LoadSSHConfig reads path. A missing file is no configuration when
// required is false (~/.ssh/config need not exist), an error otherwise
// (--ssh-config names a file that must).
func LoadSSHConfig(path string, required bool) (SSHConfig, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !required {
		return SSHConfig{}, nil
	}
	if err != nil {
		return SSHConfig{}, fmt.Errorf("read the SSH client configuration: %w", err)
	}
	c, err := ssh_config.DecodeBytes(b)
	if err != nil {
		return SSHConfig{}, fmt.Errorf("%s: %w: fix the file, or name another with --ssh-config", path, err)
	}
	return SSHConfig{Path: path, config: c}, nil
}

// get is the first value of key for alias, "" when there is none.
func (c SSHConfig) get(alias, key string) string {
	if c.config == nil {
		return ""
	}
	v, _ := c.config.Get(alias, key)
	return v
}

func (c SSHConfig) getAll(alias, key string) []string {
	if c.config == nil {
		return nil
	}
	v, _ := c.config.GetAll(alias, key)
	return v
}

// Hop is one SSH login on the way to a host.
type Hop struct {
	Address
	Alias         string   // the name as written, looked up in ssh_config
	IdentityFiles []string // from ssh_config's IdentityFile
	FromConfig    string   // what ssh_config said, for errors: "" if nothing
}

// Route is how to reach a host: its jump hosts in order, then the host.
type Route struct {
	Jumps  []Hop
	Target Hop
}

// maxJumps bounds a ProxyJump chain.
const maxJumps = 8

// resolve reads a target as OpenSSH would: the target's own user and port
// first, then --port, then ssh_config, then the defaults (the local user,
// port 22). --jump replaces ssh_config's ProxyJump.
func (l Login) resolve(target string) (Route, error) {
	a, err := ParseAddress(target)
	if err != nil {
		return Route{}, err
	}
	return l.route(a)
}

// route is resolve for an address already read: a command-line target's,
// or an inventory host's (ansible_user, ansible_host, ansible_port).
func (l Login) route(a Address) (Route, error) {
	target := a.Host
	if a.Port == 0 {
		a.Port = l.Port
	}
	hop, err := l.hop(a)
	if err != nil {
		return Route{}, err
	}
	jump := l.Jump
	if jump == "" {
		jump = l.SSHConfig.get(a.Host, "ProxyJump")
	}
	r := Route{Target: hop}
	// A jump host may have a ProxyJump of its own, as with ssh -J: its hops
	// come first.
	for jump != "" && jump != "none" {
		var hops []Hop
		for _, s := range strings.Split(jump, ",") {
			ja, err := ParseAddress(strings.TrimSpace(s))
			if err != nil {
				return Route{}, fmt.Errorf("jump host: %w%s", err, hop.configNote())
			}
			jh, err := l.hop(ja)
			if err != nil {
				return Route{}, err
			}
			hops = append(hops, jh)
		}
		r.Jumps = append(hops, r.Jumps...)
		if len(r.Jumps) > maxJumps {
			return Route{}, fmt.Errorf("more than %d jump hosts on the way to %s: is there a loop of ProxyJump in %s?", maxJumps, target, l.SSHConfig.Path)
		}
		jump = l.SSHConfig.get(hops[0].Alias, "ProxyJump")
	}
	return r, nil
}

// hop fills in what a's own form left unsaid from ssh_config and the defaults.
func (l Login) hop(a Address) (Hop, error) {
	h := Hop{Address: a, Alias: a.Host}
	var said []string
	if v := l.SSHConfig.get(h.Alias, "HostName"); v != "" {
		h.Host = strings.ReplaceAll(v, "%h", h.Alias)
		said = append(said, "HostName "+h.Host)
	}
	if h.User == "" {
		if v := l.SSHConfig.get(h.Alias, "User"); v != "" {
			h.User = v
			said = append(said, "User "+v)
		} else {
			u, err := currentUser()
			if err != nil {
				return Hop{}, err
			}
			h.User = u
		}
	}
	if h.Port == 0 {
		if v := l.SSHConfig.get(h.Alias, "Port"); v != "" {
			p, err := strconv.Atoi(v)
			if err != nil || p < 1 || p > 65535 {
				return Hop{}, fmt.Errorf("Port %q for %s in %s is not a port number: fix the file", v, h.Alias, l.SSHConfig.Path)
			}
			h.Port = p
			said = append(said, "Port "+v)
		} else {
			h.Port = 22
		}
	}
	for _, f := range l.SSHConfig.getAll(h.Alias, "IdentityFile") {
		f = l.expandPath(f, h)
		h.IdentityFiles = append(h.IdentityFiles, f)
		said = append(said, "IdentityFile "+f)
	}
	if v := l.SSHConfig.get(h.Alias, "ProxyJump"); v != "" && l.Jump == "" {
		said = append(said, "ProxyJump "+v)
	}
	if len(said) > 0 {
		h.FromConfig = fmt.Sprintf("%s in %s: %s", h.Alias, l.SSHConfig.Path, strings.Join(said, ", "))
	}
	return h, nil
}

// expandPath expands the tokens of an IdentityFile that make sense here:
// ~, %d (home), %h (host name), %r (remote user), %u (local user), %%.
func (l Login) expandPath(p string, h Hop) string {
	home := filepath.Dir(l.SSHDir)
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		p = filepath.Join(home, rest)
	}
	local, _ := currentUser()
	return strings.NewReplacer("%%", "%", "%d", home, "%h", h.Host, "%r", h.User, "%u", local).Replace(p)
}

// configNote is " (ssh_config: ...)" when ssh_config shaped the hop: errors
// name the file, so that a wrong line there is found.
func (h Hop) configNote() string {
	if h.FromConfig == "" {
		return ""
	}
	return " (ssh_config: " + h.FromConfig + ")"
}
