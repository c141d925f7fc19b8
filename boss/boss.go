// Package boss coordinates: it knows the workers, picks one for each run,
// starts the pipedef as a Python process pointed at that worker, records
// everything in SQLite and pushes each change to whoever watches.
//
// Nothing here polls. Workers push their state over GET /events, a pipedef's
// report comes through a pipe, its end is a process exit, and watchers get
// Server-Sent Events.
package boss

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/internal/dirlock"
	"github.com/bettertest/bettertest/internal/hub"
	"github.com/bettertest/bettertest/python"
)

// Config is everything the boss needs; cmd/bettertest fills it from flags.
type Config struct {
	Listen   string          // address of the API, e.g. 127.0.0.1:9001
	Pipedefs []PipedefConfig // one pipeline each, named after the file
	Repos    []RepoConfig    // pipelines whose pipedef lives in a git repository
	GitHub   GitHubConfig    // webhooks and commit statuses
	Workers  []WorkerConfig
	// WorkersDir, if set, is watched: a worker record added there (by
	// enrollment) adds its worker, a record removed drops it.
	WorkersDir string
	// Secrets are the values of --secret NAME=FILE by name; a pipeline gets
	// those it declares (PipedefConfig.Secrets, RepoConfig.Secrets).
	Secrets map[string][]byte
	DataDir string        // history.db and the Python library
	Every   time.Duration // run every pipeline this often; 0: only when asked
	Python  string        // the interpreter pipedefs run with
	Grace   time.Duration // between SIGTERM and SIGKILL when a run is cancelled
	// Flaky says when a test is flaky; the zero value means DefaultFlakyRules.
	Flaky FlakyRules
	// Quarantine lists tests, as pipeline and test id, whose failures do not
	// fail runs; more can be quarantined from the UI and the API.
	Quarantine [][2]string
	Logger     *slog.Logger
	// UsersFile names the users and their API tokens (see AddUser); empty:
	// no users, and the boss serves only its loopback address.
	UsersFile string
	// PublicRead lets visitors who have not logged in read everything.
	PublicRead bool
	// TLSCert and TLSKey, both or neither, make the boss serve https.
	TLSCert, TLSKey string
	// Ready, if not nil, is called with the listening address once the API serves.
	Ready func(addr string)
}

// WorkerConfig is one worker the boss may use.
type WorkerConfig struct {
	Name, URL, TokenFile string
	Record               string // the NAME.json in WorkersDir it came from; "": a --worker flag
}

// Boss is a running boss.
type Boss struct {
	cfg       Config
	log       *slog.Logger
	store     *store
	events    hub.Hub
	pipelines []bettertest.Pipeline // sorted by name; LastRun unused
	libDir    string                // put first on the pipedefs' import path
	sandbox   *sandbox              // how pipedefs are started
	stopping  context.Context       // done once the boss shuts down
	posting   context.Context       // done once the last commit statuses are posted, or given up
	postWG    sync.WaitGroup        // commit statuses being posted
	// interrupted are the runs the last boss left unfinished: their
	// commits get an error status once the boss runs.
	interrupted []int64
	repos       map[string]*repo // by pipeline name, for pipelines from repositories
	hookSecret  []byte           // the webhook secret; nil: no webhooks
	github      *statusClient    // nil: no commit statuses
	// secretNames are the secrets each pipeline declares, by pipeline name.
	secretNames map[string][]string
	auth        *auth       // who may do what
	tls         *tls.Config // nil: plain http
	unlock      func()      // releases the data dir's lock

	// eng owns the workers' state, the queue and the runs in memory: see engine.
	eng    *engine
	runsWG sync.WaitGroup // pipedef processes, and the work their ends start

	uiSessions uiSessions // the browser tabs showing the UI
	endedCases caseCache  // ended runs' test results, as read from the history

	rules   FlakyRules
	judging sync.Mutex // one run's tests are judged at a time
}

