package enroll

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/bettertest/bettertest/provision"
)

// reporter prints each host's results as they happen; hosts run in
// parallel, so every line names its host.
type reporter struct {
	mu       sync.Mutex
	out      io.Writer
	json     bool
	color    bool
	terminal bool // out is a terminal: progress is a live line (progress.go)
	live     bool // the live line is showing
	liveAt   time.Time
	now      func() time.Time // nil: time.Now; tests set a clock
}

var statusColor = map[provision.Status]string{
	provision.OK: "\x1b[32m", provision.Changed: "\x1b[33m", provision.Failed: "\x1b[31m", provision.Skipped: "\x1b[36m",
}

// jsonEvent is one line of --json output.
type jsonEvent struct {
	Host string `json:"host"`
	provision.Event
	DurationMS int64 `json:"duration_ms"`
}

func (r *reporter) event(host string, ev provision.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		r.writeJSON(jsonEvent{Host: host, Event: ev, DurationMS: ev.Duration.Milliseconds()})
		return
	}
	r.endLive()
	status := fmt.Sprintf("%-8s", ev.Status)
	if r.color {
		status = statusColor[ev.Status] + status + "\x1b[0m"
	}
	line := fmt.Sprintf("%s [%s] %s (%.2fs)", status, host, ev.Step, ev.Duration.Seconds())
	if ev.Message != "" {
		line += ": " + ev.Message
	}
	fmt.Fprintln(r.out, line)
	if ev.Command != "" {
		fmt.Fprintf(r.out, "         command:\n%s\n         exit code: %d\n", indent(ev.Command), *ev.ExitCode)
		if ev.Stderr != "" {
			fmt.Fprintf(r.out, "         stderr:\n%s\n", indent(ev.Stderr))
		}
	}
	if ev.Diff != "" {
		fmt.Fprintln(r.out, indent(strings.TrimRight(ev.Diff, "\n")))
	}
}

func (r *reporter) warn(host, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		r.writeJSON(map[string]string{"host": host, "warning": msg})
		return
	}
	r.endLive()
	fmt.Fprintf(r.out, "warning  [%s] %s\n", host, msg)
}

// fail reports an error that happened before the host's steps could run.
func (r *reporter) fail(host string, err error) {
	if err == errReported {
		return
	}
	r.event(host, provision.Event{Step: "enroll", Status: provision.Failed, Message: err.Error()})
}

func (r *reporter) recap(host string, recap provision.Recap, spec Spec, check, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		v := map[string]any{"host": host, "recap": map[string]int{"ok": recap.OK, "changed": recap.Changed, "failed": recap.Failed, "skipped": recap.Skipped}}
		if ok && !check {
			v["worker"], v["token_file"] = spec.URL, spec.TokenFile
		}
		r.writeJSON(v)
		return
	}
	r.endLive()
	fmt.Fprintf(r.out, "recap    [%s] ok=%d changed=%d failed=%d skipped=%d\n", host, recap.OK, recap.Changed, recap.Failed, recap.Skipped)
	if ok && !check {
		fmt.Fprintf(r.out, "worker   [%s] pipedefs use it with: --worker %s --token-file %s\n", host, spec.URL, spec.TokenFile)
	}
}

func (r *reporter) writeJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	fmt.Fprintf(r.out, "%s\n", b)
}

func indent(s string) string {
	return "           " + strings.ReplaceAll(s, "\n", "\n           ")
}

// table ends a text report with every host's counts, as Ansible's PLAY
// RECAP does; a JSON report has them in each host's recap line.
func (r *reporter) table(results []hostResult) {
	if r.json {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.endLive()
	width := 0
	for _, res := range results {
		width = max(width, len(res.host))
	}
	fmt.Fprintln(r.out, "RECAP")
	for _, res := range results {
		failed, unreachable := res.recap.Failed, 0
		if res.unreachable {
			failed, unreachable = failed-1, 1
		}
		fmt.Fprintf(r.out, "%-*s : ok=%-3d changed=%-3d unreachable=%-3d failed=%-3d skipped=%d\n",
			width, res.host, res.recap.OK, res.recap.Changed, unreachable, failed, res.recap.Skipped)
	}
}
