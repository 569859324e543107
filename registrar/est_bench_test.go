package registrar_test

import (
	"net/http"
	"testing"

	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/pki/lint"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
)

// BenchmarkSimpleReenroll measures one simplereenroll through the
// registrar: TLS keep-alive on loopback, the CSR checks, the issuance
// protocol with the production (fast) lint, and the supersede of the
// device's other certificates in the completing transaction. Every
// iteration adds a certificate to the device's history, as a device that
// renews again and again does, and the supersede reads each of them: the
// cost per operation grows with -benchtime.
func BenchmarkSimpleReenroll(b *testing.B) {
	e := newEnv(b, func(o *registrartest.Options) {
		o.Config = func(c *registrar.Config) {
			c.PerIDevID, c.PerIP = registrar.RateLimit{Rate: -1}, registrar.RateLimit{Rate: -1}
		}
		l, err := lint.NewMode(lint.ModeFast, lint.DefaultAllowlist())
		if err != nil {
			b.Fatal(err)
		}
		o.Linter = l
	})
	p := e.pledge(b, "SN-BENCH-RE")
	e.onboard(b, p)
	key := pkitest.NewKey(b)
	cert, resp, body, err := p.EST(b.Context(), est.OpSimpleEnroll, registrartest.NewCSR(b, key, "SN-BENCH-RE"))
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("simpleenroll: %v %v %s", err, resp, body)
	}
	lp := registrartest.LDevIDPledge(b, e.reg, "SN-BENCH-RE", cert, key)
	csr := registrartest.NewCSR(b, pkitest.NewKey(b), "SN-BENCH-RE")
	b.ReportAllocs()
	for b.Loop() {
		if _, resp, body, err := lp.EST(b.Context(), est.OpSimpleReenroll, csr); err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("simplereenroll: %v %v %s", err, resp, body)
		}
	}
}
