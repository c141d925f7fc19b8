package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/agent"
	"github.com/bettertest/bettertest/internal/sse"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

var bin string // the bettertest binary under test

func TestMain(m *testing.M) { wt.Main(m, &bin) }

func run(command string) bettertest.RunRequest {
	return bettertest.RunRequest{Image: wt.Image, Command: command}
}

// decoded is an event with its data decoded, for exact comparisons.
type decoded struct {
	Name string
	Data any
}

func decode(t *testing.T, ev sse.Event) decoded {
	t.Helper()
	var v any
	switch ev.Name {
	case bettertest.EventQueued:
		v = &bettertest.QueuedEvent{}
	case bettertest.EventStarted:
		v = &bettertest.StartedEvent{}
	case bettertest.EventOutput:
		v = &bettertest.OutputEvent{}
	case bettertest.EventError:
		v = &bettertest.ErrorEvent{}
	case bettertest.EventExit:
		v = &bettertest.ExitEvent{}
	case bettertest.EventArtifact, bettertest.EventResult:
		v = &bettertest.ArtifactEvent{}
	case bettertest.EventUncached:
		v = &bettertest.UncachedEvent{}
	case bettertest.EventCached:
		v = &bettertest.CachedEvent{}
	case bettertest.EventImage:
		v = &bettertest.ImageEvent{}
	case bettertest.EventServiceReady:
		v = &bettertest.ServiceReadyEvent{}
	case bettertest.EventCacheWait:
		v = &bettertest.CacheWaitEvent{}
	default:
		t.Fatalf("unknown event %q", ev.Name)
	}
	dec := json.NewDecoder(strings.NewReader(ev.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("event %s data %q: %v", ev.Name, ev.Data, err)
	}
	return decoded{ev.Name, reflectElem(v)}
}

func reflectElem(v any) any { return reflect.ValueOf(v).Elem().Interface() }

// normalize decodes events and blanks the values no test can know in advance
// (run ids, durations), after checking they are there.
func normalize(t *testing.T, evs []sse.Event) []decoded {
	t.Helper()
	var out []decoded
	for _, ev := range evs {
		d := decode(t, ev)
		switch v := d.Data.(type) {
		case bettertest.StartedEvent:
			if len(v.ID) != 12 {
				t.Errorf("started id %q is not 12 hex digits", v.ID)
			}
			d.Data = bettertest.StartedEvent{}
		case bettertest.ExitEvent:
			if v.DurationMS < 0 {
				t.Errorf("negative duration %d", v.DurationMS)
			}
			v.DurationMS = 0
			d.Data = v
		case bettertest.UncachedEvent:
			checkDigest(t, v.Key)
			v.Key = ""
			d.Data = v
		case bettertest.CachedEvent:
			checkDigest(t, v.Key)
			if len(v.RunID) != 12 || v.DurationMS < 0 {
				t.Errorf("cached event %+v: want the run id and duration of the build", v)
			}
			d.Data = bettertest.CachedEvent{}
		}
		out = append(out, d)
	}
	return out
}

func checkDigest(t *testing.T, id string) {
	t.Helper()
	if h, ok := strings.CutPrefix(id, "sha256:"); !ok || len(h) != 64 {
		t.Errorf("%q is not a sha256 id", id)
	}
}

func started() decoded { return decoded{"started", bettertest.StartedEvent{}} }
func stdout(s string) decoded {
	return decoded{"output", bettertest.OutputEvent{Stream: "stdout", Text: s}}
}
func stderr(s string) decoded {
	return decoded{"output", bettertest.OutputEvent{Stream: "stderr", Text: s}}
}
func exit(code int) decoded { return decoded{"exit", bettertest.ExitEvent{Code: code}} }
func errorEv(msg string) decoded {
	return decoded{"error", bettertest.ErrorEvent{Message: msg}}
}

func assertEvents(t *testing.T, got []sse.Event, want ...decoded) {
	t.Helper()
	if n := normalize(t, got); !reflect.DeepEqual(n, want) {
		t.Fatalf("events:\n got %+v\nwant %+v", n, want)
	}
}

// joined concatenates the output of one stream, however it was chunked.
func joined(t *testing.T, evs []sse.Event, stream string) string {
	var b strings.Builder
	for _, ev := range evs {
		if d := decode(t, ev); d.Name == "output" && d.Data.(bettertest.OutputEvent).Stream == stream {
			b.WriteString(d.Data.(bettertest.OutputEvent).Text)
		}
	}
	return b.String()
}

func TestRunStreamsEveryEventType(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	// The sleeps order writes to two different pipes; nothing waits on them.
	s := w.Run(t, run("echo out; sleep 0.2; echo err >&2; sleep 0.2; printf 'no newline'; exit 7"))
	assertEvents(t, s.All(t), started(), stdout("out\n"), stderr("err\n"), stdout("no newline"), exit(7))
}

func TestInterleavedStreamsKeepTheirOrder(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	s := w.Run(t, run("for i in 1 2 3; do echo o$i; sleep 0.25; echo e$i >&2; sleep 0.25; done"))
	assertEvents(t, s.All(t), started(),
		stdout("o1\n"), stderr("e1\n"), stdout("o2\n"), stderr("e2\n"), stdout("o3\n"), stderr("e3\n"), exit(0))
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	for command, code := range map[string]int{"true": 0, "false": 1, "exit 255": 255, "kill -9 $$": 137, "no-such-command": 127} {
		t.Run(command, func(t *testing.T) {
			t.Parallel()
			evs := w.Run(t, run(command+" 2>/dev/null")).All(t)
			if got := normalize(t, evs); !reflect.DeepEqual(got[len(got)-1], exit(code)) {
				t.Fatalf("%q: got %+v, want exit %d", command, got, code)
			}
		})
	}
}

func TestEnvAndWorkdir(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	req := run(`pwd; printf '%s|%s\n' "$GREETING" "$EMPTY"`)
	req.Env = map[string]string{"GREETING": "hello, world", "EMPTY": ""}
	req.Workdir = "/work/dir"
	evs := w.Run(t, req).All(t)
	if got := joined(t, evs, "stdout"); got != "/work/dir\nhello, world|\n" {
		t.Fatalf("stdout %q", got)
	}
}

func TestUTF8SplitAcrossWritesArrivesWhole(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	// "é" is c3 a9: the two bytes are written separately, the second later.
	s := w.Run(t, run(`printf '\303'; sleep 0.2; printf '\251!\n'; sleep 0.2; printf '\377\n' >&2`))
	assertEvents(t, s.All(t), started(), stdout("é!\n"), stderr("\uFFFD\n"), exit(0))
}

// removed returns a channel that is closed when the run's container is
// destroyed, from Docker's own event stream (replayed since the test began, so
// no event can be missed).
func removed(t *testing.T, since time.Time, runID string) <-chan struct{} {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	msgs, errs := wt.Docker(t).Events(ctx, events.ListOptions{
		Since: fmt.Sprint(since.Unix()),
		Filters: filters.NewArgs(filters.Arg("type", "container"), filters.Arg("event", "destroy"),
			filters.Arg("container", "bettertest-"+runID)),
	})
	done := make(chan struct{})
	go func() {
		select {
		case <-msgs:
			close(done)
		case err := <-errs:
			t.Errorf("docker events: %v", err)
		}
	}()
	return done
}

func waitFor(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(wt.Deadline):
		t.Fatalf("gave up waiting for %s", what)
	}
}

