package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"sync"
)

// Event is the one log event of a request. Middleware creates it; handlers
// and services annotate it; it is emitted once when the request ends.
type Event struct {
	mu    sync.Mutex
	attrs []slog.Attr
	err   error
}

// Add records attributes on the event. Keys are snake_case from the project's
// vocabulary (pledge_serial, cert_serial, masa_url, voucher_format, …).
func (e *Event) Add(attrs ...slog.Attr) {
	if e == nil {
		return
	}
	e.mu.Lock()
	e.attrs = append(e.attrs, attrs...)
	e.mu.Unlock()
}

// AddError records the internal cause of a failure; it is logged, never sent.
func (e *Event) AddError(err error) {
	if e == nil {
		return
	}
	e.mu.Lock()
	e.err = err
	e.mu.Unlock()
}

// snapshot returns a copy of the event's attributes and error.
func (e *Event) snapshot() ([]slog.Attr, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]slog.Attr(nil), e.attrs...), e.err
}

type eventKey struct{}
type requestIDKey struct{}

// WithEvent returns ctx carrying e.
func WithEvent(ctx context.Context, e *Event) context.Context {
	return context.WithValue(ctx, eventKey{}, e)
}

// EventFrom returns the request's event, or nil (on which Add is a no-op).
func EventFrom(ctx context.Context) *Event {
	e, _ := ctx.Value(eventKey{}).(*Event)
	return e
}

// WithRequestID returns ctx carrying id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request's ID, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
