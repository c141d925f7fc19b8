package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/internal/atomicfile"
)

// buildInputs is everything a build's result depends on; its digest is the
// build's cache key. The timeout is not part of it: it cannot change outputs.
type buildInputs struct {
	ImageID string            `json:"image_id"`
	Command string            `json:"command"`
	Env     map[string]string `json:"env"`
	Workdir string            `json:"workdir"`
	Inputs  map[string]string `json:"inputs"`
	Outputs []string          `json:"outputs"`
	// Secrets are where the build's secrets go (a path, or env:NAME), not
	// their values: a rotated password does not rebuild, and the cache on
	// disk holds nothing derived from a value. Left out when there are none,
	// so builds without secrets keep their keys.
	Secrets []string `json:"secrets,omitempty"`
	// User is who the command runs as (file owners in its outputs); left
	// out when it is the image's default. Limits are not here: they decide
	// whether a build finishes, not what it makes.
	User string `json:"user,omitempty"`
}

func newBuildInputs(imageID string, req bettertest.RunRequest) buildInputs {
	in := buildInputs{ImageID: imageID, Command: req.Command, Env: req.Env, Workdir: req.Workdir,
		Inputs: req.Inputs, Outputs: req.Outputs, User: req.User}
	for _, s := range req.Secrets {
		in.Secrets = append(in.Secrets, s.Target())
	}
	sort.Strings(in.Secrets)
	return in
}

// key digests the inputs; encoding/json writes map keys sorted, so equal
// inputs give equal keys. The version prefix retires every key at once if
// the meaning of a build ever changes.
func (b buildInputs) key() string {
	data, err := json.Marshal(b)
	if err != nil {
		panic(err) // strings and maps of strings always marshal
	}
	sum := sha256.Sum256(append([]byte("bettertest build v1\n"), data...))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// buildRecord is what the cache keeps of a build that succeeded.
type buildRecord struct {
	RunID      string                     `json:"run_id"`
	DurationMS int64                      `json:"duration_ms"`
	Outputs    []bettertest.ArtifactEvent `json:"outputs"`
}

// lastBuild is what the cache keeps of a named build's last run, to say why
// the next one is not cached.
type lastBuild struct {
	Name      string      `json:"name"`
	Inputs    buildInputs `json:"inputs"`
	Succeeded bool        `json:"succeeded"`
}

// buildCache keeps build records under the data dir, one small JSON file
// each, written atomically:
//
//	cache/builds/KEYHEX.json   the outputs of the build with that key
//	cache/names/NAMEHEX.json   the last run of the build with that name
type buildCache struct {
	dir string
}

func (c *buildCache) recordPath(key string) string {
	return filepath.Join(c.dir, "builds", strings.TrimPrefix(key, "sha256:")+".json")
}

func (c *buildCache) namePath(name string) string {
	sum := sha256.Sum256([]byte(name))
	return filepath.Join(c.dir, "names", hex.EncodeToString(sum[:16])+".json")
}

// lookup returns the record of key, or nil when there is none.
func (c *buildCache) lookup(key string) (*buildRecord, error) {
	var rec buildRecord
	if err := loadJSON(c.recordPath(key), &rec); err != nil || rec.RunID == "" {
		return nil, err
	}
	return &rec, nil
}

func (c *buildCache) store(key string, rec buildRecord) error {
	return saveJSON(c.recordPath(key), rec)
}

// forget drops a record whose outputs are gone.
func (c *buildCache) forget(key string) error {
	err := os.Remove(c.recordPath(key))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// began notes that the named build runs with these inputs, and returns why
// it was not cached, compared with its last run.
func (c *buildCache) began(name string, in buildInputs) (string, error) {
	if name == "" {
		return "not in the cache", nil
	}
	var last lastBuild
	if err := loadJSON(c.namePath(name), &last); err != nil {
		return "", err
	}
	reason := "first run"
	if last.Name == name {
		reason = whyChanged(last.Inputs, in)
		if reason == "" && !last.Succeeded {
			reason = "its last run failed"
		} else if reason == "" {
			reason = "its outputs were evicted"
		}
	}
	return reason, saveJSON(c.namePath(name), lastBuild{Name: name, Inputs: in})
}

// succeeded notes that the named build's run succeeded.
func (c *buildCache) succeeded(name string, in buildInputs) error {
	if name == "" {
		return nil
	}
	return saveJSON(c.namePath(name), lastBuild{Name: name, Inputs: in, Succeeded: true})
}

// whyChanged says in a few words what differs between two builds' inputs,
// or "" when nothing does.
func whyChanged(old, cur buildInputs) string {
	var changes []string
	if old.ImageID != cur.ImageID {
		changes = append(changes, "image changed")
	}
	if old.Command != cur.Command {
		changes = append(changes, "command changed")
	}
	changes = append(changes, mapChanges("env", old.Env, cur.Env)...)
	if old.Workdir != cur.Workdir {
		changes = append(changes, "workdir changed")
	}
	changes = append(changes, mapChanges("input", old.Inputs, cur.Inputs)...)
	if !slices.Equal(old.Outputs, cur.Outputs) {
		changes = append(changes, "outputs changed")
	}
	if !slices.Equal(old.Secrets, cur.Secrets) {
		changes = append(changes, "secrets changed")
	}
	if old.User != cur.User {
		changes = append(changes, "user changed")
	}
	return strings.Join(changes, ", ")
}

func mapChanges(what string, old, cur map[string]string) []string {
	keys := slices.Collect(maps.Keys(old))
	for k := range cur {
		if _, ok := old[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var changes []string
	for _, k := range keys {
		o, inOld := old[k]
		c, inCur := cur[k]
		switch {
		case !inOld:
			changes = append(changes, fmt.Sprintf("%s %s added", what, k))
		case !inCur:
			changes = append(changes, fmt.Sprintf("%s %s removed", what, k))
		case o != c:
			changes = append(changes, fmt.Sprintf("%s %s changed", what, k))
		}
	}
	return changes
}

func loadJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s is damaged (%v): delete it", path, err)
	}
	return nil
}

func saveJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data, 0o600)
}
