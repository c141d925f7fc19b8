package boss

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// BenchmarkSandboxStart is what the sandbox adds to the start of every
// pipedef: a pipedef that prints one line and exits, started the way the boss
// starts it (bwrap, setpriv, the interpreter) against the same interpreter
// started directly, alternating the two; median of each (target: < 50 ms
// more). It is in the package because the sandbox is how the boss starts a
// run, not an API of its own; the whole path from a trigger to the first
// output line is make bench's step 8.
func BenchmarkSandboxStart(b *testing.B) {
	rounds := 30
	if testing.Short() {
		rounds = 3
	}
	sb, err := newSandbox(context.Background(), "python3")
	if err != nil {
		b.Fatal(err)
	}
	dir, run, lib := b.TempDir(), b.TempDir(), b.TempDir()
	for _, d := range []string{dir, run, lib} {
		if err := os.Chmod(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "hello.py"), []byte("print('hello')\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	sandboxed := func() *exec.Cmd {
		return sb.command(sandboxSpec{Dir: dir, Lib: lib, Run: run, Script: "hello.py"})
	}
	direct := func() *exec.Cmd {
		cmd := exec.Command(sb.python, "-u", "hello.py")
		cmd.Dir = dir
		return cmd
	}
	timed := func(c *exec.Cmd) time.Duration {
		start := time.Now()
		out, err := c.Output()
		if err != nil || string(out) != "hello\n" {
			b.Fatalf("%v: %q %v", c.Args, out, err)
		}
		return time.Since(start)
	}
	for range b.N {
		var in, out []time.Duration
		for range rounds {
			in = append(in, timed(sandboxed()))
			out = append(out, timed(direct()))
		}
		slices.Sort(in)
		slices.Sort(out)
		added := in[len(in)/2] - out[len(out)/2]
		b.ReportMetric(float64(added.Microseconds())/1000, "ms-added")
		b.ReportMetric(float64(in[len(in)/2])/float64(out[len(out)/2]), "ratio")
		b.Logf("a pipedef's start: %v sandboxed against %v directly (median of %d): %v more, %.2fx (target < 50 ms more)",
			in[len(in)/2].Round(100*time.Microsecond), out[len(out)/2].Round(100*time.Microsecond), rounds,
			added.Round(100*time.Microsecond), float64(in[len(in)/2])/float64(out[len(out)/2]))
	}
}
