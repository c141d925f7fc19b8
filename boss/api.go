package boss

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/internal/httpapi"
	"github.com/bettertest/bettertest/internal/hub"
)

// routes is the boss's HTTP API.
func (b *Boss) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(b.auth.middleware)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/") && r.Method == http.MethodGet {
			b.handlePage(w, r) // the UI's own page saying there is no such page
			return
		}
		httpapi.Fail(w, httpapi.NotFound, fmt.Sprintf("no such endpoint %s: the API is under /api (pipelines, runs, flaky, quarantine, workers, events)", r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		httpapi.Fail(w, httpapi.MethodNotAllowed, fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path))
	})
	b.uiRoutes(r)
	r.Get("/login", b.handleLoginPage)
	r.Post("/login", b.handleLogin)
	r.Post("/logout", b.handleLogout)
	r.Post("/hooks/github", b.handleGitHubHook)
	r.Route("/api", func(r chi.Router) {
		r.Get("/pipelines", b.handlePipelines)
		r.Post("/pipelines/{name}/runs", b.handleTrigger)
		r.Get("/runs", b.handleRuns)
		r.Get("/runs/{id}", b.handleRun)
		r.Post("/runs/{id}/cancel", b.handleCancel)
		r.Post("/runs/{id}/approve", b.handleApprove)
		r.Get("/runs/{id}/tasks/{task}/log", b.handleLog)
		r.Get("/runs/{id}/log", b.handleLog) // the pipedef's own output: stray prints, stderr
		r.Get("/runs/{id}/tests", b.handleTests)
		r.Get("/runs/{id}/artifacts/{sha256}", b.handleArtifact)
		r.Get("/flaky", b.handleFlaky)
		r.Post("/quarantine", b.handleQuarantine)
		r.Get("/workers", b.handleWorkers)
		r.Get("/events", b.handleEvents)
	})
	return r
}

// api answers errors as the boss: its own failures are logged under an id
// that the answer gives, without their text.
func (b *Boss) api() httpapi.Server { return httpapi.Server{Name: "boss", Log: b.log} }

func (b *Boss) handlePipelines(w http.ResponseWriter, r *http.Request) {
	out := make([]bettertest.Pipeline, 0, len(b.pipelines))
	for _, p := range b.pipelines {
		runs, err := b.store.storedRuns(r.Context(), p.Name, 1)
		if err != nil {
			b.api().Error(w, r, fmt.Errorf("read the last run of %s: %w", p.Name, err))
			return
		}
		if len(runs) > 0 {
			last := b.current(runs[0])
			p.LastRun = &last
		}
		out = append(out, p)
	}
	httpapi.JSON(w, http.StatusOK, out)
}

// current replaces a stored run by its live state while it is active.
func (b *Boss) current(r bettertest.Run) bettertest.Run {
	if live, ok := b.snapshot().runs[r.ID]; ok {
		return summary(live)
	}
	return r
}

func (b *Boss) handleTrigger(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	var req bettertest.TriggerRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4096))
	if err != nil {
		httpapi.Fail(w, httpapi.TooLarge, "the body is too large: send at most {\"trigger\": \"...\"}")
		return
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			httpapi.Fail(w, httpapi.Invalid, fmt.Sprintf("the body is not a trigger request (%v): send nothing, or {\"trigger\": \"api\"}", err))
			return
		}
	}
	switch req.Trigger {
	case "":
		req.Trigger = "api"
	case "api", "ui", "cli":
	default:
		httpapi.Fail(w, httpapi.Invalid, fmt.Sprintf("trigger %q is not one of api, ui, cli", req.Trigger))
		return
	}
	run, err := b.trigger(name, req.Trigger)
	if errors.Is(err, errNoPipeline) {
		b.writeNoPipeline(w, name)
		return
	}
	if err != nil {
		b.api().Error(w, r, fmt.Errorf("start a run of %s: %w", name, err))
		return
	}
	httpapi.JSON(w, http.StatusCreated, run)
}

