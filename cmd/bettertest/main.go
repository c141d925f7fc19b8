// Command bettertest is the CI system's one binary. main only dispatches to a
// subcommand; each subcommand parses its own flags and calls its package's Run.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/pflag"
)

const usage = `bettertest: CI pipelines written as Python, run on Docker workers.

Usage:
  bettertest <command> [flags]

Commands:
  worker    serve the worker API on a Docker host (run, stream output, health)
  enroll    turn hosts reachable over SSH into running workers, idempotently
  unenroll  remove the worker from hosts again (enroll --remove)
  boss      run pipelines on the workers, keep their history, serve the API
  run       start a pipeline on a boss and follow it to its end
  vmlab     make local VMs to enroll (also installed as the vmlab command)
  version   print the version

Run 'bettertest <command> --help' for a command's flags.
`

func main() {
	args := os.Args[1:]
	if filepath.Base(os.Args[0]) == "vmlab" { // the vmlab symlink: make build makes bin/vmlab
		args = append([]string{"vmlab"}, args...)
	}
	os.Exit(run(args, os.Stdout, os.Stderr))
}

// run returns the process's exit code: 0 ok, 1 the command failed, 2 bad usage.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	var err error
	switch args[0] {
	case "worker":
		err = runWorker(ctx, args[1:], stderr)
	case "enroll":
		err = runEnroll(ctx, args[1:], stdout, stderr)
	case "unenroll":
		err = runUnenroll(ctx, args[1:], stdout, stderr)
	case "boss":
		err = runBoss(ctx, args[1:], stdout, stderr)
	case "run":
		err = runRun(ctx, args[1:], stdout, stderr)
	case "vmlab":
		err = runVMLab(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		err = runVersion(args[1:], stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "bettertest: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	var usageErr usageError
	var exit exitCode
	switch {
	case err == nil, errors.Is(err, pflag.ErrHelp):
		return 0
	case errors.As(err, &exit):
		return int(exit)
	case errors.As(err, &usageErr):
		fmt.Fprintf(stderr, "bettertest %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "bettertest %s: %v\n", args[0], err)
		return 1
	}
}

// exitCode ends the process with that status and no message: the command
// has said everything already.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// usageError is a mistake in the command line rather than a failure.
type usageError struct{ error }

// newFlagSet makes a subcommand's flag set whose --help prints the given text
// followed by the flags.
func newFlagSet(name, text string, out io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(out)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprint(out, text)
		fmt.Fprintf(out, "\nFlags:\n%s", fs.FlagUsages())
	}
	return fs
}

// parse parses args, turning a flag mistake into a usageError.
func parse(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	return nil
}
