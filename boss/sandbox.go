package boss

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// A pipedef is code from whoever can push to its repository or open a pull
// request against it, so every pipedef runs in a sandbox (bubblewrap), as
// SandboxUID, with:
//   - new PID, mount, network, IPC and UTS namespaces: it sees only its own
//     processes, has no network at all (loopback only, and nothing listens
//     there), and none of the boss's files;
//   - a clean environment: PATH, HOME, LANG and PYTHONPATH only;
//   - read-only: /usr (and the interpreter's own prefix when it lives
//     elsewhere, e.g. pyenv), and the boss's copy of the Python library;
//   - writable: a private tmpfs /tmp (its HOME), and the pipedef's directory
//     at /work (a checkout, chowned to SandboxUID; or the directory of a
//     --pipedef file, as its permissions allow SandboxUID);
//   - its worker: a Unix socket in /run/bettertest, served by the boss for
//     this run only, which forwards to the worker with the worker's token
//     (see workerProxy). The pipedef never holds a credential, and the
//     socket is gone when the run ends.
//
// bwrap starts as root (so it can bind paths below the boss's private data
// directory), and setpriv drops to SandboxUID with no capabilities and
// no_new_privs before the interpreter starts: outside the sandbox the
// pipedef is an unprivileged user too, so file permissions stop it as well.

// SandboxUID is the user (and group) pipedefs run as: nobody.
const SandboxUID = 65534

// sandboxTmpBytes bounds the sandbox's /tmp, which lives in memory.
const sandboxTmpBytes = 256 << 20

// Paths inside the sandbox.
const (
	sandboxLib     = "/opt/bettertest/python" // the boss's copy of the library
	sandboxWork    = "/work"                  // the pipedef's directory
	sandboxRun     = "/run/bettertest"        // the worker's socket
	sandboxSocket  = sandboxRun + "/worker.sock"
	sandboxSecrets = sandboxRun + "/secrets"
)

// sandbox is how this boss starts pipedefs.
type sandbox struct {
	bwrap, setpriv string
	python         string   // the interpreter itself, symlinks and shims resolved
	binds          []string // bwrap arguments that lay out the system's files
}

