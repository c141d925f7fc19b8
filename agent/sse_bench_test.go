package agent

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
)

type discardWriter struct{ h http.Header }

func (d discardWriter) Header() http.Header         { return d.h }
func (d discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d discardWriter) WriteHeader(int)             {}
func (d discardWriter) Flush()                      {}

// BenchmarkOutputEvent is the worker's own cost per byte of container output:
// batching chunks of 80-character lines and encoding them as SSE output events.
func BenchmarkOutputEvent(b *testing.B) {
	for _, size := range []int{4 << 10, 32 << 10} {
		chunk := bytes.Repeat([]byte(fmt.Sprintf("%079d\n", 0)), size/80)
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			s := newEventStream(discardWriter{http.Header{}})
			b.SetBytes(int64(len(chunk)))
			for b.Loop() {
				s.output("stdout", chunk)
			}
		})
	}
}
