package ui

import (
	"fmt"
	"net/url"
	"slices"
	"sort"

	"github.com/bettertest/bettertest"
)

// Paths of the pages.
func runPath(id int64) string { return fmt.Sprintf("/runs/%d", id) }
func taskPath(id int64, task string) string {
	return fmt.Sprintf("/runs/%d/tasks/%s", id, url.PathEscape(task))
}

// Update is the whole behaviour of the UI: the Model after msg. It is pure:
// what should happen outside is listed in the result's Effects.
func Update(m Model, msg Msg) Model {
	m.Effects = nil
	switch msg := msg.(type) {
	case Key:
		return m.key(msg.Key)
	case Navigate:
		return m.navigate(msg.Path)
	case Loaded:
		return m.loaded(msg)
	case Action:
		return m.action(msg)
	case Triggered:
		return m.navigate(runPath(msg.Run.ID))
	case Notice:
		m.Notice = msg.Text
	case RunChanged:
		m = m.runChanged(msg.Run)
	case StageChanged:
		m = m.stageChanged(msg.Event)
	case TaskChanged:
		m = m.taskChanged(msg.Event)
	case Output:
		// A chunk the log already holds (it was loaded with the page) is not added again.
		// A run page shows the pipedef's own output (task ""), a task page the task's.
		if (m.Page == PageTask || m.Page == PageRun) && m.Run != nil && msg.Event.RunID == m.Run.ID && msg.Event.Task == m.Task && msg.Event.Seq >= m.Log.Chunks {
			m.Log.Append(msg.Event.Text)
		}
	case WorkerChanged:
		m = m.workerChanged(msg.Worker)
	case TestChanged:
		m = m.testChanged(msg.Event)
	case FlakyChanged:
		// The list comes from the boss's rules over the whole history, so
		// the page that shows it is loaded again rather than patched.
		if m.Page == PageFlaky || (m.Page == PageRun || m.Page == PageTask) && m.Run != nil && m.Run.Pipeline == msg.Pipeline {
			m.Effects = []Effect{{Kind: Load, Path: m.Path}}
		}
	}
	return m.clamp()
}

func (m Model) clamp() Model {
	m.Selected = max(0, min(m.Selected, m.rows()-1))
	return m
}

func (m Model) key(k string) Model {
	if m.Help && (k == "Escape" || k == "?") {
		m.Help = false
		return m
	}
	switch k {
	case "?":
		m.Help = true
	case "j", "ArrowDown":
		m.Selected++
	case "k", "ArrowUp":
		m.Selected--
	case "Enter":
		return m.open()
	case "Escape", "Backspace":
		return m.back()
	case "r":
		return m.run()
	case "c":
		return m.cancel()
	case "a":
		return m.approve()
	case "q":
		return m.quarantine()
	case "m":
		return m.action(Action{Name: "more"})
	case "w":
		return m.navigate("/workers")
	case "p":
		return m.navigate("/")
	case "f":
		return m.navigate("/flaky")
	}
	return m.clamp()
}

func (m Model) navigate(path string) Model {
	m.Path, m.Help, m.Notice = path, false, ""
	m.Effects = []Effect{{Kind: Load, Path: path}, {Kind: PushURL, Path: path}}
	return m
}

