package enroll

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Address is where one SSH hop logs in. Port 0 means "not said": ssh_config's
// Port, --port, or 22 decide.
type Address struct {
	User string
	Host string // a name or an IP address, IPv6 without brackets
	Port int
}

// ParseAddress reads the forms OpenSSH accepts for a destination and a
// ProxyJump hop: HOST, USER@HOST, USER@HOST:PORT, USER@[IPV6]:PORT, a bare
// IPv6 address (USER@::1, which has no port) and ssh://[USER@]HOST[:PORT].
func ParseAddress(s string) (Address, error) {
	bad := func(why string) (Address, error) {
		return Address{}, fmt.Errorf("%q is not USER@HOST: %s; write host, user@host, user@host:port, user@[::1]:port or ssh://user@host:port", s, why)
	}
	rest, uri := strings.CutPrefix(s, "ssh://")
	if uri {
		rest = strings.TrimSuffix(rest, "/")
	}
	if strings.ContainsAny(rest, " \t/") {
		return bad("it holds a space or a slash")
	}
	var a Address
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		a.User, rest = rest[:i], rest[i+1:]
		if a.User == "" {
			return bad("the user before @ is empty")
		}
	}
	switch {
	case strings.HasPrefix(rest, "["):
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return bad("the [ of an IPv6 address is not closed")
		}
		a.Host = rest[1:end]
		if port := rest[end+1:]; port != "" {
			p, ok := strings.CutPrefix(port, ":")
			if !ok {
				return bad("only :PORT may follow ]")
			}
			if err := a.setPort(p); err != nil {
				return bad(err.Error())
			}
		}
		if _, err := netip.ParseAddr(a.Host); err != nil || !strings.Contains(a.Host, ":") {
			return bad("brackets hold an IPv6 address")
		}
	case strings.Count(rest, ":") > 1:
		// A bare IPv6 address: its colons are its own, so there is no port.
		if _, err := netip.ParseAddr(rest); err != nil {
			return bad("it is not an IPv6 address; put one in brackets to add a port")
		}
		a.Host = rest
	default:
		host, port, found := strings.Cut(rest, ":")
		a.Host = host
		if found {
			if err := a.setPort(port); err != nil {
				return bad(err.Error())
			}
		}
	}
	if a.Host == "" {
		return bad("the host is empty")
	}
	return a, nil
}

func (a *Address) setPort(s string) error {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	a.Port = p
	return nil
}

// HostPort is the address to dial, with brackets around an IPv6 address.
func (a Address) HostPort() string { return net.JoinHostPort(a.Host, strconv.Itoa(a.Port)) }

// String is the address as ProxyJump writes a hop: user@host:port, user@[::1]:port.
func (a Address) String() string { return a.User + "@" + a.HostPort() }

// WorkerName is the default worker name for a host: the host itself, or for
// an IPv6 address the address with '-' for ':' (a name names files, and
// ::1 becomes 0--1).
func WorkerName(host string) string {
	addr, err := netip.ParseAddr(host)
	if err != nil || !addr.Is6() {
		return host
	}
	name := strings.NewReplacer(":", "-", "%", "-").Replace(addr.String())
	if strings.HasPrefix(name, "-") {
		name = "0" + name
	}
	if strings.HasSuffix(name, "-") {
		name += "0"
	}
	return name
}

// WorkerURL is the default URL of a worker on host: http://HOST:9009, with
// an IPv6 address in brackets and its zone escaped, as URLs write them.
func WorkerURL(host, port string) string {
	return "http://" + net.JoinHostPort(strings.ReplaceAll(host, "%", "%25"), port)
}
