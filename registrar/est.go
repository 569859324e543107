package registrar

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/internal/problem"
	"github.com/gatehouse-pki/gatehouse/internal/web"
	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/store"
)

// The registrar is the EST back end (RFC 8995 §5.9, RFC 7030).
var _ est.CA = (*Service)(nil)

// oidECDSAWithSHA256 is the signature algorithm /csrattrs asks for.
var oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}

// Router is a set of routes mounted next to the BRSKI routes: *est.Server.
type Router interface {
	Register(mux *http.ServeMux)
}

// HandlerWith returns the pledge-facing handler with the BRSKI routes and
// each of routers (the EST edge, RFC 8995 §5.9: EST continues on the voucher
// connection) on one mux inside the middleware chain.
func (s *Service) HandlerWith(routers ...Router) http.Handler {
	mux := http.NewServeMux()
	s.Register(mux)
	for _, r := range routers {
		r.Register(mux)
	}
	if len(routers) == 0 {
		return web.Chain(mux, web.Options{Logger: s.log, Clock: s.clk, Errors: web.WritePlain})
	}
	// The EST edge catches everything under /.well-known/est/; the BRSKI
	// aliases there keep answering other methods with 405 (attack table
	// E07).
	for _, p := range []string{pathESTRequestVouchr, pathESTVoucherStatus} {
		mux.Handle(p, web.Handle(methodNotAllowed, web.WritePlain))
	}
	// EST requests spend from the same per-IP and per-client-certificate
	// buckets as BRSKI (reliability G06: 429 + Retry-After); the BRSKI
	// aliases under /.well-known/est/ are limited by their own routes.
	limited := s.limited(mux)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; strings.HasPrefix(p, est.PathPrefix+"/") && p != pathESTRequestVouchr && p != pathESTVoucherStatus {
			limited.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
	return web.Chain(h, web.Options{Logger: s.log, Clock: s.clk, Errors: web.WritePlain})
}

// CACerts returns the domain CA certificates, issuing generation first,
// with the rollover link certificates and the older roots during an
// overlap (RFC 7030 §4.1.3; RFC 8995 §5.9.1; Service.CACertificates). It
// needs no authentication (RFC 7030 §4.1.1).
func (s *Service) CACerts(_ context.Context, _ *est.Request) ([]*x509.Certificate, error) {
	return s.CACertificates(), nil
}

// CSRAttrs tells an authenticated pledge what its CSR must hold (RFC 8995
// §5.9.2: the pledge MUST ask; RFC 7030 §4.5; RFC 9908 §3.3 key types):
// an EC P-256 or P-384 key (or RSA, at least 2048 bits), ecdsa-with-SHA256,
// and, on a TLS 1.2 connection, challengePassword with tls-unique (RFC 7030
// §3.5; TLS 1.3 has no tls-unique, standards §3.3, so the binding is not
// required there). Names are not asked for: the profile derives them from
// the IDevID.
func (s *Service) CSRAttrs(ctx context.Context, r *est.Request) (*est.CSRAttrs, error) {
	p, err := s.peerOf(ctx, r.PeerChain)
	if err != nil {
		return nil, s.refused(ctx, "csrattrs", r, p, err)
	}
	basic := p.Kind == PeerNone && r.BasicUser != "" && s.cfg.ESTBasicAuth
	if (p.Kind == PeerNone && !basic) || p.Revoked || p.Expired {
		return nil, s.refused(ctx, "csrattrs", r, p, problem.New(problem.Unauthorized, nil, "a valid client certificate is required"))
	}
	a := &est.CSRAttrs{
		OIDs: []asn1.ObjectIdentifier{oidECDSAWithSHA256},
		KeyTypes: []est.KeyType{
			{Algorithm: est.OIDPublicKeyEC, Curve: est.OIDCurveP256},
			{Algorithm: est.OIDPublicKeyEC, Curve: est.OIDCurveP384},
			{Algorithm: est.OIDPublicKeyRSA, RSABits: 2048},
		},
	}
	if bindingRequired(r) {
		a.OIDs = append([]asn1.ObjectIdentifier{est.OIDChallengePassword}, a.OIDs...)
	}
	return a, nil
}

// bindingRequired reports a TLS 1.2 connection, where the registrar
// requires the tls-unique binding (RFC 7030 §3.5; attack tables C08, C09).
func bindingRequired(r *est.Request) bool {
	return r.TLS != nil && r.TLS.Version < tls.VersionTLS13
}

// Enroll serves simpleenroll (RFC 7030 §4.2.1, RFC 8995 §5.9.3) for a
// pledge authenticated by its IDevID whose voucher phase succeeded; see
// docs/flows/enroll.md for every check and its status.
func (s *Service) Enroll(ctx context.Context, r *est.Request, csr *x509.CertificateRequest) (*x509.Certificate, error) {
	p, e, err := s.authorizeEST(ctx, r, opEnroll)
	if err != nil {
		return nil, s.refused(ctx, opEnroll, r, p, err)
	}
	cert, err := s.issueFor(ctx, e, csr)
	if err != nil {
		return nil, s.refused(ctx, opEnroll, r, p, err)
	}
	return cert, nil
}

// Reenroll serves simplereenroll (RFC 7030 §4.2.2) for a device
// authenticated by a valid LDevID of this registrar. The edge has compared
// the CSR's subject and subjectAltName with the client certificate (403);
// the new certificate is issued by the current issuing CA with a new serial,
// for the same or a new key.
func (s *Service) Reenroll(ctx context.Context, r *est.Request, csr *x509.CertificateRequest) (*x509.Certificate, error) {
	p, e, err := s.authorizeEST(ctx, r, opReenroll)
	if err != nil {
		return nil, s.refused(ctx, opReenroll, r, p, err)
	}
	cert, err := s.issueFor(ctx, e, csr)
	if err != nil {
		return nil, s.refused(ctx, opReenroll, r, p, err)
	}
	return cert, nil
}

// ServerKeyGen serves serverkeygen (RFC 7030 §4.4) under the simpleenroll
// authorization: it generates a P-256 key in memory, issues for it through
// the same intent protocol and returns both. The key is never written to
// disk or logs; the edge returns it unencrypted (application/pkcs8) inside
// the TLS connection (docs/flows/enroll.md, divergences). The CSR only
// carries the names, which must be the device's.
func (s *Service) ServerKeyGen(ctx context.Context, r *est.Request, csr *x509.CertificateRequest) (*x509.Certificate, crypto.Signer, error) {
	p, e, err := s.authorizeEST(ctx, r, opServerKeyGen)
	if err != nil {
		return nil, nil, s.refused(ctx, opServerKeyGen, r, p, err)
	}
	if err := pki.CheckCSRNames(csr, s.cfg.LDevID, e.dev); err != nil {
		return nil, nil, s.refused(ctx, opServerKeyGen, r, p, problem.New(problem.BadRequest, err, "the CSR is refused: %v", err))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("marshal key: %w", err)
	}
	cert, err := s.issueKey(ctx, e, key.Public(), spki)
	if err != nil {
		return nil, nil, s.refused(ctx, opServerKeyGen, r, p, err)
	}
	return cert, key, nil
}

// authorizeEST classifies the caller and authorizes op: BRSKI pledges by
// their IDevID, re-enrolment by an LDevID of this registrar, and non-BRSKI
// clients only as configured (a listed client-certificate issuer, or HTTP
// Basic with Config.ESTBasicAuth; reliability E04: no fallback otherwise).
func (s *Service) authorizeEST(ctx context.Context, r *est.Request, op string) (*Peer, *enrollment, error) {
	p, err := s.peerOf(ctx, r.PeerChain)
	if err != nil {
		return nil, nil, err
	}
	var e *enrollment
	switch {
	case op == opReenroll:
		e, err = s.authorizeReenroll(ctx, p)
	case p.Kind == PeerESTClient || (p.Kind == PeerNone && r.BasicUser != ""):
		e, err = s.authorizeESTClient(ctx, p, r.BasicUser, op)
	default:
		e, err = s.authorizeEnroll(ctx, p, op)
	}
	if err != nil {
		return p, nil, err
	}
	// RFC 7030 §3.5: on TLS 1.2 the CSR must carry this connection's
	// tls-unique (the edge compared it and set ChannelBound).
	if bindingRequired(r) && !r.ChannelBound && op != opServerKeyGen {
		return p, nil, problem.New(problem.Unauthorized, nil, "on TLS 1.2 the CSR must carry the tls-unique channel binding in challengePassword (RFC 7030 §3.5)")
	}
	return p, e, nil
}

// refused records one enroll-refused audit event for a refusal decided by
// the registrar (reliability Q7) and returns err. Internal failures are
// recorded by the issuance path (issue-failure) instead.
func (s *Service) refused(ctx context.Context, op string, r *est.Request, p *Peer, err error) error {
	pe, ok := errors.AsType[*problem.Error](err)
	if !ok || pe.Kind == problem.Internal {
		return err
	}
	fields := []string{"op", op, "kind", pe.Kind.String(), "reason", truncate(pe.Detail, 256)}
	if r.BasicUser != "" {
		fields = append(fields, "basic_user", r.BasicUser)
	}
	if p != nil {
		if p.Kind == PeerESTClient {
			fields = append(fields, "client_subject", truncate(p.Leaf.Subject.String(), 128))
		}
		fields = append(fields, "client_cert", peerKindName(p.Kind))
		if p.Kind == PeerLDevID {
			fields = append(fields, "device", p.Device.String(), "pledge_serial", p.Device.Serial)
		}
		if p.Kind == PeerIDevID {
			if sn, err := pki.SerialNumber(p.Leaf, s.mfgs[p.Manufacturer].IDevID.SerialFallback); err == nil {
				fields = append(fields, "device", DeviceKeyFor(p.Leaf, sn).String(), "pledge_serial", sn)
			}
		}
	}
	if aerr := s.audit.Record(ctx, audit.New(EnrollRefused, fields...)); aerr != nil {
		return errors.Join(err, aerr)
	}
	return err
}

// Client authentication methods, the client_auth field of issuance audit
// events.
const (
	authIDevID     = "idevid"
	authLDevID     = "ldevid"
	authClientCert = "est-client-cert"
	authBasic      = "http-basic"
)

// Device key issuers of non-BRSKI EST clients, so that their devices never
// share a key with a BRSKI pledge's (store.DeviceKey).
const (
	// estClientIssuerPrefix precedes the client certificate's issuer key
	// identifier (as DeviceKeyFor renders it).
	estClientIssuerPrefix = "est-client:"
	// estBasicIssuer is the issuer of every HTTP Basic user.
	estBasicIssuer = "est-basic"
)

// authorizeESTClient authorizes simpleenroll and serverkeygen for a
// non-BRSKI client (docs/flows/enroll.md "Non-BRSKI EST clients"). Its
// identity, which the profile's {serial} and {cn} render into the LDevID,
// is the client certificate's subject serialNumber, or its CN without one
// (and {cn} its CN); or the HTTP Basic user name for both. No voucher is
// needed: the configuration authorizes the client. A device an operator
// denied or blocked is refused (403).
func (s *Service) authorizeESTClient(ctx context.Context, p *Peer, basicUser, op string) (*enrollment, error) {
	e := &enrollment{op: op, reuse: op == opEnroll}
	switch {
	case p.Kind == PeerESTClient:
		serial := p.Leaf.Subject.SerialNumber
		if serial == "" {
			serial = p.Leaf.Subject.CommonName
		}
		if serial == "" {
			return nil, problem.New(problem.Forbidden, nil, "the client certificate's subject has neither serialNumber nor CN to name the device")
		}
		e.key = store.DeviceKey{Issuer: estClientIssuerPrefix + DeviceKeyFor(p.Leaf, serial).Issuer, Serial: serial}
		e.dev = &pki.DeviceIdentity{Serial: serial, CommonName: p.Leaf.Subject.CommonName}
		e.auth, e.peerKey = authClientCert, p.Leaf.RawSubjectPublicKeyInfo
	case !s.cfg.ESTBasicAuth:
		// The edge knows the user, the registrar was not told to issue to
		// Basic users (reliability E04).
		return nil, problem.New(problem.Unauthorized, nil, "HTTP Basic users may not enrol here; a client certificate is required")
	default:
		e.key = store.DeviceKey{Issuer: estBasicIssuer, Serial: basicUser}
		e.dev = &pki.DeviceIdentity{Serial: basicUser, CommonName: basicUser}
		e.auth = authBasic
	}
	web.EventFrom(ctx).Add(slog.String("pledge_serial", e.dev.Serial), slog.String("client_auth", e.auth))
	dev, err := s.db.Device(ctx, e.key)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("read device: %w", err)
	case !store.CanTransition(dev.Status, store.DeviceEnrolled):
		return nil, problem.New(problem.Forbidden, nil, "device is %s", dev.Status)
	}
	return e, nil
}

// methodNotAllowed answers 405 with Allow: POST.
func methodNotAllowed(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Allow", http.MethodPost)
	return problem.New(problem.MethodNotAllowed, nil, "method not allowed")
}
