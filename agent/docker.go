package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/internal/mask"
)

// LabelWorker is on every container the worker makes. Its value identifies one
// worker, so several workers can share an engine and each one removes only its
// own leftovers when it starts. A container serving a run is named
// bettertest-RUNID.
const LabelWorker = "dev.bettertest.worker"

// Why a run's context ended, besides the client going away.
var (
	errTimeout  = errors.New("run timed out")
	errShutdown = errors.New("worker shutting down")
)

// dockerTimeout bounds the calls that clean up after a run, which must not
// depend on the run's (possibly cancelled) context.
const dockerTimeout = 30 * time.Second

type runner struct {
	docker  *client.Client
	owner   string
	log     *slog.Logger
	pool    *pool
	store   *store
	secrets string // DATA/secrets: one directory of secret files per running run
	limits  Limits // what one run may take
	// allowReachHost: a run may ask for Docker's default network (reach_host).
	allowReachHost bool
	removal        sync.WaitGroup // containers being removed or started in the background
}

// outcome is how a run ended: what its client is told last and what the
// worker logs.
type outcome struct {
	started   bool // the command started: an exit event ends the stream
	code      int
	kind      string // exited, cached, timeout, cancelled, shutdown, failed
	detail    string // sent as an error event unless the client left
	duration  time.Duration
	artifacts []bettertest.ArtifactEvent
	release   []func() // unpins the artifacts
}

func (o *outcome) succeeded() bool { return o.kind == "exited" && o.code == 0 && o.detail == "" }

// finish sends the events that end a run's stream.
func (o *outcome) finish(ev *eventStream) {
	if o.detail != "" && o.kind != "cancelled" {
		ev.send(bettertest.EventError, bettertest.ErrorEvent{Message: o.detail})
	}
	if o.started {
		ev.send(bettertest.EventExit, bettertest.ExitEvent{Code: o.code, DurationMS: o.duration.Milliseconds()})
	}
}

