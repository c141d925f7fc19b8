package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/term"

	"github.com/bettertest/bettertest/enroll"
)

const enrollUsage = `Usage: bettertest enroll [flags] USER@HOST [USER@HOST...]

Turn Linux hosts reachable over SSH into running bettertest workers: install
Docker and python3 when missing, this bettertest binary, a token and the
systemd service bettertest-worker.service, then check the worker answers.
Idempotent: a second run changes nothing and says so; a run with a newer binary
changes only what differs. Several hosts are enrolled in parallel.

Each step reports ok (already as wanted), changed, failed or skipped, and each
host ends with a recap. Host keys are checked against ~/.ssh/known_hosts. The
worker's token is saved as ~/.config/bettertest/workers/NAME.token (mode 0600)
beside NAME.json, where the boss finds its workers.

Logs in with --key, or --password, or else the SSH agent and ~/.ssh/id_*. A
user other than root needs passwordless sudo.
`

func runEnroll(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("enroll", enrollUsage, stderr)
	cfg := enroll.Config{Out: stdout}
	var password bool
	fs.IntVar(&cfg.Login.Port, "port", 22, "SSH port")
	fs.StringVar(&cfg.Login.KeyFile, "key", "", "private key file to log in with")
	fs.BoolVar(&password, "password", false, "log in with a password, prompted for on the terminal")
	fs.StringVar(&cfg.Name, "name", "", "the worker's name (default: the host)")
	fs.StringVar(&cfg.Listen, "listen", ":"+enroll.WorkerPort, "the address the worker listens on, on the host (its port goes into the default --url)")
	fs.StringVar(&cfg.URL, "url", "", "where the worker will be reached (default: http://HOST:PORT, PORT from --listen)")
	fs.DurationVar(&cfg.LockWait, "lock-wait", enroll.DefaultLockWait, "how long to wait for another enrollment of the same host to let go of its lock")
	fs.BoolVar(&cfg.Check, "check", false, "report what would change, with diffs, and change nothing")
	fs.BoolVar(&cfg.JSON, "json", false, "report as JSON lines")
	fs.BoolVar(&cfg.Login.AcceptNew, "accept-new-host-key", false, "record the key of a host not yet in known_hosts (a changed key is always refused)")
	fs.StringVar(&cfg.Binary, "binary", "", "the bettertest binary to install (default: this one); for hosts of another architecture")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg.Targets = fs.Args()
	if len(cfg.Targets) == 0 {
		return usageError{errors.New("name a host to enroll: bettertest enroll USER@HOST")}
	}
	if password && cfg.Login.KeyFile != "" {
		return usageError{errors.New("--key and --password: choose one way to log in")}
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return fmt.Errorf("find the home directory for ~/.ssh and ~/.config: %w", err)
	}
	cfg.Login.SSHDir = filepath.Join(home, ".ssh")
	cfg.Login.KnownHosts = filepath.Join(cfg.Login.SSHDir, "known_hosts")
	cfg.WorkersDir = filepath.Join(home, ".config", "bettertest", "workers")
	if password {
		if cfg.Login.Password, err = promptPassword(cfg.Targets); err != nil {
			return err
		}
	}
	if f, ok := stdout.(*os.File); ok && !cfg.JSON {
		cfg.Color = term.IsTerminal(int(f.Fd()))
	}
	return enroll.Run(ctx, cfg)
}

// promptPassword reads the SSH password from the terminal, never from an
// argument: arguments are visible to every user of the machine.
func promptPassword(targets []string) ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, errors.New("--password prompts on the terminal, and there is none: log in with a key instead (--key PATH)")
	}
	defer tty.Close()
	fmt.Fprintf(tty, "SSH password for %s: ", targets[0])
	pw, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(tty)
	if err != nil {
		return nil, fmt.Errorf("read the password: %w", err)
	}
	return pw, nil
}
