// Package problem holds the error kinds that services (registrar, masa, est)
// assign to failures, and that each web edge maps to a wire response once,
// with an exhaustive switch. Detail is safe to show a client; Err is the
// internal cause and is only logged.
package problem

import (
	"errors"
	"fmt"
	"time"
)

// Kind classifies a failure for the edges.
type Kind int

// The kinds. Each edge maps every one of them (see docs/errors.md).
const (
	Internal Kind = iota
	BadRequest
	Unauthorized
	Forbidden
	NotFound
	MethodNotAllowed
	Conflict
	NotAcceptable
	UnsupportedMedia
	TooLarge
	Deferred
	RateLimited
	Upstream
	Unavailable
)

var kindNames = [...]string{
	Internal:         "internal",
	BadRequest:       "bad-request",
	Unauthorized:     "unauthorized",
	Forbidden:        "forbidden",
	NotFound:         "not-found",
	MethodNotAllowed: "method-not-allowed",
	Conflict:         "conflict",
	NotAcceptable:    "not-acceptable",
	UnsupportedMedia: "unsupported-media",
	TooLarge:         "too-large",
	Deferred:         "deferred",
	RateLimited:      "rate-limited",
	Upstream:         "upstream",
	Unavailable:      "unavailable",
}

// String returns the kind's stable name, used in logs and metrics labels.
func (k Kind) String() string {
	if int(k) >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is a failure with a kind, a client-safe detail and an internal cause.
type Error struct {
	Kind   Kind
	Detail string
	// RetryAfter, when positive, is sent as Retry-After (HTTP) or Max-Age
	// (CoAP) with Deferred, RateLimited and Unavailable.
	RetryAfter time.Duration
	// CloseConnection asks the edge to close the connection after the
	// response (RFC 8995 §5.2: a failed proximity check).
	CloseConnection bool
	Err             error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Kind, e.Detail, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Kind, e.Detail)
}

// Unwrap returns the internal cause.
func (e *Error) Unwrap() error { return e.Err }

// New returns an Error of kind k with a client-safe detail and a cause.
func New(k Kind, err error, format string, args ...any) *Error {
	return &Error{Kind: k, Detail: fmt.Sprintf(format, args...), Err: err}
}

// From returns the first *Error in err's chain, or an Internal error that
// wraps err and shows the client nothing of it.
func From(err error) *Error {
	if p, ok := errors.AsType[*Error](err); ok {
		return p
	}
	return &Error{Kind: Internal, Detail: "internal error", Err: err}
}