// Run starts the boss and serves until ctx is done. Runs still going then
// are stopped and recorded as interrupted.
func Run(ctx context.Context, cfg Config) error {
	b, err := newBoss(cfg)
	if err != nil {
		return err
	}
	defer b.eng.shutdown() // last: the history's writer tells the engine how its last changes went
	defer b.unlock()
	defer func() {
		if err := b.store.close(); err != nil {
			b.log.Warn("close the history", "err", err)
		}
	}()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another boss running? pick another --listen)", cfg.Listen, err)
	}
	stopping, stop := context.WithCancel(context.Background())
	defer stop()
	b.stopping = stopping
	// Statuses outlive stopping: the runs it stops post their ends.
	posting, stopPosting := context.WithCancel(context.Background())
	defer stopPosting()
	b.posting = posting
	b.postInterrupted(b.interrupted)
	if b.github != nil && b.github.public == "" {
		b.github.public = b.scheme() + "://" + ln.Addr().String()
	}
	b.do(func(e *engine) {
		for _, w := range e.workers {
			e.watchWorker(w)
		}
		e.changed() // the first snapshot: the workers given
	})
	if err := b.watchWorkersDir(stopping); err != nil {
		return err
	}
	if cfg.Every > 0 {
		go b.schedule(stopping, cfg.Every)
	}
	if err := b.auth.watch(stopping); err != nil {
		return err
	}
	srv := &http.Server{Handler: b.routes(), ReadHeaderTimeout: 10 * time.Second, TLSConfig: b.tls}
	served := make(chan error, 1)
	go func() {
		if b.tls != nil {
			served <- srv.ServeTLS(ln, "", "")
			return
		}
		served <- srv.Serve(ln)
	}()
	b.log.Info("listening", "addr", ln.Addr().String(), "url", b.scheme()+"://"+ln.Addr().String(), "pipelines", len(b.pipelines), "workers", len(b.workerInfos()), "version", bettertest.Version)
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr().String())
	}
	select {
	case err := <-served:
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	b.log.Info("stopping")
	stop() // ends event streams and worker watches
	b.stopRuns()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	b.runsWG.Wait()
	if err := b.saveUnsaved(); err != nil {
		b.log.Error("history: the ends of some runs could not be written; they will read as interrupted", "err", err)
	}
	b.waitForStatuses(stopPosting)
	if err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	b.log.Info("stopped")
	return nil
}