func TestOutputStreamsWhileTheCommandRuns_DisconnectCancels(t *testing.T) {
	t.Parallel()
	begin := time.Now()
	w := wt.Start(t, bin, wt.Options{})
	s := w.Run(t, run("echo first; sleep 300; echo never"))
	id := decode(t, s.Next(t)).Data.(bettertest.StartedEvent).ID
	if got := decode(t, s.Next(t)); !reflect.DeepEqual(got, stdout("first\n")) {
		t.Fatalf("got %+v", got)
	}
	gone := removed(t, begin, id)
	s.Close()
	waitFor(t, "the container to be removed after the client left", gone)
	if left := wt.Containers(t, w.DataDir); slices.Contains(left, "/bettertest-"+id) {
		t.Fatalf("the run's container is still there: %v", left)
	}
}

func TestTimeoutKillsAndSaysSo(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	req := run("echo a; sleep 300")
	req.TimeoutS = 1
	assertEvents(t, w.Run(t, req).All(t), started(), stdout("a\n"),
		errorEv("timed out after 1 s and was killed: raise timeout_s if the command needs longer"), exit(137))
}

func TestMissingImageThatCannotBePulled(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	// Nothing listens on 127.0.0.1:1, so the pull fails at once without leaving the machine.
	req := run("true")
	req.Image = "127.0.0.1:1/bettertest/missing:1"
	assertEvents(t, w.Run(t, req).All(t), errorEv(`image 127.0.0.1:1/bettertest/missing:1 is not on this worker and pulling it failed `+
		`(Error response from daemon: Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused): `+
		`load it there (docker load) or fix the name`))
}

