package coap_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmhodges/clock"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-pki/gatehouse/coap"
	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/masa/masatest"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/pledge"
	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
	"github.com/gatehouse-pki/gatehouse/store"
)

type env struct {
	fc   clock.FakeClock
	mfg  *pkitest.CA
	masa *masatest.Server
	reg  *registrartest.Registrar
	addr string
	// metrics is the listener's registry.
	metrics *prometheus.Registry
}

// newEnv starts a real MASA, a real registrar (HTTPS) and the CoAPS
// listener on the same registrar service, all on loopback.
func newEnv(t testing.TB, edit ...func(*registrartest.Options)) *env {
	t.Helper()
	return newEnvWith(t, coap.Config{}, nil, edit...)
}

// newEnvWith is newEnv with a listener configuration and, when wrap is
// set, the listener's collaborators wrapped (failure injection, counting).
func newEnvWith(t testing.TB, cfg coap.Config, wrap func(*coap.Deps), edit ...func(*registrartest.Options)) *env {
	t.Helper()
	fc := pkitest.NewClock()
	mfg := pkitest.NewCA(t, pkitest.Name("CoAP Test Manufacturer"), pkitest.Clock(fc))
	m := masatest.Start(t, masatest.Options{Clock: fc, Manufacturer: mfg})
	opts := registrartest.Options{Clock: fc, Manufacturer: mfg, MASA: m}
	for _, e := range edit {
		e(&opts)
	}
	reg := registrartest.Start(t, opts)
	metrics := prometheus.NewRegistry()
	deps := coap.Deps{
		Logger:    slog.New(slog.DiscardHandler),
		Clock:     fc,
		Metrics:   metrics,
		Registrar: reg.Service,
		EST:       reg.EST,
	}
	if wrap != nil {
		wrap(&deps)
	}
	srv, err := coap.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	l, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return &env{fc: fc, mfg: mfg, masa: m, reg: reg, addr: l.Addr().String(), metrics: metrics}
}

// onboarded returns an IDevID whose voucher exchange succeeded over HTTPS.
func (e *env) onboarded(t testing.TB, serial string) *pkitest.Leaf {
	t.Helper()
	id := pkitest.NewIDevID(t, e.mfg, serial, e.masa.Authority)
	p := registrartest.NewPledge(t, e.reg, serial, id.TLS)
	resp, body, err := p.RequestVoucher(t.Context(), p.Sign(t, p.Request(t)))
	if err != nil {
		t.Fatalf("voucher: %v", err)
	}
	_ = resp.Body.Close() // read and closed by registrartest already
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("voucher: %d %s", resp.StatusCode, body)
	}
	return id
}

