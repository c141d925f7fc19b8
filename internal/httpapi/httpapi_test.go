package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
)

func TestStatusOfEachKind(t *testing.T) {
	want := map[Kind]int{
		Internal: 500, Invalid: 400, Unauthenticated: 401, Forbidden: 403, NotFound: 404,
		MethodNotAllowed: 405, Conflict: 409, Gone: 410, TooLarge: 413, UnsupportedMediaType: 415,
		Misdirected: 421, Unprocessable: 422, BadGateway: 502, Unavailable: 503,
		InsufficientStorage: 507,
	}
	for k := Internal; k <= InsufficientStorage; k++ {
		if got := Status(k); got != want[k] {
			t.Errorf("Status(%d) = %d, want %d", k, got, want[k])
		}
	}
}

// answer has s answer err to GET /api/runs/7, with what it logged.
func answer(t *testing.T, err error) (rec *httptest.ResponseRecorder, logged string) {
	t.Helper()
	var log bytes.Buffer
	s := Server{Name: "boss", Log: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))}
	rec = httptest.NewRecorder()
	s.Error(rec, httptest.NewRequest("GET", "/api/runs/7", nil), err)
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	return rec, log.String()
}

func TestErrorOfAKind(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
		body   string
	}{
		{Errorf(NotFound, "no run %d", 7), 404, `{"error":"no run 7"}` + "\n"},
		{fmt.Errorf("lookup: %w", Errorf(Conflict, "run 7 has already ended")), 409, `{"error":"run 7 has already ended"}` + "\n"},
		{Errorf(InsufficientStorage, "disk full at %s: free some space", "/var/lib/bettertest"), 507, `{"error":"disk full at /var/lib/bettertest: free some space"}` + "\n"},
	} {
		rec, logged := answer(t, c.err)
		if rec.Code != c.status || rec.Body.String() != c.body || logged != "" {
			t.Errorf("%v: %d %q, logged %q; want %d %q, nothing logged", c.err, rec.Code, rec.Body.String(), logged, c.status, c.body)
		}
	}
}

var answerID = regexp.MustCompile(`^\{"error":"internal error \(id ([0-9a-f]{6})\): see the boss's log"\}` + "\n$")

// An internal error's answer has none of its text, only an id; the log
// line has the text, under that id.
func TestInternalErrorIsLoggedUnderItsID(t *testing.T) {
	for _, err := range []error{
		errors.New("SQL logic error: no such table: runs (1)"),
		fmt.Errorf("read run 7: %w", &fs.PathError{Op: "open", Path: "/var/lib/bettertest/history.db", Err: fs.ErrPermission}),
		Errorf(Internal, "store run 7: database is locked"),
	} {
		rec, logged := answer(t, err)
		m := answerID.FindStringSubmatch(rec.Body.String())
		if rec.Code != 500 || m == nil {
			t.Fatalf("%v: answered %d %q", err, rec.Code, rec.Body.String())
		}
		want := fmt.Sprintf("level=ERROR msg=\"internal error\" id=%s method=GET path=/api/runs/7 err=%q\n", m[1], err.Error())
		if logged != want {
			t.Fatalf("logged %q, want %q", logged, want)
		}
	}
}

func TestEachInternalErrorHasItsOwnID(t *testing.T) {
	seen := map[string]bool{}
	for range 20 {
		rec, _ := answer(t, errors.New("disk I/O error"))
		id := answerID.FindStringSubmatch(rec.Body.String())[1]
		if seen[id] {
			t.Fatalf("id %s given twice in 20", id)
		}
		seen[id] = true
	}
}

func TestErrorfWrapsItsCause(t *testing.T) {
	e := Errorf(Invalid, "the body is not a trigger request (%w): send nothing", fs.ErrInvalid)
	if e.Message != "the body is not a trigger request (invalid argument): send nothing" || !errors.Is(e, fs.ErrInvalid) {
		t.Fatalf("message %q, cause %v", e.Message, e.Err)
	}
}

func TestFail(t *testing.T) {
	rec := httptest.NewRecorder()
	Fail(rec, MethodNotAllowed, "PUT is not allowed on /api/runs")
	if rec.Code != http.StatusMethodNotAllowed || rec.Body.String() != `{"error":"PUT is not allowed on /api/runs"}`+"\n" {
		t.Fatalf("%d %q", rec.Code, rec.Body.String())
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Fail with an internal error did not panic")
		}
	}()
	Fail(httptest.NewRecorder(), Internal, "SQL text")
}
