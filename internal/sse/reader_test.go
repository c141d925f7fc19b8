package sse

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// readAll reads the events of a stream to its end.
func readAll(t *testing.T, stream string) []Event {
	t.Helper()
	r := NewReader(strings.NewReader(stream))
	var got []Event
	for {
		ev, err := r.Next()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
	}
}

func TestReader(t *testing.T) {
	got := readAll(t, ": comment\n\nevent: output\ndata: {\"a\":1}\n\r\nevent:exit\ndata: x\ndata:y\n\ndata: plain\nid: 7\n\n")
	want := []Event{{Name: "output", Data: `{"a":1}`}, {Name: "exit", Data: "x\ny"}, {Name: "message", Data: "plain", ID: "7"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestReaderCutShort(t *testing.T) {
	r := NewReader(strings.NewReader("event: exit\ndata: {}\n"))
	if _, err := r.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v, want io.ErrUnexpectedEOF", err)
	}
}
