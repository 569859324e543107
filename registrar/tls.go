package registrar

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gatehouse-pki/gatehouse/internal/problem"
	"github.com/gatehouse-pki/gatehouse/internal/web"
	"github.com/gatehouse-pki/gatehouse/store"
)

// maxPeerChain caps the client certificates a peer may present; a longer
// chain is refused before any path building (reliability G08).
const maxPeerChain = 8

// PeerKind says what a TLS client authenticated as.
type PeerKind int

// Peer kinds.
const (
	// PeerNone: no client certificate.
	PeerNone PeerKind = iota
	// PeerIDevID: an IDevID chaining to a configured manufacturer.
	PeerIDevID
	// PeerLDevID: an LDevID this registrar issued: it chains to the domain
	// CA and the store holds it (RFC 7030 §3.3.2 "a previously issued
	// client certificate"; RFC 8995 §5.9.4 enrollstatus, re-enrolment).
	PeerLDevID
	// PeerESTClient: a non-BRSKI EST client whose certificate chains to one
	// of Config.ESTClientIssuers.
	PeerESTClient
)

// Peer is a classified TLS client.
type Peer struct {
	// Kind says what the client authenticated as.
	Kind PeerKind
	// Manufacturer is the manufacturer whose IDevID roots accepted the
	// chain (PeerIDevID); its index in the configuration.
	Manufacturer int
	// Leaf is the client's end-entity certificate.
	Leaf *x509.Certificate
	// Chain is the verified chain, leaf first, ending at a root.
	Chain []*x509.Certificate
	// Device is the device the store issued the LDevID to (PeerLDevID).
	Device store.DeviceKey
	// Expired reports an LDevID past its notAfter (PeerLDevID): it is
	// classified so that re-enrolment can answer 401 (attack table D03)
	// instead of a TLS alert, and refused for everything else.
	Expired bool
	// Revoked reports an LDevID the store marks revoked (PeerLDevID). It is
	// read from the store on every connection and every request (attack
	// tables D02, D08).
	Revoked bool
}

// connState is the per-connection record: the certificate this connection
// served (for the proximity check, RFC 8995 §5.2) and the peer's
// classification (so the chain is verified once, in the handshake).
type connState struct {
	mu     sync.Mutex
	served *x509.Certificate
	peer   *Peer
}

// setPeer notes the classified peer; a nil record (no ConnContext) keeps
// nothing.
func (cs *connState) setPeer(p *Peer) {
	if cs == nil {
		return
	}
	cs.mu.Lock()
	cs.peer = p
	cs.mu.Unlock()
}

type connStateKey struct{}

// ConnContext is the http.Server ConnContext hook for the pledge-facing
// listener: it gives each connection the record in which the handshake
// notes the certificate it served and the classified peer. ConfigureServer
// installs it. Without it the registrar falls back to the RA leaf (the only
// certificate it serves) and re-verifies the peer chain per request.
func (s *Service) ConnContext(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connStateKey{}, &connState{})
}

// ConfigureServer sets the pledge-facing TLS configuration and the
// per-connection hook on srv (built with web.NewServer).
func (s *Service) ConfigureServer(srv *http.Server) {
	srv.TLSConfig = s.TLSConfig()
	srv.ConnContext = s.ConnContext
}

func connStateFrom(ctx context.Context) *connState {
	cs, _ := ctx.Value(connStateKey{}).(*connState)
	return cs
}

