package boss

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/internal/httpapi"
	"github.com/bettertest/bettertest/internal/hub"
	"github.com/bettertest/bettertest/internal/sse"
	"github.com/bettertest/bettertest/ui"
)

// uiRoutes adds the web UI: every page is rendered whole on the server, and
// each tab then holds one SSE stream (/ui/events) on which its session sends
// the fragments that change, while keys and clicks come back as POSTs.
func (b *Boss) uiRoutes(r chi.Router) {
	r.Get("/", b.handlePage)
	r.Get("/workers", b.handlePage)
	r.Get("/flaky", b.handlePage)
	r.Get("/runs/{id}", b.handlePage)
	r.Get("/runs/{id}/tasks/{task}", b.handlePage)
	r.Get("/runs/{id}/tasks/{task}/raw", b.handleRaw)
	r.Get("/runs/{id}/raw", b.handleRaw) // the pipedef's own output
	r.Get("/ui/app.js", assetHandler("app.js", "text/javascript; charset=utf-8"))
	r.Get("/ui/app.css", assetHandler("app.css", "text/css; charset=utf-8"))
	r.Get("/ui/events", b.handleUIEvents)
	r.Post("/ui/sessions/{id}", b.handleUIMsg)
}

// assetHandler serves an embedded file with an ETag, so a browser asks again
// on each page (no-cache) but gets 304 while the file is unchanged.
func assetHandler(name, contentType string) http.HandlerFunc {
	data, err := ui.Assets.ReadFile("assets/" + name)
	if err != nil {
		panic(err) // embedded at build time
	}
	sum := sha256.Sum256(data)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("ETag", etag)
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
	}
}

// handlePage renders a page whole: readable with scripts off, and the
// script's first paint.
func (b *Boss) handlePage(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath() // the form of the Model's paths and the browser's location
	loaded := b.load(r.Context(), path)
	m := ui.Update(ui.Model{Path: path, Workers: b.workerInfos(), User: principalOf(r).Name}, loaded)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if loaded.NotFound != "" {
		w.WriteHeader(http.StatusNotFound)
	}
	_, _ = io.WriteString(w, ui.View(m).HTML()) // not copied to a []byte first: a page can be a megabyte
}

// workerInfos are the workers as of the engine's last snapshot; the
// slice is shared: never change it.
func (b *Boss) workerInfos() []bettertest.WorkerInfo {
	return b.snapshot().workers
}

// load gathers what the page at path (escaped, as in a URL) shows. A path
// that names nothing gives the pipelines page with a notice saying so.
func (b *Boss) load(ctx context.Context, path string) ui.Loaded {
	l := ui.Loaded{Path: path}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case path == "/":
		l.Page = ui.PagePipelines
	case path == "/workers":
		l.Page = ui.PageWorkers
	case path == "/flaky":
		flaky, err := b.flaky(ctx, "")
		if err != nil {
			return b.notFound(ctx, path, fmt.Sprintf("the flaky tests could not be read: %v", err))
		}
		l.Page, l.Flaky = ui.PageFlaky, flaky
	case len(parts) == 2 && parts[0] == "runs", len(parts) == 4 && parts[0] == "runs" && parts[2] == "tasks":
		id, err := strconv.ParseInt(parts[1], 10, 64)
		if err != nil {
			return b.notFound(ctx, path, fmt.Sprintf("%s is not a page: run numbers are numbers", path))
		}
		run, err := b.runByID(ctx, id)
		if errors.Is(err, errNoRun) {
			return b.notFound(ctx, path, fmt.Sprintf("there is no run #%d", id))
		}
		if err != nil {
			return b.notFound(ctx, path, fmt.Sprintf("run #%d could not be read: %v", id, err))
		}
		flaky, err := b.flaky(ctx, run.Pipeline)
		if err != nil {
			return b.notFound(ctx, path, fmt.Sprintf("the flaky tests of %s could not be read: %v", run.Pipeline, err))
		}
		l.Page, l.Run, l.Flaky = ui.PageRun, &run, flaky
		task := "" // the run page shows the pipedef's own output, and the failed cases of all tasks
		if len(parts) == 4 {
			task, _ = url.PathUnescape(parts[3])
			l.Page, l.Task = ui.PageTask, task
		}
		log, err := b.taskLog(ctx, id, task)
		if err != nil {
			return b.notFound(ctx, path, err.Error())
		}
		read := func() ([]bettertest.TestResult, error) { return b.testResults(ctx, id, task) }
		if task == "" { // the run page: what failed
			read = func() ([]bettertest.TestResult, error) { return b.failingResults(ctx, id) }
		}
		tests, err := read()
		if err != nil {
			return b.notFound(ctx, path, fmt.Sprintf("the tests of run #%d could not be read: %v", id, err))
		}
		l.Log, l.Tests = log, tests
	default:
		return b.notFound(ctx, path, fmt.Sprintf("%s is not a page of this boss", path))
	}
	if l.Page == ui.PagePipelines {
		l.Pipelines = b.pipelineStrips(ctx)
	}
	return l
}

