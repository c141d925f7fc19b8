package enroll

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/melbahja/goph"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/bettertest/bettertest/provision"
)

// Login says how to log in to hosts.
type Login struct {
	Port       int       // --port; 0: the target's own, ssh_config's Port, or 22
	KeyFile    string    // --key; empty: ssh_config's IdentityFile, the SSH agent and ~/.ssh/id_*
	Password   []byte    // from the terminal prompt (--password)
	KnownHosts string    // ~/.ssh/known_hosts
	AcceptNew  bool      // record the key of a host not in KnownHosts
	SSHDir     string    // ~/.ssh, where default keys are found
	SSHConfig  SSHConfig // ~/.ssh/config or --ssh-config
	Jump       string    // --jump USER@HOST[:PORT][,...]; replaces ssh_config's ProxyJump
	keySource  string    // who named KeyFile, for errors; "": --key
}

// defaultKeys are tried, in this order, when no --key is given.
var defaultKeys = []string{"id_ed25519", "id_ecdsa", "id_rsa"}

// knownHostsMu serializes appends to known_hosts by parallel enrollments.
var knownHostsMu sync.Mutex

// connection is a logged-in SSH client and what was learned on the way.
type connection struct {
	client      *goph.Client
	jumps       []*ssh.Client // the jump hosts' clients, closed after the target's
	fingerprint string        // the target's host key: type and SHA256 fingerprint
	keyUsed     string        // the default key file the target accepted, when found by discovery
	warnings    []string
}

func (c *connection) Close() {
	c.client.Close()
	c.closeJumps()
}

// dial logs in to the route's target through its jump hosts, each one's host
// key verified against known_hosts like the target's.
func dial(ctx context.Context, route Route, login Login) (*connection, error) {
	c := &connection{}
	var via *ssh.Client
	for i, hop := range route.Jumps {
		client, _, _, err := login.dialHop(ctx, hop, via, c)
		if err != nil {
			c.closeJumps()
			return c, fmt.Errorf("jump host %d of %d, %s: %w", i+1, len(route.Jumps), hop, err)
		}
		c.jumps = append(c.jumps, client)
		via = client
	}
	client, fingerprint, keyUsed, err := login.dialHop(ctx, route.Target, via, c)
	if err != nil {
		c.closeJumps()
		return c, err
	}
	c.fingerprint, c.keyUsed = fingerprint, keyUsed
	c.client = &goph.Client{Client: client, Config: &goph.Config{User: route.Target.User, Addr: route.Target.Host, Port: uint(route.Target.Port)}}
	return c, nil
}

func (c *connection) closeJumps() {
	for i := len(c.jumps) - 1; i >= 0; i-- {
		c.jumps[i].Close()
	}
	c.jumps = nil
}

// dialHop logs in to one hop, over via when it is not nil.
func (l Login) dialHop(ctx context.Context, hop Hop, via *ssh.Client, c *connection) (client *ssh.Client, fingerprint, keyUsed string, err error) {
	auth, signed, warnings, err := l.auth(hop)
	c.warnings = append(c.warnings, warnings...)
	if err != nil {
		return nil, "", "", err
	}
	addr := hop.HostPort()
	hostKeys, algorithms, err := l.hostKeys(addr, &fingerprint)
	if err != nil {
		return nil, "", "", err
	}
	var conn net.Conn
	if via == nil {
		d := net.Dialer{Timeout: 15 * time.Second}
		conn, err = d.DialContext(ctx, "tcp", addr)
	} else {
		conn, err = via.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, "", "", fmt.Errorf("connect to %s: %w: check the host and --port, and that sshd runs there%s", addr, err, hop.configNote())
	}
	sshConn, chans, reqs, err := ssh.NewClientConn(conn, addr, &ssh.ClientConfig{
		User:              hop.User,
		Auth:              auth,
		HostKeyCallback:   hostKeys,
		HostKeyAlgorithms: algorithms,
		Timeout:           15 * time.Second,
	})
	if err != nil {
		conn.Close()
		var refused *hostKeyError
		if errors.As(err, &refused) {
			return nil, "", "", &hostKeyError{refused.msg + hop.configNote()}
		}
		return nil, "", "", fmt.Errorf("log in to %s as %s: %w%s", addr, hop.User, err, hop.configNote())
	}
	return ssh.NewClient(sshConn, chans, reqs), fingerprint, *signed, nil
}