func (m Model) loaded(l Loaded) Model {
	if l.Path != m.Path {
		return m // an answer for a page left since
	}
	prev := m
	same := prev.shows(l)
	m.Page, m.Pipelines, m.Run, m.Task, m.Log, m.Tests, m.Flaky, m.Selected = l.Page, l.Pipelines, l.Run, l.Task, l.Log, l.Tests, l.Flaky, 0
	// A reload of the page shown (its data changed) keeps the notice about
	// the last action; a new page came through navigate, which cleared it.
	if !same || l.NotFound != "" {
		m.Notice = l.NotFound
	}
	switch {
	case same:
		// The same thing stays selected, wherever the reload put it.
		m.Selected = prev.Selected
		if was := prev.rowIDs(); prev.Selected < len(was) {
			if i := slices.Index(m.rowIDs(), was[prev.Selected]); i >= 0 {
				m.Selected = i
			}
		}
		if m.Page == PageTask && prev.Log.Pinned {
			m.Log.Start, m.Log.Pinned = min(m.Log.Start, prev.Log.Start), true
		}
	// Going back selects where you came from.
	case m.Page == PagePipelines && prev.Run != nil:
		m.Selected = slices.IndexFunc(m.Pipelines, func(p Pipeline) bool { return p.Name == prev.Run.Pipeline })
	case m.Page == PageRun && prev.Page == PageTask:
		m.Selected = slices.IndexFunc(tasks(m.Run), func(t bettertest.Task) bool { return t.Name == prev.Task })
	case m.Page == PageRun:
		// A run opens on its first failed task, if any.
		m.Selected = slices.IndexFunc(tasks(m.Run), func(t bettertest.Task) bool { return t.Status == bettertest.StatusFailed })
	}
	return m.clamp()
}

// shows says whether l is the page m shows now, loaded again.
func (m Model) shows(l Loaded) bool {
	if m.Page != l.Page {
		return false
	}
	switch m.Page {
	case PageRun:
		return m.Run != nil && l.Run != nil && m.Run.ID == l.Run.ID
	case PageTask:
		return m.Run != nil && l.Run != nil && m.Run.ID == l.Run.ID && m.Task == l.Task
	}
	return true
}

func (m Model) open() Model {
	switch m.Page {
	case PagePipelines:
		if len(m.Pipelines) == 0 {
			return m
		}
		p := m.Pipelines[m.Selected]
		if len(p.Runs) == 0 {
			m.Notice = fmt.Sprintf("%s has no runs yet: press r to start one", p.Name)
			return m
		}
		return m.navigate(runPath(p.Runs[0].ID))
	case PageRun:
		ts := tasks(m.Run)
		if len(ts) == 0 {
			return m
		}
		return m.navigate(taskPath(m.Run.ID, ts[m.Selected].Name))
	case PageFlaky:
		if len(m.Flaky) == 0 {
			return m
		}
		// The newest run that shows the flakiness, else the newest it ran in.
		f := m.Flaky[m.Selected]
		for _, runs := range [][]bettertest.TestRun{f.Evidence, f.History} {
			if len(runs) > 0 {
				return m.navigate(runPath(runs[0].RunID))
			}
		}
		m.Notice = fmt.Sprintf("%s/%s has not run since it was quarantined: there is no run to open", f.Pipeline, f.Test)
	}
	return m
}

func (m Model) back() Model {
	switch m.Page {
	case PageTask:
		return m.navigate(runPath(m.Run.ID))
	case PageRun, PageWorkers, PageFlaky:
		return m.navigate("/")
	}
	return m
}

// run starts a run of the selected pipeline, or of the run's shown.
func (m Model) run() Model {
	switch {
	case m.Page == PagePipelines && len(m.Pipelines) > 0:
		return m.action(Action{Name: "run", Pipeline: m.Pipelines[m.Selected].Name})
	case (m.Page == PageRun || m.Page == PageTask) && m.Run != nil:
		return m.action(Action{Name: "run", Pipeline: m.Run.Pipeline})
	}
	return m
}

// cancel stops the run shown, or the selected pipeline's latest run.
func (m Model) cancel() Model {
	var r *bettertest.Run
	switch {
	case m.Page == PagePipelines && len(m.Pipelines) > 0 && len(m.Pipelines[m.Selected].Runs) > 0:
		r = &m.Pipelines[m.Selected].Runs[0]
	case m.Page == PageRun || m.Page == PageTask:
		r = m.Run
	}
	if r == nil {
		return m
	}
	if !active(r.Status) {
		m.Notice = fmt.Sprintf("run #%d has already ended (%s): there is nothing to cancel", r.ID, r.Status)
		return m
	}
	return m.action(Action{Name: "cancel", RunID: r.ID})
}

