package boss

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/internal/hub"
	"github.com/bettertest/bettertest/internal/sse"
)

// worker is one worker as the boss sees it. The engine owns it: only its
// commands touch it, except cfg.Name, which never changes.
type worker struct {
	cfg  WorkerConfig
	info bettertest.WorkerInfo
	// stop ends its event stream; set once it is watched.
	stop context.CancelFunc
	// leaving: its record was removed; it takes no new runs and is dropped
	// once those it has end. gone: dropped.
	leaving, gone bool
}

// load orders workers for a new run: the share of its capacity in use, by
// the boss's runs or by whatever the worker says runs on it.
func (w *worker) load() float64 {
	return float64(max(w.info.Assigned, w.info.Running)) / float64(w.info.Capacity)
}

func (e *engine) publishWorker(w *worker) {
	e.changed()
	e.emit(hub.New(bettertest.BossEventWorker, w.info))
}

// LoadWorkers reads the workers enrollment saved in dir: NAME.json with the
// name and URL, NAME.token beside it. A missing dir holds no workers.
func LoadWorkers(dir string) ([]WorkerConfig, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("--workers-dir %s: %w", dir, err)
	}
	var out []WorkerConfig
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		wc, err := readRecord(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, wc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// readRecord reads a worker record that enrollment saved, NAME.json, whose
// token is NAME.token beside it.
func readRecord(path string) (WorkerConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return WorkerConfig{}, fmt.Errorf("--workers-dir: %w", err)
	}
	var rec bettertest.WorkerRecord
	if err := json.Unmarshal(data, &rec); err != nil || rec.Name == "" || rec.URL == "" {
		return WorkerConfig{}, fmt.Errorf("%s is not a worker record (want {\"name\": ..., \"url\": ...}): enroll the worker again, or remove the file", path)
	}
	return WorkerConfig{Name: rec.Name, URL: rec.URL, TokenFile: strings.TrimSuffix(path, ".json") + ".token", Record: path}, nil
}

// Backoff bounds for reconnecting to a worker whose event stream broke.
const (
	minBackoff = 500 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// silence is how long a worker's event stream may say nothing (it sends a
// keepalive every hub.Keepalive) before the boss takes the worker for down.
const silence = 3 * hub.Keepalive

// watch holds a worker's event stream open for as long as the boss runs,
// reconnecting with backoff whenever it breaks.
func (b *Boss) watch(ctx context.Context, w *worker) {
	backoff := minBackoff
	for {
		connected, err := b.follow1(ctx, w)
		if ctx.Err() != nil {
			return
		}
		b.workerDown(w, err)
		if connected {
			backoff = minBackoff
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// follow1 follows one connection to the worker's events until it breaks.
// It reports whether the connection got as far as the worker's health.
func (b *Boss) follow1(ctx context.Context, w *worker) (connected bool, err error) {
	// A changed worker record updates cfg in place, and restarts this watch.
	var cfg WorkerConfig
	b.do(func(*engine) { cfg = w.cfg })
	token, err := bettertest.ReadTokenFile(cfg.TokenFile)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(cfg.URL, "/")+"/events", nil)
	if err != nil {
		return false, fmt.Errorf("the worker URL %s: %w", cfg.URL, err)
	}
	req.Header.Set("Authorization", "Bearer "+string(token))
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, fmt.Errorf("cannot reach it: %w", unwrapURL(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var apiErr bettertest.APIError
		_ = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&apiErr)
		if resp.StatusCode == http.StatusNotFound {
			return false, fmt.Errorf("it has no /events (HTTP 404): it runs an older bettertest; enroll it again to upgrade it")
		}
		return false, fmt.Errorf("it answered HTTP %d: %s", resp.StatusCode, apiErr.Error)
	}
	// Every read, keepalives included, proves the worker alive for a while.
	quiet := time.AfterFunc(silence, func() {
		cancel(fmt.Errorf("it sent nothing for %s", silence))
	})
	defer quiet.Stop()
	events := sse.NewReader(readFunc(func(p []byte) (int, error) {
		n, err := resp.Body.Read(p)
		quiet.Reset(silence)
		return n, err
	}))
	for {
		ev, err := events.Next()
		if err != nil {
			if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
				err = cause
			}
			if err == io.EOF {
				err = errors.New("it closed its event stream")
			} else if ctx.Err() == nil {
				err = fmt.Errorf("its event stream broke (%w)", err)
			}
			return connected, err
		}
		gone := false
		b.do(func(e *engine) {
			if gone = w.gone; gone {
				return
			}
			switch ev.Name {
			case bettertest.EventHealth:
				var h bettertest.Health
				if json.Unmarshal([]byte(ev.Data), &h) == nil {
					connected = true
					if w.info.Up != h.Ready || w.info.ChangedMS == 0 {
						w.info.ChangedMS = time.Now().UnixMilli()
					}
					w.info.Up, w.info.Error = h.Ready, h.Error
					w.info.Version, w.info.Docker, w.info.Running, w.info.Capacity = h.Version, h.Docker, h.Running, h.Capacity
					b.log.Info("worker up", "worker", cfg.Name, "url", cfg.URL, "capacity", h.Capacity)
				}
			case bettertest.EventLoad:
				var l bettertest.LoadEvent
				if json.Unmarshal([]byte(ev.Data), &l) == nil {
					w.info.Running, w.info.Capacity = l.Running, l.Capacity
				}
			}
			e.publishWorker(w)
			e.dispatch()
		})
		if gone {
			return connected, errors.New("its record was removed")
		}
	}
}

type readFunc func([]byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }

// workerDown marks a worker down and fails the runs it was running: their
// pipedefs talk to a worker the boss cannot see, and a run on a vanished
// host would otherwise hang.
func (b *Boss) workerDown(w *worker, err error) {
	b.do(func(e *engine) { e.workerDown(w, err) })
}

func (e *engine) workerDown(w *worker, err error) {
	if w.gone {
		return
	}
	wasUp := w.info.Up
	if wasUp || w.info.ChangedMS == 0 {
		w.info.ChangedMS = time.Now().UnixMilli()
	}
	w.info.Up, w.info.Error, w.info.Running = false, err.Error(), 0
	e.publishWorker(w)
	if wasUp {
		e.log.Warn("worker down", "worker", w.cfg.Name, "err", err)
	}
	for _, r := range e.active {
		if r.worker == w && r.cmd != nil {
			e.stop(r, bettertest.StatusFailed, fmt.Sprintf("worker %s went down during the run (%v): the run was stopped; run it again", w.cfg.Name, err))
		}
	}
}

// unwrapURL drops net/url's "Get \"URL\": " prefix, which the message
// around it already says.
func unwrapURL(err error) error {
	var u interface{ Unwrap() error }
	if errors.As(err, &u) && strings.HasPrefix(err.Error(), "Get ") {
		return u.Unwrap()
	}
	return err
}
