// Package provision is a small Ansible-style step engine. A step observes the
// host (through facts gathered in one round trip), decides, and changes only
// what differs. Deciding is a pure function of the facts, so every step can be
// unit-tested for each kind of host; applying runs shell scripts on the host.
package provision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Host is a machine that steps act on.
type Host interface {
	// Run runs script with sh as root on the host, feeding it stdin (may be nil).
	Run(ctx context.Context, script string, stdin io.Reader) (Output, error)
}

// Output is what a script printed and how it exited.
type Output struct {
	Stdout, Stderr []byte
	Code           int
}

// Status is the outcome of one step, as Ansible reports it.
type Status string

const (
	OK      Status = "ok"      // already as wanted
	Changed Status = "changed" // changed (or, in check mode, would change)
	Failed  Status = "failed"
	Skipped Status = "skipped" // does not apply to this host
)

// Step is one thing a host should have.
type Step struct {
	Name string
	// Plan decides what to do, from the facts alone.
	Plan func(f *Facts) Plan
}

// Plan is a step's decision.
type Plan struct {
	Skip    string   // when set, the step does not apply, and this says why
	Reason  string   // when there are actions, why a change is needed
	Diff    string   // a unified diff of a file the actions change, shown in check mode
	Actions []Action // what to run; none means the host is already as wanted
	// Message is shown with an ok result (e.g. "Debian 12 x86_64").
	Message string
	// Verify observes instead of changing: the step is ok when it returns
	// nil, failed otherwise. In check mode it is skipped when an earlier step
	// would have changed the host, since what it observes is not there yet.
	Verify func(ctx context.Context) (string, error)
	// After updates the facts to what they are once the actions ran, so later
	// steps plan against the host as it is then (also in check mode).
	After func(f *Facts)
	// Fail, when set, fails the step at once with this message: the host is
	// not one the playbook can handle.
	Fail string
}

// Action is a script to run, or a local function (reading back a secret, say).
type Action struct {
	Script string
	Stdin  func() (io.ReadCloser, error) // opened only when the action runs
	// Check inspects the script's output; a non-nil error fails the step.
	Check func(out Output) error
	// Local runs on the enrolling machine instead of the host.
	Local func(ctx context.Context, h Host) error
}

// Event is one step's result.
type Event struct {
	Step     string        `json:"step"`
	Status   Status        `json:"status"`
	Duration time.Duration `json:"-"`
	Message  string        `json:"message,omitempty"`
	Diff     string        `json:"diff,omitempty"`
	// For a failed script: the command, its exit code and the tail of its stderr.
	Command  string `json:"command,omitempty"`
	ExitCode *int   `json:"exit_code,omitempty"`
	Stderr   string `json:"stderr,omitempty"`
}

// Recap counts a host's results.
type Recap struct {
	OK, Changed, Failed, Skipped int
}

// Add counts one result.
func (r *Recap) Add(s Status) {
	switch s {
	case OK:
		r.OK++
	case Changed:
		r.Changed++
	case Failed:
		r.Failed++
	case Skipped:
		r.Skipped++
	}
}

// Playbook runs steps in order on one host. A failed step stops the run:
// later steps may depend on it.
type Playbook struct {
	Steps []Step
	Check bool // report what would change, change nothing
}

// Run applies the playbook to h, whose facts are f, calling report with each
// step's result as it happens.
func (p Playbook) Run(ctx context.Context, h Host, f *Facts, report func(Event)) (Recap, error) {
	var recap Recap
	for _, s := range p.Steps {
		ev := p.runStep(ctx, h, f, s, recap.Changed > 0)
		recap.Add(ev.Status)
		report(ev)
		if ev.Status == Failed {
			return recap, fmt.Errorf("%s: %s", s.Name, ev.Message)
		}
	}
	return recap, nil
}

func (p Playbook) runStep(ctx context.Context, h Host, f *Facts, s Step, changedBefore bool) Event {
	start := time.Now()
	plan := s.Plan(f)
	ev := Event{Step: s.Name}
	switch {
	case plan.Fail != "":
		ev.Status, ev.Message = Failed, plan.Fail
	case plan.Skip != "":
		ev.Status, ev.Message = Skipped, plan.Skip
	case plan.Verify != nil && p.Check && changedBefore:
		ev.Status, ev.Message = Skipped, "check mode: the host would change first"
	case plan.Verify != nil:
		msg, err := plan.Verify(ctx)
		ev.Status, ev.Message = OK, msg
		if err != nil {
			ev.Status, ev.Message = Failed, err.Error()
		}
	case len(plan.Actions) == 0:
		ev.Status, ev.Message = OK, plan.Message
	case p.Check:
		ev.Status, ev.Message, ev.Diff = Changed, "would change: "+plan.Reason, plan.Diff
	default:
		ev.Status, ev.Message = Changed, plan.Reason
		for _, a := range plan.Actions {
			if err := apply(ctx, h, a); err != nil {
				ev.Status, ev.Message = Failed, err.Error()
				var se *ScriptError
				if errors.As(err, &se) {
					ev.Command, ev.ExitCode, ev.Stderr = se.Script, &se.Code, se.StderrTail
				}
				break
			}
		}
	}
	if ev.Status == Changed && plan.After != nil {
		plan.After(f)
	}
	ev.Duration = time.Since(start)
	return ev
}

// ScriptError is a script that exited non-zero.
type ScriptError struct {
	Script     string
	Code       int
	StderrTail string
}

func (e *ScriptError) Error() string {
	msg := fmt.Sprintf("command exited with status %d", e.Code)
	if e.StderrTail != "" {
		msg += ": " + lastLine(e.StderrTail)
	}
	return msg
}

func apply(ctx context.Context, h Host, a Action) error {
	if a.Local != nil {
		return a.Local(ctx, h)
	}
	var stdin io.Reader
	if a.Stdin != nil {
		rc, err := a.Stdin()
		if err != nil {
			return err
		}
		defer rc.Close()
		stdin = rc
	}
	out, err := h.Run(ctx, a.Script, stdin)
	if err != nil {
		return err
	}
	if out.Code != 0 {
		return &ScriptError{Script: a.Script, Code: out.Code, StderrTail: Tail(out.Stderr, 20)}
	}
	if a.Check != nil {
		return a.Check(out)
	}
	return nil
}

// Tail returns the last n lines of b.
func Tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// Script runs a script that only observes and returns its stdout, failing on
// a non-zero exit.
func Script(ctx context.Context, h Host, script string) ([]byte, error) {
	out, err := h.Run(ctx, script, nil)
	if err != nil {
		return nil, err
	}
	if out.Code != 0 {
		return nil, &ScriptError{Script: script, Code: out.Code, StderrTail: Tail(out.Stderr, 20)}
	}
	return bytes.TrimRight(out.Stdout, "\n"), nil
}
