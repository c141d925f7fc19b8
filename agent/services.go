package agent

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/bettertest/bettertest"
)

// A run's services (a database, a queue) run beside its container on a
// network private to the run, "bettertest-task-RUNID" on the bridge
// "btt-RUNID[:11]":
//   - inter-container traffic is on within it: the run reaches each service
//     by its name (a network alias), and the services reach each other;
//   - the same firewall rule as the runs' network (INPUT -i BRIDGE -j DROP)
//     keeps everything on it from the worker's host; traffic to the world is
//     forwarded as for runs, so a service may download what it needs;
//   - it is made when the run starts and removed, with its rule and its
//     services, when the run ends, whatever happened.
// The run's own container stays on the runs' network too, and no other
// run's container is ever on a run's private network.
//
// Readiness is an event: each service gets a Docker health check, the ready
// command or a test of its listening sockets, and the run waits for the
// container's health_status event (or its death) from Docker's events API.

// labelRun marks a service container with the run it serves.
const labelRun = "dev.bettertest.run"

// healthInterval is how often Docker runs a service's ready check: the most
// a service's readiness is noticed late, against the cost of one exec in the
// service per interval while it lives.
const healthInterval = 250 * time.Millisecond

// runServices are the started services of one run.
type runServices struct {
	r          *runner
	network    string
	bridge     string
	task       string // the run's container, connected to the network
	containers []string
	output     sync.WaitGroup
}

// readyCommand is the health check of a service's ready condition. A port is
// ready when a socket listens on it, as /proc/net/tcp{,6} of the service's
// own network namespace say (state 0A is LISTEN): it needs only sh and grep.
func readyCommand(ready bettertest.Ready) string {
	if ready.Command != "" {
		return ready.Command
	}
	return fmt.Sprintf("grep -Eqs ':%04X [0:]+ 0A ' /proc/net/tcp /proc/net/tcp6", ready.Port)
}

// startServices starts req's services on a network of the run's own, waits
// until each is ready, and connects the run's container to it. The returned
// value's close removes them all, and must be called even on an error.
func (r *runner) startServices(ctx context.Context, runID string, req bettertest.RunRequest, taskContainer string, ev *eventStream) (*runServices, error) {
	s := &runServices{r: r, network: "bettertest-task-" + runID, bridge: "btt-" + runID[:11], task: taskContainer}
	dctx := context.WithoutCancel(ctx)
	if _, err := r.docker.NetworkCreate(dctx, s.network, network.CreateOptions{
		Driver:  "bridge",
		Labels:  map[string]string{LabelWorker: r.owner},
		Options: map[string]string{"com.docker.network.bridge.name": s.bridge},
	}); err != nil {
		return s, fmt.Errorf("make the run's network for its services: %w", err)
	}
	if err := dropInput(s.bridge); err != nil {
		return s, fmt.Errorf("the firewall rule of the run's services' network: %w", err)
	}

	// Subscribe before anything starts, so no event can be missed.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	msgs, errs := r.docker.Events(watchCtx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", "container"),
		filters.Arg("label", labelRun+"="+runID),
		filters.Arg("event", "health_status"),
		filters.Arg("event", "die"),
	)})

	names := make([]string, 0, len(req.Services))
	for name := range req.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	byID := map[string]string{}
	startedAt := map[string]time.Time{}
	for _, name := range names {
		id, err := s.start(ctx, runID, name, req.Services[name], ev)
		if err != nil {
			return s, err
		}
		byID[id] = name
		startedAt[name] = time.Now()
	}

	for waiting := len(names); waiting > 0; {
		select {
		case m := <-msgs:
			name, ok := byID[m.Actor.ID]
			if !ok {
				continue
			}
			switch {
			case m.Action == events.ActionHealthStatusHealthy:
				delete(byID, m.Actor.ID)
				waiting--
				ev.send(bettertest.EventServiceReady, bettertest.ServiceReadyEvent{Name: name, AfterMS: time.Since(startedAt[name]).Milliseconds()})
			case m.Action == events.ActionHealthStatusUnhealthy:
				return s, fmt.Errorf("service %s did not become ready: its ready check (%s) kept failing: see its output, labelled [%s]", name, readyCommand(req.Services[name].Ready), name)
			case m.Action == events.ActionDie:
				return s, fmt.Errorf("service %s exited with code %s before it was ready: see its output, labelled [%s]", name, m.Actor.Attributes["exitCode"], name)
			}
		case err := <-errs:
			if ctx.Err() != nil {
				return s, context.Cause(ctx)
			}
			return s, fmt.Errorf("lost Docker's events while waiting for the services: %w", err)
		}
	}
	if err := r.docker.NetworkConnect(dctx, s.network, taskContainer, nil); err != nil {
		return s, fmt.Errorf("connect the run's container to its services' network: %w", err)
	}
	return s, nil
}

