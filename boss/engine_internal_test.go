package boss

import (
	"context"
	"log/slog"
	"testing"

	"github.com/bettertest/bettertest"
)

// Whoever is told of a change and then reads the snapshot finds the change
// there: the engine publishes a batch's events after its snapshot.
func TestEngineAnnouncesAfterItsSnapshot(t *testing.T) {
	b := &Boss{log: slog.New(slog.DiscardHandler)}
	b.eng = newEngine(b)
	go b.eng.run()
	defer b.eng.shutdown()
	sub := b.events.Subscribe(nil, nil)
	w := &worker{cfg: WorkerConfig{Name: "w1"}, info: bettertest.WorkerInfo{Name: "w1", Capacity: 200}}
	b.post(func(e *engine) { e.workers = append(e.workers, w) })
	const n = 200
	for i := range n {
		b.post(func(e *engine) {
			w.info.Running = i + 1
			e.publishWorker(w)
		})
	}
	for i := range n {
		ev := <-sub.C
		if got := ev.Value().(bettertest.WorkerInfo).Running; got != i+1 {
			t.Fatalf("event %d says %d running", i, got)
		}
		if snap := b.workerInfos(); len(snap) != 1 || snap[0].Running < i+1 {
			t.Fatalf("told of %d running, the snapshot then says %+v", i+1, snap)
		}
	}
	// A command that subscribes gets the events after the state it read,
	// and none before: its batch's earlier events are flushed first.
	var seen int
	b.do(func(e *engine) {
		w.info.Running = n + 1
		e.publishWorker(w)
		e.flush()
		seen = w.info.Running
		sub = e.events.Subscribe(nil, nil)
		w.info.Running = n + 2
		e.publishWorker(w)
	})
	if got := (<-sub.C).Value().(bettertest.WorkerInfo).Running; seen != n+1 || got != n+2 {
		t.Fatalf("read %d, then was told of %d; want %d then %d", seen, got, n+1, n+2)
	}
}

// A log line that tells of a change is written after the snapshot holds
// it, and a caller of do reads its own change in the snapshot: a test (or
// a person) that waits for "run ended" and then asks the boss finds the
// run ended.
func TestEngineLogsAndReturnsAfterItsSnapshot(t *testing.T) {
	lines := make(chan []bettertest.WorkerInfo, 1)
	b := &Boss{}
	b.log = slog.New(snapshotAtLog{b, lines})
	b.eng = newEngine(b)
	go b.eng.run()
	defer b.eng.shutdown()
	w := &worker{cfg: WorkerConfig{Name: "w1"}, info: bettertest.WorkerInfo{Name: "w1"}}
	b.post(func(e *engine) {
		e.workers = append(e.workers, w)
		e.changed()
		e.note("worker added", "worker", "w1")
	})
	if got := <-lines; len(got) != 1 || got[0].Name != "w1" {
		t.Fatalf("when the log said the worker was added, the snapshot had %+v", got)
	}
	b.do(func(e *engine) {
		w.info.Running = 1
		e.publishWorker(w)
	})
	if got := b.workerInfos(); len(got) != 1 || got[0].Running != 1 {
		t.Fatalf("after do, the snapshot has %+v, want w1 with 1 running", got)
	}
}

// snapshotAtLog is a log handler that sends the snapshot's workers as
// they are when a line is logged.
type snapshotAtLog struct {
	b     *Boss
	lines chan []bettertest.WorkerInfo
}

func (h snapshotAtLog) Enabled(context.Context, slog.Level) bool { return true }
func (h snapshotAtLog) Handle(context.Context, slog.Record) error {
	h.lines <- h.b.workerInfos()
	return nil
}
func (h snapshotAtLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h snapshotAtLog) WithGroup(string) slog.Handler      { return h }

// A reader of a pipedef's output waits while the run holds too much of it
// unwritten, and goes on once the history has taken enough, or can take
// no more.
func TestOutputReadersWaitForRoom(t *testing.T) {
	r := &activeRun{}
	now := make(chan struct{})
	r.waitForRoom(now)
	later, lost := make(chan struct{}), make(chan struct{})
	r.unstored = maxUnstored + 1
	r.waitForRoom(later)
	select {
	case <-now:
	default:
		t.Fatal("a reader waits with room to spare")
	}
	select {
	case <-later:
		t.Fatal("a reader goes on past maxUnstored")
	default:
	}
	r.unstored = maxUnstored
	r.madeRoom()
	<-later
	r.unstored = 2 * maxUnstored
	r.waitForRoom(lost)
	r.lost = errWriterClosed
	r.madeRoom()
	<-lost
}