func (b *Boss) notFound(ctx context.Context, path, why string) ui.Loaded {
	return ui.Loaded{Path: path, Page: ui.PagePipelines, Pipelines: b.pipelineStrips(ctx), NotFound: why}
}

// pipelineStrips is every pipeline with its recent runs.
func (b *Boss) pipelineStrips(ctx context.Context) []ui.Pipeline {
	out := make([]ui.Pipeline, 0, len(b.pipelines))
	for _, p := range b.pipelines {
		runs, err := b.store.storedRuns(ctx, p.Name, ui.StripRuns)
		if err != nil {
			b.log.Error("history", "err", err)
		}
		for i := range runs {
			runs[i] = b.current(runs[i])
		}
		out = append(out, ui.Pipeline{Name: p.Name, Runs: runs})
	}
	return out
}

// taskLog is the log a task page shows (a run page: the pipedef's own,
// task ""): the tail of its output, read from the history as it goes, so
// the page never holds all of it.
func (b *Boss) taskLog(ctx context.Context, id int64, task string) (ui.Log, error) {
	out, err := b.openOutput(ctx, id, task, false)
	if err != nil {
		return ui.Log{}, err
	}
	var log ui.Log
	for c, err := range out.chunks {
		if err != nil {
			return ui.Log{}, fmt.Errorf("the output of run #%d, task %q could not be read: %w", id, task, err)
		}
		log.Append(c.Text)
	}
	log.ShowTail()
	return log, nil
}

// uiSession is one tab: its Model, owned by the goroutine serving its stream.
type uiSession struct {
	sub *hub.Sub  // the boss's events, and the tab's own keys and clicks (hub.Send)
	who principal // the tab's user: only they may send it keys and clicks
}

type uiSessions struct {
	mu sync.Mutex
	m  map[string]*uiSession
}

func (s *uiSessions) add(sess *uiSession) string {
	var id [12]byte
	_, _ = rand.Read(id[:])
	key := hex.EncodeToString(id[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*uiSession{}
	}
	s.m[key] = sess
	return key
}

func (s *uiSessions) get(id string) *uiSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[id]
}

func (s *uiSessions) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// maxVersion is the longest page version a tab's stream takes: far more
// than a page's regions need.
const maxVersion = 4096

