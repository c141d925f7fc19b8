package boss

import (
	"maps"
	"slices"
	"sync/atomic"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/internal/hub"
)

// engine owns the boss's moving state: the workers as the boss sees them,
// the queue, the active runs, and the ended runs whose ends are not
// written yet. One goroutine runs it; everything else reaches that state by
// sending it a command (post, do), which it runs in the order sent. A
// change and the event announcing it are made by the same command, so
// watchers see changes in the order made, and a command that subscribes a
// watcher sees the state and then every change after it, no more, no less.
//
// Handlers that only read take the snapshot the engine publishes after each
// batch of commands that changed something a snapshot holds (Boss.snap);
// those that must read and subscribe at one instant send a command.
//
// A command must not wait on anything that waits on the engine: it does no
// SQL (the history's writer takes changes without waiting) and never calls
// do.
type engine struct {
	*Boss // its configuration, history and hub: fixed once the boss runs

	workers []*worker
	queue   []*activeRun
	active  map[int64]*activeRun
	ended   map[int64]*activeRun // ended, but their ends are not in the history yet
	dirty   bool                 // a command changed what the snapshot holds
	out     []hub.Event          // the events of this batch, published after its snapshot
	notes   []note               // the log lines of this batch, written after its events
	done    []chan struct{}      // closed after this batch's snapshot: the callers of do waiting

	cmds    chan func(*engine)
	quit    chan struct{} // closed to stop the engine's goroutine
	stopped chan struct{} // closed once it has stopped: commands sent later are dropped
	snap    atomic.Pointer[snapshot]
}

// snapshot is what the engine's state was after a batch of commands: a value
// that never changes, for handlers to read without waiting for the engine.
type snapshot struct {
	workers []bettertest.WorkerInfo
	// runs are the runs whose state is in memory, with their stages: queued
	// or running, or ended and not written yet.
	runs map[int64]bettertest.Run
	// queued names the pipelines that have a run waiting for a worker.
	queued map[string]bool
}

func newEngine(b *Boss) *engine {
	e := &engine{Boss: b, active: map[int64]*activeRun{}, ended: map[int64]*activeRun{},
		cmds: make(chan func(*engine), 256), quit: make(chan struct{}), stopped: make(chan struct{})}
	e.snap.Store(&snapshot{runs: map[int64]bettertest.Run{}, queued: map[string]bool{}})
	return e
}

// run runs commands until quit is closed. What is already waiting is run
// as one batch before the snapshot is taken again, so a flood of commands
// costs one snapshot, not one each.
func (e *engine) run() {
	defer close(e.stopped)
	for {
		select {
		case f := <-e.cmds:
			f(e)
		case <-e.quit:
			for { // what was sent before quit still runs
				select {
				case f := <-e.cmds:
					f(e)
				default:
					e.flush()
					return
				}
			}
		}
	batch:
		for range cap(e.cmds) {
			select {
			case f := <-e.cmds:
				f(e)
			default:
				break batch
			}
		}
		e.flush()
	}
}

// flush takes the snapshot again if a command changed what it holds, then
// publishes the events of the commands so far, in order: whoever is told of
// a change and then reads a snapshot finds the change there. A command that
// subscribes someone flushes first, so they get the events after the state
// they read, and no earlier one.
func (e *engine) flush() {
	if e.dirty {
		e.dirty = false
		e.snap.Store(e.snapshot())
	}
	for i, ev := range e.out {
		e.events.Publish(ev)
		e.out[i] = hub.Event{}
	}
	e.out = e.out[:0]
	for i, n := range e.notes {
		e.log.Info(n.msg, n.args...)
		e.notes[i] = note{}
	}
	e.notes = e.notes[:0]
	for i, c := range e.done {
		close(c)
		e.done[i] = nil
	}
	e.done = e.done[:0]
}

// note is a log line that tells of a change.
type note struct {
	msg  string
	args []any
}

// note logs a change at info level once the batch making it is over, after
// its snapshot and events: whoever reads the line and then asks the boss
// finds the change there.
func (e *engine) note(msg string, args ...any) { e.notes = append(e.notes, note{msg, args}) }

// emit announces a change, once the batch of commands making it is over.
func (e *engine) emit(ev hub.Event) { e.out = append(e.out, ev) }

func (e *engine) snapshot() *snapshot {
	s := &snapshot{workers: make([]bettertest.WorkerInfo, len(e.workers)), runs: map[int64]bettertest.Run{}, queued: map[string]bool{}}
	for i, w := range e.workers {
		s.workers[i] = w.info
	}
	for _, m := range []map[int64]*activeRun{e.active, e.ended} {
		for id, r := range m {
			run := r.run
			run.Stages = cloneStages(r.run.Stages)
			bettertest.SumCounts(&run)
			s.runs[id] = run
		}
	}
	for _, r := range e.queue {
		s.queued[r.run.Pipeline] = true
	}
	return s
}

// shutdown stops the engine's goroutine once the commands sent so far have run.
func (e *engine) shutdown() {
	close(e.quit)
	<-e.stopped
}

// changed marks the snapshot stale: it is taken again after this batch.
func (e *engine) changed() { e.dirty = true }

// post sends f to the engine without waiting for it to run; it waits only
// while the engine's queue of commands is full.
func (b *Boss) post(f func(*engine)) {
	select {
	case b.eng.cmds <- f:
	case <-b.eng.stopped:
	}
}

// do runs f on the engine and waits until it has run and the snapshot
// holds what it changed: a caller that then reads the snapshot reads its
// own change. Never call it from a command.
func (b *Boss) do(f func(*engine)) {
	done := make(chan struct{})
	b.post(func(e *engine) {
		defer func() { e.done = append(e.done, done) }()
		f(e)
	})
	select {
	case <-done:
	case <-b.eng.stopped:
	}
}

// snapshot is the engine's state as of its last batch of commands.
func (b *Boss) snapshot() *snapshot { return b.eng.snap.Load() }

// sortedActive is the active runs, oldest first.
func (e *engine) sortedActive() []*activeRun {
	var out []*activeRun
	for _, id := range slices.Sorted(maps.Keys(e.active)) {
		out = append(out, e.active[id])
	}
	return out
}

// announce publishes an event of something the engine does not own (a
// test's verdict) in order with the engine's own: after those of the
// commands sent before it.
func (b *Boss) announce(ev hub.Event) {
	b.post(func(e *engine) { e.emit(ev) })
}