// run executes req in a container of its own, streaming its output to ev,
// and packs its outputs into artifacts once it exits 0. The caller sends the
// final events with outcome.finish.
func (r *runner) run(ctx context.Context, id, imageID string, req bettertest.RunRequest, ev *eventStream) (out outcome) {
	// Docker calls below must finish even when ctx ends: a cancelled run still
	// has a container to kill, drain and remove.
	dctx := context.WithoutCancel(ctx)
	var caches map[string]string
	if len(req.Caches) > 0 {
		names := make([]string, 0, len(req.Caches))
		for _, name := range req.Caches {
			names = append(names, name)
		}
		var release func()
		var err error
		caches, release, err = r.store.acquireCaches(ctx, names, func(name string) {
			ev.send(bettertest.EventCacheWait, bettertest.CacheWaitEvent{Name: name})
		})
		if err != nil {
			return failBeforeStart(ctx, err)
		}
		defer release()
	}
	mounts, removeSecrets, err := r.mounts(id, req, caches)
	defer removeSecrets()
	if err != nil {
		return failBeforeStart(ctx, err)
	}
	containerID, err := r.container(dctx, imageID, req, mounts)
	if err != nil {
		return failBeforeStart(ctx, err)
	}
	defer func() { // the next run of this image finds a container started
		if len(mounts) == 0 && !req.ReachHost && context.Cause(ctx) != errShutdown {
			r.pool.refill(imageID)
		}
	}()
	defer r.removeLater(containerID)
	// The name says which run a container serves, in docker ps and in its events.
	if err := r.docker.ContainerRename(dctx, containerID, "bettertest-"+id); err != nil {
		return failBeforeStart(ctx, fmt.Errorf("Docker could not name the container: %w", err))
	}
	if err := ctx.Err(); err != nil { // the client left or the worker is stopping: don't start
		return failBeforeStart(ctx, context.Cause(ctx))
	}
	if len(req.Services) > 0 {
		// The run's timeout bounds the wait for its services too.
		sctx, cancel := ctx, context.CancelFunc(func() {})
		if req.TimeoutS > 0 {
			sctx, cancel = context.WithTimeoutCause(ctx, time.Duration(req.TimeoutS)*time.Second,
				fmt.Errorf("the services were not ready within the run's timeout of %d s: raise the timeout, or see their output for why", req.TimeoutS))
		}
		services, err := r.startServices(sctx, id, req, containerID, ev)
		cancel()
		defer services.close()
		if err != nil {
			if sctx.Err() != nil && ctx.Err() == nil {
				err = context.Cause(sctx)
			}
			return failBeforeStart(ctx, err)
		}
	}
	limits, _ := r.limits.narrow(req.Limits) // checked when the request came
	if limits != r.limits {
		if _, err := r.docker.ContainerUpdate(dctx, containerID, container.UpdateConfig{Resources: limits.resources()}); err != nil {
			return failBeforeStart(ctx, fmt.Errorf("Docker could not set the run's limits: %w", err))
		}
	}
	info, err := r.docker.ContainerInspect(dctx, containerID)
	if err != nil {
		return failBeforeStart(ctx, fmt.Errorf("Docker could not tell the run's container: %w", err))
	}
	exec, err := r.docker.ContainerExecCreate(dctx, containerID, execOptions(req))
	if err != nil {
		return failBeforeStart(ctx, fmt.Errorf("Docker could not create the command's process: %w", err))
	}
	attach, err := r.docker.ContainerExecAttach(dctx, exec.ID, container.ExecAttachOptions{})
	if err != nil {
		return failBeforeStart(ctx, fmt.Errorf("Docker could not start the command: %w", err))
	}
	defer attach.Close()
	started := time.Now()
	ev.send(bettertest.EventStarted, bettertest.StartedEvent{ID: id})
	out = outcome{started: true, code: -1, kind: "exited"}
	defer func() { out.duration = time.Since(started) }()

	// A fork refused by the run's process limit ends it at once (a fork bomb
	// would otherwise go on until its timeout).
	cmdCtx, hitLimit := context.WithCancelCause(ctx)
	defer hitLimit(nil)
	stopWatch := limits.watchPIDs(info.State.Pid, func(detail string) { hitLimit(limitError{detail}) })
	defer stopWatch()
	// timeout_s limits the command itself, not the wait for a slot or a container.
	if req.TimeoutS > 0 {
		var cancelTimeout context.CancelFunc
		cmdCtx, cancelTimeout = context.WithTimeoutCause(cmdCtx, time.Duration(req.TimeoutS)*time.Second, errTimeout)
		defer cancelTimeout()
	}
	// The limits it ran into are read before the kill: the container's
	// cgroups go with it.
	killedOver := make(chan string, 1)
	stopKill := context.AfterFunc(cmdCtx, func() {
		killedOver <- limits.exceeded(info.State.Pid)
		kctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
		defer cancel()
		if err := r.docker.ContainerKill(kctx, containerID, "KILL"); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsConflict(err) {
			r.log.Warn("kill container", "id", id, "err", err)
		}
	})
	defer stopKill()

	// The output ends when the command and everything holding its stdout and
	// stderr have exited; Docker records the exit code before closing them.
	// Each stream is masked on its own, so a secret split across writes is still masked.
	secrets := mask.New(secretValues(req))
	stdout, stderr := maskedWriter{streamWriter{ev, "stdout"}, secrets.Stream()}, maskedWriter{streamWriter{ev, "stderr"}, secrets.Stream()}
	_, copyErr := stdcopy.StdCopy(stdout, stderr, newIdleFlusher(attach.Reader, ev))
	stdout.flush()
	stderr.flush()
	ev.flushPartial()

	if copyErr != nil {
		out.kind, out.detail = "failed", fmt.Sprintf("lost the command's output stream from Docker: %v", copyErr)
	} else if inspect, err := r.docker.ContainerExecInspect(dctx, exec.ID); err != nil {
		out.kind, out.detail = "failed", fmt.Sprintf("lost contact with Docker while the command ran: %v", err)
	} else {
		out.code = inspect.ExitCode
	}
	if cmdCtx.Err() != nil || !stopKill() { // timed out, or cancelled (the kill may have won the race with the end)
		out.kind, out.detail = cutShort(cmdCtx, req)
		if out.kind == "timeout" {
			// A limit it ran into is why it never finished (under cgroup v1
			// a fork bomb is not told until then: its cgroup sends no event).
			if detail := <-killedOver; detail != "" {
				out.kind, out.detail = "limit", detail
			}
			r.collectResults(ctx, containerID, req, ev, &out) // what a test wrote before it was stopped
		}
		return out
	}
	if out.kind != "exited" {
		return out
	}
	// The memory limit and /tmp's size stop a process, not the run: say so.
	if detail := limits.exceeded(info.State.Pid); detail != "" {
		out.detail = detail
	}
	r.collectResults(ctx, containerID, req, ev, &out)
	if out.code != 0 {
		return out
	}
	for _, p := range req.Outputs {
		art, release, err := r.collect(ctx, containerID, p)
		if err != nil {
			out.kind, out.detail = "failed", err.Error()
			if ctx.Err() != nil {
				out.kind, out.detail = cutShort(ctx, req)
			}
			return out
		}
		out.release = append(out.release, release)
		out.artifacts = append(out.artifacts, art)
		ev.send(bettertest.EventArtifact, art)
	}
	return out
}

