package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/bettertest/bettertest/boss"
	"github.com/bettertest/bettertest/internal/atomicfile"
)

const bossUsersUsage = `Usage:
  bettertest boss user add NAME --users-file FILE [--role viewer|operator]
  bettertest boss user passwd NAME --users-file FILE
  bettertest boss user remove NAME --users-file FILE
  bettertest boss token add NAME --users-file FILE [--out FILE]

Manage who may use a boss started with --users-file FILE. A running boss sees
the changes at once. Passwords are read from the terminal, never from the
command line. A viewer reads; an operator also starts, cancels and
quarantines. 'token add' makes an API token for scripts and
'bettertest run --token-file': it is shown once (or written to --out, mode
0600) and only its hash is kept.
`

// runBossUsers runs `bettertest boss user|token ...`; args start with "user" or "token".
func runBossUsers(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("boss "+args[0], bossUsersUsage, stderr)
	usersFile := fs.String("users-file", "", "the users file the boss is started with")
	role := fs.String("role", string(boss.RoleViewer), "user add: viewer (reads) or operator (also runs, cancels, quarantines)")
	out := fs.String("out", "", "token add: write the token to this file (mode 0600) instead of printing it")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usageError{fmt.Errorf("want %s ACTION NAME, e.g. bettertest boss user add alice --users-file FILE", args[0])}
	}
	if *usersFile == "" {
		return usageError{errors.New("--users-file is required: the file the boss is started with")}
	}
	action, name := fs.Arg(0), fs.Arg(1)
	switch args[0] + " " + action {
	case "user add":
		password, err := newPassword(name)
		if err != nil {
			return err
		}
		if err := boss.AddUser(*usersFile, name, boss.Role(*role), password); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "added %s (%s) to %s\n", name, *role, *usersFile)
	case "user passwd":
		password, err := newPassword(name)
		if err != nil {
			return err
		}
		if err := boss.SetPassword(*usersFile, name, password); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "changed the password of %s\n", name)
	case "user remove":
		if err := boss.RemoveUser(*usersFile, name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed %s and their tokens; their sessions end now\n", name)
	case "token add":
		token, err := boss.AddToken(*usersFile, name)
		if err != nil {
			return err
		}
		if *out != "" {
			if err := atomicfile.WriteFile(*out, []byte(token+"\n"), 0o600); err != nil {
				return fmt.Errorf("--out %s: %w", *out, err)
			}
			fmt.Fprintf(stdout, "wrote a new API token of %s to %s: pass it with --token-file %s\n", name, *out, *out)
			return nil
		}
		fmt.Fprintf(stdout, "%s\n", token)
		fmt.Fprintf(stderr, "a new API token of %s: it is shown only this once\n", name)
	default:
		return usageError{fmt.Errorf("unknown action %q: %s takes %s", action, args[0], map[string]string{"user": "add, passwd or remove", "token": "add"}[args[0]])}
	}
	return nil
}

// newPassword reads a password twice from the terminal, without echo.
func newPassword(name string) ([]byte, error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil, errors.New("the password is read from a terminal, and standard input is not one: run this command in a terminal")
	}
	read := func(prompt string) ([]byte, error) {
		fmt.Fprint(os.Stderr, prompt)
		p, err := term.ReadPassword(fd)
		fmt.Fprintln(os.Stderr)
		return p, err
	}
	first, err := read("Password for " + name + ": ")
	if err != nil {
		return nil, fmt.Errorf("read the password: %w", err)
	}
	again, err := read("Again: ")
	if err != nil {
		return nil, fmt.Errorf("read the password: %w", err)
	}
	if !bytes.Equal(first, again) {
		return nil, errors.New("the two passwords differ: run the command again")
	}
	return first, nil
}