// verifyDomain checks the registrar's DTLS chain against the domain CA at
// the fake time.
func (e *env) verifyDomain(chain []*x509.Certificate) error {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: e.reg.DomainCA.Pool(), Intermediates: inter, CurrentTime: e.fc.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

func (e *env) dial(t testing.TB, id pkitest.Leaf) *pledge.CoAPSession {
	t.Helper()
	s, err := pledge.DialCoAPS(t.Context(), e.addr, id.TLS, e.verifyDomain)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestServer_EnrollOverDTLS: crts, sen with the IDevID, then sren with the
// LDevID on a new session; every certificate chains to the domain CA.
func TestServer_EnrollOverDTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.onboarded(t, "SN-COAP-1")
	s := e.dial(t, *id)

	cas, err := s.CACerts(t.Context())
	if err != nil {
		t.Fatalf("crts: %v", err)
	}
	if len(cas) != len(e.reg.DomainCA.Chain) || !cas[0].Equal(e.reg.DomainCA.Chain[0]) {
		t.Fatalf("crts = %d certificates, want the domain chain", len(cas))
	}
	key := pkitest.NewKey(t)
	cert, err := s.Enroll(t.Context(), registrartest.NewCSR(t, key, "SN-COAP-1"))
	if err != nil {
		t.Fatalf("sen: %v", err)
	}
	opts := x509.VerifyOptions{Roots: e.reg.DomainCA.Pool(), CurrentTime: e.fc.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := cert.Verify(opts); err != nil {
		t.Fatalf("LDevID: %v", err)
	}
	ld := pkitest.Leaf{Cert: cert, Key: key}
	ld.TLS.Certificate, ld.TLS.PrivateKey, ld.TLS.Leaf = [][]byte{cert.Raw}, key, cert
	s2 := e.dial(t, ld)
	key2 := pkitest.NewKey(t)
	cert2, err := s2.Reenroll(t.Context(), registrartest.NewCSR(t, key2, "SN-COAP-1"))
	if err != nil {
		t.Fatalf("sren: %v", err)
	}
	if cert2.SerialNumber.Cmp(cert.SerialNumber) == 0 {
		t.Fatal("sren returned the same serial")
	}
	if _, err := cert2.Verify(opts); err != nil {
		t.Fatalf("renewed LDevID: %v", err)
	}

	// The pledge library's Reenroll over coaps:// renews the renewed one.
	ld2 := tls.Certificate{Certificate: [][]byte{cert2.Raw}, PrivateKey: key2, Leaf: cert2}
	res, err := pledge.Reenroll(t.Context(), pledge.ReenrollConfig{
		Registrar: &url.URL{Scheme: "coaps", Host: e.addr},
		LDevID:    ld2,
		DomainCAs: []*x509.Certificate{e.reg.DomainCA.Root()},
		Clock:     e.fc,
	})
	if err != nil {
		t.Fatalf("pledge.Reenroll over coaps: %v", err)
	}
	if !bytes.Equal(res.LDevID.RawSubject, cert2.RawSubject) || res.LDevID.SerialNumber.Cmp(cert2.SerialNumber) == 0 {
		t.Fatal("pledge.Reenroll over coaps: not a renewal of the same subject")
	}
}

// TestServer_EnrollBeforeVoucher: an IDevID without a voucher is refused
// 4.03 (the HTTPS rule), and nothing is issued.
func TestServer_EnrollBeforeVoucher(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := pkitest.NewIDevID(t, e.mfg, "SN-COAP-NV", e.masa.Authority)
	s := e.dial(t, *id)
	before := e.reg.StateDigest(t)
	_, err := s.Enroll(t.Context(), registrartest.NewCSR(t, pkitest.NewKey(t), "SN-COAP-NV"))
	var ce *pledge.CoAPError
	if !errors.As(err, &ce) || ce.Code != codes.Forbidden {
		t.Fatalf("sen before voucher = %v, want 4.03", err)
	}
	if after := e.reg.StateDigest(t); after != before {
		t.Fatal("a refused enrolment changed the registrar's state")
	}
}

// TestServer_UnknownClient: a certificate of no configured manufacturer
// ends the DTLS handshake.
func TestServer_UnknownClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other := pkitest.NewCA(t, pkitest.Name("Other Manufacturer"), pkitest.Clock(e.fc))
	id := pkitest.NewIDevID(t, other, "SN-OTHER", e.masa.Authority)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	s, err := pledge.DialCoAPS(ctx, e.addr, id.TLS, e.verifyDomain)
	if err == nil {
		_ = s.Close()
		t.Fatal("handshake with an unknown manufacturer's IDevID succeeded")
	}
	// Refused by the server, not lost to a timeout or a server that is not
	// there: the deadline has not passed, and a known pledge gets in.
	if ctx.Err() != nil {
		t.Fatalf("the handshake ran into the deadline instead of being refused: %v", err)
	}
	known := pkitest.NewIDevID(t, e.mfg, "SN-KNOWN", e.masa.Authority)
	if _, err := e.dial(t, *known).CACerts(t.Context()); err != nil {
		t.Fatalf("a known pledge on the same server: %v", err)
	}
}

// TestServer_RateLimited: reliability G06 over CoAP: past the
// per-certificate bucket, 5.03 with Max-Age; Block2 continuations and
// Block1 blocks spend nothing.
func TestServer_RateLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *registrartest.Options) {
		o.Config = func(c *registrar.Config) { c.PerIDevID = registrar.RateLimit{Rate: 0.01, Burst: 2} }
	})
	id := pkitest.NewIDevID(t, e.mfg, "SN-COAP-RL", e.masa.Authority)
	s := e.dial(t, *id)
	for i := range 2 {
		if _, err := s.CACerts(t.Context()); err != nil {
			t.Fatalf("crts %d: %v", i, err)
		}
	}
	_, err := s.CACerts(t.Context())
	var ce *pledge.CoAPError
	if !errors.As(err, &ce) || ce.Code != codes.ServiceUnavailable || ce.MaxAge < time.Second {
		t.Fatalf("third crts = %v, want 5.03 with Max-Age", err)
	}
}

