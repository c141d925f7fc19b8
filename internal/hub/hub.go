// Package hub fans events out to Server-Sent Event subscribers: the worker's
// /events and the boss's /api/events and UI tabs. A subscriber that cannot
// keep up is dropped rather than allowed to slow the publisher down; its
// client reconnects and starts again from a fresh snapshot.
package hub

import (
	"context"
	"encoding/json"
	"iter"
	"net/http"
	"sync"

	"github.com/bettertest/bettertest/internal/sse"
)

// Event is one event: a name and a value, which streams send as JSON. Run
// and Task say what it is about, for subscribers that want only some
// events; they are not sent.
//
// Every subscriber gets the same value, and it is encoded once, the first
// time a stream sends it, on that stream's goroutine: a value must not
// change once it is published.
type Event struct {
	Name string
	Run  int64
	Task string
	v    *value
}

type value struct {
	v    any
	once sync.Once
	json []byte
}

// New makes an event of v.
func New(name string, v any) Event {
	return Event{Name: name, v: &value{v: v}}
}

// Value is the event's value, as it was published.
func (e Event) Value() any {
	if e.v == nil {
		return nil
	}
	return e.v.v
}

// JSON is the event's value as JSON, encoded on the first call.
func (e Event) JSON() []byte {
	if e.v == nil {
		return []byte("null")
	}
	e.v.once.Do(func() {
		data, err := json.Marshal(e.v.v)
		if err != nil {
			panic(err) // only our own wire types are sent: a failure here is a bug
		}
		e.v.json = data
	})
	return e.v.json
}

// Hub delivers every published event to every subscriber, in order.
type Hub struct {
	mu   sync.Mutex
	subs map[*Sub]struct{}
}

// Sub is one subscriber. C is closed when the subscriber fell too far behind
// or unsubscribed.
type Sub struct {
	C      chan Event
	filter func(Event) bool
}

// subBuffer is how many events a subscriber may lag behind before it is dropped.
const subBuffer = 1024

// Publish sends ev to every subscriber without waiting for any of them.
func (h *Hub) Publish(ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.publishLocked(ev)
}

// Subscribe adds a subscriber to the events filter accepts (all when it is
// nil); filter runs under the hub's lock, so it must be quick. snapshot, if
// not nil, runs under the hub's lock: no event is published between the
// state it reads and the first event the subscriber gets, so a client never
// misses or repeats a change.
func (h *Hub) Subscribe(snapshot func(), filter func(Event) bool) *Sub {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = map[*Sub]struct{}{}
	}
	if snapshot != nil {
		snapshot()
	}
	s := &Sub{C: make(chan Event, subBuffer), filter: filter}
	h.subs[s] = struct{}{}
	return s
}

// Locked runs f under the hub's lock, so that a change of state and the event
// announcing it are seen together by subscribers: f publishes with the
// function it is given.
func (h *Hub) Locked(f func(publish func(Event))) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(h.publishLocked)
}

func (h *Hub) publishLocked(ev Event) {
	for s := range h.subs {
		if s.filter == nil || s.filter(ev) {
			h.deliverLocked(s, ev)
		}
	}
}

// deliverLocked queues ev for s, or drops s when its queue is full.
func (h *Hub) deliverLocked(s *Sub, ev Event) {
	select {
	case s.C <- ev:
	default: // too slow: drop it, its client reconnects
		delete(h.subs, s)
		close(s.C)
	}
}

// Send gives ev to s alone, past its filter, as if published: after what
// was published before. It reports false when s is no longer subscribed
// (or was dropped for falling behind by this very event).
func (h *Hub) Send(s *Sub, ev Event) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; !ok {
		return false
	}
	h.deliverLocked(s, ev)
	_, ok := h.subs[s]
	return ok
}

// Unsubscribe removes s; its channel is closed.
func (h *Hub) Unsubscribe(s *Sub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.C)
	}
}

// Keepalive is how often an idle stream gets a comment line.
const Keepalive = sse.Keepalive

// Serve streams first, then every event of s, until ctx ends (the client
// left, or the server is stopping), s is dropped, or it has sent an event
// that last (if not nil) says is the last. It unsubscribes s when it returns.
// With s nil it streams first only: nothing follows them.
//
// first is read as it is sent, so it need not fit in memory (a task's
// output read from a history). When it fails part way, the stream ends
// there, and the client, which did not get its last event, reconnects.
func (h *Hub) Serve(ctx context.Context, w http.ResponseWriter, first iter.Seq2[Event, error], s *Sub, last func(Event) bool) {
	if s != nil {
		defer h.Unsubscribe(s)
	}
	sw := sse.NewWriter(w)
	for ev, err := range first {
		if err != nil {
			return
		}
		sw.Event("", ev.Name, ev.JSON())
		if sw.Buffered() >= flushAt && sw.Flush() != nil {
			return
		}
	}
	if s == nil {
		_ = sw.Flush() // a client that left cannot be told
		return
	}
	sse.Follow(ctx, sw, s.C, func(ev Event) bool {
		sw.Event("", ev.Name, ev.JSON())
		return last != nil && last(ev)
	}, nil)
}

// flushAt is how much of first Serve holds before it sends it.
const flushAt = 256 << 10

// Events is evs, for Serve.
func Events(evs ...Event) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		for _, ev := range evs {
			if !yield(ev, nil) {
				return
			}
		}
	}
}
