package sse

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestAppendEventBytes(t *testing.T) {
	for _, c := range []struct {
		id, name, data string
		want           string
	}{
		{"", "output", `{"a":1}`, "event: output\ndata: {\"a\":1}\n\n"},
		{"7", "run", `{}`, "id: 7\nevent: run\ndata: {}\n\n"},
		{"", "", "plain", "data: plain\n\n"},
		{"", "x", "", "event: x\ndata: \n\n"},
		{"", "", "a\nb", "data: a\ndata: b\n\n"},
		{"", "", "a\n", "data: a\ndata: \n\n"},
		{"", "", "\n", "data: \ndata: \n\n"},
		{"", "", "a\r\nb\rc\nd", "data: a\ndata: b\ndata: c\ndata: d\n\n"},
		{"", "", "a\r\r\nb\r", "data: a\ndata: \ndata: b\ndata: \n\n"},
		{"", "", "a\n\r\nb", "data: a\ndata: \ndata: b\n\n"},
	} {
		if got := string(AppendEvent([]byte("before\n"), c.id, c.name, []byte(c.data))); got != "before\n"+c.want {
			t.Errorf("AppendEvent(%q, %q, %q) = %q, want %q", c.id, c.name, c.data, got, "before\n"+c.want)
		}
	}
}

// What the writer writes, the reader reads back: the data whole, with its
// line breaks as LF.
func TestWriterToReaderRoundTrip(t *testing.T) {
	in := []Event{
		{Name: "output", Data: `{"text":"a\nb"}`},
		{Name: "log", Data: "line 1\nline 2\n\nline 4\n"},
		{Name: "crlf", Data: "one\r\ntwo\rthree"},
		{Name: "message", Data: "", ID: "42"},
		{Name: "after", Data: "the id carries over"},
	}
	var wire []byte
	for _, ev := range in {
		wire = AppendEvent(wire, ev.ID, ev.Name, []byte(ev.Data))
	}
	got := readAll(t, string(wire))
	want := slices.Clone(in)
	want[2].Data = "one\ntwo\nthree"
	want[4].ID = "42"
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read back %q, want %q", got, want)
	}
}

func TestMultiLineNameIsABug(t *testing.T) {
	for _, c := range []struct{ id, name string }{{"", "a\nb"}, {"1\r", "x"}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("AppendEvent(%q, %q, ...) did not panic", c.id, c.name)
				}
			}()
			AppendEvent(nil, c.id, c.name, nil)
		}()
	}
}

func TestWriterHeadersAndBody(t *testing.T) {
	rec := httptest.NewRecorder()
	w := NewWriter(rec)
	w.Event("", "started", []byte(`{"id":"x"}`))
	w.JSON("exit", map[string]int{"code": 3})
	w.Comment("keepalive")
	body := "event: started\ndata: {\"id\":\"x\"}\n\nevent: exit\ndata: {\"code\":3}\n\n: keepalive\n\n"
	if w.Buffered() != len(body) || rec.Body.Len() != 0 {
		t.Fatalf("before the flush: %d bytes buffered, %q written; want %d, none", w.Buffered(), rec.Body.String(), len(body))
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	want := http.Header{
		"Content-Type":      {"text/event-stream"},
		"Cache-Control":     {"no-cache"},
		"X-Accel-Buffering": {"no"},
	}
	if rec.Code != 200 || !reflect.DeepEqual(rec.Header(), want) || !rec.Flushed {
		t.Fatalf("status %d, headers %v, flushed %v; want 200, %v, flushed", rec.Code, rec.Header(), rec.Flushed, want)
	}
	if rec.Body.String() != body {
		t.Fatalf("body %q, want %q", rec.Body.String(), body)
	}
}

// recorder keeps each write apart, so that a test sees what went out
// together; after failAfter writes (when not 0) writes fail.
type recorder struct {
	h         http.Header
	writes    []string
	flushes   int
	failAfter int
}

var errGone = errors.New("the client is gone")

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) WriteHeader(int)     {}
func (r *recorder) Flush()              { r.flushes++ }
func (r *recorder) Write(p []byte) (int, error) {
	if r.failAfter > 0 && len(r.writes) >= r.failAfter {
		return 0, errGone
	}
	r.writes = append(r.writes, string(p))
	return len(p), nil
}

func newRecorder() *recorder { return &recorder{h: http.Header{}} }

