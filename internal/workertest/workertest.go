// Package workertest starts real `bettertest worker` processes for tests and
// talks to them. It waits on events only: the worker's "listening" log line on
// its stderr pipe, its sd_notify datagrams on a real NOTIFY_SOCKET, and its exit.
package workertest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"

	"github.com/bettertest/bettertest/agent"
	"github.com/bettertest/bettertest/internal/sse"
)

// Image is the local base image that scripts/setup-test-env.sh builds.
const Image = "bettertest/base:bookworm"

// Build compiles the bettertest binary into dir and returns its path.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "bettertest")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/bettertest/bettertest/cmd/bettertest")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // static, as make build: enrollment copies it to test hosts
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// Main builds the binary into a temporary directory, sets *bin to its path,
// runs the tests and exits with their status: a package's TestMain.
// Under -short, unless benchmarks were asked for (-bench, whose quick mode
// -short is), it builds nothing and *bin stays "": the tests that need the
// binary skip (see Integration), so -short runs the pure tests only.
func Main(m *testing.M, bin *string) {
	flag.Parse()
	if testing.Short() && flag.Lookup("test.bench").Value.String() == "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "bettertest-bin")
	if err != nil {
		panic(err)
	}
	*bin, err = Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Integration skips a test under -short: it needs what -short leaves out
// (the bettertest binary, Docker, test hosts, Chromium). Starting a worker,
// a boss, a test host or a Docker client calls it; a test that needs one of
// them before it starts any calls it first. A benchmark is never skipped:
// -short is its quick mode (make bench-smoke).
func Integration(t testing.TB) {
	t.Helper()
	if _, isTest := t.(*testing.T); isTest && testing.Short() {
		t.Skip("integration test (bettertest binary, Docker): skipped under -short")
	}
}

// Options shape a worker. The zero value is a worker with its own new token.
type Options struct {
	TokenFile   string // reuse a token file
	DataDir     string // reuse a data dir: its artifacts, cache and identity
	Listen      string // the address to listen on; 127.0.0.1:0 by default
	MaxParallel int
	CacheSize   string
	DockerHost  string
	Args        []string // more flags, e.g. --pids-limit 64
}

// Worker is a running worker process.
type Worker struct {
	URL       string
	Token     string
	TokenFile string
	DataDir   string
	Notify    <-chan string // sd_notify datagrams, in order
	*Process
}

// NewTokenFile writes a fresh random token to a 0600 file in dir.
func NewTokenFile(t testing.TB, dir string) string {
	t.Helper()
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	path := filepath.Join(dir, "token")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(b)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Start runs `bin worker` on 127.0.0.1:0 and returns once it is listening.
// The worker is stopped with SIGTERM when the test ends.
func Start(t testing.TB, bin string, opt Options) *Worker {
	t.Helper()
	Integration(t)
	w := &Worker{TokenFile: opt.TokenFile, DataDir: opt.DataDir}
	if w.TokenFile == "" {
		w.TokenFile = NewTokenFile(t, t.TempDir())
	}
	if w.DataDir == "" {
		w.DataDir = t.TempDir()
	}
	tok, err := os.ReadFile(w.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	w.Token = strings.TrimSpace(string(tok))

	// A unix socket path must stay short, so not under t.TempDir().
	sockDir, err := os.MkdirTemp("", "btnotify")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sockPath := filepath.Join(sockDir, "n")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	notify := make(chan string, 1024)
	w.Notify = notify
	go func() {
		defer close(notify)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			for _, line := range strings.Split(strings.TrimSpace(string(buf[:n])), "\n") {
				notify <- line
			}
		}
	}()

	listen := opt.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	args := []string{"worker", "--listen", listen, "--token-file", w.TokenFile, "--data-dir", w.DataDir}
	if opt.CacheSize != "" {
		args = append(args, "--cache-size", opt.CacheSize)
	}
	args = append(args, opt.Args...)
	if opt.MaxParallel > 0 {
		args = append(args, "--max-parallel", fmt.Sprint(opt.MaxParallel))
	}
	if opt.DockerHost != "" {
		args = append(args, "--docker-host", opt.DockerHost)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sockPath)
	var addr string
	w.Process, addr = StartProcess(t, "worker", cmd)
	go func() {
		<-w.exited
		conn.Close()
	}()
	w.URL = "http://" + addr
	t.Cleanup(func() {
		if err := w.Stop(); err != nil && !w.killed {
			t.Errorf("worker did not stop cleanly: %v\n%s", err, w.Stderr())
		}
		if left := Containers(t, w.DataDir); len(left) > 0 && !w.killed {
			t.Errorf("the stopped worker left containers behind: %v", left)
		}
		removeLeftovers(t, w.DataDir)
	})
	return w
}

// removeLeftovers removes what a worker that could not stop cleanly leaves
// on this machine (it was killed, or its Docker engine went away): its
// containers, its run network and that network's firewall rule. A real
// worker finds them again when it restarts on its data dir; a test's data
// dir is gone after the test, and each network left would hold one of
// Docker's few default address pools for good.
func removeLeftovers(t testing.TB, dataDir string) {
	t.Helper()
	owner, list := workerContainers(t, dataDir)
	ctx, docker := context.Background(), Docker(t)
	for _, c := range list {
		if err := docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
			t.Errorf("remove the stopped worker's container %s: %v", c.ID, err)
		}
	}
	switch err := docker.NetworkRemove(ctx, agent.RunNetworkName(owner)); {
	case err == nil, errdefs.IsNotFound(err):
	case errdefs.IsForbidden(err):
		// "has active endpoints" with no container left: Docker 20.10 now and
		// then keeps an endpoint of a removed container until it restarts.
		// That is the engine's bug, not the worker's; setup-test-env.sh
		// removes the network once the engine lets go of it.
		t.Logf("the stopped worker's network stays until Docker restarts: %v", err)
	default:
		t.Errorf("remove the stopped worker's network: %v", err)
	}
	if err := agent.RemoveDropInput(agent.RunBridgeName(owner)); err != nil {
		t.Errorf("remove the stopped worker's firewall rule: %v", err)
	}
}

// Process is a bettertest process that logs slog lines on stderr.
type Process struct {
	cmd      *exec.Cmd
	exited   chan struct{}
	waitErr  error
	mu       sync.Mutex
	stderr   bytes.Buffer
	logged   chan struct{} // closed and replaced with each line logged
	stopOnce sync.Once
	killed   bool
}

// StartProcess starts cmd and returns once it logs that it listens, with the
// address it listens on. The test fails if it exits first.
func StartProcess(t testing.TB, what string, cmd *exec.Cmd) (*Process, string) {
	t.Helper()
	Integration(t)
	p := &Process{cmd: cmd, exited: make(chan struct{}), logged: make(chan struct{})}
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.stderr.WriteString(line + "\n")
			close(p.logged)
			p.logged = make(chan struct{})
			p.mu.Unlock()
			if strings.Contains(line, "msg=listening ") {
				listening <- field(line, "addr")
			}
		}
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	select {
	case addr := <-listening:
		return p, addr
	case <-p.exited:
		t.Fatalf("%s exited before listening: %v\n%s", what, p.waitErr, p.Stderr())
	}
	return nil, ""
}

