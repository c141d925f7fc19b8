package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/internal/httpapi"
)

// Dependency caches are named directories under DATA/caches that persist
// across runs (pip's, Go's module and build caches, npm's), mounted
// read-write where a run asks for them. They speed runs up without changing
// what a build makes, so they are never part of a build's key. One run at a
// time writes a cache: another run that asks for it waits until the first
// ends (an event: a channel closed on release, never a poll), and is told
// so. Their sizes, measured when a run lets go of them, count towards
// --cache-size with the artifacts; the least recently used go first, never
// one in use. DELETE /caches/NAME empties one.

// MaxCaches bounds the caches of one run.
const MaxCaches = 16

var cacheName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func checkCaches(req bettertest.RunRequest) error {
	if len(req.Caches) > MaxCaches {
		return fmt.Errorf(`"caches" has %d entries: a run may have at most %d`, len(req.Caches), MaxCaches)
	}
	for p, name := range req.Caches {
		if err := checkContainerPath("caches", p); err != nil {
			return err
		}
		if !cacheName.MatchString(name) {
			return fmt.Errorf(`"caches" %s: %q is not a cache name: letters, digits, ".", "_" and "-", at most 64, e.g. "pip"`, short(p), short(name))
		}
		for in := range req.Inputs {
			if within(p, in) || within(in, p) {
				return fmt.Errorf(`"caches" %s overlaps the input %s: mount the cache elsewhere`, short(p), short(in))
			}
		}
	}
	return nil
}

// cacheEntry is the store's account of one cache directory.
type cacheEntry struct {
	size    int64
	lastUse time.Time
	busy    chan struct{} // non-nil while a run holds it; closed when it lets go
}

func (s *store) cacheDir(name string) string { return filepath.Join(s.dir, "caches", name) }

// loadCaches indexes the cache directories an earlier run left.
func (s *store) loadCaches() error {
	if err := os.MkdirAll(filepath.Join(s.dir, "caches"), 0o700); err != nil {
		return err
	}
	entries, err := os.ReadDir(filepath.Join(s.dir, "caches"))
	if err != nil {
		return err
	}
	s.caches = map[string]*cacheEntry{}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			return err
		}
		if !cacheName.MatchString(e.Name()) || !e.IsDir() {
			continue
		}
		c := &cacheEntry{size: dirSize(s.cacheDir(e.Name())), lastUse: info.ModTime()}
		s.caches[e.Name()] = c
		s.used += c.size
	}
	return nil
}

// acquireCaches takes the named caches for one run, waiting for each that
// another run holds (told through waiting), and returns their directories,
// by name. release measures them and lets them go.
func (s *store) acquireCaches(ctx context.Context, names []string, waiting func(name string)) (map[string]string, func(), error) {
	sort.Strings(names) // one order for every run: no two runs wait on each other
	var held []string
	release := func() { s.releaseCaches(held) }
	dirs := map[string]string{}
	for _, name := range names {
		if _, ok := dirs[name]; ok {
			continue
		}
		for {
			s.mu.Lock()
			c := s.caches[name]
			if c == nil {
				c = &cacheEntry{}
				s.caches[name] = c
			}
			busy := c.busy
			if busy == nil {
				c.busy = make(chan struct{})
				c.lastUse = time.Now()
			}
			s.mu.Unlock()
			if busy == nil {
				break
			}
			waiting(name)
			select {
			case <-busy:
			case <-ctx.Done():
				release()
				return nil, func() {}, context.Cause(ctx)
			}
		}
		held = append(held, name)
		dirs[name] = s.cacheDir(name)
		if err := os.MkdirAll(dirs[name], 0o755); err != nil {
			release()
			return nil, func() {}, fmt.Errorf("cache %s: %w", name, err)
		}
	}
	var once sync.Once
	return dirs, func() { once.Do(release) }, nil
}

func (s *store) releaseCaches(names []string) {
	sizes := make([]int64, len(names))
	for i, name := range names {
		sizes[i] = dirSize(s.cacheDir(name))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, name := range names {
		c := s.caches[name]
		s.used += sizes[i] - c.size
		c.size, c.lastUse = sizes[i], time.Now()
		close(c.busy)
		c.busy = nil
	}
	s.evictLocked()
}

// deleteCache empties a cache no run holds.
func (s *store) deleteCache(name string) (found bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.caches[name]
	if c == nil {
		return false, nil
	}
	if c.busy != nil {
		return true, errCacheBusy
	}
	s.dropCacheLocked(name, c)
	return true, nil
}

var errCacheBusy = errors.New("cache in use")

// dropCacheLocked moves a cache out of the way under the lock and deletes it after.
func (s *store) dropCacheLocked(name string, c *cacheEntry) {
	delete(s.caches, name)
	s.used -= c.size
	dest := filepath.Join(s.dir, "tmp", fmt.Sprintf("evicted-cache-%s-%d", name, time.Now().UnixNano()))
	if err := os.Rename(s.cacheDir(name), dest); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("drop cache", "name", name, "err", err)
		return
	}
	go func() {
		if err := os.RemoveAll(dest); err != nil {
			s.log.Warn("delete dropped cache", "name", name, "err", err)
		}
	}()
}

// oldestCacheLocked is the least recently used cache no run holds.
func (s *store) oldestCacheLocked() (string, *cacheEntry) {
	var name string
	var oldest *cacheEntry
	for n, c := range s.caches {
		if c.busy == nil && (oldest == nil || c.lastUse.Before(oldest.lastUse)) {
			name, oldest = n, c
		}
	}
	return name, oldest
}

// dirSize is the bytes of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

func (a *Agent) handleDeleteCache(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	if !cacheName.MatchString(name) {
		httpapi.Fail(w, httpapi.Invalid, fmt.Sprintf("%q is not a cache name: letters, digits, \".\", \"_\" and \"-\", at most 64", short(name)))
		return
	}
	found, err := a.store.deleteCache(name)
	switch {
	case !found:
		httpapi.Fail(w, httpapi.NotFound, fmt.Sprintf("there is no cache %s on this worker", name))
	case err != nil:
		httpapi.Fail(w, httpapi.Conflict, fmt.Sprintf("cache %s is in use by a run: delete it once the run ends", name))
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}
