package pledge

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/jmhodges/clock"

	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

// Well-known paths (RFC 8995 §5, IANA "BRSKI Well-Known URIs").
const (
	PathRequestVoucher = "/.well-known/brski/requestvoucher"
	PathVoucherStatus  = "/.well-known/brski/voucher_status"
	PathEnrollStatus   = "/.well-known/brski/enrollstatus"
)

// MediaTypeJSON is the media type of voucher_status and enrollstatus.
const MediaTypeJSON = "application/json"

// Defaults and limits.
const (
	// DefaultMaxRetryWait caps one wait after a 202 (RFC 8995 §5.6: the
	// pledge caps Retry-After at 60 seconds).
	DefaultMaxRetryWait = 60 * time.Second
	// DefaultMaxWait bounds the whole voucher exchange: RFC 8995 §5.6 has a
	// pledge keep retrying for up to four days so an operator can approve it.
	DefaultMaxWait = 4 * 24 * time.Hour
	// DefaultRetryWait is the wait after a 202 without a usable Retry-After.
	DefaultRetryWait = 5 * time.Second
	// MinRetryWait is the shortest wait after a 202 (a registrar answering
	// Retry-After: 0 is not hammered), unless MaxRetryWait is shorter.
	MinRetryWait = time.Second
	// DefaultMaxBusyRetries is how many busy answers (503 or 429) with
	// Retry-After in a row the voucher or EST exchange waits out before
	// giving up.
	DefaultMaxBusyRetries = 5
	// DialTimeout bounds connecting to the registrar (TCP and TLS).
	DialTimeout = 10 * time.Second
	// MaxResponseBytes caps a response body read from the registrar.
	MaxResponseBytes = 64 << 10
	// maxErrorText caps the server text kept in a StatusError.
	maxErrorText = 512
)

// Errors. Each failure of the voucher phase wraps exactly one of them.
var (
	// ErrConfig reports an unusable Config.
	ErrConfig = errors.New("pledge: invalid configuration")
	// ErrConnect reports that no TLS connection to the registrar could be
	// made.
	ErrConnect = errors.New("pledge: cannot connect to the registrar")
	// ErrRegistrarChanged reports a new connection on which the registrar
	// presented a different certificate than the one the pledge recorded
	// (while provisional) or one that does not chain to the pinned domain
	// certificate (after the voucher).
	ErrRegistrarChanged = errors.New("pledge: the registrar presented a different certificate on a new connection")
	// ErrMASASignature reports a voucher whose signature does not verify or
	// does not chain to the MASA trust anchors at the clock's time.
	ErrMASASignature = errors.New("pledge: voucher signature does not verify against the MASA anchors")
	// ErrBadVoucher reports a voucher that verifies but does not decode or
	// breaks a schema or time rule (expired, malformed, …).
	ErrBadVoucher = errors.New("pledge: unusable voucher")
	// ErrSerialMismatch reports a voucher for another serial number.
	ErrSerialMismatch = errors.New("pledge: voucher serial-number is not this pledge's")
	// ErrNonceMismatch reports a voucher whose nonce is not the one sent.
	ErrNonceMismatch = errors.New("pledge: voucher nonce does not match the request")
	// ErrNoPinnedDomainCert reports a voucher without pinned-domain-cert.
	ErrNoPinnedDomainCert = errors.New("pledge: voucher has no pinned-domain-cert")
	// ErrPinMismatch reports a registrar whose TLS chain does not chain to
	// the voucher's pinned-domain-cert (RFC 8995 §5.6.2).
	ErrPinMismatch = errors.New("pledge: the registrar's TLS certificate does not chain to the pinned domain certificate")
	// ErrPending reports that the registrar still deferred (202) when the
	// context or Config.MaxWait ended.
	ErrPending = errors.New("pledge: the registrar has no voucher yet")
)

// StatusError reports an HTTP answer the pledge cannot use, with the
// registrar's text (RFC 8995 §5.6: error bodies are human-readable text).
type StatusError struct {
	// Path is the request path, such as PathRequestVoucher.
	Path string
	// StatusCode is the HTTP status code.
	StatusCode int
	// Text is the start of the response body, printable characters only.
	Text string
}

// Error implements error.
func (e *StatusError) Error() string {
	msg := fmt.Sprintf("pledge: registrar answered %d %s to %s", e.StatusCode, http.StatusText(e.StatusCode), e.Path)
	if e.Text != "" {
		msg += ": " + e.Text
	}
	return msg
}