// handleUIEvents serves one tab: it makes the tab's session, tells the
// browser its id, brings the page up to date, and from then on sends what
// changes, as boss events and the tab's own keys and clicks arrive.
func (b *Boss) handleUIEvents(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Query().Get("path")
	if !strings.HasPrefix(path, "/") {
		httpapi.Fail(w, httpapi.Invalid, `path must be the page's path, e.g. "/"`)
		return
	}
	// Subscribed before anything is read: no change is missed. One seen
	// twice is harmless: every Msg replaces state, and output carries its
	// sequence number.
	var logOf atomic.Pointer[logOf] // nil: every task's
	sub := b.events.Subscribe(nil, func(ev hub.Event) bool {
		l := logOf.Load()
		return ev.Name != bettertest.BossEventOutput || l == nil || (ev.Run == l.run && ev.Task == l.task)
	})
	defer b.events.Unsubscribe(sub)
	who := principalOf(r)
	id := b.uiSessions.add(&uiSession{sub: sub, who: who})
	defer b.uiSessions.remove(id)

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(b.stopping, cancel)()
	sw := sse.NewWriter(w)

	// The page may have changed since the browser got it, so the first
	// fragments bring it up to date: the regions that changed since the
	// version the browser has, or, without one, all. From then on a render
	// renders only the regions whose data changed.
	version := r.URL.Query().Get("version")
	if len(version) > maxVersion {
		version = ""
	}
	m := ui.Update(ui.Model{Path: path, Workers: b.workerInfos(), User: who.Name}, b.load(ctx, path))
	var views ui.Views
	logOf.Store(showing(m))
	shown := views.View(m)
	sw.JSON("session", id)
	sw.JSON("fragments", ui.DiffFrom(version, shown))
	// Everything already waiting is applied before one render.
	var pending []ui.Msg
	sse.Follow(ctx, sw, sub.C, func(ev hub.Event) bool {
		pending = append(pending, uiMsg(ev))
		return false
	}, func() {
		var urls []string
		for len(pending) > 0 {
			msg := pending[0]
			pending = pending[1:]
			if msg == nil {
				continue
			}
			m = ui.Update(m, msg)
			for _, e := range m.Effects {
				if e.Kind == ui.Trigger || e.Kind == ui.Cancel || e.Kind == ui.Quarantine || e.Kind == ui.Approve {
					if !who.may(RoleOperator) {
						pending = append(pending, ui.Notice{Text: who.label() + " is a viewer: only an operator may start, cancel, approve or quarantine; ask an admin to make you one"})
						continue
					}
				}
				switch e.Kind {
				case ui.Load:
					logOf.Store(nil) // before the load reads the log: no chunk after it is missed
					pending = append(pending, b.load(ctx, e.Path))
				case ui.PushURL:
					urls = append(urls, e.Path)
				case ui.Trigger:
					if run, err := b.trigger(e.Pipeline, "ui"); err != nil {
						pending = append(pending, ui.Notice{Text: fmt.Sprintf("could not start %s: %s", e.Pipeline, b.tell(r, err, errNoPipeline))})
					} else {
						pending = append(pending, ui.Triggered{Run: run})
					}
				case ui.Cancel:
					if _, err := b.cancel(e.RunID); err != nil {
						pending = append(pending, ui.Notice{Text: fmt.Sprintf("run #%d has already ended: there is nothing to cancel", e.RunID)})
					}
				case ui.Approve:
					if _, err := b.approve(e.RunID, who.label()); err != nil {
						pending = append(pending, ui.Notice{Text: fmt.Sprintf("run #%d does not await approval any more", e.RunID)})
					}
				case ui.Quarantine:
					// Its flaky event brings the change to every tab.
					if err := b.quarantine(e.Pipeline, e.Test, e.On); err != nil {
						pending = append(pending, ui.Notice{Text: fmt.Sprintf("%s/%s: %s", e.Pipeline, e.Test, b.tell(r, err, errNoPipeline, errFlagQuarantine, errBadTest))})
					}
				}
			}
			m.Effects = nil
		}
		logOf.Store(showing(m))
		page := views.View(m)
		if frags := ui.Diff(shown, page); len(frags) > 0 {
			sw.JSON("fragments", frags)
		}
		for _, u := range urls {
			sw.JSON("url", u)
		}
		shown = page
	})
}

