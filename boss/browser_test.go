package boss_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	wt "github.com/bettertest/bettertest/internal/workertest"
)

// checks is a pipeline with a build and three tests: one passes, one fails,
// and one prints a line every tenth of a second for a minute, long enough to
// be watched live and cancelled.
const checks = `import bettertest as bt
BASE = "bettertest/base:bookworm"
p = bt.pipeline("checks")
with p.stage("build") as s:
    app = s.build("compile", image=BASE, command="mkdir /out && echo 'echo unit ok' > /out/unit.sh", outputs=["/out"])
with p.stage("test") as s:
    s.test("unit", image=BASE, command="sh /app/out/unit.sh", inputs={"/app": app})
    s.test("lint", image=BASE, command="echo 'style: line too long' >&2; exit 1")
    s.test("stream", image=BASE, command="for i in $(seq 1 600); do echo line $i; sleep 0.1; done")
`

// tiny is a pipeline of one quick test.
const tiny = `import bettertest as bt
p = bt.pipeline("tiny")
with p.stage("main") as s:
    s.test("hello", image="bettertest/base:bookworm", command="echo hello")
`

// What the tests read from the page.
const (
	// Every task card of a run page as "name status", sorted by name.
	jsTasks = `[...document.querySelectorAll("a.task")].map(a => a.querySelector(".name").textContent + " " + a.querySelector(".st").textContent).sort().join("\n")`
	// The names of the selected rows or cards, in page order.
	jsSelected = `[...document.querySelectorAll('[aria-selected="true"]')].map(e => e.querySelector(".name").textContent).join(",")`
	// The names of the rows or cards, in page order.
	jsRows = `[...document.querySelectorAll("[aria-selected]")].map(e => e.querySelector(".name").textContent).join(",")`
	// The run's status in the heading of a run page.
	jsRunStatus = `document.querySelector("#head h1 .st")?.textContent`
)