// Config configures a Client. It is pure data.
type Config struct {
	// Registrar is the registrar's base URL, https://host[:port]. Required.
	// Only its scheme and authority are used: the endpoints are the
	// well-known paths.
	Registrar *url.URL
	// IDevID is the pledge's identity: the certificate chain (IDevID first),
	// the private key (a crypto.Signer) and, optionally, the parsed Leaf.
	// The IDevID's subject must carry the X.520 serialNumber. Required.
	IDevID tls.Certificate
	// MASAAnchors are the manufacturer's trust anchors for vouchers (the
	// MASA's signing certificate or its CA). At least one.
	MASAAnchors []*x509.Certificate
	// Clock gives the time for created-on and every validity check.
	// Required.
	Clock clock.Clock
	// MaxRetryWait caps one wait after a 202. Default DefaultMaxRetryWait.
	MaxRetryWait time.Duration
	// MaxBusyRetries caps how many busy answers in a row that carry
	// Retry-After (503: a registrar at its MASA in-flight cap, RFC 9110
	// §15.6.4; 429: a rate limit, RFC 6585 §4) the voucher exchange, and
	// then each EST request, waits out, each wait like a 202's (capped by
	// MaxRetryWait); the next such answer, or one without Retry-After, is
	// final. Default DefaultMaxBusyRetries; negative: always final.
	MaxBusyRetries int
	// MaxWait bounds the whole voucher exchange, waits included, and then
	// the EST exchange likewise. Default DefaultMaxWait.
	MaxWait time.Duration
	// DisableChannelBinding leaves the challengePassword out of the CSR.
	// By default the CSR carries the TLS channel binding (RFC 7030 §3.5:
	// tls-unique on TLS 1.2, the RFC 9266 tls-exporter on TLS 1.3), which
	// ties the request to the authenticated connection.
	DisableChannelBinding bool
	// MaxTLSVersion caps the TLS version offered (tls.VersionTLS12 forces
	// tls-unique binding). Default: TLS 1.3.
	MaxTLSVersion uint16
	// VoucherFormat is the format of the voucher-request and so of the
	// voucher: voucher.FormatCMS (default, "": CMS around JSON, RFC 8995)
	// or voucher.FormatCOSE (COSE_Sign1 around YANG-CBOR, cBRSKI,
	// application/voucher+cose). A COSE voucher reaches the pledge without
	// certificates (cBRSKI: the registrar strips the MASA's x5bag), so
	// MASAAnchors must then hold the MASA's voucher-signing certificate
	// itself, whose key verifies the voucher.
	VoucherFormat voucher.Format
}

