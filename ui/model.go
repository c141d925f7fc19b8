// Package ui is the boss's web UI in the Elm architecture: a Model, the Msgs
// that can happen to it, a pure Update and a pure View. The boss owns the
// effects: it loads data, starts and cancels runs, and streams the changes
// of View to the browser as fragments over Server-Sent Events.
package ui

import (
	"strings"
	"unicode/utf8"

	"github.com/bettertest/bettertest"
)

// PageKind says which page a Model shows.
type PageKind int

const (
	PagePipelines PageKind = iota
	PageRun
	PageTask
	PageWorkers
	PageFlaky
)

// StripRuns is how many recent runs the pipelines page shows per pipeline.
const StripRuns = 10

// TailLines is how many lines of a log a task page shows at first; "load
// more" shows MoreLines more.
const (
	TailLines = 1000
	MoreLines = 10000
)

// A log holds at most HeldLines lines, and HeldBytes of them, however long
// the output: what comes before is counted, not kept (the raw log has it).
// A line longer than MaxLine is shown in pieces of that size.
const (
	HeldLines = TailLines + 2*MoreLines
	HeldBytes = 2 << 20
	MaxLine   = 64 << 10
)

// Model is everything one browser tab shows.
type Model struct {
	Page PageKind
	Path string // the page's URL path

	Pipelines []Pipeline              // the pipelines page
	Run       *bettertest.Run         // the run and task pages
	Task      string                  // the task page: the task's name
	Log       Log                     // the task page
	Workers   []bettertest.WorkerInfo // always: the header counts them
	User      string                  // who is logged in; "" when nobody is
	Tests     []bettertest.TestResult // the task page: its test cases, every attempt
	Flaky     []bettertest.FlakyTest  // the flaky page: every pipeline's; run and task pages: the run's pipeline's

	Selected int    // the selected row of the page's list
	Help     bool   // the shortcut overlay is open
	Notice   string // a message about the last action, e.g. why it failed

	// Effects are what Update asks the boss to do; the boss does them and
	// clears the list.
	Effects []Effect
}

// Pipeline is a pipeline with its recent runs, newest first.
type Pipeline struct {
	Name string
	Runs []bettertest.Run
}

// Log is a task's output as lines. The page shows Lines[Start:] and the
// unfinished last line; new output only ever extends what is shown, so the
// browser appends it. Dropped lines came before Lines and are no longer
// held (see HeldLines).
type Log struct {
	Lines   []string
	Partial string // after the last newline
	Start   int
	Dropped int
	Chunks  int  // how many chunks of output it was given
	Pinned  bool // the viewer asked for more: live output no longer trims it
	held    int  // the bytes of Lines
}

// Append adds a chunk of output. While the viewer has not asked for more,
// the shown part is trimmed back to the tail whenever it has grown to twice
// that: the page stays small however long the output grows, and between
// trims the browser only appends.
func (l *Log) Append(text string) {
	l.Chunks++
	text = l.Partial + text
	for {
		i := strings.IndexByte(text, '\n')
		if i < 0 {
			break
		}
		l.add(text[:i])
		text = text[i+1:]
	}
	for len(text) > MaxLine {
		cut := cutAt(text, MaxLine)
		l.add(text[:cut])
		text = text[cut:]
	}
	l.Partial = strings.Clone(text)
	if !l.Pinned && len(l.Lines)-l.Start > 2*TailLines {
		l.Start = len(l.Lines) - TailLines
	}
	if len(l.Lines) > 2*HeldLines || l.held > 2*HeldBytes {
		l.drop()
	}
}

// add holds a line: a copy, so that it does not keep the chunk it came in.
func (l *Log) add(line string) {
	l.Lines = append(l.Lines, strings.Clone(line))
	l.held += len(line)
}

// drop lets the earliest lines go until the log holds no more than
// HeldLines and HeldBytes. It is done once the log holds twice that, so
// each line is copied a bounded number of times.
func (l *Log) drop() {
	n := 0
	for len(l.Lines)-n > HeldLines || l.held > HeldBytes {
		l.held -= len(l.Lines[n])
		n++
	}
	l.Lines = append([]string(nil), l.Lines[n:]...)
	l.Dropped += n
	l.Start = max(0, l.Start-n)
}

// ShowTail shows the last TailLines lines.
func (l *Log) ShowTail() { l.Start = max(0, len(l.Lines)-TailLines) }

// NewLog makes a log of chunks showing its last TailLines lines.
func NewLog(chunks []bettertest.Chunk) Log {
	var l Log
	for _, c := range chunks {
		l.Append(c.Text)
	}
	l.ShowTail()
	return l
}

// cutAt is where to cut s to at most n bytes without splitting a UTF-8
// sequence.
func cutAt(s string, n int) int {
	cut := n
	for cut > n-utf8.UTFMax && cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return cut
}

