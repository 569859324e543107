package est_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jmhodges/clock"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/internal/problem"
	"github.com/gatehouse-pki/gatehouse/internal/web"
	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
)

// testCA is a pki-backed est.CA: it issues LDevIDs with a real pki.Issuer
// for the serial of the caller's client certificate (or the Basic user),
// and counts the calls that reach it.
type testCA struct {
	ca    *pkitest.CA
	iss   *pki.Issuer
	calls atomic.Int64
	// fail, if set, is returned by every issuing call.
	fail error
}

var _ est.CA = (*testCA)(nil)

func newTestCA(t testing.TB, clk clock.Clock) *testCA {
	t.Helper()
	ca := pkitest.NewCA(t, pkitest.Name("EST Test Domain CA"), pkitest.Clock(clk), pkitest.Intermediate())
	return &testCA{ca: ca, iss: ca.NewIssuer(t, pki.IssuerConfig{}, nil)}
}

func (c *testCA) CACerts(context.Context, *est.Request) ([]*x509.Certificate, error) {
	c.calls.Add(1)
	return c.ca.Chain, nil
}

func (c *testCA) CSRAttrs(_ context.Context, r *est.Request) (*est.CSRAttrs, error) {
	c.calls.Add(1)
	dev, err := c.device(r)
	if err != nil {
		return nil, err
	}
	return &est.CSRAttrs{
		OIDs:     []asn1.ObjectIdentifier{{1, 2, 840, 10045, 4, 3, 2}},
		KeyTypes: []est.KeyType{{Algorithm: est.OIDPublicKeyEC, Curve: est.OIDCurveP256}},
		Template: &est.Template{
			Subject: [][]est.NameAttribute{{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: dev.Serial, HasValue: true}}, {{Type: asn1.ObjectIdentifier{2, 5, 4, 5}, Value: dev.Serial, HasValue: true}}},
			KeyType: &est.KeyType{Algorithm: est.OIDPublicKeyEC, Curve: est.OIDCurveP256},
		},
	}, nil
}

func (c *testCA) device(r *est.Request) (*pki.DeviceIdentity, error) {
	if r.BasicUser != "" {
		return &pki.DeviceIdentity{Serial: r.BasicUser}, nil
	}
	if len(r.PeerChain) == 0 {
		return nil, problem.New(problem.Unauthorized, nil, "no client")
	}
	serial, err := pki.SerialNumber(r.PeerChain[0], "CN")
	if err != nil {
		return nil, problem.New(problem.Forbidden, err, "no serial")
	}
	return &pki.DeviceIdentity{Serial: serial}, nil
}

func (c *testCA) issue(ctx context.Context, r *est.Request, pub crypto.PublicKey) (*x509.Certificate, error) {
	c.calls.Add(1)
	if c.fail != nil {
		return nil, c.fail
	}
	dev, err := c.device(r)
	if err != nil {
		return nil, err
	}
	p, err := c.iss.Prepare(pki.IssueRequest{PublicKey: pub, Device: dev})
	if err != nil {
		return nil, problem.New(problem.BadRequest, err, "refused")
	}
	return c.iss.Sign(ctx, p)
}

func (c *testCA) Enroll(ctx context.Context, r *est.Request, csr *x509.CertificateRequest) (*x509.Certificate, error) {
	return c.issue(ctx, r, csr.PublicKey)
}

func (c *testCA) Reenroll(ctx context.Context, r *est.Request, csr *x509.CertificateRequest) (*x509.Certificate, error) {
	return c.issue(ctx, r, csr.PublicKey)
}

func (c *testCA) ServerKeyGen(ctx context.Context, r *est.Request, _ *x509.CertificateRequest) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	cert, err := c.issue(ctx, r, key.Public())
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// env is one EST server over real TLS on loopback with its PKI.
type env struct {
	clk     clock.FakeClock
	ca      *testCA
	mfg     *pkitest.CA
	srv     *est.Server
	ts      *httptest.Server
	reg     *prometheus.Registry
	tlsCert *pkitest.Leaf
}

type envOpt func(*est.Config, *tls.Config)

func withConfig(f func(*est.Config)) envOpt { return func(c *est.Config, _ *tls.Config) { f(c) } }

