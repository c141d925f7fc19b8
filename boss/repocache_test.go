package boss_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/bettertest/bettertest"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

// cachedPipedef builds its checkout. Each run's checkout is a worktree of
// its own (its .git file names it), and the pipedef leaves a file that the
// repository's .gitignore ignores: neither may change the build's input.
const cachedPipedef = `import sys
import bettertest as bt
open("run.log", "w").write(sys.argv[sys.argv.index("--run-id") + 1])
p = bt.pipeline("app")
with p.stage("build") as s:
    s.build("compile", image="bettertest/base:bookworm", command="cp -r /src /out/", inputs={"/src": bt.local(".")}, outputs=["/out"])
`

func TestARepositoryPipelineBuildsACommitOnce(t *testing.T) {
	wt.Integration(t)
	t.Parallel()
	repo := newRepo(t)
	if err := os.WriteFile(filepath.Join(repo.work, ".gitignore"), []byte("*.log\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	repo.commit(t, cachedPipedef, "refs/heads/main")
	worker := wt.Start(t, bin, wt.Options{})
	boss := wt.StartBoss(t, bin, wt.BossOptions{Workers: []*wt.Worker{worker}, Args: []string{
		"--repo", "app=file://" + repo.bare + ",pipedef=ci/pipeline.py"}})
	w := watch(t, boss, "/api/events")
	var got []string
	for i := 0; i < 2; i++ {
		r := trigger(t, boss, "app")
		w.until(t, fmt.Sprintf("run %d to end", r.ID), func() bool { return w.status(r.ID) == "passed" || w.status(r.ID) == "failed" })
		var run bettertest.Run
		boss.JSON(t, fmt.Sprintf("/api/runs/%d", r.ID), &run)
		task := run.Stages[0].Tasks[0]
		got = append(got, fmt.Sprintf("run %d %s: %s %s cached=%v", r.ID, run.Status, task.Name, task.Status, task.Cached))
	}
	want := []string{"run 1 passed: compile passed cached=false", "run 2 passed: compile passed cached=true"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("runs of one commit:\n%q\nwant\n%q", got, want)
	}
}
