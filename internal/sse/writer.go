package sse

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// Keepalive is how often an idle stream gets a comment line, so that proxies
// keep it open and a client can tell a silent peer from a dead one.
const Keepalive = 15 * time.Second

// Writer writes an event stream to one client. Events are buffered until
// Flush, so a batch goes out in one write. It is not safe for concurrent use.
type Writer struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf []byte
	err error // the first write error: the client is gone, later events are dropped
}

// NewWriter starts an event stream: it sends status 200 with the headers
// that make the answer one and keep caches and reverse proxies (nginx's
// X-Accel-Buffering) from holding it back. They reach the client with the
// first Flush.
func NewWriter(w http.ResponseWriter) *Writer {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	return &Writer{w: w, rc: http.NewResponseController(w)}
}

// Event adds an event to the batch (see AppendEvent).
func (w *Writer) Event(id, name string, data []byte) {
	w.buf = AppendEvent(w.buf, id, name, data)
}

// JSON adds an event whose data is v as JSON.
func (w *Writer) JSON(name string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own wire types are sent: a failure here is a bug
	}
	w.Event("", name, data)
}

// Comment adds a comment line, which clients ignore.
func (w *Writer) Comment(text string) {
	mustBeOneLine("comment", text)
	w.buf = append(w.buf, ": "...)
	w.buf = append(w.buf, text...)
	w.buf = append(w.buf, "\n\n"...)
}

// Buffered is how many bytes wait for the next Flush.
func (w *Writer) Buffered() int { return len(w.buf) }

// Flush sends the batch to the client now. Once a write has failed it
// sends nothing more and returns that error again.
func (w *Writer) Flush() error {
	if w.err == nil && len(w.buf) > 0 {
		_, w.err = w.w.Write(w.buf)
	}
	w.buf = w.buf[:0]
	if w.err == nil {
		w.err = w.rc.Flush()
	}
	return w.err
}

// AppendEvent appends an event in the wire format: an id line when id is
// not "", an event line when name is not "" (clients then call it
// "message"), and a data line for each line of data, so that a client
// reads data back whole (a CR LF or CR in data comes back as LF, the
// format's one line break). id and name must be one line each.
func AppendEvent(buf []byte, id, name string, data []byte) []byte {
	if id != "" {
		mustBeOneLine("id", id)
		buf = append(buf, "id: "...)
		buf = append(buf, id...)
		buf = append(buf, '\n')
	}
	if name != "" {
		mustBeOneLine("event name", name)
		buf = append(buf, "event: "...)
		buf = append(buf, name...)
		buf = append(buf, '\n')
	}
	for {
		line, rest, more := cutLine(data)
		buf = append(buf, "data: "...)
		buf = append(buf, line...)
		buf = append(buf, '\n')
		if !more {
			return append(buf, '\n')
		}
		data = rest
	}
}

// cutLine cuts data at its first line break: LF, CR LF or CR.
func cutLine(data []byte) (line, rest []byte, found bool) {
	lf, cr := bytes.IndexByte(data, '\n'), bytes.IndexByte(data, '\r')
	switch {
	case lf < 0 && cr < 0:
		return data, nil, false
	case cr < 0 || (lf >= 0 && lf < cr):
		return data[:lf], data[lf+1:], true
	case cr+1 < len(data) && data[cr+1] == '\n':
		return data[:cr], data[cr+2:], true
	default:
		return data[:cr], data[cr+1:], true
	}
}

func mustBeOneLine(what, s string) {
	if strings.ContainsAny(s, "\r\n") {
		panic("sse: " + what + " " + s + " is more than one line") // our own names only: a bug
	}
}

// maxBatch bounds what one write takes of the values already waiting.
const (
	maxBatch      = 1024
	maxBatchBytes = 64 << 10
)

// Follow streams: whatever w holds goes out at once, then each value c
// brings is given to add, which writes its events to w. Values already
// waiting are taken together (up to maxBatch of them, or maxBatchBytes of
// events) and go out in one write; batch, if not nil, runs after each such
// batch is added, before the write. An idle stream gets a keepalive comment
// every Keepalive. Follow returns when ctx ends (the client left, or the
// server is stopping), a write fails, c is closed, or add says the value it
// was given was the last; what was added is sent first.
func Follow[T any](ctx context.Context, w *Writer, c <-chan T, add func(T) (last bool), batch func()) {
	if w.Flush() != nil {
		return
	}
	keepalive := time.NewTicker(Keepalive)
	defer keepalive.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-keepalive.C:
			w.Comment("keepalive")
		case v, ok := <-c:
			end := !ok || add(v)
			for n := 1; !end && n < maxBatch && w.Buffered() < maxBatchBytes; n++ {
				select {
				case v, ok := <-c:
					end = !ok || add(v)
				default:
					n = maxBatch
				}
			}
			if batch != nil {
				batch()
			}
			if end {
				_ = w.Flush()
				return
			}
		}
		if w.Flush() != nil {
			return
		}
	}
}
