package sse

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestReader(t *testing.T) {
	in := ": comment\n\nevent: output\ndata: {\"a\":1}\n\r\nevent:exit\ndata: x\ndata:y\n\ndata: plain\nid: 7\n\n"
	r := NewReader(strings.NewReader(in))
	var got []Event
	for {
		ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
	}
	want := []Event{{"output", `{"a":1}`}, {"exit", "x\ny"}, {"message", "plain"}}
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
