package agent

import (
	"context"
	"log/slog"
	"sync"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"
)

// Starting a container is most of a short run's time (runc and the containerd
// shim take about half a second here), so the worker keeps started, idle
// containers ready: a run execs its command into one instead of waiting for a
// start. Each container serves exactly one run and is then removed, so runs
// never share a filesystem or processes. Every finished run leaves a spare for
// the next run of its image; at most `limit` spares are kept, oldest dropped first.
type pool struct {
	docker *client.Client
	owner  string
	limit  int
	log    *slog.Logger
	wg     *sync.WaitGroup // tracks background starts and removals
	// hostConfig makes every container: limits, capabilities, network.
	hostConfig container.HostConfig

	mu     sync.Mutex
	spares []*spare // oldest first
	closed bool
}

// spare is a container that is starting or started and idle. Exactly one owner
// removes it: the run that takes it, eviction, or close.
type spare struct {
	image string
	ready chan struct{} // closed once id or err is set
	id    string
	err   error
}

// idleCommand keeps a spare alive, doing nothing, until its run's command is
// exec'd beside it and the container is removed. It needs only sh, which every
// run needs anyway. Docker's init is PID 1, so orphaned processes are reaped.
var idleCommand = []string{"sh", "-c", "read -r _"}

// take returns a started container of image (an image ID) for one run: a spare
// when one is ready or starting, else one started now.
func (p *pool) take(ctx context.Context, image string) (string, error) {
	p.mu.Lock()
	var s *spare
	for i := len(p.spares) - 1; i >= 0; i-- {
		if p.spares[i].image == image {
			s = p.spares[i]
			p.spares = append(p.spares[:i], p.spares[i+1:]...)
			break
		}
	}
	p.mu.Unlock()
	if s == nil {
		return p.start(ctx, image, nil, "")
	}
	<-s.ready // a spare's start is bounded by dockerTimeout
	return s.id, s.err
}

// refill starts a spare of image in the background.
func (p *pool) refill(image string) {
	s := &spare{image: image, ready: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.spares = append(p.spares, s)
	var evicted []*spare
	if n := len(p.spares) - p.limit; n > 0 {
		evicted = append(evicted, p.spares[:n]...)
		p.spares = append([]*spare(nil), p.spares[n:]...)
	}
	p.mu.Unlock()

	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
		defer cancel()
		s.id, s.err = p.start(ctx, image, nil, "")
		close(s.ready)
		if s.err != nil {
			p.log.Warn("start a spare container", "image", image, "err", s.err)
		}
	}()
	for _, old := range evicted {
		p.discardLater(old)
	}
}

// start creates and starts an idle container of image with mounts, on the
// runs' network unless network names another.
func (p *pool) start(ctx context.Context, image string, mounts []mount.Mount, network string) (string, error) {
	hc := p.hostConfig
	hc.Mounts = mounts
	if network != "" {
		hc.NetworkMode = container.NetworkMode(network)
	}
	created, err := p.docker.ContainerCreate(ctx, &container.Config{
		Image:      image,
		Entrypoint: idleCommand,
		OpenStdin:  true, // nothing ever writes: the idle read blocks until removal
		Labels:     map[string]string{LabelWorker: p.owner},
	}, &hc, nil, nil, "")
	if err != nil {
		return "", err
	}
	if err := p.docker.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		p.remove(created.ID)
		return "", err
	}
	return created.ID, nil
}

// close removes every spare, waiting for those still starting.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	spares := p.spares
	p.spares = nil
	p.mu.Unlock()
	for _, s := range spares {
		p.discardLater(s)
	}
}

func (p *pool) discardLater(s *spare) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.discard(s)
	}()
}

func (p *pool) discard(s *spare) {
	<-s.ready
	if s.err == nil {
		p.remove(s.id)
	}
}

func (p *pool) remove(containerID string) {
	removeContainer(p.docker, p.log, containerID)
}