// writeNoPipeline answers 404 for a pipeline this boss does not have, naming those it has.
func (b *Boss) writeNoPipeline(w http.ResponseWriter, name string) {
	names := make([]string, len(b.pipelines))
	for i, p := range b.pipelines {
		names[i] = p.Name
	}
	httpapi.Fail(w, httpapi.NotFound, fmt.Sprintf("no pipeline %q: the pipelines are %s", name, strings.Join(names, ", ")))
}

func (b *Boss) handleRuns(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	pipeline := q.Get("pipeline")
	if _, ok := b.pipeline(pipeline); pipeline != "" && !ok {
		b.writeNoPipeline(w, pipeline)
		return
	}
	limit := 50
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			httpapi.Fail(w, httpapi.Invalid, fmt.Sprintf("limit %q must be a number from 1 to 1000", s))
			return
		}
		limit = n
	}
	runs, err := b.store.storedRuns(r.Context(), pipeline, limit)
	if err != nil {
		b.api().Error(w, r, fmt.Errorf("read the runs: %w", err))
		return
	}
	for i := range runs {
		runs[i] = b.current(runs[i])
	}
	httpapi.JSON(w, http.StatusOK, runs)
}

// pathParam is a URL parameter, unescaped. chi matches the escaped path only
// when it is not in Go's default escaping (a task named "a/b" is "a%2Fb").
func pathParam(r *http.Request, name string) string {
	v := chi.URLParam(r, name)
	if r.URL.RawPath != "" {
		if u, err := url.PathUnescape(v); err == nil {
			return u
		}
	}
	return v
}

// runID reads the {id} URL parameter, answering 400 when it is not one.
func runID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	s := chi.URLParam(r, "id")
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 1 {
		httpapi.Fail(w, httpapi.Invalid, fmt.Sprintf("run id %q is not a run number", s))
		return 0, false
	}
	return id, true
}

// writeRunError answers a failed lookup of run id: 404 when there is no
// such run, an internal error when the history could not be read.
func (b *Boss) writeRunError(w http.ResponseWriter, r *http.Request, id int64, err error) {
	if errors.Is(err, errNoRun) {
		httpapi.Fail(w, httpapi.NotFound, fmt.Sprintf("no run %d", id))
		return
	}
	b.api().Error(w, r, fmt.Errorf("read run %d: %w", id, err))
}

// runByID returns a run with its stages: live while active, else stored.
func (b *Boss) runByID(ctx context.Context, id int64) (bettertest.Run, error) {
	if live, ok := b.snapshot().runs[id]; ok {
		return live, nil // a snapshot's runs are never changed: no copy needed (their counts are summed)
	}
	return b.store.storedRun(ctx, id)
}

func cloneStages(in []bettertest.Stage) []bettertest.Stage {
	out := make([]bettertest.Stage, len(in))
	for i, st := range in {
		out[i] = st
		out[i].Tasks = append([]bettertest.Task{}, st.Tasks...)
	}
	return out
}

func (b *Boss) handleRun(w http.ResponseWriter, r *http.Request) {
	id, ok := runID(w, r)
	if !ok {
		return
	}
	run, err := b.runByID(r.Context(), id)
	if err != nil {
		b.writeRunError(w, r, id, err)
		return
	}
	httpapi.JSON(w, http.StatusOK, run)
}

func (b *Boss) handleCancel(w http.ResponseWriter, r *http.Request) {
	b.runAction(w, r, errNotActive, func(id int64) (bettertest.Run, error) { return b.cancel(id) },
		"run %d has already ended (%s): there is nothing to cancel")
}

// handleApprove lets a pull request from a fork run.
func (b *Boss) handleApprove(w http.ResponseWriter, r *http.Request) {
	b.runAction(w, r, errNotAwaiting, func(id int64) (bettertest.Run, error) { return b.approve(id, principalOf(r).label()) },
		"run %d is %s, not awaiting approval: only a pull request from a fork waits for one")
}

// runAction does act to the run the path names and answers 202 with it; a
// run act cannot apply to (notFor) gets 409 with conflict, formatted with
// the run's id and stored status.
func (b *Boss) runAction(w http.ResponseWriter, r *http.Request, notFor error, act func(int64) (bettertest.Run, error), conflict string) {
	id, ok := runID(w, r)
	if !ok {
		return
	}
	run, err := act(id)
	if errors.Is(err, notFor) {
		stored, err := b.store.run(r.Context(), id)
		if err != nil {
			b.writeRunError(w, r, id, err)
			return
		}
		httpapi.Fail(w, httpapi.Conflict, fmt.Sprintf(conflict, id, stored.Status))
		return
	}
	httpapi.JSON(w, http.StatusAccepted, run)
}