// field returns key's value in a slog text line.
func field(line, key string) string {
	_, rest, _ := strings.Cut(line, " "+key+"=")
	v, _, _ := strings.Cut(rest, " ")
	return v
}

// WaitLog returns once the process has logged substr n times in all.
func (p *Process) WaitLog(t testing.TB, substr string, n int) {
	t.Helper()
	bound := time.NewTimer(Deadline)
	defer bound.Stop()
	for {
		p.mu.Lock()
		count, logged := strings.Count(p.stderr.String(), substr), p.logged
		p.mu.Unlock()
		if count >= n {
			return
		}
		select {
		case <-logged:
		case <-p.exited:
			t.Fatalf("the process exited having logged %q %d times, not %d:\n%s", substr, count, n, p.Stderr())
		case <-bound.C:
			t.Fatalf("the process logged %q %d times in %v, not %d:\n%s", substr, count, Deadline, n, p.Stderr())
		}
	}
}

// Stderr is everything the process logged so far.
func (p *Process) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// Stop sends SIGTERM and waits for the process to exit; it returns the exit error.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() { _ = p.cmd.Process.Signal(syscall.SIGTERM) })
	<-p.exited
	return p.waitErr
}

// Kill sends SIGKILL, as a crash would, and waits for the process to die.
func (p *Process) Kill() {
	p.stopOnce.Do(func() {
		p.killed = true
		_ = p.cmd.Process.Kill()
	})
	<-p.exited
}

