package agent

import (
	"bufio"
	"io"
	"net/http"
	"sync"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/bettertest/bettertest/internal/mask"
	"github.com/bettertest/bettertest/internal/sse"
)

// eventStream writes Server-Sent Events to one client. Output is batched
// without delay: the container's output is read through a buffer (see
// idleFlusher), consecutive chunks of one stream become one event, and the
// batch is sent the moment the worker has nothing more in hand. So a trickle of
// output reaches the client at once, and a flood goes out in large writes.
// It is safe for concurrent use.
type eventStream struct {
	mu sync.Mutex
	w  *sse.Writer // holds the encoded events not yet written; after a write error it drops them

	textStream string            // the stream whose output is in text
	text       []byte            // output of textStream not yet encoded
	partial    map[string][]byte // per stream: the start of a split UTF-8 character
	data       []byte            // an output event's data, reused
}

// maxBatch bounds the output held back while more is being read.
const maxBatch = 256 << 10

func newEventStream(w http.ResponseWriter) *eventStream {
	s := &eventStream{w: sse.NewWriter(w), partial: map[string][]byte{}}
	s.flush()
	return s
}

// send writes one event whose data is v as JSON, and everything before it.
func (s *eventStream) send(name string, v any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.encodeTextLocked()
	s.w.JSON(name, v)
	s.flushLocked()
}

// output adds a chunk of a stream's output to the batch.
func (s *eventStream) output(stream string, p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if stream != s.textStream {
		s.encodeTextLocked()
		s.textStream = stream
	}
	if held := s.partial[stream]; len(held) > 0 {
		s.text = append(s.text, held...)
		s.partial[stream] = nil
	}
	s.text = append(s.text, p...)
	if len(s.text) >= maxBatch {
		s.flushLocked()
	}
}

// flush sends the batch.
func (s *eventStream) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushLocked()
}

// flushPartial sends whatever is held back once the streams have ended: a
// character that never got its end becomes U+FFFD.
func (s *eventStream) flushPartial() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.encodeTextLocked()
	for _, stream := range []string{"stdout", "stderr"} {
		if held := s.partial[stream]; len(held) > 0 {
			s.partial[stream] = nil
			s.appendOutputLocked(stream, held)
		}
	}
	s.flushLocked()
}

func (s *eventStream) flushLocked() {
	s.encodeTextLocked()
	_ = s.w.Flush() // a client that left cannot be told; the run goes on to its end
}

// encodeTextLocked turns the pending text into an output event, holding back a
// trailing UTF-8 character that is not complete yet.
func (s *eventStream) encodeTextLocked() {
	if len(s.text) == 0 {
		return
	}
	cut := mask.IncompleteTail(s.text)
	if cut < len(s.text) {
		s.partial[s.textStream] = append([]byte(nil), s.text[cut:]...)
	}
	if cut > 0 {
		s.appendOutputLocked(s.textStream, s.text[:cut])
	}
	s.text = s.text[:0]
}

// appendOutputLocked encodes an output event by hand rather than through
// json.Marshal: output is nearly every byte the worker sends, and quoting it
// straight into a reused buffer is what lets the worker keep up with a
// container.
func (s *eventStream) appendOutputLocked(stream string, text []byte) {
	s.data = append(s.data[:0], `{"stream":"`...)
	s.data = append(s.data, stream...) // "stdout" or "stderr": nothing to quote
	s.data = append(s.data, `","text":`...)
	s.data, _ = jsontext.AppendQuote(s.data, text) // bytes that are not UTF-8 become U+FFFD, as documented
	s.data = append(s.data, '}')
	s.w.Event("", "output", s.data)
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

// maskedWriter masks secret values in one output stream before they reach
// the events; flush releases what it holds back once the stream has ended.
type maskedWriter struct {
	w streamWriter
	m *mask.Stream
}

func (w maskedWriter) Write(p []byte) (int, error) {
	if out := w.m.Write(p); len(out) > 0 {
		w.w.s.output(w.w.stream, out)
	}
	return len(p), nil
}

func (w maskedWriter) flush() {
	if out := w.m.Flush(); len(out) > 0 {
		w.w.s.output(w.w.stream, out)
	}
}

// idleFlusher reads Docker's output stream through a buffer and sends the
// batch whenever the buffer has run dry, just before a read that may block: the
// client never waits for output that the worker already holds.
type idleFlusher struct {
	r *bufio.Reader
	s *eventStream
}

func newIdleFlusher(r io.Reader, s *eventStream) idleFlusher {
	return idleFlusher{r: bufio.NewReaderSize(r, maxBatch), s: s}
}

func (f idleFlusher) Read(p []byte) (int, error) {
	if f.r.Buffered() == 0 {
		f.s.flush()
	}
	return f.r.Read(p)
}
