package agent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/bettertest/bettertest"
)

// routes is the worker's HTTP API. Every route, including unknown ones,
// is behind the token.
func (a *Agent) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(requireToken(a.token))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint %s: the worker serves POST /run and GET /health", r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s: use POST /run or GET /health", r.Method, r.URL.Path))
	})
	r.Post("/run", a.handleRun)
	r.Get("/health", a.handleHealth)
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
				writeError(w, http.StatusUnauthorized, "missing or wrong token: send the header Authorization: Bearer TOKEN, with TOKEN from the worker's token file")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, bettertest.APIError{Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // a client that left cannot be told
}

func (a *Agent) handleRun(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	req, err := DecodeRunRequest(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		status := http.StatusBadRequest
		if tooBig := (*http.MaxBytesError)(nil); errors.As(err, &tooBig) {
			status = http.StatusRequestEntityTooLarge
		}
		writeError(w, status, err.Error())
		return
	}
	// The run ends when the client leaves, when it times out, or when the worker stops.
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	defer context.AfterFunc(a.stopping, func() { cancel(errShutdown) })()

	id := newRunID()
	ev := newEventStream(w)
	release, err := a.slots.acquire(ctx, func(position int) {
		ev.send(bettertest.EventQueued, bettertest.QueuedEvent{Position: position})
	})
	var out outcome
	if err != nil {
		out = a.runner.failBeforeStart(ctx, ev, err)
	} else {
		defer release()
		out = a.runner.run(ctx, id, req, ev)
	}
	a.log.Info("run", "id", id, "image", req.Image, "exit", out.code, "outcome", out.kind,
		"duration", time.Since(arrived).Round(time.Millisecond), "detail", out.detail)
}

func (a *Agent) handleHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	h := bettertest.Health{Version: bettertest.Version, Running: a.slots.running(), Capacity: a.slots.capacity()}
	v, err := a.runner.docker.ServerVersion(ctx)
	if err != nil {
		h.Error = fmt.Sprintf("Docker does not answer (%v): check that the Docker engine runs", err)
		writeJSON(w, http.StatusServiceUnavailable, h)
		return
	}
	h.Ready, h.Docker = true, v.Version
	writeJSON(w, http.StatusOK, h)
}

func newRunID() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b[:])
}