// Exited is closed once the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Do sends a request with the worker's token.
func (w *Worker) Do(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, w.URL+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+w.Token)
	return http.DefaultClient.Do(req)
}

// Stream is a /run response being read.
type Stream struct {
	Resp   *http.Response
	cancel context.CancelFunc
	r      *sse.Reader
}

// Run posts a run request (any JSON-encodable value) and returns its stream.
// The test fails unless the answer is 200 text/event-stream.
func (w *Worker) Run(t testing.TB, req any) *Stream {
	t.Helper()
	return w.Post(t, "/run", req)
}

// Post posts a request to an endpoint that answers with an event stream
// (/run, /images) and returns the stream, as Run does.
func (w *Worker) Post(t testing.TB, path string, req any) *Stream {
	t.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL+path, bytes.NewReader(body))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer "+w.Token)
	return openStream(t, r, cancel)
}

// openStream sends req, whose context cancel ends, and returns its event
// stream. The test fails unless the answer is 200 text/event-stream.
func openStream(t testing.TB, req *http.Request, cancel context.CancelFunc) *Stream {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		cancel()
		t.Fatalf("%s %s: %s %s", req.Method, req.URL.Path, resp.Status, b)
	}
	s := &Stream{Resp: resp, cancel: cancel, r: sse.NewReader(resp.Body)}
	t.Cleanup(s.Close)
	return s
}

// Next returns the next event; the test fails if the stream ends or errs.
func (s *Stream) Next(t testing.TB) sse.Event {
	t.Helper()
	ev, err := s.r.Next()
	if err != nil {
		t.Fatalf("reading the run's events: %v", err)
	}
	return ev
}

// Read returns the next event, or the error that ended the stream.
func (s *Stream) Read() (sse.Event, error) { return s.r.Next() }

// All reads every remaining event until the stream ends.
func (s *Stream) All(t testing.TB) []sse.Event {
	t.Helper()
	var evs []sse.Event
	for {
		ev, err := s.r.Next()
		if err == io.EOF {
			return evs
		}
		if err != nil {
			t.Fatalf("reading the run's events after %v: %v", evs, err)
		}
		evs = append(evs, ev)
	}
}

// Close disconnects from the stream, which cancels the run.
func (s *Stream) Close() {
	s.cancel()
	s.Resp.Body.Close()
}

// Deadline is a generous bound for tests that wait on events which should
// come at once; it only turns a hang into a failure.
const Deadline = 2 * time.Minute

// Docker returns a client for the local engine.
func Docker(t testing.TB) *client.Client {
	t.Helper()
	Integration(t)
	cli, err := client.NewClientWithOpts(client.WithHost(client.DefaultDockerHost), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Containers lists the names of the containers that belong to the worker
// whose data dir is dataDir.
func Containers(t testing.TB, dataDir string) []string {
	t.Helper()
	_, list := workerContainers(t, dataDir)
	var names []string
	for _, c := range list {
		names = append(names, strings.Join(c.Names, ","))
	}
	return names
}

// workerContainers are the containers of the worker on dataDir, with its identity.
func workerContainers(t testing.TB, dataDir string) (string, []container.Summary) {
	t.Helper()
	owner, err := agent.WorkerIdentity(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	list, err := Docker(t).ContainerList(context.Background(), container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", agent.LabelWorker+"="+owner)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return owner, list
}

// Pid is the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Secret values for tests of masking: a key, and a key that is base64 text
// as it is (a test may well keep its keys that way).
const (
	SecretKey = "deploy-KEY-7f3a9c"
	SecretB64 = "c2VjcmV0LWtleS1ieXRlcw=="
)
