package boss

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"math"
	"net/http"
	"strings"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/internal/httpapi"
	"github.com/bettertest/bettertest/internal/hub"
)

// taskOutput is a task's output as it stood at one instant (task "": the
// pipedef's own output), for a reader who sends it as it reads it: the
// chunks the history holds are read from there, the rest come from memory,
// so however long the output is, a reader never holds it all.
type taskOutput struct {
	chunks iter.Seq2[bettertest.Chunk, error]
	// With follow: sub gets what comes after, until an event last says is
	// the last; or, when the task (or run) has ended, end is its last event.
	sub  *hub.Sub
	last func(hub.Event) bool
	end  hub.Event
}

// openOutput is a task's output now. follow subscribes to what comes
// next, in the same instant: no chunk is missed or sent twice.
func (b *Boss) openOutput(ctx context.Context, id int64, task string, follow bool) (taskOutput, error) {
	var out taskOutput
	var active, noTask bool
	var from int
	var pending []bettertest.Chunk
	b.do(func(e *engine) {
		e.flush()
		a, ok := e.active[id]
		if active = ok; !ok {
			return
		}
		var t *bettertest.Task
		if task != "" {
			if t, _ = a.task(task); t == nil {
				noTask = true
				return
			}
		}
		from, pending = a.outputSnapshot(task)
		switch {
		case !follow:
		case t != nil && t.Status != bettertest.StatusRunning:
			out.end = taskEnd(id, *t)
		case t != nil:
			out.last = isTaskEnd
			out.sub = e.events.Subscribe(nil, func(ev hub.Event) bool {
				return ev.Run == id && ev.Task == task && (ev.Name == bettertest.BossEventOutput || ev.Name == bettertest.BossEventTask)
			})
		default:
			out.last = isRunEnd
			out.sub = e.events.Subscribe(nil, func(ev hub.Event) bool {
				return ev.Run == id && ev.Task == "" && (ev.Name == bettertest.BossEventOutput || ev.Name == bettertest.BossEventRun)
			})
		}
	})
	if noTask {
		return out, httpapi.Errorf(httpapi.NotFound, "run %d has no task %q (yet)", id, task)
	}
	if active {
		out.chunks = then(b.store.output(ctx, id, task, from), pending)
		return out, nil
	}
	run, err := b.runByID(ctx, id)
	if err != nil {
		return out, err
	}
	out.end = hub.New(bettertest.BossEventRun, summary(run))
	if task != "" {
		found := false
		for _, st := range run.Stages {
			for _, t := range st.Tasks {
				if t.Name == task {
					found, out.end = true, taskEnd(id, t)
				}
			}
		}
		if !found {
			return out, httpapi.Errorf(httpapi.NotFound, "run %d has no task %q", id, task)
		}
	}
	out.chunks = b.store.output(ctx, id, task, math.MaxInt)
	return out, nil
}

// then is chunks, then more.
func then(chunks iter.Seq2[bettertest.Chunk, error], more []bettertest.Chunk) iter.Seq2[bettertest.Chunk, error] {
	return func(yield func(bettertest.Chunk, error) bool) {
		for c, err := range chunks {
			if !yield(c, err) || err != nil {
				return
			}
		}
		for _, c := range more {
			if !yield(c, nil) {
				return
			}
		}
	}
}

// events are a task's output events, numbered from 0 as live ones are, then
// end when it is set.
func (o taskOutput) events(id int64, task string) iter.Seq2[hub.Event, error] {
	return func(yield func(hub.Event, error) bool) {
		seq := 0
		for c, err := range o.chunks {
			ev := hub.New(bettertest.BossEventOutput, bettertest.OutputChunkEvent{RunID: id, Task: task, Seq: seq, Chunk: c})
			if !yield(ev, err) || err != nil {
				return
			}
			seq++
		}
		if o.end.Name != "" {
			yield(o.end, nil)
		}
	}
}

// writeOutput answers output as it reads it, each chunk by write. A
// history that fails before the first chunk is answered as an error; one
// that fails later breaks the connection, so the client cannot take what it
// got for the whole.
func (b *Boss) writeOutput(w http.ResponseWriter, r *http.Request, what string, chunks iter.Seq2[bettertest.Chunk, error],
	start func(), write func(i int, c bettertest.Chunk), finish func()) {
	n := 0
	for c, err := range chunks {
		if err != nil {
			err = fmt.Errorf("read the output of %s: %w", what, err)
			if n == 0 {
				b.api().Error(w, r, err)
				return
			}
			b.log.Error("history", "err", err, "path", r.URL.Path)
			panic(http.ErrAbortHandler)
		}
		if n == 0 {
			start()
		}
		write(n, c)
		n++
	}
	if n == 0 {
		start()
	}
	finish()
}

// handleLog answers a task's output: all of it as JSON, or, to a client
// that accepts an event stream, everything so far and then the rest live
// until the task ends.
func (b *Boss) handleLog(w http.ResponseWriter, r *http.Request) {
	id, ok := runID(w, r)
	if !ok {
		return
	}
	task := pathParam(r, "task")
	stream := strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	out, err := b.openOutput(r.Context(), id, task, stream)
	if err != nil {
		b.writeRunError(w, r, id, err)
		return
	}
	if stream {
		b.serve(w, r, out.events(id, task), out.sub, out.last)
		return
	}
	enc := json.NewEncoder(w)
	b.writeOutput(w, r, fmt.Sprintf("run %d, task %q", id, task), out.chunks, func() {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("["))
	}, func(i int, c bettertest.Chunk) {
		if i > 0 {
			_, _ = w.Write([]byte(","))
		}
		_ = enc.Encode(c)
	}, func() {
		_, _ = w.Write([]byte("]\n"))
	})
}

// handleRaw is a task's whole output as plain text.
func (b *Boss) handleRaw(w http.ResponseWriter, r *http.Request) {
	id, ok := runID(w, r)
	if !ok {
		return
	}
	task := pathParam(r, "task")
	out, err := b.openOutput(r.Context(), id, task, false)
	if err != nil {
		b.writeRunError(w, r, id, err)
		return
	}
	b.writeOutput(w, r, fmt.Sprintf("run %d, task %q", id, task), out.chunks, func() {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}, func(_ int, c bettertest.Chunk) {
		_, _ = w.Write([]byte(c.Text))
	}, func() {})
}
