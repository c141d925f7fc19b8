package ui

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/bettertest/bettertest"
)

// Views renders what View renders, byte for byte, whatever came before;
// what it renders from the data of the render before is what it rendered
// then.
func TestViewsRenderAsView(t *testing.T) {
	all := fixtureTests()
	tests := func(r ...bettertest.TestResult) Msg {
		return TestChanged{Event: bettertest.TestResultsEvent{RunID: 7, Task: "unit", Attempt: r[0].Attempt, Results: r}}
	}
	m := fixtureTaskTests()
	m.Tests = all[:4]
	task := Loaded{Path: "/runs/7/tasks/unit", Page: PageTask, Run: m.Run, Task: "unit", Log: m.Log, Tests: all, Flaky: fixtureFlaky()[:1]}
	worker := WorkerChanged{Worker: bettertest.WorkerInfo{Name: "w3", Up: true}}
	// again is what was not rendered again: the task page's test cases
	// ("tests"), or the page's main regions ("main").
	steps := []struct {
		name  string
		msg   Msg
		again string
	}{
		{"output", Output{Event: bettertest.OutputChunkEvent{RunID: 7, Task: "unit", Seq: 1, Chunk: bettertest.Chunk{Text: "more\n"}}}, "tests"},
		{"a worker", worker, "tests"},
		{"the help", Key{Key: "?"}, "tests"},
		{"a retry", tests(all[4]), ""},
		{"a retry seen before", tests(all[4]), "tests"},
		{"another task's", TestChanged{Event: bettertest.TestResultsEvent{RunID: 7, Task: "lint <src>", Attempt: 1, Results: []bettertest.TestResult{{Task: "lint <src>", Test: "lint <src>", Attempt: 1}}}}, "tests"},
		{"another retry", tests(all[5]), ""},
		{"a reload with another flaky list", task, ""},
		{"the run page", Loaded{Path: "/runs/7", Page: PageRun, Run: m.Run, Flaky: fixtureFlaky()}, ""},
		{"a worker on the run page", worker, "main"},
		{"the next task", Key{Key: "j"}, ""},
		{"a task's end", TaskChanged{Event: bettertest.TaskEvent{RunID: 7, Task: bettertest.Task{Stage: "test", Name: "unit", Kind: "test", Status: "failed"}}}, ""},
		{"another run's task", TaskChanged{Event: bettertest.TaskEvent{RunID: 8, Task: bettertest.Task{Stage: "test", Name: "unit"}}}, "main"},
		{"the task page again", task, ""},
		{"the pipelines", Loaded{Path: "/", Page: PagePipelines, Pipelines: fixture(PagePipelines).Pipelines}, ""},
		{"a worker on the pipelines page", worker, "main"},
		{"a run of another pipeline", RunChanged{Run: bettertest.Run{ID: 9, Pipeline: "other"}}, "main"},
		{"a run", RunChanged{Run: bettertest.Run{ID: 9, Pipeline: "nightly", Status: "running"}}, ""},
		{"the flaky page", Loaded{Path: "/flaky", Page: PageFlaky, Flaky: fixtureFlaky()}, ""},
		{"a worker on the flaky page", worker, "main"},
		{"the next flaky test", Key{Key: "j"}, ""},
		{"the workers", Loaded{Path: "/workers", Page: PageWorkers}, ""},
		{"the help on the workers page", Key{Key: "?"}, "main"},
		{"a worker on the workers page", worker, ""},
	}
	var views Views
	prev := views.View(m)
	if !reflect.DeepEqual(prev, View(m)) {
		t.Fatalf("the first render differs from View's")
	}
	for _, s := range steps {
		if l, ok := s.msg.(Loaded); ok {
			m.Path = l.Path
		}
		m = Update(m, s.msg)
		got := views.View(m)
		if want := View(m); !reflect.DeepEqual(got, want) {
			t.Fatalf("after %s: Views renders\n%s\nView renders\n%s", s.name, got.HTML(), want.HTML())
		}
		again := ""
		switch {
		case m.Page == PageTask && len(prev.Main) == 4 && got.Main[1].List == prev.Main[1].List:
			again = "tests"
		case m.Page != PageTask && len(prev.Main) > 0 && &got.Main[0] == &prev.Main[0]:
			again = "main"
		}
		if again != s.again {
			t.Errorf("after %s: not rendered again: %q, want %q", s.name, again, s.again)
		}
		prev = got
	}
}

