package boss_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/bettertest/bettertest"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

// gitHub is a stand-in for GitHub's REST API: GitHub cannot be reached from
// here. It checks each commit status request against the documented shape
// (POST /repos/{owner}/{repo}/statuses/{sha}, a bearer token, a JSON body of
// state, target_url, description and context) and hands it to the test.
type gitHub struct {
	*httptest.Server
	statuses chan string
	mu       sync.Mutex
	failures int // answer this many requests with 500 first
}

// newGitHubFor is a stand-in that takes statuses for the repository fullName.
func newGitHubFor(t *testing.T, token, fullName string) *gitHub {
	g := &gitHub{statuses: make(chan string, 100)}
	prefix := "/repos/" + fullName + "/statuses/"
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		fail := g.failures > 0
		g.failures--
		g.mu.Unlock()
		var body map[string]string
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		err := dec.Decode(&body)
		switch {
		case r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, prefix):
			t.Errorf("GitHub stand-in: unexpected %s %s", r.Method, r.URL.Path)
		case r.Header.Get("Authorization") != "Bearer "+token || r.Header.Get("Accept") != "application/vnd.github+json" ||
			r.Header.Get("X-GitHub-Api-Version") != "2022-11-28":
			t.Errorf("GitHub stand-in: headers %v", r.Header)
		case err != nil || len(body) != 4 || body["context"] == "" || body["target_url"] == "":
			t.Errorf("GitHub stand-in: body %v (%v)", body, err)
		}
		if fail {
			http.Error(w, `{"message": "Server Error"}`, http.StatusInternalServerError)
			return
		}
		sha := strings.TrimPrefix(r.URL.Path, prefix)
		g.statuses <- fmt.Sprintf("%s %s %s %s %s", sha[:7], body["context"], body["state"], body["target_url"], body["description"])
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"state": "` + body["state"] + `"}`))
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *gitHub) next(t *testing.T) string {
	t.Helper()
	return <-g.statuses // bounded by the test's own timeout
}

// gitRepo is a real repository: a bare one the boss fetches from over
// file://, and a clone the test commits in.
type gitRepo struct {
	bare, work string
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=Ada Lovelace", "-c", "user.email=ada@example.com",
		"-c", "init.defaultBranch=main"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func newRepo(t *testing.T) *gitRepo { return newRepoNamed(t, "o/app") }

// newRepoNamed is a repository whose URL ends in fullName: GitHub's
// payloads name it so.
func newRepoNamed(t *testing.T, fullName string) *gitRepo {
	dir := t.TempDir()
	r := &gitRepo{bare: filepath.Join(dir, filepath.FromSlash(fullName)+".git"), work: filepath.Join(dir, "work")}
	os.MkdirAll(r.bare, 0o755)
	os.MkdirAll(r.work, 0o755)
	git(t, r.bare, "init", "--bare", "--quiet")
	git(t, r.work, "init", "--quiet")
	git(t, r.work, "remote", "add", "origin", r.bare)
	return r
}

// commit writes the pipedef and pushes it to ref; it returns the commit.
func (r *gitRepo) commit(t *testing.T, pipedef, ref string) string {
	t.Helper()
	os.MkdirAll(filepath.Join(r.work, "ci"), 0o755)
	if err := os.WriteFile(filepath.Join(r.work, "ci", "pipeline.py"), []byte(pipedef), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(r.work, "VERSION"), []byte(ref+"\n"), 0o644)
	git(t, r.work, "add", ".")
	git(t, r.work, "commit", "--quiet", "-m", "change")
	git(t, r.work, "push", "--quiet", "--force", "origin", "HEAD:"+ref)
	return git(t, r.work, "rev-parse", "HEAD")
}

// The repository's own pipedef: its source is bt.local("."), and it knows
// the commit and ref it runs for.
const repoPipedef = `import bettertest as bt
p = bt.pipeline("app")
with p.stage("test") as s:
    s.test("version", image="bettertest/base:bookworm", command="echo %s on $(cat /src/VERSION) for " + p.commit[:7] + " " + p.ref + "; exit %d",
           inputs={"/src": bt.local(".")})