// auth builds one public-key method from the agent's signers and the key
// files (x/crypto/ssh tries each method name once, so they must be merged),
// or password methods when a password was given. The returned string names
// the default key the server accepted, once it has: only that key is asked to
// sign.
func (l Login) auth(hop Hop) ([]ssh.AuthMethod, *string, []string, error) {
	used := new(string)
	var warnings []string
	switch {
	case l.KeyFile != "":
		signer, err := readKey(l.KeyFile)
		if err != nil {
			source := l.keySource
			if source == "" {
				source = "--key"
			}
			return nil, nil, nil, fmt.Errorf("%s %s: %w", source, l.KeyFile, err)
		}
		return []ssh.AuthMethod{ssh.PublicKeys(signer)}, used, nil, nil
	case l.Password != nil:
		pw := string(l.Password)
		return []ssh.AuthMethod{ssh.Password(pw), ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
			answers := make([]string, len(questions))
			for i := range answers {
				answers[i] = pw
			}
			return answers, nil
		})}, used, nil, nil
	}
	var signers []ssh.Signer
	// SSH_AUTH_SOCK is the agent's protocol variable, set by ssh-agent, not configuration.
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("the SSH agent at %s does not answer (%v): using key files only", sock, err))
		} else if agentSigners, err := agent.NewClient(conn).Signers(); err == nil {
			signers = append(signers, agentSigners...)
		}
	}
	for _, path := range hop.IdentityFiles {
		signer, err := readKey(path)
		if err != nil {
			return nil, nil, warnings, fmt.Errorf("IdentityFile %s: %w%s", path, err, hop.configNote())
		}
		signers = append(signers, signer)
	}
	for _, name := range defaultKeys {
		path := filepath.Join(l.SSHDir, name)
		if _, err := os.Stat(path); err != nil || len(hop.IdentityFiles) > 0 {
			continue
		}
		signer, err := readKey(path)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("skipping %s: %v", path, err))
			continue
		}
		signers = append(signers, recordingSigner{signer, path, used})
	}
	if len(signers) == 0 {
		return nil, nil, warnings, fmt.Errorf("no SSH key to log in with: none in %s (%s) and no SSH agent; pass --key PATH or --password", l.SSHDir, strings.Join(defaultKeys, ", "))
	}
	return []ssh.AuthMethod{ssh.PublicKeys(signers...)}, used, warnings, nil
}

// readKey reads a private key. x/crypto's signers for key files are all
// AlgorithmSigners (they sign with rsa-sha2-* as well as ssh-rsa).
func readKey(path string) (ssh.AlgorithmSigner, error) {
	signer, err := goph.GetSigner(path, "")
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, fmt.Errorf("the key is protected by a passphrase: add it to the SSH agent (ssh-add %s) and enroll without --key", path)
	}
	if err != nil {
		return nil, err
	}
	return signer.(ssh.AlgorithmSigner), nil
}

// recordingSigner notes in used which key file signed: the server asks for a
// signature only from the key it accepts.
type recordingSigner struct {
	ssh.AlgorithmSigner
	path string
	used *string
}

func (s recordingSigner) Sign(r io.Reader, data []byte) (*ssh.Signature, error) {
	*s.used = s.path
	return s.AlgorithmSigner.Sign(r, data)
}

func (s recordingSigner) SignWithAlgorithm(r io.Reader, data []byte, alg string) (*ssh.Signature, error) {
	*s.used = s.path
	return s.AlgorithmSigner.SignWithAlgorithm(r, data, alg)
}

// hostKeyError refuses a host whose key is unknown or has changed.
type hostKeyError struct{ msg string }

func (e *hostKeyError) Error() string { return e.msg }

