package registrar_test

import (
	"net/http"
	"testing"

	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
)

// BenchmarkRequestVoucher measures one full voucher exchange in process:
// pledge → registrar (TLS keep-alive on loopback) → real MASA → store.
func BenchmarkRequestVoucher(b *testing.B) {
	e := newEnv(b, func(o *registrartest.Options) {
		o.Config = func(c *registrar.Config) { c.PerIDevID = registrar.RateLimit{Rate: -1} }
	})
	p := e.pledge(b, "SN-BENCH")
	b.ReportAllocs()
	for b.Loop() {
		resp, body, err := p.RequestVoucher(b.Context(), p.Sign(b, p.Request(b)))
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("%v %v %s", err, resp, body)
		}
	}
}
