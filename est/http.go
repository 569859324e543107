package est

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/gatehouse-pki/gatehouse/internal/problem"
	"github.com/gatehouse-pki/gatehouse/internal/web"
)

// Register mounts the EST routes on mux, with and without a label segment
// (RFC 7030 §3.2.2). Errors are plain text (web.WritePlain). Every other
// path under /.well-known/est/ fails closed: 405 with Allow for a known
// operation and the wrong method, 404 otherwise. mux is expected to sit
// inside web.Chain (Handler does that for a stand-alone server).
func (s *Server) Register(mux *http.ServeMux) {
	routes := []struct {
		method, op string
		h          web.HandlerFunc
	}{
		{http.MethodGet, OpCACerts, s.handleCACerts},
		{http.MethodGet, OpCSRAttrs, s.handleCSRAttrs},
		{http.MethodPost, OpSimpleEnroll, s.handleSimpleEnroll},
		{http.MethodPost, OpSimpleReenroll, s.handleSimpleReenroll},
		{http.MethodPost, OpServerKeyGen, s.handleServerKeyGen},
		{http.MethodPost, OpFullCMC, s.handleFullCMC},
	}
	for _, rt := range routes {
		h := s.instrument(rt.op, rt.h)
		mux.Handle(rt.method+" "+PathPrefix+"/"+rt.op, h)
		mux.Handle(rt.method+" "+PathPrefix+"/{label}/"+rt.op, h)
	}
	mux.Handle(PathPrefix+"/", web.Handle(s.handleOther, web.WritePlain))
}

// instrument wraps a handler with the request event annotation and the
// metrics, then adapts it with web.Handle.
func (s *Server) instrument(op string, h web.HandlerFunc) http.Handler {
	return web.Handle(func(w http.ResponseWriter, r *http.Request) error {
		start := s.clk.Now()
		web.EventFrom(r.Context()).Add(slog.String("est_op", op))
		err := h(w, r)
		result := "ok"
		if err != nil {
			kind := problem.From(err).Kind
			if kind == problem.Unauthorized {
				s.challenge(w)
			}
			result = kind.String()
		}
		s.metrics.requests.WithLabelValues(op, result).Inc()
		s.metrics.seconds.WithLabelValues(op).Observe(s.clk.Since(start).Seconds())
		return err
	}, web.WritePlain)
}

// handleCACerts serves RFC 7030 §4.1: anonymous (§4.1.1 allows it without
// client authentication), certs-only PKCS#7, base64 (RFC 8951).
func (s *Server) handleCACerts(w http.ResponseWriter, r *http.Request) error {
	req, err := s.newRequest(r, false)
	if err != nil {
		return err
	}
	certs, err := s.ca.CACerts(r.Context(), req)
	if err != nil {
		return err
	}
	return writeCertsOnly(w, certs)
}

// handleCSRAttrs serves RFC 7030 §4.5 (RFC 9908 content). BRSKI pledges
// authenticate with their IDevID, so it needs the same authentication as
// enrollment.
func (s *Server) handleCSRAttrs(w http.ResponseWriter, r *http.Request) error {
	req, err := s.newRequest(r, true)
	if err != nil {
		return err
	}
	der, err := s.csrAttrs(r.Context(), req)
	if err != nil {
		return err
	}
	return writeBase64(w, MediaCSRAttrs, der)
}

// handleSimpleEnroll serves RFC 7030 §4.2.1.
func (s *Server) handleSimpleEnroll(w http.ResponseWriter, r *http.Request) error {
	req, csr, err := s.readEnroll(w, r, true)
	if err != nil {
		return err
	}
	cert, err := s.enroll(r.Context(), req, csr)
	if err != nil {
		return err
	}
	web.EventFrom(r.Context()).Add(slog.String("cert_serial", cert.SerialNumber.Text(16)))
	return writeCertsOnly(w, []*x509.Certificate{cert})
}

// handleSimpleReenroll serves RFC 7030 §4.2.2.
func (s *Server) handleSimpleReenroll(w http.ResponseWriter, r *http.Request) error {
	req, csr, err := s.readEnroll(w, r, true)
	if err != nil {
		return err
	}
	cert, err := s.reenroll(r.Context(), req, csr)
	if err != nil {
		return err
	}
	web.EventFrom(r.Context()).Add(slog.String("cert_serial", cert.SerialNumber.Text(16)))
	return writeCertsOnly(w, []*x509.Certificate{cert})
}