func TestHealth(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{MaxParallel: 3})
	v, err := wt.Docker(t).ServerVersion(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := w.Do(context.Background(), http.MethodGet, "/health", nil)
	if err != nil {
		t.Fatal(err)
	}
	var h bettertest.Health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	want := bettertest.Health{Ready: true, Version: "dev", Docker: v.Version, Running: 0, Capacity: 3}
	if resp.StatusCode != 200 || h != want {
		t.Fatalf("got %d %+v, want 200 %+v", resp.StatusCode, h, want)
	}
}

func TestEveryEndpointNeedsTheToken(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	const body = `{"error":"missing or wrong token: send the header Authorization: Bearer TOKEN, with TOKEN from the worker's token file"}` + "\n"
	for _, path := range []string{"POST /run", "GET /health", "GET /nope", "DELETE /run"} {
		method, p, _ := strings.Cut(path, " ")
		for name, header := range map[string]string{
			"none": "", "wrong": "Bearer " + w.Token + "x", "prefix": "Bearer " + w.Token[:5],
			"basic": "Basic " + w.Token, "lowercase scheme": "bearer " + w.Token, "empty": "Bearer ",
		} {
			req, _ := http.NewRequest(method, w.URL+p, strings.NewReader(`{"image":"x","command":"true"}`))
			if header != "" {
				req.Header.Set("Authorization", header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 401 || string(got) != body || resp.Header.Get("WWW-Authenticate") != `Bearer realm="bettertest"` {
				t.Errorf("%s with %s token: %d %s", path, name, resp.StatusCode, got)
			}
		}
	}
}

var zeros = strings.Repeat("0", 64)

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestBadInputGetsAClearError(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	const prefix = "request body is not a valid run request: "
	cases := []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"empty body", "POST", "/run", ``, 400, prefix + `the body is empty; send a JSON object such as {"image": "debian:12", "command": "echo hi"}`},
		{"malformed", "POST", "/run", `{"image": nope}`, 400, prefix + "malformed JSON at byte 12"},
		{"cut short", "POST", "/run", `{"image": "x"`, 400, prefix + "the JSON object is cut short"},
		{"not an object", "POST", "/run", `[1]`, 400, prefix + `the body must be a JSON object, not array`},
		{"wrong type", "POST", "/run", `{"image": 5, "command": "true"}`, 400, prefix + `field "image" must be string, not number`},
		{"unknown field", "POST", "/run", `{"image": "x", "command": "true", "cmd": "y"}`, 400, prefix + `unknown field "cmd"; the fields are image, command, env, workdir, timeout_s, inputs, outputs, results, cache, name, secrets, limits, user, reach_host, services, caches`},
		{"results of a build", "POST", "/run", `{"image": "x", "command": "true", "results": ["/r.xml"], "cache": true}`, 400, `"results" are for tests, which always run: a build ("cache": true) cannot have them`},
		{"two objects", "POST", "/run", `{"image": "x", "command": "true"} {}`, 400, "request body has data after the JSON object: send exactly one object"},
		{"missing image", "POST", "/run", `{"command": "true"}`, 400, `"image" is required: name a Docker image present on the worker, e.g. "debian:12"`},
		{"bad image", "POST", "/run", `{"image": "Not An Image", "command": "true"}`, 400, `"image" "Not An Image" is not a valid image reference (invalid reference format: repository name (library/Not An Image) must be lowercase): use NAME[:TAG] or NAME@sha256:DIGEST`},
		{"missing command", "POST", "/run", `{"image": "x"}`, 400, `"command" is required: a shell command, run as sh -c COMMAND`},
		{"blank command", "POST", "/run", `{"image": "x", "command": "  "}`, 400, `"command" is required: a shell command, run as sh -c COMMAND`},
		{"NUL in command", "POST", "/run", `{"image": "x", "command": "a\u0000b"}`, 400, `"command" contains a NUL byte, which no shell can run: remove it`},
		{"bad env key", "POST", "/run", `{"image": "x", "command": "true", "env": {"A=B": "c"}}`, 400, `"env" key "A=B" is not a variable name: it must be non-empty and contain no "=" or NUL`},
		{"relative workdir", "POST", "/run", `{"image": "x", "command": "true", "workdir": "src"}`, 400, `"workdir" "src" must be an absolute path inside the container, e.g. "/src"`},
		{"negative timeout", "POST", "/run", `{"image": "x", "command": "true", "timeout_s": -1}`, 400, `"timeout_s" -1 is out of range: use 0 (no timeout) up to 604800 seconds`},
		{"oversized", "POST", "/run", `{"image": "x", "command": "` + strings.Repeat("a", agent.MaxRequestBytes) + `"}`, 413, `request body is larger than 1048576 bytes: send the command, not data: http: request body too large`},
		{"relative input", "POST", "/run", `{"image": "x", "command": "true", "inputs": {"src": "sha256:` + zeros + `"}}`, 400, `"inputs" path "src" must be a clean absolute path in the container other than "/", e.g. "/src"`},
		{"input at /", "POST", "/run", `{"image": "x", "command": "true", "inputs": {"/": "sha256:` + zeros + `"}}`, 400, `"inputs" path "/" must be a clean absolute path in the container other than "/", e.g. "/src"`},
		{"bad input id", "POST", "/run", `{"image": "x", "command": "true", "inputs": {"/src": "abc"}}`, 400, `"inputs" /src: "abc" is not an artifact id: use "sha256:" and 64 lowercase hex digits`},
		{"unclean output", "POST", "/run", `{"image": "x", "command": "true", "outputs": ["/out/../etc"]}`, 400, `"outputs" path "/out/../etc" must be a clean absolute path in the container other than "/", e.g. "/src"`},
		{"output twice", "POST", "/run", `{"image": "x", "command": "true", "outputs": ["/out", "/out"]}`, 400, `"outputs" names /out twice: name each path once`},
		{"name without cache", "POST", "/run", `{"image": "x", "command": "true", "name": "p/t"}`, 400, `"name" names a build: send it with "cache": true, or leave it out`},
		{"missing input", "POST", "/run", `{"image": "x", "command": "true", "inputs": {"/src": "sha256:` + zeros + `"}}`, 422, `input /src: artifact sha256:` + zeros + ` is not on this worker: upload it first (PUT /artifacts/` + zeros + `)`},
		{"wrong method", "GET", "/run", ``, 405, `GET is not allowed on /run: use POST /run, POST /images, GET /health, GET /events, GET, HEAD or PUT /artifacts/SHA256, or DELETE /caches/NAME`},
		{"wrong method on health", "PUT", "/health", ``, 405, `PUT is not allowed on /health: use POST /run, POST /images, GET /health, GET /events, GET, HEAD or PUT /artifacts/SHA256, or DELETE /caches/NAME`},
		{"unknown path", "GET", "/runs", ``, 404, `no such endpoint /runs: the worker serves POST /run, POST /images, GET /health, GET /events, GET, HEAD and PUT /artifacts/SHA256 and DELETE /caches/NAME`},
		{"not a digest", "GET", "/artifacts/abc", ``, 400, `"abc" is not a sha256 digest: use /artifacts/ and 64 lowercase hex digits`},
		{"unknown artifact", "GET", "/artifacts/" + zeros, ``, 404, `artifact sha256:` + zeros + ` is not on this worker: upload it with PUT /artifacts/` + zeros},
		{"not a tar", "PUT", "/artifacts/" + sha("hello"), `hello`, 400, `artifact sha256:` + sha("hello") + ` was not stored: not an artifact archive: not a tar archive: unexpected EOF`},
		{"wrong digest", "PUT", "/artifacts/" + zeros, `hello`, 400, `artifact sha256:` + zeros + ` was not stored: digest mismatch: the content's sha256 is ` + sha("hello") + `, not ` + zeros + `: the upload was damaged, or the URL names another artifact`},
	}
	for _, c := range cases {
		resp, err := w.Do(context.Background(), c.method, c.path, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		var got bettertest.APIError
		derr := json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if resp.StatusCode != c.status || derr != nil || got.Error != c.msg || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: got %d %q (%v), want %d %q", c.name, resp.StatusCode, got.Error, derr, c.status, c.msg)
		}
	}
	// The worker is still fine, and made no container.
	assertEvents(t, w.Run(t, run("echo ok")).All(t), started(), stdout("ok\n"), exit(0))
}

