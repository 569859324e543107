package registrar_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"net/http"
	"testing"

	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
	"github.com/gatehouse-pki/gatehouse/store"
)

// enrolled runs voucher + simpleenroll for a fresh pledge and returns the
// pledge, its LDevID and the LDevID key.
func (e *env) enrolled(t *testing.T, serial string) (*registrartest.Pledge, *x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	p := e.pledge(t, serial)
	e.onboard(t, p)
	key := pkitest.NewKey(t)
	cert, resp, body, err := p.EST(t.Context(), est.OpSimpleEnroll, registrartest.NewCSR(t, key, serial))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("simpleenroll: %v %v %s", err, resp, body)
	}
	return p, cert, key
}

// TestService_FullOnboarding: voucher → cacerts → csrattrs → simpleenroll
// on the voucher's TLS connection; the LDevID verifies to the domain CA and
// passes full zlint; a new connection with the LDevID re-enrolls (new
// serial) and posts enrollstatus, recorded as matched.
func TestService_FullOnboarding(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.pledge(t, "SN-EST-1")
	e.onboard(t, p)

	resp, body, err := p.Get(t.Context(), est.PathPrefix+"/"+est.OpCACerts)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("cacerts: %v %v", err, resp)
	}
	cas, err := registrartest.ParseCertsOnly(body)
	if err != nil || len(cas) == 0 || !cas[0].Equal(e.dom.Chain[0]) {
		t.Fatalf("cacerts = %d certificates (%v), want the domain CA first", len(cas), err)
	}
	resp, body, err = p.Get(t.Context(), est.PathPrefix+"/"+est.OpCSRAttrs)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("csrattrs: %v %v %s", err, resp, body)
	}
	der, err := est.DecodeBase64Body(body)
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := est.ParseCSRAttrs(der)
	if err != nil || len(attrs.KeyTypes) == 0 {
		t.Fatalf("csrattrs = %+v, %v", attrs, err)
	}

	key := pkitest.NewKey(t)
	csr := registrartest.NewCSR(t, key, "SN-EST-1")
	cert, resp, body, err := p.EST(t.Context(), est.OpSimpleEnroll, csr)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("simpleenroll: %v %v %s", err, resp, body)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: e.dom.Pool(), CurrentTime: e.fc.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("LDevID does not verify to the domain CA: %v", err)
	}
	pkitest.Lint(t, cert)
	// The store holds it byte for byte, and the device is enrolled.
	rec, err := e.reg.DB().Certificate(t.Context(), cert.SerialNumber)
	if err != nil || !bytes.Equal(rec.DER, cert.Raw) {
		t.Fatalf("stored certificate: %v", err)
	}
	dk := registrar.DeviceKeyFor(p.IDevID.Leaf, "SN-EST-1")
	if d, err := e.reg.DB().Device(t.Context(), dk); err != nil || d.Status != store.DeviceEnrolled {
		t.Fatalf("device = %+v, %v", d, err)
	}
	// Idempotency (reliability L8): the identical CSR gets the same
	// certificate back, no new serial.
	again, resp, _, err := p.EST(t.Context(), est.OpSimpleEnroll, csr)
	if err != nil || resp.StatusCode != http.StatusOK || !again.Equal(cert) {
		t.Fatalf("identical simpleenroll: %v %v, same certificate = %v", err, resp, again != nil && again.Equal(cert))
	}

	// Reconnect with the LDevID: re-enroll with a new key, then enrollstatus.
	lp := registrartest.LDevIDPledge(t, e.reg, "SN-EST-1", cert, key)
	key2 := pkitest.NewKey(t)
	renewed, resp, body, err := lp.EST(t.Context(), est.OpSimpleReenroll, registrartest.NewCSR(t, key2, "SN-EST-1"))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("simplereenroll: %v %v %s", err, resp, body)
	}
	if renewed.SerialNumber.Cmp(cert.SerialNumber) == 0 {
		t.Error("re-enrolment reused the serial")
	}
	// Reliability L8: the renewed certificate is superseded, not revoked.
	if old, err := e.reg.DB().Certificate(t.Context(), cert.SerialNumber); err != nil || old.Status != store.CertSuperseded || old.SupersededBy.Cmp(renewed.SerialNumber) != 0 {
		t.Errorf("renewed certificate = %s superseded by %v (%v), want superseded by the new one", old.Status, old.SupersededBy, err)
	}
	pkitest.Lint(t, renewed)
	seq := e.reg.AuditCount(t)
	resp, body, err = lp.Post(t.Context(), registrar.PathEnrollStatus, registrar.MediaTypeJSON, []byte(`{"version":1,"status":true}`))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("enrollstatus: %v %v %s", err, resp, body)
	}
	var found bool
	for _, ev := range e.reg.AuditSince(t, seq) {
		if ev.Type == audit.EnrollStatus && ev.Fields["client_cert"] == "ldevid" && ev.Fields["client_cert_matched"] == "true" {
			found = true
		}
	}
	if !found {
		t.Error("no enroll-status event with the LDevID match")
	}
	certs, err := e.reg.DB().CertificatesFor(t.Context(), dk)
	if err != nil || len(certs) != 2 {
		t.Errorf("certificates for the device = %d (%v), want 2", len(certs), err)
	}
	if open, err := e.reg.DB().OpenIntents(t.Context()); err != nil || len(open) != 0 {
		t.Errorf("open intents = %v (%v)", open, err)
	}
}

