package agent

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/http/httptest"
	"strings"
	"testing"
)

func FuzzDecodeRunRequest(f *testing.F) {
	for _, seed := range []string{
		`{"image": "debian:12", "command": "echo hi"}`,
		`{"image": "a/b@sha256:` + strings.Repeat("ab", 32) + `", "command": "x", "env": {"A": "1"}, "workdir": "/w", "timeout_s": 5}`,
		`{"image": "x", "command": "true", "env": {"": "a"}}`,
		`{"image": 1}`, `[]`, `{"image": "x", "command": "y"} {}`, ``, `{"a`, "{\"command\":\"\\u0000\"}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeRunRequest(bytes.NewReader(body))
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		// Whatever was accepted is valid, and survives a round trip unchanged.
		if err := ValidateRunRequest(req); err != nil {
			t.Fatalf("accepted an invalid request: %v", err)
		}
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeRunRequest(bytes.NewReader(again))
		if err != nil {
			t.Fatalf("round trip of %s: %v", again, err)
		}
		if back.Image != req.Image || back.Command != req.Command || back.Workdir != req.Workdir ||
			back.TimeoutS != req.TimeoutS || !maps.Equal(back.Env, req.Env) {
			t.Fatalf("round trip changed %+v into %+v", req, back)
		}
	})
}

func TestOutputChunksSplitAnywhereGiveTheSameText(t *testing.T) {
	const text = "héllo € 😀 wörld\n"
	for cut := 0; cut <= len(text); cut++ {
		rec := httptest.NewRecorder()
		s := newEventStream(rec)
		s.output("stdout", []byte(text[:cut]))
		s.output("stdout", []byte(text[cut:]))
		s.flushPartial()
		var got strings.Builder
		for _, block := range strings.Split(strings.TrimSpace(rec.Body.String()), "\n\n") {
			_, data, _ := strings.Cut(block, "\ndata: ")
			var ev struct{ Text string }
			if err := json.Unmarshal([]byte(data), &ev); err != nil {
				t.Fatalf("cut %d: %q: %v", cut, block, err)
			}
			got.WriteString(ev.Text)
		}
		if got.String() != text {
			t.Fatalf("cut at %d: got %q", cut, got.String())
		}
	}
}
