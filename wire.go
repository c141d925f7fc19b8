// Package bettertest holds the types that cross process boundaries: the worker's
// HTTP API (requests, Server-Sent Events, health) and the version of this build.
// The agent, the boss and enrollment all import it; it imports none of them.
package bettertest

// Version is the version of this build, set at link time by the Makefile
// (-X github.com/bettertest/bettertest.Version=...).
var Version = "dev"

// RunRequest is the body of POST /run.
type RunRequest struct {
	Image    string            `json:"image"`
	Command  string            `json:"command"`
	Env      map[string]string `json:"env,omitempty"`
	Workdir  string            `json:"workdir,omitempty"`
	TimeoutS int               `json:"timeout_s,omitempty"`
	// Inputs maps container paths to artifact IDs ("sha256:HEX"), mounted read-only.
	Inputs map[string]string `json:"inputs,omitempty"`
	// Outputs are container paths packed into artifacts after the command exits 0.
	Outputs []string `json:"outputs,omitempty"`
	// Results are container paths packed into artifacts after the command
	// ends, whatever its exit code: the test reports a failing run still writes.
	Results []string `json:"results,omitempty"`
	// Cache makes the run a build: answered from the build cache when its key is known.
	Cache bool `json:"cache,omitempty"`
	// Name says which build this is ("pipeline/task"), so a cache miss can be explained.
	Name string `json:"name,omitempty"`
	// Secrets are given to the command as read-only files or environment
	// variables; their values are masked in the run's output events.
	Secrets []Secret `json:"secrets,omitempty"`
	// Limits narrows the worker's limits for this run; it can never widen them.
	Limits *Limits `json:"limits,omitempty"`
	// User runs the command as this user of the image, NAME or UID[:GID]
	// (e.g. "65534"); the image's default (root) when empty.
	User string `json:"user,omitempty"`
	// ReachHost puts the run on Docker's default bridge network instead of
	// the worker's isolated one, so it can reach services on the worker's
	// host; the worker refuses it unless started with --allow-reach-host.
	ReachHost bool `json:"reach_host,omitempty"`
	// Services start beside the run, each reachable by its name from the
	// run's container, and are removed when the run ends.
	Services map[string]Service `json:"services,omitempty"`
	// Caches maps container paths to named cache directories that persist on
	// the worker across runs, mounted read-write; never part of a build's key.
	Caches map[string]string `json:"caches,omitempty"`
}

// Limits bound what one run may take. A worker has its own (its flags); a
// run may ask for less, never more. Zero means no limit of the run's own.
type Limits struct {
	PIDs        int64   `json:"pids,omitempty"`         // processes and threads at once
	MemoryBytes int64   `json:"memory_bytes,omitempty"` // RAM, page cache and /tmp included; no swap
	CPUs        float64 `json:"cpus,omitempty"`         // CPU time, in CPUs
}

// Secret is one secret value of a run: a file at Path in the container
// (read-only, mode 0400) or the environment variable Env, never both.
type Secret struct {
	Path  string `json:"path,omitempty"`
	Env   string `json:"env,omitempty"`
	Value string `json:"value"`
}

// Target is where the secret goes: its container path, or "env:NAME".
func (s Secret) Target() string {
	if s.Env != "" {
		return "env:" + s.Env
	}
	return s.Path
}

// Event names of the /run stream. Every event's data is one JSON object.
const (
	EventQueued  = "queued"  // QueuedEvent: waiting for a free slot
	EventStarted = "started" // StartedEvent: the container is running
	EventOutput  = "output"  // OutputEvent: a chunk of output, as written
	EventError   = "error"   // ErrorEvent: could not start, or cut short
	EventExit    = "exit"    // ExitEvent: always last once a run started

	EventArtifact = "artifact" // ArtifactEvent: an output was stored
	EventResult   = "result"   // ArtifactEvent: a results path was stored
	EventUncached = "uncached" // UncachedEvent: a build is not in the cache, and why
	EventCached   = "cached"   // CachedEvent: a build answered from the cache
)

// QueuedEvent says the run waits for one of the worker's slots.
type QueuedEvent struct {
	Position int `json:"position"`
}

// StartedEvent says the container started; ID names the run in the worker's log.
type StartedEvent struct {
	ID string `json:"id"`
}

// OutputEvent is one chunk of a container's output.
type OutputEvent struct {
	Stream string `json:"stream"` // "stdout" or "stderr"
	Text   string `json:"text"`
}

// ErrorEvent says why a run could not start or was cut short.
type ErrorEvent struct {
	Message string `json:"message"`
}

// ExitEvent ends every run that started.
type ExitEvent struct {
	Code       int   `json:"code"`
	DurationMS int64 `json:"duration_ms"`
}

