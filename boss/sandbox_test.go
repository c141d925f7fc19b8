package boss_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/bettertest/bettertest"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

// hostilePipedef is what a pull request from a fork might bring: it tries to
// take the boss's secrets and reach what it should not, and prints what it
// got as one JSON line. It is formatted with the paths and URLs it tries.
const hostilePipedef = `import json, os, sys, urllib.request
import bettertest as bt
out = {}
def attempt(name, f):
    try:
        f()
        out[name] = "got it"
    except Exception as e:
        out[name] = type(e).__name__
attempt("worker token file", lambda: open(%q).read())
attempt("webhook secret file", lambda: open(%q).read())
attempt("GitHub token file", lambda: open(%q).read())
attempt("boss data dir", lambda: os.listdir(%q))
attempt("boss API on loopback", lambda: urllib.request.urlopen(%q + "/api/runs", timeout=5).read())
attempt("approve itself", lambda: urllib.request.urlopen(urllib.request.Request(%q + "/api/runs/1/approve", method="POST"), timeout=5).read())
attempt("worker directly", lambda: urllib.request.urlopen(%q + "/health", timeout=5).read())
out["env"] = sorted(os.environ)
out["processes"] = sorted(p for p in os.listdir("/proc") if p.isdigit())
out["a process has the boss's flags"] = any(b"--github-token-file" in open("/proc/%%s/cmdline" %% p, "rb").read() for p in out["processes"])
out["uid gid groups"] = [os.getuid(), os.getgid(), os.getgroups()]
out["worker flag"] = sys.argv[sys.argv.index("--worker") + 1]
out["has --token-file"] = "--token-file" in sys.argv
out["worker ready through its socket"] = bt.connect().health()["ready"]
print("REPORT " + json.dumps(out, sort_keys=True))
`