// collectResults packs each results path the command made into an artifact.
// A path it did not make is skipped: a test that crashed writes no report,
// and its exit code already says it failed.
func (r *runner) collectResults(ctx context.Context, containerID string, req bettertest.RunRequest, ev *eventStream, out *outcome) {
	for _, p := range req.Results {
		art, release, err := r.collect(ctx, containerID, p)
		if err != nil {
			r.log.Info("results not collected", "path", p, "err", err)
			continue
		}
		out.release = append(out.release, release)
		ev.send(bettertest.EventResult, art)
	}
}

// container returns a started container for a run: a spare from the pool,
// or, when the run has files to mount, one made for it.
func (r *runner) container(ctx context.Context, imageID string, req bettertest.RunRequest, mounts []mount.Mount) (string, error) {
	if req.ReachHost {
		// A container of its own on Docker's default network: a spare is on
		// the isolated one, and a network is fixed when a container is made.
		id, err := r.pool.start(ctx, imageID, mounts, "bridge")
		if err != nil {
			return "", fmt.Errorf("Docker could not start a container of %s on its default network: %w", req.Image, err)
		}
		return id, nil
	}
	if len(mounts) == 0 {
		id, err := r.pool.take(ctx, imageID)
		if err != nil {
			return "", fmt.Errorf("Docker could not start a container of %s: %w", req.Image, err)
		}
		return id, nil
	}
	id, err := r.pool.start(ctx, imageID, mounts, "")
	if err != nil {
		return "", fmt.Errorf("Docker could not start a container of %s with its inputs and secrets: %w", req.Image, err)
	}
	return id, nil
}

// mounts lists what a run's container mounts: its inputs and its secret
// files, which are written for the run under DATA/secrets/ID and removed by
// the returned function, whatever happens.
func (r *runner) mounts(id string, req bettertest.RunRequest, caches map[string]string) (mounts []mount.Mount, remove func(), err error) {
	remove = func() {}
	for target, name := range req.Caches {
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: caches[name], Target: target})
	}
	for target, artifact := range req.Inputs {
		hexID, _ := parseID(artifact)
		source, err := r.store.tree(hexID)
		if err != nil {
			return nil, remove, fmt.Errorf("input %s: %w", target, err)
		}
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: source, Target: target, ReadOnly: true})
	}
	dir := filepath.Join(r.secrets, id)
	for i, s := range req.Secrets {
		if s.Path == "" {
			continue
		}
		if len(mounts) == len(req.Inputs)+len(req.Caches) { // the first secret file
			if err := os.Mkdir(dir, 0o700); err != nil {
				return nil, remove, fmt.Errorf("secret files: %w", err)
			}
			remove = func() {
				if err := os.RemoveAll(dir); err != nil {
					r.log.Error("remove a run's secret files", "dir", dir, "err", err)
				}
			}
		}
		source := filepath.Join(dir, strconv.Itoa(i))
		if err := os.WriteFile(source, []byte(s.Value), 0o400); err != nil {
			return nil, remove, fmt.Errorf("secret file %s: %w", s.Path, err)
		}
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: source, Target: s.Path, ReadOnly: true})
	}
	// Docker mounts in the order given: a path inside another goes after it.
	sort.Slice(mounts, func(i, j int) bool { return archiveLess(mounts[i].Target[1:], mounts[j].Target[1:]) })
	return mounts, remove, nil
}

// secretValues are the values to mask in a run's output.
func secretValues(req bettertest.RunRequest) [][]byte {
	values := make([][]byte, len(req.Secrets))
	for i, s := range req.Secrets {
		values[i] = []byte(s.Value)
	}
	return values
}

// collect packs one output path of a finished command into an artifact.
func (r *runner) collect(ctx context.Context, containerID, p string) (bettertest.ArtifactEvent, func(), error) {
	rc, _, err := r.docker.CopyFromContainer(ctx, containerID, p)
	if errdefs.IsNotFound(err) {
		return bettertest.ArtifactEvent{}, nil, fmt.Errorf("output %s does not exist after the command: make the command create it, or fix the path in outputs", p)
	}
	if err != nil {
		return bettertest.ArtifactEvent{}, nil, fmt.Errorf("output %s: Docker could not copy it out: %w", p, err)
	}
	defer rc.Close()
	in, err := r.store.create()
	if err != nil {
		return bettertest.ArtifactEvent{}, nil, r.storeError(p, fmt.Errorf("output %s: %w", p, err))
	}
	if err := repackOutput(rc, in, p); err != nil {
		in.abort()
		if errors.Is(err, errTooBig) {
			return bettertest.ArtifactEvent{}, nil, fmt.Errorf("output %s is larger than this worker's --cache-size: make it smaller or raise --cache-size", p)
		}
		return bettertest.ArtifactEvent{}, nil, r.storeError(p, err) // it names the path
	}
	hexID, _, release, err := in.commit("")
	if err != nil {
		return bettertest.ArtifactEvent{}, nil, r.storeError(p, fmt.Errorf("output %s: store it: %w", p, err))
	}
	return bettertest.ArtifactEvent{Path: p, ID: "sha256:" + hexID, Size: in.n}, release, nil
}

