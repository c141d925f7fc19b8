// Package agent is the worker: an HTTP API on a Docker host that runs commands
// in containers and streams their output back as Server-Sent Events.
package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/docker/docker/client"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/internal/httpapi"
	"github.com/bettertest/bettertest/internal/hub"
)

// Config is everything the worker needs; cmd/bettertest fills it from flags.
type Config struct {
	Listen      string // address to listen on, e.g. ":9009"
	TokenFile   string // path of the file holding the bearer token
	MaxParallel int    // runs executing at once; more wait their turn
	DockerHost  string // Docker engine address, e.g. unix:///var/run/docker.sock
	DataDir     string // artifacts and the build cache
	CacheSize   int64  // bytes the artifacts may take on disk
	Limits      Limits // what one run may take; see DefaultLimits
	// AllowReachHost lets a run ask to reach the host's services (reach_host).
	AllowReachHost bool
	Logger         *slog.Logger
}

// Agent is a running worker.
type Agent struct {
	token    []byte
	log      *slog.Logger
	api      httpapi.Server // answers errors, logging the worker's own
	runner   *runner
	store    *store
	cache    *buildCache
	slots    *slots
	events   hub.Hub         // the /events stream: load and runs
	docker   string          // the engine's version
	stopping context.Context // done once shutdown begins: every run is cut short
}

// ShutdownGrace bounds how long a stopping worker waits for its runs to be
// killed and their clients told.
const ShutdownGrace = 30 * time.Second

// Run starts the worker and serves until ctx is done, then stops every run,
// removes its containers and returns. It tells systemd READY=1 once it listens
// and Docker has started a container, and STOPPING=1 when it begins to shut down.
func Run(ctx context.Context, cfg Config) error {
	if cfg.MaxParallel < 1 {
		return fmt.Errorf("--max-parallel must be at least 1, not %d", cfg.MaxParallel)
	}
	token, err := bettertest.ReadTokenFile(cfg.TokenFile)
	if err != nil {
		return err
	}
	if cfg.CacheSize < 1 {
		return fmt.Errorf("--cache-size must be more than 0 bytes, e.g. 20GiB")
	}
	owner, err := WorkerIdentity(cfg.DataDir)
	if err != nil {
		return err
	}
	// Absolute: Docker mounts the artifacts' trees from under it.
	cfg.DataDir, _ = filepath.Abs(cfg.DataDir) // WorkerIdentity made it absolute already
	store, unlock, err := openStore(cfg.DataDir, cfg.CacheSize, cfg.Logger)
	if err != nil {
		return err
	}
	defer unlock()
	docker, err := client.NewClientWithOpts(client.WithHost(cfg.DockerHost), client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("--docker-host %q: %w", cfg.DockerHost, err)
	}
	defer docker.Close()

	pingCtx, cancelPing := context.WithTimeout(ctx, 10*time.Second)
	defer cancelPing()
	version, err := docker.ServerVersion(pingCtx)
	if err != nil {
		return fmt.Errorf("the Docker engine at %s does not answer (%v): start it (systemctl start docker) or point --docker-host at it", cfg.DockerHost, err)
	}

	stopping, stopRuns := context.WithCancel(context.Background())
	defer stopRuns()
	netName, err := runNetwork(ctx, docker, owner, cfg.DataDir)
	if err != nil {
		return err
	}
	defer removeRunNetwork(docker, owner, cfg.Logger)
	run := &runner{docker: docker, owner: owner, log: cfg.Logger, store: store, secrets: filepath.Join(cfg.DataDir, "secrets"), limits: cfg.Limits, allowReachHost: cfg.AllowReachHost}
	// Secret files live only while their run does; those of a worker that died go now.
	if err := os.RemoveAll(run.secrets); err != nil {
		return fmt.Errorf("--data-dir %s: remove secret files left by an earlier run: %w", cfg.DataDir, err)
	}
	if err := os.Mkdir(run.secrets, 0o700); err != nil {
		return fmt.Errorf("--data-dir %s: %w", cfg.DataDir, err)
	}
	run.pool = &pool{docker: docker, owner: owner, limit: cfg.MaxParallel, log: cfg.Logger, wg: &run.removal, hostConfig: cfg.Limits.hostConfig(netName)}
	a := &Agent{token: token, log: cfg.Logger, api: httpapi.Server{Name: "worker", Log: cfg.Logger}, runner: run, store: store, stopping: stopping,
		cache: &buildCache{dir: filepath.Join(cfg.DataDir, "cache")}}
	a.docker = version.Version
	a.slots = newSlots(cfg.MaxParallel, func() {
		// Read under the hub's lock: the last load event is always the current load.
		a.events.Locked(func(publish func(hub.Event)) {
			load := bettertest.LoadEvent{Running: a.slots.running(), Capacity: a.slots.capacity()}
			notify(fmt.Sprintf("STATUS=running %d of %d", load.Running, load.Capacity))
			publish(hub.New(bettertest.EventLoad, load))
		})
	})

	if n, err := a.runner.removeOrphans(ctx); err != nil {
		return fmt.Errorf("the Docker engine at %s: %w", cfg.DockerHost, err)
	} else if n > 0 {
		a.log.Info("removed containers left by an earlier run of this worker", "count", n)
	}

	// Ready means a run can start: Docker answering is not enough.
	probeCtx, cancelProbe := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelProbe()
	if err := probeContainer(probeCtx, docker, owner, run.pool.hostConfig); err != nil {
		return fmt.Errorf("the Docker engine at %s answers but cannot run a container: %w: see the engine's log (journalctl -u docker)", cfg.DockerHost, err)
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another worker running? pick another --listen)", cfg.Listen, err)
	}
	// No write timeout: a run streams for as long as its command runs.
	srv := &http.Server{Handler: a.routes(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	// Ready before serving: a run's STATUS can then never come before READY=1.
	// Connections made meanwhile wait in the listener's backlog.
	notify(daemon.SdNotifyReady)
	notify(fmt.Sprintf("STATUS=running 0 of %d", cfg.MaxParallel))
	a.log.Info("listening", "addr", ln.Addr().String(), "docker", version.Version, "api", docker.ClientVersion(), "capacity", cfg.MaxParallel, "version", bettertest.Version)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}

	notify(daemon.SdNotifyStopping)
	notify("STATUS=stopping: killing running containers")
	a.log.Info("stopping", "running", a.slots.running())
	stopRuns()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	a.runner.pool.close()
	a.runner.removal.Wait()
	if err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	a.log.Info("stopped")
	return nil
}

// WorkerIdentity names this worker's containers. It is derived from the data
// dir's location, which is stable across restarts of one worker and differs
// between workers that share an engine (the store's lock makes sure of that).
func WorkerIdentity(dataDir string) (string, error) {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return "", fmt.Errorf("--data-dir %s: %w", dataDir, err)
	}
	sum := sha256.Sum256([]byte(abs))
	return hex.EncodeToString(sum[:6]), nil
}

// notify tells systemd about the worker's state; outside systemd it does nothing.
func notify(state string) {
	_, _ = daemon.SdNotify(false, state) // systemd's absence or a full socket must not stop the worker
}