// ArtifactEvent announces an output of a run, stored as an artifact.
type ArtifactEvent struct {
	Path string `json:"path"` // the container path it was packed from
	ID   string `json:"id"`   // "sha256:HEX"
	Size int64  `json:"size"` // bytes of the archive
	// Attempt is, in the boss's tasks, the attempt of a test that kept it
	// (artifacts=); never set by a worker.
	Attempt int `json:"attempt,omitempty"`
}

// UncachedEvent says a build runs because its key is not in the cache.
type UncachedEvent struct {
	Key    string `json:"key"`
	Reason string `json:"reason"`
}

// CachedEvent says a build's outputs come from the cache; its artifact and
// exit events follow at once.
type CachedEvent struct {
	Key        string `json:"key"`
	RunID      string `json:"run_id"`      // the run that built it
	DurationMS int64  `json:"duration_ms"` // how long that run took
}

// Event names of the worker's GET /events stream, which the boss holds open.
const (
	EventHealth   = "health"    // Health: first, the worker's state
	EventLoad     = "load"      // LoadEvent: a run took or freed a slot
	EventRunStart = "run_start" // RunStartEvent: a run took a slot
	EventRunEnd   = "run_end"   // RunEndEvent: a run ended
)

// LoadEvent says how many runs execute now.
type LoadEvent struct {
	Running  int `json:"running"`
	Capacity int `json:"capacity"`
}

// RunStartEvent says a run started on the worker.
type RunStartEvent struct {
	ID    string `json:"id"`
	Name  string `json:"name,omitempty"`
	Image string `json:"image"`
}

// RunEndEvent says a run ended; Outcome is exited, cached, timeout, cancelled,
// shutdown or failed.
type RunEndEvent struct {
	ID      string `json:"id"`
	Outcome string `json:"outcome"`
	Exit    int    `json:"exit"`
}

// Health is the body of GET /health.
type Health struct {
	Ready    bool   `json:"ready"`
	Version  string `json:"version"`
	Docker   string `json:"docker"`
	Running  int    `json:"running"`
	Capacity int    `json:"capacity"`
	Error    string `json:"error,omitempty"`
}

// APIError is the body of every non-2xx answer.
type APIError struct {
	Error string `json:"error"`
}

// ImageRequest is the body of POST /images: build an image from a context
// directory the worker holds as an artifact (uploaded with PUT /artifacts).
type ImageRequest struct {
	Context string `json:"context"` // "sha256:HEX", an artifact whose top entry is a directory
	// Dockerfile is its path inside the context; "Dockerfile" when empty.
	Dockerfile string            `json:"dockerfile,omitempty"`
	BuildArgs  map[string]string `json:"build_args,omitempty"`
	// Name says which image this is ("pipeline/name"), for the worker's log.
	Name string `json:"name,omitempty"`
}

// EventImage ends a successful POST /images stream (an error event ends a
// failed one); before it come output events (the build's progress) and, for
// an image not built yet, an uncached event.
const EventImage = "image"

// ImageEvent names the image a POST /images made or found: Tag is
// content-derived (bettertest/built:KEYHEX), usable as a run's image.
type ImageEvent struct {
	Tag        string `json:"tag"`
	ID         string `json:"id"`  // the image ID, "sha256:HEX"
	Key        string `json:"key"` // the build's key, "sha256:HEX"
	Cached     bool   `json:"cached"`
	DurationMS int64  `json:"duration_ms"` // of the build; 0 when cached
}

// Service is a container started beside a run's own, on a network private to
// the run, reachable from it by its name; the run's command starts once it
// is ready.
type Service struct {
	Image   string            `json:"image"`
	Command string            `json:"command,omitempty"` // run as sh -c COMMAND; the image's own when empty
	Env     map[string]string `json:"env,omitempty"`
	Ready   Ready             `json:"ready"`
}

// Ready says when a service is ready: a command that exits 0 inside it, or a
// TCP port it listens on. Exactly one is set.
type Ready struct {
	Command string `json:"command,omitempty"`
	Port    int    `json:"port,omitempty"`
}

// Events of a run with services or caches.
const (
	EventServiceReady = "service_ready" // ServiceReadyEvent: a service became ready
	EventCacheWait    = "cache_wait"    // CacheWaitEvent: a cache is in use by another run
)

// ServiceReadyEvent says a service is ready, after how long from its start.
type ServiceReadyEvent struct {
	Name    string `json:"name"`
	AfterMS int64  `json:"after_ms"`
}

// CacheWaitEvent says the run waits for another run to be done with a cache.
type CacheWaitEvent struct {
	Name string `json:"name"`
}
