package boss_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/bettertest/bettertest"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

// manyLines is the output of uiBench's task "many" (quick mode: 30,000).
func manyLines() int { return scale(100_000, 30_000) }

// uiBench is the pipeline the UI's benchmarks show: a build, a test with 10
// lines of output, one with manyLines and one that fails.
func uiBench() string {
	return fmt.Sprintf(`import bettertest as bt
BASE = "bettertest/base:bookworm"
p = bt.pipeline("bench")
with p.stage("build") as s:
    s.build("compile", image=BASE, command="mkdir /out && echo ok > /out/ok", outputs=["/out"])
with p.stage("test") as s:
    s.test("few", image=BASE, command="seq 10")
    s.test("many", image=BASE, command="seq %d")
    s.test("lint", image=BASE, command="echo 'style: line too long' >&2; exit 1")
`, manyLines())
}

// uiPage is a page of the UI that the benchmarks measure.
type uiPage struct{ name, path string }

// uiPages are the pages of a boss that ran uiBench once, as run #1.
var uiPages = []uiPage{
	{"pipelines", "/"},
	{"run", "/runs/1"},
	{"task-10-lines", "/runs/1/tasks/few"},
	{"task-100k-lines", "/runs/1/tasks/many"},
	{"workers", "/workers"},
}

// startUIBench starts a worker and a boss and runs uiBench to its end.
func startUIBench(b *testing.B) *wt.Boss {
	b.Helper()
	worker := wt.Start(b, bin, wt.Options{})
	boss := wt.StartBoss(b, bin, wt.BossOptions{Pipedefs: []string{pipedef(b, b.TempDir(), "bench", uiBench())}, Workers: []*wt.Worker{worker}})
	if r := runToEnd(b, boss, "bench"); r.ID != 1 || r.Status != bettertest.StatusFailed {
		b.Fatalf("the bench run ended as #%d %s, want #1 failed (its lint fails): %s", r.ID, r.Status, r.Error)
	}
	return boss
}

// runToEnd triggers a run of pipeline and returns it once it ended, as the
// run's own event stream tells.
func runToEnd(b *testing.B, boss *wt.Boss, pipeline string) bettertest.Run {
	b.Helper()
	r := trigger(b, boss, pipeline)
	for _, ev := range boss.Events(b, fmt.Sprintf("/api/events?run=%d", r.ID)).All(b) {
		if ev.Name == bettertest.BossEventRun {
			if err := json.Unmarshal([]byte(ev.Data), &r); err != nil {
				b.Fatal(err)
			}
		}
	}
	return r
}

// get fetches path and returns its body; the answer must be 200.
func get(t testing.TB, boss *wt.Boss, path string) []byte {
	t.Helper()
	status, body := boss.Do(t, http.MethodGet, path, nil)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, status, body)
	}
	return body
}

// BenchmarkUIPageWeight is the weight of each page: its HTML, app.js and
// app.css (target < 60 KB). It also reports what the page's event stream
// sends first, before any change: the fragments that bring it up to date.
func BenchmarkUIPageWeight(b *testing.B) {
	const target = 60 << 10
	boss := startUIBench(b)
	for range b.N {
		assets := len(get(b, boss, "/ui/app.js")) + len(get(b, boss, "/ui/app.css"))
		for _, p := range uiPages {
			html := len(get(b, boss, p.path))
			first := firstFragments(b, boss, p.path)
			weight := html + assets
			b.ReportMetric(float64(weight)/1024, "KB-"+p.name)
			b.Logf("%-16s %6.1f KB = HTML %6.1f KB + app.js and app.css %4.1f KB: %3.0f%% of the 60 KB target; its stream's first fragments %6.1f KB",
				p.name, kib(weight), kib(html), kib(assets), 100*float64(weight)/target, kib(first))
		}
	}
}

func kib(n int) float64 { return float64(n) / 1024 }

// firstFragments is the size of the first fragments event of a tab on path.
func firstFragments(b *testing.B, boss *wt.Boss, path string) int {
	b.Helper()
	s := boss.Events(b, "/ui/events?path="+path)
	defer s.Close()
	for {
		if ev := s.Next(b); ev.Name == "fragments" {
			return len(ev.Data)
		}
	}
}

