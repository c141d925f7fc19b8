package hub

import (
	"context"
	"fmt"
	"net/http/httptest"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
)

// drain takes what s holds now, and whether its channel is closed.
func drain(s *Sub) (evs []Event, closed bool) {
	for {
		select {
		case ev, ok := <-s.C:
			if !ok {
				return evs, true
			}
			evs = append(evs, ev)
		default:
			return evs, false
		}
	}
}

// values are the events' values, in order.
func values(evs []Event) []any {
	out := []any{}
	for _, ev := range evs {
		out = append(out, ev.Value())
	}
	return out
}

func ints(from, to int) []any {
	out := []any{}
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func TestEverySubscriberGetsEveryEventInOrder(t *testing.T) {
	var h Hub
	subs := []*Sub{h.Subscribe(nil, nil), h.Subscribe(nil, nil), h.Subscribe(nil, nil)}
	for i := 1; i <= 100; i++ {
		h.Publish(New("n", i))
	}
	for i, s := range subs {
		evs, closed := drain(s)
		if got := values(evs); closed || !reflect.DeepEqual(got, ints(1, 100)) {
			t.Fatalf("subscriber %d: closed %v, got %v", i, closed, got)
		}
	}
}

// Publishers on many goroutines: each subscriber sees the events in the
// one order the hub published them.
func TestConcurrentPublishersGiveOneOrder(t *testing.T) {
	var h Hub
	a, b := h.Subscribe(nil, nil), h.Subscribe(nil, nil)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				h.Publish(New("n", g*1000+i))
			}
		})
	}
	wg.Wait()
	ea, _ := drain(a)
	eb, _ := drain(b)
	if len(ea) != 800 || !reflect.DeepEqual(values(ea), values(eb)) {
		t.Fatalf("got %d and %d events, in orders that differ: %v", len(ea), len(eb), !reflect.DeepEqual(values(ea), values(eb)))
	}
	last := map[int]int{}
	for _, v := range values(ea) {
		n := v.(int)
		if prev, ok := last[n/1000]; ok && n <= prev {
			t.Fatalf("publisher %d's %d came after its %d", n/1000, n%1000, prev%1000)
		}
		last[n/1000] = n
	}
}

func TestFilterChoosesEvents(t *testing.T) {
	var h Hub
	only2 := h.Subscribe(nil, func(ev Event) bool { return ev.Run == 2 })
	all := h.Subscribe(nil, nil)
	for run := int64(1); run <= 3; run++ {
		ev := New("run", fmt.Sprint("run ", run))
		ev.Run = run
		h.Publish(ev)
	}
	got, _ := drain(only2)
	if want := []any{"run 2"}; !reflect.DeepEqual(values(got), want) {
		t.Fatalf("filtered subscriber got %v, want %v", values(got), want)
	}
	got, _ = drain(all)
	if want := []any{"run 1", "run 2", "run 3"}; !reflect.DeepEqual(values(got), want) {
		t.Fatalf("subscriber without a filter got %v, want %v", values(got), want)
	}
}

// The whole contract: a subscriber that does not read is dropped once it
// lags subBuffer events behind; it keeps what it was given, then finds its
// channel closed. The publisher never waits, and others go on.
func TestSlowSubscriberIsDropped(t *testing.T) {
	var h Hub
	slow := h.Subscribe(nil, nil)
	fast := h.Subscribe(nil, nil)
	var fastGot []Event
	for i := 1; i <= subBuffer+10; i++ {
		h.Publish(New("n", i))
		evs, _ := drain(fast)
		fastGot = append(fastGot, evs...)
	}
	evs, closed := drain(slow)
	if !closed || !reflect.DeepEqual(values(evs), ints(1, subBuffer)) {
		t.Fatalf("the slow subscriber: closed %v, got %d events", closed, len(evs))
	}
	if !reflect.DeepEqual(values(fastGot), ints(1, subBuffer+10)) {
		t.Fatalf("the fast subscriber got %d events, want %d", len(fastGot), subBuffer+10)
	}
	h.Unsubscribe(slow) // already dropped: nothing happens
	if h.Send(slow, New("n", 0)) {
		t.Fatal("Send to a dropped subscriber reported it delivered")
	}
	if len(h.subs) != 1 {
		t.Fatalf("the hub holds %d subscribers, want 1", len(h.subs))
	}
}

// Events a filter turns away take no room: such a subscriber is never dropped.
func TestFilteredOutEventsDoNotCount(t *testing.T) {
	var h Hub
	s := h.Subscribe(nil, func(ev Event) bool { return ev.Run == 1 })
	for i := range 2 * subBuffer {
		h.Publish(New("n", i))
	}
	if evs, closed := drain(s); closed || len(evs) != 0 {
		t.Fatalf("closed %v, %d events; want open, none", closed, len(evs))
	}
}

func TestUnsubscribeClosesTheChannel(t *testing.T) {
	var h Hub
	s := h.Subscribe(nil, nil)
	h.Publish(New("n", 1))
	h.Unsubscribe(s)
	h.Publish(New("n", 2))
	h.Unsubscribe(s) // twice is harmless
	evs, closed := drain(s)
	if !closed || !reflect.DeepEqual(values(evs), []any{1}) {
		t.Fatalf("closed %v, got %v; want closed after 1", closed, values(evs))
	}
	if len(h.subs) != 0 {
		t.Fatalf("the hub holds %d subscribers, want none", len(h.subs))
	}
}