// TLSConfig returns the pledge-facing listener's TLS configuration: the
// project's TLS 1.2+/ECDHE-AEAD base without session tickets, the RA
// certificate whatever the SNI (cBRSKI: the registrar MUST ignore SNI), a
// requested but not required client certificate (a missing one is answered
// 401 over HTTP, RFC 8995 §7.3), verified in the handshake against the
// manufacturers' IDevID roots at the clock's time; an unknown CA, a
// not-yet-valid, expired (unless the manufacturer ignores IDevID expiry) or
// tampered certificate ends the handshake with an alert.
func (s *Service) TLSConfig() *tls.Config {
	cfg := web.ServerTLSConfig()
	cfg.Time = s.clk.Now
	cfg.ClientAuth = tls.RequestClientCert
	cfg.SessionTicketsDisabled = true
	cfg.NextProtos = []string{"h2", "http/1.1"}
	cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		// cBRSKI updates RFC 8995: ignore the SNI, serve the RA certificate.
		if cs := connStateFrom(hello.Context()); cs != nil {
			cs.mu.Lock()
			cs.served = s.ra.Leaf
			cs.mu.Unlock()
		}
		return &s.ra, nil
	}
	cfg.VerifyConnection = s.verifyConnection(context.Background(), nil)
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		cs := connStateFrom(hello.Context())
		if cs == nil {
			return nil, nil
		}
		// A per-connection copy, so the handshake can note the classified
		// peer where this connection's requests will find it.
		c := cfg.Clone()
		c.GetConfigForClient = nil
		c.VerifyConnection = s.verifyConnection(hello.Context(), cs)
		return c, nil
	}
	return cfg
}

// verifyConnection classifies the client's chain in the handshake (a TLS
// alert when no manufacturer and no LDevID of the domain CA accepts it:
// attack tables A02, A04, A05, D01) and notes the result in cs when given.
// It runs on every full handshake; session tickets are off, so a connection
// never skips it (attack table D08).
func (s *Service) verifyConnection(ctx context.Context, cs *connState) func(tls.ConnectionState) error {
	return func(st tls.ConnectionState) error {
		if len(st.PeerCertificates) == 0 {
			return nil // answered 401 by HTTP (attack table A01)
		}
		p, err := s.ClassifyPeer(ctx, st.PeerCertificates)
		if err != nil {
			return err
		}
		cs.setPeer(p)
		return nil
	}
}

// errUnknownPeer is returned in the handshake for a chain no manufacturer
// accepts; crypto/tls turns it into a bad_certificate alert.
var errUnknownPeer = errors.New("client certificate does not chain to a configured manufacturer")

// classify verifies a presented chain against every manufacturer's IDevID
// roots at the clock's time (RFC 8995 §5.1, §2.6.2) and returns the first
// that accepts it; then as an LDevID of the domain CA; then, when
// configured, against the non-BRSKI EST client issuers.
func (s *Service) classify(certs []*x509.Certificate) (*Peer, error) {
	if len(certs) == 0 {
		return &Peer{Kind: PeerNone}, nil
	}
	if len(certs) > maxPeerChain {
		return nil, fmt.Errorf("%w: %d certificates, limit %d", errUnknownPeer, len(certs), maxPeerChain)
	}
	leaf := certs[0]
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	now := s.clk.Now()
	lastErr := errUnknownPeer
	for i := range s.mfgs {
		m := &s.mfgs[i]
		chain, err := verifyIDevID(leaf, inter, m, now)
		if err != nil {
			lastErr = err
			continue
		}
		return &Peer{Kind: PeerIDevID, Manufacturer: i, Leaf: leaf, Chain: chain}, nil
	}
	if p, ok := s.classifyLDevID(leaf, inter, now); ok {
		return p, nil
	}
	if s.estClientRoots != nil {
		chains, err := leaf.Verify(x509.VerifyOptions{
			Roots:         s.estClientRoots,
			Intermediates: inter,
			CurrentTime:   now,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		})
		if err == nil {
			return &Peer{Kind: PeerESTClient, Leaf: leaf, Chain: chains[0]}, nil
		}
	}
	return nil, lastErr
}

// classifyLDevID verifies leaf as a client certificate of the domain CA at
// now, or, for a leaf past its notAfter, at its notAfter (Expired set: the
// signatures verify, the time does not). Whether the store issued it is
// checked by refreshLDevID.
func (s *Service) classifyLDevID(leaf *x509.Certificate, inter *x509.CertPool, now time.Time) (*Peer, bool) {
	at, expired := now, now.After(leaf.NotAfter)
	if expired {
		at = leaf.NotAfter
	}
	st := s.ca()
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         st.roots,
		Intermediates: st.withInter(inter),
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, false
	}
	return &Peer{Kind: PeerLDevID, Leaf: leaf, Chain: chains[0], Expired: expired}, true
}

