package agent_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/internal/sse"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

func cached(command string) bettertest.RunRequest {
	req := run(command)
	req.Caches = map[string]string{"/root/.cache/pip": "pip"}
	return req
}

func deleteCache(t *testing.T, w *wt.Worker, name string) int {
	t.Helper()
	resp, err := w.Do(context.Background(), http.MethodDelete, "/caches/"+name, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestADependencyCachePersistsHasOneWriterAndCanBeCleared(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	count := "cat /root/.cache/pip/n 2>/dev/null; echo x >> /root/.cache/pip/n"
	assertEvents(t, w.Run(t, cached(count)).All(t), started(), exit(0))
	assertEvents(t, w.Run(t, cached(count)).All(t), started(), stdout("x\n"), exit(0))

	// A second run waits for the first to be done with it.
	holder := cached("echo holding; sleep 60")
	holder.TimeoutS = 60
	first := w.Run(t, holder)
	assertEvents(t, []sse.Event{first.Next(t), first.Next(t)}, started(), stdout("holding\n"))
	if got := deleteCache(t, w, "pip"); got != http.StatusConflict {
		t.Errorf("DELETE of a cache in use: %d, want 409", got)
	}
	second := w.Run(t, cached(count))
	assertEvents(t, []sse.Event{second.Next(t)}, decoded{"cache_wait", bettertest.CacheWaitEvent{Name: "pip"}})
	first.Close()
	assertEvents(t, second.All(t), started(), stdout("x\nx\n"), exit(0))

	// Cleared: the next run finds it empty.
	if got := deleteCache(t, w, "pip"); got != http.StatusNoContent {
		t.Errorf("DELETE /caches/pip: %d, want 204", got)
	}
	if got := deleteCache(t, w, "pip"); got != http.StatusNotFound {
		t.Errorf("DELETE of a cache that is not there: %d, want 404", got)
	}
	assertEvents(t, w.Run(t, cached(count)).All(t), started(), exit(0))
}
