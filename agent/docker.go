package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/bettertest/bettertest"
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
	removal sync.WaitGroup // containers being removed or started in the background
}

// outcome is what the worker logs about a run.
type outcome struct {
	code   int
	kind   string // exited, timeout, cancelled, shutdown, failed
	detail string
}

// run executes req in a container of its own, streaming its events to ev.
func (r *runner) run(ctx context.Context, id string, req bettertest.RunRequest, ev *eventStream) outcome {
	imageID, err := r.ensureImage(ctx, req.Image)
	if err != nil {
		return r.failBeforeStart(ctx, ev, err)
	}
	// Docker calls below must finish even when ctx ends: a cancelled run still
	// has a container to kill, drain and remove.
	dctx := context.WithoutCancel(ctx)
	containerID, err := r.pool.take(dctx, imageID)
	if err != nil {
		return r.failBeforeStart(ctx, ev, fmt.Errorf("Docker could not start a container of %s: %w", req.Image, err))
	}
	defer func() { // the next run of this image finds a container started
		if context.Cause(ctx) != errShutdown {
			r.pool.refill(imageID)
		}
	}()
	defer r.removeLater(containerID)
	// The name says which run a container serves, in docker ps and in its events.
	if err := r.docker.ContainerRename(dctx, containerID, "bettertest-"+id); err != nil {
		return r.failBeforeStart(ctx, ev, fmt.Errorf("Docker could not name the container: %w", err))
	}
	if err := ctx.Err(); err != nil { // the client left or the worker is stopping: don't start
		return r.failBeforeStart(ctx, ev, context.Cause(ctx))
	}
	exec, err := r.docker.ContainerExecCreate(dctx, containerID, execOptions(req))
	if err != nil {
		return r.failBeforeStart(ctx, ev, fmt.Errorf("Docker could not create the command's process: %w", err))
	}
	attach, err := r.docker.ContainerExecAttach(dctx, exec.ID, container.ExecAttachOptions{})
	if err != nil {
		return r.failBeforeStart(ctx, ev, fmt.Errorf("Docker could not start the command: %w", err))
	}
	defer attach.Close()
	started := time.Now()
	ev.send(bettertest.EventStarted, bettertest.StartedEvent{ID: id})
	// timeout_s limits the command itself, not the wait for a slot or a container.
	if req.TimeoutS > 0 {
		var cancelTimeout context.CancelFunc
		ctx, cancelTimeout = context.WithTimeoutCause(ctx, time.Duration(req.TimeoutS)*time.Second, errTimeout)
		defer cancelTimeout()
	}

	stopKill := context.AfterFunc(ctx, func() {
		kctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
		defer cancel()
		if err := r.docker.ContainerKill(kctx, containerID, "KILL"); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsConflict(err) {
			r.log.Warn("kill container", "id", id, "err", err)
		}
	})
	defer stopKill()

	// The output ends when the command and everything holding its stdout and
	// stderr have exited; Docker records the exit code before closing them.
	_, copyErr := stdcopy.StdCopy(streamWriter{ev, "stdout"}, streamWriter{ev, "stderr"}, newIdleFlusher(attach.Reader, ev))
	ev.flushPartial()

	out := outcome{code: -1, kind: "exited"}
	if copyErr != nil {
		out.kind, out.detail = "failed", fmt.Sprintf("lost the command's output stream from Docker: %v", copyErr)
	} else if inspect, err := r.docker.ContainerExecInspect(dctx, exec.ID); err != nil {
		out.kind, out.detail = "failed", fmt.Sprintf("lost contact with Docker while the command ran: %v", err)
	} else {
		out.code = inspect.ExitCode
	}
	if ctx.Err() != nil {
		out.kind, out.detail = cutShort(ctx, req)
	}
	if out.detail != "" && out.kind != "cancelled" {
		ev.send(bettertest.EventError, bettertest.ErrorEvent{Message: out.detail})
	}
	ev.send(bettertest.EventExit, bettertest.ExitEvent{Code: out.code, DurationMS: time.Since(started).Milliseconds()})
	return out
}

// cutShort explains why a started run's context ended.
func cutShort(ctx context.Context, req bettertest.RunRequest) (kind, detail string) {
	switch context.Cause(ctx) {
	case errTimeout:
		return "timeout", fmt.Sprintf("timed out after %d s and was killed: raise timeout_s if the command needs longer", req.TimeoutS)
	case errShutdown:
		return "shutdown", "the worker is shutting down and killed the command: run it again"
	}
	return "cancelled", "the client disconnected"
}

func (r *runner) failBeforeStart(ctx context.Context, ev *eventStream, err error) outcome {
	if ctx.Err() != nil {
		kind, detail := cutShort(ctx, bettertest.RunRequest{})
		if kind == "cancelled" {
			return outcome{code: -1, kind: kind, detail: detail}
		}
		err = errors.New(detail)
	}
	ev.send(bettertest.EventError, bettertest.ErrorEvent{Message: err.Error()})
	return outcome{code: -1, kind: "failed", detail: err.Error()}
}

// hostConfig runs every container under Docker's init (tini), which reaps
// orphaned processes. The worker streams output itself, so Docker keeps no log.
var hostConfig = &container.HostConfig{Init: ptr(true), LogConfig: container.LogConfig{Type: "none"}}

func ptr[T any](v T) *T { return &v }

// workdirCommand makes the working directory as Docker does for a new
// container's WorkingDir, then runs the command there under its own sh -c.
const workdirCommand = `mkdir -p -- "$1" && cd -- "$1" && exec sh -c "$2"`

func execOptions(req bettertest.RunRequest) container.ExecOptions {
	env := make([]string, 0, len(req.Env))
	for k, v := range req.Env {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	cmd := []string{"sh", "-c", req.Command}
	if req.Workdir != "" {
		cmd = []string{"sh", "-c", workdirCommand, "sh", req.Workdir, req.Command}
	}
	return container.ExecOptions{Cmd: cmd, Env: env, AttachStdout: true, AttachStderr: true}
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
