package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/internal/sse"
)

const runUsage = `Usage: bettertest run [--boss URL] [--token-file PATH] PIPELINE

Start a run of PIPELINE on the boss and follow it: each stage, and each task
as it ends with its test case counts. When the run ends it says what failed
first: each failed task with its failed test cases (the start of each message)
and the end of its last attempt's output, and the pipedef's own output (its
traceback); then the run's status with its test case counts. The exit status
is 0 when the run passed and 1 otherwise.
`

func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", runUsage, stderr)
	bossURL := fs.String("boss", "http://127.0.0.1:9001", "the boss's URL")
	tokenFile := fs.String("token-file", "", "an API token of an operator (mode 0600; bettertest boss token add makes one), for a boss with users")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{errors.New("name one pipeline to run, e.g. bettertest run hello")}
	}
	base := strings.TrimSuffix(*bossURL, "/")
	c := &bossClient{base: base, out: stdout, color: isTerminal(stdout)}
	if *tokenFile != "" {
		token, err := bettertest.ReadTokenFile(*tokenFile)
		if err != nil {
			return err
		}
		c.token = string(token)
	}
	run, err := c.trigger(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "run #%d of %s: %s/runs/%d\n", run.ID, run.Pipeline, base, run.ID)
	final, err := c.follow(ctx, run.ID)
	if err != nil {
		return err
	}
	if final.Status != bettertest.StatusPassed {
		return exitCode(1)
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

type bossClient struct {
	base  string
	token string // sent as Authorization: Bearer; "" for a boss without users
	out   io.Writer
	color bool
}

func (c *bossClient) do(ctx context.Context, method, path string, body io.Reader, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("--boss %s: %w", c.base, err)
	}
	req.Header.Set("Accept", accept)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the boss at %s (%v): start it with bettertest boss, or pass --boss URL", c.base, errors.Unwrap(err))
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var apiErr bettertest.APIError
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&apiErr)
		return nil, fmt.Errorf("the boss refused %s %s (HTTP %d): %s", method, path, resp.StatusCode, apiErr.Error)
	}
	return resp, nil
}

func (c *bossClient) trigger(ctx context.Context, pipeline string) (bettertest.Run, error) {
	var run bettertest.Run
	resp, err := c.do(ctx, http.MethodPost, "/api/pipelines/"+url.PathEscape(pipeline)+"/runs", bytes.NewReader([]byte(`{"trigger":"cli"}`)), "application/json")
	if err != nil {
		return run, err
	}
	defer resp.Body.Close()
	return run, json.NewDecoder(resp.Body).Decode(&run)
}

// follow prints a run's progress from the boss's event stream until it ends.
func (c *bossClient) follow(ctx context.Context, id int64) (bettertest.Run, error) {
	resp, err := c.do(ctx, http.MethodGet, fmt.Sprintf("/api/events?run=%d", id), nil, "text/event-stream")
	if err != nil {
		return bettertest.Run{}, err
	}
	defer resp.Body.Close()
	events := sse.NewReader(resp.Body)
	var last bettertest.Run
	for {
		ev, err := events.Next()
		if err != nil {
			if err == io.EOF && last.Status != "" && last.Status != bettertest.StatusQueued && last.Status != bettertest.StatusRunning {
				return last, nil
			}
			return last, fmt.Errorf("lost the boss's event stream for run #%d (%v): see %s/runs/%d", id, err, c.base, id)
		}
		switch ev.Name {
		case bettertest.BossEventRun:
			var r bettertest.Run
			if json.Unmarshal([]byte(ev.Data), &r) != nil {
				continue
			}
			if r.Commit != "" && last.Commit == "" {
				fmt.Fprintf(c.out, "commit %.7s on %s by %s\n", r.Commit, r.Ref, r.Author)
			}
			if r.Status != last.Status {
				if ended(r.Status) {
					c.printFailures(ctx, r)
				}
				c.printRun(r)
			}
			last = r
		case bettertest.BossEventStage:
			var st bettertest.StageEvent
			if json.Unmarshal([]byte(ev.Data), &st) == nil && st.Status == bettertest.StatusRunning {
				fmt.Fprintf(c.out, "stage %s\n", st.Name)
			}
		case bettertest.BossEventTask:
			var t bettertest.TaskEvent
			if json.Unmarshal([]byte(ev.Data), &t) == nil && t.Status != bettertest.StatusRunning {
				c.printTask(t.Task)
			}
		}
	}
}

func (c *bossClient) paint(color, s string) string {
	if !c.color {
		return s
	}
	return color + s + "\x1b[0m"
}

const (
	green = "\x1b[32m"
	red   = "\x1b[31m"
	dim   = "\x1b[2m"
)

func (c *bossClient) statusWord(status string) string {
	switch status {
	case bettertest.StatusPassed:
		return c.paint(green, status)
	case bettertest.StatusSkipped, bettertest.StatusQueued, bettertest.StatusRunning:
		return c.paint(dim, status)
	}
	return c.paint(red, status)
}