// BenchmarkUITimeToFirstByte is the time to the first byte of each page's
// answer from a Go client on a kept-alive connection, median and p99 of 200
// requests (quick mode: 20; target < 20 ms), against GET /api/workers, a tiny
// JSON answer of the same server: the floor.
func BenchmarkUITimeToFirstByte(b *testing.B) {
	requests := scale(200, 20)
	boss := startUIBench(b)
	client := &http.Client{}
	ttfb := func(path string) time.Duration {
		var start time.Time
		var first time.Duration
		trace := &httptrace.ClientTrace{GotFirstResponseByte: func() { first = time.Since(start) }}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, boss.URL+path, nil)
		if err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s: %s %v", path, resp.Status, err)
		}
		return first
	}
	measure := func(path string) (p50, p99 float64) {
		return sample(requests, func() time.Duration { return ttfb(path) })
	}
	for range b.N {
		floor50, floor99 := measure("/api/workers")
		b.ReportMetric(floor50, "ms-p50-api-workers")
		b.Logf("%-16s p50 %6.2f ms, p99 %6.2f ms (the floor)", "GET /api/workers", floor50, floor99)
		for _, p := range uiPages {
			p50, p99 := measure(p.path)
			b.ReportMetric(p50, "ms-p50-"+p.name)
			b.ReportMetric(p99, "ms-p99-"+p.name)
			b.Logf("%-16s p50 %6.2f ms, p99 %6.2f ms: %5.1fx the floor's p50 (target < 20 ms)", p.name, p50, p99, p50/floor50)
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// stampLines is how many timestamped lines BenchmarkUIEventToDOM's task
// prints (quick mode: 200).
func stampLines() int { return scale(2000, 200) }

// BenchmarkUIEventToDOM is the latency from a line written in a container
// to that line in the DOM of its task page in Chromium, p99 (target < 50 ms),
// against the same lines read in the same run by a Go client of /api/events:
// the boss's own delivery, which the UI builds on. Between the two, a Go
// client of a second tab's /ui/events stream on the same page shows what
// the UI's server side adds. The task prints nanosecond timestamps
// (date +%s%N); Chromium, the Go clients and the container share the
// machine's clock. In the page a MutationObserver stamps each new line with
// Date.now() (a millisecond clock) as it enters the DOM. Lines that came
// with the page, before the observer began, are not measured.
func BenchmarkUIEventToDOM(b *testing.B) {
	dir := b.TempDir()
	worker := wt.Start(b, bin, wt.Options{})
	boss := wt.StartBoss(b, bin, wt.BossOptions{Workers: []*wt.Worker{worker}, Pipedefs: []string{pipedef(b, dir, "stamps", fmt.Sprintf(`import bettertest as bt
p = bt.pipeline("stamps")
with p.stage("main") as s:
    s.test("stamps", image="bettertest/base:bookworm", command="for i in $(seq %d); do date +%%s%%N; done")
`, stampLines()))}})
	tab := newTab(b, boss.URL)
	for range b.N {
		events := boss.Events(b, "/api/events")
		apiDone := make(chan []time.Duration, 1)
		started := make(chan int64, 1)
		go func() { apiDone <- apiStampLatencies(events, started) }()
		status, body := boss.Do(b, http.MethodPost, "/api/pipelines/stamps/runs", nil)
		if status != http.StatusCreated {
			b.Fatalf("trigger: %d %s", status, body)
		}
		path := fmt.Sprintf("/runs/%d/tasks/stamps", <-started) // the task exists: its page can be opened

		uiEvents := boss.Events(b, "/ui/events?path="+path)
		type streamResult struct {
			latencies []time.Duration
			before    int
			err       error
		}
		streamDone := make(chan streamResult, 1)
		go func() {
			lat, before, err := uiStampLatencies(uiEvents)
			streamDone <- streamResult{lat, before, err}
		}()

		tab.open(path)
		dom := await[struct {
			Latencies []float64 `json:"latencies"`
			Before    int       `json:"before"`
		}](tab, strings.Replace(collectStampsJS, "LINES", strconv.Itoa(stampLines()), 1))
		api, stream := <-apiDone, <-streamDone
		events.Close()
		uiEvents.Close()
		if stream.err != nil {
			b.Fatalf("the tab's event stream: %v", stream.err)
		}
		if n := stampLines(); len(dom.Latencies)+dom.Before != n || len(stream.latencies)+stream.before != n || len(api) != n {
			b.Fatalf("measured %d lines in the DOM (%d came with the page), %d on /ui/events (%d came first) and %d on /api/events, want %d each",
				len(dom.Latencies), dom.Before, len(stream.latencies), stream.before, len(api), stampLines())
		}
		slices.Sort(dom.Latencies)
		d50, d99 := dom.Latencies[len(dom.Latencies)/2], dom.Latencies[len(dom.Latencies)*99/100]
		s50, s99 := percentiles(stream.latencies)
		a50, a99 := percentiles(api)
		b.ReportMetric(d99, "ms-p99-dom")
		b.ReportMetric(s99, "ms-p99-ui-events")
		b.ReportMetric(a99, "ms-p99-api-events")
		b.ReportMetric(d99/a99, "ratio-p99")
		b.Logf("container -> DOM of the task page in Chromium: p50 %.1f ms, p99 %.1f ms over %d lines (%d came with the page); target p99 < 50 ms", d50, d99, len(dom.Latencies), dom.Before)
		b.Logf("container -> the tab's /ui/events, read by Go: p50 %.1f ms, p99 %.1f ms over %d lines (%d came first)", s50, s99, len(stream.latencies), stream.before)
		b.Logf("container -> /api/events, read by Go (the peer): p50 %.1f ms, p99 %.1f ms; DOM/API p99 %.1fx", a50, a99, d99/a99)
	}
}

// sample measures f n times: the median and the p99, in milliseconds.
func sample(n int, f func() time.Duration) (p50, p99 float64) {
	ds := make([]time.Duration, n)
	for i := range ds {
		ds[i] = f()
	}
	return percentiles(ds)
}

// percentiles are the median and the p99 of ds, in milliseconds.
func percentiles(ds []time.Duration) (p50, p99 float64) {
	s := slices.Clone(ds)
	slices.Sort(s)
	return ms(s[len(s)/2]), ms(s[len(s)*99/100])
}

// collectStampsJS resolves, once the log holds LINES complete lines, with
// Date.now() minus the timestamp of each line that entered the DOM after it
// began, taken when the MutationObserver saw it. It reads only the nodes
// that were added, so its own cost does not grow with the log.
const collectStampsJS = `new Promise((resolve) => {
	const latencies = [];
	let before = 0, complete = 0, partial = "";
	const start = (log) => {
		const lines = log.textContent.split("\n");
		partial = lines.pop();
		before = complete = lines.length;
	};
	const take = (text, now) => {
		const lines = (partial + text).split("\n");
		partial = lines.pop();
		for (const l of lines) latencies.push(now - Number(l) / 1e6);
		complete += lines.length;
	};
	const observer = new MutationObserver((records) => {
		const now = Date.now();
		for (const r of records) {
			for (const n of r.addedNodes) {
				if (n.nodeType === Node.TEXT_NODE && r.target.id === "log") take(n.data, now);
				else if (n.nodeType === Node.ELEMENT_NODE && (n.id === "log" || n.querySelector("#log"))) start(n.id === "log" ? n : n.querySelector("#log"));
			}
		}
		if (complete >= LINES) { observer.disconnect(); resolve({latencies, before}); }
	});
	observer.observe(document, {subtree: true, childList: true});
	start(document.getElementById("log"));
})`

// apiStampLatencies reads /api/events until the stamps run ends: it sends
// the run's id on started when its task starts, and returns each line's
// latency.
func apiStampLatencies(events *wt.Stream, started chan<- int64) []time.Duration {
	var out []time.Duration
	sent := false
	for {
		ev, err := events.Read()
		if err != nil {
			return out
		}
		now := time.Now()
		switch ev.Name {
		case bettertest.BossEventTask:
			var t bettertest.TaskEvent
			if json.Unmarshal([]byte(ev.Data), &t) == nil && !sent {
				started <- t.RunID
				sent = true
			}
		case bettertest.BossEventOutput:
			var o bettertest.OutputChunkEvent
			if json.Unmarshal([]byte(ev.Data), &o) != nil {
				continue
			}
			for _, l := range strings.Split(strings.TrimSuffix(o.Text, "\n"), "\n") {
				if ns, err := strconv.ParseInt(l, 10, 64); err == nil {
					out = append(out, now.Sub(time.Unix(0, ns)))
				}
			}
		case bettertest.BossEventRun:
			var r bettertest.Run
			if json.Unmarshal([]byte(ev.Data), &r) == nil && r.FinishedMS != 0 {
				return out
			}
		}
	}
}

// uiStampLatencies reads a tab's /ui/events stream on the stamps task page
// until the log holds stampLines lines, and returns the latency of each line
// appended to the log, and how many lines came with the first fragments.
func uiStampLatencies(s *wt.Stream) (out []time.Duration, before int, err error) {
	partial, complete, first := "", 0, true
	for complete < stampLines() {
		ev, err := s.Read()
		if err != nil {
			return out, before, err
		}
		now := time.Now()
		if ev.Name != "fragments" {
			continue
		}
		var frags []struct{ Op, ID, HTML string }
		if err := json.Unmarshal([]byte(ev.Data), &frags); err != nil {
			return out, before, err
		}
		for _, f := range frags {
			switch {
			case first && f.Op == "replace" && f.ID == "main":
				_, log, _ := strings.Cut(f.HTML, `<pre id="log" tabindex="0">`)
				log, _, _ = strings.Cut(log, "</pre>")
				before = strings.Count(log, "\n")
				complete = before
				partial = log[strings.LastIndexByte(log, '\n')+1:]
			case f.Op == "append" && f.ID == "log":
				lines := strings.Split(partial+f.HTML, "\n")
				partial = lines[len(lines)-1]
				for _, l := range lines[:len(lines)-1] {
					ns, err := strconv.ParseInt(l, 10, 64)
					if err != nil {
						return out, before, fmt.Errorf("line %q: %v", l, err)
					}
					out = append(out, now.Sub(time.Unix(0, ns)))
					complete++
				}
			case f.ID == "log" || f.ID == "main":
				return out, before, fmt.Errorf("the log was replaced, not appended to: %.200s", f.HTML)
			}
		}
		first = false
	}
	return out, before, nil
}

// BenchmarkUITaskPage100kLines is the task page of a task with 100,000 lines
// of output (quick mode: 30,000) (it shows the tail, 1000 lines, and a control to load more),
// against the page of a task with 10: the server's GET of the whole page, and
// in Chromium the time from the navigation to the load event and to the page
// being live (its event stream's first fragments applied), then the time of
// "load more" (m) from the key to the 10,000 more lines in the DOM.
func BenchmarkUITaskPage100kLines(b *testing.B) {
	tries := scale(10, 2)
	boss := startUIBench(b)
	tab := newTab(b, boss.URL)
	few, many := "/runs/1/tasks/few", "/runs/1/tasks/many"
	serverGet := func(path string) time.Duration {
		ds := make([]time.Duration, tries)
		for i := range ds {
			start := time.Now()
			get(b, boss, path)
			ds[i] = time.Since(start)
		}
		return median(ds)
	}
	// browserLoad is the median over tries of the time from the navigation's
	// start to the end of its load event (the Navigation Timing entry, which
	// a PerformanceObserver hands over when it is complete), and to the page
	// being live.
	browserLoad := func(path string) (load, live time.Duration) {
		var loads, lives []time.Duration
		for range tries {
			start := time.Now()
			tab.open(path)
			lives = append(lives, time.Since(start))
			loadMS := await[float64](tab, `new Promise((resolve) => new PerformanceObserver((list, observer) => {
				observer.disconnect();
				const e = list.getEntries()[0];
				resolve(e.loadEventEnd - e.startTime);
			}).observe({type: "navigation", buffered: true}))`)
			loads = append(loads, time.Duration(loadMS*float64(time.Millisecond)))
		}
		return median(loads), median(lives)
	}
	for range b.N {
		getFew, getMany := serverGet(few), serverGet(many)
		loadFew, liveFew := browserLoad(few)
		loadMany, liveMany := browserLoad(many)
		tab.equal(`document.getElementById("log").textContent.split("\n").length`, 1001)
		n := manyLines()
		tab.equal(`document.getElementById("log-more").textContent`, fmt.Sprintf("%d earlier lines are not shown. Show 10000 more", n-1000))

		// m shows 10,000 more lines: from the key to the lines in the DOM.
		eval[chromedp.Void](tab, `window.more = new Promise((resolve) => {
			let t0;
			window.addEventListener("keydown", (e) => { if (e.key === "m") t0 = performance.now(); }, {capture: true, once: true});
			const observer = new MutationObserver(() => {
				const log = document.getElementById("log");
				if (log && log.textContent.split("\n").length === 11001) { observer.disconnect(); resolve(performance.now() - t0); }
			});
			observer.observe(document, {subtree: true, childList: true, characterData: true});
		})`)
		tab.press("m")
		moreMS := await[float64](tab, `window.more`)
		tab.equal(`document.getElementById("log-more").textContent`, fmt.Sprintf("%d earlier lines are not shown. Show 10000 more", n-11000))
		tab.equal(`document.getElementById("log").textContent.split("\n").slice(0, 2).join(",")`, fmt.Sprintf("%d,%d", n-11000+1, n-11000+2))

		b.ReportMetric(ms(getMany), "ms-get-100k")
		b.ReportMetric(ms(loadMany), "ms-load-100k")
		b.ReportMetric(ms(liveMany), "ms-live-100k")
		b.ReportMetric(moreMS, "ms-more")
		b.Logf("server GET of the page: %.2f ms for %d lines against %.2f ms for 10: %.1fx", ms(getMany), n, ms(getFew), float64(getMany)/float64(getFew))
		b.Logf("Chromium, navigation to load event end: %.1f ms for %d lines against %.1f ms for 10: %.1fx", ms(loadMany), n, ms(loadFew), float64(loadMany)/float64(loadFew))
		b.Logf("Chromium, navigation to live (first fragments applied): %.1f ms for %d lines against %.1f ms for 10: %.1fx", ms(liveMany), n, ms(liveFew), float64(liveMany)/float64(liveFew))
		b.Logf("load more (m): %.1f ms from the key to 10,000 more lines in the DOM", moreMS)
	}
}
