package boss

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/fsnotify/fsnotify"

	"github.com/bettertest/bettertest"
)

// watchWorkersDir follows the workers directory, so that a worker that
// enrollment adds (NAME.json written beside NAME.token) or removes joins or
// leaves without a restart. inotify tells of each change as it happens.
func (b *Boss) watchWorkersDir(ctx context.Context) error {
	dir := b.cfg.WorkersDir
	if dir == "" {
		return nil
	}
	// The directory is made here, so that it can be watched before the first enrollment.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("--workers-dir %s: %w", dir, err)
	}
	if err := watchDir(ctx, dir, "--workers-dir "+dir, b.log, b.recordChanged); err != nil {
		return err
	}
	// Records written between the start's reading of the directory and the
	// watch's start are read now, once.
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("--workers-dir %s: %w", dir, err)
	}
	for _, e := range entries {
		b.recordChanged(filepath.Join(dir, e.Name()))
	}
	return nil
}

// watchDir calls changed with the path of each file of dir that is made,
// written, renamed or removed, until ctx is done. what names the directory
// in errors.
func watchDir(ctx context.Context, dir, what string, log *slog.Logger, changed func(path string)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", what, err)
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return fmt.Errorf("watch %s: %w", what, err)
	}
	go func() {
		defer w.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-w.Events:
				changed(ev.Name)
			case err := <-w.Errors:
				log.Error("watching "+what, "err", err)
			}
		}
	}()
	return nil
}

// recordChanged brings the workers in line with the record at path: a new
// record adds its worker, a removed one drops it, a changed one reconnects
// (or, under another name, replaces it).
// Other files (tokens, an atomic write's temporary file) are not records.
func (b *Boss) recordChanged(path string) {
	name := filepath.Base(path)
	if !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
		return
	}
	wc, err := readRecord(path)
	gone := errors.Is(err, fs.ErrNotExist)
	if err != nil && !gone {
		b.log.Error("a worker record was not read: the boss keeps the workers it had", "err", err)
		return
	}
	b.do(func(e *engine) { e.applyRecord(path, wc, gone) })
}

// applyRecord applies a worker record read anew (or gone) to the workers.
func (e *engine) applyRecord(path string, wc WorkerConfig, gone bool) {
	var have *worker
	for _, w := range e.workers {
		if w.cfg.Record == path && !w.leaving {
			have = w
		}
	}
	switch {
	case have != nil && gone:
		e.leave(have)
		return
	case gone:
		return
	case have != nil && have.cfg == wc:
		return // rewritten as it was: a no-op enrollment
	case have != nil && have.cfg.Name == wc.Name:
		// Enrolled again with another URL or token: the same worker, reached anew.
		e.note("worker record changed", "worker", wc.Name, "url", wc.URL, "record", path)
		have.cfg, have.info.URL = wc, wc.URL
		have.stop()
		e.watchWorker(have)
		e.publishWorker(have)
		return
	case have != nil:
		e.leave(have) // renamed: another worker
	}
	for _, w := range e.workers {
		if w.cfg.Name == wc.Name && !w.leaving {
			e.log.Error("a worker record names a worker the boss has already: ignored", "record", path, "worker", wc.Name)
			return
		}
	}
	w := &worker{cfg: wc, info: bettertest.WorkerInfo{Name: wc.Name, URL: wc.URL, Error: "connecting"}}
	e.workers = append(e.workers, w)
	sort.SliceStable(e.workers, func(i, j int) bool { return e.workers[i].cfg.Name < e.workers[j].cfg.Name })
	e.note("worker added", "worker", wc.Name, "url", wc.URL, "record", path)
	e.publishWorker(w)
	e.watchWorker(w)
}

// watchWorker starts following a worker's events until the boss stops or
// the worker is dropped.
func (e *engine) watchWorker(w *worker) {
	ctx, stop := context.WithCancel(e.stopping)
	w.stop = stop
	go e.watch(ctx, w)
}

// leave takes a worker whose record is gone out of service: it gets
// no new runs, and is dropped once those it has end.
func (e *engine) leave(w *worker) {
	w.leaving = true
	e.note("worker record removed", "worker", w.cfg.Name, "record", w.cfg.Record, "runs", w.info.Assigned)
	if w.info.Assigned == 0 {
		e.drop(w)
		return
	}
	w.info.Error = "its record was removed: it takes no new runs, and leaves once its runs end"
	e.publishWorker(w)
}

// drop forgets a worker: its event stream ends, and watchers are told.
func (e *engine) drop(w *worker) {
	w.gone = true
	w.stop()
	e.workers = slices.DeleteFunc(e.workers, func(x *worker) bool { return x == w })
	w.info.Removed, w.info.Up = true, false
	e.publishWorker(w)
	e.note("worker removed", "worker", w.cfg.Name)
}