func newEnv(t testing.TB, opts ...envOpt) *env {
	t.Helper()
	clk := pkitest.NewClock()
	e := &env{clk: clk, ca: newTestCA(t, clk), mfg: pkitest.NewCA(t, pkitest.Name("EST Test Manufacturer"), pkitest.Clock(clk)), reg: prometheus.NewRegistry()}
	cfg := est.Config{Labels: []string{"lab"}}
	tcfg := web.ServerTLSConfig()
	for _, o := range opts {
		o(&cfg, tcfg)
	}
	srv, err := est.NewServer(cfg, est.Deps{Logger: slog.New(slog.DiscardHandler), Clock: clk, Metrics: e.reg, CA: e.ca})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.tlsCert = pkitest.NewServerCert(t, e.ca.ca)
	pool := x509.NewCertPool()
	pool.AddCert(e.mfg.Root())
	pool.AddCert(e.ca.ca.Root())
	if len(tcfg.Certificates) == 0 {
		tcfg.Certificates = []tls.Certificate{e.tlsCert.TLS}
	}
	tcfg.ClientAuth = tls.VerifyClientCertIfGiven
	tcfg.ClientCAs = pool
	tcfg.Time = clk.Now
	e.ts = httptest.NewUnstartedServer(srv.Handler())
	e.ts.TLS = tcfg
	e.ts.StartTLS()
	t.Cleanup(e.ts.Close)
	return e
}

// idevid returns a fresh IDevID for serial.
func (e *env) idevid(t testing.TB, serial string) *pkitest.Leaf {
	t.Helper()
	return pkitest.NewIDevID(t, e.mfg, serial, "")
}

// estConn is one client TLS connection to the server; the HTTP client uses
// exactly that connection, so the test knows its channel binding.
type estConn struct {
	conn   *tls.Conn
	client *http.Client
	base   string
}

func (e *env) dial(t testing.TB, cert *tls.Certificate, maxVersion uint16) *estConn {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.ca.Root())
	cfg := &tls.Config{RootCAs: roots, Time: e.clk.Now, MinVersion: tls.VersionTLS12, MaxVersion: maxVersion, ServerName: "localhost"}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(t.Context(), "tcp", e.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc := c.(*tls.Conn)
	var used atomic.Bool
	tr := &http.Transport{DialTLSContext: func(context.Context, string, string) (net.Conn, error) {
		if used.Swap(true) {
			return nil, errors.New("test connection already used")
		}
		return tc, nil
	}}
	t.Cleanup(func() { tr.CloseIdleConnections(); tc.Close() })
	return &estConn{conn: tc, client: &http.Client{Transport: tr}, base: e.ts.URL}
}

func (c *estConn) binding(t testing.TB) string {
	t.Helper()
	cs := c.conn.ConnectionState()
	b, _, err := est.ChannelBinding(&cs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (c *estConn) do(t testing.TB, method, path, ctype string, body []byte, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, c.base+path, strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

var (
	oidECDSAWithSHA1 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}
	oidMD5WithRSA    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 4}
)

// csrSpec describes a test CSR. Without sigOID it is built by
// est.CreateCSR, the client side of this package; with sigOID (SHA-1 or
// MD5 signatures, which CreateCSR must never write) it is built by hand,
// so tests control every byte.
type csrSpec struct {
	key        crypto.Signer
	rawSubject []byte
	subject    pkix.Name
	challenge  string // challengePassword, "" for none
	sigOID     asn1.ObjectIdentifier
	hash       crypto.Hash
	extensions []pkix.Extension
}

func buildCSR(t testing.TB, s csrSpec) []byte {
	t.Helper()
	if s.key == nil {
		s.key = newKey(t)
	}
	subj := s.rawSubject
	if subj == nil {
		var err error
		if subj, err = asn1.Marshal(s.subject.ToRDNSequence()); err != nil {
			t.Fatal(err)
		}
	}
	if s.sigOID == nil {
		req := est.CSRRequest{RawSubject: subj, ChallengePassword: s.challenge}
		for _, e := range s.extensions {
			req.Extensions = append(req.Extensions, est.Extension{ID: e.Id, Critical: e.Critical, Value: e.Value})
		}
		csr, err := est.CreateCSR(req, s.key)
		if err != nil {
			t.Fatal(err)
		}
		return csr.Raw
	}
	if s.challenge != "" || len(s.extensions) > 0 {
		t.Fatal("buildCSR: a hand-built CSR (sigOID set) carries no attributes")
	}
	spki, err := x509.MarshalPKIXPublicKey(s.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	_, isRSA := s.key.Public().(interface{ Size() int })
	return pkitest.HandCSR(t, subj, spki, s.sigOID, isRSA, func(cri []byte) []byte {
		h := s.hash.New()
		h.Write(cri)
		sig, err := s.key.Sign(rand.Reader, h.Sum(nil), s.hash)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	})
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func b64(der []byte) []byte { return []byte(base64.StdEncoding.EncodeToString(der)) }

type tlsState = tls.ConnectionState

var x509ParseCertificateRequest = x509.ParseCertificateRequest