// serveEnded streams events of something that has ended: nothing follows them.
func (b *Boss) serveEnded(w http.ResponseWriter, r *http.Request, first []hub.Event) {
	b.serve(w, r, hub.Events(first...), nil, nil)
}

func taskEnd(id int64, t bettertest.Task) hub.Event {
	return withRun(hub.New(bettertest.BossEventTask, bettertest.TaskEvent{RunID: id, Task: t}), id, t.Name)
}

// isTaskEnd says whether an event of a task's log stream is its last.
func isTaskEnd(ev hub.Event) bool {
	t, ok := ev.Value().(bettertest.TaskEvent)
	return ok && ev.Name == bettertest.BossEventTask && t.Status != bettertest.StatusRunning
}

func (b *Boss) handleWorkers(w http.ResponseWriter, r *http.Request) {
	httpapi.JSON(w, http.StatusOK, b.workerInfos())
}

// handleEvents streams every change as it happens, after a snapshot of the
// workers and of the runs that are queued or running. With ?run=ID it
// streams that run only, and ends when the run does.
func (b *Boss) handleEvents(w http.ResponseWriter, r *http.Request) {
	var only int64
	if s := r.URL.Query().Get("run"); s != "" {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil || id < 1 {
			httpapi.Fail(w, httpapi.Invalid, fmt.Sprintf("run %q is not a run number", s))
			return
		}
		only = id
	}
	var first []hub.Event
	var filter func(hub.Event) bool
	var last func(hub.Event) bool
	if only != 0 {
		filter = func(ev hub.Event) bool { return ev.Run == only }
		last = isRunEnd
	}
	var sub *hub.Sub
	// One command: the snapshot and the first event after it are adjacent.
	b.do(func(e *engine) {
		e.flush()
		if only == 0 {
			for _, wk := range e.workers {
				first = append(first, hub.New(bettertest.BossEventWorker, wk.info))
			}
			for _, a := range e.sortedActive() {
				first = append(first, runEvents(a)...)
			}
		} else if a, ok := e.active[only]; ok {
			first = runEvents(a)
		} else {
			return
		}
		sub = e.events.Subscribe(nil, filter)
	})
	if sub == nil { // the run has ended
		run, err := b.runByID(r.Context(), only)
		if err != nil {
			b.writeRunError(w, r, only, err)
			return
		}
		b.serveEnded(w, r, []hub.Event{hub.New(bettertest.BossEventRun, summary(run))})
		return
	}
	b.serve(w, r, hub.Events(first...), sub, last)
}

// runEvents describe an active run as it stands: the run, its stages and
// its tasks (output is in the task logs).
func runEvents(a *activeRun) []hub.Event {
	evs := []hub.Event{hub.New(bettertest.BossEventRun, summary(a.run))}
	for _, st := range a.run.Stages {
		s := st
		s.Tasks = nil
		evs = append(evs, hub.New(bettertest.BossEventStage, bettertest.StageEvent{RunID: a.run.ID, Stage: s}))
		for _, t := range st.Tasks {
			evs = append(evs, hub.New(bettertest.BossEventTask, bettertest.TaskEvent{RunID: a.run.ID, Task: t}))
		}
	}
	return evs
}

func isRunEnd(ev hub.Event) bool {
	r, ok := ev.Value().(bettertest.Run)
	return ok && ev.Name == bettertest.BossEventRun && r.Status != bettertest.StatusQueued && r.Status != bettertest.StatusRunning
}

// serve streams events until the client leaves or the boss stops.
func (b *Boss) serve(w http.ResponseWriter, r *http.Request, first iter.Seq2[hub.Event, error], sub *hub.Sub, last func(hub.Event) bool) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(b.stopping, cancel)()
	b.events.Serve(ctx, w, first, sub, last)
}