// approve lets the shown run of a pull request from a fork run.
func (m Model) approve() Model {
	if (m.Page != PageRun && m.Page != PageTask) || m.Run == nil {
		return m
	}
	if m.Run.Status != bettertest.StatusAwaitingApproval {
		m.Notice = fmt.Sprintf("run #%d is %s: only a pull request from a fork awaits approval", m.Run.ID, statusWord(m.Run.Status))
		return m
	}
	return m.action(Action{Name: "approve", RunID: m.Run.ID})
}

// quarantine quarantines the selected flaky test, or releases it.
func (m Model) quarantine() Model {
	if m.Page != PageFlaky || len(m.Flaky) == 0 {
		return m
	}
	f := m.Flaky[m.Selected]
	return m.action(Action{Name: "quarantine", Pipeline: f.Pipeline, Test: f.Test, On: !f.Quarantined})
}

func active(status string) bool {
	return status == bettertest.StatusQueued || status == bettertest.StatusRunning || status == bettertest.StatusAwaitingApproval
}

func (m Model) action(a Action) Model {
	switch a.Name {
	case "run":
		m.Notice = "starting a run of " + a.Pipeline
		m.Effects = []Effect{{Kind: Trigger, Pipeline: a.Pipeline}}
	case "cancel":
		m.Notice = fmt.Sprintf("cancelling run #%d", a.RunID)
		m.Effects = []Effect{{Kind: Cancel, RunID: a.RunID}}
	case "approve":
		m.Notice = fmt.Sprintf("approving run #%d", a.RunID)
		m.Effects = []Effect{{Kind: Approve, RunID: a.RunID}}
	case "quarantine":
		if f := m.flaky(a.Pipeline, a.Test); f != nil && f.QuarantinedBy == "flag" && !a.On {
			m.Notice = fmt.Sprintf("%s/%s is quarantined by the boss's --quarantine flag: restart the boss without it to release it", a.Pipeline, a.Test)
			return m
		}
		// A click on another row's button selects that row, so the test
		// stays selected when the list comes back changed.
		if m.Page == PageFlaky {
			if i := slices.IndexFunc(m.Flaky, func(f bettertest.FlakyTest) bool { return f.Pipeline == a.Pipeline && f.Test == a.Test }); i >= 0 {
				m.Selected = i
			}
		}
		verb := "releasing"
		if a.On {
			verb = "quarantining"
		}
		m.Notice = fmt.Sprintf("%s %s/%s", verb, a.Pipeline, a.Test)
		m.Effects = []Effect{{Kind: Quarantine, Pipeline: a.Pipeline, Test: a.Test, On: a.On}}
	case "help":
		m.Help = !m.Help
	case "more":
		if m.Page == PageTask && m.Log.Start > 0 {
			m.Log.Start, m.Log.Pinned = max(0, m.Log.Start-MoreLines), true
		}
	}
	return m
}

func (m Model) runChanged(r bettertest.Run) Model {
	if i := slices.IndexFunc(m.Pipelines, func(p Pipeline) bool { return p.Name == r.Pipeline }); i >= 0 {
		m.Pipelines = slices.Clone(m.Pipelines)
		p := &m.Pipelines[i]
		runs := slices.Clone(p.Runs)
		if j := slices.IndexFunc(runs, func(x bettertest.Run) bool { return x.ID == r.ID }); j >= 0 {
			runs[j] = r
		} else {
			runs = append([]bettertest.Run{r}, runs...)
			sort.Slice(runs, func(a, b int) bool { return runs[a].ID > runs[b].ID })
			runs = runs[:min(len(runs), StripRuns)]
		}
		p.Runs = runs
	}
	if m.Run != nil && m.Run.ID == r.ID {
		stages := m.Run.Stages
		m.Run = &r
		m.Run.Stages = stages
	}
	return m
}