// handleServerKeyGen serves RFC 7030 §4.4 without key encryption: the key
// travels as an application/pkcs8 part protected only by TLS (§4.4.2).
func (s *Server) handleServerKeyGen(w http.ResponseWriter, r *http.Request) error {
	req, csr, err := s.readEnroll(w, r, false)
	if err != nil {
		return err
	}
	cert, key, err := s.serverKeyGen(r.Context(), req, csr)
	if err != nil {
		return err
	}
	web.EventFrom(r.Context()).Add(slog.String("cert_serial", cert.SerialNumber.Text(16)))
	return writeServerKeyGen(w, cert, key)
}

// handleFullCMC answers 501: Full CMC (RFC 7030 §4.3) is OPTIONAL and not
// offered. The body is not read.
func (s *Server) handleFullCMC(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.newRequest(r, true); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusNotImplemented)
	_, err := io.WriteString(w, "Full CMC is not supported\n")
	return err
}

// handleOther fails closed for every other path and method.
func (s *Server) handleOther(w http.ResponseWriter, r *http.Request) error {
	rest := strings.TrimPrefix(r.URL.Path, PathPrefix+"/")
	segs := strings.Split(rest, "/")
	if n := len(segs); n == 1 || n == 2 {
		if allow, known := ops[segs[n-1]]; known {
			w.Header().Set("Allow", allow)
			return problem.New(problem.MethodNotAllowed, nil, "method %s not allowed", r.Method)
		}
	}
	return problem.New(problem.NotFound, nil, "no such EST operation")
}

// readEnroll is the common request side of the enroll operations: media
// type (RFC 7030 §4.2.1: application/pkcs10, else 415), size (64 KiB,
// else 413), authentication, then the CSR checks.
func (s *Server) readEnroll(w http.ResponseWriter, r *http.Request, pop bool) (*Request, *x509.CertificateRequest, error) {
	body, err := web.ReadBody(w, r, maxRequestBytes, MediaPKCS10)
	if err != nil {
		return nil, nil, err
	}
	req, err := s.newRequest(r, true)
	if err != nil {
		return nil, nil, err
	}
	csr, err := s.checkCSR(req, body, pop)
	if err != nil {
		return nil, nil, err
	}
	web.EventFrom(r.Context()).Add(slog.Bool("channel_bound", req.ChannelBound))
	return req, csr, nil
}

// challenge adds the HTTP Basic challenge to a 401, whether the edge or the
// back end refused, when Basic authentication is configured (RFC 9110
// §15.5.2: a 401 carries WWW-Authenticate; RFC 7617).
func (s *Server) challenge(w http.ResponseWriter) {
	if len(s.cfg.Basic) > 0 {
		w.Header().Set("WWW-Authenticate", `Basic realm="est", charset="UTF-8"`)
	}
}

func writeCertsOnly(w http.ResponseWriter, certs []*x509.Certificate) error {
	der, err := MarshalCertsOnly(certs)
	if err != nil {
		return err
	}
	return writeBase64(w, MediaCertsOnly, der)
}

// writeBase64 writes a 200 with unwrapped base64 (RFC 8951) and
// Content-Transfer-Encoding: base64, which RFC 8951 says receivers ignore
// but some older clients look for.
func writeBase64(w http.ResponseWriter, mediaType string, der []byte) error {
	w.Header().Set("Content-Type", mediaType)
	w.Header().Set(headerCTE, cteBase64)
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(EncodeBase64(der))
	return err
}

// writeServerKeyGen writes the RFC 7030 §4.4.2 multipart/mixed response:
// the key as application/pkcs8 (base64 DER PKCS#8), then the certificate as
// a certs-only PKCS#7.
func writeServerKeyGen(w http.ResponseWriter, cert *x509.Certificate, key any) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("server key generation: key is not exportable as PKCS#8: %w", err)
	}
	p7, err := MarshalCertsOnly([]*x509.Certificate{cert})
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, part := range []struct {
		ctype string
		der   []byte
	}{{MediaPKCS8, keyDER}, {MediaCertsOnly, p7}} {
		pw, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {part.ctype}, headerCTE: {cteBase64}})
		if err != nil {
			return fmt.Errorf("server key generation: %w", err)
		}
		if _, err := pw.Write(EncodeBase64(part.der)); err != nil {
			return fmt.Errorf("server key generation: %w", err)
		}
	}
	clear(keyDER)
	if err := mw.Close(); err != nil {
		return fmt.Errorf("server key generation: %w", err)
	}
	w.Header().Set("Content-Type", MediaMultipartMixed+"; boundary="+mw.Boundary())
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(buf.Bytes())
	return err
}
