package coap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/responsewriter"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/internal/problem"
	"github.com/gatehouse-pki/gatehouse/store"
)

// session is the per-DTLS-session state: the authenticated chain, the
// registrar's connection record (values), Block1 transfers and the last
// response per POST resource for Block2 retrieval.
type session struct {
	chain  []*x509.Certificate
	values context.Context

	mu        sync.Mutex
	reasm     reassembler
	responses map[string]*cached
}

// leaf is the session's client certificate, or nil.
func (s *session) leaf() *x509.Certificate {
	if len(s.chain) == 0 {
		return nil
	}
	return s.chain[0]
}

// cached is a response kept for Block2 retrieval of its later blocks.
type cached struct {
	resp response
	at   time.Time
}

// response is a resource's answer before block-wise slicing.
type response struct {
	code   codes.Code
	format uint16
	body   []byte
	etag   []byte
	maxAge uint32 // seconds; sent when not 0
}

// request is what a resource handler sees: the reassembled body, the
// negotiated formats and the session.
type request struct {
	path   string
	method codes.Code
	format int // -1 when absent
	accept int // -1 when absent
	body   []byte
	query  []string
	remote string
	ses    *session
}

// route is one resource: its method, the request content-formats it
// takes (POST), and its handler.
type route struct {
	name    string
	method  codes.Code
	formats []uint16
	run     func(ctx context.Context, r *request) (response, error)
}

func (s *Server) newRoutes() map[string]route {
	return map[string]route{
		PathCore: {name: "core", method: codes.GET, run: s.core},
		PathCrts: {name: "crts", method: codes.GET, run: s.crts},
		PathAtt:  {name: "att", method: codes.GET, run: s.att},
		PathSen:  {name: "sen", method: codes.POST, formats: []uint16{FormatPKCS10}, run: s.enroll(false)},
		PathSren: {name: "sren", method: codes.POST, formats: []uint16{FormatPKCS10}, run: s.enroll(true)},
		PathSkg:  {name: "skg", method: codes.POST, formats: []uint16{FormatPKCS10}, run: s.skg},
		PathRV:   {name: "rv", method: codes.POST, formats: []uint16{FormatVoucherCOSE}, run: s.rv},
		PathVS:   {name: "vs", method: codes.POST, formats: []uint16{FormatCBOR, FormatJSON}, run: s.status(store.TelemetryVoucherStatus)},
		PathES:   {name: "es", method: codes.POST, formats: []uint16{FormatCBOR, FormatJSON}, run: s.status(store.TelemetryEnrollStatus)},
	}
}

// errorCodes maps problem kinds to CoAP response codes (RFC 9148 §5.5;
// RFC 8075 §7 for the HTTP equivalents). It is the one table of this edge.
var errorCodes = map[problem.Kind]codes.Code{
	problem.Internal:         codes.InternalServerError,
	problem.BadRequest:       codes.BadRequest,
	problem.Unauthorized:     codes.Unauthorized,
	problem.Forbidden:        codes.Forbidden,
	problem.NotFound:         codes.NotFound,
	problem.MethodNotAllowed: codes.MethodNotAllowed,
	problem.Conflict:         codes.Code(4<<5 | 9), // 4.09 Conflict (RFC 8132)
	problem.NotAcceptable:    codes.NotAcceptable,
	problem.UnsupportedMedia: codes.UnsupportedMediaType,
	problem.TooLarge:         codes.RequestEntityTooLarge,
	problem.Deferred:         codes.ServiceUnavailable, // RFC 9148 §5.7: 5.03 + Max-Age
	problem.RateLimited:      codes.ServiceUnavailable, // reliability G06: 5.03 + Max-Age
	problem.Upstream:         codes.BadGateway,
	problem.Unavailable:      codes.ServiceUnavailable,
}

