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
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/internal/hub"
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

func (b *Boss) workerInfos() []bettertest.WorkerInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]bettertest.WorkerInfo, len(b.workers))
	for i, w := range b.workers {
		out[i] = w.info
	}
	return out
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
		if len(parts) == 4 {
			task, _ := url.PathUnescape(parts[3])
			chunks, err := b.taskOutput(ctx, id, task)
			if err != nil {
				return b.notFound(ctx, path, err.Error())
			}
			tests, err := b.testResults(ctx, id, task)
			if err != nil {
				return b.notFound(ctx, path, fmt.Sprintf("the tests of run #%d could not be read: %v", id, err))
			}
			l.Page, l.Task, l.Log, l.Tests = ui.PageTask, task, ui.NewLog(chunks), tests
		}
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
		runs, err := b.store.runs(ctx, p.Name, ui.StripRuns)
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

// taskOutput is a task's output so far: live while its run is active.
func (b *Boss) taskOutput(ctx context.Context, id int64, task string) ([]bettertest.Chunk, error) {
	b.mu.Lock()
	if a, ok := b.active[id]; ok {
		defer b.mu.Unlock()
		if t, _ := a.task(task); t == nil {
			return nil, fmt.Errorf("run #%d has no task %q", id, task)
		}
		return append([]bettertest.Chunk{}, a.output[task]...), nil
	}
	b.mu.Unlock()
	run, err := b.store.run(ctx, id)
	if err != nil {
		return nil, err
	}
	for _, st := range run.Stages {
		for _, t := range st.Tasks {
			if t.Name == task {
				return b.store.output(ctx, id, task)
			}
		}
	}
	return nil, fmt.Errorf("run #%d has no task %q", id, task)
}

// handleRaw is a task's whole output as plain text.
func (b *Boss) handleRaw(w http.ResponseWriter, r *http.Request) {
	id, ok := runID(w, r)
	if !ok {
		return
	}
	chunks, err := b.taskOutput(r.Context(), id, pathParam(r, "task"))
	if err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	for _, c := range chunks {
		_, _ = w.Write([]byte(c.Text))
	}
}

// uiSession is one tab: its Model, owned by the goroutine serving its stream.
type uiSession struct {
	msgs chan ui.Msg
	who  principal // the tab's user: only they may send it keys and clicks
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

// handleUIEvents serves one tab: it makes the tab's session, tells the
// browser its id, brings the page up to date, and from then on sends what
// changes, as boss events and the tab's own keys and clicks arrive.
func (b *Boss) handleUIEvents(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Query().Get("path")
	if !strings.HasPrefix(path, "/") {
		writeError(w, http.StatusBadRequest, `path must be the page's path, e.g. "/"`)
		return
	}
	// Subscribed before anything is read: no change is missed. One seen
	// twice is harmless: every Msg replaces state, and output carries its
	// sequence number.
	sub := b.events.Subscribe(nil, nil)
	defer b.events.Unsubscribe(sub)
	who := principalOf(r)
	sess := &uiSession{msgs: make(chan ui.Msg, 64), who: who}
	id := b.uiSessions.add(sess)
	defer b.uiSessions.remove(id)

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(b.stopping, cancel)()
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(events ...hub.Event) bool {
		var buf []byte
		for _, ev := range events {
			buf = hub.AppendEvent(buf, ev)
		}
		_, err := w.Write(buf)
		return err == nil && rc.Flush() == nil
	}

	// The page may have changed since the browser got it, so the first
	// fragments bring every region of it up to date. From then on a render
	// renders only the regions whose data changed.
	m := ui.Update(ui.Model{Path: path, Workers: b.workerInfos(), User: who.Name}, b.load(ctx, path))
	var views ui.Views
	shown := views.View(m)
	if !send(hub.New("session", id), hub.New("fragments", ui.Diff(ui.Page{}, shown))) {
		return
	}
	keepalive := time.NewTicker(hub.Keepalive)
	defer keepalive.Stop()
	for {
		var pending []ui.Msg
		select {
		case <-ctx.Done():
			return
		case <-keepalive.C: // an idle tab's stream stays open through proxies
			if _, err := w.Write([]byte(": keepalive\n\n")); err != nil || rc.Flush() != nil {
				return
			}
			continue
		case ev, ok := <-sub.C:
			if !ok {
				return // too far behind: the browser reconnects and starts afresh
			}
			pending = append(pending, uiMsg(ev))
		case msg := <-sess.msgs:
			pending = append(pending, msg)
		}
		// Everything already waiting is applied before one render.
		for more := true; more; {
			select {
			case ev, ok := <-sub.C:
				if !ok {
					return
				}
				pending = append(pending, uiMsg(ev))
			case msg := <-sess.msgs:
				pending = append(pending, msg)
			default:
				more = false
			}
		}
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
					pending = append(pending, b.load(ctx, e.Path))
				case ui.PushURL:
					urls = append(urls, e.Path)
				case ui.Trigger:
					if run, err := b.trigger(e.Pipeline, "ui"); err != nil {
						pending = append(pending, ui.Notice{Text: fmt.Sprintf("could not start %s: %v", e.Pipeline, err)})
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
						pending = append(pending, ui.Notice{Text: fmt.Sprintf("%s/%s: %v", e.Pipeline, e.Test, err)})
					}
				}
			}
			m.Effects = nil
		}
		page := views.View(m)
		var out []hub.Event
		if frags := ui.Diff(shown, page); len(frags) > 0 {
			out = append(out, hub.New("fragments", frags))
		}
		for _, u := range urls {
			out = append(out, hub.New("url", u))
		}
		shown = page
		if len(out) > 0 && !send(out...) {
			return
		}
	}
}

