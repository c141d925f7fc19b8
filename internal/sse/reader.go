// Package sse reads and writes Server-Sent Events streams (the parts of the
// WHATWG event-stream format that bettertest's streams use: id, event, data,
// comments).
package sse

import (
	"bufio"
	"bytes"
	"io"
	"strings"
)

// Event is one dispatched event. Name is "message" when the stream gave none.
// ID is the stream's last event id as of this event: ids carry over to
// later events, as the format has it.
type Event struct {
	Name string
	Data string
	ID   string
}

// Reader reads events from a stream.
type Reader struct {
	r      *bufio.Reader
	lastID string
}

// NewReader reads events from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10)}
}

// Next returns the next event, or io.EOF when the stream ends cleanly between
// events (an event cut short by the end of the stream is dropped, as the
// format requires, and reported as io.ErrUnexpectedEOF).
func (r *Reader) Next() (Event, error) {
	var name string
	var data strings.Builder
	seen := false // a field of this event has been read
	dataLines := 0
	for {
		line, err := r.r.ReadBytes('\n')
		if err != nil {
			if err == io.EOF && (len(line) > 0 || seen) {
				return Event{}, io.ErrUnexpectedEOF
			}
			return Event{}, err
		}
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		if len(line) == 0 {
			if !seen {
				continue
			}
			if name == "" {
				name = "message"
			}
			return Event{Name: name, Data: data.String(), ID: r.lastID}, nil
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			name, seen = string(value), true
		case "id":
			if bytes.IndexByte(value, 0) < 0 { // the format ignores such an id
				r.lastID = string(value)
			}
		case "data":
			if dataLines > 0 {
				data.WriteByte('\n')
			}
			data.Write(value)
			dataLines++
			seen = true
		}
	}
}