// logOf names the one task whose output a tab shows.
type logOf struct {
	run  int64
	task string
}

// showing is the log m shows: a tab is sent the output of that task alone
// (a run page: the pipedef's own), so a tab costs nothing when output it
// does not show flows.
func showing(m ui.Model) *logOf {
	if (m.Page != ui.PageTask && m.Page != ui.PageRun) || m.Run == nil {
		return &logOf{} // no run is 0
	}
	return &logOf{run: m.Run.ID, task: m.Task} // a run page's Task is "": the pipedef's own output
}

// tell is what a tab is told of err: the error itself when it is one of
// those the user can act on (theirs), else an internal error's id.
func (b *Boss) tell(r *http.Request, err error, theirs ...error) string {
	for _, t := range theirs {
		if errors.Is(err, t) {
			return err.Error()
		}
	}
	_, msg := b.api().Answer(r, err)
	return msg
}

// uiMsg turns a boss event, or a tab's own key or click, into the Msg it
// is for the UI.
func uiMsg(ev hub.Event) ui.Msg {
	switch v := ev.Value().(type) {
	case bettertest.Run:
		return ui.RunChanged{Run: v}
	case bettertest.StageEvent:
		return ui.StageChanged{Event: v}
	case bettertest.TaskEvent:
		return ui.TaskChanged{Event: v}
	case bettertest.OutputChunkEvent:
		return ui.Output{Event: v}
	case bettertest.WorkerInfo:
		return ui.WorkerChanged{Worker: v}
	case bettertest.TestResultsEvent:
		return ui.TestChanged{Event: v}
	case bettertest.FlakyEvent:
		return ui.FlakyChanged{Pipeline: v.Pipeline}
	case ui.Msg:
		return v
	}
	return nil
}

// uiInput is what the browser sends: a key, a link followed, a move in its
// history, or a button clicked.
type uiInput struct {
	Key      string `json:"key"`
	Nav      string `json:"nav"`
	Back     string `json:"back"`
	Action   string `json:"action"`
	Pipeline string `json:"pipeline"`
	Run      int64  `json:"run"`
	Test     string `json:"test"`
	On       bool   `json:"on"`
}

func (b *Boss) handleUIMsg(w http.ResponseWriter, r *http.Request) {
	sess := b.uiSessions.get(chi.URLParam(r, "id"))
	if sess != nil && sess.who != principalOf(r) {
		httpapi.Fail(w, httpapi.Forbidden, "this tab belongs to someone else: reload the page")
		return
	}
	if sess == nil {
		httpapi.Fail(w, httpapi.NotFound, "no such session: reload the page")
		return
	}
	var in uiInput
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		httpapi.Fail(w, httpapi.Invalid, fmt.Sprintf("not a UI message (%v): send {\"key\": \"j\"}, {\"nav\": \"/path\"} or {\"action\": \"run\", \"pipeline\": \"NAME\"}", err))
		return
	}
	var msg ui.Msg
	switch {
	case in.Key != "":
		msg = ui.Key{Key: in.Key}
	case strings.HasPrefix(in.Nav, "/"):
		msg = ui.Navigate{Path: in.Nav}
	case strings.HasPrefix(in.Back, "/"):
		msg = ui.Navigate{Path: in.Back}
	case in.Action == "run" || in.Action == "cancel" || in.Action == "approve" || in.Action == "more" || in.Action == "help" || in.Action == "quarantine":
		msg = ui.Action{Name: in.Action, Pipeline: in.Pipeline, RunID: in.Run, Test: in.Test, On: in.On}
	default:
		httpapi.Fail(w, httpapi.Invalid, "the message names no key, path or action")
		return
	}
	// A tab too far behind to take it was dropped: its browser reconnects.
	if !b.events.Send(sess.sub, hub.New("input", msg)) {
		httpapi.Fail(w, httpapi.NotFound, "no such session: reload the page")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
