package registrar

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"time"
)

// The hooks below let a transport other than crypto/tls (the CoAP/DTLS
// listener in package coap, cBRSKI) authenticate pledges with exactly the
// code the HTTPS listener uses.

// Certificate returns the RA certificate chain and key the registrar
// serves, for a DTLS listener (cBRSKI: every resource on one endpoint, the
// same identity).
func (s *Service) Certificate() tls.Certificate {
	return s.ra
}

// ClassifyPeer classifies a client chain presented in a DTLS handshake as
// TLSConfig's VerifyConnection does for TLS: an IDevID of a configured
// manufacturer or an LDevID this registrar issued (its revocation read
// now), else an error (the handshake ends with an alert). It returns the
// peer for SetPeer: a DTLS stack's verification callback does not know
// the connection it runs for.
func (s *Service) ClassifyPeer(ctx context.Context, certs []*x509.Certificate) (*Peer, error) {
	if len(certs) == 0 {
		return nil, errUnknownPeer
	}
	p, err := s.classify(certs)
	if err != nil {
		return nil, err
	}
	return s.refreshLDevID(ctx, p)
}

// SetPeer notes p (from ClassifyPeer) as the peer of the connection whose
// record ctx carries (ConnContext), so the connection's requests reuse it
// and the chain is not verified again per request.
func (s *Service) SetPeer(ctx context.Context, p *Peer) {
	connStateFrom(ctx).setPeer(p)
}

// Throttle spends one token from the per-IP and per-client-certificate
// buckets for a request from remote (host:port) by a client presenting
// leaf, exactly as an HTTPS request does (reliability G06). A non-zero
// result is how long the client must wait; the request is then refused
// (CoAP: 5.03 with Max-Age) and costs nothing.
func (s *Service) Throttle(remote string, leaf *x509.Certificate) time.Duration {
	r := &http.Request{RemoteAddr: remote}
	if leaf != nil {
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}
	}
	return min(s.limits.take(r, s.clk.Now()), MaxRetryAfter)
}
