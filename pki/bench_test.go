package pki_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"

	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
)

func BenchmarkIssueLDevID(b *testing.B) {
	for _, withLint := range []bool{false, true} {
		name := "nolint"
		if withLint {
			name = "zlint"
		}
		b.Run(name, func(b *testing.B) {
			ca := pkitest.NewCA(b)
			var l pki.Linter
			if withLint {
				l = pkitest.NewLinter(b)
			}
			iss := ca.NewIssuer(b, pki.IssuerConfig{LDevID: testProfile}, l)
			pub := pkitest.NewKey(b).Public()
			dev := device("00-D0-E5-F2-00-02")
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				p, err := iss.Prepare(pki.IssueRequest{PublicKey: pub, Device: dev})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := iss.Sign(ctx, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkCheckCSR(b *testing.B) {
	for _, kind := range []string{"p256", "rsa2048"} {
		b.Run(kind, func(b *testing.B) {
			var csr *x509.CertificateRequest
			if kind == "p256" {
				csr = newCSR(b, pkitest.NewKey(b), &x509.CertificateRequest{Subject: pkix.Name{CommonName: "SN-1"}})
			} else {
				csr = newCSR(b, rsaKey(b, 2048), &x509.CertificateRequest{Subject: pkix.Name{CommonName: "SN-1"}})
			}
			p := testProfile.WithDefaults()
			dev := device("SN-1")
			b.ReportAllocs()
			for b.Loop() {
				if err := pki.CheckCSRAgainstProfile(csr, p, dev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkNewSerial(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = pki.NewSerial()
	}
}
