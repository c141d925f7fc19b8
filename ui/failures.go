package ui

import (
	"fmt"
	"strings"

	"github.com/bettertest/bettertest"
)

// What a run page shows of its failures: a failed case's message is cut to
// CaseLines lines, a task lists its first FailedCases failed cases, and the
// pipedef's own output shows its last PipedefLines lines; the task page and
// the raw log have the rest.
const (
	CaseLines    = 10
	FailedCases  = 20
	PipedefLines = 40
)

// counts is a count of test cases in words, failures first, each with its
// status's colour: "2 failed · 1 flaky · 40 passed"; "" for nil.
func counts(c *bettertest.TestCounts) string {
	if c == nil {
		return ""
	}
	var parts []string
	for _, n := range []struct {
		n      int
		status string
	}{{c.Failed, bettertest.StatusFailed}, {c.Flaky, bettertest.OutcomeFlaky}, {c.Passed, bettertest.StatusPassed}, {c.Skipped, bettertest.StatusSkipped}} {
		if n.n > 0 {
			parts = append(parts, fmt.Sprintf(`<span class="st-%s">%d %s</span>`, n.status, n.n, n.status))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return ` <span class="counts" title="test cases, each by its last attempt">` + strings.Join(parts, " · ") + "</span>"
}

// cut is the first n lines of text, and how many more it has.
func cut(text string, n int) (string, int) {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) <= n {
		return strings.Join(lines, "\n"), 0
	}
	return strings.Join(lines[:n], "\n"), len(lines) - n
}

// failures is what a run page leads with: its failed tasks, each with its
// failed test cases and the start of their messages, and the pipedef's own
// output (its traceback) when the run failed. Empty when nothing failed.
func failures(m Model) Region {
	r := m.Run
	reg := Region{ID: "failures", Tag: "section", Attrs: ` class="failures"`}
	var failed []bettertest.Task
	for _, t := range tasks(r) {
		if t.Status == bettertest.StatusFailed {
			failed = append(failed, t)
		}
	}
	output := r.Status == bettertest.StatusFailed && (len(m.Log.Lines) > 0 || m.Log.Partial != "")
	if len(failed) == 0 && !output {
		return reg
	}
	var b strings.Builder
	b.WriteString("<h2>What failed</h2>")
	if len(failed) > 0 {
		cases := bettertest.FailedCases(m.Tests)
		b.WriteString(`<ul class="failed-tasks">`)
		for _, t := range failed {
			fmt.Fprintf(&b, `<li><a href="%s">%s <span class="name">%s</span></a>`, taskPath(r.ID, t.Name), status(t.Status), esc(t.Name))
			var why []string
			if t.ExitCode != nil && *t.ExitCode != 0 {
				why = append(why, fmt.Sprintf("exit code %d", *t.ExitCode))
			}
			if t.Attempts > 1 {
				why = append(why, plural(t.Attempts, "attempt"))
			}
			if t.Error != "" {
				why = append(why, esc(t.Error))
			}
			if len(why) > 0 {
				b.WriteString(` <span class="why">` + strings.Join(why, " · ") + "</span>")
			}
			b.WriteString(counts(t.Tests))
			if t.Quarantined {
				b.WriteString(" " + quarantinedMark("it failed only in quarantined tests, so the run did not fail"))
			}
			writeFailedCases(&b, r.ID, t.Name, cases[t.Name])
			b.WriteString("</li>")
		}
		b.WriteString("</ul>")
	}
	if output {
		b.WriteString(pipedefOutput(r.ID, m.Log))
	}
	reg.Inner = b.String()
	return reg
}

func writeFailedCases(b *strings.Builder, run int64, task string, cases []bettertest.FailedCase) {
	if len(cases) == 0 {
		return
	}
	b.WriteString(`<ul class="cases">`)
	for i, c := range cases {
		if i == FailedCases {
			fmt.Fprintf(b, `<li><a href="%s">%d more failed cases on the task's page</a></li>`, taskPath(run, task), len(cases)-i)
			break
		}
		b.WriteString("<li>" + status(bettertest.StatusFailed) + ` <span class="name">` + esc(c.Last.Case) + "</span>")
		if len(c.Attempts) > 1 {
			words := make([]string, len(c.Attempts))
			for j, a := range c.Attempts {
				words[j] = fmt.Sprint(a)
			}
			b.WriteString(` <span class="attempts">failed on attempts ` + strings.Join(words, ", ") + "</span>")
		}
		if c.Last.Output != "" {
			text, more := cut(c.Last.Output, CaseLines)
			b.WriteString(`<pre class="output">` + esc(text) + "</pre>")
			if more > 0 {
				fmt.Fprintf(b, `<a class="more" href="%s">%s on the task's page</a>`, taskPath(run, task), plural(more, "more line"))
			}
		}
		b.WriteString("</li>")
	}
	b.WriteString("</ul>")
}

// pipedefOutput is the end of the pipedef's own output: stray prints, and
// the traceback of an error it raised.
func pipedefOutput(run int64, l Log) string {
	lines := l.Lines
	if l.Partial != "" {
		lines = append(lines[:len(lines):len(lines)], l.Partial)
	}
	shown, earlier := lines, 0
	if len(shown) > PipedefLines {
		earlier += len(shown) - PipedefLines
		shown = shown[len(shown)-PipedefLines:]
	}
	var b strings.Builder
	b.WriteString(`<h3>The pipedef's own output</h3>`)
	if earlier > 0 {
		fmt.Fprintf(&b, `<p class="meta">%s not shown: <a href="%s/raw">the whole output</a></p>`, plural(earlier, "earlier line"), runPath(run))
	}
	b.WriteString(`<pre class="output">`)
	for i, line := range shown {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(esc(line))
	}
	b.WriteString("</pre>")
	return b.String()
}