// Every change of a list, from every list of up to four keys to every
// other, each item changed or not: the fragments, applied as the browser
// applies them, make the new list; or, when most of it changed, the region
// is replaced whole.
func TestDiffListMakesTheNewList(t *testing.T) {
	var lists [][]string
	var grow func(have []string)
	grow = func(have []string) {
		lists = append(lists, have)
		for _, k := range []string{"a", "b", "c", "d"} {
			if !slices.Contains(have, k) {
				grow(append(slices.Clip(have), k))
			}
		}
	}
	grow(nil)
	region := func(keys []string, changed string, summary string) Region {
		l := &List{Head: []string{"<h2>cases</h2>", "<p>" + summary + "</p>"}, Open: "<ul>", Close: "</ul>", Keys: keys}
		for _, k := range keys {
			// Items the size of a test case's, about 200 bytes.
			html := "<li>" + k + strings.Repeat(".", 200) + "</li>"
			if strings.Contains(changed, k) {
				html = "<li>" + k + " again" + strings.Repeat(".", 200) + "</li>"
			}
			l.Items = append(l.Items, html)
		}
		return Region{ID: "tests", Tag: "section", Inner: strings.Join(l.Head, "") + l.Open + strings.Join(l.Items, "") + l.Close, List: l}
	}
	patched, whole := 0, 0
	for _, from := range lists {
		for _, to := range lists {
			for _, changed := range []string{"", "a", "bd", "abcd"} {
				old, cur := region(from, "", "before"), region(to, changed, "after")
				frags := diffRegion(old, cur)
				if reflect.DeepEqual(frags, []Fragment{{Op: "replace", ID: "tests", HTML: cur.HTML()}}) {
					whole++
					continue
				}
				patched++
				got := applyList(t, *old.List, frags)
				if !reflect.DeepEqual(got.Head, cur.List.Head) || !slices.Equal(got.Items, cur.List.Items) {
					t.Fatalf("%q -> %q (changed %q): the fragments %+v make %q %q", from, to, changed, frags, got.Head, got.Items)
				}
			}
		}
	}
	if patched == 0 || whole == 0 {
		t.Fatalf("%d lists patched and %d replaced whole: want some of each", patched, whole)
	}
}

// applyList applies fragments to a list as app.js applies them to the DOM.
func applyList(t *testing.T, l List, frags []Fragment) List {
	l.Head, l.Items = slices.Clone(l.Head), slices.Clone(l.Items)
	for _, f := range frags {
		switch {
		case f.Op == "replace" && len(f.Path) == 1:
			l.Head[f.Path[0]] = f.HTML
		case len(f.Path) != 2 || f.Path[0] != len(l.Head):
			t.Fatalf("a fragment outside the list: %+v", f)
		case f.Op == "replace":
			l.Items[f.Path[1]] = f.HTML
		case f.Op == "remove":
			l.Items = slices.Delete(l.Items, f.Path[1], f.Path[1]+f.N)
		case f.Op == "insert":
			// The test's items are "<li>...</li>" without nested items.
			var items []string
			for _, s := range strings.SplitAfter(f.HTML, "</li>") {
				if s != "" {
					items = append(items, s)
				}
			}
			l.Items = slices.Insert(l.Items, f.Path[1], items...)
		default:
			t.Fatalf("an unknown fragment: %+v", f)
		}
	}
	return l
}

// The fewest fragments: an item that moved is removed and inserted, the
// others stay; items that came together come in one fragment, as do those
// that left together.
func TestDiffListMoves(t *testing.T) {
	keys := func(s string) []string { return strings.Split(s, "") }
	list := func(s string) *List {
		l := &List{Open: "<ul>", Close: "</ul>", Keys: keys(s)}
		for _, k := range l.Keys {
			l.Items = append(l.Items, "<li>"+k+strings.Repeat(".", 200)+"</li>")
		}
		return l
	}
	for _, c := range []struct {
		from, to string
		want     []Fragment
	}{
		{"abcdefgh", "bcdefgha", []Fragment{{Op: "remove", ID: "x", Path: []int{0, 0}, N: 1}, {Op: "insert", ID: "x", Path: []int{0, 7}, HTML: "<li>a</li>"}}},
		{"abcdefgh", "abgh", []Fragment{{Op: "remove", ID: "x", Path: []int{0, 2}, N: 4}}},
		{"abcdefgh", "abxyzcdefgh", []Fragment{{Op: "insert", ID: "x", Path: []int{0, 2}, HTML: "<li>x</li><li>y</li><li>z</li>"}}},
		{"abcdefgh", "hgfedcba", []Fragment{
			{Op: "remove", ID: "x", Path: []int{0, 1}, N: 7},
			{Op: "insert", ID: "x", Path: []int{0, 0}, HTML: "<li>h</li><li>g</li><li>f</li><li>e</li><li>d</li><li>c</li><li>b</li>"},
		}},
		{"abcdefgh", "abcdefgh", nil},
	} {
		got, ok := diffList("x", *list(c.from), *list(c.to))
		for i := range got {
			got[i].HTML = strings.ReplaceAll(got[i].HTML, strings.Repeat(".", 200), "")
		}
		if !ok || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s -> %s: %+v (%v), want %+v", c.from, c.to, got, ok, c.want)
		}
	}
}