// hostKeys returns the callback that verifies a host's key against
// known_hosts, and the key algorithms to ask the host for: those of the keys
// known for it, so that a host known by its ed25519 key is not refused for
// offering ECDSA first.
func (l Login) hostKeys(hostport string, fingerprint *string) (ssh.HostKeyCallback, []string, error) {
	if err := os.MkdirAll(filepath.Dir(l.KnownHosts), 0o700); err != nil {
		return nil, nil, err
	}
	f, err := os.OpenFile(l.KnownHosts, os.O_CREATE|os.O_RDONLY, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("known_hosts: %w", err)
	}
	f.Close()
	known, err := knownhosts.New(l.KnownHosts)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", l.KnownHosts, err)
	}
	algorithms := knownAlgorithms(known, hostport)
	if algorithms == nil {
		algorithms = preferredAlgorithms
	}
	callback := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		*fingerprint = key.Type() + " " + ssh.FingerprintSHA256(key)
		err := known(hostname, remote, key)
		shown := knownhosts.Normalize(hostname)
		var keyErr *knownhosts.KeyError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &keyErr) && len(keyErr.Want) > 0:
			was := keyErr.Want[0]
			return &hostKeyError{fmt.Sprintf("the host key of %s has CHANGED: it is now %s %s, but %s:%d has %s %s. "+
				"Someone may be intercepting the connection, or the host was reinstalled; nothing was done on it. "+
				"If you trust the new key, remove the old one (ssh-keygen -R '%s') and enroll again",
				shown, key.Type(), ssh.FingerprintSHA256(key), was.Filename, was.Line, was.Key.Type(), ssh.FingerprintSHA256(was.Key), shown)}
		case errors.As(err, &keyErr):
			if !l.AcceptNew {
				return &hostKeyError{fmt.Sprintf("%s is not a known host (not in %s); its %s key is %s. "+
					"Check that fingerprint on the host (ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub), then enroll again with --accept-new-host-key to record it",
					shown, l.KnownHosts, key.Type(), ssh.FingerprintSHA256(key), hostKeyFileType(key.Type()))}
			}
			return appendKnownHost(l.KnownHosts, hostname, key)
		default:
			return fmt.Errorf("check the host key against %s: %w", l.KnownHosts, err)
		}
	}
	return callback, algorithms, nil
}

// hostKeyFileType names the kind of key in sshd's host key file names.
func hostKeyFileType(keyType string) string {
	switch {
	case strings.HasPrefix(keyType, "ecdsa-"):
		return "ecdsa"
	case keyType == ssh.KeyAlgoRSA:
		return "rsa"
	}
	return strings.TrimPrefix(keyType, "ssh-")
}

// preferredAlgorithms asks a new host for its ed25519 key first, as OpenSSH does.
var preferredAlgorithms = []string{
	ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}

// knownAlgorithms lists the key algorithms of the keys known for hostport.
func knownAlgorithms(known ssh.HostKeyCallback, hostport string) []string {
	_, probe, _ := ed25519.GenerateKey(rand.Reader)
	pub, _ := ssh.NewPublicKey(probe.Public())
	var keyErr *knownhosts.KeyError
	if err := known(hostport, addrString(hostport), pub); !errors.As(err, &keyErr) {
		return nil
	}
	var algs []string
	for _, k := range keyErr.Want {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			algs = append(algs, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			algs = append(algs, t)
		}
	}
	return algs
}

// addrString is a net.Addr for a host:port that was not resolved.
type addrString string

func (a addrString) Network() string { return "tcp" }
func (a addrString) String() string  { return string(a) }

func appendKnownHost(path, hostname string, key ssh.PublicKey) error {
	knownHostsMu.Lock()
	defer knownHostsMu.Unlock()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("record the host key: %w", err)
	}
	defer f.Close()
	if _, err := fmt.Fprintln(f, knownhosts.Line([]string{knownhosts.Normalize(hostname)}, key)); err != nil {
		return fmt.Errorf("record the host key in %s: %w", path, err)
	}
	return nil
}

// sshHost runs scripts on a host over SSH, as root through sudo -n when the
// login user is not root (or sudo -S with the password from
// --ask-become-pass, become.go), each holding the host's enrollment lock.
type sshHost struct {
	client   *goph.Client
	sudo     bool
	password []byte        // sudo's password (--ask-become-pass); nil: sudo -n
	lockWait time.Duration // how long a script waits for the lock before it gives up

	progress  func(progress) // nil: none shown
	step      string         // the playbook's step whose commands run now
	stepStart time.Time
}