func newBoss(cfg Config) (_ *Boss, err error) {
	// Absolute: the sandbox mounts paths under it, from another directory.
	if cfg.DataDir, err = filepath.Abs(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("--data-dir %s: %w", cfg.DataDir, err)
	}
	b := &Boss{cfg: cfg, log: cfg.Logger, secretNames: map[string][]string{}}
	b.eng = newEngine(b)
	go b.eng.run()
	defer func() {
		if err != nil {
			b.eng.shutdown()
		}
	}()
	if len(cfg.Pipedefs) == 0 && len(cfg.Repos) == 0 {
		return nil, errors.New("no pipelines: pass --pipedef PATH (a Python pipedef) or --repo NAME=GIT_URL,pipedef=PATH, once per pipeline")
	}
	seen := map[string]string{}
	b.repos = map[string]*repo{}
	for _, rc := range cfg.Repos {
		if other, ok := seen[rc.Name]; ok {
			return nil, fmt.Errorf("--repo %s: pipeline %q is already %s: give it another name", rc.Name, rc.Name, other)
		}
		seen[rc.Name] = "--repo " + rc.Name
		if err := checkSecrets(rc.Name, "--repo "+rc.Name, rc.Secrets, cfg.Secrets); err != nil {
			return nil, err
		}
		b.secretNames[rc.Name] = rc.Secrets
		branches, err := parseBranchFilter(rc.Branches)
		if err != nil {
			return nil, fmt.Errorf("--repo %s: %w", rc.Name, err)
		}
		b.repos[rc.Name] = &repo{cfg: rc, branches: branches, bare: filepath.Join(cfg.DataDir, "repos", rc.Name+".git"), work: filepath.Join(cfg.DataDir, "work")}
		b.pipelines = append(b.pipelines, bettertest.Pipeline{Name: rc.Name, Path: rc.Pipedef, Repo: rc.URL})
	}
	for _, pc := range cfg.Pipedefs {
		p := pc.Path
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("--pipedef %s: %w", p, err)
		}
		if info, err := os.Stat(abs); err != nil || !info.Mode().IsRegular() {
			return nil, fmt.Errorf("--pipedef %s is not a file: pass the path of a Python pipedef", p)
		}
		if err := checkSandboxReadable(abs); err != nil {
			return nil, fmt.Errorf("--pipedef %s: %w", p, err)
		}
		name := strings.TrimSuffix(filepath.Base(abs), ".py")
		if other, ok := seen[name]; ok {
			return nil, fmt.Errorf("--pipedef %s and %s would both be pipeline %q: pipelines are named after their files, so rename one", other, p, name)
		}
		seen[name] = p
		if err := checkSecrets(name, "--pipedef "+p, pc.Secrets, cfg.Secrets); err != nil {
			return nil, err
		}
		b.secretNames[name] = pc.Secrets
		b.pipelines = append(b.pipelines, bettertest.Pipeline{Name: name, Path: abs})
	}
	sort.Slice(b.pipelines, func(i, j int) bool { return b.pipelines[i].Name < b.pipelines[j].Name })
	b.rules = cfg.Flaky
	if b.rules == (FlakyRules{}) {
		b.rules = DefaultFlakyRules
	}
	if err := b.rules.Check(); err != nil {
		return nil, err
	}
	for _, pt := range cfg.Quarantine {
		if _, ok := b.pipeline(pt[0]); !ok {
			return nil, fmt.Errorf("--quarantine %s/%s: there is no pipeline %q: give PIPELINE/TEST with one of this boss's pipelines", pt[0], pt[1], pt[0])
		}
	}
	if len(cfg.Workers) == 0 && cfg.WorkersDir == "" {
		return nil, errors.New("no workers: enroll one (bettertest enroll user@host), or pass --worker NAME=URL --worker-token-file NAME=PATH")
	}
	for _, wc := range cfg.Workers {
		if _, err := bettertest.ReadTokenFile(wc.TokenFile); err != nil {
			return nil, fmt.Errorf("worker %s: %w", wc.Name, err)
		}
		b.eng.workers = append(b.eng.workers, &worker{cfg: wc, info: bettertest.WorkerInfo{Name: wc.Name, URL: wc.URL, Error: "connecting"}})
	}
	sort.Slice(b.eng.workers, func(i, j int) bool { return b.eng.workers[i].cfg.Name < b.eng.workers[j].cfg.Name })
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("--data-dir %s: %w", cfg.DataDir, err)
	}
	// First: a second boss on this dir must change nothing in it.
	if b.unlock, err = dirlock.Lock(cfg.DataDir, "boss"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			b.unlock()
		}
	}()
	lib, err := writeLibrary(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("--data-dir %s: write the Python library: %w", cfg.DataDir, err)
	}
	b.libDir = lib
	if b.sandbox, err = newSandbox(context.Background(), cfg.Python); err != nil {
		return nil, err
	}
	// Sandbox directories of runs that a killed boss left behind.
	if err := os.RemoveAll(filepath.Join(cfg.DataDir, "sandbox")); err != nil {
		return nil, fmt.Errorf("--data-dir %s: %w", cfg.DataDir, err)
	}
	for _, sub := range []string{"repos", "work", "sandbox"} {
		if err := os.MkdirAll(filepath.Join(cfg.DataDir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("--data-dir %s: %w", cfg.DataDir, err)
		}
	}
	for _, rp := range b.repos {
		if err := rp.prune(); err != nil {
			return nil, fmt.Errorf("--repo %s: %w", rp.cfg.Name, err)
		}
	}
	if f := cfg.GitHub.WebhookSecretFile; f != "" {
		secret, err := bettertest.ReadTokenFile(f)
		if err != nil {
			return nil, fmt.Errorf("--github-webhook-secret-file: %w", err)
		}
		b.hookSecret = secret
	}
	if f := cfg.GitHub.TokenFile; f != "" {
		token, err := bettertest.ReadTokenFile(f)
		if err != nil {
			return nil, fmt.Errorf("--github-token-file: %w", err)
		}
		b.github = &statusClient{api: cfg.GitHub.API, token: string(token), public: cfg.GitHub.PublicURL,
			client: &http.Client{Timeout: 30 * time.Second}}
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together: pass both to serve https, or neither")
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert %s --tls-key %s: %w", cfg.TLSCert, cfg.TLSKey, err)
		}
		b.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	st, interrupted, err := openStore(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if len(interrupted) > 0 {
		b.log.Info("marked runs the last boss left unfinished as interrupted", "count", len(interrupted))
	}
	b.interrupted = interrupted
	b.store = st
	if b.auth, err = newAuth(cfg, st, b.log); err != nil {
		st.close()
		return nil, err
	}
	if err := b.rejudgeAll(context.Background()); err != nil {
		st.close()
		return nil, fmt.Errorf("--data-dir %s: %w", cfg.DataDir, err)
	}
	return b, nil
}

// writeLibrary writes the embedded Python library to DATADIR/python, fresh
// each start so it always matches this binary, and returns that directory.
func writeLibrary(dataDir string) (string, error) {
	dir := filepath.Join(dataDir, "python")
	tmp, err := os.MkdirTemp(dataDir, ".python-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := os.CopyFS(tmp, python.Library()); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	return dir, os.Rename(tmp, dir)
}

func (b *Boss) scheme() string {
	if b.tls != nil {
		return "https"
	}
	return "http"
}

func (b *Boss) pipeline(name string) (bettertest.Pipeline, bool) {
	for _, p := range b.pipelines {
		if p.Name == name {
			return p, true
		}
	}
	return bettertest.Pipeline{}, false
}

// schedule triggers every pipeline every d, skipping one whose last run has
// not started yet: a slow queue must not pile up runs.
func (b *Boss) schedule(ctx context.Context, d time.Duration) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, p := range b.pipelines {
			if b.queued(p.Name) {
				b.log.Info("not scheduling: a run is still queued", "pipeline", p.Name)
				continue
			}
			if _, err := b.trigger(p.Name, "schedule"); err != nil {
				b.log.Error("scheduled run", "pipeline", p.Name, "err", err)
			}
		}
	}
}

func (b *Boss) queued(pipeline string) bool {
	return b.snapshot().queued[pipeline]
}