// TestService_ReenrollSupersedes (reliability L8 "documented supersede"):
// each re-enrolment leaves one certificate of the device issued and marks
// the others superseded, with a cert-superseded event; a superseded LDevID
// is not revoked, so a device whose renewal response was lost re-enrols
// with it again, superseding the certificate it never received.
func TestService_ReenrollSupersedes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p, a, keyA := e.enrolled(t, "SN-SUP-1")
	dk := registrar.DeviceKeyFor(p.IDevID.Leaf, "SN-SUP-1")
	reenroll := func() *x509.Certificate {
		t.Helper()
		lp := registrartest.LDevIDPledge(t, e.reg, "SN-SUP-1", a, keyA)
		c, resp, body, err := lp.EST(t.Context(), est.OpSimpleReenroll, registrartest.NewCSR(t, pkitest.NewKey(t), "SN-SUP-1"))
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("simplereenroll: %v %v %s", err, resp, body)
		}
		return c
	}
	statuses := func() map[string]store.Certificate {
		t.Helper()
		certs, err := e.reg.DB().CertificatesFor(t.Context(), dk)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]store.Certificate{}
		for _, c := range certs {
			m[c.Serial.Text(16)] = c
		}
		return m
	}
	seq := e.reg.AuditCount(t)
	b := reenroll()
	// The response to b is "lost": the device renews with a again.
	c := reenroll()
	st := statuses()
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		want store.CertStatus
		by   *x509.Certificate
	}{{"a", a, store.CertSuperseded, b}, {"b", b, store.CertSuperseded, c}, {"c", c, store.CertIssued, nil}} {
		got := st[tc.cert.SerialNumber.Text(16)]
		if got.Status != tc.want || (tc.by == nil) != (got.SupersededBy == nil) || (tc.by != nil && got.SupersededBy.Cmp(tc.by.SerialNumber) != 0) {
			t.Errorf("%s: %s superseded by %v, want %s by %v", tc.name, got.Status, got.SupersededBy, tc.want, tc.by)
		}
	}
	var events int
	for _, ev := range e.reg.AuditSince(t, seq) {
		if ev.Type == store.EventCertSuperseded && ev.Fields["device"] == dk.String() {
			events++
		}
	}
	if events != 2 {
		t.Errorf("cert-superseded events = %d, want 2 (a by b, b by c)", events)
	}
	// Still authenticates: enrollstatus with the superseded LDevID.
	lp := registrartest.LDevIDPledge(t, e.reg, "SN-SUP-1", a, keyA)
	if resp, body, err := lp.Post(t.Context(), registrar.PathEnrollStatus, registrar.MediaTypeJSON, []byte(`{"version":1,"status":true}`)); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("enrollstatus with a superseded LDevID: %v %v %s", err, resp, body)
	}
}