// start creates and starts one service, streaming its output into the run's.
func (s *runServices) start(ctx context.Context, runID, name string, svc bettertest.Service, ev *eventStream) (string, error) {
	r := s.r
	imageID, err := r.ensureImage(ctx, svc.Image)
	if err != nil {
		return "", fmt.Errorf("service %s: %w", name, err)
	}
	cfg := &container.Config{
		Image:  imageID,
		Labels: map[string]string{LabelWorker: r.owner, labelRun: runID},
		Healthcheck: &container.HealthConfig{
			Test:        []string{"CMD-SHELL", readyCommand(svc.Ready)},
			Interval:    healthInterval,
			Timeout:     10 * time.Second,
			StartPeriod: 10 * time.Minute, // failures while it starts do not count
			Retries:     3,
		},
	}
	for k, v := range svc.Env {
		cfg.Env = append(cfg.Env, k+"="+v)
	}
	sort.Strings(cfg.Env)
	if svc.Command != "" {
		cfg.Entrypoint = []string{"sh", "-c", svc.Command}
	}
	hc := r.pool.hostConfig
	hc.NetworkMode = container.NetworkMode(s.network)
	created, err := r.docker.ContainerCreate(context.WithoutCancel(ctx), cfg, &hc, &network.NetworkingConfig{
		EndpointsConfig: map[string]*network.EndpointSettings{s.network: {Aliases: []string{name}}},
	}, nil, "bettertest-"+runID+"-"+name)
	if err != nil {
		return "", fmt.Errorf("service %s: Docker could not create its container: %w", name, err)
	}
	s.containers = append(s.containers, created.ID)
	attach, err := r.docker.ContainerAttach(ctx, created.ID, container.AttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		return "", fmt.Errorf("service %s: Docker could not attach to its output: %w", name, err)
	}
	s.output.Add(1)
	go func() {
		defer s.output.Done()
		defer attach.Close()
		out, errOut := &labelled{ev: ev, stream: "stdout", prefix: "[" + name + "] "}, &labelled{ev: ev, stream: "stderr", prefix: "[" + name + "] "}
		_, _ = stdcopy.StdCopy(out, errOut, attach.Reader) // it ends when the service does
		out.flush()
		errOut.flush()
	}()
	if err := r.docker.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return "", fmt.Errorf("service %s: Docker could not start it: %w", name, err)
	}
	return created.ID, nil
}

// close removes the services, their network and its rule.
func (s *runServices) close() {
	r := s.r
	for _, id := range s.containers {
		r.remove(id)
	}
	s.output.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
	defer cancel()
	if err := r.docker.NetworkDisconnect(ctx, s.network, s.task, true); err != nil && !errdefs.IsNotFound(err) && !strings.Contains(err.Error(), "is not connected") {
		r.log.Warn("disconnect a run from its services' network", "network", s.network, "err", err)
	}
	// Nothing is on the network any more: its rule can go first, so that
	// the network's destroy event says both are gone.
	if err := RemoveDropInput(s.bridge); err != nil {
		r.log.Warn("remove the firewall rule of a run's services' network", "bridge", s.bridge, "err", err)
	}
	if err := r.docker.NetworkRemove(ctx, s.network); err != nil && !errdefs.IsNotFound(err) {
		r.log.Warn("remove a run's services' network", "network", s.network, "err", err)
	}
}

// labelled writes a service's output into the run's, a whole line at a time,
// each line prefixed with the service's name.
type labelled struct {
	ev     *eventStream
	stream string
	prefix string
	held   []byte
}

func (w *labelled) Write(p []byte) (int, error) {
	w.held = append(w.held, p...)
	sent := false
	for {
		i := bytes.IndexByte(w.held, '\n')
		if i < 0 {
			break
		}
		w.ev.output(w.stream, append([]byte(w.prefix), w.held[:i+1]...))
		w.held = w.held[i+1:]
		sent = true
	}
	if sent {
		w.ev.flush()
	}
	return len(p), nil
}

func (w *labelled) flush() {
	if len(w.held) > 0 {
		w.ev.output(w.stream, append(append([]byte(w.prefix), w.held...), '\n'))
		w.held = nil
		w.ev.flush()
	}
}
