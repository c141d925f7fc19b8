package boss_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bettertest/bettertest"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

// realPayload reads one of GitHub's published payload examples (see
// testdata/github/octokit/SOURCE) and makes the rewrites given as old, new
// pairs; each old text must be in the example.
func realPayload(t *testing.T, name string, rewrites ...string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "github", "octokit", name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for i := 0; i < len(rewrites); i += 2 {
		if !strings.Contains(s, rewrites[i]) {
			t.Fatalf("%s has no %q to rewrite: has the example changed?", name, rewrites[i])
		}
		s = strings.ReplaceAll(s, rewrites[i], rewrites[i+1])
	}
	return []byte(s)
}

// The commits GitHub's examples name.
const (
	examplePush = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
	examplePR   = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
)

const exampleRepo = "Codertocat/Hello-World"

func TestGitHubsPayloadsRunBranchesWithASlash(t *testing.T) {
	t.Parallel()
	// No branch=: every branch runs the pipeline.
	h := startHookedRepo(t, exampleRepo, "app=%s,pipedef=ci/pipeline.py")
	w := watch(t, h.boss, "/api/events")
	login := h.repo.commit(t, fmt.Sprintf(repoPipedef, "login", 0), "refs/heads/feature/login")
	push := realPayload(t, "push-with-new-branch.payload.json", examplePush, login, `"ref": "refs/heads/master"`, `"ref": "refs/heads/feature/login"`)
	if status, body := h.deliver(t, "push", "p-1", push, ""); status != 202 || body != `{"runs":[1]}`+"\n" {
		t.Fatalf("push to feature/login: %d %s", status, body)
	}
	w.until(t, "run 1 to pass", func() bool { return w.status(1) == "passed" })
	if r := w.runs[1]; r.Commit != login || r.Ref != "refs/heads/feature/login" || r.Author != "Codertocat" ||
		r.CommitURL != "https://github.com/Codertocat/Hello-World/commit/"+login {
		t.Fatalf("run 1: %+v", r)
	}
	if got := h.github.next(t); got != login[:7]+" bettertest/app pending http://boss.example/runs/1 running on w0" {
		t.Fatalf("status %q", got)
	}
	if got := h.github.next(t); !strings.HasPrefix(got, login[:7]+" bettertest/app success http://boss.example/runs/1 passed in ") {
		t.Fatalf("status %q", got)
	}

	// GitHub's example push as it is: a tag deleted. Nothing runs.
	if status, body := h.deliver(t, "push", "p-2", realPayload(t, "push-payload.json"), ""); status != 202 || body != `{"runs":[]}`+"\n" {
		t.Fatalf("tag deleted: %d %s", status, body)
	}

	// A pull request into release/1.x runs its head.
	h.repo.commit(t, fmt.Sprintf(repoPipedef, "base", 0), "refs/heads/release/1.x")
	head := h.repo.commit(t, fmt.Sprintf(repoPipedef, "pr", 0), "refs/pull/2/head")
	for i, name := range []string{"pull_request-opened.payload.json", "pull_request-synchronize.payload.json"} {
		pr := realPayload(t, name, examplePR, head, `"ref": "master"`, `"ref": "release/1.x"`)
		id := int64(2 + i)
		if status, body := h.deliver(t, "pull_request", fmt.Sprintf("pr-%d", i), pr, ""); status != 202 || body != fmt.Sprintf(`{"runs":[%d]}`, id)+"\n" {
			t.Fatalf("%s: %d %s", name, status, body)
		}
		w.until(t, "the pull request's run to pass", func() bool { return w.status(id) == "passed" })
		if r := w.runs[id]; r.Commit != head || r.Ref != "refs/pull/2/head" || r.Author != "Codertocat" || r.Trigger != "pull_request" {
			t.Fatalf("run %d: %+v", id, r)
		}
		var out []bettertest.Chunk
		h.boss.JSON(t, fmt.Sprintf("/api/runs/%d/tasks/version/log", id), &out)
		if len(out) != 1 || out[0].Text != "pr on refs/pull/2/head for "+head[:7]+" refs/pull/2/head\n" {
			t.Fatalf("output: %+v", out)
		}
	}
}

