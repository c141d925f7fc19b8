package main

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/bettertest/bettertest"
)

// What bettertest run shows of a failure: the first caseLines lines of a
// failed case's message, a task's first failedCases failed cases, and the
// last outputLines lines of the last attempt of a failed task and of the
// pipedef's own output. The run page and the raw logs have the rest.
const (
	caseLines   = 10
	failedCases = 20
	outputLines = 20
)

// attemptMarker begins the line that the pipedef library writes into a
// retried test's output where an attempt begins: "── attempt 2 of 3 ──".
const attemptMarker = "── attempt "

// failed is what bettertest run knows of a run that ended, to say what failed.
type failed struct {
	base    string // the boss's URL
	run     bettertest.Run
	tasks   []bettertest.Task // the tasks that failed, in page order
	tests   []bettertest.TestResult
	logs    map[string]string // by task: its whole output
	pipedef string            // the pipedef's own output
}

// report is what bettertest run prints when a run ends, before its status
// line: each failed task with its failed cases and the end of its last
// attempt's output, then the pipedef's own output when the run failed.
// Empty when nothing failed.
func (f failed) report(paint func(color, s string) string) []string {
	var out []string
	if len(f.tasks) == 0 && (f.run.Status != bettertest.StatusFailed || strings.TrimSpace(f.pipedef) == "") {
		return nil
	}
	out = append(out, paint(red, "what failed:"))
	cases := bettertest.FailedCases(f.tests)
	taskURL := func(task string) string {
		return fmt.Sprintf("%s/runs/%d/tasks/%s", f.base, f.run.ID, url.PathEscape(task))
	}
	for _, t := range f.tasks {
		var why []string
		if t.ExitCode != nil && *t.ExitCode != 0 {
			why = append(why, fmt.Sprintf("exit %d", *t.ExitCode))
		}
		if t.Attempts > 1 {
			why = append(why, fmt.Sprintf("%d attempts", t.Attempts))
		}
		if t.Tests != nil {
			why = append(why, "cases: "+t.Tests.String())
		}
		if t.Quarantined {
			why = append(why, "quarantined: does not fail the run")
		}
		if t.Error != "" {
			why = append(why, t.Error)
		}
		out = append(out, fmt.Sprintf("  %s %s  %s", paint(red, "✗"), t.Name, strings.Join(why, " · ")))
		for i, c := range cases[t.Name] {
			if i == failedCases {
				out = append(out, fmt.Sprintf("    … %d more failed cases: %s", len(cases[t.Name])-i, taskURL(t.Name)))
				break
			}
			line := fmt.Sprintf("    %s %s", paint(red, "failed"), c.Last.Case)
			if len(c.Attempts) > 1 {
				words := make([]string, len(c.Attempts))
				for j, a := range c.Attempts {
					words[j] = fmt.Sprint(a)
				}
				line += "  (failed on attempts " + strings.Join(words, ", ") + ")"
			}
			out = append(out, line)
			lines := splitLines(c.Last.Output)
			for _, l := range lines[:min(len(lines), caseLines)] {
				out = append(out, "      | "+l)
			}
			if len(lines) > caseLines {
				out = append(out, fmt.Sprintf("      … %d more lines: %s", len(lines)-caseLines, taskURL(t.Name)))
			}
		}
		out = append(out, tail(f.logs[t.Name], t.Attempts, taskURL(t.Name)+"/raw", paint)...)
	}
	if f.run.Status == bettertest.StatusFailed && strings.TrimSpace(f.pipedef) != "" {
		out = append(out, "  the pipedef's own output:")
		out = append(out, tail(f.pipedef, 0, fmt.Sprintf("%s/runs/%d/raw", f.base, f.run.ID), paint)...)
	}
	return out
}

// tail is the end of output, indented: its last attempt's (from its last
// attempt marker on) when it was retried, at most outputLines lines of it,
// with a note of what is left out and where the whole is.
func tail(output string, attempts int, whole string, paint func(color, s string) string) []string {
	lines := splitLines(output)
	if len(lines) == 0 {
		return nil
	}
	marker := 0
	for i, l := range lines {
		if strings.HasPrefix(l, attemptMarker) {
			marker = i
		}
	}
	from := max(marker, len(lines)-outputLines)
	var note string
	switch {
	case from == 0:
	case from == marker:
		note = fmt.Sprintf("attempt %d of %d; the earlier attempts' output: %s", attempts, attempts, whole)
	case marker > 0:
		note = fmt.Sprintf("the last %d lines of attempt %d of %d; the whole output: %s", len(lines)-from, attempts, attempts, whole)
	default:
		note = fmt.Sprintf("the last %d lines; the whole output: %s", len(lines)-from, whole)
	}
	var out []string
	if note != "" {
		out = append(out, paint(dim, "      ("+note+")"))
	}
	for _, l := range lines[from:] {
		out = append(out, "      | "+l)
	}
	return out
}

func splitLines(text string) []string {
	text = strings.TrimRight(text, "\n")
	if text == "" {
		return nil
	}
	return strings.Split(text, "\n")
}
