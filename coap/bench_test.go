package coap_test

import (
	"net/http"
	"testing"

	"github.com/gatehouse-pki/gatehouse/coap"
	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
)

// noLimits turns the registrar's rate limits off: the fake clock never
// refills a bucket.
func noLimits(o *registrartest.Options) {
	o.Config = func(c *registrar.Config) {
		c.PerIP = registrar.RateLimit{Rate: -1}
		c.PerIDevID = registrar.RateLimit{Rate: -1}
	}
}

// BenchmarkCheckRequest is the per-datagram check before go-coap.
func BenchmarkCheckRequest(b *testing.B) {
	m := msg(post, 1, []byte{1, 2, 3, 4}, append(path("/.well-known/est/sen"), opt{12, u(286)}, opt{27, u(0x1a)}, opt{60, u(300)}, opt{292, []byte{9, 9}}), make([]byte, 64))
	b.ReportAllocs()
	for b.Loop() {
		if v, _ := coap.CheckRequest(m); v != coap.Pass {
			b.Fatal(v)
		}
	}
}

// BenchmarkServer_EnrollCoAPS is /sen over one DTLS session (real
// registrar, store and issuance), a new key and CSR per operation; compare with
// BenchmarkServer_EnrollHTTPS, the same back end over HTTPS.
func BenchmarkServer_EnrollCoAPS(b *testing.B) {
	e := newEnv(b, noLimits)
	id := e.onboarded(b, "SN-BENCH-COAP")
	s := e.dial(b, *id)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Enroll(b.Context(), registrartest.NewCSR(b, pkitest.NewKey(b), "SN-BENCH-COAP")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServer_EnrollHTTPS is simpleenroll over one TLS connection to
// the same kind of registrar.
func BenchmarkServer_EnrollHTTPS(b *testing.B) {
	e := newEnv(b, noLimits)
	id := e.onboarded(b, "SN-BENCH-HTTPS")
	p := registrartest.NewPledge(b, e.reg, "SN-BENCH-HTTPS", id.TLS)
	b.ReportAllocs()
	for b.Loop() {
		_, resp, body, err := p.EST(b.Context(), est.OpSimpleEnroll, registrartest.NewCSR(b, pkitest.NewKey(b), "SN-BENCH-HTTPS"))
		if err != nil {
			b.Fatalf("simpleenroll: %v", err)
		}
		_ = resp.Body.Close() // read and closed by registrartest already
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("simpleenroll: %d %s", resp.StatusCode, body)
		}
	}
}

// BenchmarkServer_CrtsCoAPS is one GET /crts round trip over DTLS: the
// transport's own cost.
func BenchmarkServer_CrtsCoAPS(b *testing.B) {
	e := newEnv(b, noLimits)
	id := pkitest.NewIDevID(b, e.mfg, "SN-BENCH-CRTS", e.masa.Authority)
	s := e.dial(b, *id)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.CACerts(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
}