// WithDefaults returns cfg with every unset field at its default.
func (cfg Config) WithDefaults() Config {
	if cfg.MaxRetryWait == 0 {
		cfg.MaxRetryWait = DefaultMaxRetryWait
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	if cfg.MaxBusyRetries == 0 {
		cfg.MaxBusyRetries = DefaultMaxBusyRetries
	}
	return cfg
}

// Validate reports every problem in cfg at once. It is pure.
func (cfg Config) Validate() error {
	var errs []error
	switch u := cfg.Registrar; {
	case u == nil:
		errs = append(errs, errors.New("registrar URL is required"))
	case u.Scheme == "coaps" && cfg.VoucherFormat == voucher.FormatCMS:
		errs = append(errs, fmt.Errorf("registrar URL %q: over coaps the voucher-request is COSE (cBRSKI), not CMS", u))
	case u.Scheme != "https" && u.Scheme != "coaps" || u.Host == "":
		errs = append(errs, fmt.Errorf("registrar URL %q: want https://host[:port] or coaps://host[:port]", u))
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		errs = append(errs, fmt.Errorf("registrar URL %q: no user info, query or fragment allowed", u))
	}
	errs = append(errs, clientSetup{
		role: "IDevID", cert: cfg.IDevID, anchors: len(cfg.MASAAnchors), anchorsName: "MASA anchor", clock: cfg.Clock,
		maxRetryWait: cfg.MaxRetryWait, maxWait: cfg.MaxWait, maxTLS: cfg.MaxTLSVersion,
	}.check()...)
	if f := cfg.VoucherFormat; f != "" && f != voucher.FormatCMS && f != voucher.FormatCOSE {
		errs = append(errs, fmt.Errorf("voucher format %q: want %s or %s", f, voucher.FormatCMS, voucher.FormatCOSE))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

// clientSetup is what a pledge's TLS connection to the registrar needs,
// whichever certificate it presents: Config (the IDevID) and
// ReenrollConfig (an LDevID) are both checked with it.
type clientSetup struct {
	role                  string // "IDevID" or "LDevID"
	cert                  tls.Certificate
	anchors               int
	anchorsName           string // what verifies the other side
	clock                 clock.Clock
	maxRetryWait, maxWait time.Duration
	maxTLS                uint16
}

// check reports every problem of s.
func (s clientSetup) check() []error {
	var errs []error
	if len(s.cert.Certificate) == 0 {
		errs = append(errs, fmt.Errorf("%s certificate is required", s.role))
	}
	if _, ok := s.cert.PrivateKey.(crypto.Signer); !ok {
		errs = append(errs, fmt.Errorf("%s private key is missing or is not a signing key", s.role))
	}
	if s.anchors == 0 {
		errs = append(errs, fmt.Errorf("at least one %s is required", s.anchorsName))
	}
	if s.clock == nil {
		errs = append(errs, errors.New("clock is required"))
	}
	if s.maxRetryWait < 0 || s.maxWait < 0 {
		errs = append(errs, errors.New("waits must not be negative"))
	}
	if v := s.maxTLS; v != 0 && v != tls.VersionTLS12 && v != tls.VersionTLS13 {
		errs = append(errs, fmt.Errorf("max TLS version %#x: want TLS 1.2 or 1.3", v))
	}
	return errs
}

// leafAndKey returns the parsed end-entity certificate of a validated
// key pair (Leaf, else the first certificate) and its key, which must
// match it.
func leafAndKey(role string, cert tls.Certificate) (*x509.Certificate, crypto.Signer, error) {
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, nil, fmt.Errorf("%w: parse %s: %w", ErrConfig, role, err)
		}
	}
	key := cert.PrivateKey.(crypto.Signer)
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(leaf.PublicKey) {
		return nil, nil, fmt.Errorf("%w: the %s key does not match the %s certificate", ErrConfig, role, role)
	}
	return leaf, key, nil
}

// Client is one pledge talking to one registrar over one persistent TLS
// connection. Its methods may be called from several goroutines, but the
// exchange is meant to be sequential: RequestVoucher, VoucherStatus (which
// RequestVoucher already sends), later EST, EnrollStatus. Close releases the
// connection.
type Client struct {
	cfg    Config
	leaf   *x509.Certificate
	chain  []*x509.Certificate // the IDevID's issuers, as configured
	key    crypto.Signer
	serial string
	addr   string // host:port of the registrar
	base   *url.URL
	hc     *http.Client
	tr     *http.Transport

	mu sync.Mutex
	// coaps is the DTLS session of a coaps:// registrar, which carries
	// every request instead of hc.
	coaps *CoAPSession
	// serverChain is the chain the registrar presented on the latest
	// connection (end-entity first).
	serverChain []*x509.Certificate
	// recorded is the end-entity certificate of the first connection: the
	// provisional identity the PVR names.
	recorded *x509.Certificate
	// pinned is the voucher's pinned-domain-cert once a voucher was
	// accepted; it ends the provisional state.
	pinned *x509.Certificate
	// pending is a connection dialled before the first request, handed to
	// the transport on its first dial.
	pending net.Conn
}

// New validates cfg and returns a Client. It does not connect yet.
func New(cfg Config) (*Client, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	leaf, key, err := leafAndKey("IDevID", cfg.IDevID)
	if err != nil {
		return nil, err
	}
	serial, err := pki.SerialNumber(leaf, "")
	if err != nil {
		return nil, fmt.Errorf("%w: IDevID %q: %w", ErrConfig, leaf.Subject, err)
	}
	var chain []*x509.Certificate
	for i, der := range cfg.IDevID.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: parse IDevID chain certificate %d: %w", ErrConfig, i+1, err)
		}
		chain = append(chain, c)
	}
	addr := cfg.Registrar.Host
	if cfg.Registrar.Port() == "" {
		addr = net.JoinHostPort(cfg.Registrar.Hostname(), "443")
	}
	if cfg.Registrar.Scheme == "coaps" {
		// cBRSKI: CoAP over DTLS carries COSE voucher-requests.
		addr = coapsAddr(cfg.Registrar)
		cfg.VoucherFormat = voucher.FormatCOSE
	}
	c := &Client{
		cfg:    cfg,
		leaf:   leaf,
		chain:  chain,
		key:    key,
		serial: serial,
		addr:   addr,
		base:   &url.URL{Scheme: "https", Host: cfg.Registrar.Host},
	}
	// HTTP/1.1 with keep-alive on the one connection (DialTLSContext set,
	// so no HTTP/2); no proxy from the environment; no redirects (RFC 8995
	// §5.6 allows following one to another origin: not supported yet).
	c.tr = &http.Transport{
		DialTLSContext:      c.dialTLS,
		MaxConnsPerHost:     1,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     2 * DefaultMaxRetryWait,
		DisableCompression:  true,
	}
	c.hc = &http.Client{
		Transport:     c.tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// Serial returns the pledge's serial number, the IDevID's X.520
// serialNumber.
func (c *Client) Serial() string { return c.serial }

// Close closes the connection to the registrar.
func (c *Client) Close() error {
	c.mu.Lock()
	p := c.pending
	c.pending = nil
	c.mu.Unlock()
	if p != nil {
		_ = p.Close()
	}
	c.tr.CloseIdleConnections()
	c.mu.Lock()
	cs := c.coaps
	c.coaps = nil
	c.mu.Unlock()
	if cs != nil {
		_ = cs.Close()
	}
	return nil
}

// connect makes sure the registrar's end-entity certificate is recorded,
// dialling the connection the first request will use, and returns it.
func (c *Client) connect(ctx context.Context) (*x509.Certificate, error) {
	c.mu.Lock()
	rec := c.recorded
	c.mu.Unlock()
	if rec != nil {
		return rec, nil
	}
	if c.cfg.Registrar.Scheme == "coaps" {
		if _, err := c.session(ctx); err != nil {
			return nil, err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.recorded, nil
	}
	conn, err := c.dialTLS(ctx, "tcp", c.addr)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending != nil {
		_ = c.pending.Close()
	}
	c.pending = conn
	return c.recorded, nil
}

// dialTLS is the transport's only way to the registrar. It hands out the
// connection connect dialled, or dials anew and checks the registrar's
// certificate against what the pledge already knows.
func (c *Client) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	c.mu.Lock()
	if p := c.pending; p != nil && addr == c.addr {
		c.pending = nil
		c.mu.Unlock()
		return p, nil
	}
	c.mu.Unlock()
	if addr != c.addr {
		return nil, fmt.Errorf("%w: refusing to connect to %s, not the registrar %s", ErrConnect, addr, c.addr)
	}
	d := &net.Dialer{Timeout: DialTimeout}
	raw, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConnect, err)
	}
	conf := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		MaxVersion:   c.cfg.MaxTLSVersion,
		Certificates: []tls.Certificate{c.cfg.IDevID},
		// RFC 8995 §5.1: the registrar's certificate is accepted
		// provisionally, and validated against pinned-domain-cert once the
		// voucher arrives (checkPin); checkServer records it and holds later
		// connections to it. No ServerName: no SNI is sent (cBRSKI).
		InsecureSkipVerify: true, //nolint:gosec // provisional TLS (RFC 8995 §5.1); verified in checkServer and checkPin
		VerifyConnection:   c.checkServer,
		Time:               c.cfg.Clock.Now,
	}
	hctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	conn := tls.Client(raw, conf)
	if err := conn.HandshakeContext(hctx); err != nil {
		_ = raw.Close()
		if errors.Is(err, ErrRegistrarChanged) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: TLS handshake with %s%s: %w", ErrConnect, addr, alertHint(err), err)
	}
	return conn, nil
}

