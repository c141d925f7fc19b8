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

const enrollUsage = `Usage: bettertest enroll [flags] HOST [HOST...]
       bettertest enroll [flags] -i INVENTORY [GROUP|HOST...]
       bettertest enroll --remove [flags] HOST...   (or: bettertest unenroll)

HOST is host, user@host, user@host:port, user@[::1]:port, ssh://user@host:port
or a Host of ~/.ssh/config (its HostName, User, Port, IdentityFile and
ProxyJump are used; --ssh-config FILE reads another file).

Turn Linux hosts reachable over SSH into running bettertest workers: install
Docker and python3 when missing, this bettertest binary, a token and the
systemd service bettertest-worker.service, then check the worker answers.
Idempotent: a second run changes nothing and says so; a run with a newer binary
changes only what differs. Several hosts are enrolled in parallel (--forks at
a time), each with its own report, and a recap table ends the report.

-i reads an Ansible inventory, INI or YAML, as it is: ansible_host,
ansible_port, ansible_user and ansible_ssh_private_key_file of each host (its
own or its groups'), named by their inventory names and reached like a HOST
(ssh_config, --jump and --ask-become-pass apply). Arguments then name groups
or hosts of it; none means all.

--remove (bettertest unenroll) undoes it: stops and removes the worker's
unit, its binary, token and data, and the local record; Docker and python3
stay. It is idempotent too, with the same report.

Each step reports ok (already as wanted), changed, failed or skipped, and each
host ends with a recap. Host keys are checked against ~/.ssh/known_hosts. The
worker's token is saved as ~/.config/bettertest/workers/NAME.token (mode 0600)
beside NAME.json, where the boss finds its workers.

Logs in with --key, or --password, or else the SSH agent and ssh_config's
IdentityFile or ~/.ssh/id_*. --jump (or ProxyJump) reaches hosts through
bastions, whose host keys are checked like the target's. A user other than
root needs sudo: without a password, or with --ask-become-pass.
`

func runEnroll(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return enrollOrRemove(ctx, "enroll", false, args, stdout, stderr)
}

// runUnenroll is enroll --remove.
func runUnenroll(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return enrollOrRemove(ctx, "unenroll", true, args, stdout, stderr)
}

func enrollOrRemove(ctx context.Context, command string, remove bool, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(command, enrollUsage, stderr)
	cfg := enroll.Config{Out: stdout, Remove: remove}
	fs.StringVarP(&cfg.Inventory, "inventory", "i", "", "an Ansible inventory file (INI or YAML) to take the hosts from")
	fs.IntVar(&cfg.Forks, "forks", enroll.DefaultForks, "how many hosts to work on at once")
	if !remove {
		fs.BoolVar(&cfg.Remove, "remove", false, "unenroll: remove the worker from the hosts, and its local record")
	}
	var password, askBecomePass bool
	var sshConfig string
	fs.IntVar(&cfg.Login.Port, "port", 0, "SSH port (default: the target's :PORT, ansible_port, ssh_config's Port, or 22)")
	fs.StringVar(&sshConfig, "ssh-config", "", "the OpenSSH client configuration to read (default ~/.ssh/config)")
	fs.StringVar(&cfg.Login.Jump, "jump", "", "reach the hosts through this jump host, USER@HOST[:PORT] (several: comma-separated); replaces ssh_config's ProxyJump")
	fs.StringVar(&cfg.Login.KeyFile, "key", "", "private key file to log in with")
	fs.BoolVar(&password, "password", false, "log in with a password, prompted for on the terminal")
	fs.BoolVarP(&askBecomePass, "ask-become-pass", "K", false, "when sudo wants a password, prompt once on the terminal for it (shared by all hosts)")
	fs.StringVar(&cfg.Name, "name", "", "the worker's name (default: the host as named: an ssh_config alias, or an IPv6 address with - for :)")
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
	if len(cfg.Targets) == 0 && cfg.Inventory == "" {
		return usageError{fmt.Errorf("name a host: bettertest %s USER@HOST, or -i INVENTORY", command)}
	}
	if cfg.Forks < 1 {
		return usageError{fmt.Errorf("--forks %d: give how many hosts to work on at once, at least 1", cfg.Forks)}
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
	if sshConfig != "" {
		cfg.Login.SSHConfig, err = enroll.LoadSSHConfig(sshConfig, true)
	} else {
		cfg.Login.SSHConfig, err = enroll.LoadSSHConfig(filepath.Join(cfg.Login.SSHDir, "config"), false)
	}
	if err != nil {
		return err
	}
	cfg.WorkersDir = filepath.Join(home, ".config", "bettertest", "workers")
	if password {
		whom := "the hosts of " + cfg.Inventory
		if cfg.Inventory == "" {
			whom = cfg.Targets[0]
		}
		if cfg.Login.Password, err = promptTTY("SSH password for "+whom+": ", "--password"); err != nil {
			return err
		}
	}
	if askBecomePass {
		cfg.AskBecomePass = func() ([]byte, error) { return promptTTY("sudo password (--ask-become-pass): ", "--ask-become-pass") }
	}
	if f, ok := stdout.(*os.File); ok && !cfg.JSON {
		cfg.Color = term.IsTerminal(int(f.Fd()))
		cfg.Terminal = cfg.Color
	}
	return enroll.Run(ctx, cfg)
}

// promptTTY reads a password from the terminal, never from an argument:
// arguments are visible to every user of the machine.
func promptTTY(prompt, flag string) ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("%s prompts on the terminal, and there is none: run enroll from a terminal", flag)
	}
	defer tty.Close()
	fmt.Fprint(tty, prompt)
	pw, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(tty)
	if err != nil {
		return nil, fmt.Errorf("read the password for %s: %w", flag, err)
	}
	return pw, nil
}
