package boss_test

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/bettertest/bettertest"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

// failing is a pipeline as a user meets one when things go wrong: a JUnit
// test retried twice, with a case that fails every attempt with a long
// message and one that fails only the first time (flaky), a skipped and a
// passing case, and 30 lines of output per attempt; a lint without
// results; a test that passes; then the pipedef's own error.
const failing = `import bettertest as bt
BASE = "bettertest/base:bookworm"
REPORT = r"""mkdir -p /results
for i in $(seq 1 30); do echo "attempt $BETTERTEST_ATTEMPT: line $i"; done
if [ "$BETTERTEST_ATTEMPT" = 1 ]; then cache='<failure message="cache miss">stale entry</failure>'; fi
long=$(for i in $(seq 1 12); do echo "  frame $i"; done)
cat > /results/junit.xml <<XML
<testsuite name="pkg">
  <testcase classname="pkg" name="TestParse" time="0.012"><failure message="assert 3 == 2">AssertionError
$long</failure></testcase>
  <testcase classname="pkg" name="TestCache" time="0.250">$cache</testcase>
  <testcase classname="pkg" name="TestNetwork" time="0"><skipped message="no network here"/></testcase>
  <testcase classname="pkg" name="TestAdd" time="0.001"/>
</testsuite>
XML
exit 1"""
p = bt.pipeline("failing")
with p.stage("test") as s:
    s.test("unit", image=BASE, command=REPORT, results="/results/junit.xml", retries=2)
    s.test("lint", image=BASE, command='sleep 0.5; echo "a.py:3: unused import" >&2; exit 1')
    s.test("smoke", image=BASE, command="sleep 1; echo ok")
raise RuntimeError("could not tag the release")
`

