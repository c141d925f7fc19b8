package agent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/internal/httpapi"
	"github.com/bettertest/bettertest/internal/hub"
)

// routes is the worker's HTTP API. Every route, including unknown ones,
// is behind the token.
func (a *Agent) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(requireToken(a.token))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		httpapi.Fail(w, httpapi.NotFound, fmt.Sprintf("no such endpoint %s: the worker serves POST /run, POST /images, GET /health, GET /events, GET, HEAD and PUT /artifacts/SHA256 and DELETE /caches/NAME", r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		httpapi.Fail(w, httpapi.MethodNotAllowed, fmt.Sprintf("%s is not allowed on %s: use POST /run, POST /images, GET /health, GET /events, GET, HEAD or PUT /artifacts/SHA256, or DELETE /caches/NAME", r.Method, r.URL.Path))
	})
	r.Post("/run", a.handleRun)
	r.Get("/health", a.handleHealth)
	r.Get("/events", a.handleEvents)
	r.Get("/artifacts/{sha256}", a.handleGetArtifact)
	r.Head("/artifacts/{sha256}", a.handleGetArtifact)
	r.Put("/artifacts/{sha256}", a.handlePutArtifact)
	r.Post("/images", a.handleImages)
	r.Delete("/caches/{name}", a.handleDeleteCache)
	return r
}

// requireToken answers 401 unless the request carries the bearer token. The
// comparison is of digests, so it takes the same time whatever the length.
func requireToken(token []byte) func(http.Handler) http.Handler {
	want := sha256.Sum256(token)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			sum := sha256.Sum256([]byte(got))
			if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="bettertest"`)
				httpapi.Fail(w, httpapi.Unauthenticated, "missing or wrong token: send the header Authorization: Bearer TOKEN, with TOKEN from the worker's token file")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// writeRequestError answers a request body that could not be decoded.
func writeRequestError(w http.ResponseWriter, err error) {
	kind := httpapi.Invalid
	if tooBig := (*http.MaxBytesError)(nil); errors.As(err, &tooBig) {
		kind = httpapi.TooLarge
	}
	httpapi.Fail(w, kind, err.Error())
}

func (a *Agent) handleRun(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	req, err := DecodeRunRequest(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		writeRequestError(w, err)
		return
	}
	if _, err := a.runner.limits.narrow(req.Limits); err != nil {
		httpapi.Fail(w, httpapi.Invalid, err.Error())
		return
	}
	if req.ReachHost && !a.runner.allowReachHost {
		httpapi.Fail(w, httpapi.Invalid, `"reach_host" asks to reach the worker's host, which this worker does not allow: runs are kept from it; start the worker with --allow-reach-host if its runs may be trusted with it`)
		return
	}
	// The inputs stay on the worker until the run ends.
	releaseInputs, missing := a.store.pin(inputIDs(req))
	if missing != "" {
		where := ""
		for p, id := range req.Inputs {
			if id == "sha256:"+missing {
				where = p
			}
		}
		httpapi.Fail(w, httpapi.Unprocessable, fmt.Sprintf("input %s: artifact sha256:%s is not on this worker: upload it first (PUT /artifacts/%s)", short(where), missing, missing))
		return
	}
	defer releaseInputs()

	// The run ends when the client leaves, when it times out, or when the worker stops.
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	defer context.AfterFunc(a.stopping, func() { cancel(errShutdown) })()

	id := newRunID()
	a.events.Publish(hub.New(bettertest.EventRunStart, bettertest.RunStartEvent{ID: id, Name: req.Name, Image: req.Image}))
	ev := newEventStream(w)
	out := a.serveRun(ctx, id, req, ev)
	for _, release := range out.release {
		defer release()
	}
	out.finish(ev)
	a.events.Publish(hub.New(bettertest.EventRunEnd, bettertest.RunEndEvent{ID: id, Outcome: out.kind, Exit: out.code}))
	a.log.Info("run", "id", id, "name", req.Name, "image", req.Image, "exit", out.code, "outcome", out.kind,
		"duration", time.Since(arrived).Round(time.Millisecond), "detail", out.detail)
}

