package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/bettertest/bettertest/internal/dirlock"
)

// The artifact store keeps content-addressed archives under the data dir:
//
//	artifacts/HEX   the archive whose sha256 is HEX
//	trees/HEX/      the archive unpacked, made the first time a run mounts it
//	tmp/            uploads and outputs being written; emptied at start
//
// A file appears under artifacts/ only by a rename once its digest is known
// and checked, so a partial or corrupt upload is never visible. The total size
// is bounded: the least recently used artifacts go first, never one in use.
type store struct {
	dir   string
	limit int64
	log   *slog.Logger

	mu     sync.Mutex
	items  map[string]*stored
	caches map[string]*cacheEntry // dependency caches, counted in used too
	used   int64
}

type stored struct {
	size    int64 // of the archive
	tree    bool  // unpacked under trees/
	lastUse time.Time
	pins    int
	unpack  sync.Mutex // held while the tree is being made
}

// footprint is what an artifact takes on disk; an unpacked tree is counted
// as big as its archive.
func (s *stored) footprint() int64 {
	if s.tree {
		return 2 * s.size
	}
	return s.size
}

var hexDigest = regexp.MustCompile(`^[0-9a-f]{64}$`)

// errTooBig is an artifact larger than the whole store.
var errTooBig = errors.New("artifact too big")

// errDigest is an upload whose content does not have the digest it claimed.
var errDigest = errors.New("digest mismatch")

// errBadArchive is an upload that is not an artifact archive.
var errBadArchive = errors.New("not an artifact archive")

// openStore opens the store in dir, creating it when missing, and locks it:
// two workers on one data dir would delete each other's files.
func openStore(dir string, limit int64, log *slog.Logger) (*store, func(), error) {
	for _, sub := range []string{"artifacts", "trees", "tmp", "cache/builds", "cache/names"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, nil, fmt.Errorf("--data-dir %s: %w", dir, err)
		}
	}
	unlock, err := dirlock.Lock(dir, "worker")
	if err != nil {
		return nil, nil, err
	}
	s := &store{dir: dir, limit: limit, log: log, items: map[string]*stored{}}
	if err := s.load(); err != nil {
		unlock()
		return nil, nil, fmt.Errorf("--data-dir %s: %w", dir, err)
	}
	return s, unlock, nil
}

// load indexes what an earlier run left. The time of last use survives as
// the archive's mtime.
func (s *store) load() error {
	if err := os.RemoveAll(filepath.Join(s.dir, "tmp")); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(s.dir, "tmp"), 0o700); err != nil {
		return err
	}
	entries, err := os.ReadDir(filepath.Join(s.dir, "artifacts"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			return err
		}
		if !hexDigest.MatchString(e.Name()) || !info.Mode().IsRegular() {
			continue
		}
		s.items[e.Name()] = &stored{size: info.Size(), lastUse: info.ModTime()}
	}
	trees, err := os.ReadDir(filepath.Join(s.dir, "trees"))
	if err != nil {
		return err
	}
	for _, e := range trees {
		if it := s.items[e.Name()]; it != nil {
			it.tree = true
		} else if err := os.RemoveAll(filepath.Join(s.dir, "trees", e.Name())); err != nil {
			return err
		}
	}
	for _, it := range s.items {
		s.used += it.footprint()
	}
	if err := s.loadCaches(); err != nil {
		return err
	}
	s.mu.Lock()
	s.evictLocked()
	s.mu.Unlock()
	return nil
}

func (s *store) archivePath(hexID string) string { return filepath.Join(s.dir, "artifacts", hexID) }

// treePath is what a run mounts: the archive's top-level entry, unpacked.
func (s *store) treePath(hexID string) string {
	return filepath.Join(s.dir, "trees", hexID, archiveRoot)
}

func (s *store) touchLocked(hexID string, it *stored) {
	now := time.Now()
	it.lastUse = now
	// The mtime carries the time of last use across restarts.
	if err := os.Chtimes(s.archivePath(hexID), now, now); err != nil {
		s.log.Warn("mark artifact used", "id", hexID, "err", err)
	}
}

// pin keeps artifacts from being evicted until release is called. It returns
// the first ID the store does not have, if any; nothing is pinned then.
func (s *store) pin(hexIDs []string) (release func(), missing string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range hexIDs {
		if s.items[id] == nil {
			return nil, id
		}
	}
	for _, id := range hexIDs {
		it := s.items[id]
		it.pins++
		s.touchLocked(id, it)
	}
	var once sync.Once
	return func() { once.Do(func() { s.unpin(hexIDs) }) }, ""
}

func (s *store) unpin(hexIDs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range hexIDs {
		s.items[id].pins--
	}
	s.evictLocked()
}

// open opens a pinned artifact's archive for reading.
func (s *store) open(hexID string) (*os.File, error) {
	return os.Open(s.archivePath(hexID))
}