// cut140 is a description as GitHub keeps it: 140 characters.
func cut140(d string) string {
	if r := []rune(d); len(r) > 140 {
		return string(r[:139]) + "…"
	}
	return d
}

func TestACommitTheBossCannotFetchFailsTheRunWithAnErrorStatus(t *testing.T) {
	t.Parallel()
	h := startHookedRepo(t, exampleRepo, "app=%s,pipedef=ci/pipeline.py")
	w := watch(t, h.boss, "/api/events")
	h.repo.commit(t, fmt.Sprintf(repoPipedef, "ok", 0), "refs/heads/master")
	// GitHub's example as it is: its commit is not in the local repository.
	push := realPayload(t, "push-with-new-branch.payload.json")
	if status, body := h.deliver(t, "push", "p-1", push, ""); status != 202 || body != `{"runs":[1]}`+"\n" {
		t.Fatalf("push: %d %s", status, body)
	}
	w.until(t, "run 1 to fail", func() bool { return w.status(1) == "failed" })
	want := "could not check out the pipedef's commit: commit " + examplePush + " is not in file://" + h.repo.bare +
		", even after a fetch of its branches: push it there, or point the webhook at this repository"
	if r := w.runs[1]; r.Error != want {
		t.Fatalf("run 1: %q, want %q", r.Error, want)
	}
	// It never started, so the one status GitHub gets is its end.
	if got, want := h.github.next(t), examplePush[:7]+" bettertest/app error http://boss.example/runs/1 "+cut140("failed: "+want); got != want {
		t.Fatalf("status %q, want %q", got, want)
	}
}

// waiting is a pipedef that runs until a signal ends it.
const waiting = `import signal
signal.pause()
`

func TestStatusesOfRunsAStoppedBossEnds(t *testing.T) {
	t.Parallel()
	h := startHookedRepo(t, exampleRepo, "app=%s,pipedef=ci/pipeline.py")
	sha := h.repo.commit(t, waiting, "refs/heads/master")
	push := realPayload(t, "push-with-new-branch.payload.json", examplePush, sha)
	if status, body := h.deliver(t, "push", "p-1", push, ""); status != 202 || body != `{"runs":[1]}`+"\n" {
		t.Fatalf("push: %d %s", status, body)
	}
	if got := h.github.next(t); got != sha[:7]+" bettertest/app pending http://boss.example/runs/1 running on w0" {
		t.Fatalf("status %q", got)
	}
	// Stopped: the boss ends the run and GitHub hears of it before the boss exits.
	if err := h.boss.Stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, h.boss.Stderr())
	}
	if got := h.github.next(t); got != sha[:7]+" bettertest/app error http://boss.example/runs/1 interrupted: the boss stopped while this run was queued or running: run it again" {
		t.Fatalf("status after a stop %q", got)
	}

	// Killed: the next boss says so.
	h.boss = wt.StartBoss(t, bin, h.opts)
	if status, body := h.deliver(t, "push", "p-2", push, ""); status != 202 || body != `{"runs":[2]}`+"\n" {
		t.Fatalf("push: %d %s", status, body)
	}
	if got := h.github.next(t); got != sha[:7]+" bettertest/app pending http://boss.example/runs/2 running on w0" {
		t.Fatalf("status %q", got)
	}
	h.boss.Kill()
	h.boss = wt.StartBoss(t, bin, h.opts)
	if got := h.github.next(t); got != sha[:7]+" bettertest/app error http://boss.example/runs/2 interrupted: the boss stopped while this run was queued or running: run it again" {
		t.Fatalf("status after a restart %q", got)
	}
}