// A real boss and worker, driven from headless Chromium with the keyboard
// (and the mouse once): start a run with r, watch its tasks turn green and
// red without a reload, open a task with Enter and watch its output grow, go
// back with Esc, cancel with c, then w, p and ?.
func TestBrowserDrivesTheUI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	worker := wt.Start(t, bin, wt.Options{MaxParallel: 2})
	boss := wt.StartBoss(t, bin, wt.BossOptions{
		Pipedefs: []string{pipedef(t, dir, "checks", checks), pipedef(t, dir, "tiny", tiny)},
		Workers:  []*wt.Worker{worker},
	})
	tab := newTab(t, boss.URL)
	tab.open("/")
	// Set once: it survives everything below only if the page is never reloaded.
	eval[bool](tab, `window.loadedOnce = true`)
	// Every status each task card shows, in order, as it changes.
	eval[bool](tab, `window.seen = {}; new MutationObserver(() => {
		for (const a of document.querySelectorAll("a.task")) {
			const name = a.querySelector(".name").textContent, st = a.querySelector(".st").textContent;
			const s = (seen[name] ||= []);
			if (s[s.length - 1] !== st) s.push(st);
		}
	}).observe(document, {subtree: true, childList: true, attributes: true, characterData: true}); true`)

	tab.waitFor("both pipelines without runs", `document.title === "Pipelines · bettertest" && `+jsRows+` === "checks,tiny"`)
	tab.equal(`document.querySelector("#p-0 .st").textContent`, "○ no runs")
	tab.equal(jsSelected, "checks")
	tab.screenshot("pipelines")

	// The selection moves with j/k and the arrows, and it shows: a blue border
	// on the selected row only.
	border := `[...document.querySelectorAll(".row")].map(e => getComputedStyle(e).borderTopColor).join(" | ")`
	tab.equal(border, "rgb(9, 105, 218) | rgba(0, 0, 0, 0)")
	for _, step := range []struct{ key, want string }{{"j", "tiny"}, {"k", "checks"}, {kb.ArrowDown, "tiny"}, {kb.ArrowUp, "checks"}} {
		tab.press(step.key)
		tab.waitFor("the selection on "+step.want, jsSelected+` === "`+step.want+`"`)
	}
	tab.equal(border, "rgb(9, 105, 218) | rgba(0, 0, 0, 0)")

	// r runs the selected pipeline and shows the run, which changes live.
	tab.press("r")
	tab.waitFor("run #1's page", `location.pathname === "/runs/1"`)
	tab.waitFor("the tasks to end but the stream", jsTasks+` === "compile ✓ passed\nlint ✗ failed\nstream ● running\nunit ✓ passed"`)
	tab.equal(jsRunStatus, "● running")
	tab.equal(`document.title`, "checks #1 running · bettertest")
	tab.equal(`document.querySelector("#stage-0 h2").textContent + " | " + document.querySelector("#stage-1 h2").textContent`,
		"✓ passed build | ● running test 1 failed · 1 passed")
	// What failed comes first, live: lint, a test without results, is one failed case.
	tab.equal(`document.querySelector("#failures").textContent`, "What failed✗ failed lint exit code 1 1 failed")
	// Each card turned from running to its end without a reload: the page saw each state.
	seen := eval[map[string][]string](tab, `window.seen`)
	want := map[string][]string{
		"compile": {"● running", "✓ passed"},
		"unit":    {"● running", "✓ passed"},
		"lint":    {"● running", "✗ failed"},
		"stream":  {"● running"},
	}
	if !reflect.DeepEqual(seen, want) {
		t.Errorf("the statuses the task cards showed: %v, want %v", seen, want)
	}
	tab.equal(`window.loadedOnce === true`, true)
	tab.screenshot("run")

	// Select the stream with j/k, one row at a time, and open it with Enter.
	rows := strings.Split(eval[string](tab, jsRows), ",")
	at := indexOf(rows, eval[string](tab, jsSelected))
	for to := indexOf(rows, "stream"); at != to; {
		key := "j"
		if at > to {
			key = "k"
		}
		at += map[string]int{"j": 1, "k": -1}[key]
		tab.press(key)
		tab.waitFor("the selection on "+rows[at], jsSelected+` === "`+rows[at]+`"`)
	}
	tab.press(kb.Enter)
	tab.waitFor("the stream's page", `location.pathname === "/runs/1/tasks/stream" && document.getElementById("log") !== null`)
	tab.equal(`document.title`, "stream · checks #1 running · bettertest")
	// The output so far came with the page; more arrives while we look.
	shown := strings.Count(eval[string](tab, `document.getElementById("log").textContent`), "\n")
	more := shown + 5
	tab.waitFor(fmt.Sprintf("%d lines of output", more), `document.getElementById("log").textContent.split("\n").length > `+fmt.Sprint(more))
	if log := eval[string](tab, `document.getElementById("log").textContent`); !isLines(log) {
		t.Errorf("the stream's log is not line 1, line 2, ... in order:\n%s", log)
	}
	tab.equal(`document.querySelector("#head h1 .st").textContent`, "● running")
	tab.screenshot("task")

	// Esc goes back to the run, with the stream still selected; c cancels it.
	tab.press(kb.Escape)
	tab.waitFor("run #1's page again", `location.pathname === "/runs/1" && document.querySelector("a.task") !== null`)
	tab.equal(jsSelected, "stream")
	tab.press("c")
	tab.waitFor("the run cancelled", jsRunStatus+` === "⊘ cancelled"`)
	tab.waitFor("the stream cancelled", jsTasks+` === "compile ✓ passed\nlint ✗ failed\nstream ⊘ cancelled\nunit ✓ passed"`)
	tab.equal(`document.title`, "checks #1 cancelled · bettertest")
	tab.equal(`document.querySelector('button[data-action="cancel"]') === null`, true)

	// p shows the pipelines, with the one we came from selected.
	tab.press("p")
	tab.waitFor("the pipelines page", `location.pathname === "/" && document.getElementById("p-0") !== null`)
	tab.equal(jsSelected, "checks")
	tab.equal(`document.querySelector("#p-0 .st").textContent`, "⊘ cancelled")
	tab.equal(`[...document.querySelectorAll("#p-0 .sq")].map(a => a.title + " " + a.textContent).join(",")`, "#1 cancelled: 1 failed, 1 passed ⊘")

	// The mouse: a click on tiny's Run button starts a run and shows it.
	tab.click(`#p-1 button[data-action="run"]`)
	tab.waitFor("run #2 passed", `location.pathname === "/runs/2" && `+jsRunStatus+` === "✓ passed"`)
	tab.equal(jsTasks, "hello ✓ passed")
	tab.equal(`document.title`, "tiny #2 passed · bettertest")

	// w shows the workers.
	tab.press("w")
	// Its load comes from the worker's own events: it is idle once the
	// cancelled container is gone.
	tab.waitFor("the workers page with w0 idle", `location.pathname === "/workers" && `+
		`[...document.querySelectorAll("#w-0 .st, #w-0 .name, #w-0 .url, #w-0 .load")].map(e => e.textContent).join(" | ") === `+
		`"✓ up | w0 | `+worker.URL+` | 0 of 2 running, 0 runs of this boss"`)
	tab.equal(`document.title`, "Workers · bettertest")
	tab.equal(jsSelected, "w0")
	tab.screenshot("workers")

	// ? shows every shortcut; ? again hides them.
	tab.press("?")
	tab.waitFor("the help", `!document.getElementById("help").hidden`)
	tab.equal(`[...document.querySelectorAll("#help dt")].map(e => e.textContent + " " + e.nextElementSibling.textContent).join("\n")`,
		"j ↓ select the next row\n"+
			"k ↑ select the previous row\n"+
			"Enter open the selection: a pipeline's last run, a run's task, a flaky test's run\n"+
			"Esc ⌫ go back\n"+
			"r run the selected pipeline, or this run's pipeline again\n"+
			"c cancel the selected or shown run\n"+
			"a approve the shown run of a pull request from a fork\n"+
			"q quarantine or release the selected flaky test\n"+
			"m show more of a task's earlier output\n"+
			"p pipelines\n"+
			"f flaky tests\n"+
			"w workers\n"+
			"? show or hide these shortcuts")
	tab.screenshot("help")
	tab.press("?")
	tab.waitFor("the help hidden", `document.getElementById("help").hidden`)

	// Backspace goes back too.
	tab.press(kb.Backspace)
	tab.waitFor("the pipelines page", `location.pathname === "/" && document.getElementById("p-0") !== null`)
	tab.equal(`window.loadedOnce === true`, true)
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// isLines says whether log is "line 1\nline 2\n..." with no line missing,
// repeated or out of order; the last one may be unfinished.
func isLines(log string) bool {
	lines := strings.Split(log, "\n")
	for i, l := range lines {
		want := fmt.Sprintf("line %d", i+1)
		if l != want && (i < len(lines)-1 || !strings.HasPrefix(want, l)) {
			return false
		}
	}
	return true
}

