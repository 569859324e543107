package pledge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/jmhodges/clock"

	"github.com/gatehouse-pki/gatehouse/est"
)

// ReenrollConfig configures Reenroll. It is pure data.
type ReenrollConfig struct {
	// Registrar is the registrar's (EST server's) base URL,
	// https://host[:port], or coaps://host[:port] for EST-coaps (RFC 9148;
	// default port 5684). Required.
	Registrar *url.URL
	// LDevID is the current certificate (chain, LDevID first) and its
	// private key: the TLS client certificate and the names to renew.
	// Required.
	LDevID tls.Certificate
	// DomainCAs are the domain trust anchors that verify the registrar's
	// TLS certificate and the renewed LDevID. At least one.
	DomainCAs []*x509.Certificate
	// Clock gives the time for every validity check. Required.
	Clock clock.Clock
	// DisableChannelBinding leaves the challengePassword out of the CSR
	// (see Config.DisableChannelBinding).
	DisableChannelBinding bool
	// MaxTLSVersion caps the TLS version offered. Default TLS 1.3.
	MaxTLSVersion uint16
	// MaxRetryWait caps one wait after a 202. Default DefaultMaxRetryWait.
	MaxRetryWait time.Duration
	// MaxBusyRetries caps how many busy answers in a row (503 or 429 with
	// Retry-After) are waited out. Default DefaultMaxBusyRetries;
	// negative: a busy answer is final.
	MaxBusyRetries int
	// MaxWait bounds the whole exchange. Default DefaultMaxWait.
	MaxWait time.Duration
}

// Validate reports every problem in cfg at once. It is pure.
func (cfg ReenrollConfig) Validate() error {
	var errs []error
	switch u := cfg.Registrar; {
	case u == nil:
		errs = append(errs, errors.New("registrar URL is required"))
	case u.Scheme != "https" && u.Scheme != "coaps" || u.Host == "":
		errs = append(errs, fmt.Errorf("registrar URL %q: want https://host[:port] or coaps://host[:port]", u))
	}
	errs = append(errs, clientSetup{
		role: "LDevID", cert: cfg.LDevID, anchors: len(cfg.DomainCAs), anchorsName: "domain CA", clock: cfg.Clock,
		maxRetryWait: cfg.MaxRetryWait, maxWait: cfg.MaxWait, maxTLS: cfg.MaxTLSVersion,
	}.check()...)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

// Reenroll renews an LDevID over EST (RFC 7030 §4.2.2; RFC 8995 §5.9,
// standards digest §8.1 step 11): it connects presenting the current
// LDevID and verifies the registrar against the domain CAs (no provisional
// trust), gets /cacerts (which may carry a rolled-over CA and its link
// certificates), generates a new key of the same type, and posts to
// /simplereenroll a CSR with the same subject and subjectAltName as the
// current certificate, bound to the TLS channel. The renewed certificate
// must be for the new key and chain to the domain CAs at the clock's time.
func Reenroll(ctx context.Context, cfg ReenrollConfig) (*Result, error) {
	if cfg.MaxBusyRetries == 0 {
		cfg.MaxBusyRetries = DefaultMaxBusyRetries
	}
	if cfg.MaxRetryWait == 0 {
		cfg.MaxRetryWait = DefaultMaxRetryWait
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	leaf, oldKey, err := leafAndKey("LDevID", cfg.LDevID)
	if err != nil {
		return nil, err
	}
	kt, err := est.KeyTypeOf(oldKey.Public())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.MaxWait)
	defer cancel()
	if cfg.Registrar.Scheme == "coaps" {
		return reenrollCoAPS(ctx, cfg, leaf, kt)
	}
	s := newDomainSession(cfg.Registrar, cfg.LDevID, cfg.DomainCAs, cfg.Clock, cfg.MaxTLSVersion)
	defer s.close()

	res := &Result{}
	busy := busyPolicy{max: cfg.MaxBusyRetries, wait: func(h string) time.Duration { return retryDelay(h, cfg.Clock.Now(), cfg.MaxRetryWait) }}
	cacerts, cs, err := fetchCACerts(ctx, s, busy)
	if err != nil {
		return nil, fmt.Errorf("reenroll: %w", err)
	}
	res.CACerts = cacerts
	if res.Key, err = est.GenerateKey(kt); err != nil {
		return nil, fmt.Errorf("pledge: %w", err)
	}
	// RFC 7030 §4.2.2: the subject and subjectAltName are the current
	// certificate's, unchanged.
	req := est.CSRRequest{RawSubject: leaf.RawSubject}
	if san, ok := sanExtension(leaf); ok {
		req.Extensions = []est.Extension{san}
	}
	e := enroller{
		poster: s,
		path:   PathSimpleReenroll,
		req:    req,
		key:    res.Key,
		bind:   !cfg.DisableChannelBinding,
		busy:   busy,
	}
	if err := e.run(ctx, cs, res); err != nil {
		return nil, fmt.Errorf("reenroll: %w", err)
	}
	verify := func() error { return res.verifyLDevID(cfg.DomainCAs, cfg.Clock.Now()) }
	if err := res.verifyAfterRollover(ctx, verify, func(ctx context.Context) ([]*x509.Certificate, error) {
		cs, _, err := fetchCACerts(ctx, s, busy)
		return cs, err
	}); err != nil {
		return nil, fmt.Errorf("reenroll: %w", err)
	}
	return res, nil
}

// sanExtension returns the certificate's subjectAltName extension, if any.
func sanExtension(c *x509.Certificate) (est.Extension, bool) {
	for _, e := range c.Extensions {
		if e.Id.Equal(oidSubjectAltName) {
			return est.Extension{ID: e.Id, Critical: e.Critical, Value: e.Value}, true
		}
	}
	return est.Extension{}, false
}

var (
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	// oidEKUCMCRA is id-kp-cmcRA (RFC 6402), which crypto/x509 has no
	// constant for: it lands in UnknownExtKeyUsage.
	oidEKUCMCRA = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 28}
)

