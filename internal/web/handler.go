package web

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/jmhodges/clock"

	"github.com/gatehouse-pki/gatehouse/internal/problem"
)

// HandlerFunc is the shape of every Gatehouse handler: it returns an error
// instead of writing one.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// ErrorWriter writes an error response for one protocol edge.
type ErrorWriter func(w http.ResponseWriter, r *http.Request, p *problem.Error)

// Options configure the middleware chain.
type Options struct {
	// Logger receives one event per request.
	Logger *slog.Logger
	// Clock times requests.
	Clock clock.Clock
	// Errors writes error responses; default WritePlain.
	Errors ErrorWriter
	// OnPanic is called after a handler panic was recovered (for the audit
	// trail); optional.
	OnPanic func(r *http.Request, v any)
	// Observe is called once per request with its route pattern, status and
	// duration (for metrics); optional.
	Observe func(route string, status int, d time.Duration)
}

// Chain wraps h with the middleware in the fixed order: request ID → panic
// recovery → request-log event → h. The route is taken from the
// http.ServeMux pattern that matched.
func Chain(h http.Handler, o Options) http.Handler {
	if o.Errors == nil {
		o.Errors = WritePlain
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := o.Clock.Now()
		id := newRequestID()
		ev := &Event{}
		ctx := WithEvent(WithRequestID(r.Context(), id), ev)
		r = r.WithContext(ctx)
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler { //nolint:errorlint // sentinel panic value, compared as net/http does
					panic(v)
				}
				ev.AddError(fmt.Errorf("panic: %v\n%s", v, debug.Stack()))
				if o.OnPanic != nil {
					o.OnPanic(r, v)
				}
				if !sw.wrote {
					o.Errors(sw, r, &problem.Error{Kind: problem.Internal, Detail: "internal error"})
				}
			}
			d := o.Clock.Since(start)
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			attrs, err := ev.snapshot()
			base := []slog.Attr{
				slog.String("request_id", id),
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.String("route", r.Pattern),
				slog.Int("status", status),
				slog.Float64("duration_ms", float64(d.Microseconds())/1000),
				slog.String("remote", r.RemoteAddr),
			}
			if err != nil {
				base = append(base, slog.String("err", err.Error()))
			}
			level := slog.LevelInfo
			if status >= 500 {
				level = slog.LevelError
			}
			o.Logger.LogAttrs(ctx, level, "request", append(base, attrs...)...)
			if o.Observe != nil {
				o.Observe(r.Pattern, status, d)
			}
		}()
		h.ServeHTTP(sw, r)
	})
}

// Handle adapts a HandlerFunc: an error it returns is recorded on the event
// and written with write.
func Handle(h HandlerFunc, write ErrorWriter) http.Handler {
	if write == nil {
		write = WritePlain
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		p := problem.From(err)
		EventFrom(r.Context()).AddError(err)
		EventFrom(r.Context()).Add(slog.String("kind", p.Kind.String()))
		write(w, r, p)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if !s.wrote {
		s.status, s.wrote = http.StatusOK, true
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Status returns the HTTP status for a kind. Every kind is mapped; the table
// is documented in docs/errors.md.
func Status(k problem.Kind) int {
	switch k {
	case problem.Internal:
		return http.StatusInternalServerError
	case problem.BadRequest:
		return http.StatusBadRequest
	case problem.Unauthorized:
		return http.StatusUnauthorized
	case problem.Forbidden:
		return http.StatusForbidden
	case problem.NotFound:
		return http.StatusNotFound
	case problem.MethodNotAllowed:
		return http.StatusMethodNotAllowed
	case problem.Conflict:
		return http.StatusConflict
	case problem.NotAcceptable:
		return http.StatusNotAcceptable
	case problem.UnsupportedMedia:
		return http.StatusUnsupportedMediaType
	case problem.TooLarge:
		return http.StatusRequestEntityTooLarge
	case problem.Deferred:
		return http.StatusAccepted
	case problem.RateLimited:
		return http.StatusTooManyRequests
	case problem.Upstream:
		return http.StatusBadGateway
	case problem.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func setCommon(w http.ResponseWriter, p *problem.Error) {
	if p.RetryAfter > 0 {
		secs := int((p.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	if p.CloseConnection {
		w.Header().Set("Connection", "close")
	}
}

// WritePlain writes p as a short UTF-8 plain-text diagnostic, the form RFC
// 8995 §5.6 asks of BRSKI errors and RFC 7030 of EST errors.
func WritePlain(w http.ResponseWriter, _ *http.Request, p *problem.Error) {
	setCommon(w, p)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(Status(p.Kind))
	_, _ = io.WriteString(w, p.Detail+"\n")
}

// WriteProblem writes p as an RFC 9457 problem document.
func WriteProblem(w http.ResponseWriter, r *http.Request, p *problem.Error) {
	setCommon(w, p)
	status := Status(p.Kind)
	doc, err := json.Marshal(struct {
		Type     string `json:"type"`
		Title    string `json:"title"`
		Status   int    `json:"status"`
		Detail   string `json:"detail"`
		Instance string `json:"instance"`
	}{"about:blank", http.StatusText(status), status, p.Detail, r.URL.Path})
	if err != nil {
		doc = []byte(`{"type":"about:blank","status":500}`)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(doc, '\n'))
}

// ReadBody checks the request's media type against allowed (when any are
// given) and reads at most limit bytes of body. A larger body is refused
// without being buffered whole.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64, allowed ...string) ([]byte, error) {
	if len(allowed) > 0 {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil {
			return nil, problem.New(problem.UnsupportedMedia, err, "Content-Type %q is not one of %s", r.Header.Get("Content-Type"), strings.Join(allowed, ", "))
		}
		ok := false
		for _, a := range allowed {
			if strings.EqualFold(mt, a) {
				ok = true
				break
			}
		}
		if !ok {
			return nil, problem.New(problem.UnsupportedMedia, nil, "Content-Type %q is not one of %s", mt, strings.Join(allowed, ", "))
		}
	}
	if limit <= 0 || limit > MaxBodyBytes {
		limit = MaxBodyBytes
	}
	if r.ContentLength > limit {
		return nil, problem.New(problem.TooLarge, nil, "request body is %d bytes, limit %d", r.ContentLength, limit)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, problem.New(problem.TooLarge, err, "request body is over the limit of %d bytes", limit)
		}
		return nil, problem.New(problem.BadRequest, err, "reading the request body failed")
	}
	return b, nil
}

// PeerCertificates returns the TLS client's certificate chain as presented
// (leaf first), or an Unauthorized error when there is none.
func PeerCertificates(r *http.Request) ([]*x509.Certificate, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, problem.New(problem.Unauthorized, nil, "a TLS client certificate is required")
	}
	return r.TLS.PeerCertificates, nil
}
