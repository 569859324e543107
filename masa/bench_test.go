package masa_test

import (
	"bytes"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gatehouse-pki/gatehouse/masa"
)

// BenchmarkRequestVoucher runs the full handler in process (middleware,
// RVR and PVR verification, ownership, and for "nonceless" signing and the
// durable store write) with the TLS peer set on the request.
func BenchmarkRequestVoucher(b *testing.B) {
	f := newFixture(b, masa.OwnershipFirstClaim)
	h := f.srv.Service.Handler()
	run := func(b *testing.B, body []byte) {
		b.Helper()
		b.ReportAllocs()
		for b.Loop() {
			r := httptest.NewRequestWithContext(b.Context(), http.MethodPost, masa.PathRequestVoucher, bytes.NewReader(body))
			r.Header.Set("Content-Type", masa.MediaVoucherCMS)
			r.TLS = &tls.ConnectionState{PeerCertificates: f.ra.Chain}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	}
	// Each nonceless request is signed and logged anew.
	b.Run("nonceless", func(b *testing.B) { run(b, f.rvr(b, "SN-BENCH-1", nil, nil, "")) })
	// A repeated nonced request is verified in full and answered from the
	// store.
	b.Run("proximity-repeat", func(b *testing.B) { run(b, f.proximityRVR(b, "SN-BENCH-2")) })
}