// TestServer_SessionCap: reliability F09: with MaxSessions open, a new
// handshake is refused while the open sessions keep working.
func TestServer_SessionCap(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, coap.Config{MaxSessions: 2}, nil)
	id := pkitest.NewIDevID(t, e.mfg, "SN-COAP-CAP", e.masa.Authority)
	s1 := e.dial(t, *id)
	s2 := e.dial(t, *id)
	// The refusal is an alert, not silence: the dial ends well before its
	// deadline.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	s3, err := pledge.DialCoAPS(ctx, e.addr, id.TLS, e.verifyDomain)
	if err == nil {
		_ = s3.Close()
		t.Fatal("a third session was accepted over MaxSessions 2")
	}
	if ctx.Err() != nil || !strings.Contains(err.Error(), "InternalError") {
		t.Fatalf("third session: %v (context: %v); want the internal_error alert before the deadline", err, ctx.Err())
	}
	if v := metric(t, e.metrics, "brski_coap_sessions_refused_total", nil); v != 1 {
		t.Fatalf("refused = %v, want 1", v)
	}
	if _, err := s2.CACerts(t.Context()); err != nil {
		t.Fatalf("an open session stopped working: %v", err)
	}
	if _, err := s1.CACerts(t.Context()); err != nil {
		t.Fatalf("an open session stopped working: %v", err)
	}
}

// slowEST delays enrolment (failure injection: a slow back end).
type slowEST struct {
	coap.EST
	delay time.Duration
}

func (s slowEST) EnrollDER(ctx context.Context, req *est.Request, der []byte) (*x509.Certificate, error) {
	time.Sleep(s.delay)
	return s.EST.EnrollDER(ctx, req, der)
}

// TestServer_SeparateResponse: a back end slower than PiggybackWait gets
// an empty ACK at once and the answer as a separate CON response with the
// request's token (RFC 7252 §5.2.2, RFC 9148 §5.7).
func TestServer_SeparateResponse(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, coap.Config{PiggybackWait: 50 * time.Millisecond}, func(d *coap.Deps) { d.EST = slowEST{d.EST, 300 * time.Millisecond} })
	id := e.onboarded(t, "SN-COAP-SEP")
	r := e.raw(t, id.TLS)
	key := pkitest.NewKey(t)
	tk := tok()
	r.mid++
	ack := r.send(msg(post, r.mid, tk, append(path("/.well-known/est/sen"), opt{12, u(286)}, opt{17, u(287)}), registrartest.NewCSR(t, key, "SN-COAP-SEP")))
	if ack.typ != 2 || ack.code != 0 || ack.mid != r.mid || len(ack.token) != 0 {
		t.Fatalf("first reply: type %d code %d.%02d mid %d, want an empty ACK for mid %d", ack.typ, ack.code>>5, ack.code&31, ack.mid, r.mid)
	}
	sep := r.recv()
	if sep.typ != 0 || sep.code != code(2, 4) || string(sep.token) != string(tk) {
		t.Fatalf("separate response: type %d code %d.%02d token %x, want CON 2.04 with token %x", sep.typ, sep.code>>5, sep.code&31, sep.token, tk)
	}
	// Acknowledge it (an empty ACK), so the server stops retransmitting.
	if _, err := r.c.Write([]byte{0x60, 0, byte(sep.mid >> 8), byte(sep.mid)}); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(sep.payload)
	if err != nil || !key.PublicKey.Equal(cert.PublicKey) {
		t.Fatalf("separate response payload: %v", err)
	}
}