`

type hooked struct {
	boss   *wt.Boss
	github *gitHub
	repo   *gitRepo
	worker *wt.Worker
	secret string
	// The boss's secret files: the webhook's secret and the GitHub token.
	secretFile, tokenFile string
	opts                  wt.BossOptions // to start it again on the same history
}

func startHooked(t *testing.T, args ...string) *hooked {
	return startHookedRepo(t, "o/app", "app=%s,pipedef=ci/pipeline.py,branch=main", args...)
}

// startHookedRepo starts a boss with the pipeline repo (a --repo value whose
// %s is the URL of a local repository named fullName).
func startHookedRepo(t *testing.T, fullName, repo string, args ...string) *hooked {
	wt.Integration(t)
	dir := t.TempDir()
	h := &hooked{repo: newRepoNamed(t, fullName), secret: "it's a secret"}
	h.github = newGitHubFor(t, "gh-token", fullName)
	h.secretFile, h.tokenFile = filepath.Join(dir, "secret"), filepath.Join(dir, "token")
	os.WriteFile(h.secretFile, []byte(h.secret+"\n"), 0o600)
	os.WriteFile(h.tokenFile, []byte("gh-token\n"), 0o600)
	h.worker = wt.Start(t, bin, wt.Options{})
	h.opts = wt.BossOptions{Workers: []*wt.Worker{h.worker}, DataDir: t.TempDir(), Args: append([]string{
		"--repo", fmt.Sprintf(repo, "file://"+h.repo.bare),
		"--github-webhook-secret-file", h.secretFile, "--github-token-file", h.tokenFile,
		"--github-api", h.github.URL, "--public-url", "http://boss.example",
	}, args...)}
	h.boss = wt.StartBoss(t, bin, h.opts)
	return h
}

// payload reads a fixture in GitHub's documented format and fills it in.
func payload(t *testing.T, name, sha, before string) []byte {
	data, err := os.ReadFile(filepath.Join("testdata", "github", name))
	if err != nil {
		t.Fatal(err)
	}
	r := strings.NewReplacer("__SHA__", sha, "__BEFORE__", before, "__MESSAGE__", "change")
	return []byte(r.Replace(string(data)))
}

// deliver posts a webhook delivery as GitHub does, signed with secret
// unless sig is given.
func (h *hooked) deliver(t *testing.T, event, delivery string, body []byte, sig string) (int, string) {
	t.Helper()
	if sig == "" {
		mac := hmac.New(sha256.New, []byte(h.secret))
		mac.Write(body)
		sig = "sha256=" + hex.EncodeToString(mac.Sum(nil))
	}
	req, _ := http.NewRequest(http.MethodPost, h.boss.URL+"/hooks/github", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/044aadd")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-GitHub-Hook-ID", "30")
	if sig != "-" {
		req.Header.Set("X-Hub-Signature-256", sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestWebhookSignaturesPingAndOtherEvents(t *testing.T) {
	t.Parallel()
	h := startHooked(t)
	sha := h.repo.commit(t, fmt.Sprintf(repoPipedef, "ok", 0), "refs/heads/main")
	push := payload(t, "push.json", sha, strings.Repeat("0", 40))
	for _, c := range []struct {
		name, event, sig string
		status           int
		body             string
	}{
		{"missing signature", "push", "-", 401, `{"error":"missing or wrong X-Hub-Signature-256: set the webhook's secret to the content of --github-webhook-secret-file"}` + "\n"},
		{"wrong signature", "push", "sha256=" + strings.Repeat("ab", 32), 401, `{"error":"missing or wrong X-Hub-Signature-256: set the webhook's secret to the content of --github-webhook-secret-file"}` + "\n"},
		{"not hex", "push", "sha256=zz", 401, `{"error":"missing or wrong X-Hub-Signature-256: set the webhook's secret to the content of --github-webhook-secret-file"}` + "\n"},
		{"an event the boss does not act on", "issues", "", 204, ""},
	} {
		if status, body := h.deliver(t, c.event, "d-"+c.name, push, c.sig); status != c.status || body != c.body {
			t.Errorf("%s: %d %q", c.name, status, body)
		}
	}
	if status, body := h.deliver(t, "ping", "d-ping", payload(t, "ping.json", "", ""), ""); status != 200 || body != `{"pong":"d-ping"}`+"\n" {
		t.Errorf("ping: %d %s", status, body)
	}
	var runs []bettertest.Run
	h.boss.JSON(t, "/api/runs", &runs)
	if len(runs) != 0 {
		t.Fatalf("refused deliveries started runs: %+v", runs)
	}
}

func TestPushRunsTheCommitsPipedefAndSetsStatuses(t *testing.T) {
	t.Parallel()
	h := startHooked(t)
	w := watch(t, h.boss, "/api/events")
	zero := strings.Repeat("0", 40)
	v1 := h.repo.commit(t, fmt.Sprintf(repoPipedef, "ok", 0), "refs/heads/main")

	status, body := h.deliver(t, "push", "delivery-1", payload(t, "push.json", v1, zero), "")
	if status != 202 || body != `{"runs":[1]}`+"\n" {
		t.Fatalf("push: %d %s", status, body)
	}
	// GitHub delivers again: no second run.
	if status, body := h.deliver(t, "push", "delivery-1", payload(t, "push.json", v1, zero), ""); status != 200 || body != `{"redelivery":true,"runs":[]}`+"\n" {
		t.Fatalf("redelivery: %d %s", status, body)
	}
	w.until(t, "run 1 to pass", func() bool { return w.status(1) == "passed" })
	run := w.runs[1]
	if run.Commit != v1 || run.Ref != "refs/heads/main" || run.Author != "Ada Lovelace" || run.Trigger != "push" ||
		run.CommitURL != "https://github.com/o/app/commit/"+v1 {
		t.Fatalf("run 1: %+v", run)
	}
	var out []bettertest.Chunk
	h.boss.JSON(t, "/api/runs/1/tasks/version/log", &out)
	if len(out) != 1 || out[0].Text != "ok on refs/heads/main for "+v1[:7]+" refs/heads/main\n" {
		t.Fatalf("the pipedef's output: %+v", out)
	}
	for _, want := range []string{
		v1[:7] + " bettertest/app pending http://boss.example/runs/1 running on w0",
	} {
		if got := h.github.next(t); got != want {
			t.Fatalf("status %q, want %q", got, want)
		}
	}
	if got := h.github.next(t); !strings.HasPrefix(got, v1[:7]+" bettertest/app success http://boss.example/runs/1 passed in ") {
		t.Fatalf("final status %q", got)
	}

	// The next push fails its test: the status says failure.
	v2 := h.repo.commit(t, fmt.Sprintf(repoPipedef, "broken", 1), "refs/heads/main")
	if status, body := h.deliver(t, "push", "delivery-2", payload(t, "push.json", v2, v1), ""); status != 202 || body != `{"runs":[2]}`+"\n" {
		t.Fatalf("second push: %d %s", status, body)
	}
	w.until(t, "run 2 to fail", func() bool { return w.status(2) == "failed" })
	if got := h.github.next(t); got != v2[:7]+" bettertest/app pending http://boss.example/runs/2 running on w0" {
		t.Fatalf("status %q", got)
	}
	if got := h.github.next(t); got != v2[:7]+" bettertest/app failure http://boss.example/runs/2 failed: the pipedef exited with status 1: see its output" {
		t.Fatalf("final status %q", got)
	}

	// A push to a branch the pipeline does not follow runs nothing.
	other := h.repo.commit(t, fmt.Sprintf(repoPipedef, "ok", 0), "refs/heads/wip")
	body2 := bytes.Replace(payload(t, "push.json", other, v2), []byte(`"ref": "refs/heads/main"`), []byte(`"ref": "refs/heads/wip"`), 1)
	if status, body := h.deliver(t, "push", "delivery-3", body2, ""); status != 202 || body != `{"runs":[]}`+"\n" {
		t.Fatalf("push to wip: %d %s", status, body)
	}
}

func TestPullRequestRunsItsHead(t *testing.T) {
	t.Parallel()
	h := startHooked(t)
	w := watch(t, h.boss, "/api/events")
	base := h.repo.commit(t, fmt.Sprintf(repoPipedef, "base", 0), "refs/heads/main")
	// GitHub keeps a pull request's head at refs/pull/N/head.
	head := h.repo.commit(t, fmt.Sprintf(repoPipedef, "pr", 0), "refs/pull/5/head")
	if status, body := h.deliver(t, "pull_request", "pr-1", payload(t, "pull_request.json", head, base), ""); status != 202 || body != `{"runs":[1]}`+"\n" {
		t.Fatalf("pull_request: %d %s", status, body)
	}
	w.until(t, "the run to pass", func() bool { return w.status(1) == "passed" })
	if r := w.runs[1]; r.Commit != head || r.Ref != "refs/pull/5/head" || r.Author != "grace" || r.Trigger != "pull_request" {
		t.Fatalf("run: %+v", r)
	}
	var out []bettertest.Chunk
	h.boss.JSON(t, "/api/runs/1/tasks/version/log", &out)
	if len(out) != 1 || out[0].Text != "pr on refs/pull/5/head for "+head[:7]+" refs/pull/5/head\n" {
		t.Fatalf("output: %+v", out)
	}
}

func TestStatusAPIDownLeavesTheRunAlone(t *testing.T) {
	t.Parallel()
	h := startHooked(t)
	h.github.mu.Lock()
	h.github.failures = 2 // the pending status fails twice, then GitHub is back
	h.github.mu.Unlock()
	w := watch(t, h.boss, "/api/events")
	v1 := h.repo.commit(t, fmt.Sprintf(repoPipedef, "ok", 0), "refs/heads/main")
	if status, _ := h.deliver(t, "push", "down-1", payload(t, "push.json", v1, strings.Repeat("0", 40)), ""); status != 202 {
		t.Fatalf("push: %d", status)
	}
	w.until(t, "the run to pass", func() bool { return w.status(1) == "passed" })
	var got []string
	got = append(got, h.github.next(t), h.github.next(t))
	if got[0] != v1[:7]+" bettertest/app pending http://boss.example/runs/1 running on w0" || !strings.Contains(got[1], " success ") {
		t.Fatalf("statuses after the outage: %q", got)
	}
	var retries []string
	for _, l := range strings.Split(h.boss.Stderr(), "\n") {
		if strings.Contains(l, `msg="commit status not posted: will retry"`) {
			retries = append(retries, wtField(l, "try"))
		}
	}
	if !reflect.DeepEqual(retries, []string{"1", "2"}) {
		t.Fatalf("retries logged: %v\n%s", retries, h.boss.Stderr())
	}
}

func wtField(line, key string) string {
	_, rest, _ := strings.Cut(line, " "+key+"=")
	v, _, _ := strings.Cut(rest, " ")
	return v
}
