package est

import (
	"context"
	"crypto"
	"crypto/x509"
	"time"

	"github.com/gatehouse-pki/gatehouse/internal/problem"
)

// The methods below are the EST operations for transports that carry DER
// bodies instead of base64 over HTTP: EST-coaps (RFC 9148 §5.3: "payloads
// are binary DER, no base64"). They apply exactly the checks and back-end
// calls of the HTTP handlers (authentication, pki.CheckCSR, the channel
// binding, the RFC 7030 §4.2.2 names rule, Retry-After on Deferred) and
// count in the same metrics; only the framing differs. The caller sets
// req.PeerChain from its own authenticated channel (a DTLS client
// certificate); req.TLS stays nil, so a CSR carrying a challengePassword is
// refused (no tls-unique to compare it with, RFC 9148 §4: PoP linking is
// optional).

// CACertsFor returns the CA certificates (RFC 7030 §4.1; RFC 9148 /crts),
// issuing CA first.
func (s *Server) CACertsFor(ctx context.Context, req *Request) ([]*x509.Certificate, error) {
	start := s.clk.Now()
	certs, err := s.ca.CACerts(ctx, req)
	s.observe(OpCACerts, start, err)
	return certs, err
}

// CSRAttrsDER returns the DER CSR attributes for an authenticated caller
// (RFC 7030 §4.5; RFC 9148 /att).
func (s *Server) CSRAttrsDER(ctx context.Context, req *Request) ([]byte, error) {
	start := s.clk.Now()
	der, err := s.csrAttrsDER(ctx, req)
	s.observe(OpCSRAttrs, start, err)
	return der, err
}

func (s *Server) csrAttrsDER(ctx context.Context, req *Request) ([]byte, error) {
	if err := requirePeer(req); err != nil {
		return nil, err
	}
	return s.csrAttrs(ctx, req)
}

// EnrollDER is simpleenroll with a DER PKCS#10 body (RFC 7030 §4.2.1;
// RFC 9148 /sen).
func (s *Server) EnrollDER(ctx context.Context, req *Request, der []byte) (*x509.Certificate, error) {
	start := s.clk.Now()
	cert, err := s.enrollDER(ctx, req, der, s.enroll)
	s.observe(OpSimpleEnroll, start, err)
	return cert, err
}

// ReenrollDER is simplereenroll with a DER PKCS#10 body (RFC 7030 §4.2.2;
// RFC 9148 /sren).
func (s *Server) ReenrollDER(ctx context.Context, req *Request, der []byte) (*x509.Certificate, error) {
	start := s.clk.Now()
	cert, err := s.enrollDER(ctx, req, der, s.reenroll)
	s.observe(OpSimpleReenroll, start, err)
	return cert, err
}

func (s *Server) enrollDER(ctx context.Context, req *Request, der []byte, op func(context.Context, *Request, *x509.CertificateRequest) (*x509.Certificate, error)) (*x509.Certificate, error) {
	csr, err := s.checkDER(req, der, true)
	if err != nil {
		return nil, err
	}
	return op(ctx, req, csr)
}

// ServerKeyGenDER is serverkeygen with a DER PKCS#10 body (RFC 7030 §4.4;
// RFC 9148 /skg).
func (s *Server) ServerKeyGenDER(ctx context.Context, req *Request, der []byte) (*x509.Certificate, crypto.Signer, error) {
	start := s.clk.Now()
	cert, key, err := s.serverKeyGenDER(ctx, req, der)
	s.observe(OpServerKeyGen, start, err)
	return cert, key, err
}

func (s *Server) serverKeyGenDER(ctx context.Context, req *Request, der []byte) (*x509.Certificate, crypto.Signer, error) {
	csr, err := s.checkDER(req, der, false)
	if err != nil {
		return nil, nil, err
	}
	return s.serverKeyGen(ctx, req, csr)
}

// checkDER is checkCSR without the base64 layer, after the authentication
// check the HTTP edge makes in newRequest.
func (s *Server) checkDER(req *Request, der []byte, pop bool) (*x509.CertificateRequest, error) {
	if err := requirePeer(req); err != nil {
		return nil, err
	}
	return s.checkCSRDER(req, der, pop)
}

// requirePeer: RFC 9148 §4: the client authenticates with a certificate
// for every function; there is no HTTP authentication to fall back on.
func requirePeer(req *Request) error {
	if len(req.PeerChain) == 0 {
		return problem.New(problem.Unauthorized, nil, "a client certificate is required")
	}
	return nil
}

// observe counts one operation in the EST metrics.
func (s *Server) observe(op string, start time.Time, err error) {
	result := "ok"
	if err != nil {
		result = problem.From(err).Kind.String()
	}
	s.metrics.requests.WithLabelValues(op, result).Inc()
	s.metrics.seconds.WithLabelValues(op).Observe(s.clk.Since(start).Seconds())
}