// TestServer_ConstrainedOnboarding: the whole cBRSKI flow over loopback
// DTLS with the pledge library: COSE voucher-request on /rv (voucher from
// the real MASA, pinned domain, registrar chain checked against the pin),
// voucher_status on /vs (CBOR), /crts, /att, /sen, and enrollstatus on /es
// over a new session with the LDevID; the registrar records both reports.
func TestServer_ConstrainedOnboarding(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := pkitest.NewIDevID(t, e.mfg, "SN-COAP-CB", e.masa.Authority)
	c, err := pledge.New(pledge.Config{
		Registrar:   &url.URL{Scheme: "coaps", Host: e.addr},
		IDevID:      id.TLS,
		MASAAnchors: []*x509.Certificate{e.masa.SigningChain[0]},
		Clock:       e.fc,
		MaxWait:     time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	res, err := c.Enroll(t.Context())
	if err != nil {
		t.Fatalf("enroll over coaps: %v", err)
	}
	if res.Voucher.VoucherStatusErr != nil || res.EnrollStatusErr != nil {
		t.Fatalf("telemetry: voucher_status %v, enrollstatus %v", res.Voucher.VoucherStatusErr, res.EnrollStatusErr)
	}
	if !res.Voucher.PinnedDomainCert.Equal(e.reg.DomainCA.Root()) {
		t.Fatalf("voucher pins %q, want the domain CA", res.Voucher.PinnedDomainCert.Subject)
	}
	opts := x509.VerifyOptions{Roots: e.reg.DomainCA.Pool(), CurrentTime: e.fc.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := res.LDevID.Verify(opts); err != nil {
		t.Fatalf("LDevID: %v", err)
	}
	tel, err := e.reg.DB().TelemetryFor(t.Context(), registrar.DeviceKeyFor(id.Cert, "SN-COAP-CB"))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[store.TelemetryKind]int{}
	for _, r := range tel {
		kinds[r.Kind]++
	}
	if kinds[store.TelemetryVoucherStatus] != 1 || kinds[store.TelemetryEnrollStatus] != 1 {
		t.Fatalf("telemetry = %v, want one voucher_status and one enrollstatus", kinds)
	}
}

// countingRegistrar counts chain verifications.
type countingRegistrar struct {
	coap.Registrar
	n atomic.Int32
}

func (c *countingRegistrar) ClassifyPeer(ctx context.Context, certs []*x509.Certificate) (*registrar.Peer, error) {
	c.n.Add(1)
	return c.Registrar.ClassifyPeer(ctx, certs)
}

// TestServer_ChainVerifiedOncePerSession: the handshake's verification of
// the client chain is the session's: the session's start does not call
// ClassifyPeer again, and neither do its requests. (A request's own
// revocation re-read is inside the registrar and not counted here.)
func TestServer_ChainVerifiedOncePerSession(t *testing.T) {
	t.Parallel()
	var counter *countingRegistrar
	e := newEnvWith(t, coap.Config{}, func(d *coap.Deps) {
		counter = &countingRegistrar{Registrar: d.Registrar}
		d.Registrar = counter
	})
	id := pkitest.NewIDevID(t, e.mfg, "SN-COAP-ONCE", e.masa.Authority)
	for i := range 3 {
		s := e.dial(t, *id)
		for range 2 {
			if _, err := s.CACerts(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		_ = s.Close()
		if n := counter.n.Load(); n != int32(i+1) {
			t.Fatalf("after %d sessions the chain was verified %d times", i+1, n)
		}
	}
}

// throttleAdvancer moves the fake clock on by the wait of each refusal
// its registrar's rate limiter makes, so the refused client's next try
// finds a token; it counts the refusals.
type throttleAdvancer struct {
	coap.Registrar
	clk clock.FakeClock
	n   atomic.Int32
}

func (a *throttleAdvancer) Throttle(remote string, leaf *x509.Certificate) time.Duration {
	wait := a.Registrar.Throttle(remote, leaf)
	if wait > 0 {
		a.n.Add(1)
		a.clk.Add(wait)
	}
	return wait
}

// TestServer_ConstrainedOnboardingRateLimited: with a per-certificate
// limit of one request at a time, every request of a cBRSKI onboarding
// after the first is refused once with 5.03 + Max-Age; the pledge
// library waits each out and the onboarding completes, its
// voucher_status recorded (a 5.03 on /vs is a refusal to wait out, not
// a 202-like success).
func TestServer_ConstrainedOnboardingRateLimited(t *testing.T) {
	t.Parallel()
	var adv *throttleAdvancer
	e := newEnvWith(t, coap.Config{}, func(d *coap.Deps) {
		adv = &throttleAdvancer{Registrar: d.Registrar, clk: d.Clock.(clock.FakeClock)}
		d.Registrar = adv
	}, func(o *registrartest.Options) {
		o.Config = func(c *registrar.Config) { c.PerIDevID = registrar.RateLimit{Rate: 1, Burst: 1} }
	})
	id := pkitest.NewIDevID(t, e.mfg, "SN-COAP-RLO", e.masa.Authority)
	c, err := pledge.New(pledge.Config{
		Registrar:    &url.URL{Scheme: "coaps", Host: e.addr},
		IDevID:       id.TLS,
		MASAAnchors:  []*x509.Certificate{e.masa.SigningChain[0]},
		Clock:        e.fc,
		MaxRetryWait: time.Millisecond,
		MaxWait:      time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	res, err := c.Enroll(t.Context())
	if err != nil {
		t.Fatalf("enroll over coaps under a rate limit: %v", err)
	}
	if res.Voucher.VoucherStatusErr != nil {
		t.Fatalf("voucher_status: %v", res.Voucher.VoucherStatusErr)
	}
	// /vs, /crts, /att and /sen each refused once.
	if n := adv.n.Load(); n < 4 {
		t.Fatalf("%d refusals, want one for each request after the first", n)
	}
	tel, err := e.reg.DB().TelemetryFor(t.Context(), registrar.DeviceKeyFor(id.Cert, "SN-COAP-RLO"))
	if err != nil {
		t.Fatal(err)
	}
	var vs int
	for _, r := range tel {
		if r.Kind == store.TelemetryVoucherStatus {
			vs++
		}
	}
	if vs != 1 {
		t.Fatalf("%d voucher_status records, want 1", vs)
	}
}

// TestServer_PledgeRedialsAfterIdleClose: the registrar closes an idle
// session; the pledge library's next request fails to reach it, and the
// one after that opens a new session instead of reusing the dead one.
func TestServer_PledgeRedialsAfterIdleClose(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, coap.Config{IdleTimeout: 200 * time.Millisecond}, nil)
	id := pkitest.NewIDevID(t, e.mfg, "SN-COAP-IDLE", e.masa.Authority)
	c, err := pledge.New(pledge.Config{
		Registrar:   &url.URL{Scheme: "coaps", Host: e.addr},
		IDevID:      id.TLS,
		MASAAnchors: []*x509.Certificate{e.masa.SigningChain[0]},
		Clock:       e.fc,
		MaxWait:     time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := c.RequestVoucher(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Past the idle timeout: the session is gone on the registrar's side.
	deadline := time.Now().Add(5 * time.Second)
	for metric(t, e.metrics, "brski_coap_sessions", nil) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the idle session was not closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var last error
	for i := range 3 {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		last = c.VoucherStatus(ctx, true, "")
		cancel()
		if last == nil {
			if i == 0 {
				t.Log("the first request after the close already redialled")
			}
			return
		}
		if !errors.Is(last, pledge.ErrConnect) {
			t.Fatalf("request %d: %v, want a connection error or success", i, last)
		}
	}
	t.Fatalf("still failing after the session was closed: %v", last)
}
