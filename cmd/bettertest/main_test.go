package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestUsage(t *testing.T) {
	for _, c := range []struct {
		args         []string
		code         int
		stdoutPrefix string
		stderrPrefix string
	}{
		{nil, 2, "", "bettertest: CI pipelines"},
		{[]string{"--help"}, 0, "bettertest: CI pipelines", ""},
		{[]string{"nope"}, 2, "", "bettertest: unknown command \"nope\"\n\nbettertest: CI pipelines"},
		{[]string{"version"}, 0, "bettertest dev\n", ""},
		{[]string{"worker", "--help"}, 0, "", "Usage: bettertest worker --token-file PATH [flags]"},
		{[]string{"worker"}, 2, "", "bettertest worker: --token-file is required: a file with mode 0600 holding the API token\n"},
		{[]string{"worker", "--token-file", "x", "extra"}, 2, "", "bettertest worker: unexpected argument \"extra\": the worker takes flags only\n"},
		{[]string{"worker", "--bogus"}, 2, "", "bettertest worker: unknown flag: --bogus\n"},
		{[]string{"worker", "--token-file", "x", "--max-parallel", "0"}, 1, "", "bettertest worker: --max-parallel must be at least 1, not 0\n"},
		{[]string{"boss", "user", "add", "alice"}, 2, "", "bettertest boss: --users-file is required: the file the boss is started with\n"},
		{[]string{"boss", "user", "--users-file", "u.json"}, 2, "", "bettertest boss: want user ACTION NAME, e.g. bettertest boss user add alice --users-file FILE\n"},
		{[]string{"boss", "token", "revoke", "alice", "--users-file", "u.json"}, 2, "", "bettertest boss: unknown action \"revoke\": token takes add\n"},
		{[]string{"boss", "token", "add", "nobody", "--users-file", "/nonexistent/u.json"}, 1, "", "bettertest boss: no user nobody in /nonexistent/u.json: add one with bettertest boss user add nobody --users-file /nonexistent/u.json\n"},
		{[]string{"boss", "user", "--help"}, 0, "", "Usage:\n  bettertest boss user add NAME --users-file FILE [--role viewer|operator]\n"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(c.args, &stdout, &stderr)
		if code != c.code || !strings.HasPrefix(stdout.String(), c.stdoutPrefix) || !strings.HasPrefix(stderr.String(), c.stderrPrefix) ||
			(c.stdoutPrefix == "" && stdout.Len() > 0) {
			t.Errorf("%q: code %d, stdout %q, stderr %q", c.args, code, stdout.String(), stderr.String())
		}
	}
}
