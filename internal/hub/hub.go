// Package hub fans events out to Server-Sent Event subscribers: the worker's
// /events and the boss's /api/events. A subscriber that cannot keep up is
// dropped rather than allowed to slow the publisher down; its client
// reconnects and starts again from a fresh snapshot.
package hub

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// Event is one Server-Sent Event: a name and its data, one JSON object.
// Run and Task say what it is about, for subscribers that want only some
// events; they are not sent.
type Event struct {
	Name string
	Data []byte
	Run  int64
	Task string
}

// New makes an event whose data is v as JSON.
func New(name string, v any) Event {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own wire types are sent: a failure here is a bug
	}
	return Event{Name: name, Data: data}
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
// nil). snapshot, if not nil, runs under the hub's lock: no event is
// published between the state it reads and the first event the subscriber
// gets, so a client never misses or repeats a change.
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
		if s.filter != nil && !s.filter(ev) {
			continue
		}
		select {
		case s.C <- ev:
		default: // too slow: drop it, its client reconnects
			delete(h.subs, s)
			close(s.C)
		}
	}
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

// Keepalive is how often an idle stream gets a comment line, so that proxies
// keep it open and a client can tell a silent peer from a dead one.
const Keepalive = 15 * time.Second

// Serve streams first, then every event of s, until ctx ends (the client
// left, or the server is stopping), s is dropped, or it has sent an event
// that last (if not nil) says is the last. It unsubscribes s when it returns.
func (h *Hub) Serve(ctx context.Context, w http.ResponseWriter, first []Event, s *Sub, last func(Event) bool) {
	defer h.Unsubscribe(s)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	var buf []byte
	for _, ev := range first {
		buf = AppendEvent(buf, ev)
	}
	if _, err := w.Write(buf); err != nil || rc.Flush() != nil {
		return
	}
	keepalive := time.NewTicker(Keepalive)
	defer keepalive.Stop()
	for {
		buf = buf[:0]
		select {
		case <-ctx.Done():
			return
		case <-keepalive.C:
			buf = append(buf, ": keepalive\n\n"...)
		case ev, ok := <-s.C:
			if !ok {
				return
			}
			buf = AppendEvent(buf, ev)
			done := last != nil && last(ev)
			// Whatever else is already waiting goes out in the same write.
			for more := !done; more && len(buf) < 64<<10; {
				select {
				case ev, ok := <-s.C:
					if !ok {
						more = false
						break
					}
					buf = AppendEvent(buf, ev)
					done = last != nil && last(ev)
					more = !done
				default:
					more = false
				}
			}
			if done {
				_, _ = w.Write(buf)
				return
			}
		}
		if _, err := w.Write(buf); err != nil || rc.Flush() != nil {
			return
		}
	}
}

// AppendEvent encodes ev in the SSE wire format. Data is one line of JSON.
func AppendEvent(buf []byte, ev Event) []byte {
	buf = append(buf, "event: "...)
	buf = append(buf, ev.Name...)
	buf = append(buf, "\ndata: "...)
	buf = append(buf, ev.Data...)
	return append(buf, "\n\n"...)
}