func TestFailedWriteEndsTheStream(t *testing.T) {
	rec := newRecorder()
	rec.failAfter = 1
	w := NewWriter(rec)
	w.Event("", "a", []byte("1"))
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	w.Event("", "b", []byte("2"))
	if err := w.Flush(); err != errGone {
		t.Fatalf("flush: %v, want %v", err, errGone)
	}
	w.Event("", "c", []byte("3"))
	if err := w.Flush(); err != errGone {
		t.Fatalf("flush after the failure: %v, want %v", err, errGone)
	}
	if w.Buffered() != 0 || !slices.Equal(rec.writes, []string{"event: a\ndata: 1\n\n"}) {
		t.Fatalf("holds %d bytes, wrote %q", w.Buffered(), rec.writes)
	}
}

func event(n int) string { return fmt.Sprintf("event: n\ndata: %d\n\n", n) }

// follow runs Follow over the values given, already waiting in a channel
// (closed when close is set), writing each as an event n; last is the
// value that ends the stream (0: none).
func follow(t *testing.T, rec *recorder, values []int, closed bool, last int, batch func(*Writer)) {
	t.Helper()
	c := make(chan int, len(values))
	for _, v := range values {
		c <- v
	}
	if closed {
		close(c)
	}
	w := NewWriter(rec)
	w.Event("", "first", []byte("0"))
	var b func()
	if batch != nil {
		b = func() { batch(w) }
	}
	Follow(context.Background(), w, c, func(v int) bool {
		w.Event("", "n", []byte(fmt.Sprint(v)))
		return v == last
	}, b)
}

// What is already waiting goes out in one write; the stream ends when the
// channel is closed, after what it held.
func TestFollowBatchesWhatIsWaiting(t *testing.T) {
	rec := newRecorder()
	follow(t, rec, []int{1, 2, 3}, true, 0, nil)
	want := []string{"event: first\ndata: 0\n\n", event(1) + event(2) + event(3)}
	if !slices.Equal(rec.writes, want) {
		t.Fatalf("writes %q, want %q", rec.writes, want)
	}
}

func TestFollowEndsWithTheLastValue(t *testing.T) {
	rec := newRecorder()
	follow(t, rec, []int{1, 2, 3, 4}, false, 3, nil)
	want := []string{"event: first\ndata: 0\n\n", event(1) + event(2) + event(3)}
	if !slices.Equal(rec.writes, want) {
		t.Fatalf("writes %q, want %q", rec.writes, want)
	}
}

// batch runs once per batch, after its values, and its events go out with them.
func TestFollowRunsBatchOncePerWrite(t *testing.T) {
	rec := newRecorder()
	batches := 0
	follow(t, rec, []int{1, 2}, true, 0, func(w *Writer) {
		batches++
		w.Event("", "batch", []byte(fmt.Sprint(batches)))
	})
	want := []string{"event: first\ndata: 0\n\n", event(1) + event(2) + "event: batch\ndata: 1\n\n"}
	if batches != 1 || !slices.Equal(rec.writes, want) {
		t.Fatalf("%d batches, writes %q; want 1 batch, writes %q", batches, rec.writes, want)
	}
}

// A batch stops taking values once it holds maxBatchBytes.
func TestFollowBoundsABatch(t *testing.T) {
	rec := newRecorder()
	big := strings.Repeat("x", 40<<10)
	c := make(chan string, 3)
	c <- big
	c <- big
	c <- big
	close(c)
	w := NewWriter(rec)
	Follow(context.Background(), w, c, func(s string) bool { w.Event("", "", []byte(s)); return false }, nil)
	one := "data: " + big + "\n\n"
	if want := []string{one + one, one}; !slices.Equal(rec.writes, want) {
		t.Fatalf("writes of %d bytes, want two, of %d and %d", len(rec.writes), len(want[0]), len(want[1]))
	}
}

// A client that left ends the stream at the next write, though more may come.
func TestFollowEndsWhenTheClientLeft(t *testing.T) {
	rec := newRecorder()
	rec.failAfter = 1
	follow(t, rec, []int{1}, false, 0, nil) // returns: the channel stays open
	if want := []string{"event: first\ndata: 0\n\n"}; !slices.Equal(rec.writes, want) {
		t.Fatalf("writes %q, want %q", rec.writes, want)
	}
}

func TestFollowEndsWithTheContext(t *testing.T) {
	rec := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w := NewWriter(rec)
	Follow(ctx, w, make(chan int), func(int) bool { return false }, nil)
	if len(rec.writes) != 0 || rec.flushes != 1 {
		t.Fatalf("writes %q, %d flushes; want none, and the headers flushed", rec.writes, rec.flushes)
	}
}