// Effect is something the boss does for a tab.
type Effect struct {
	Kind     EffectKind
	Path     string // Load, PushURL
	Pipeline string // Trigger, Quarantine
	RunID    int64  // Cancel, Approve
	Test     string // Quarantine
	On       bool   // Quarantine: true quarantines, false releases
}

// EffectKind names an effect.
type EffectKind int

const (
	// Load the data of the page at Path, answered by a Loaded Msg.
	Load EffectKind = iota
	// PushURL tells the browser the page's URL changed, for its history.
	PushURL
	// Trigger a run of Pipeline, answered by a Triggered Msg.
	Trigger
	// Cancel run RunID, answered by a Notice Msg when it cannot be done.
	Cancel
	// Approve run RunID, a pull request from a fork, answered by a Notice
	// Msg when it cannot be done.
	Approve
	// Quarantine (On) or release test Test of Pipeline, answered by a
	// FlakyChanged Msg, or a Notice Msg when it cannot be done.
	Quarantine
)

// Msg is everything that can happen to a Model.
type Msg interface{ isMsg() }

// Key is a key press, named as the browser's KeyboardEvent.key names it.
type Key struct{ Key string }

// Navigate asks for the page at Path: a link was followed, or the browser
// went back or forward.
type Navigate struct{ Path string }

// Loaded brings the data of a page that was loaded for a Load effect.
type Loaded struct {
	Path      string
	Page      PageKind
	Pipelines []Pipeline
	Run       *bettertest.Run
	Task      string
	Log       Log
	Tests     []bettertest.TestResult
	Flaky     []bettertest.FlakyTest
	NotFound  string // the page does not exist: why
}

// Action is a click on a button: "run" (Pipeline), "cancel" (RunID), "approve" (RunID), "more",
// "help", or "quarantine" (Pipeline, Test, On).
type Action struct {
	Name     string
	Pipeline string
	RunID    int64
	Test     string
	On       bool
}

// Triggered says a run was started for a Trigger effect.
type Triggered struct{ Run bettertest.Run }

// Notice shows a message, e.g. why an action failed.
type Notice struct{ Text string }

// RunChanged is a boss run event: a run without its stages.
type RunChanged struct{ Run bettertest.Run }

// StageChanged is a boss stage event.
type StageChanged struct{ Event bettertest.StageEvent }

// TaskChanged is a boss task event.
type TaskChanged struct{ Event bettertest.TaskEvent }

// Output is a boss output event.
type Output struct{ Event bettertest.OutputChunkEvent }

// WorkerChanged is a boss worker event.
type WorkerChanged struct{ Worker bettertest.WorkerInfo }

// TestChanged is a boss tests event: the test results of an attempt of a task of a running run.
type TestChanged struct{ Event bettertest.TestResultsEvent }

// FlakyChanged is a boss flaky event: a pipeline's flaky list or quarantine changed.
type FlakyChanged struct{ Pipeline string }

func (Key) isMsg()           {}
func (Navigate) isMsg()      {}
func (Loaded) isMsg()        {}
func (Action) isMsg()        {}
func (Triggered) isMsg()     {}
func (Notice) isMsg()        {}
func (RunChanged) isMsg()    {}
func (StageChanged) isMsg()  {}
func (TaskChanged) isMsg()   {}
func (Output) isMsg()        {}
func (WorkerChanged) isMsg() {}
func (TestChanged) isMsg()   {}
func (FlakyChanged) isMsg()  {}

// tasks lists a run's tasks in page order: stage by stage.
func tasks(r *bettertest.Run) []bettertest.Task {
	if r == nil {
		return nil
	}
	var out []bettertest.Task
	for _, st := range r.Stages {
		out = append(out, st.Tasks...)
	}
	return out
}

// rows is how many selectable rows the page has.
func (m Model) rows() int {
	switch m.Page {
	case PagePipelines:
		return len(m.Pipelines)
	case PageRun:
		return len(tasks(m.Run))
	case PageWorkers:
		return len(m.Workers)
	case PageFlaky:
		return len(m.Flaky)
	}
	return 0
}

// rowIDs name the rows of the page's list, so that a reload of the page can
// keep the same thing selected however the list changed.
func (m Model) rowIDs() []string {
	var out []string
	switch m.Page {
	case PagePipelines:
		for _, p := range m.Pipelines {
			out = append(out, p.Name)
		}
	case PageRun:
		for _, t := range tasks(m.Run) {
			out = append(out, t.Name)
		}
	case PageWorkers:
		for _, w := range m.Workers {
			out = append(out, w.Name)
		}
	case PageFlaky:
		for _, f := range m.Flaky {
			out = append(out, f.Pipeline+"\x00"+f.Test)
		}
	}
	return out
}

// flaky is the listed test of pipeline named test, or nil.
func (m Model) flaky(pipeline, test string) *bettertest.FlakyTest {
	for i, f := range m.Flaky {
		if f.Pipeline == pipeline && f.Test == test {
			return &m.Flaky[i]
		}
	}
	return nil
}