// A failing run as its user reads it: bettertest run leads with what
// failed, the API counts the test cases of each task, stage and run (the
// flaky case as flaky), and the run page leads with the failed tasks, their
// failed cases and the pipedef's traceback.
func TestFailuresAreReadable(t *testing.T) {
	wt.Integration(t)
	t.Parallel()
	dir := t.TempDir()
	worker := wt.Start(t, bin, wt.Options{})
	b := wt.StartBoss(t, bin, wt.BossOptions{Pipedefs: []string{pipedef(t, dir, "failing", failing)}, Workers: []*wt.Worker{worker}})

	cmd := exec.Command(bin, "run", "--boss", b.URL, "failing")
	got, _ := cmd.Output()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("bettertest run exited %d, want 1", code)
	}
	durations := regexp.MustCompile(`\b\d+(\.\d+)?(ms|s)\b`)
	text := durations.ReplaceAllString(strings.ReplaceAll(string(got), b.URL, "URL"), "D")
	// Whether a task waited for one of the worker's slots depends on which started first.
	text = strings.ReplaceAll(text, "  waited D for a slot", "")
	// Tasks are told as they end, in whatever order that is.
	lines := strings.SplitAfter(text, "\n")
	if len(lines) > 6 {
		slices.Sort(lines[3:6])
		text = strings.Join(lines, "")
	}
	var want strings.Builder
	want.WriteString("run #1 of failing: URL/runs/1\n" +
		"running on worker w0\n" +
		"stage test\n" +
		"  failed  lint  D  cases: 1 failed  exit 1\n" + // sorted, see above
		"  failed  unit  D  cases: 1 failed, 1 flaky, 1 passed, 1 skipped  exit 1\n" +
		"  passed  smoke  D  cases: 1 passed\n" +
		"what failed:\n" +
		"  ✗ unit  exit 1 · 3 attempts · cases: 1 failed, 1 flaky, 1 passed, 1 skipped\n" +
		"    failed pkg.TestParse  (failed on attempts 1, 2, 3)\n" +
		"      | assert 3 == 2\n" +
		"      | AssertionError\n")
	for i := 1; i <= 8; i++ {
		want.WriteString("      |   frame " + strconv.Itoa(i) + "\n")
	}
	want.WriteString("      … 4 more lines: URL/runs/1/tasks/unit\n" +
		"      (the last 20 lines of attempt 3 of 3; the whole output: URL/runs/1/tasks/unit/raw)\n")
	for i := 11; i <= 30; i++ {
		want.WriteString("      | attempt 3: line " + strconv.Itoa(i) + "\n")
	}
	want.WriteString("  ✗ lint  exit 1 · cases: 1 failed\n" +
		"      | a.py:3: unused import\n" +
		"  the pipedef's own output:\n" +
		"      | Traceback (most recent call last):\n" +
		"      |   File \"/work/failing.py\", line 22, in <module>\n" +
		"      |     raise RuntimeError(\"could not tag the release\")\n" +
		"      | RuntimeError: could not tag the release\n" +
		"run #1 failed in D: the pipedef raised RuntimeError: could not tag the release; test cases: 2 failed, 1 flaky, 2 passed, 1 skipped\n")
	if text != want.String() {
		t.Errorf("bettertest run printed\n%s\nwant\n%s", text, want.String())
	}

	// The whole output marks each attempt.
	log := logText(t, b, "/api/runs/1/tasks/unit/log")
	if n, m := strings.Count(log, "\n── attempt 2 of 3 ──\n"), strings.Count(log, "\n── attempt 3 of 3 ──\n"); n != 1 || m != 1 {
		t.Errorf("the unit log marks attempt 2 %d times and attempt 3 %d times:\n%s", n, m, log)
	}

	// The API counts, read back from the history once the run has ended.
	var run bettertest.Run
	b.JSON(t, "/api/runs/1", &run)
	counts := map[string]*bettertest.TestCounts{"run": run.Tests, "stage test": run.Stages[0].Tests}
	for _, task := range run.Stages[0].Tasks {
		counts[task.Name] = task.Tests
	}
	data, _ := json.Marshal(counts)
	if want := `{"lint":{"passed":0,"failed":1,"skipped":0,"flaky":0},"run":{"passed":2,"failed":2,"skipped":1,"flaky":1},` +
		`"smoke":{"passed":1,"failed":0,"skipped":0,"flaky":0},"stage test":{"passed":2,"failed":2,"skipped":1,"flaky":1},` +
		`"unit":{"passed":1,"failed":1,"skipped":1,"flaky":1}}`; string(data) != want {
		t.Errorf("counts %s\nwant %s", data, want)
	}
	var runs []bettertest.Run
	b.JSON(t, "/api/runs", &runs)
	if data, _ := json.Marshal(runs[0].Tests); string(data) != `{"passed":2,"failed":2,"skipped":1,"flaky":1}` {
		t.Errorf("the run list's counts %s", data)
	}

	// The run page leads with what failed.
	status, page := b.Do(t, http.MethodGet, "/runs/1", nil)
	failures := regexp.MustCompile(`(?s)<section id="failures".*?</section>`).FindString(string(page))
	var region strings.Builder
	region.WriteString(`<section id="failures" class="failures"><h2>What failed</h2><ul class="failed-tasks">` +
		`<li><a href="/runs/1/tasks/unit"><span class="st st-failed">✗ failed</span> <span class="name">unit</span></a> <span class="why">exit code 1 · 3 attempts</span>` +
		` <span class="counts" title="test cases, each by its last attempt"><span class="st-failed">1 failed</span> · <span class="st-flaky">1 flaky</span> · <span class="st-passed">1 passed</span> · <span class="st-skipped">1 skipped</span></span>` +
		`<ul class="cases"><li><span class="st st-failed">✗ failed</span> <span class="name">pkg.TestParse</span> <span class="attempts">failed on attempts 1, 2, 3</span><pre class="output">assert 3 == 2` + "\n" + `AssertionError`)
	for i := 1; i <= 8; i++ {
		region.WriteString("\n  frame " + strconv.Itoa(i))
	}
	region.WriteString(`</pre><a class="more" href="/runs/1/tasks/unit">4 more lines on the task's page</a></li></ul></li>` +
		`<li><a href="/runs/1/tasks/lint"><span class="st st-failed">✗ failed</span> <span class="name">lint</span></a> <span class="why">exit code 1</span>` +
		` <span class="counts" title="test cases, each by its last attempt"><span class="st-failed">1 failed</span></span></li></ul>` +
		`<h3>The pipedef's own output</h3><pre class="output">Traceback (most recent call last):
  File &#34;/work/failing.py&#34;, line 22, in &lt;module&gt;
    raise RuntimeError(&#34;could not tag the release&#34;)
RuntimeError: could not tag the release</pre></section>`)
	if status != http.StatusOK || failures != region.String() {
		t.Errorf("the run page (HTTP %d) shows\n%s\nwant\n%s", status, failures, region.String())
	}
	status, raw := b.Do(t, http.MethodGet, "/runs/1/raw", nil)
	if !strings.HasPrefix(string(raw), "Traceback (most recent call last):\n") || status != http.StatusOK {
		t.Errorf("the pipedef's raw output (HTTP %d): %q", status, raw)
	}
}