// uiMsg turns a boss event into the Msg it is for the UI.
func uiMsg(ev hub.Event) ui.Msg {
	switch ev.Name {
	case bettertest.BossEventRun:
		return decodeMsg(ev.Data, func(r bettertest.Run) ui.Msg { return ui.RunChanged{Run: r} })
	case bettertest.BossEventStage:
		return decodeMsg(ev.Data, func(st bettertest.StageEvent) ui.Msg { return ui.StageChanged{Event: st} })
	case bettertest.BossEventTask:
		return decodeMsg(ev.Data, func(t bettertest.TaskEvent) ui.Msg { return ui.TaskChanged{Event: t} })
	case bettertest.BossEventOutput:
		return decodeMsg(ev.Data, func(o bettertest.OutputChunkEvent) ui.Msg { return ui.Output{Event: o} })
	case bettertest.BossEventWorker:
		return decodeMsg(ev.Data, func(w bettertest.WorkerInfo) ui.Msg { return ui.WorkerChanged{Worker: w} })
	case bettertest.BossEventTests:
		return decodeMsg(ev.Data, func(t bettertest.TestResultsEvent) ui.Msg { return ui.TestChanged{Event: t} })
	case bettertest.BossEventFlaky:
		return decodeMsg(ev.Data, func(f bettertest.FlakyEvent) ui.Msg { return ui.FlakyChanged{Pipeline: f.Pipeline} })
	}
	return nil
}

// decodeMsg decodes an event's data and makes its Msg; nil when it is malformed.
func decodeMsg[T any](data []byte, msg func(T) ui.Msg) ui.Msg {
	var v T
	if json.Unmarshal(data, &v) != nil {
		return nil
	}
	return msg(v)
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
		writeError(w, http.StatusForbidden, "this tab belongs to someone else: reload the page")
		return
	}
	if sess == nil {
		writeError(w, http.StatusNotFound, "no such session: reload the page")
		return
	}
	var in uiInput
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("not a UI message (%v): send {\"key\": \"j\"}, {\"nav\": \"/path\"} or {\"action\": \"run\", \"pipeline\": \"NAME\"}", err))
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
		writeError(w, http.StatusBadRequest, "the message names no key, path or action")
		return
	}
	select {
	case sess.msgs <- msg:
		w.WriteHeader(http.StatusNoContent)
	case <-r.Context().Done():
	}
}
