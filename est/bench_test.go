package est_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
)

// BenchmarkSimpleEnroll runs the simpleenroll handler end to end (decode,
// CSR checks, issuance by the pki-backed CA, certs-only encoding).
func BenchmarkSimpleEnroll(b *testing.B) {
	clk := pkitest.NewClock()
	ca := newTestCA(b, clk)
	srv, err := est.NewServer(est.Config{}, est.Deps{Logger: slog.New(slog.DiscardHandler), Clock: clk, Metrics: prometheus.NewRegistry(), CA: ca})
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	dev := pkitest.NewIDevID(b, pkitest.NewCA(b, pkitest.Clock(clk)), "SN-BENCH", "")
	body := b64(buildCSR(b, csrSpec{}))
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, est.PathPrefix+"/simpleenroll", bytes.NewReader(body))
		r.Header.Set("Content-Type", est.MediaPKCS10)
		r.TLS = &tlsState{PeerCertificates: dev.Chain}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

// BenchmarkDecodeCSR is the request decoding path: base64, both parses.
func BenchmarkDecodeCSR(b *testing.B) {
	body := b64(buildCSR(b, csrSpec{challenge: "c29tZSBjaGFubmVsIGJpbmRpbmcgdmFsdWUgMzI="}))
	b.ReportAllocs()
	for b.Loop() {
		der, err := est.DecodeBase64Body(body)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := est.ParseCSR(der); err != nil {
			b.Fatal(err)
		}
	}
}
