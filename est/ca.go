package est

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
)

// CA is the back end the EST edge calls: it authorizes the caller, applies
// the CSR policy of its profile, and issues. Every CSR it receives has been
// parsed and has passed pki.CheckCSR (signature with its own key, signature
// algorithm, key policy, no request for CA rights) at the edge, so a back
// end checks only what is its own (names against its profile:
// pki.CheckCSRNames). The registrar implements it
// (registrar.Service); tests use a small pki-backed CA. Errors it returns
// should be *problem.Error values (Forbidden, BadRequest, Deferred, …);
// anything else is answered 500 with a generic body.
type CA interface {
	// CACerts returns the issuing CA certificate first, then the rest of
	// its chain and any link or extra certificates (RFC 7030 §4.1.3).
	CACerts(ctx context.Context, r *Request) ([]*x509.Certificate, error)
	// CSRAttrs returns what the CA wants in the caller's CSR (RFC 7030
	// §4.5, RFC 9908).
	CSRAttrs(ctx context.Context, r *Request) (*CSRAttrs, error)
	// Enroll issues a certificate for a checked CSR (RFC 7030 §4.2.1).
	Enroll(ctx context.Context, r *Request, csr *x509.CertificateRequest) (*x509.Certificate, error)
	// Reenroll renews the certificate the caller authenticated with
	// (RFC 7030 §4.2.2). The edge has already checked that the CSR's
	// subject and subjectAltName equal that certificate's.
	Reenroll(ctx context.Context, r *Request, csr *x509.CertificateRequest) (*x509.Certificate, error)
	// ServerKeyGen generates a key, issues a certificate for it and returns
	// both (RFC 7030 §4.4). The key must be exportable as PKCS#8.
	ServerKeyGen(ctx context.Context, r *Request, csr *x509.CertificateRequest) (*x509.Certificate, crypto.Signer, error)
}

// Request carries what the edge knows about the caller; the back end
// authorizes.
type Request struct {
	// Label is the optional /{label}/ path segment (RFC 7030 §3.2.2); ""
	// selects the default profile.
	Label string
	// PeerChain is the TLS client chain as presented (IDevID or LDevID),
	// leaf first, verified by the listener's TLS configuration. Empty when
	// the client sent no certificate.
	PeerChain []*x509.Certificate
	// TLS is the connection state (nil only in handler tests without TLS).
	TLS *tls.ConnectionState
	// BasicUser is set only when HTTP Basic authentication succeeded
	// against Config.Basic.
	BasicUser string
	// ChannelBound reports that the CSR carried a challengePassword equal to
	// this connection's channel binding (tls-unique under TLS 1.2, RFC 9266
	// tls-exporter under TLS 1.3; RFC 7030 §3.5).
	ChannelBound bool
	// RawCSR is the DER PKCS#10 request after base64 decoding; nil for GET
	// operations.
	RawCSR []byte
}

// LogValue keeps the request's bulk (chains, connection state, CSR bytes)
// out of logs.
func (r *Request) LogValue() slog.Value {
	var peer string
	if len(r.PeerChain) > 0 {
		peer = r.PeerChain[0].Subject.String()
	}
	return slog.GroupValue(
		slog.String("label", r.Label),
		slog.String("peer", peer),
		slog.Bool("basic", r.BasicUser != ""),
		slog.Bool("channel_bound", r.ChannelBound),
	)
}