func TestMoreRunsThanSlotsWaitTheirTurn(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{MaxParallel: 1})
	first := w.Run(t, run("echo first; sleep 300"))
	assertEvents(t, []sse.Event{first.Next(t), first.Next(t)}, started(), stdout("first\n"))

	second := w.Run(t, run("echo second"))
	assertEvents(t, []sse.Event{second.Next(t)}, decoded{"queued", bettertest.QueuedEvent{Position: 1}})
	resp, err := w.Do(context.Background(), http.MethodGet, "/health", nil)
	if err != nil {
		t.Fatal(err)
	}
	var h bettertest.Health
	_ = json.NewDecoder(resp.Body).Decode(&h)
	if h.Running != 1 || h.Capacity != 1 {
		t.Fatalf("health while one runs and one waits: %+v", h)
	}
	first.Close() // frees the slot
	assertEvents(t, second.All(t), started(), stdout("second\n"), exit(0))
}

func TestLeftoverContainersAreRemovedAtStart(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	crashed := wt.Start(t, bin, wt.Options{DataDir: dataDir})
	s := crashed.Run(t, run("sleep 300"))
	id := decode(t, s.Next(t)).Data.(bettertest.StartedEvent).ID
	crashed.Kill()
	if left := wt.Containers(t, dataDir); !reflect.DeepEqual(left, []string{"/bettertest-" + id}) {
		t.Fatalf("after the crash, containers %v, want the run's", left)
	}
	next := wt.Start(t, bin, wt.Options{DataDir: dataDir})
	// Leftovers are removed before the worker listens, so they are gone now.
	if left := wt.Containers(t, dataDir); len(left) != 0 {
		t.Fatalf("containers left after restart: %v", left)
	}
	if !strings.Contains(next.Stderr(), `msg="removed containers left by an earlier run of this worker" count=1`) {
		t.Fatalf("restart log does not report the removal:\n%s", next.Stderr())
	}
}

