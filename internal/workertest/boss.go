package workertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BossOptions shape a boss.
type BossOptions struct {
	Pipedefs []string
	Workers  []*Worker // named w0, w1, ... in this order
	DataDir  string    // reuse a data dir (its history); a new one by default
	Args     []string  // more flags
	// WorkersDir is the boss's --workers-dir; a new empty one by default.
	WorkersDir string
	// Secrets are given as --secret NAME=FILE, each value written to a
	// 0600 file; a pipedef asks for them with "PATH,secrets=NAME+NAME".
	Secrets map[string]string
}

// Boss is a running `bettertest boss` process.
type Boss struct {
	URL        string
	DataDir    string
	WorkersDir string
	*Process
}

// StartBoss runs `bin boss` on 127.0.0.1:0 and returns once it is listening.
// It is stopped with SIGTERM when the test ends.
func StartBoss(t testing.TB, bin string, opt BossOptions) *Boss {
	t.Helper()
	Integration(t)
	b := &Boss{DataDir: opt.DataDir, WorkersDir: opt.WorkersDir}
	if b.DataDir == "" {
		b.DataDir = t.TempDir()
	}
	if b.WorkersDir == "" {
		b.WorkersDir = t.TempDir()
	}
	args := []string{"boss", "--listen", "127.0.0.1:0", "--data-dir", b.DataDir, "--workers-dir", b.WorkersDir}
	for _, p := range opt.Pipedefs {
		args = append(args, "--pipedef", p)
	}
	for i, w := range opt.Workers {
		args = append(args, "--worker", fmt.Sprintf("w%d=%s", i, w.URL), "--worker-token-file", fmt.Sprintf("w%d=%s", i, w.TokenFile))
	}
	if len(opt.Secrets) > 0 {
		dir := t.TempDir()
		for name, value := range opt.Secrets {
			file := filepath.Join(dir, name)
			if err := os.WriteFile(file, []byte(value), 0o600); err != nil {
				t.Fatal(err)
			}
			args = append(args, "--secret", name+"="+file)
		}
	}
	args = append(args, opt.Args...)
	var addr string
	b.Process, addr = StartProcess(t, "boss", exec.Command(bin, args...))
	b.URL = "http://" + addr
	t.Cleanup(func() {
		if err := b.Stop(); err != nil && !b.killed {
			t.Errorf("boss did not stop cleanly: %v\n%s", err, b.Stderr())
		}
	})
	return b
}

// Do sends a request to the boss's API; body, if not nil, is sent as JSON.
// It returns the status and the body.
func (b *Boss) Do(t testing.TB, method, path string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, b.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

// JSON gets path and decodes the 200 answer into v.
func (b *Boss) JSON(t testing.TB, path string, v any) {
	t.Helper()
	status, data := b.Do(t, http.MethodGet, path, nil)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, status, data)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, data)
	}
}

// Events opens an event stream of the boss (e.g. /api/events).
func (b *Boss) Events(t testing.TB, path string) *Stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.URL+path, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	return openStream(t, req, cancel)
}