// tab is one tab of a headless Chromium of its own, looking at a boss.
type tab struct {
	t      testing.TB
	ctx    context.Context
	base   string        // the boss's URL
	output *syncBuffer   // Chromium's stdout and stderr
	bound  time.Duration // how long one wait may take before the test fails
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newTab starts Debian's Chromium, headless, with the flags of the guide.
// It is closed when the test ends.
func newTab(t testing.TB, base string) *tab {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("Debian's chromium is not installed (%v): run scripts/setup-test-env.sh (make setup), which installs it", err)
	}
	tb := &tab{t: t, base: base, output: &syncBuffer{}, bound: time.Minute}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], // headless, --no-first-run, --disable-background-networking, --disable-sync
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(1280, 800),
		chromedp.CombinedOutput(tb.output),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	tb.ctx = ctx
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v\n%s", path, err, tb.output)
	}
	return tb
}

// open loads the page at path and returns once the page is live: its
// script's event stream has brought the first fragments, so it has a
// session and sends keys. It waits on the stream's messages, which Chromium
// reports over the DevTools protocol.
func (tb *tab) open(path string) {
	tb.t.Helper()
	tb.live(path, chromedp.Navigate(tb.base+path))
}

// live does action, which loads a page, and returns once that page is live
// (see open).
func (tb *tab) live(path string, action chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, tb.bound)
	defer cancel()
	live := make(chan struct{}, 1)
	var stream network.RequestID // the page's event stream; only the listener uses it
	if err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			if ev.Type == network.ResourceTypeEventSource {
				stream = ev.RequestID
			}
		case *network.EventEventSourceMessageReceived:
			if ev.RequestID == stream && ev.EventName == "fragments" {
				select {
				case live <- struct{}{}:
				default:
				}
			}
		}
	}); err != nil {
		tb.t.Fatal(err)
	}
	if err := chromedp.Do(ctx, action); err != nil {
		tb.t.Fatalf("opening %s: %v\n%s", path, err, tb.output)
	}
	select {
	case <-live:
	case <-ctx.Done():
		tb.t.Fatalf("%s: no fragments on the page's event stream in %v: %s", path, tb.bound, tb.describe())
	}
}