// errorResponse maps err to a response: block-wise errors to 4.08, 4.13
// and 4.00, a *problem.Error through errorCodes with its Detail as the
// diagnostic payload (RFC 7252 §5.5.2) and its RetryAfter as Max-Age;
// anything else is 5.00 with a generic payload.
func errorResponse(err error) response {
	switch {
	case errors.Is(err, ErrIncomplete):
		return response{code: codes.RequestEntityIncomplete, body: []byte(err.Error())}
	case errors.Is(err, ErrTooLarge):
		return response{code: codes.RequestEntityTooLarge, body: []byte(err.Error())}
	case errors.Is(err, ErrBlock):
		return response{code: codes.BadRequest, body: []byte(err.Error())}
	}
	p := problem.From(err)
	code, ok := errorCodes[p.Kind]
	if !ok {
		code = codes.InternalServerError
	}
	r := response{code: code, body: []byte(p.Detail)}
	if p.RetryAfter > 0 {
		r.maxAge = uint32(min(p.RetryAfter.Seconds(), math.MaxUint32))
	}
	return r
}

// handle is the go-coap handler: route, reassemble, run (piggybacked or
// separate), answer block-wise.
func (s *Server) handle(w *responsewriter.ResponseWriter[*udpclient.Conn], m *pool.Message) {
	cc := w.Conn()
	ses := s.session(cc)
	if ses == nil {
		s.reply(w, m, nil, errorResponse(problem.New(problem.Unauthorized, nil, "no authenticated session")), nil)
		return
	}
	path, err := m.Path()
	if err != nil {
		path = ""
	}
	path = "/" + strings.TrimPrefix(path, "/")
	rt, ok := s.routes[path]
	if !ok {
		s.reply(w, m, ses, errorResponse(problem.New(problem.NotFound, nil, "no such resource")), nil)
		return
	}
	if m.Code() != rt.method {
		s.reply(w, m, ses, errorResponse(problem.New(problem.MethodNotAllowed, nil, "method not allowed")), nil)
		return
	}
	// Block2 continuation of a POST response: answered from the session's
	// copy, never by running the operation again (RFC 7959 §2.4).
	b2, hasB2, err := blockOption(m, message.Block2)
	if err != nil {
		s.reply(w, m, ses, errorResponse(err), nil)
		return
	}
	if hasB2 && b2.num > 0 && rt.method == codes.POST {
		ses.mu.Lock()
		c := ses.responses[path]
		ses.mu.Unlock()
		if c == nil || s.clk.Now().Sub(c.at) > s.cfg.TransferLifetime {
			s.reply(w, m, ses, errorResponse(fmt.Errorf("%w: no response to continue", ErrIncomplete)), nil)
			return
		}
		s.reply(w, m, ses, c.resp, &b2)
		if len(c.resp.body) <= b2.size()*int(b2.num+1) {
			// The last block: nothing more to serve from this copy.
			ses.mu.Lock()
			if ses.responses[path] == c {
				delete(ses.responses, path)
			}
			ses.mu.Unlock()
		}
		return
	}
	req, done, err := s.readRequest(w, m, ses, path, rt)
	if err != nil {
		s.count(rt.name, errorResponse(err).code)
		s.reply(w, m, ses, errorResponse(err), nil)
		return
	}
	if done {
		return // 2.31 Continue sent
	}
	var want *block
	if hasB2 {
		want = &b2
	}
	s.run(w, m, ses, rt, req, want)
}