// domainSession is a keep-alive HTTPS connection to the registrar that
// presents a domain certificate (LDevID) and verifies the registrar against
// the domain CAs: the state after enrollment.
type domainSession struct {
	hc   *http.Client
	tr   *http.Transport
	base *url.URL
}

// newDomainSession prepares (does not dial) a domain session.
func newDomainSession(registrar *url.URL, cert tls.Certificate, roots []*x509.Certificate, clk clock.Clock, maxTLS uint16) *domainSession {
	host := registrar.Hostname()
	addr := registrar.Host
	if registrar.Port() == "" {
		addr = net.JoinHostPort(host, "443")
	}
	conf := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		MaxVersion:   maxTLS,
		Certificates: []tls.Certificate{cert},
		// The chain is verified in VerifyConnection: against the domain CAs
		// with any EKU (RFC 8995's registrar certificates may carry only
		// id-kp-cmcRA), and the name check of RFC 7030 §3.6.1 (the URI's
		// host, or id-kp-cmcRA). No SNI, as on the voucher connection.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection (verifyDomainServer)
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyDomainServer(cs.PeerCertificates, roots, host, clk.Now())
		},
		Time: clk.Now,
	}
	d := &net.Dialer{Timeout: DialTimeout}
	tr := &http.Transport{
		DialTLSContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			if a != addr {
				return nil, fmt.Errorf("%w: refusing to connect to %s, not the registrar %s", ErrConnect, a, addr)
			}
			raw, err := d.DialContext(ctx, network, a)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrConnect, err)
			}
			hctx, cancel := context.WithTimeout(ctx, DialTimeout)
			defer cancel()
			conn := tls.Client(raw, conf)
			if err := conn.HandshakeContext(hctx); err != nil {
				_ = raw.Close()
				return nil, fmt.Errorf("%w: TLS handshake with %s: %w", ErrConnect, a, err)
			}
			return conn, nil
		},
		MaxConnsPerHost:     1,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     2 * DefaultMaxRetryWait,
		DisableCompression:  true,
	}
	return &domainSession{
		tr:   tr,
		base: &url.URL{Scheme: "https", Host: registrar.Host},
		hc: &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

func (s *domainSession) get(ctx context.Context, path, accept string) (*answer, error) {
	return roundTrip(ctx, s.hc, s.base, http.MethodGet, path, "", accept, nil)
}

func (s *domainSession) post(ctx context.Context, path, contentType, accept string, body []byte) (*answer, error) {
	return roundTrip(ctx, s.hc, s.base, http.MethodPost, path, contentType, accept, body)
}

func (s *domainSession) close() { s.tr.CloseIdleConnections() }

// verifyDomainServer validates the registrar's chain (end-entity first)
// against the domain CAs at now, and its identity: the URL's host is in
// the certificate, or it carries id-kp-cmcRA (RFC 7030 §3.6.1).
func verifyDomainServer(chain, roots []*x509.Certificate, host string, now time.Time) error {
	if len(chain) == 0 {
		return fmt.Errorf("%w: the registrar presented no certificate", ErrConnect)
	}
	rp := x509.NewCertPool()
	for _, c := range roots {
		rp.AddCert(c)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	leaf := chain[0]
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         rp,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return fmt.Errorf("%w: registrar certificate %q does not chain to the domain CA: %w", ErrRegistrarChanged, leaf.Subject, err)
	}
	if leaf.VerifyHostname(host) != nil && !slices.ContainsFunc(leaf.UnknownExtKeyUsage, oidEKUCMCRA.Equal) {
		return fmt.Errorf("%w: registrar certificate %q names neither %q nor id-kp-cmcRA", ErrRegistrarChanged, leaf.Subject, host)
	}
	return nil
}