func TestSIGTERMStopsRunsAndTellsSystemd(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{MaxParallel: 2})
	s := w.Run(t, run("echo a; sleep 300"))
	assertEvents(t, []sse.Event{s.Next(t), s.Next(t)}, started(), stdout("a\n"))
	if err := w.Stop(); err != nil {
		t.Fatalf("worker exit: %v\n%s", err, w.Stderr())
	}
	assertEvents(t, s.All(t), errorEv("the worker is shutting down and killed the command: run it again"), exit(137))
	var states []string
	for st := range w.Notify {
		states = append(states, st)
	}
	want := []string{"READY=1", "STATUS=running 0 of 2", "STATUS=running 1 of 2",
		"STOPPING=1", "STATUS=stopping: killing running containers", "STATUS=running 0 of 2"}
	if !reflect.DeepEqual(states, want) {
		t.Fatalf("sd_notify states\n got %q\nwant %q", states, want)
	}
}

func TestRefusesToStartWithoutAGoodTokenFile(t *testing.T) {
	wt.Integration(t)
	t.Parallel()
	dir := t.TempDir()
	empty, loose := filepath.Join(dir, "empty"), filepath.Join(dir, "loose")
	os.WriteFile(empty, []byte(" \n"), 0o600)
	os.WriteFile(loose, []byte("secret"), 0o644)
	os.Chmod(loose, 0o644)
	missing := filepath.Join(dir, "missing")
	for file, want := range map[string]string{
		missing: fmt.Sprintf("bettertest worker: token file %s does not exist: create it with (umask 077; head -c 32 /dev/urandom | base64 > %s)\n", missing, missing),
		empty:   fmt.Sprintf("bettertest worker: token file %s is empty: put a token in it, e.g. head -c 32 /dev/urandom | base64 > %s\n", empty, empty),
		loose:   fmt.Sprintf("bettertest worker: token file %s is readable by group or others (mode 0644): run chmod 600 %s\n", loose, loose),
	} {
		var stderr bytes.Buffer
		cmd := exec.Command(bin, "worker", "--listen", "127.0.0.1:0", "--token-file", file)
		cmd.Stderr = &stderr
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || stderr.String() != want {
			t.Errorf("token file %s: %v, stderr %q\nwant %q", filepath.Base(file), err, stderr.String(), want)
		}
	}
}

