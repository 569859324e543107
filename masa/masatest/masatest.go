// Package masatest runs a real MASA (masa.Service, its own bbolt store and
// audit trail) over TLS on loopback for tests, and an adversarial stub of it
// that returns the chosen bad answers of reliability table B. It is imported
// only from _test.go files (depguard enforces it).
//
// Counters are read from the real store and metrics registry, never kept by
// a fake: requests received, vouchers signed, and audit-log entries per
// (serial, nonce) (reliability §2.0, "MASA stub counters").
package masatest

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmhodges/clock"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/masa"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/store"
)

// Options configure Start and StartAdversarial.
type Options struct {
	// Clock is the MASA's clock. Default: a fake clock at pkitest.TestTime.
	Clock clock.Clock
	// Manufacturer is the IDevID CA whose pledges the MASA serves.
	// Required.
	Manufacturer *pkitest.CA
	// Ownership is the MASA's policy. Default masa.OwnershipFirstClaim (a
	// lab MASA: unlike masa.Config, whose default is the registry), so tests
	// need not register devices.
	Ownership masa.Ownership
	// NoncelessValidity and MaxClockSkew are passed to masa.Config
	// (zero: its defaults).
	NoncelessValidity time.Duration
	MaxClockSkew      time.Duration
	// Logger receives the MASA's request log. Default: discarded.
	Logger *slog.Logger
	// Delay is how long ModeSlow waits before answering (default 30 s); the
	// wait ends early when the request's context ends.
	Delay time.Duration
	// Observe, when set, sees every request before the MASA does: its
	// path, Content-Type and body (at most masa.MaxRequestBytes+1 bytes),
	// so that a test can inspect what a registrar sent.
	Observe func(path, contentType string, body []byte)
}

// Server is a running MASA.
type Server struct {
	// URL is the server's base URL, https://127.0.0.1:port.
	URL string
	// Authority is host:port, the form an IDevID's MASA URL extension
	// carries (pkitest.NewIDevID(t, mfg, serial, srv.Authority)).
	Authority string
	// SigningCA issued the voucher-signing certificate; its root is the
	// anchor pledges and registrars verify vouchers with.
	SigningCA *pkitest.CA
	// SigningChain is the voucher-signing certificate first, then its
	// issuing CA certificates (vouchers embed it).
	SigningChain []*x509.Certificate
	// SigningKey is the voucher-signing key.
	SigningKey crypto.Signer
	// TLSRoots trusts the server's TLS certificate.
	TLSRoots *x509.CertPool
	// Store is the MASA's store.
	Store *store.DB
	// Service is the MASA behind the server.
	Service *masa.Service
	// Metrics is the MASA's metrics registry.
	Metrics *prometheus.Registry
	// HTTP is the underlying test server.
	HTTP *httptest.Server

	clock    clock.Clock
	requests atomic.Int64
	observe  func(path, contentType string, body []byte)
}

// Anchor returns the certificate vouchers chain to (the signing CA's root),
// for a registrar's MASA anchors or a pledge's manufacturer trust anchor.
func (s *Server) Anchor() *x509.Certificate { return s.SigningCA.Root() }

// Start runs a real masa.Service over TLS on loopback until the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := build(t, opts)
	s.serve(t, s.Service.Handler())
	return s
}