// readRequest checks the content-format and Accept options and collects
// the body, through Block1 reassembly when the request has a Block1
// option. done reports that a 2.31 Continue was sent for a non-final
// block.
func (s *Server) readRequest(w *responsewriter.ResponseWriter[*udpclient.Conn], m *pool.Message, ses *session, path string, rt route) (*request, bool, error) {
	req := &request{path: path, method: m.Code(), format: -1, accept: -1, ses: ses, remote: w.Conn().RemoteAddr().String()}
	if cf, err := m.ContentFormat(); err == nil {
		req.format = int(cf)
	}
	if a, err := m.Accept(); err == nil {
		req.accept = int(a)
	}
	req.query, _ = m.Queries()
	body, err := m.ReadBody()
	if err != nil {
		return nil, false, problem.New(problem.BadRequest, err, "unreadable payload")
	}
	if rt.method != codes.POST {
		return req, false, nil
	}
	// RFC 9148 §5.3: the path and Content-Format must form a valid EST
	// combination; anything else is 4.15 (reliability F07).
	if !slices.ContainsFunc(rt.formats, func(f uint16) bool { return int(f) == req.format }) {
		return nil, false, problem.New(problem.UnsupportedMedia, nil, "unsupported Content-Format")
	}
	b1, hasB1, err := blockOption(m, message.Block1)
	if err != nil {
		return nil, false, err
	}
	if !hasB1 {
		if size1, err := m.GetOptionUint32(message.Size1); err == nil && size1 > MaxBody {
			return nil, false, fmt.Errorf("%w: Size1 %d", ErrTooLarge, size1)
		}
		req.body = body
		return req, false, nil
	}
	size1, _ := m.GetOptionUint32(message.Size1)
	tag, _ := m.GetOptionBytes(optRequestTag)
	ses.mu.Lock()
	whole, err := ses.reasm.add(s.clk.Now(), transferKey{path: path, tag: string(tag)}, b1, size1, body)
	ses.mu.Unlock()
	if err != nil {
		return nil, false, err
	}
	if whole == nil {
		// RFC 7959 §2.3: 2.31 Continue, echoing the block.
		b := block{num: b1.num, more: true, szx: b1.szx}
		s.reply(w, m, ses, response{code: codes.Continue}, nil, message.Option{ID: message.Block1, Value: uintValue(b.value())})
		return nil, true, nil
	}
	req.body = whole
	return req, false, nil
}

// run executes the resource. A result ready within PiggybackWait is
// piggybacked on the ACK; otherwise the ACK goes out empty and the result
// follows as a separate confirmable response with the request's token
// (RFC 7252 §5.2.2, RFC 9148 §5.7).
func (s *Server) run(w *responsewriter.ResponseWriter[*udpclient.Conn], m *pool.Message, ses *session, rt route, req *request, want *block) {
	cc := w.Conn()
	// Reliability G06: the HTTPS buckets, per IP and per client
	// certificate; one token per operation, not per block.
	if wait := s.reg.Throttle(req.remote, ses.leaf()); wait > 0 {
		resp := errorResponse(&problem.Error{Kind: problem.RateLimited, Detail: "too many requests", RetryAfter: wait})
		s.count(rt.name, resp.code)
		s.reply(w, m, ses, resp, nil)
		return
	}
	ctx := valuesContext{Context: cc.Context(), values: ses.values}
	result := make(chan response, 1)
	go func() {
		resp, err := rt.run(ctx, req)
		if err != nil {
			resp = errorResponse(err)
		}
		result <- resp
	}()
	var b1 []message.Option
	if v, err := m.GetOptionUint32(message.Block1); err == nil {
		b1 = []message.Option{{ID: message.Block1, Value: uintValue(v &^ 0x8)}}
	}
	// A real wait, not a time read: the fake clock of tests must not stop
	// separate responses.
	timer := time.NewTimer(s.cfg.PiggybackWait)
	defer timer.Stop()
	select {
	case resp := <-result:
		s.finish(ses, rt, req, resp, want)
		s.reply(w, m, ses, resp, want, b1...)
	case <-timer.C:
		token := slices.Clone(m.Token())
		go func() {
			resp := <-result
			s.finish(ses, rt, req, resp, want)
			out := cc.AcquireMessage(cc.Context())
			defer cc.ReleaseMessage(out)
			out.SetToken(token)
			out.SetType(message.Confirmable)
			s.fill(out, resp, want, b1...)
			if err := cc.WriteMessage(out); err != nil {
				s.log.Info("coap separate response not delivered", slog.String("err", err.Error()))
			}
		}()
	}
}