// checkServer runs in every handshake: it records the registrar's chain on
// the first connection and holds later ones to it (or, after the voucher,
// to the pinned domain certificate).
func (c *Client) checkServer(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("%w: the registrar presented no certificate", ErrConnect)
	}
	chain := cs.PeerCertificates
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.pinned != nil:
		if err := verifyAgainstPin(chain, c.pinned, c.cfg.Clock.Now()); err != nil {
			return fmt.Errorf("%w: %w", ErrRegistrarChanged, err)
		}
	case c.recorded == nil:
		c.recorded = chain[0]
	case !bytes.Equal(chain[0].Raw, c.recorded.Raw):
		return fmt.Errorf("%w: %q instead of %q", ErrRegistrarChanged, chain[0].Subject, c.recorded.Subject)
	}
	c.serverChain = chain
	return nil
}

// verifyAgainstPin validates a TLS server chain (end-entity first) against a
// pinned domain certificate: the pinned certificate is the end-entity
// itself, or a CA the end-entity chains to through the presented
// intermediates. Any extended key usage is accepted: RFC 8995's own example
// registrar certificate carries only id-kp-cmcRA.
func verifyAgainstPin(chain []*x509.Certificate, pinned *x509.Certificate, now time.Time) error {
	leaf := chain[0]
	if bytes.Equal(leaf.Raw, pinned.Raw) {
		if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
			return fmt.Errorf("registrar certificate %q is not valid at %s", leaf.Subject, now.UTC().Format(time.RFC3339))
		}
		return nil
	}
	roots := x509.NewCertPool()
	roots.AddCert(pinned)
	inter := x509.NewCertPool()
	for _, ic := range chain[1:] {
		inter.AddCert(ic)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return fmt.Errorf("registrar certificate %q does not chain to %q: %w", leaf.Subject, pinned.Subject, err)
	}
	return nil
}