// waitJS is a Promise that resolves once the condition COND holds: it is
// checked at once and again on every change of the document and of the URL
// (history.pushState changes no element: the Navigation API tells of it),
// never on a timer.
const waitJS = `new Promise((resolve, reject) => {
	const stop = () => { observer.disconnect(); navigation.removeEventListener("currententrychange", check); };
	const check = () => {
		try {
			if (COND) { stop(); resolve(true); }
		} catch (e) { stop(); reject(e); }
	};
	const observer = new MutationObserver(check);
	observer.observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
	navigation.addEventListener("currententrychange", check);
	check();
})`

// waitFor returns once the JavaScript expression cond holds in the page. The
// bound only turns a hang into a failure.
func (tb *tab) waitFor(what, cond string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, tb.bound)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](strings.Replace(waitJS, "COND", "("+cond+")", 1), chromedp.EvalAwaitPromise)); err != nil {
		tb.t.Fatalf("waiting for %s (%s): %v\n%s", what, cond, err, tb.describe())
	}
}

// describe is what the page shows, for a failure's message.
func (tb *tab) describe() string {
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.pathname + " «" + document.title + "»\n" + document.body.innerText`))
	if err != nil {
		return fmt.Sprintf("the page cannot be read: %v\nChromium's output:\n%s", err, tb.output)
	}
	if len(s) > 4000 {
		s = s[:4000] + "…"
	}
	return "the page shows " + s
}

// eval is the value of a JavaScript expression in the page.
func eval[T any](tb *tab, js string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, tb.bound)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		tb.t.Fatalf("evaluating %s: %v\n%s", js, err, tb.describe())
	}
	return v
}

// await is the value of a JavaScript expression that gives a Promise, once
// the Promise resolves.
func await[T any](tb *tab, js string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, tb.bound)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("awaiting %s: %v\n%s", js, err, tb.describe())
	}
	return v
}

// equal checks that the expression's value is want.
func (tb *tab) equal(js string, want any) {
	tb.t.Helper()
	var got any
	switch want.(type) {
	case string:
		got = eval[string](tb, js)
	case bool:
		got = eval[bool](tb, js)
	case int:
		got = eval[int](tb, js)
	default:
		tb.t.Fatalf("equal: no case for %T", want)
	}
	if got != want {
		tb.t.Errorf("%s = %#v, want %#v", js, got, want)
	}
}

// press types keys (see package kb for the names of the special ones) into
// the page, as a keyboard would.
func (tb *tab) press(keys string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, tb.bound)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.KeyEvent(keys)); err != nil {
		tb.t.Fatalf("pressing %q: %v", keys, err)
	}
}

// click clicks the middle of the element that selector finds, as a mouse would.
func (tb *tab) click(selector string) {
	tb.t.Helper()
	xy := eval[[]float64](tb, `(() => {
		const e = document.querySelector(`+"`"+selector+"`"+`);
		e.scrollIntoView({block: "center"});
		const r = e.getBoundingClientRect();
		return [r.x + r.width / 2, r.y + r.height / 2];
	})()`)
	ctx, cancel := context.WithTimeout(tb.ctx, tb.bound)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.MouseClickXY(xy[0], xy[1])); err != nil {
		tb.t.Fatalf("clicking %s: %v", selector, err)
	}
}

// screenshot saves the page as bin/ui-screenshots/NAME.png, a test artifact.
func (tb *tab) screenshot(name string) {
	tb.t.Helper()
	png := func() []byte {
		ctx, cancel := context.WithTimeout(tb.ctx, tb.bound)
		defer cancel()
		data, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			tb.t.Fatalf("screenshot of %s: %v", name, err)
		}
		return data
	}()
	dir, err := filepath.Abs(filepath.Join("..", "bin", "ui-screenshots"))
	if err != nil {
		tb.t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.t.Fatal(err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
	tb.t.Logf("screenshot of the %s page: %s", name, path)
}