// Locked makes a change of state and its event one step: a subscriber whose
// snapshot read the state gets exactly the events after it, never one it
// already saw in the snapshot and never a gap.
func TestSnapshotAndEventsMeetExactly(t *testing.T) {
	var h Hub
	state := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 2000 {
			h.Locked(func(publish func(Event)) {
				state++
				publish(New("state", state))
			})
		}
	}()
	for range 50 {
		var seen int
		s := h.Subscribe(func() { seen = state }, nil)
		if seen == 2000 {
			break // nothing more comes
		}
		ev, ok := <-s.C
		if !ok {
			t.Fatal("dropped")
		}
		if ev.Value() != seen+1 {
			t.Fatalf("the snapshot saw state %d, then the first event was %v", seen, ev.Value())
		}
		h.Unsubscribe(s)
	}
	<-done
}

func TestSendReachesOneSubscriberInOrder(t *testing.T) {
	var h Hub
	a := h.Subscribe(nil, func(Event) bool { return false })
	b := h.Subscribe(nil, nil)
	h.Publish(New("n", 1))
	if !h.Send(a, New("n", 2)) || !h.Send(b, New("n", 3)) {
		t.Fatal("Send to a subscriber reported it not delivered")
	}
	h.Publish(New("n", 4))
	ea, _ := drain(a)
	eb, _ := drain(b)
	if !reflect.DeepEqual(values(ea), []any{2}) || !reflect.DeepEqual(values(eb), []any{1, 3, 4}) {
		t.Fatalf("got %v and %v, want [2] and [1 3 4]", values(ea), values(eb))
	}
}

// counted is a value whose encoding is counted.
type counted struct{ n *atomic.Int32 }

func (c counted) MarshalJSON() ([]byte, error) {
	c.n.Add(1)
	return []byte(`{"encoded":true}`), nil
}

// An event is encoded once, however many subscribers send it, and only when
// one does.
func TestEventIsEncodedOnce(t *testing.T) {
	var h Hub
	var n atomic.Int32
	subs := make([]*Sub, 100)
	for i := range subs {
		subs[i] = h.Subscribe(nil, nil)
	}
	h.Publish(New("x", counted{&n}))
	if n.Load() != 0 {
		t.Fatalf("encoded %d times on publishing, want 0", n.Load())
	}
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Go(func() {
			ev := <-s.C
			if got := string(ev.JSON()); got != `{"encoded":true}` {
				t.Errorf("JSON %s", got)
			}
		})
	}
	wg.Wait()
	if n.Load() != 1 {
		t.Fatalf("encoded %d times, want 1", n.Load())
	}
}

// Serve sends the first events, then the subscription's, up to the last.
func TestServeStreamsUpToTheLast(t *testing.T) {
	var h Hub
	s := h.Subscribe(nil, nil)
	for i := 1; i <= 4; i++ {
		h.Publish(New("n", i))
	}
	rec := httptest.NewRecorder()
	h.Serve(context.Background(), rec, Events(New("hello", map[string]string{"a": "b"})), s,
		func(ev Event) bool { return ev.Value() == 3 })
	want := "event: hello\ndata: {\"a\":\"b\"}\n\nevent: n\ndata: 1\n\nevent: n\ndata: 2\n\nevent: n\ndata: 3\n\n"
	if got := rec.Body.String(); got != want {
		t.Fatalf("body %q, want %q", got, want)
	}
	if rec.Header().Get("Content-Type") != "text/event-stream" {
		t.Fatalf("Content-Type %q", rec.Header().Get("Content-Type"))
	}
	if _, closed := drain(s); !closed {
		t.Fatal("Serve returned without unsubscribing")
	}
}

// A subscriber dropped for falling behind ends its stream after what it
// was given: the client reconnects.
func TestServeEndsWhenDropped(t *testing.T) {
	var h Hub
	s := h.Subscribe(nil, nil)
	for i := 1; i <= subBuffer+1; i++ {
		h.Publish(New("n", i))
	}
	rec := httptest.NewRecorder()
	h.Serve(context.Background(), rec, Events(), s, nil)
	var want []byte
	for i := 1; i <= subBuffer; i++ {
		want = fmt.Appendf(want, "event: n\ndata: %d\n\n", i)
	}
	if got := rec.Body.String(); got != string(want) {
		t.Fatalf("body of %d bytes, want %d", len(got), len(want))
	}
}

func TestServeEndsWithTheContext(t *testing.T) {
	var h Hub
	s := h.Subscribe(nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	h.Serve(ctx, rec, Events(New("first", 1)), s, nil)
	if got, want := rec.Body.String(), "event: first\ndata: 1\n\n"; got != want {
		t.Fatalf("body %q, want %q", got, want)
	}
	if _, closed := drain(s); !closed {
		t.Fatal("Serve returned without unsubscribing")
	}
}

// With no subscription, Serve sends the first events and ends.
func TestServeWithoutSubscription(t *testing.T) {
	var h Hub
	rec := httptest.NewRecorder()
	h.Serve(context.Background(), rec, Events(New("run", "done")), nil, nil)
	if got, want := rec.Body.String(), "event: run\ndata: \"done\"\n\n"; got != want {
		t.Fatalf("body %q, want %q", got, want)
	}
}
