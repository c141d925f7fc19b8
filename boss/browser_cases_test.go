package boss_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/bettertest/bettertest"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

// gatedCases is a pipeline whose test retries twice, each attempt starting
// only when the test writes a line to the FIFO "gate" beside the pipedef:
// attempt 1 reports A and C passed, B and D failed, E skipped; attempt 2
// reports B passed, D failed again and a new F passed; attempt 3, D passed.
const gatedCases = `import os
import bettertest as bt
GATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gate")
p = bt.pipeline("live")
run = p.worker.run
def gated(*args, **kwargs):
    with open(GATE) as gate:
        gate.readline()
    return run(*args, **kwargs)
p.worker.run = gated
with p.stage("test") as s:
    s.test("unit", image="bettertest/base:bookworm", results="/results/junit.xml", retries=2, command=r'''
mkdir -p /results
exec > /results/junit.xml
c() { printf '<testcase classname="pkg" name="%s" time="0.001">%s</testcase>\n' "$1" "$2"; }
echo '<testsuite name="unit">'
case $BETTERTEST_ATTEMPT in
1) c A ''; c B '<failure message="b broke"/>'; c C ''; c D '<failure message="d &lt;broke&gt;"/>'; c E '<skipped/>';;
2) c B ''; c D '<failure message="d broke again"/>'; c F '';;
*) c D '';;
esac
echo '</testsuite>'
''')
`

// A task page in Chromium follows its test cases as each attempt's results
// arrive: after each, its test cases are exactly those of the page loaded
// afresh, and yet the region was never replaced: a case that did not change
// is the element it was, the others were patched in.
func TestBrowserTestCasesChangeInPlace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	if err := syscall.Mkfifo(gate, 0o666); err != nil {
		t.Fatal(err)
	}
	// The pipedef runs as nobody: it opens the gate, and writes nothing else.
	if err := os.Chmod(gate, 0o666); err != nil {
		t.Fatal(err)
	}
	worker := wt.Start(t, bin, wt.Options{})
	boss := wt.StartBoss(t, bin, wt.BossOptions{Workers: []*wt.Worker{worker}, Pipedefs: []string{pipedef(t, dir, "live", gatedCases)}})
	events := boss.Events(t, "/api/events")
	defer events.Close()
	status, body := boss.Do(t, http.MethodPost, "/api/pipelines/live/runs", nil)
	if status != http.StatusCreated {
		t.Fatalf("trigger: %d %s", status, body)
	}
	for {
		var task bettertest.TaskEvent
		if ev := events.Next(t); ev.Name == bettertest.BossEventTask && json.Unmarshal([]byte(ev.Data), &task) == nil && task.Name == "unit" {
			break
		}
	}
	tab := newTab(t, boss.URL)
	tab.open("/runs/1/tasks/unit")
	tab.equal(`document.getElementById("tests").outerHTML`, `<section id="tests"></section>`)
	eval[bool](tab, `window.tests = document.getElementById("tests"); true`)

	const summary = `document.querySelector("#tests p.meta")?.textContent`
	// asFresh: the test cases are those of the page as a new GET renders it.
	const asFresh = `fetch(location.pathname).then((r) => r.text()).then((html) =>
		new DOMParser().parseFromString(html, "text/html").getElementById("tests").outerHTML === document.getElementById("tests").outerHTML)`
	const cases = `[...document.querySelectorAll("#tests li")].map((li) => li.querySelector(".name").textContent + " " + li.querySelector(".st").textContent).join(", ")`
	for _, step := range []struct{ summary, cases string }{
		{"5 test cases · 2 failed · 2 passed · 1 skipped", "pkg.B ✗ failed, pkg.D ✗ failed, pkg.A ✓ passed, pkg.C ✓ passed, pkg.E – skipped"},
		{"6 test cases · 1 failed · 1 flaky · 3 passed · 1 skipped", "pkg.D ✗ failed, pkg.A ✓ passed, pkg.B ✓ passed, pkg.C ✓ passed, pkg.E – skipped, pkg.F ✓ passed"},
		{"6 test cases · 2 flaky · 3 passed · 1 skipped", "pkg.A ✓ passed, pkg.B ✓ passed, pkg.C ✓ passed, pkg.D ✓ passed, pkg.E – skipped, pkg.F ✓ passed"},
	} {
		openGate(t, gate)
		tab.waitFor(step.summary, summary+` === "`+step.summary+`"`)
		tab.equal(cases, step.cases)
		if !await[bool](tab, asFresh) {
			t.Fatalf("after %q the test cases differ from a fresh page's: %s", step.summary, tab.describe())
		}
		if step.cases[:5] == "pkg.B" {
			eval[bool](tab, `window.a = [...document.querySelectorAll("#tests li")].find((li) => li.querySelector(".name").textContent === "pkg.A"); true`)
		}
	}
	// The run judged, the retried cases are listed as flaky: the page loads
	// its data again, and marks them.
	tab.waitFor("the flaky cases marked", `document.querySelectorAll("#tests .st-known").length === 2`)
	if !await[bool](tab, asFresh) {
		t.Fatalf("after the verdicts the test cases differ from a fresh page's: %s", tab.describe())
	}
	tab.equal(`window.tests === document.getElementById("tests") && window.a.isConnected`, true)
}

// openGate lets one attempt of gatedCases start: it writes a line to the gate
// once the pipedef opens it.
func openGate(t *testing.T, gate string) {
	t.Helper()
	opened := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(gate, os.O_WRONLY, 0)
		if err == nil {
			_, err = f.WriteString("go\n")
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		opened <- err
	}()
	select {
	case err := <-opened:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wt.Deadline):
		t.Fatalf("the pipedef did not open %s in %v", gate, wt.Deadline)
	}
}
