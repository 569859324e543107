package pki_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
)

func TestParseCertificates(t *testing.T) {
	t.Parallel()
	ca := pkitest.NewCA(t, pkitest.Intermediate())
	chainPEM := ca.CertPEM()
	keyPEM := pkitest.KeyPEM(t, pkitest.NewKey(t))
	tests := []struct {
		name    string
		in      []byte
		want    int
		wantErr bool
	}{
		{"der", ca.Cert.Raw, 1, false},
		{"pem-chain", chainPEM, len(ca.Chain), false},
		{"pem-with-key-block-skipped", append(append([]byte{}, keyPEM...), chainPEM...), len(ca.Chain), false},
		{"pem-key-only", keyPEM, 0, true},
		{"garbage", []byte("hello"), 0, true},
		{"pem-corrupt-certificate", bytes.Replace(chainPEM, []byte("MII"), []byte("AAA"), 1), 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := pki.ParseCertificates(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if len(got) != tc.want {
				t.Fatalf("got %d certificates, want %d", len(got), tc.want)
			}
			if tc.name == "pem-key-only" && !errors.Is(err, pki.ErrNoCertificate) {
				t.Fatalf("err = %v, want ErrNoCertificate", err)
			}
		})
	}
}
