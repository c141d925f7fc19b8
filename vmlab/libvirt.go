package vmlab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
)

// URI is the one libvirt connection vmlab uses: the system instance, never a
// session and never LIBVIRT_DEFAULT_URI.
const URI = "qemu:///system"

// virsh runs virsh against URI and returns its stdout.
func virsh(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "virsh", append([]string{"--connect", URI, "--quiet"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("virsh %s: %s", strings.Join(args, " "), firstLine(stderr.String(), err))
	}
	return stdout.String(), nil
}

func firstLine(s string, err error) string {
	s = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), "error: "))
	if s == "" {
		return err.Error()
	}
	return strings.ReplaceAll(s, "\nerror: ", "; ")
}

// domainState is "running", "shut off", ... or "" when there is no such domain.
func domainState(ctx context.Context, name string) (string, error) {
	out, err := virsh(ctx, "domstate", name)
	if err != nil {
		if strings.Contains(err.Error(), "failed to get domain") || strings.Contains(err.Error(), "Domain not found") {
			return "", nil
		}
		return "", err
	}
	return strings.TrimSpace(out), nil
}

// lifecycle follows a domain's lifecycle events (virsh event --loop): libvirt
// tells when the domain starts, stops or crashes; nothing is polled.
type lifecycle struct {
	cmd    *exec.Cmd
	events chan string
}

func watchLifecycle(ctx context.Context, name string) (*lifecycle, error) {
	cmd := exec.CommandContext(ctx, "virsh", "--connect", URI, "event", "--domain", name, "--event", "lifecycle", "--loop")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("follow the lifecycle of %s: %w", name, err)
	}
	l := &lifecycle{cmd: cmd, events: make(chan string, 16)}
	go func() {
		defer close(l.events)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			// event 'lifecycle' for domain 'worker1': Stopped Shutdown
			if _, ev, ok := strings.Cut(sc.Text(), "': "); ok {
				l.events <- ev
			}
		}
		io.Copy(io.Discard, out)
	}()
	return l, nil
}

// stopped returns a channel that receives the event when the domain stops
// or crashes, and is closed when the watch ends without one.
func (l *lifecycle) stopped() <-chan string {
	ch := make(chan string, 1)
	go func() {
		defer close(ch)
		for ev := range l.events {
			if strings.HasPrefix(ev, "Stopped") || strings.HasPrefix(ev, "Crashed") {
				ch <- ev
				return
			}
		}
	}()
	return ch
}

func (l *lifecycle) close() {
	_ = l.cmd.Process.Kill()
	_ = l.cmd.Wait()
}

var errNoDomain = errors.New("no such VM")
