package ui

import (
	"fmt"
	"hash/crc32"
	"html"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/bettertest/bettertest"
)

// Region is an element the browser can replace on its own: its outer HTML
// is <Tag id="ID"Attrs>Inner</Tag>.
type Region struct {
	ID, Tag, Attrs, Inner string
	// List, when set, is Inner as parts the browser can change one by one:
	// a region of thousands of rows changes by the rows that changed.
	List *List
}

// List is a region's content as elements: Head, each one element's outer
// HTML, then one list element, Open and Close, holding Items, each one
// element's outer HTML named by its key in Keys. Inner is their
// concatenation.
type List struct {
	Head        []string
	Open, Close string
	Keys, Items []string
}

// HTML is the region's outer HTML.
func (r Region) HTML() string {
	var b strings.Builder
	r.write(&b)
	return b.String()
}

// write writes the region's outer HTML to b, without copying its content
// first: a region can be a megabyte.
func (r Region) write(b *strings.Builder) {
	b.Grow(len(r.Inner) + 2*len(r.Tag) + len(r.ID) + len(r.Attrs) + 12)
	b.WriteString("<" + r.Tag + ` id="` + r.ID + `"` + r.Attrs + ">")
	b.WriteString(r.Inner)
	b.WriteString("</" + r.Tag + ">")
}

// Page is a rendered Model: a complete HTML document made of regions, so
// that a change can be sent as the regions that changed.
type Page struct {
	Title  string
	Nav    Region
	Notice Region
	Main   []Region // the children of <main id="main">
	Help   Region
}