// withRun gives m a copy of its run to change, when the event is about it.
func (m Model) withRun(id int64) (Model, bool) {
	if m.Run == nil || m.Run.ID != id {
		return m, false
	}
	r := *m.Run
	r.Stages = slices.Clone(r.Stages)
	m.Run = &r
	return m, true
}

func (m Model) stageChanged(ev bettertest.StageEvent) Model {
	m, ok := m.withRun(ev.RunID)
	if !ok {
		return m
	}
	i := m.stage(ev.Name)
	st := m.Run.Stages[i]
	ev.Tasks = st.Tasks
	m.Run.Stages[i] = ev.Stage
	return m
}

// stage returns the index of the stage named name in m.Run, adding it if new.
func (m Model) stage(name string) int {
	if i := slices.IndexFunc(m.Run.Stages, func(s bettertest.Stage) bool { return s.Name == name }); i >= 0 {
		return i
	}
	m.Run.Stages = append(m.Run.Stages, bettertest.Stage{Name: name, Status: bettertest.StatusRunning})
	return len(m.Run.Stages) - 1
}

func (m Model) taskChanged(ev bettertest.TaskEvent) Model {
	m, ok := m.withRun(ev.RunID)
	if !ok {
		return m
	}
	i := m.stage(ev.Stage)
	st := &m.Run.Stages[i]
	st.Tasks = slices.Clone(st.Tasks)
	if j := slices.IndexFunc(st.Tasks, func(t bettertest.Task) bool { return t.Name == ev.Name }); j >= 0 {
		st.Tasks[j] = ev.Task
	} else {
		st.Tasks = append(st.Tasks, ev.Task)
	}
	return m
}

// testChanged adds an attempt's test results to the task page that shows
// them, or the run page of its run (for its failures), each once: the page
// may have been loaded with some already. A run page keeps only the
// results of the cases that failed in some attempt, as it is loaded with.
func (m Model) testChanged(ev bettertest.TestResultsEvent) Model {
	if m.Run == nil || ev.RunID != m.Run.ID || !(m.Page == PageTask && ev.Task == m.Task || m.Page == PageRun) {
		return m
	}
	if m.Page == PageRun {
		// m.Tests holds cases that failed in some attempt alone: the
		// event adds its failed ones, and the later attempts of those.
		ev.Results = bettertest.Failing(append(slices.Clip(m.Tests), ev.Results...))[len(m.Tests):]
	}
	// A map of the event's results, not of the page's: a retry of a case
	// or two on a page of 10,000 costs one pass over them, not a map of all.
	type key struct {
		test    string
		attempt int
	}
	have := make(map[key]bool, len(ev.Results))
	for _, t := range ev.Results {
		have[key{t.Test, t.Attempt}] = false
	}
	for _, t := range m.Tests {
		if _, ok := have[key{t.Test, t.Attempt}]; ok {
			have[key{t.Test, t.Attempt}] = true
		}
	}
	tests := slices.Clip(m.Tests)
	for _, t := range ev.Results {
		if k := (key{t.Test, t.Attempt}); !have[k] {
			have[k] = true
			tests = append(tests, t)
		}
	}
	m.Tests = tests
	return m
}

func (m Model) workerChanged(w bettertest.WorkerInfo) Model {
	m.Workers = slices.Clone(m.Workers)
	i := slices.IndexFunc(m.Workers, func(x bettertest.WorkerInfo) bool { return x.Name == w.Name })
	switch {
	case w.Removed && i >= 0:
		m.Workers = slices.Delete(m.Workers, i, i+1)
	case w.Removed:
	case i >= 0:
		m.Workers[i] = w
	default:
		m.Workers = append(m.Workers, w)
		sort.Slice(m.Workers, func(a, b int) bool { return m.Workers[a].Name < m.Workers[b].Name })
	}
	return m
}