func (c *bossClient) printRun(r bettertest.Run) {
	switch r.Status {
	case bettertest.StatusQueued:
		fmt.Fprintln(c.out, "queued: waiting for a free worker")
	case bettertest.StatusRunning:
		fmt.Fprintf(c.out, "running on worker %s\n", r.Worker)
	default:
		line := fmt.Sprintf("run #%d %s", r.ID, c.statusWord(r.Status))
		if r.FinishedMS > 0 && r.StartedMS > 0 {
			line += fmt.Sprintf(" in %s", (time.Duration(r.FinishedMS-r.StartedMS) * time.Millisecond).Round(10*time.Millisecond))
		}
		if r.Error != "" {
			line += ": " + r.Error
		}
		if r.Tests != nil {
			line += "; test cases: " + r.Tests.String()
		}
		fmt.Fprintln(c.out, line)
	}
}

func ended(status string) bool {
	return status != "" && status != bettertest.StatusQueued && status != bettertest.StatusRunning && status != bettertest.StatusAwaitingApproval
}

// printFailures says what failed in a run that ended, before its status
// line: what the boss holds of it is read once, at its end.
func (c *bossClient) printFailures(ctx context.Context, r bettertest.Run) {
	f := failed{base: c.base, run: r, logs: map[string]string{}}
	// The run whole, its tasks in page order, as the run page lists them.
	var whole bettertest.Run
	if err := c.get(ctx, fmt.Sprintf("/api/runs/%d", r.ID), &whole); err != nil {
		fmt.Fprintf(c.out, "(what failed could not be read: %v)\n", err)
		return
	}
	for _, st := range whole.Stages {
		for _, t := range st.Tasks {
			if t.Status == bettertest.StatusFailed {
				f.tasks = append(f.tasks, t)
			}
		}
	}
	if len(f.tasks) == 0 && r.Status != bettertest.StatusFailed {
		return
	}
	if len(f.tasks) > 0 {
		if err := c.get(ctx, fmt.Sprintf("/api/runs/%d/tests", r.ID), &f.tests); err != nil {
			fmt.Fprintf(c.out, "(the failed test cases could not be read: %v)\n", err)
		}
	}
	for _, t := range f.tasks {
		f.logs[t.Name] = c.log(ctx, fmt.Sprintf("/api/runs/%d/tasks/%s/log", r.ID, url.PathEscape(t.Name)))
	}
	if r.Status == bettertest.StatusFailed {
		f.pipedef = c.log(ctx, fmt.Sprintf("/api/runs/%d/log", r.ID))
	}
	for _, line := range f.report(c.paint) {
		fmt.Fprintln(c.out, line)
	}
}

// log is the whole output at path (a task's, or the pipedef's), or a line
// saying why it could not be read.
func (c *bossClient) log(ctx context.Context, path string) string {
	var chunks []bettertest.Chunk
	if err := c.get(ctx, path, &chunks); err != nil {
		return fmt.Sprintf("(its output could not be read: %v)\n", err)
	}
	var all strings.Builder
	for _, ch := range chunks {
		all.WriteString(ch.Text)
	}
	return all.String()
}

// get decodes the boss's JSON answer to GET path into v.
func (c *bossClient) get(ctx context.Context, path string, v any) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil, "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("the boss's answer to GET %s is not JSON: %w", path, err)
	}
	return nil
}

// printTask prints a task that ended, with its test case counts.
func (c *bossClient) printTask(t bettertest.Task) {
	line := fmt.Sprintf("  %-7s %s", c.statusWord(t.Status), t.Name)
	if t.FinishedMS > 0 && t.StartedMS > 0 {
		line += fmt.Sprintf("  %s", (time.Duration(t.WorkMS()) * time.Millisecond).Round(10*time.Millisecond))
	}
	if t.WaitedMS > 0 {
		line += fmt.Sprintf("  waited %s for %s", (time.Duration(t.WaitedMS) * time.Millisecond).Round(10*time.Millisecond), t.WaitedForText())
	}
	switch {
	case t.Cached && t.BuiltBy != 0:
		line += fmt.Sprintf("  cached (built by run #%d)", t.BuiltBy)
	case t.Cached:
		line += "  cached"
	case t.Reason != "":
		line += "  (" + t.Reason + ")"
	}
	if t.Tests != nil {
		line += "  cases: " + t.Tests.String()
	}
	if t.ExitCode != nil && *t.ExitCode != 0 {
		line += fmt.Sprintf("  exit %d", *t.ExitCode)
	}
	if t.Flaky {
		line += fmt.Sprintf("  flaky: passed on attempt %d", t.Attempts)
	}
	if t.Quarantined {
		line += "  quarantined: does not fail the run"
	}
	if t.Error != "" {
		line += ": " + t.Error
	}
	fmt.Fprintln(c.out, line)
}