// build creates the PKI, store and service, without a listener.
func build(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Manufacturer == nil {
		t.Fatal("masatest: Options.Manufacturer is required")
	}
	clk := opts.Clock
	if clk == nil {
		clk = pkitest.NewClock()
	}
	if opts.Ownership == "" {
		opts.Ownership = masa.OwnershipFirstClaim
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	signingCA := pkitest.NewCA(t, pkitest.Name("Gatehouse Test MASA CA"), pkitest.Clock(clk))
	key := pkitest.NewKey(t)
	leaf := signingCA.Issue(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "Gatehouse Test MASA", Organization: []string{"Gatehouse Test"}},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}, key.Public())
	chain := append([]*x509.Certificate{leaf}, signingCA.Chain[:len(signingCA.Chain)-1]...)

	db, err := store.Open(filepath.Join(t.TempDir(), "masa.db"), store.Options{Clock: clk})
	if err != nil {
		t.Fatalf("masatest: open store: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	reg := prometheus.NewRegistry()
	svc, err := masa.New(masa.Config{
		Ownership:         opts.Ownership,
		NoncelessValidity: opts.NoncelessValidity,
		MaxClockSkew:      opts.MaxClockSkew,
	}, masa.Deps{
		Logger:        logger,
		Clock:         clk,
		Metrics:       reg,
		Store:         db,
		Audit:         audit.NewRecorder(db, nil),
		SigningKey:    key,
		SigningChain:  chain,
		IDevIDAnchors: []*x509.Certificate{opts.Manufacturer.Root()},
	})
	if err != nil {
		t.Fatalf("masatest: new masa: %v", err)
	}
	return &Server{
		SigningCA: signingCA, SigningChain: chain, SigningKey: key,
		Store: db, Service: svc, Metrics: reg, clock: clk, observe: opts.Observe,
	}
}

// serve starts the TLS listener with h, counting requests.
func (s *Server) serve(t testing.TB, h http.Handler) {
	t.Helper()
	tlsCA := pkitest.NewCA(t, pkitest.Name("Gatehouse Test MASA TLS CA"), pkitest.Clock(s.clock))
	serverCert := pkitest.NewServerCert(t, tlsCA)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if s.observe != nil {
			body, err := io.ReadAll(io.LimitReader(r.Body, masa.MaxRequestBytes+1))
			if err != nil {
				return
			}
			s.observe(r.URL.Path, r.Header.Get("Content-Type"), body)
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		h.ServeHTTP(w, r)
	}))
	srv.TLS = s.Service.TLSConfig(serverCert.TLS)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatalf("masatest: %v", err)
	}
	s.URL, s.Authority, s.HTTP, s.TLSRoots = srv.URL, u.Host, srv, tlsCA.Pool()
}

// RegisterDevice registers serial with owner (nil: unowned), failing t on
// error.
func (s *Server) RegisterDevice(t testing.TB, serial string, owner *x509.Certificate) {
	t.Helper()
	if err := s.Service.RegisterDevice(t.Context(), serial, owner); err != nil {
		t.Fatalf("masatest: %v", err)
	}
}

// Client returns an HTTP client that trusts the server and presents cert
// (nil: no client certificate), checking times at the server's clock.
func (s *Server) Client(t testing.TB, cert *tls.Certificate) *http.Client {
	t.Helper()
	return pkitest.TLSClient(t, s.TLSRoots, cert, pkitest.Clock(s.clock))
}

// LogKey identifies audit-log entries: a device and a nonce ("" for
// nonceless entries).
type LogKey struct {
	Serial string
	Nonce  string
}

// Counters are the MASA stub counters of reliability §2.0.
type Counters struct {
	// Requests is the number of HTTP requests received.
	Requests int64
	// VouchersSigned is the number of vouchers signed
	// (brski_masa_vouchers_signed_total).
	VouchersSigned int
	// LogEntries counts audit-log entries per (serial, nonce), from the
	// store.
	LogEntries map[LogKey]int
}

// Counters reads the counters.
func (s *Server) Counters(t testing.TB) Counters {
	t.Helper()
	c := Counters{Requests: s.requests.Load(), LogEntries: map[LogKey]int{}}
	entries, err := s.Store.MASAAuditLogs(t.Context())
	if err != nil {
		t.Fatalf("masatest: read audit logs: %v", err)
	}
	for _, e := range entries {
		c.LogEntries[LogKey{Serial: e.Serial, Nonce: e.Nonce}]++
	}
	families, err := s.Metrics.Gather()
	if err != nil {
		t.Fatalf("masatest: gather metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() != "brski_masa_vouchers_signed_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			c.VouchersSigned += int(m.GetCounter().GetValue())
		}
	}
	return c
}
