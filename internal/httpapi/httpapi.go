// Package httpapi is how the worker's and the boss's HTTP APIs answer:
// JSON bodies, and errors as {"error": "..."} with the status their kind
// calls for. An error the client can act on says what went wrong and what
// to do; the server's own failures (a disk, a database) are logged under a
// short random id and answered with that id only, never their text.
package httpapi

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/bettertest/bettertest"
)

// Kind is what sort of error it is, and so its HTTP status (see Status).
type Kind int

// The kinds. Internal is the zero value: an error nobody classified is the
// server's own.
const (
	Internal             Kind = iota // 500: the server failed; logged, and the client told only an id
	Invalid                          // 400: the request is malformed or asks for something that cannot be
	Unauthenticated                  // 401: no credentials, or wrong ones
	Forbidden                        // 403: who asks may not do this
	NotFound                         // 404: there is no such thing
	MethodNotAllowed                 // 405
	Conflict                         // 409: not in the state it would need to be in
	Gone                             // 410: it was there, and is no more
	TooLarge                         // 413: the body is larger than allowed
	UnsupportedMediaType             // 415: the body's Content-Type is not the one expected
	Misdirected                      // 421: the request is for a name this server does not answer to
	Unprocessable                    // 422: well formed, but it names something the server does not hold
	BadGateway                       // 502: a server behind this one could not be reached
	Unavailable                      // 503: the server cannot serve now
	InsufficientStorage              // 507: the disk is full
)

// Status is the HTTP status of an error of kind k.
func Status(k Kind) int {
	switch k {
	case Invalid:
		return http.StatusBadRequest
	case Unauthenticated:
		return http.StatusUnauthorized
	case Forbidden:
		return http.StatusForbidden
	case NotFound:
		return http.StatusNotFound
	case MethodNotAllowed:
		return http.StatusMethodNotAllowed
	case Conflict:
		return http.StatusConflict
	case Gone:
		return http.StatusGone
	case TooLarge:
		return http.StatusRequestEntityTooLarge
	case UnsupportedMediaType:
		return http.StatusUnsupportedMediaType
	case Misdirected:
		return http.StatusMisdirectedRequest
	case Unprocessable:
		return http.StatusUnprocessableEntity
	case BadGateway:
		return http.StatusBadGateway
	case Unavailable:
		return http.StatusServiceUnavailable
	case InsufficientStorage:
		return http.StatusInsufficientStorage
	}
	return http.StatusInternalServerError
}

// Error is an error a client is told about: its kind and a message for the
// user. Err is the cause, if any, for errors.Is and errors.As.
type Error struct {
	Kind    Kind
	Message string
	Err     error
}

func (e *Error) Error() string { return e.Message }
func (e *Error) Unwrap() error { return e.Err }

// Errorf makes an Error of kind whose message is formatted as by
// fmt.Errorf; a %w verb makes its operand the cause.
func Errorf(kind Kind, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Kind: kind, Message: err.Error(), Err: errors.Unwrap(err)}
}

// JSON answers status with v as JSON.
func JSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // a client that left cannot be told
}

// Fail answers an error of a kind the handler knows, with msg. kind must
// not be Internal: those go through Server.Error, which logs them.
func Fail(w http.ResponseWriter, kind Kind, msg string) {
	if kind == Internal {
		panic("httpapi.Fail with an internal error: use Server.Error, which logs it")
	}
	JSON(w, Status(kind), bettertest.APIError{Error: msg})
}

// Server is the program that answers: its name as its users know it
// ("boss", "worker") and the log its internal errors go to.
type Server struct {
	Name string
	Log  *slog.Logger
}

// Error answers err: with the kind and message of the *Error in its chain,
// or, when there is none or it is Internal, as an internal error (see
// Message).
func (s Server) Error(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := s.Answer(r, err)
	JSON(w, status, bettertest.APIError{Error: msg})
}

// Answer is the status and the message a client gets for err, for answers
// that are not JSON (a page, a notice in the UI). An internal error is
// logged with the request and a new id, and its message gives only the id.
func (s Server) Answer(r *http.Request, err error) (status int, msg string) {
	if e := (*Error)(nil); errors.As(err, &e) && e.Kind != Internal {
		return Status(e.Kind), e.Message
	}
	var b [3]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	id := hex.EncodeToString(b[:])
	s.Log.Error("internal error", "id", id, "method", r.Method, "path", r.URL.Path, "err", err)
	return http.StatusInternalServerError, fmt.Sprintf("internal error (id %s): see the %s's log", id, s.Name)
}
