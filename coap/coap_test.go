package coap_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/jmhodges/clock"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-pki/gatehouse/coap"
	"github.com/gatehouse-pki/gatehouse/masa/masatest"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/pledge"
	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
)

type env struct {
	fc   clock.FakeClock
	mfg  *pkitest.CA
	masa *masatest.Server
	reg  *registrartest.Registrar
	addr string
}

// newEnv starts a real MASA, a real registrar (HTTPS) and the CoAPS
// listener on the same registrar service, all on loopback.
func newEnv(t *testing.T, edit ...func(*registrartest.Options)) *env {
	t.Helper()
	fc := pkitest.NewClock()
	mfg := pkitest.NewCA(t, pkitest.Name("CoAP Test Manufacturer"), pkitest.Clock(fc))
	m := masatest.Start(t, masatest.Options{Clock: fc, Manufacturer: mfg})
	opts := registrartest.Options{Clock: fc, Manufacturer: mfg, MASA: m}
	for _, e := range edit {
		e(&opts)
	}
	reg := registrartest.Start(t, opts)
	srv, err := coap.New(coap.Config{}, coap.Deps{
		Logger:    slog.New(slog.DiscardHandler),
		Clock:     fc,
		Metrics:   prometheus.NewRegistry(),
		Registrar: reg.Service,
		EST:       reg.EST,
	})
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
	return &env{fc: fc, mfg: mfg, masa: m, reg: reg, addr: l.Addr().String()}
}

// onboarded returns an IDevID whose voucher exchange succeeded over HTTPS.
func (e *env) onboarded(t *testing.T, serial string) *pkitest.Leaf {
	t.Helper()
	id := pkitest.NewIDevID(t, e.mfg, serial, e.masa.Authority)
	p := registrartest.NewPledge(t, e.reg, serial, id.TLS)
	resp, body, err := p.RequestVoucher(t.Context(), p.Sign(t, p.Request(t)))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("voucher: %v %v %s", err, resp, body)
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

func (e *env) dial(t *testing.T, id pkitest.Leaf) *pledge.CoAPSession {
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
	if s, err := pledge.DialCoAPS(ctx, e.addr, id.TLS, e.verifyDomain); err == nil {
		_ = s.Close()
		t.Fatal("handshake with an unknown manufacturer's IDevID succeeded")
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