// forkPayload is GitHub's pull_request payload for a pull request whose
// head is in another repository, opened by an author with association.
func forkPayload(t *testing.T, head, base, association string) []byte {
	t.Helper()
	var p map[string]any
	if err := json.Unmarshal(payload(t, "pull_request.json", head, base), &p); err != nil {
		t.Fatal(err)
	}
	pr := p["pull_request"].(map[string]any)
	pr["head"].(map[string]any)["repo"].(map[string]any)["full_name"] = "mallory/app"
	pr["user"].(map[string]any)["login"] = "mallory"
	pr["author_association"] = association
	out, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A pull request from a fork waits for approval and runs nothing until
// then; approved, its pipedef runs sandboxed and gets none of the boss's
// secrets, no network and no way to the boss's API; its way to the worker
// ends with the run.
func TestForkPullRequestWaitsForApprovalThenRunsSandboxed(t *testing.T) {
	t.Parallel()
	h := startHooked(t)
	w := watch(t, h.boss, "/api/events")
	base := h.repo.commit(t, fmt.Sprintf(repoPipedef, "base", 0), "refs/heads/main")
	evil := fmt.Sprintf(hostilePipedef, h.worker.TokenFile, h.secretFile, h.tokenFile, h.boss.DataDir, h.boss.URL, h.boss.URL, h.worker.URL)
	head := h.repo.commit(t, evil, "refs/pull/5/head")
	if status, body := h.deliver(t, "pull_request", "pr-1", forkPayload(t, head, base, "CONTRIBUTOR"), ""); status != 202 || body != `{"runs":[1]}`+"\n" {
		t.Fatalf("pull_request: %d %s", status, body)
	}
	w.until(t, "the run to await approval", func() bool { return w.status(1) == bettertest.StatusAwaitingApproval })
	if got, want := h.github.next(t), head[:7]+" bettertest/app pending http://boss.example/runs/1 awaiting approval"; got != want {
		t.Fatalf("status %q, want %q", got, want)
	}
	// Nothing ran: no sandbox, no stage, no output.
	var run bettertest.Run
	h.boss.JSON(t, "/api/runs/1", &run)
	var out []bettertest.Chunk
	h.boss.JSON(t, "/api/runs/1/log", &out)
	if run.Status != bettertest.StatusAwaitingApproval || run.Worker != "" || len(run.Stages) != 0 || len(out) != 0 {
		t.Fatalf("before approval: %+v, output %+v", run, out)
	}
	if _, err := os.Stat(filepath.Join(h.boss.DataDir, "sandbox", "1")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a sandbox exists before approval: %v", err)
	}

	if status, body := h.boss.Do(t, "POST", "/api/runs/1/approve", nil); status != 202 {
		t.Fatalf("approve: %d %s", status, body)
	}
	w.until(t, "the approved run to pass", func() bool { return w.status(1) == bettertest.StatusPassed })
	if status, body := h.boss.Do(t, "POST", "/api/runs/1/approve", nil); status != 409 ||
		string(body) != `{"error":"run 1 is passed, not awaiting approval: only a pull request from a fork waits for one"}`+"\n" {
		t.Fatalf("approve again: %d %s", status, body)
	}
	text := logText(t, h.boss, "/api/runs/1/log")
	_, line, ok := strings.Cut(text, "REPORT ")
	if !ok {
		t.Fatalf("the pipedef's output has no report: %q", text)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("report %q: %v", line, err)
	}
	want := map[string]any{
		"worker token file":               "FileNotFoundError",
		"webhook secret file":             "FileNotFoundError",
		"GitHub token file":               "FileNotFoundError",
		"boss data dir":                   "FileNotFoundError",
		"boss API on loopback":            "URLError",
		"approve itself":                  "URLError",
		"worker directly":                 "URLError",
		"env":                             []any{"HOME", "LANG", "PATH", "PWD", "PYTHONDONTWRITEBYTECODE", "PYTHONPATH"},
		"processes":                       []any{"1", "2"},
		"a process has the boss's flags":  false,
		"uid gid groups":                  []any{65534.0, 65534.0, []any{}},
		"worker flag":                     "unix:/run/bettertest/worker.sock",
		"has --token-file":                false,
		"worker ready through its socket": true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("what the pipedef got:\n%v\nwant\n%v", got, want)
	}
	// Its way to the worker ended with it.
	socket := filepath.Join(h.boss.DataDir, "sandbox", "1", "worker.sock")
	if _, err := net.Dial("unix", socket); err == nil {
		t.Fatalf("%s still answers after the run", socket)
	}
	if got, want := h.github.next(t), head[:7]+" bettertest/app pending http://boss.example/runs/1 running on w0"; got != want {
		t.Fatalf("status %q, want %q", got, want)
	}
}

// A pull request from a fork by a member of the repository, or by a login
// the boss trusts (--trusted-author), runs at once.
func TestForkPullRequestOfATrustedAuthorRuns(t *testing.T) {
	t.Parallel()
	h := startHooked(t, "--trusted-author", "mallory")
	w := watch(t, h.boss, "/api/events")
	base := h.repo.commit(t, fmt.Sprintf(repoPipedef, "base", 0), "refs/heads/main")
	head := h.repo.commit(t, fmt.Sprintf(repoPipedef, "pr", 0), "refs/pull/5/head")
	if status, body := h.deliver(t, "pull_request", "pr-1", forkPayload(t, head, base, "CONTRIBUTOR"), ""); status != 202 || body != `{"runs":[1]}`+"\n" {
		t.Fatalf("pull_request: %d %s", status, body)
	}
	w.until(t, "the trusted author's run to pass", func() bool { return w.status(1) == bettertest.StatusPassed })

	h2 := startHooked(t)
	w2 := watch(t, h2.boss, "/api/events")
	base = h2.repo.commit(t, fmt.Sprintf(repoPipedef, "base", 0), "refs/heads/main")
	head = h2.repo.commit(t, fmt.Sprintf(repoPipedef, "pr", 0), "refs/pull/5/head")
	if status, body := h2.deliver(t, "pull_request", "pr-1", forkPayload(t, head, base, "MEMBER"), ""); status != 202 || body != `{"runs":[1]}`+"\n" {
		t.Fatalf("pull_request: %d %s", status, body)
	}
	w2.until(t, "the member's run to pass", func() bool { return w2.status(1) == bettertest.StatusPassed })
}

// manyCalls makes 25 runs one after another through the pipedef's socket,
// and uploads and downloads an artifact: each must come through whole.
const manyCalls = `import os, sys, tempfile
import bettertest as bt
w = bt.connect()
for i in range(25):
    r = w.run("bettertest/base:bookworm", "echo %d" % i, on_output=lambda s, t: None)
    if (r.exit_code, r.stdout, r.error) != (0, "%d\n" % i, None):
        sys.exit("run %d: %r" % (i, r))
up = w.upload_local("manycalls.py")
with tempfile.NamedTemporaryFile() as f:
    print("uploaded", up.sent == up.size, "downloaded", w.download_artifact(up.id, f.name) == up.size)
`

// The socket carries every call whole: 25 runs in a row and an artifact's
// upload and download. (An HTTP/1 proxy that is not full duplex cut one run
// in ten off as it started.)
func TestAPipedefsCallsThroughItsSocketComeThroughWhole(t *testing.T) {
	t.Parallel()
	worker := wt.Start(t, bin, wt.Options{})
	boss := wt.StartBoss(t, bin, wt.BossOptions{Pipedefs: []string{pipedef(t, t.TempDir(), "manycalls", manyCalls)}, Workers: []*wt.Worker{worker}})
	w := watch(t, boss, "/api/events")
	trigger(t, boss, "manycalls")
	w.until(t, "the run to end", func() bool { return w.status(1) == bettertest.StatusPassed || w.status(1) == bettertest.StatusFailed })
	var out []bettertest.Chunk
	boss.JSON(t, "/api/runs/1/log", &out)
	if r := w.runs[1]; r.Status != bettertest.StatusPassed || len(out) != 1 || out[0].Text != "uploaded True downloaded True\n" {
		t.Fatalf("run %s (%s), output %+v", r.Status, r.Error, out)
	}
}
