// Package registrartest starts a real registrar.Service over TLS on
// loopback, with a fresh bbolt store, for tests; and provides a small test
// pledge that builds, mutates, signs and posts voucher-requests while
// presenting an IDevID. It is imported only from _test.go files.
package registrartest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/jmhodges/clock"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/internal/web"
	"github.com/gatehouse-pki/gatehouse/masa/masatest"
	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/store"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

// Options configure Start.
type Options struct {
	// Clock is the registrar's clock; default pkitest.NewClock().
	Clock clock.Clock
	// Manufacturer issues the pledges' IDevIDs. Required unless
	// Manufacturers is set.
	Manufacturer *pkitest.CA
	// DomainCA issues the RA certificate and is what vouchers pin. Default:
	// a fresh CA.
	DomainCA *pkitest.CA
	// MASA, when set, fills MASAURL, MASAAnchors and MASATLSRoots from a
	// running masatest server.
	MASA *masatest.Server
	// MASAURL is the MASA base URL (https://host:port/.well-known/brski)
	// allowed for Manufacturer.
	MASAURL *url.URL
	// MASAAnchors verify vouchers for Manufacturer.
	MASAAnchors []*x509.Certificate
	// MASATLSRoots verify the MASA's TLS certificate.
	MASATLSRoots *x509.CertPool
	// Policy for Manufacturer; default accept-all.
	Policy registrar.Policy
	// Allowlist for PolicyAllowlist.
	Allowlist []string
	// IgnoreIDevIDExpiry for Manufacturer.
	IgnoreIDevIDExpiry bool
	// Manufacturers are added after the one built from the fields above.
	Manufacturers []registrar.Manufacturer
	// Config, when set, edits the configuration before New.
	Config func(*registrar.Config)
	// Logger; default discards.
	Logger *slog.Logger
	// LDevID is the LDevID profile of the registrar's issuer (defaults as
	// pki.Profile.WithDefaults).
	LDevID pki.Profile
	// Linter lints every LDevID before signing; default full zlint
	// (pkitest.NewLinter), as reliability Q1 asks of every test.
	Linter pki.Linter
	// CRLBaseURL is the issuer's CRL distribution point base (default none).
	CRLBaseURL string
	// EST configures the EST edge mounted on the registrar's mux.
	EST est.Config
}

// Registrar is a running registrar.
type Registrar struct {
	// URL is the pledge-facing base URL, https://127.0.0.1:port.
	URL string
	// RA is the registrar certificate it serves and signs with.
	RA *pkitest.Leaf
	// DomainCA is the CA vouchers pin.
	DomainCA *pkitest.CA
	// Service is the registrar.
	Service *registrar.Service
	// Addr is the listener's host:port.
	Addr string
	// Server is the HTTP server (web.NewServer + ConfigureServer).
	Server *http.Server
	// Registry holds the registrar's metrics.
	Registry *prometheus.Registry
	// Clock is the registrar's clock.
	Clock clock.Clock
	// EST is the EST edge served on the same listener.
	EST *est.Server
	// Issuer signs the registrar's LDevIDs.
	Issuer *pki.Issuer

	db *store.DB
}