// answer is a registrar response, its body read and closed.
type answer struct {
	status int
	header http.Header
	body   []byte
	// tls is the state of the connection that carried the answer.
	tls *tls.ConnectionState
}

// post sends body to path on the registrar connection and returns the
// answer (body capped at MaxResponseBytes).
func (c *Client) post(ctx context.Context, path, contentType, accept string, body []byte) (*answer, error) {
	if c.cfg.Registrar.Scheme == "coaps" {
		s, err := c.session(ctx)
		if err != nil {
			return nil, err
		}
		return c.dropOnConnectError(s)(s.post(ctx, path, contentType, accept, body))
	}
	return roundTrip(ctx, c.hc, c.base, http.MethodPost, path, contentType, accept, body)
}

// get fetches path on the registrar connection.
func (c *Client) get(ctx context.Context, path, accept string) (*answer, error) {
	if c.cfg.Registrar.Scheme == "coaps" {
		s, err := c.session(ctx)
		if err != nil {
			return nil, err
		}
		return c.dropOnConnectError(s)(s.get(ctx, path, accept))
	}
	return roundTrip(ctx, c.hc, c.base, http.MethodGet, path, "", accept, nil)
}

// session returns the DTLS session to a coaps:// registrar, opening it
// (IDevID as client certificate, the server chain recorded provisionally
// and then held to the pin by checkServer, as over TLS) when there is
// none.
func (c *Client) session(ctx context.Context) (*CoAPSession, error) {
	c.mu.Lock()
	s := c.coaps
	c.mu.Unlock()
	if s != nil {
		return s, nil
	}
	s, err := DialCoAPS(ctx, c.addr, c.cfg.IDevID, func(chain []*x509.Certificate) error {
		return c.checkServer(tls.ConnectionState{PeerCertificates: chain})
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConnect, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.coaps != nil {
		_ = s.Close()
		return c.coaps, nil
	}
	c.coaps = s
	return s, nil
}

// dropOnConnectError passes an exchange's result through, first
// forgetting s (and closing it) when the exchange failed to reach the
// registrar, so the next request dials a new DTLS session instead of
// reusing one the registrar has closed (its idle timeout, a restart).
func (c *Client) dropOnConnectError(s *CoAPSession) func(*answer, error) (*answer, error) {
	return func(a *answer, err error) (*answer, error) {
		if errors.Is(err, ErrConnect) {
			c.mu.Lock()
			if c.coaps == s {
				c.coaps = nil
			}
			c.mu.Unlock()
			_ = s.Close()
		}
		return a, err
	}
}

// roundTrip sends one request to base+path through hc and returns the
// answer, its body capped at MaxResponseBytes.
func roundTrip(ctx context.Context, hc *http.Client, base *url.URL, method, path, contentType, accept string, body []byte) (*answer, error) {
	u := base.ResolveReference(&url.URL{Path: path})
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("pledge: build request: %w", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	op := strings.ToLower(method) + " " + path
	resp, err := hc.Do(req)
	if err != nil {
		if errors.Is(err, ErrConnect) || errors.Is(err, ErrRegistrarChanged) {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		return nil, fmt.Errorf("%s: %w%s: %w", op, ErrConnect, alertHint(err), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: read response: %w", op, err)
	}
	if len(b) > MaxResponseBytes {
		return nil, fmt.Errorf("%s: response is larger than %d bytes", op, MaxResponseBytes)
	}
	return &answer{status: resp.StatusCode, header: resp.Header, body: b, tls: resp.TLS}, nil
}

// alertHint explains a TLS alert from the registrar: with TLS 1.3 it
// arrives with the first response, after the client's handshake completed.
func alertHint(err error) string {
	if strings.Contains(err.Error(), "remote error: tls:") {
		return " (the registrar refused this IDevID: unknown manufacturer, or an IDevID not valid at the registrar's time)"
	}
	return ""
}

// statusError builds a StatusError from an answer.
func statusError(path string, a *answer) *StatusError {
	return &StatusError{Path: path, StatusCode: a.status, Text: printable(a.body)}
}

// printable returns the start of b as one line of printable text.
func printable(b []byte) string {
	s := strings.ToValidUTF8(string(b), "?")
	s = strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return ' '
		}
		if !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxErrorText {
		s = strings.ToValidUTF8(s[:maxErrorText], "") + "…"
	}
	return s
}