// withInter adds the domain CA's intermediates and rollover link
// certificates to the peer's: an LDevID of any generation verifies.
func (st *caState) withInter(inter *x509.CertPool) *x509.CertPool {
	p := inter.Clone()
	for _, c := range st.inter {
		p.AddCert(c)
	}
	return p
}

// errUnknownLDevID is returned in the handshake for a certificate of the
// domain CA that the store did not issue (the RA certificate, or one from
// another registrar of the domain).
var errUnknownLDevID = errors.New("client certificate chains to the domain CA but was not issued by this registrar")

// refreshLDevID reads an LDevID peer's record from the store: the device it
// was issued to and whether it is revoked now. Other peers pass unchanged.
// It returns a copy, so a Peer cached for the connection is never mutated.
func (s *Service) refreshLDevID(ctx context.Context, p *Peer) (*Peer, error) {
	if p.Kind != PeerLDevID {
		return p, nil
	}
	rec, err := s.db.Certificate(ctx, p.Leaf.SerialNumber)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !bytes.Equal(rec.DER, p.Leaf.Raw)) {
		return nil, errUnknownLDevID
	}
	if err != nil {
		return nil, fmt.Errorf("read ldevid: %w", err)
	}
	q := *p
	q.Device = rec.Device
	q.Revoked = rec.Status == store.CertRevoked
	return &q, nil
}

// verifyIDevID builds leaf's chain to m's IDevID roots at now, every
// certificate valid at now. With IgnoreIDevIDExpiry the leaf's notAfter is
// not enforced (RFC 8995 §2.6.2) while its notBefore and every CA's validity
// still are; a 99991231235959Z notAfter needs no special case.
func verifyIDevID(leaf *x509.Certificate, inter *x509.CertPool, m *manufacturer, now time.Time) ([]*x509.Certificate, error) {
	subject := leaf
	if m.IgnoreIDevIDExpiry && now.After(leaf.NotAfter) {
		// x509 reads validity from the parsed fields and signatures from
		// the raw TBS, so a copy with a later notAfter verifies the same
		// signatures with the expiry check alone lifted.
		c := *leaf
		c.NotAfter = now
		subject = &c
	}
	chains, err := subject.Verify(x509.VerifyOptions{
		Roots:         m.roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUnknownPeer, err)
	}
	chain := append([]*x509.Certificate{leaf}, chains[0][1:]...)
	return chain, nil
}

// peerOf classifies a presented chain, from the handshake's record of this
// connection when there is one; an LDevID's revocation is read from the
// store again for every request (attack table D08). No chain is PeerNone.
func (s *Service) peerOf(ctx context.Context, certs []*x509.Certificate) (*Peer, error) {
	if len(certs) == 0 {
		return &Peer{Kind: PeerNone}, nil
	}
	if cs := connStateFrom(ctx); cs != nil {
		cs.mu.Lock()
		p := cs.peer
		cs.mu.Unlock()
		if p != nil && p.Leaf.Equal(certs[0]) {
			q, err := s.refreshLDevID(ctx, p)
			if err != nil {
				return nil, problem.New(problem.Unauthorized, err, "the client certificate is not accepted")
			}
			return q, nil
		}
	}
	p, err := s.ClassifyPeer(ctx, certs)
	if err != nil {
		// The handshake accepted this chain; it no longer verifies (the
		// clock moved on a long-lived connection).
		return nil, problem.New(problem.Unauthorized, err, "the client certificate is not accepted")
	}
	s.SetPeer(ctx, p)
	return p, nil
}

// servedCert returns the certificate this connection served: the one the
// handshake recorded, or the RA leaf when the server has no ConnContext hook.
func (s *Service) servedCert(ctx context.Context) *x509.Certificate {
	if cs := connStateFrom(ctx); cs != nil {
		cs.mu.Lock()
		defer cs.mu.Unlock()
		if cs.served != nil {
			return cs.served
		}
	}
	return s.ra.Leaf
}