// tree unpacks a pinned artifact the first time a run mounts it and returns
// the path to mount.
func (s *store) tree(hexID string) (string, error) {
	s.mu.Lock()
	it := s.items[hexID]
	s.mu.Unlock()
	it.unpack.Lock()
	defer it.unpack.Unlock()
	s.mu.Lock()
	done := it.tree
	s.mu.Unlock()
	if done {
		return s.treePath(hexID), nil
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), "tree-")
	if err != nil {
		return "", err
	}
	if err := s.unpackInto(hexID, tmp); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("unpack artifact sha256:%s: %w", hexID, err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, "trees", hexID)); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	s.mu.Lock()
	it.tree = true
	s.used += it.size
	s.evictLocked()
	s.mu.Unlock()
	return s.treePath(hexID), nil
}

func (s *store) unpackInto(hexID, dir string) error {
	f, err := s.open(hexID)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := os.Chmod(dir, 0o755); err != nil { // containers of any user read their inputs
		return err
	}
	return extractArchive(f, dir)
}

// incoming is an artifact being written to tmp/ while it is hashed.
type incoming struct {
	s    *store
	f    *os.File
	hash hash.Hash
	n    int64
}

func (s *store) create() (*incoming, error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "artifact-")
	if err != nil {
		return nil, err
	}
	return &incoming{s: s, f: f, hash: sha256.New()}, nil
}

func (in *incoming) Write(p []byte) (int, error) {
	if in.n+int64(len(p)) > in.s.limit {
		return 0, fmt.Errorf("%w: more than --cache-size (%d bytes)", errTooBig, in.s.limit)
	}
	n, err := in.f.Write(p)
	in.hash.Write(p[:n])
	in.n += int64(n)
	return n, err
}

// abort throws the partial artifact away.
func (in *incoming) abort() {
	in.f.Close()
	os.Remove(in.f.Name())
}

// commit checks the archive, and makes it visible under its digest. When
// want is not empty the digest must be want. It returns the digest, whether
// the store did not have it yet, and a release for the pin it holds on it.
func (in *incoming) commit(want string) (hexID string, created bool, release func(), err error) {
	defer func() {
		if err != nil {
			in.abort()
		}
	}()
	hexID = hex.EncodeToString(in.hash.Sum(nil))
	if want != "" && hexID != want {
		return "", false, nil, fmt.Errorf("%w: the content's sha256 is %s, not %s: the upload was damaged, or the URL names another artifact", errDigest, hexID, want)
	}
	if _, err := in.f.Seek(0, io.SeekStart); err != nil {
		return "", false, nil, err
	}
	if err := checkArchive(in.f, in.s.limit); err != nil {
		return "", false, nil, fmt.Errorf("%w: %v", errBadArchive, err)
	}
	if err := in.f.Sync(); err != nil {
		return "", false, nil, err
	}
	if err := in.f.Close(); err != nil {
		return "", false, nil, err
	}
	s := in.s
	s.mu.Lock()
	defer s.mu.Unlock()
	it := s.items[hexID]
	created = it == nil
	if created {
		if err := os.Rename(in.f.Name(), s.archivePath(hexID)); err != nil {
			return "", false, nil, err
		}
		it = &stored{size: in.n}
		s.items[hexID] = it
		s.used += it.footprint()
	} else {
		os.Remove(in.f.Name())
	}
	it.pins++
	s.touchLocked(hexID, it)
	s.evictLocked()
	ids := []string{hexID}
	var once sync.Once
	return hexID, created, func() { once.Do(func() { s.unpin(ids) }) }, nil
}

// evictLocked deletes the least recently used unpinned artifacts until the
// store fits its limit. Files are moved to tmp/ under the lock, which is
// quick, and deleted after it: an artifact stored again meanwhile is safe.
func (s *store) evictLocked() {
	var doomed []string
	for s.used > s.limit {
		var oldestID string
		var oldest *stored
		for id, it := range s.items {
			if it.pins == 0 && (oldest == nil || it.lastUse.Before(oldest.lastUse)) {
				oldestID, oldest = id, it
			}
		}
		if name, c := s.oldestCacheLocked(); c != nil && (oldest == nil || c.lastUse.Before(oldest.lastUse)) {
			s.dropCacheLocked(name, c)
			s.log.Info("evicted cache", "name", name, "size", c.size)
			continue
		}
		if oldest == nil {
			return // everything left is in use
		}
		delete(s.items, oldestID)
		s.used -= oldest.footprint()
		for _, p := range []string{s.archivePath(oldestID), filepath.Join(s.dir, "trees", oldestID)} {
			dest := filepath.Join(s.dir, "tmp", "evicted-"+oldestID+"-"+filepath.Base(filepath.Dir(p)))
			if err := os.Rename(p, dest); err != nil && !errors.Is(err, os.ErrNotExist) {
				s.log.Warn("evict artifact", "id", oldestID, "err", err)
				continue
			}
			doomed = append(doomed, dest)
		}
		s.log.Info("evicted artifact", "id", "sha256:"+oldestID, "size", oldest.size)
	}
	if len(doomed) > 0 {
		go func() {
			for _, p := range doomed {
				if err := os.RemoveAll(p); err != nil {
					s.log.Warn("delete evicted artifact", "path", p, "err", err)
				}
			}
		}()
	}
}

// parseID turns "sha256:HEX" into HEX.
func parseID(id string) (string, bool) {
	h, ok := strings.CutPrefix(id, "sha256:")
	return h, ok && hexDigest.MatchString(h)
}