// finish counts the response and keeps a POST response for Block2 when it
// does not fit in its first block (want, or the default size): only then
// will the client ask for more. A kept response is dropped when its last
// block has been served, so an /skg answer (which holds a private key)
// does not stay in the session for TransferLifetime.
func (s *Server) finish(ses *session, rt route, req *request, resp response, want *block) {
	s.count(rt.name, resp.code)
	// One event per operation (Block1 blocks and Block2 continuations are
	// not operations of their own).
	attrs := []slog.Attr{slog.String("resource", rt.name), slog.String("code", codeString(resp.code)), slog.String("remote", req.remote)}
	if leaf := ses.leaf(); leaf != nil {
		attrs = append(attrs, slog.String("client_subject", leaf.Subject.String()))
	}
	if resp.code >= codes.BadRequest {
		attrs = append(attrs, slog.String("err", string(resp.body)))
	}
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "coap request", attrs...)
	first := block{szx: defaultSZX}
	if want != nil {
		first = *want
	}
	if rt.method == codes.POST {
		ses.mu.Lock()
		if len(resp.body) > first.size()*int(first.num+1) {
			ses.responses[req.path] = &cached{resp: resp, at: s.clk.Now()}
		} else {
			delete(ses.responses, req.path)
		}
		ses.mu.Unlock()
	}
}

func (s *Server) count(name string, code codes.Code) {
	s.metrics.requests.WithLabelValues(name, codeString(code)).Inc()
}

// codeString is the dotted form of a CoAP code, "2.04".
func codeString(code codes.Code) string {
	return fmt.Sprintf("%d.%02d", code>>5, code&0x1f)
}

// reply writes resp as the piggybacked response.
func (s *Server) reply(w *responsewriter.ResponseWriter[*udpclient.Conn], _ *pool.Message, _ *session, resp response, want *block, extra ...message.Option) {
	s.fill(w.Message(), resp, want, extra...)
}

// fill sets code, options and (the wanted block of) the body on out. A
// body larger than the block size is sent block-wise with Size2 and an
// ETag (RFC 7959 §2.4, §4).
func (s *Server) fill(out *pool.Message, resp response, want *block, extra ...message.Option) {
	out.SetCode(resp.code)
	out.SetModified(true)
	for _, o := range extra {
		out.SetOptionBytes(o.ID, o.Value)
	}
	if resp.maxAge > 0 {
		out.SetOptionUint32(message.MaxAge, resp.maxAge)
	}
	if len(resp.body) == 0 {
		return
	}
	isError := resp.code >= codes.BadRequest
	if !isError {
		out.SetContentFormat(message.MediaType(resp.format))
	}
	b := block{szx: defaultSZX}
	if want != nil {
		b = *want
	}
	body := resp.body
	if len(body) > b.size() || b.num > 0 {
		part, more, ok := slice(body, b.num, b.szx)
		if !ok {
			out.SetCode(codes.BadRequest)
			out.SetBody(bytes.NewReader([]byte("no such block")))
			return
		}
		out.SetOptionUint32(message.Block2, block{num: b.num, more: more, szx: b.szx}.value())
		out.SetOptionUint32(message.Size2, sizeValue(len(body)))
		etag := resp.etag
		if etag == nil {
			sum := sha256.Sum256(body)
			etag = sum[:8]
		}
		_ = out.SetETag(etag)
		body = part
	}
	out.SetBody(bytes.NewReader(body))
}

// blockOption reads a Block1 or Block2 option.
func blockOption(m *pool.Message, id message.OptionID) (block, bool, error) {
	if !m.HasOption(id) {
		return block{}, false, nil
	}
	v, err := m.GetOptionUint32(id)
	if err != nil {
		return block{}, false, fmt.Errorf("%w: %w", ErrBlock, err)
	}
	b, err := parseBlock(v)
	return b, true, err
}

// uintValue encodes v as a minimal CoAP uint option value.
func uintValue(v uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, v)
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	return b
}

// sizeValue is a Size2 value: bodies here are at most a few KiB.
func sizeValue(n int) uint32 {
	if n < 0 || n > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(n)
}

// valuesContext is the request's context (cancelled with the session)
// with the registrar's per-connection values (the classified peer).
type valuesContext struct {
	context.Context
	values context.Context
}

func (c valuesContext) Value(key any) any {
	if v := c.Context.Value(key); v != nil {
		return v
	}
	if c.values == nil {
		return nil
	}
	return c.values.Value(key)
}

// estRequest builds the back-end request for this session.
func estRequest(r *request) *est.Request {
	return &est.Request{PeerChain: r.ses.chain}
}