// The enrollment lock serializes the commands of enrollments of one host. It
// is root's alone: in a directory only root can write (not the world-writable
// /run/lock, where any user could make the file first, or hold it), taken
// only once sudo has been proven to work.
const (
	lockDir  = "/run/bettertest"
	lockFile = lockDir + "/enroll.lock"
)

// DefaultLockWait bounds the wait for the host's enrollment lock.
const DefaultLockWait = 5 * time.Minute

// lockBusy is the exit code of a script that gave up waiting for the lock.
const lockBusy = 75

// lockScript runs its first argument with the enrollment lock held: the
// script's processes inherit it (fd 9), so a command of an enrollment that
// was killed goes on holding it until it ends. When the wait runs out, it
// names the lock's holder from /proc/locks (holders' lines, not waiters'
// "->" lines, whose fields are shifted).
func lockScript(wait time.Duration) string {
	return `mkdir -p -m 0700 ` + lockDir + `
exec 9>>` + lockFile + `
if ! flock -w ` + strconv.FormatFloat(wait.Seconds(), 'f', -1, 64) + ` 9; then
	ino=$(stat -c %i ` + lockFile + `)
	pid=$(awk -v ino="$ino" '$2 == "FLOCK" { n = split($6, f, ":"); if (f[n] == ino) { print $5; exit } }' /proc/locks)
	cmd=$(tr '\0' ' ' < /proc/"$pid"/cmdline 2>/dev/null)
	echo "the host's enrollment lock ` + lockFile + ` is held by PID ${pid:-unknown} (${cmd% }) for more than ` + wait.String() + `: another enrollment of this host runs, or a command of one that was killed; let it finish, or end it (sudo kill ${pid:-PID}), then enroll again" >&2
	exit ` + strconv.Itoa(lockBusy) + `
fi
exec sh -c "$1"`
}

func (h *sshHost) Run(ctx context.Context, script string, stdin io.Reader) (provision.Output, error) {
	out, err := h.asRoot(ctx, "sh -c "+shellQuote(lockScript(h.lockWait))+" bettertest-enroll "+shellQuote(script), stdin)
	if err == nil && out.Code == lockBusy {
		return out, errors.New(strings.TrimSpace(provision.Tail(out.Stderr, 1)))
	}
	return out, err
}

// asRoot runs cmd as root: as it is when the login user is root, else
// through sudo, with the password from --ask-become-pass when there is one.
func (h *sshHost) asRoot(ctx context.Context, cmd string, stdin io.Reader) (provision.Output, error) {
	switch {
	case !h.sudo:
		return h.exec(ctx, cmd, stdin, nil)
	case h.password != nil:
		return h.exec(ctx, becomeCommand(cmd), stdin, h.password)
	}
	return h.exec(ctx, "sudo -n "+cmd, stdin, nil)
}

// exec runs cmd as it is, as the login user. With a password, cmd is a
// becomeCommand, and sudo gets the password when it asks for it.
func (h *sshHost) exec(ctx context.Context, cmd string, stdin io.Reader, password []byte) (provision.Output, error) {
	sess, err := h.client.NewSession()
	if err != nil {
		return provision.Output{}, fmt.Errorf("open an SSH session: %w", err)
	}
	defer sess.Close()
	var stdout, stderr bytes.Buffer
	sess.Stdout, sess.Stderr, sess.Stdin = &stdout, &stderr, stdin
	if h.progress != nil {
		sess.Stdout = io.MultiWriter(&stdout, &aptProgress{report: h.progress})
		if f, ok := stdin.(*os.File); ok {
			if info, err := f.Stat(); err == nil {
				stdin = &uploadProgress{r: f, total: info.Size(), report: h.progress}
				sess.Stdin = stdin
			}
		}
	}
	var feeder *becomeFeeder
	if password != nil {
		feeder, sess.Stdin = newBecomeFeeder(password, stdin, &stderr)
		sess.Stderr = feeder
	}
	done := make(chan error, 1)
	go func() {
		err := sess.Run(cmd)
		if feeder != nil {
			feeder.finish()
		}
		done <- err
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		sess.Close() // the host's sshd hangs up the command
		return provision.Output{}, ctx.Err()
	}
	out := provision.Output{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	var exit *ssh.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		out.Code = exit.ExitStatus()
	default:
		return out, fmt.Errorf("the SSH connection failed while the command ran: %w", err)
	}
	return out, nil
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