// storeError is err, why output p could not be stored, unless the disk is
// full: that is the worker's to fix, not the run's, so it says so.
func (r *runner) storeError(p string, err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("output %s: the worker's data dir %s is full: free space there, or give the worker a smaller --cache-size than its disk holds", p, r.store.dir)
	}
	return err
}

// cutShort explains why a started run's context ended.
func cutShort(ctx context.Context, req bettertest.RunRequest) (kind, detail string) {
	var limit limitError
	if errors.As(context.Cause(ctx), &limit) {
		return "limit", limit.detail
	}
	switch context.Cause(ctx) {
	case errTimeout:
		return "timeout", fmt.Sprintf("timed out after %d s and was killed: raise timeout_s if the command needs longer", req.TimeoutS)
	case errShutdown:
		return "shutdown", "the worker is shutting down and killed the command: run it again"
	}
	return "cancelled", "the client disconnected"
}

// failBeforeStart is the outcome of a run whose command never started.
func failBeforeStart(ctx context.Context, err error) outcome {
	if ctx.Err() != nil {
		kind, detail := cutShort(ctx, bettertest.RunRequest{})
		if kind == "cancelled" {
			return outcome{code: -1, kind: kind, detail: detail}
		}
		err = errors.New(detail)
	}
	return outcome{code: -1, kind: "failed", detail: err.Error()}
}

func ptr[T any](v T) *T { return &v }

// workdirCommand makes the working directory as Docker does for a new
// container's WorkingDir, then runs the command there under its own sh -c.
const workdirCommand = `mkdir -p -- "$1" && cd -- "$1" && exec sh -c "$2"`

func execOptions(req bettertest.RunRequest) container.ExecOptions {
	env := make([]string, 0, len(req.Env)+len(req.Secrets))
	for k, v := range req.Env {
		env = append(env, k+"="+v)
	}
	for _, s := range req.Secrets {
		if s.Env != "" {
			env = append(env, s.Env+"="+s.Value)
		}
	}
	sort.Strings(env)
	cmd := []string{"sh", "-c", req.Command}
	if req.Workdir != "" {
		cmd = []string{"sh", "-c", workdirCommand, "sh", req.Workdir, req.Command}
	}
	return container.ExecOptions{Cmd: cmd, Env: env, User: req.User, AttachStdout: true, AttachStderr: true}
}

// ensureImage returns the ID of the image ref names, pulling it only when the
// engine does not have it.
func (r *runner) ensureImage(ctx context.Context, ref string) (string, error) {
	img, err := r.docker.ImageInspect(ctx, ref)
	if err == nil {
		return img.ID, nil
	}
	if !errdefs.IsNotFound(err) {
		return "", fmt.Errorf("Docker on this worker does not answer (%v): check that the Docker engine runs", err)
	}
	pull, err := r.docker.ImagePull(ctx, ref, image.PullOptions{})
	if err == nil {
		err = jsonmessage.DisplayJSONMessagesStream(pull, io.Discard, 0, false, nil)
		pull.Close()
	}
	if err != nil {
		return "", fmt.Errorf("image %s is not on this worker and pulling it failed (%v): load it there (docker load) or fix the name", ref, err)
	}
	img, err = r.docker.ImageInspect(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("image %s was pulled but cannot be inspected: %w", ref, err)
	}
	return img.ID, nil
}

func (r *runner) removeLater(containerID string) {
	r.removal.Add(1)
	go func() {
		defer r.removal.Done()
		r.remove(containerID)
	}()
}

func (r *runner) remove(containerID string) {
	removeContainer(r.docker, r.log, containerID)
}

func removeContainer(docker *client.Client, log *slog.Logger, containerID string) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
	defer cancel()
	err := docker.ContainerRemove(ctx, containerID, container.RemoveOptions{Force: true})
	if err != nil && !errdefs.IsNotFound(err) {
		log.Error("remove container", "container", containerID, "err", err)
	}
}

// removeOrphans removes containers this worker left behind when it last died.
func (r *runner) removeOrphans(ctx context.Context) (int, error) {
	list, err := r.docker.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", LabelWorker+"="+r.owner)),
	})
	if err != nil {
		return 0, fmt.Errorf("list leftover containers: %w", err)
	}
	for _, c := range list {
		r.remove(c.ID)
	}
	return len(list), nil
}
