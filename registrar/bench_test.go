package registrar_test

import (
	"crypto"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
	"github.com/gatehouse-pki/gatehouse/voucher"
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

// BenchmarkSimpleEnroll measures the registrar's simpleenroll end to end
// over TLS keep-alive on loopback: the EST edge, the CSR policy and key
// index, pre-issuance lint, signing, and the two durable transactions
// (intent, then certificate + device + audit). Every op posts a CSR for a
// new key (generated in the loop), so every op is an issuance, not an
// idempotent retry. serial: one pledge, one request at a time (each op
// pays its own fsyncs); parallel: 32 pledges in flight per core share the
// group commits.
func BenchmarkSimpleEnroll(b *testing.B) {
	noLimits := func(o *registrartest.Options) {
		o.Config = func(c *registrar.Config) {
			c.PerIDevID = registrar.RateLimit{Rate: -1}
			c.PerIP = registrar.RateLimit{Rate: -1}
		}
	}
	enroll := func(b *testing.B, p *registrartest.Pledge, serial string) {
		b.Helper()
		key := pkitest.NewKey(b)
		cert, resp, body, err := p.EST(b.Context(), est.OpSimpleEnroll, registrartest.NewCSR(b, key, serial))
		if err != nil || resp.StatusCode != http.StatusOK || cert == nil {
			b.Fatalf("simpleenroll: %v %v %s", err, resp, body)
		}
	}
	b.Run("serial", func(b *testing.B) {
		e := newEnv(b, noLimits)
		p := e.pledge(b, "SN-BENCH-EST")
		e.onboard(b, p)
		b.ReportAllocs()
		for b.Loop() {
			enroll(b, p, "SN-BENCH-EST")
		}
	})
	b.Run("parallel", func(b *testing.B) {
		e := newEnv(b, noLimits)
		const pledges = 32
		ps := make([]*registrartest.Pledge, pledges)
		for i := range ps {
			ps[i] = e.pledge(b, fmt.Sprintf("SN-BENCH-EST-%02d", i))
			e.onboard(b, ps[i])
		}
		var next atomic.Int64
		b.SetParallelism(16)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(1)-1) % pledges
			for pb.Next() {
				enroll(b, ps[i], fmt.Sprintf("SN-BENCH-EST-%02d", i))
			}
		})
	})
}

// BenchmarkRequestVoucherCOSE is BenchmarkRequestVoucher with the cBRSKI
// formats: a COSE pledge request, a COSE registrar request with x5bag, a
// COSE voucher checked and stripped.
func BenchmarkRequestVoucherCOSE(b *testing.B) {
	e := newEnv(b, func(o *registrartest.Options) {
		o.Config = func(c *registrar.Config) { c.PerIDevID = registrar.RateLimit{Rate: -1} }
	})
	p := e.pledge(b, "SN-BENCH-COSE")
	key := p.IDevID.PrivateKey.(crypto.Signer)
	b.ReportAllocs()
	for b.Loop() {
		payload, err := p.Request(b).MarshalCBOR()
		if err != nil {
			b.Fatal(err)
		}
		pvr, err := voucher.SignCOSE(payload, key, voucher.COSEOptions{})
		if err != nil {
			b.Fatal(err)
		}
		resp, body, err := p.Post(b.Context(), registrar.PathRequestVoucher, registrar.MediaTypeVoucherCOSE, pvr)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("%v %v %s", err, resp, body)
		}
	}
}
