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

// Labels on every container the worker makes. LabelWorker's value identifies
// one worker, so several workers can share an engine and each one removes only
// its own leftovers when it starts.
const (
	LabelWorker = "dev.bettertest.worker"
	LabelRun    = "dev.bettertest.run"
)

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
	removal sync.WaitGroup // containers being removed after their run answered
}

// outcome is what the worker logs about a run.
type outcome struct {
	code   int
	kind   string // exited, timeout, cancelled, shutdown, failed
	detail string
}

// run executes req in a new container, streaming its events to ev.
func (r *runner) run(ctx context.Context, id string, req bettertest.RunRequest, ev *eventStream) outcome {
	if err := r.ensureImage(ctx, req.Image); err != nil {
		return r.failBeforeStart(ctx, ev, err)
	}
	// Docker calls below must finish even when ctx ends: a cancelled run still
	// has a container to kill, drain and remove.
	dctx := context.WithoutCancel(ctx)
	created, err := r.docker.ContainerCreate(dctx, containerConfig(req, r.owner, id),
		hostConfig, nil, nil, "bettertest-"+id)
	if err != nil {
		return r.failBeforeStart(ctx, ev, fmt.Errorf("Docker could not create the container: %w", err))
	}
	defer r.removeLater(created.ID)

	attach, err := r.docker.ContainerAttach(dctx, created.ID, container.AttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		return r.failBeforeStart(ctx, ev, fmt.Errorf("Docker could not attach to the container: %w", err))
	}
	defer attach.Close()
	waitC, waitErrC := r.docker.ContainerWait(dctx, created.ID, container.WaitConditionNextExit)
	if err := ctx.Err(); err != nil { // the client left or the worker is stopping: don't start
		return r.failBeforeStart(ctx, ev, context.Cause(ctx))
	}
	if err := r.docker.ContainerStart(dctx, created.ID, container.StartOptions{}); err != nil {
		return r.failBeforeStart(ctx, ev, fmt.Errorf("Docker could not start the container: %w", err))
	}
	started := time.Now()
	ev.send(bettertest.EventStarted, bettertest.StartedEvent{ID: id})

	stopKill := context.AfterFunc(ctx, func() {
		kctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
		defer cancel()
		if err := r.docker.ContainerKill(kctx, created.ID, "KILL"); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsConflict(err) {
			r.log.Warn("kill container", "id", id, "err", err)
		}
	})
	defer stopKill()

	_, copyErr := stdcopy.StdCopy(streamWriter{ev, "stdout"}, streamWriter{ev, "stderr"}, attach.Reader)
	ev.flushPartial()

	out := outcome{code: -1, kind: "exited"}
	select {
	case res := <-waitC:
		out.code = int(res.StatusCode)
		if res.Error != nil {
			out.kind, out.detail = "failed", res.Error.Message
		}
	case err := <-waitErrC:
		out.kind, out.detail = "failed", fmt.Sprintf("lost contact with Docker while the command ran: %v", err)
	}
	if copyErr != nil && out.kind == "exited" {
		out.kind, out.detail = "failed", fmt.Sprintf("lost the container's output stream: %v", copyErr)
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

// hostConfig runs every command under Docker's init (tini) so that it gets the
// signal handling and zombie reaping of an ordinary process, not of PID 1. The
// worker streams output itself, so Docker keeps no log of it.
var hostConfig = &container.HostConfig{Init: ptr(true), LogConfig: container.LogConfig{Type: "none"}}

func ptr[T any](v T) *T { return &v }

func containerConfig(req bettertest.RunRequest, owner, id string) *container.Config {
	env := make([]string, 0, len(req.Env))
	for k, v := range req.Env {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return &container.Config{
		Image:        req.Image,
		Cmd:          []string{"sh", "-c", req.Command},
		Env:          env,
		WorkingDir:   req.Workdir,
		Labels:       map[string]string{LabelWorker: owner, LabelRun: id},
		AttachStdout: true,
		AttachStderr: true,
	}
}

// ensureImage pulls the image only when the engine does not have it.
func (r *runner) ensureImage(ctx context.Context, ref string) error {
	_, err := r.docker.ImageInspect(ctx, ref)
	if err == nil {
		return nil
	}
	if !errdefs.IsNotFound(err) {
		return fmt.Errorf("Docker on this worker does not answer (%v): check that the Docker engine runs", err)
	}
	pull, err := r.docker.ImagePull(ctx, ref, image.PullOptions{})
	if err == nil {
		err = jsonmessage.DisplayJSONMessagesStream(pull, io.Discard, 0, false, nil)
		pull.Close()
	}
	if err != nil {
		return fmt.Errorf("image %s is not on this worker and pulling it failed (%v): load it there (docker load) or fix the name", ref, err)
	}
	return nil
}

func (r *runner) removeLater(containerID string) {
	r.removal.Add(1)
	go func() {
		defer r.removal.Done()
		r.remove(containerID)
	}()
}

func (r *runner) remove(containerID string) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
	defer cancel()
	err := r.docker.ContainerRemove(ctx, containerID, container.RemoveOptions{Force: true})
	if err != nil && !errdefs.IsNotFound(err) {
		r.log.Error("remove container", "container", containerID, "err", err)
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
