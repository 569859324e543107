package coap

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/internal/problem"
)

// links is the /.well-known/core listing (RFC 6690; RFC 9148 §5.1 rt
// values; cBRSKI rt values). The voucher resources join it when served.
var links = []struct{ path, rt, ct string }{
	{PathCrts, "ace.est.crts", "281 287 62"},
	{PathSen, "ace.est.sen", "281 287"},
	{PathSren, "ace.est.sren", "281 287"},
	{PathAtt, "ace.est.att", "285"},
	{PathSkg, "ace.est.skg", "62"},
	{PathRV, "brski.rv", "836"},
	{PathVS, "brski.vs", "60 50"},
	{PathES, "brski.es", "60 50"},
}

// core serves GET /.well-known/core in link format, filtered by an
// rt=value or rt=prefix* query (RFC 6690 §4.1).
func (s *Server) core(_ context.Context, r *request) (response, error) {
	filter := ""
	for _, q := range r.query {
		if v, ok := strings.CutPrefix(q, "rt="); ok {
			filter = v
		}
	}
	var parts []string
	for _, l := range links {
		if !matchRT(l.rt, filter) {
			continue
		}
		parts = append(parts, fmt.Sprintf("<%s>;rt=%q;ct=%q", l.path, l.rt, l.ct))
	}
	return ok(codes.Content, FormatLinkFormat, []byte(strings.Join(parts, ","))), nil
}

func matchRT(rt, filter string) bool {
	if filter == "" {
		return true
	}
	if p, wild := strings.CutSuffix(filter, "*"); wild {
		return strings.HasPrefix(rt, p)
	}
	return rt == filter
}

func ok(code codes.Code, format uint16, body []byte) response {
	return response{code: code, format: format, body: body}
}

// accepts returns the response format: the client's Accept if it is one
// of offered, the first of offered when Accept is absent (RFC 9148 §5.3:
// 281 by default), else NotAcceptable (4.06).
func accepts(r *request, offered ...uint16) (uint16, error) {
	if r.accept < 0 {
		return offered[0], nil
	}
	for _, f := range offered {
		if int(f) == r.accept {
			return f, nil
		}
	}
	return 0, problem.New(problem.NotAcceptable, nil, "Accept %d not offered", r.accept)
}

// crts serves GET /crts (RFC 9148 §5.3; cBRSKI): the est.CA's CA
// certificates as certs-only (281, default), as one certificate (287,
// only when there is exactly one: otherwise the domain has several and
// the client must ask for a list, 4.06), or as multipart-core of 287
// parts (62), issuing CA first.
func (s *Server) crts(ctx context.Context, r *request) (response, error) {
	f, err := accepts(r, FormatCertsOnly, FormatPKIXCert, FormatMultipartCore)
	if err != nil {
		return response{}, err
	}
	certs, err := s.est.CACertsFor(ctx, estRequest(r))
	if err != nil {
		return response{}, err
	}
	return certsResponse(codes.Content, f, certs)
}

func certsResponse(code codes.Code, f uint16, certs []*x509.Certificate) (response, error) {
	switch f {
	case FormatPKIXCert:
		if len(certs) != 1 {
			return response{}, problem.New(problem.NotAcceptable, nil, "%d certificates: ask for 281 or 62", len(certs))
		}
		return ok(code, f, certs[0].Raw), nil
	case FormatMultipartCore:
		parts := make([]Part, 0, len(certs))
		for _, c := range certs {
			parts = append(parts, Part{Format: FormatPKIXCert, Body: c.Raw})
		}
		b, err := MarshalMultipart(parts)
		if err != nil {
			return response{}, err
		}
		return ok(code, f, b), nil
	default:
		b, err := est.MarshalCertsOnly(certs)
		if err != nil {
			return response{}, err
		}
		return ok(code, FormatCertsOnly, b), nil
	}
}

// att serves GET /att: DER CSR attributes (285).
func (s *Server) att(ctx context.Context, r *request) (response, error) {
	f, err := accepts(r, FormatCSRAttrs)
	if err != nil {
		return response{}, err
	}
	der, err := s.est.CSRAttrsDER(ctx, estRequest(r))
	if err != nil {
		return response{}, err
	}
	return ok(codes.Content, f, der), nil
}

// enroll serves POST /sen and /sren: a DER PKCS#10 (286) in, the
// certificate as certs-only (281, default) or DER (287) out, 2.04.
func (s *Server) enroll(re bool) func(context.Context, *request) (response, error) {
	return func(ctx context.Context, r *request) (response, error) {
		f, err := accepts(r, FormatCertsOnly, FormatPKIXCert)
		if err != nil {
			return response{}, err
		}
		op := s.est.EnrollDER
		if re {
			op = s.est.ReenrollDER
		}
		cert, err := op(ctx, estRequest(r), r.body)
		if err != nil {
			return response{}, err
		}
		return certsResponse(codes.Changed, f, []*x509.Certificate{cert})
	}
}

// skg serves POST /skg (RFC 9148 §5.8): multipart-core of the clear
// PKCS#8 key (284) and the certificate as certs-only (281).
func (s *Server) skg(ctx context.Context, r *request) (response, error) {
	if _, err := accepts(r, FormatMultipartCore); err != nil {
		return response{}, err
	}
	cert, key, err := s.est.ServerKeyGenDER(ctx, estRequest(r), r.body)
	if err != nil {
		return response{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return response{}, fmt.Errorf("server key generation: %w", err)
	}
	defer clear(keyDER)
	p7, err := est.MarshalCertsOnly([]*x509.Certificate{cert})
	if err != nil {
		return response{}, err
	}
	b, err := MarshalMultipart([]Part{{FormatPKCS8, keyDER}, {FormatCertsOnly, p7}})
	if err != nil {
		return response{}, err
	}
	return ok(codes.Changed, FormatMultipartCore, b), nil
}