// serveRun answers a build from the cache, or runs the command; a build that
// succeeds is remembered before its client hears the end of it, so the next
// identical request finds it.
func (a *Agent) serveRun(ctx context.Context, id string, req bettertest.RunRequest, ev *eventStream) outcome {
	imageID, err := a.runner.ensureImage(ctx, req.Image)
	if err != nil {
		return failBeforeStart(ctx, err)
	}
	var build buildInputs
	var key string
	if req.Cache {
		build = newBuildInputs(imageID, req)
		key = build.key()
		if out, ok := a.fromCache(key, ev); ok {
			return out
		}
		reason, err := a.cache.began(req.Name, build)
		if err != nil {
			a.log.Warn("build cache", "name", req.Name, "err", err)
		}
		ev.send(bettertest.EventUncached, bettertest.UncachedEvent{Key: key, Reason: reason})
	}
	release, err := a.slots.acquire(ctx, func(position int) {
		ev.send(bettertest.EventQueued, bettertest.QueuedEvent{Position: position})
	})
	if err != nil {
		return failBeforeStart(ctx, err)
	}
	defer release()
	out := a.runner.run(ctx, id, imageID, req, ev)
	if req.Cache && out.succeeded() {
		rec := buildRecord{RunID: id, DurationMS: out.duration.Milliseconds(), Outputs: out.artifacts}
		if err := a.cache.store(key, rec); err != nil {
			a.log.Warn("build cache", "name", req.Name, "err", err)
		} else if err := a.cache.succeeded(req.Name, build); err != nil {
			a.log.Warn("build cache", "name", req.Name, "err", err)
		}
	}
	return out
}

// fromCache answers a build whose key is in the cache with its stored
// outputs, if they are all still there.
func (a *Agent) fromCache(key string, ev *eventStream) (outcome, bool) {
	rec, err := a.cache.lookup(key)
	if err != nil {
		a.log.Warn("build cache", "key", key, "err", err)
	}
	if rec == nil {
		return outcome{}, false
	}
	ids := make([]string, len(rec.Outputs))
	for i, art := range rec.Outputs {
		ids[i], _ = parseID(art.ID)
	}
	release, missing := a.store.pin(ids)
	if missing != "" {
		if err := a.cache.forget(key); err != nil {
			a.log.Warn("build cache", "key", key, "err", err)
		}
		return outcome{}, false
	}
	ev.send(bettertest.EventCached, bettertest.CachedEvent{Key: key, RunID: rec.RunID, DurationMS: rec.DurationMS})
	for _, art := range rec.Outputs {
		ev.send(bettertest.EventArtifact, art)
	}
	return outcome{started: true, kind: "cached", artifacts: rec.Outputs, release: []func(){release}}, true
}

// inputIDs lists the digests of a run's inputs, each once.
func inputIDs(req bettertest.RunRequest) []string {
	ids := make([]string, 0, len(req.Inputs))
	for _, id := range req.Inputs {
		h, _ := parseID(id)
		if !slices.Contains(ids, h) {
			ids = append(ids, h)
		}
	}
	return ids
}

func (a *Agent) handleHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	h := bettertest.Health{Version: bettertest.Version, Running: a.slots.running(), Capacity: a.slots.capacity()}
	v, err := a.runner.docker.ServerVersion(ctx)
	if err != nil {
		h.Error = fmt.Sprintf("Docker does not answer (%v): check that the Docker engine runs", err)
		httpapi.JSON(w, http.StatusServiceUnavailable, h)
		return
	}
	h.Ready, h.Docker = true, v.Version
	httpapi.JSON(w, http.StatusOK, h)
}

// handleEvents streams the worker's state: first its health, then every
// change of load and every run's start and end, as they happen.
func (a *Agent) handleEvents(w http.ResponseWriter, r *http.Request) {
	var first []hub.Event
	sub := a.events.Subscribe(func() {
		first = append(first, hub.New(bettertest.EventHealth, bettertest.Health{Ready: true, Version: bettertest.Version,
			Docker: a.docker, Running: a.slots.running(), Capacity: a.slots.capacity()}))
	}, nil)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(a.stopping, cancel)() // a stopping worker ends the stream
	a.events.Serve(ctx, w, hub.Events(first...), sub, nil)
}

func newRunID() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b[:])
}