// newSandbox finds bwrap and setpriv and asks the interpreter where it lives,
// once, outside the sandbox: a pyenv shim is a shell script that would not
// work inside, so the sandbox runs the executable it resolves to.
func newSandbox(ctx context.Context, python string) (*sandbox, error) {
	s := &sandbox{}
	var err error
	if s.bwrap, err = exec.LookPath("bwrap"); err != nil {
		return nil, errors.New("pipedefs run sandboxed with bubblewrap, and bwrap is not installed: apt-get install bubblewrap (dnf install bubblewrap)")
	}
	if s.setpriv, err = exec.LookPath("setpriv"); err != nil {
		return nil, errors.New("pipedefs run as an unprivileged user through setpriv, which is missing: install util-linux")
	}
	out, err := exec.CommandContext(ctx, python, "-c", "import sys; print(sys.executable); print(sys.base_prefix)").Output()
	if err != nil {
		return nil, fmt.Errorf("--python %s: cannot ask it where it lives: %w: pass the path of a Python 3 interpreter", python, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || !filepath.IsAbs(lines[0]) || !filepath.IsAbs(lines[1]) {
		return nil, fmt.Errorf("--python %s: it answered %q instead of its executable and prefix: pass the path of a Python 3 interpreter", python, out)
	}
	s.python = lines[0]
	s.binds = []string{"--ro-bind", "/usr", "/usr"}
	// /bin, /lib and friends: symlinks into /usr on a merged-/usr system,
	// directories elsewhere.
	for _, top := range []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"} {
		info, err := os.Lstat(top)
		switch {
		case err != nil:
			continue
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(top)
			if err != nil {
				return nil, err
			}
			s.binds = append(s.binds, "--symlink", target, top)
		case info.IsDir():
			s.binds = append(s.binds, "--ro-bind", top, top)
		}
	}
	if prefix := filepath.Clean(lines[1]); prefix != "/usr" && !strings.HasPrefix(prefix, "/usr/") {
		s.binds = append(s.binds, parents(prefix)...)
		s.binds = append(s.binds, "--ro-bind", prefix, prefix)
	}
	return s, nil
}

// parents are the bwrap arguments that make the directories above path
// searchable by anyone: bwrap would make them for a bind, but private.
func parents(path string) []string {
	var out []string
	for dir := filepath.Dir(path); dir != "/"; dir = filepath.Dir(dir) {
		out = append([]string{"--perms", "0755", "--dir", dir}, out...)
	}
	return out
}

// sandboxRun is what one run's sandbox holds.
type sandboxSpec struct {
	Dir    string   // the pipedef's directory, bound at sandboxWork, the working directory
	Lib    string   // the boss's copy of the Python library
	Run    string   // the run's directory with worker.sock (and secrets/), bound at sandboxRun
	Script string   // the pipedef, below Dir
	Args   []string // the pipedef's arguments
}

// command is the process that runs the pipedef: bwrap, then setpriv, then
// the interpreter. It dies with the boss (bwrap's own --die-with-parent for
// the sandbox's processes).
func (s *sandbox) command(spec sandboxSpec) *exec.Cmd {
	uid := strconv.Itoa(SandboxUID)
	args := []string{
		"--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
		"--hostname", "bettertest-pipedef",
		"--die-with-parent",
		"--clearenv",
		"--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
		"--setenv", "HOME", "/tmp",
		"--setenv", "LANG", "C.UTF-8",
		"--setenv", "PYTHONPATH", sandboxLib,
		"--setenv", "PYTHONDONTWRITEBYTECODE", "1",
	}
	args = append(args, s.binds...)
	args = append(args,
		"--proc", "/proc",
		"--dev", "/dev",
		"--perms", "1777", "--size", strconv.Itoa(sandboxTmpBytes), "--tmpfs", "/tmp",
	)
	args = append(args, parents(sandboxLib)...)
	args = append(args, "--ro-bind", spec.Lib, sandboxLib)
	args = append(args, parents(sandboxRun)...)
	args = append(args,
		"--bind", spec.Run, sandboxRun,
		"--bind", spec.Dir, sandboxWork,
		"--chdir", sandboxWork,
		"--",
		s.setpriv, "--reuid", uid, "--regid", uid, "--clear-groups",
		"--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
		"--",
		// -u: the report must come through the pipe line by line, not in blocks.
		s.python, "-u", path.Join(sandboxWork, filepath.ToSlash(spec.Script)),
	)
	args = append(args, spec.Args...)
	cmd := exec.Command(s.bwrap, args...)
	cmd.Dir = "/"
	cmd.Env = []string{}
	// Its own session, made here and not by bwrap's --new-session: then
	// bwrap, its pid namespace's init and the pipedef are all in one process
	// group, which cancelling signals (with --new-session the pipedef was in
	// another, never got the signal, and a stopped boss waited for it
	// forever); and a session has no controlling terminal to push keystrokes
	// into. It dies with the boss, so a killed boss leaves no run going on
	// unrecorded: bwrap is the init of a pid namespace of its own, and when
	// an init dies the kernel kills every process in its namespace and the
	// namespaces below (bwrap's --die-with-parent alone left the pipedef
	// running after a killed boss).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL, Cloneflags: syscall.CLONE_NEWPID}
	return cmd
}

// chownTree gives a checkout to the sandbox's user, so that the pipedef can
// write in it as it could in a clone of its own.
func chownTree(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, SandboxUID, SandboxUID)
	})
}

// checkSandboxReadable says what to change when the sandbox's user could not
// read a --pipedef file: it runs as nobody, so the file must be readable by
// others and its directory searchable.
func checkSandboxReadable(path string) error {
	file, err := os.Stat(path)
	if err != nil {
		return err
	}
	dir, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return err
	}
	if file.Mode().Perm()&0o004 == 0 || dir.Mode().Perm()&0o005 != 0o005 {
		return fmt.Errorf("pipedefs run sandboxed as the unprivileged user nobody (uid %d), who cannot read %s: chmod o+r %s and chmod o+rx %s",
			SandboxUID, path, path, filepath.Dir(path))
	}
	return nil
}