// dockerProxy forwards a unix socket to the real engine until it is cut, so a
// test can take "Docker" away from one worker without touching the engine.
type dockerProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newDockerProxy(t *testing.T) (*dockerProxy, string) {
	dir, err := os.MkdirTemp("", "btdock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "docker.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	p := &dockerProxy{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("unix", "/var/run/docker.sock")
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(p.cut)
	return p, "unix://" + path
}

func (p *dockerProxy) cut() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

func TestDockerGoneIsReportedNotCrashed(t *testing.T) {
	wt.Integration(t)
	t.Parallel()
	proxy, host := newDockerProxy(t)
	tokenFile := wt.NewTokenFile(t, t.TempDir())
	cmd := exec.Command(bin, "worker", "--listen", "127.0.0.1:0", "--token-file", tokenFile, "--docker-host", host)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	proxy.cut() // Docker is down before the worker starts: it refuses to start.
	err := cmd.Run()
	want := fmt.Sprintf("bettertest worker: the Docker engine at %s does not answer (Cannot connect to the Docker daemon at %s. Is the docker daemon running?): start it (systemctl start docker) or point --docker-host at it\n", host, host)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || logs.String() != want {
		t.Fatalf("got %v %q\nwant %q", err, logs.String(), want)
	}
}

func TestDockerGoingAwayIsReportedNotCrashed(t *testing.T) {
	t.Parallel()
	proxy, host := newDockerProxy(t)
	w := wt.Start(t, bin, wt.Options{DockerHost: host})
	proxy.cut()
	resp, err := w.Do(context.Background(), http.MethodGet, "/health", nil)
	if err != nil {
		t.Fatal(err)
	}
	var h bettertest.Health
	_ = json.NewDecoder(resp.Body).Decode(&h)
	want := bettertest.Health{Version: "dev", Capacity: 2, Error: fmt.Sprintf(
		"Docker does not answer (Cannot connect to the Docker daemon at %s. Is the docker daemon running?): check that the Docker engine runs", host)}
	if resp.StatusCode != 503 || h != want {
		t.Fatalf("health: %d %+v\nwant 503 %+v", resp.StatusCode, h, want)
	}
	assertEvents(t, w.Run(t, run("true")).All(t), errorEv(fmt.Sprintf(
		"Docker on this worker does not answer (Cannot connect to the Docker daemon at %s. Is the docker daemon running?): check that the Docker engine runs", host)))
}

func TestRunsNeverShareAContainer(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{MaxParallel: 1})
	// The second run takes the spare the first one left; it must be a different,
	// clean container.
	first := joined(t, w.Run(t, run("touch /left-behind; hostname")).All(t), "stdout")
	second := joined(t, w.Run(t, run("ls /left-behind 2>&1; hostname")).All(t), "stdout")
	lines := strings.Split(second, "\n")
	if lines[0] != "ls: cannot access '/left-behind': No such file or directory" || len(lines) != 3 || lines[1] == strings.TrimSpace(first) {
		t.Fatalf("first run on %q, second run saw %q", first, second)
	}
}

func TestEventsStreamHealthThenLoadAndRuns(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{MaxParallel: 2})
	resp, err := w.Do(context.Background(), http.MethodGet, "/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /events: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	events := sse.NewReader(resp.Body)
	next := func() string {
		t.Helper()
		ev, err := events.Next()
		if err != nil {
			t.Fatal(err)
		}
		return ev.Name + " " + ev.Data
	}
	var h bettertest.Health
	first := next()
	if err := json.Unmarshal([]byte(strings.TrimPrefix(first, "health ")), &h); err != nil || !h.Ready || h.Capacity != 2 || h.Running != 0 || h.Docker == "" {
		t.Fatalf("first event %q", first)
	}
	req := run("true")
	req.Image = wt.Image
	s := w.Run(t, req)
	id := decode(t, s.Next(t)).Data.(bettertest.StartedEvent).ID
	s.All(t)
	var got []string
	for range 4 {
		got = append(got, next())
	}
	want := []string{
		`run_start {"id":"` + id + `","image":"` + wt.Image + `"}`,
		`load {"running":1,"capacity":2}`,
		`load {"running":0,"capacity":2}`,
		`run_end {"id":"` + id + `","outcome":"exited","exit":0}`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("events:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