// Start builds the registrar from opts and serves it on loopback TLS,
// configured as production does (registrar.Service.ConfigureServer on a
// web.NewServer). Everything stops at t.Cleanup.
func Start(t testing.TB, opts Options) *Registrar {
	t.Helper()
	if opts.Clock == nil {
		opts.Clock = pkitest.NewClock()
	}
	if opts.DomainCA == nil {
		opts.DomainCA = pkitest.NewCA(t, pkitest.Name("Registrartest Domain CA"), pkitest.Clock(opts.Clock))
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MASA != nil {
		if opts.MASAURL == nil {
			u, err := url.Parse(opts.MASA.URL + "/.well-known/brski")
			if err != nil {
				t.Fatalf("registrartest: masa url: %v", err)
			}
			opts.MASAURL = u
		}
		if opts.MASAAnchors == nil {
			opts.MASAAnchors = []*x509.Certificate{opts.MASA.Anchor()}
		}
		if opts.MASATLSRoots == nil {
			opts.MASATLSRoots = opts.MASA.TLSRoots
		}
	}
	if opts.Policy == "" {
		opts.Policy = registrar.PolicyAcceptAll
	}
	db, err := store.Open(filepath.Join(t.TempDir(), "registrar.db"), store.Options{Clock: opts.Clock})
	if err != nil {
		t.Fatalf("registrartest: open store: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ra := pkitest.NewRACert(t, opts.DomainCA, nil)
	cfg := registrar.Config{}
	if opts.Manufacturer != nil {
		m := registrar.Manufacturer{
			Name:               "test-manufacturer",
			IDevIDRoots:        []*x509.Certificate{opts.Manufacturer.Root()},
			MASAAnchors:        opts.MASAAnchors,
			MASATLSRoots:       opts.MASATLSRoots,
			Policy:             opts.Policy,
			Allowlist:          opts.Allowlist,
			IgnoreIDevIDExpiry: opts.IgnoreIDevIDExpiry,
		}
		if opts.MASAURL != nil {
			m.MASAURLs = []*url.URL{opts.MASAURL}
		}
		cfg.Manufacturers = append(cfg.Manufacturers, m)
	}
	cfg.Manufacturers = append(cfg.Manufacturers, opts.Manufacturers...)
	if opts.Config != nil {
		opts.Config(&cfg)
	}
	if opts.Linter == nil {
		opts.Linter = pkitest.NewLinter(t)
	}
	cfg.LDevID = opts.LDevID
	issuer := opts.DomainCA.NewIssuer(t, pki.IssuerConfig{LDevID: opts.LDevID, CRLBaseURL: opts.CRLBaseURL}, opts.Linter)
	reg := prometheus.NewRegistry()
	svc, err := registrar.New(cfg, registrar.Deps{
		Issuer:   issuer,
		Logger:   opts.Logger,
		Clock:    opts.Clock,
		Metrics:  reg,
		Store:    db,
		Audit:    audit.NewRecorder(db, nil),
		RA:       ra.TLS,
		DomainCA: opts.DomainCA.Chain,
	})
	if err != nil {
		t.Fatalf("registrartest: new registrar: %v", err)
	}
	estSrv, err := est.NewServer(opts.EST, est.Deps{Logger: opts.Logger, Clock: opts.Clock, Metrics: reg, CA: svc})
	if err != nil {
		t.Fatalf("registrartest: new est server: %v", err)
	}
	// As production: open intents are resolved before the listener opens.
	if _, err := db.ResolveIntents(t.Context()); err != nil {
		t.Fatalf("registrartest: resolve intents: %v", err)
	}
	srv := web.NewServer(svc.HandlerWith(estSrv, svc.CRLs()), nil, opts.Logger)
	svc.ConfigureServer(srv)
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("registrartest: listen: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ServeTLS(ln, "", "")
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return &Registrar{URL: "https://" + ln.Addr().String(), Addr: ln.Addr().String(), RA: ra, DomainCA: opts.DomainCA, Service: svc, Server: srv, Registry: reg, Clock: opts.Clock, EST: estSrv, Issuer: issuer, db: db}
}

// DB returns the registrar's store.
func (r *Registrar) DB() *store.DB { return r.db }

// StateDigest returns the store's state hash (reliability §2.0).
func (r *Registrar) StateDigest(t testing.TB) [32]byte {
	t.Helper()
	d, err := r.db.StateDigest(t.Context())
	if err != nil {
		t.Fatalf("registrartest: state digest: %v", err)
	}
	return d
}

// AuditCount returns the number of audit events.
func (r *Registrar) AuditCount(t testing.TB) uint64 {
	t.Helper()
	n, err := r.db.AuditCount(t.Context())
	if err != nil {
		t.Fatalf("registrartest: audit count: %v", err)
	}
	return n
}

// AuditSince returns the audit events with Seq greater than after.
func (r *Registrar) AuditSince(t testing.TB, after uint64) []store.Event {
	t.Helper()
	var out []store.Event
	for from := after + 1; ; {
		evs, err := r.db.Audit(t.Context(), from, 1000)
		if err != nil {
			t.Fatalf("registrartest: audit: %v", err)
		}
		out = append(out, evs...)
		if len(evs) < 1000 {
			return out
		}
		from = evs[len(evs)-1].Seq + 1
	}
}

// RequireAudit fails t unless an audit event of type typ names the pledge
// serial.
func (r *Registrar) RequireAudit(t testing.TB, typ, serial string) {
	t.Helper()
	for _, e := range r.AuditSince(t, 0) {
		if e.Type == typ && e.Fields["pledge_serial"] == serial {
			return
		}
	}
	t.Fatalf("no %q audit event for serial %q", typ, serial)
}

// Counter returns the value of a counter (or gauge) with exactly the given
// labels, 0 when it has never been set.
func (r *Registrar) Counter(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := r.Registry.Gather()
	if err != nil {
		t.Fatalf("registrartest: gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelsMatch(m.GetLabel(), labels) {
				switch {
				case m.Counter != nil:
					return m.GetCounter().GetValue()
				case m.Gauge != nil:
					return m.GetGauge().GetValue()
				case m.Histogram != nil:
					return float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	return 0
}

func labelsMatch(have []*dto.LabelPair, want map[string]string) bool {
	if len(have) != len(want) {
		return false
	}
	for _, l := range have {
		if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
			return false
		}
	}
	return true
}

// Pledge is a minimal test pledge: it presents an IDevID over TLS and posts
// voucher-requests it builds and signs itself, with optional mutations.
// The real client is package pledge.
type Pledge struct {
	// Serial is the pledge's serial number.
	Serial string
	// IDevID is the certificate and key the pledge presents and signs with.
	IDevID tls.Certificate
	// Client is its HTTP client (keep-alive, one connection reused).
	Client *http.Client

	reg   *Registrar
	clock clock.Clock
}

// NewPledge returns a pledge for reg that presents idevid (the leaf and its
// key; a zero value presents no client certificate). It trusts reg's domain CA for the TLS server, which a real pledge
// accepts provisionally.
func NewPledge(t testing.TB, reg *Registrar, serial string, idevid tls.Certificate) *Pledge {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(reg.DomainCA.Root())
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, Time: reg.Clock.Now}
	if len(idevid.Certificate) > 0 {
		cfg.Certificates = []tls.Certificate{idevid}
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true, MaxConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	return &Pledge{Serial: serial, IDevID: idevid, Client: &http.Client{Transport: tr}, reg: reg, clock: reg.Clock}
}

// Request returns the pledge voucher-request RFC 8995 §5.2 describes: a
// fresh 16-byte nonce, proximity, the pledge's serial, created-on now and
// the registrar's certificate as proximity-registrar-cert.
func (p *Pledge) Request(t testing.TB) *voucher.Request {
	t.Helper()
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	return &voucher.Request{
		Fields: voucher.Fields{
			CreatedOn:    p.clock.Now().UTC().Truncate(time.Second),
			Assertion:    voucher.AssertionProximity,
			SerialNumber: p.Serial,
			Nonce:        nonce,
		},
		ProximityRegistrarCert: p.reg.RA.Cert.Raw,
	}
}

// Sign encodes req as JSON and signs it with the pledge's IDevID.
func (p *Pledge) Sign(t testing.TB, req *voucher.Request) []byte {
	t.Helper()
	payload, err := req.MarshalJSON()
	if err != nil {
		t.Fatalf("registrartest: encode voucher-request: %v", err)
	}
	return SignWith(t, payload, p.IDevID.PrivateKey.(crypto.Signer), p.IDevID.Leaf)
}

// SignWith signs payload as a CMS voucher artifact with key and cert.
func SignWith(t testing.TB, payload []byte, key crypto.Signer, cert *x509.Certificate, opts ...voucher.CMSOptions) []byte {
	t.Helper()
	var o voucher.CMSOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	signed, err := voucher.SignCMS(payload, key, cert, nil, o)
	if err != nil {
		t.Fatalf("registrartest: sign: %v", err)
	}
	return signed
}

// Post sends body to the registrar path with the content type and returns
// the response with its body read. A transport error (such as a TLS alert)
// is returned, not fatal.
func (p *Pledge) Post(ctx context.Context, path, contentType string, body []byte, header ...string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.reg.URL+path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := p.Client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// RequestVoucher posts a signed voucher-request to requestvoucher.
func (p *Pledge) RequestVoucher(ctx context.Context, signed []byte) (*http.Response, []byte, error) {
	return p.Post(ctx, registrar.PathRequestVoucher, registrar.MediaTypeVoucherCMS, signed)
}

// Get sends a GET to the registrar path and returns the response with its
// body read.
func (p *Pledge) Get(ctx context.Context, path string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.reg.URL+path, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := p.Client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// EST posts a DER CSR, base64-encoded (RFC 8951), to the EST operation op
// (est.OpSimpleEnroll, est.OpSimpleReenroll…) and, on 200, parses the
// certs-only response into its first certificate.
func (p *Pledge) EST(ctx context.Context, op string, csrDER []byte) (*x509.Certificate, *http.Response, []byte, error) {
	body := est.EncodeBase64(csrDER)
	resp, b, err := p.Post(ctx, est.PathPrefix+"/"+op, est.MediaPKCS10, body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, resp, b, err
	}
	certs, err := ParseCertsOnly(b)
	if err != nil || len(certs) == 0 {
		return nil, resp, b, fmt.Errorf("certs-only response: %w (%d certificates)", err, len(certs))
	}
	return certs[0], resp, b, nil
}

// ParseCertsOnly decodes a base64 certs-only PKCS#7 EST response with the
// est package's codec (est.DecodeBase64Body, est.ParseCertsOnly).
func ParseCertsOnly(body []byte) ([]*x509.Certificate, error) {
	der, err := est.DecodeBase64Body(body)
	if err != nil {
		return nil, err
	}
	return est.ParseCertsOnly(der)
}

// NewCSR returns a DER PKCS#10 request signed by key with the subject the
// default LDevID profile derives for serial (CN and serialNumber), edited
// by edit when given.
func NewCSR(t testing.TB, key crypto.Signer, serial string, edit ...func(*x509.CertificateRequest)) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: serial, SerialNumber: serial}}
	for _, e := range edit {
		e(tmpl)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("registrartest: create csr: %v", err)
	}
	return der
}

// LDevIDPledge returns a client for reg presenting cert (an LDevID) with
// key.
func LDevIDPledge(t testing.TB, reg *Registrar, serial string, cert *x509.Certificate, key crypto.Signer) *Pledge {
	t.Helper()
	return NewPledge(t, reg, serial, tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert})
}
