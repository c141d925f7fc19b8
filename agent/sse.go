package agent

import (
	"encoding/json"
	"net/http"
	"sync"
	"unicode/utf8"

	"github.com/bettertest/bettertest"
)

// eventStream writes Server-Sent Events and flushes each one, so a client sees
// output the moment the container writes it. It is safe for concurrent use: the
// stdout and stderr copiers and the run's own events share it.
type eventStream struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	rc      *http.ResponseController
	buf     []byte
	err     error // first write error: the client is gone, later events are dropped
	partial map[string][]byte
}

func newEventStream(w http.ResponseWriter) *eventStream {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // tell reverse proxies not to batch the stream
	w.WriteHeader(http.StatusOK)
	s := &eventStream{w: w, rc: http.NewResponseController(w), partial: map[string][]byte{}}
	s.mu.Lock()
	s.flushLocked()
	s.mu.Unlock()
	return s
}

// send writes one event whose data is v as JSON.
func (s *eventStream) send(name string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own wire types are sent: a failure here is a bug
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writeLocked(name, data)
}

func (s *eventStream) writeLocked(name string, data []byte) {
	if s.err != nil {
		return
	}
	s.buf = append(s.buf[:0], "event: "...)
	s.buf = append(s.buf, name...)
	s.buf = append(s.buf, "\ndata: "...)
	s.buf = append(s.buf, data...)
	s.buf = append(s.buf, "\n\n"...)
	if _, err := s.w.Write(s.buf); err != nil {
		s.err = err
		return
	}
	s.flushLocked()
}

func (s *eventStream) flushLocked() {
	if err := s.rc.Flush(); err != nil && s.err == nil {
		s.err = err
	}
}

// output sends a chunk of a stream as text. A multi-byte UTF-8 character split
// across two chunks is held back until its end arrives, so it is never mangled;
// bytes that are not UTF-8 at all become U+FFFD.
func (s *eventStream) output(stream string, p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if held := s.partial[stream]; len(held) > 0 {
		p = append(held, p...)
		s.partial[stream] = nil
	}
	if cut := incompleteTail(p); cut < len(p) {
		s.partial[stream] = append([]byte(nil), p[cut:]...)
		p = p[:cut]
	}
	if len(p) == 0 {
		return
	}
	s.writeOutputLocked(stream, p)
}

// flushPartial sends whatever is held back once a stream has ended.
func (s *eventStream) flushPartial() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, stream := range []string{"stdout", "stderr"} {
		if held := s.partial[stream]; len(held) > 0 {
			s.partial[stream] = nil
			s.writeOutputLocked(stream, held)
		}
	}
}

func (s *eventStream) writeOutputLocked(stream string, p []byte) {
	data, err := json.Marshal(bettertest.OutputEvent{Stream: stream, Text: string(p)})
	if err != nil {
		panic(err)
	}
	s.writeLocked(bettertest.EventOutput, data)
}

// incompleteTail returns where a trailing, not yet complete UTF-8 sequence
// starts in p, or len(p) when p ends on a character boundary.
func incompleteTail(p []byte) int {
	for i := len(p) - 1; i >= 0 && i >= len(p)-utf8.UTFMax+1; i-- {
		if utf8.RuneStart(p[i]) {
			if !utf8.FullRune(p[i:]) {
				return i
			}
			return len(p)
		}
	}
	return len(p)
}

// streamWriter adapts one output stream to io.Writer for stdcopy.
type streamWriter struct {
	s      *eventStream
	stream string
}

func (w streamWriter) Write(p []byte) (int, error) {
	w.s.output(w.stream, p)
	return len(p), nil
}