// HTML is the whole document. Its body carries the page's Version, which
// the tab's stream sends back, so that the stream begins with what changed
// since, not with the whole page again.
func (p Page) HTML() string {
	var b strings.Builder
	b.WriteString("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
	b.WriteString("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")
	b.WriteString("<title>" + esc(p.Title) + "</title>\n<link rel=\"icon\" href=\"data:,\">\n")
	b.WriteString("<link rel=\"stylesheet\" href=\"/ui/app.css\">\n<script src=\"/ui/app.js\" defer></script>\n</head>\n")
	b.WriteString(`<body data-version="` + p.Version() + "\">\n")
	p.Nav.write(&b)
	b.WriteString("\n")
	p.Notice.write(&b)
	b.WriteString("\n")
	p.writeMain(&b)
	b.WriteString("\n")
	p.Help.write(&b)
	b.WriteString("\n</body>\n</html>\n")
	return b.String()
}

// Version names what the page shows, region by region: the title's and
// each region's ID and a checksum of its HTML, in order. Two pages with
// the same version show the same (but for a checksum's chance collision,
// 1 in 2^64 per region).
func (p Page) Version() string {
	var b strings.Builder
	b.WriteString(sum(p.Title))
	for _, r := range append([]Region{p.Nav, p.Notice, p.Help}, p.Main...) {
		b.WriteString(" " + r.ID + ":" + sum("<"+r.Tag+` id="`+r.ID+`"`+r.Attrs+">", r.Inner, "</"+r.Tag+">"))
	}
	return b.String()
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sum is two CRC-32s of the concatenation of parts, in base 36. The parts
// are read in place, not copied: a region can be a megabyte.
func sum(parts ...string) string {
	var ieee, cast uint32
	for _, s := range parts {
		data := unsafe.Slice(unsafe.StringData(s), len(s)) // read only
		ieee, cast = crc32.Update(ieee, crc32.IEEETable, data), crc32.Update(cast, castagnoli, data)
	}
	return strconv.FormatUint(uint64(ieee)<<32|uint64(cast), 36)
}

// DiffFrom is Diff from the page whose Version is version: what changed
// since, each region that did not stay the same sent whole. An unknown
// version (none, or a boss's before a restart) gets the whole page.
func DiffFrom(version string, cur Page) []Fragment {
	was := strings.Split(version, " ")
	now := strings.Split(cur.Version(), " ")
	if len(was) < 4 || !sameIDs(cur.Main, regionsOf(was[4:])) {
		return Diff(Page{}, cur)
	}
	out := []Fragment{} // sent as is: [] when nothing changed
	if was[0] != now[0] {
		out = append(out, Fragment{Op: "title", HTML: cur.Title})
	}
	for i, r := range append([]Region{cur.Nav, cur.Notice, cur.Help}, cur.Main...) {
		if was[1+i] != now[1+i] {
			out = append(out, Fragment{Op: "replace", ID: r.ID, HTML: r.HTML()})
		}
	}
	return out
}

// regionsOf are regions with the IDs of a version's "ID:SUM"s.
func regionsOf(sums []string) []Region {
	out := make([]Region, len(sums))
	for i, s := range sums {
		out[i].ID, _, _ = strings.Cut(s, ":")
	}
	return out
}

// MainHTML is the <main> element with every region of the page in it.
func (p Page) MainHTML() string {
	var b strings.Builder
	p.writeMain(&b)
	return b.String()
}

func (p Page) writeMain(b *strings.Builder) {
	b.WriteString(`<main id="main">`)
	for _, r := range p.Main {
		b.WriteString("\n")
		r.write(b)
	}
	b.WriteString("\n</main>")
}

func esc(s string) string { return html.EscapeString(s) }

// linkable says whether a URL from outside data (a webhook's payload) may
// become a link: http and https only, never javascript: or data:.
func linkable(u string) bool {
	lower := strings.ToLower(u)
	return strings.HasPrefix(lower, "https://") || strings.HasPrefix(lower, "http://")
}

// View renders a Model. It is pure: the same Model gives the same bytes.
func View(m Model) Page { return new(Views).View(m) }

// Views renders the Models of one tab, one after another, as View does,
// byte for byte; but what is rendered from the same data as at the last
// render is not rendered again, as Elm's Html.Lazy skips a view whose
// arguments are the same: a page of 10,000 test cases costs nothing to
// render again when a line of output arrives, nor the flaky page when a
// worker's load changes. The data is the same when its slices and pointers
// are: the Models come from Update, which never changes what a Model holds
// but makes a new one.
type Views struct {
	main  lazy[mainKey, []Region]
	tests lazy[testsKey, Region]
}

// lazy holds what was rendered from the data that key names.
type lazy[K comparable, V any] struct {
	key  K
	view V
	ok   bool
}

func (l *lazy[K, V]) of(key K, render func() V) V {
	if !l.ok || l.key != key {
		l.key, l.view, l.ok = key, render(), true
	}
	return l.view
}

// mainKey names the data of a page's main regions, but a task page's.
type mainKey struct {
	page      PageKind
	pipelines *Pipeline
	run       *bettertest.Run
	workers   *bettertest.WorkerInfo
	flaky     *bettertest.FlakyTest
	n         int // of pipelines, workers or flaky tests
	nFlaky    int // of flaky tests, on a run page
	selected  int
	tests     *bettertest.TestResult // a run page's test results
	nTests    int
	logChunks int // of a run page's pipedef output
	logStart  int
}

// View renders m, as View does.
func (v *Views) View(m Model) Page {
	p := Page{Nav: nav(m), Notice: Region{ID: "notice", Tag: "div", Attrs: ` role="status"`, Inner: esc(m.Notice)}, Help: help(m.Help)}
	key := mainKey{page: m.Page, selected: m.Selected}
	switch m.Page {
	case PagePipelines:
		p.Title = "Pipelines · bettertest"
		key.pipelines, key.n = first(m.Pipelines), len(m.Pipelines)
		p.Main = v.main.of(key, func() []Region { return pipelinesPage(m) })
	case PageRun:
		p.Title = runTitle(m.Run) + " · bettertest"
		key.run, key.flaky, key.nFlaky = m.Run, first(m.Flaky), len(m.Flaky)
		key.tests, key.nTests = first(m.Tests), len(m.Tests)
		if m.Run != nil && m.Run.Status == bettertest.StatusFailed { // the pipedef's output is shown
			key.logChunks, key.logStart = m.Log.Chunks, m.Log.Start
		}
		p.Main = v.main.of(key, func() []Region { return runPage(m) })
	case PageTask:
		p.Title = m.Task + " · " + runTitle(m.Run) + " · bettertest"
		p.Main = v.taskPage(m)
	case PageWorkers:
		p.Title = "Workers · bettertest"
		key.workers, key.n = first(m.Workers), len(m.Workers)
		p.Main = v.main.of(key, func() []Region { return workersPage(m) })
	case PageFlaky:
		p.Title = "Flaky tests · bettertest"
		key.flaky, key.n = first(m.Flaky), len(m.Flaky)
		p.Main = v.main.of(key, func() []Region { return flakyPage(m) })
	}
	return p
}

func runTitle(r *bettertest.Run) string {
	if r == nil {
		return "run"
	}
	return fmt.Sprintf("%s #%d %s", r.Pipeline, r.ID, r.Status)
}

func nav(m Model) Region {
	up := 0
	for _, w := range m.Workers {
		if w.Up {
			up++
		}
	}
	workers := "st-passed"
	if up < len(m.Workers) {
		workers = "st-failed"
	}
	link := func(href, label string, current bool, extra string) string {
		cur := ""
		if current {
			cur = ` aria-current="page"`
		}
		return `<a href="` + href + `"` + cur + ">" + label + extra + "</a>"
	}
	return Region{ID: "nav", Tag: "header", Inner: `<span class="brand">bettertest</span> ` +
		link("/", "Pipelines", m.Page != PageWorkers && m.Page != PageFlaky, "") + " " +
		link("/flaky", "Flaky", m.Page == PageFlaky, "") + " " +
		link("/workers", "Workers", m.Page == PageWorkers, fmt.Sprintf(` <span class="st %s">%d/%d up</span>`, workers, up, len(m.Workers))) +
		` <button class="hint" data-action="help" aria-keyshortcuts="?">shortcuts <kbd>?</kbd></button>` + user(m.User)}
}

// user is who is logged in, with a button to log out; nothing when nobody is.
func user(name string) string {
	if name == "" {
		return ""
	}
	return ` <form class="user" method="post" action="/logout"><span class="who">` + esc(name) + `</span> <button>Log out</button></form>`
}

// status is a status in words, with a symbol and a colour: never colour alone.
func status(s string) string {
	return `<span class="st st-` + esc(s) + `">` + symbol(s) + " " + esc(statusWord(s)) + "</span>"
}

// statusWord is a status as people read it: "awaiting approval".
func statusWord(s string) string { return strings.ReplaceAll(s, "_", " ") }

func symbol(s string) string {
	switch s {
	case bettertest.StatusPassed:
		return "✓"
	case bettertest.StatusFailed:
		return "✗"
	case bettertest.StatusRunning:
		return "●"
	case bettertest.StatusQueued:
		return "○"
	case bettertest.StatusSkipped:
		return "–"
	case bettertest.StatusCancelled:
		return "⊘"
	case bettertest.StatusAwaitingApproval:
		return "⏸"
	case bettertest.OutcomeFlaky:
		return "⚠"
	}
	return "!"
}

// mark is a status-like label: a symbol, a word, and why on hover.
func mark(class, symbol, word, title string) string {
	return `<span class="st st-` + class + `" title="` + esc(title) + `">` + symbol + " " + word + "</span>"
}

func flakyMark(attempts int) string {
	return mark("flaky", "⚠", "flaky", fmt.Sprintf("failed, then passed on attempt %d", attempts))
}

func knownFlakyMark(title string) string { return mark("known", "⚠", "known flaky", title) }

func quarantinedMark(title string) string { return mark("quarantined", "⊡", "quarantined", title) }

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// short is a commit's first 7 characters.
func short(commit string) string { return commit[:min(7, len(commit))] }

// duration says how long something took, or "" while it goes on.
func duration(startedMS, finishedMS int64) string {
	if startedMS == 0 || finishedMS == 0 {
		return ""
	}
	return took(time.Duration(finishedMS-startedMS) * time.Millisecond)
}

// worked says how long a task that ended worked, its waits left out
// (bettertest.Task.WorkMS), or "" while it goes on.
func worked(t bettertest.Task) string {
	if t.WorkMS() == 0 && (t.StartedMS == 0 || t.FinishedMS == 0) {
		return ""
	}
	return took(time.Duration(t.WorkMS()) * time.Millisecond)
}

func took(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s" // as %.2fs, without fmt: a page can have 10,000
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

func when(ms int64) string {
	if ms == 0 {
		return ""
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05") + " UTC"
}

func selected(m Model, i int) string {
	if m.Selected == i {
		return ` aria-selected="true"`
	}
	return ` aria-selected="false"`
}

func pipelinesPage(m Model) []Region {
	out := []Region{{ID: "head", Tag: "div", Inner: "<h1>Pipelines</h1>"}}
	if len(m.Pipelines) == 0 {
		return append(out, Region{ID: "empty", Tag: "p", Inner: "No pipelines: start the boss with --pipedef PATH."})
	}
	for i, p := range m.Pipelines {
		var b strings.Builder
		if len(p.Runs) == 0 {
			b.WriteString(`<span class="st st-none">○ no runs</span> <span class="name">` + esc(p.Name) + "</span>")
		} else {
			last := p.Runs[0]
			b.WriteString(status(last.Status) + ` <a class="name" href="` + runPath(last.ID) + `">` + esc(p.Name) + "</a>")
		}
		b.WriteString(` <span class="strip">`)
		for _, r := range p.Runs {
			title := fmt.Sprintf("#%d %s", r.ID, r.Status)
			if r.Commit != "" {
				title += " " + short(r.Commit)
			}
			if r.Tests != nil {
				title += ": " + r.Tests.String()
			}
			fmt.Fprintf(&b, `<a class="sq st-%s" href="%s" title="%s">%s</a>`, esc(r.Status), runPath(r.ID), esc(title), symbol(r.Status))
		}
		b.WriteString(`</span>`)
		if len(p.Runs) > 0 {
			b.WriteString(counts(p.Runs[0].Tests)) // after the strip: strips line up
		}
		b.WriteString(` <button data-action="run" data-pipeline="` + esc(p.Name) + `">Run</button>`)
		out = append(out, Region{ID: fmt.Sprintf("p-%d", i), Tag: "div", Attrs: ` class="row"` + selected(m, i), Inner: b.String()})
	}
	return out
}

func runPage(m Model) []Region {
	r := m.Run
	if r == nil {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<h1><a href="/">Pipelines</a> / %s #%d %s</h1><p class="meta">`, esc(r.Pipeline), r.ID, status(r.Status))
	var meta []string
	if c := commit(r); c != "" {
		meta = append(meta, c)
	}
	if r.Worker != "" {
		meta = append(meta, "worker "+esc(r.Worker))
	}
	if r.StartedMS != 0 {
		meta = append(meta, "started "+when(r.StartedMS))
	}
	if d := duration(r.StartedMS, r.FinishedMS); d != "" {
		meta = append(meta, "took "+d)
	}
	meta = append(meta, "triggered by "+esc(r.Trigger))
	b.WriteString(strings.Join(meta, " · ") + "</p>")
	if c := counts(bettertest.TotalCounts(r.Stages)); c != "" {
		b.WriteString(`<p class="meta">test cases:` + c + "</p>")
	}
	if r.Error != "" {
		b.WriteString(`<p class="error">` + esc(r.Error) + "</p>")
	}
	if r.Status == bettertest.StatusAwaitingApproval {
		fmt.Fprintf(&b, `<p class="error">A pull request from a fork: its pipedef runs once an operator approves it.</p><button data-action="approve" data-run="%d" aria-keyshortcuts="a">Approve</button> `, r.ID)
	}
	if active(r.Status) {
		fmt.Fprintf(&b, `<button data-action="cancel" data-run="%d">Cancel</button> `, r.ID)
	}
	b.WriteString(`<button data-action="run" data-pipeline="` + esc(r.Pipeline) + `">Run again</button>`)
	out := []Region{{ID: "head", Tag: "div", Inner: b.String()}}
	if f := failures(m); f.Inner != "" {
		out = append(out, f)
	}
	known := knownFlaky(m.Flaky, r.Pipeline)
	row := 0
	for i, st := range r.Stages {
		var s strings.Builder
		s.WriteString("<h2>" + status(st.Status) + " " + esc(st.Name) + counts(bettertest.StageCounts(st)) + "</h2>\n<div class=\"tasks\">")
		for _, t := range st.Tasks {
			s.WriteString(taskCard(m, r, t, row, known[t.Name]))
			row++
		}
		s.WriteString("</div>")
		out = append(out, Region{ID: fmt.Sprintf("stage-%d", i), Tag: "section", Attrs: ` class="stage"`, Inner: s.String()})
	}
	return out
}

// commit says which commit a run tests, linked to it when it can be.
func commit(r *bettertest.Run) string {
	if r.Commit == "" {
		return ""
	}
	c := "commit <code>" + esc(short(r.Commit)) + "</code>"
	if linkable(r.CommitURL) {
		c = `commit <a href="` + esc(r.CommitURL) + `"><code>` + esc(short(r.Commit)) + "</code></a>"
	}
	if r.Ref != "" {
		c += " on " + esc(r.Ref)
	}
	if r.Author != "" {
		c += " by " + esc(r.Author)
	}
	return c
}

// taskCard is a task's card; known is how many of its tests the boss lists as flaky.
func taskCard(m Model, r *bettertest.Run, t bettertest.Task, row, known int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<a class="task" href="%s"%s>%s <span class="name">%s</span>`, taskPath(r.ID, t.Name), selected(m, row), status(t.Status), esc(t.Name))
	if d := worked(t); d != "" {
		b.WriteString(` <span class="dur">` + d + "</span>")
	}
	if t.Cached {
		title := "answered from the worker's build cache"
		if t.BuiltBy != 0 {
			title += fmt.Sprintf(", built by run #%d", t.BuiltBy)
		}
		b.WriteString(` <span class="cached" title="` + title + `">cached</span>`)
	}
	if len(t.Artifacts) > 0 {
		paths := make([]string, len(t.Artifacts))
		for i, a := range t.Artifacts {
			paths[i] = a.Path
		}
		b.WriteString(` <span class="arts" title="` + esc(strings.Join(paths, ", ")) + `">` + plural(len(t.Artifacts), "artifact") + "</span>")
	}
	b.WriteString(counts(t.Tests))
	var marks []string
	if t.Flaky {
		marks = append(marks, flakyMark(t.Attempts))
	}
	if t.Attempts > 1 {
		marks = append(marks, `<span class="attempts">`+plural(t.Attempts, "attempt")+"</span>")
	}
	if t.Quarantined {
		marks = append(marks, quarantinedMark("it failed only in quarantined tests, so the run did not fail"))
	}
	if known > 0 {
		marks = append(marks, knownFlakyMark(fmt.Sprintf("the boss lists %d of its tests as flaky: see Flaky tests", known)))
	}
	if len(marks) > 0 {
		b.WriteString(` <span class="marks">` + strings.Join(marks, " ") + "</span>")
	}
	if r.Worker != "" {
		b.WriteString(` <span class="worker">on ` + esc(r.Worker) + "</span>")
	}
	b.WriteString("</a>")
	return b.String()
}

// knownFlaky counts, for each task of pipeline, its tests that the boss
// lists as flaky: the task itself (TASK), or its cases (TASK/CASE). A test
// counts for every name it begins with that is followed by a "/".
func knownFlaky(flaky []bettertest.FlakyTest, pipeline string) map[string]int {
	out := map[string]int{}
	for _, f := range flaky {
		if !f.Flaky || f.Pipeline != pipeline {
			continue
		}
		out[f.Test]++
		for i := range len(f.Test) {
			if f.Test[i] == '/' {
				out[f.Test[:i]]++
			}
		}
	}
	return out
}

func (v *Views) taskPage(m Model) []Region {
	r := m.Run
	if r == nil {
		return nil
	}
	var t bettertest.Task
	for _, x := range tasks(r) {
		if x.Name == m.Task {
			t = x
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<h1><a href="/">Pipelines</a> / <a href="%s">%s #%d</a> / %s %s</h1><p class="meta">`,
		runPath(r.ID), esc(r.Pipeline), r.ID, esc(m.Task), status(t.Status))
	var meta []string
	if t.Kind != "" {
		meta = append(meta, esc(t.Kind))
	}
	if r.Worker != "" {
		meta = append(meta, "on "+esc(r.Worker))
	}
	if d := worked(t); d != "" {
		meta = append(meta, "took "+d)
	}
	if t.WaitedMS > 0 {
		meta = append(meta, "waited "+took(time.Duration(t.WaitedMS)*time.Millisecond)+" for "+esc(t.WaitedForText()))
	}
	if t.ExitCode != nil {
		meta = append(meta, fmt.Sprintf("exit code %d", *t.ExitCode))
	}
	if t.Attempts > 1 {
		meta = append(meta, plural(t.Attempts, "attempt"))
	}
	if t.Flaky {
		meta = append(meta, flakyMark(t.Attempts))
	}
	if t.Quarantined {
		meta = append(meta, quarantinedMark("it failed only in quarantined tests, so the run did not fail"))
	}
	if t.Cached {
		meta = append(meta, "cached"+builtBy(t.BuiltBy))
	} else if t.Reason != "" {
		meta = append(meta, "not cached: "+esc(t.Reason))
	}
	fmt.Fprintf(&b, `%s · <a href="%s/raw">raw log</a></p>`, strings.Join(meta, " · "), taskPath(r.ID, m.Task))
	if t.Error != "" {
		b.WriteString(`<p class="error">` + esc(t.Error) + "</p>")
	}
	b.WriteString(artifacts(r.ID, t))
	more := ""
	if m.Log.Start > 0 {
		more = fmt.Sprintf(`%d earlier lines are not shown. <button data-action="more">Show %d more</button>`, m.Log.Dropped+m.Log.Start, min(MoreLines, m.Log.Start))
	} else if t.Cached && m.Log.Chunks == 0 {
		more = "Answered from the worker's build cache: nothing ran, so there is no output here."
		if t.BuiltBy != 0 {
			more += fmt.Sprintf(` <a href="%s">Run #%d</a> built it: its page has the build's output.`, runPath(t.BuiltBy), t.BuiltBy)
		}
	}
	if m.Log.Dropped > 0 {
		if more != "" {
			more += " "
		}
		more += fmt.Sprintf(`The first %d lines are only in the <a href="%s/raw">raw log</a>.`, m.Log.Dropped, taskPath(r.ID, m.Task))
	}
	return []Region{
		{ID: "head", Tag: "div", Inner: b.String()},
		v.tests.of(testsKey{first(m.Tests), len(m.Tests), first(m.Flaky), len(m.Flaky), r.Pipeline}, func() Region { return testCases(m) }),
		{ID: "log-more", Tag: "p", Inner: more},
		{ID: "log", Tag: "pre", Attrs: ` tabindex="0"`, Inner: logText(m.Log)},
	}
}

// builtBy says which run built a cached result, linked to it ("" when not known).
func builtBy(run int64) string {
	if run == 0 {
		return ""
	}
	return fmt.Sprintf(`, built by <a href="%s">run #%d</a>`, runPath(run), run)
}

// artifacts lists a task's artifacts, each a download from the boss ("" when
// it has none); a retried test's say which attempt kept them.
func artifacts(runID int64, t bettertest.Task) string {
	if len(t.Artifacts) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(`<h2>Artifacts</h2><ul class="artifacts">`)
	for _, a := range t.Artifacts {
		fmt.Fprintf(&b, `<li><a href="%s"><code>%s</code></a> <span class="size">%s</span> <code class="id" title="%s">%s</code>`,
			esc(bettertest.ArtifactPath(runID, a.ID)), esc(a.Path), size(a.Size), esc(a.ID), esc(a.ID[:min(len(a.ID), 19)]))
		if a.Attempt > 0 && max(t.Attempts, a.Attempt) > 1 {
			fmt.Fprintf(&b, ` <span class="attempt">attempt %d</span>`, a.Attempt)
		}
		b.WriteString("</li>")
	}
	b.WriteString("</ul>")
	return b.String()
}

// size is a number of bytes for people: 512 B, 18.0 KiB, 3.2 MiB.
func size(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, unit := float64(n)/1024, 0
	for v >= 1024 && unit < 3 {
		v, unit = v/1024, unit+1
	}
	return fmt.Sprintf("%.1f %s", v, []string{"KiB", "MiB", "GiB", "TiB"}[unit])
}

// testsKey names the data of a task page's test cases.
type testsKey struct {
	tests    *bettertest.TestResult
	n        int
	flaky    *bettertest.FlakyTest
	nFlaky   int
	pipeline string
}

// first is the address of a slice's first element: with its length, it
// names what the slice holds.
func first[T any](s []T) *T {
	if len(s) == 0 {
		return nil
	}
	return &s[0]
}

// testCase is the attempts of one test case, in order.
type testCase []bettertest.TestResult

func (c testCase) last() bettertest.TestResult { return c[len(c)-1] }

// flipped: it failed, then passed when retried.
func (c testCase) flipped() bool {
	return c.last().Status == bettertest.StatusPassed &&
		slices.ContainsFunc(c, func(t bettertest.TestResult) bool { return t.Status == bettertest.StatusFailed })
}

// testCases lists a task's test cases by their last attempt, failed ones
// first: what to look at comes before what went well. Each case is an item
// of the region's list, keyed by its test id.
func testCases(m Model) Region {
	r := Region{ID: "tests", Tag: "section"}
	if len(m.Tests) == 0 {
		return r
	}
	// The cases in the order they first came, each result's case, and then
	// each case's results side by side in one array.
	index := make(map[string]int, len(m.Tests))
	caseOf := make([]int, len(m.Tests))
	var sizes []int
	for i, t := range m.Tests {
		c, ok := index[t.Test]
		if !ok {
			c = len(sizes)
			index[t.Test] = c
			sizes = append(sizes, 0)
		}
		caseOf[i] = c
		sizes[c]++
	}
	results := make([]bettertest.TestResult, len(m.Tests))
	cases := make([]testCase, len(sizes))
	at := 0
	for c, n := range sizes {
		cases[c] = results[at : at : at+n]
		at += n
	}
	for i, t := range m.Tests {
		cases[caseOf[i]] = append(cases[caseOf[i]], t)
	}
	counts := map[string]int{}
	for _, c := range cases {
		slices.SortStableFunc(c, func(a, b bettertest.TestResult) int { return a.Attempt - b.Attempt })
		if c.flipped() {
			counts[bettertest.OutcomeFlaky]++
		} else {
			counts[c.last().Status]++
		}
	}
	slices.SortStableFunc(cases, func(a, b testCase) int {
		return boolInt(b.last().Status == bettertest.StatusFailed) - boolInt(a.last().Status == bettertest.StatusFailed)
	})
	summary := []string{plural(len(cases), "test case")}
	for _, s := range []string{bettertest.StatusFailed, bettertest.OutcomeFlaky, bettertest.StatusPassed, bettertest.StatusSkipped} {
		if counts[s] > 0 {
			summary = append(summary, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	// The pipeline's listed tests by id; the first listing of a test counts.
	listed := map[string]*bettertest.FlakyTest{}
	for i, f := range m.Flaky {
		if _, ok := listed[f.Test]; !ok && f.Pipeline == m.Run.Pipeline {
			listed[f.Test] = &m.Flaky[i]
		}
	}
	statuses := map[string]string{} // status's HTML, made once for each
	// The whole content is written once; the list's parts are slices of it.
	var b strings.Builder
	var ends []int
	part := func() { ends = append(ends, b.Len()) }
	b.Grow(200 * len(cases)) // about a case's HTML: the builder copies itself less often
	b.WriteString(`<h2>Test cases</h2>`)
	part()
	b.WriteString(`<p class="meta">` + strings.Join(summary, " · ") + `</p>`)
	part()
	b.WriteString(`<ul class="cases">`)
	part()
	keys := make([]string, 0, len(cases))
	for _, c := range cases {
		last := c.last()
		keys = append(keys, last.Test)
		name := last.Case
		if name == "" {
			name = last.Test
		}
		st, ok := statuses[last.Status]
		if !ok {
			st = status(last.Status)
			statuses[last.Status] = st
		}
		b.WriteString("<li>")
		b.WriteString(st)
		b.WriteString(` <span class="name">`)
		b.WriteString(esc(name))
		b.WriteString("</span>")
		if last.DurationMS > 0 {
			b.WriteString(` <span class="dur">`)
			b.WriteString(took(time.Duration(last.DurationMS) * time.Millisecond))
			b.WriteString("</span>")
		}
		if len(c) > 1 {
			var tries []string
			for i, t := range c {
				if i == 0 {
					tries = append(tries, fmt.Sprintf("%s on attempt %d", esc(t.Status), t.Attempt))
				} else {
					tries = append(tries, fmt.Sprintf("%s on %d", esc(t.Status), t.Attempt))
				}
			}
			b.WriteString(` <span class="attempts">` + strings.Join(tries, ", ") + "</span>")
		}
		flipped := c.flipped()
		if flipped {
			b.WriteString(" " + flakyMark(last.Attempt))
		}
		if f := listed[last.Test]; f != nil {
			if f.Flaky {
				b.WriteString(" " + knownFlakyMark("listed as flaky: see Flaky tests"))
			}
			if f.Quarantined {
				b.WriteString(" " + quarantinedMark("its failures do not fail runs"))
			}
		}
		switch {
		case last.Status == bettertest.StatusFailed && last.Output != "":
			b.WriteString(`<pre class="output">` + esc(last.Output) + "</pre>")
		case flipped:
			// The failure that did not count is still the clue to the flakiness.
			for _, t := range c {
				if t.Status == bettertest.StatusFailed && t.Output != "" {
					fmt.Fprintf(&b, `<details><summary>the failure of attempt %d</summary><pre class="output">%s</pre></details>`, t.Attempt, esc(t.Output))
					break
				}
			}
		}
		b.WriteString("</li>")
		part()
	}
	b.WriteString("</ul>")
	r.Inner = b.String()
	parts := make([]string, len(ends))
	start := 0
	for i, end := range ends {
		parts[i], start = r.Inner[start:end], end
	}
	r.List = &List{Head: parts[:2], Open: parts[2], Close: "</ul>", Keys: keys, Items: parts[3:]}
	return r
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// attemptMarker begins the line that the pipedef library writes into a
// retried test's output where an attempt begins: "── attempt 2 of 3 ──".
const attemptMarker = "── attempt "

// logText is the shown part of a log. Lines after Start only ever grow at
// the end, so the HTML of a growing log starts with its earlier HTML.
func logText(l Log) string {
	var b strings.Builder
	for _, line := range l.Lines[min(l.Start, len(l.Lines)):] {
		if strings.HasPrefix(line, attemptMarker) {
			b.WriteString(`<span class="attempt">` + esc(line) + "</span>\n")
			continue
		}
		b.WriteString(esc(line) + "\n")
	}
	b.WriteString(esc(l.Partial))
	return b.String()
}

func workersPage(m Model) []Region {
	out := []Region{{ID: "head", Tag: "div", Inner: "<h1>Workers</h1>"}}
	if len(m.Workers) == 0 {
		return append(out, Region{ID: "empty", Tag: "p", Inner: "No workers: enroll one with bettertest enroll USER@HOST."})
	}
	for i, w := range m.Workers {
		state := `<span class="st st-passed">✓ up</span>`
		if !w.Up {
			state = `<span class="st st-failed">✗ down</span>`
		}
		var b strings.Builder
		fmt.Fprintf(&b, `%s <span class="name">%s</span> <span class="url">%s</span> <span class="load">%d of %d running, %d runs of this boss</span>`,
			state, esc(w.Name), esc(w.URL), w.Running, w.Capacity, w.Assigned)
		if w.Version != "" {
			b.WriteString(` <span class="ver">bettertest ` + esc(w.Version) + ", Docker " + esc(w.Docker) + "</span>")
		}
		if w.ChangedMS != 0 {
			b.WriteString(` <span class="when">since ` + when(w.ChangedMS) + "</span>")
		}
		if !w.Up && w.Error != "" {
			b.WriteString(` <span class="error">` + esc(w.Error) + "</span>")
		}
		out = append(out, Region{ID: fmt.Sprintf("w-%d", i), Tag: "div", Attrs: ` class="row"` + selected(m, i), Inner: b.String()})
	}
	return out
}

func flakyPage(m Model) []Region {
	out := []Region{{ID: "head", Tag: "div", Inner: `<h1>Flaky tests</h1><p class="meta">Tests that failed and then passed when retried, ` +
		`or whose outcome keeps flipping from run to run, flaky ones first by flip rate; ` +
		`a quarantined test still runs, but its failures do not fail the run.</p>`}}
	if len(m.Flaky) == 0 {
		return append(out, Region{ID: "empty", Tag: "p", Inner: "No flaky tests: a test is listed here once it fails and then passes " +
			"when retried, or its outcome keeps flipping from run to run, and for as long as it is quarantined."})
	}
	for i, f := range m.Flaky {
		out = append(out, Region{ID: fmt.Sprintf("f-%d", i), Tag: "div", Attrs: ` class="row"` + selected(m, i), Inner: flakyRow(f)})
	}
	return out
}

func flakyRow(f bettertest.FlakyTest) string {
	var b strings.Builder
	// A test listed without being flaky is listed for its quarantine alone:
	// never flaky, or cleared since.
	var marks []string
	if f.Flaky {
		marks = append(marks, mark("flaky", "⚠", "flaky", "its outcome changes from run to run without a change that explains it"))
	}
	if f.Quarantined {
		marks = append(marks, quarantinedMark("it still runs, but its failures do not fail runs"))
	}
	b.WriteString(strings.Join(marks, " "))
	fmt.Fprintf(&b, ` <span class="pipe">%s</span> <span class="name">%s</span>`, esc(f.Pipeline), esc(f.Test))
	fmt.Fprintf(&b, ` <span class="rate" title="how often its outcome changed from one run to the next">%.0f%% flip rate</span>`, f.FlipRate*100)
	b.WriteString(` <span class="runs">` + plural(len(f.History), "run") + "</span>")
	if len(f.Reasons) > 0 {
		b.WriteString(` <span class="reasons">` + esc(strings.Join(f.Reasons, "; ")) + "</span>")
	}
	if f.CleanRuns > 0 {
		b.WriteString(` <span class="clean">` + plural(f.CleanRuns, "clean run") + " in a row</span>")
	}
	if len(f.History) > 0 {
		fmt.Fprintf(&b, ` <span class="strip" role="group" aria-label="its last %s, newest first" title="newest first">`, plural(len(f.History), "run"))
		for _, r := range f.History {
			title := fmt.Sprintf("#%d %s", r.RunID, r.Outcome)
			if r.Commit != "" {
				title += " " + short(r.Commit)
			}
			fmt.Fprintf(&b, `<a class="sq st-%s" href="%s" title="%s">%s</a>`, esc(r.Outcome), runPath(r.RunID), esc(title), symbol(r.Outcome))
		}
		b.WriteString("</span>")
	}
	if len(f.Evidence) > 0 {
		var runs []string
		for _, r := range f.Evidence {
			link := fmt.Sprintf(`<a href="%s">#%d`, runPath(r.RunID), r.RunID)
			if r.Commit != "" {
				link += " <code>" + esc(short(r.Commit)) + "</code>"
			}
			runs = append(runs, link+"</a>")
		}
		b.WriteString(` <span class="evidence">seen in ` + strings.Join(runs, ", ") + "</span>")
	}
	switch {
	case f.QuarantinedBy == "flag":
		b.WriteString(` <span class="note">quarantined by --quarantine</span>`)
	case f.Quarantined:
		fmt.Fprintf(&b, ` <button data-action="quarantine" data-pipeline="%s" data-test="%s" data-on="false">Release</button>`, esc(f.Pipeline), esc(f.Test))
	default:
		fmt.Fprintf(&b, ` <button data-action="quarantine" data-pipeline="%s" data-test="%s" data-on="true">Quarantine</button>`, esc(f.Pipeline), esc(f.Test))
	}
	return b.String()
}

// Shortcuts are the keys, in the order the help shows them.
var Shortcuts = [][2]string{
	{"j ↓", "select the next row"},
	{"k ↑", "select the previous row"},
	{"Enter", "open the selection: a pipeline's last run, a run's task, a flaky test's run"},
	{"Esc ⌫", "go back"},
	{"r", "run the selected pipeline, or this run's pipeline again"},
	{"c", "cancel the selected or shown run"},
	{"a", "approve the shown run of a pull request from a fork"},
	{"q", "quarantine or release the selected flaky test"},
	{"m", "show more of a task's earlier output"},
	{"p", "pipelines"},
	{"f", "flaky tests"},
	{"w", "workers"},
	{"?", "show or hide these shortcuts"},
}

func help(open bool) Region {
	if !open {
		return Region{ID: "help", Tag: "div", Attrs: " hidden"}
	}
	var b strings.Builder
	b.WriteString(`<h2>Shortcuts</h2><dl>`)
	for _, s := range Shortcuts {
		b.WriteString("<dt><kbd>" + esc(s[0]) + "</kbd></dt><dd>" + esc(s[1]) + "</dd>")
	}
	b.WriteString("</dl>")
	return Region{ID: "help", Tag: "div", Attrs: ` role="dialog" aria-label="Shortcuts"`, Inner: b.String()}
}

// Fragment is one change of a rendered page, for the browser to apply.
type Fragment struct {
	// replace (the outer HTML of the element), append (to its content),
	// insert (before it, or at the end of its parent when it is one past
	// the last), remove (it and the N-1 elements after it), title
	Op string `json:"op"`
	ID string `json:"id,omitempty"`
	// The element is the one with the ID or, with a Path, its descendant
	// that many element children down: [2, 5] is the sixth child of its third.
	Path []int  `json:"path,omitempty"`
	N    int    `json:"n,omitempty"`
	HTML string `json:"html"`
}

// Diff lists what changed from old to cur, as few and small fragments as it
// can: a region whose content only grew at its end (a live log) is appended
// to, a list changes by the items that changed.
func Diff(old, cur Page) []Fragment {
	var out []Fragment
	if old.Title != cur.Title {
		out = append(out, Fragment{Op: "title", HTML: cur.Title})
	}
	for _, pair := range [][2]Region{{old.Nav, cur.Nav}, {old.Notice, cur.Notice}, {old.Help, cur.Help}} {
		out = append(out, diffRegion(pair[0], pair[1])...)
	}
	if !sameIDs(old.Main, cur.Main) {
		return append(out, Fragment{Op: "replace", ID: "main", HTML: cur.MainHTML()})
	}
	for i := range cur.Main {
		out = append(out, diffRegion(old.Main[i], cur.Main[i])...)
	}
	return out
}

func diffRegion(old, cur Region) []Fragment {
	sameTag := old.Tag == cur.Tag && old.Attrs == cur.Attrs
	switch {
	case sameTag && old.Inner == cur.Inner:
		return nil
	case sameTag && old.List != nil && cur.List != nil:
		if frags, ok := diffList(cur.ID, *old.List, *cur.List); ok {
			return frags
		}
	case sameTag && strings.HasPrefix(cur.Inner, old.Inner):
		return []Fragment{{Op: "append", ID: cur.ID, HTML: cur.Inner[len(old.Inner):]}}
	}
	return []Fragment{{Op: "replace", ID: cur.ID, HTML: cur.HTML()}}
}

// diffList changes the list of region id from old to cur: its head element
// by element, then its items by key: those that left are removed, those
// that came or moved are inserted, those that changed are replaced. The
// items that stay in place are the longest run of them in the same order.
// It does not (ok is false) when the region's content is smaller: most of
// it changed.
func diffList(id string, old, cur List) ([]Fragment, bool) {
	if len(old.Head) != len(cur.Head) || old.Open != cur.Open || old.Close != cur.Close {
		return nil, false
	}
	var out []Fragment
	for i := range cur.Head {
		if old.Head[i] != cur.Head[i] {
			out = append(out, Fragment{Op: "replace", ID: id, Path: []int{i}, HTML: cur.Head[i]})
		}
	}
	at := func(i int) []int { return []int{len(cur.Head), i} }
	if slices.Equal(old.Keys, cur.Keys) {
		// The same items in the same order, the most common change: no moves to find.
		for j := range cur.Items {
			if old.Items[j] != cur.Items[j] {
				out = append(out, Fragment{Op: "replace", ID: id, Path: at(j), HTML: cur.Items[j]})
			}
		}
		return out, smaller(out, cur)
	}
	was, ok := positions(old.Keys)
	if _, unique := positions(cur.Keys); !ok || !unique {
		return nil, false
	}
	// from[j] is where the item cur.Keys[j] was, or -1 when it is new.
	from := make([]int, len(cur.Keys))
	for j, k := range cur.Keys {
		if i, ok := was[k]; ok {
			from[j] = i
		} else {
			from[j] = -1
		}
	}
	stays := longestIncreasing(from)
	kept := make([]bool, len(old.Keys))
	for _, j := range stays {
		kept[from[j]] = true
	}
	// Removed from the last up, so that the places of those before hold.
	for i := len(old.Keys) - 1; i >= 0; i-- {
		if kept[i] {
			continue
		}
		n := 1
		for i > 0 && !kept[i-1] {
			i--
			n++
		}
		out = append(out, Fragment{Op: "remove", ID: id, Path: at(i), N: n})
	}
	// Inserted from the first down: all that comes before each is in place.
	staying := make([]bool, len(cur.Keys))
	for _, j := range stays {
		staying[j] = true
	}
	for j := 0; j < len(cur.Keys); j++ {
		if staying[j] {
			continue
		}
		start := j
		for j+1 < len(cur.Keys) && !staying[j+1] {
			j++
		}
		out = append(out, Fragment{Op: "insert", ID: id, Path: at(start), HTML: strings.Join(cur.Items[start:j+1], "")})
	}
	for _, j := range stays {
		if old.Items[from[j]] != cur.Items[j] {
			out = append(out, Fragment{Op: "replace", ID: id, Path: at(j), HTML: cur.Items[j]})
		}
	}
	return out, smaller(out, cur)
}

// smaller says whether frags are smaller than the whole content of l.
func smaller(frags []Fragment, l List) bool {
	// Each fragment costs about this much besides its HTML, as JSON.
	const overhead = 48
	size, whole := 0, len(l.Open)+len(l.Close)
	for _, f := range frags {
		size += overhead + len(f.HTML)
	}
	for _, h := range l.Head {
		whole += len(h)
	}
	for _, h := range l.Items {
		whole += len(h)
	}
	return size < whole
}

// positions maps each key to its index; ok is false when a key repeats.
func positions(keys []string) (map[string]int, bool) {
	out := make(map[string]int, len(keys))
	for i, k := range keys {
		if _, dup := out[k]; dup {
			return nil, false
		}
		out[k] = i
	}
	return out, true
}

// longestIncreasing is the indexes of a longest strictly increasing run
// (not necessarily contiguous) of the values of xs that are not negative,
// in order: O(n log n), by patience sorting.
func longestIncreasing(xs []int) []int {
	var tails []int              // tails[k]: the index of the least value ending a run of k+1
	prev := make([]int, len(xs)) // the index before each in its run
	for j, x := range xs {
		if x < 0 {
			continue
		}
		k := sort.Search(len(tails), func(k int) bool { return xs[tails[k]] >= x })
		prev[j] = -1
		if k > 0 {
			prev[j] = tails[k-1]
		}
		if k == len(tails) {
			tails = append(tails, j)
		} else {
			tails[k] = j
		}
	}
	out := make([]int, len(tails))
	if len(tails) > 0 {
		for k, j := len(tails)-1, tails[len(tails)-1]; k >= 0; k-- {
			out[k], j = j, prev[j]
		}
	}
	return out
}

func sameIDs(a, b []Region) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ID != b[i].ID {
			return false
		}
	}
	return true
}
