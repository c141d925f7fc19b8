package boss_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/bettertest/bettertest"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

// leaky prints the secrets itself, so only the boss is there to mask them:
// the library and the worker are given no secret. A task prints one whole,
// split across two writes and as base64 text; the pipedef prints one on its
// stderr and raises an error that holds it.
var leaky = `import sys
import bettertest as bt
p = bt.pipeline("leaky")
sys.stderr.write("pipedef: ` + wt.SecretKey + `\n")
with p.stage("test") as s:
    s.test("print", image="` + wt.Image + `", command="""S=` + wt.SecretKey + `
echo "whole: $S"
printf 'split: %s' "${S%???}"; sleep 0.1; printf '%s\n' "${S#"${S%???}"}"
echo "b64: ` + wt.SecretB64 + `"
exit 1""")
raise RuntimeError("bad key ` + wt.SecretKey + `")
`

func TestSecretsAreMaskedInTheHistoryTheAPIAndThePages(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	worker := wt.Start(t, bin, wt.Options{})
	boss := wt.StartBoss(t, bin, wt.BossOptions{
		Workers:  []*wt.Worker{worker},
		Pipedefs: []string{pipedef(t, dir, "leaky", leaky) + ",secrets=deploy_key+b64"},
		Secrets:  map[string]string{"deploy_key": wt.SecretKey + "\n", "b64": wt.SecretB64},
	})
	w := watch(t, boss, "/api/events")
	r := trigger(t, boss, "leaky")
	w.until(t, "the run to end", func() bool { return w.status(r.ID) == "failed" })
	for _, line := range w.log {
		if strings.Contains(line, wt.SecretKey) || strings.Contains(line, wt.SecretB64) || strings.Contains(line, wt.SecretKey[:len(wt.SecretKey)-3]) {
			t.Errorf("an event shows a secret: %s", line)
		}
	}

	var run bettertest.Run
	boss.JSON(t, fmt.Sprintf("/api/runs/%d", r.ID), &run)
	if run.Error != "the pipedef raised RuntimeError: bad key ***" {
		t.Errorf("run error %q", run.Error)
	}
	var chunks []bettertest.Chunk
	if got, want := logText(t, boss, fmt.Sprintf("/api/runs/%d/tasks/print/log", r.ID)), "whole: ***\nsplit: ***\nb64: ***\n"; got != want {
		t.Errorf("task log %q, want %q", got, want)
	}
	if got, want := string(get(t, boss, fmt.Sprintf("/runs/%d/tasks/print/raw", r.ID))), "whole: ***\nsplit: ***\nb64: ***\n"; got != want {
		t.Errorf("raw task log %q, want %q", got, want)
	}
	boss.JSON(t, fmt.Sprintf("/api/runs/%d/log", r.ID), &chunks)
	if len(chunks) == 0 || chunks[0] != (bettertest.Chunk{Stream: "stderr", Text: "pipedef: ***\n"}) {
		t.Errorf("the pipedef's own output starts with %+v, want its line masked", chunks[:min(len(chunks), 1)])
	}
	for _, path := range []string{
		fmt.Sprintf("/api/runs/%d/log", r.ID), fmt.Sprintf("/api/runs/%d/tasks/print/log", r.ID), fmt.Sprintf("/api/runs/%d", r.ID),
		fmt.Sprintf("/runs/%d/tasks/print", r.ID), fmt.Sprintf("/runs/%d", r.ID), "/",
	} {
		if page := string(get(t, boss, path)); strings.Contains(page, wt.SecretKey) || strings.Contains(page, wt.SecretB64) {
			t.Errorf("%s shows a secret:\n%s", path, page)
		}
	}
}

// secretUser reads its pipeline's secret with bt.secret and gives it to its
// task as a file and as an environment variable.
const secretUser = `import bettertest as bt
p = bt.pipeline("deploy")
key = bt.secret("deploy_key")
with p.stage("deploy") as s:
    s.test("use", image="` + wt.Image + `", secrets={"/run/secrets/key": key, "env:KEY": key},
           command='echo "file: $(cat /run/secrets/key)"; echo "env: $KEY"; test "$(cat /run/secrets/key)" = "$KEY"')
`

// The whole path: the boss's --secret reaches the sandboxed pipedef as a
// file of its run, the pipedef hands it to its task, and every copy of the
// task's output shows *** for it.
func TestASecretReachesTheTaskThroughTheSandbox(t *testing.T) {
	t.Parallel()
	worker := wt.Start(t, bin, wt.Options{})
	boss := wt.StartBoss(t, bin, wt.BossOptions{
		Workers:  []*wt.Worker{worker},
		Pipedefs: []string{pipedef(t, t.TempDir(), "deploy", secretUser) + ",secrets=deploy_key"},
		Secrets:  map[string]string{"deploy_key": wt.SecretKey + "\n"},
	})
	w := watch(t, boss, "/api/events")
	r := trigger(t, boss, "deploy")
	w.until(t, "the run to end", func() bool { s := w.status(r.ID); return s == "passed" || s == "failed" })
	if run := w.runs[r.ID]; run.Status != "passed" {
		t.Fatalf("run %s: %s", run.Status, run.Error)
	}
	if got, want := logText(t, boss, fmt.Sprintf("/api/runs/%d/tasks/use/log", r.ID)), "file: ***\nenv: ***\n"; got != want {
		t.Fatalf("task log %q, want %q", got, want)
	}
}
