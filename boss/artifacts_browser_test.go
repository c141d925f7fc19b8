package boss_test

import (
	"context"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/chromedp"

	wt "github.com/bettertest/bettertest/internal/workertest"
)

// In Chromium, a build's task page lists its artifacts; a click on one
// downloads it (a directory as a tar named after it) and leaves the page as
// it was; the next run's cached build links to the run that built it; once
// the worker is gone, a click says so.
func TestBrowserDownloadsAnArtifact(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	worker := wt.Start(t, bin, wt.Options{})
	boss := wt.StartBoss(t, bin, wt.BossOptions{Pipedefs: []string{pipedef(t, dir, "arts", artifactsPipedef)}, Workers: []*wt.Worker{worker}})
	w := watch(t, boss, "/api/events")
	w.until(t, "the worker up", func() bool { return w.workers["w0"].Up })
	first := trigger(t, boss, "arts")
	w.until(t, "run 1 to end", func() bool { return w.status(first.ID) == "failed" })

	tab := newTab(t, boss.URL)
	tab.open("/runs/1")
	tab.equal(`document.querySelector("#stage-0 .arts").textContent + " | " + document.querySelector("#stage-1 .arts").textContent`,
		"2 artifacts | 1 artifact")
	tab.open("/runs/1/tasks/make")
	tab.equal(`[...document.querySelectorAll(".artifacts li")].map(li => li.querySelector("a").textContent + " " + li.querySelector(".size").textContent).join(", ")`,
		"/out 5.0 KiB, /tool 2.0 KiB")

	downloads := t.TempDir()
	ctx, cancel := context.WithTimeout(tab.ctx, tab.bound)
	defer cancel()
	type download struct{ name, path string }
	done := make(chan download, 1)
	names := map[string]string{}
	if err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *browser.EventDownloadWillBegin:
			names[ev.GUID] = ev.SuggestedFilename
		case *browser.EventDownloadProgress:
			if ev.State == browser.DownloadProgressStateCompleted || ev.State == browser.DownloadProgressStateCanceled {
				done <- download{names[ev.GUID] + " " + string(ev.State), ev.FilePath}
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	events := true
	if _, err := chromedp.Run(ctx, func(ctx context.Context, tg *chromedp.Target) (cdp.Empty, error) {
		return cdp.Call(ctx, tg, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: downloads, EventsEnabled: &events})
	}); err != nil {
		t.Fatal(err)
	}
	tab.click(`.artifacts li:first-child a`)
	var got download
	select {
	case got = <-done:
	case <-ctx.Done():
		t.Fatalf("no download finished: %s", tab.describe())
	}
	if got.name != "out.tar completed" {
		t.Fatalf("the download: %+v", got)
	}
	data, err := os.ReadFile(got.path)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`out/ 5 755 "" `, `out/a.txt 0 644 "hello\n" `, `out/hard 1 644 "" out/a.txt`, `out/link 2 777 "" a.txt`, `out/sub/ 5 755 "" `, `out/sub/b 0 755 "x" `}
	if entries := entries(t, data); !reflect.DeepEqual(entries, want) {
		t.Fatalf("the downloaded tar:\n%s", strings.Join(entries, "\n"))
	}
	tab.equal(`location.pathname`, "/runs/1/tasks/make") // the page stayed
	tab.screenshot("task-artifacts")

	second := trigger(t, boss, "arts")
	w.until(t, "run 2 to end", func() bool { return w.status(second.ID) == "failed" })
	tab.open("/runs/2/tasks/make")
	tab.equal(`document.querySelector("#head .meta").textContent.replace(/took [0-9.]+s/, "took Ns")`, "build · on w0 · took Ns · cached, built by run #1 · raw log")
	tab.equal(`document.querySelector("#log-more").textContent`,
		"Answered from the worker's build cache: nothing ran, so there is no output here. Run #1 built it: its page has the build's output.")
	tab.screenshot("task-cached")
	tab.click(`#log-more a`)
	tab.waitFor("run 1's page", `location.pathname === "/runs/1"`)

	// A worker that is gone: the click shows why the download cannot be, and what to do.
	if err := worker.Stop(); err != nil {
		t.Fatal(err)
	}
	tab.open("/runs/1/tasks/make")
	tab.click(`.artifacts li:nth-child(2) a`)
	tab.waitFor("the error", `location.pathname.startsWith("/api/")`)
	tab.equal(`JSON.parse(document.body.innerText).error`, "/tool of task make of run #1 is kept by worker w0, which cannot be reached (dial tcp "+
		strings.TrimPrefix(worker.URL, "http://")+": connect: connection refused): start it again, or run the pipeline again to make it anew")
	tab.screenshot("artifact-gone")
}
