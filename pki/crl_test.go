package pki_test

import (
	"crypto/x509"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
)

func TestSignCRL(t *testing.T) {
	t.Parallel()
	fc := pkitest.NewClock()
	ca := pkitest.NewCA(t, pkitest.Clock(fc))
	now := fc.Now()
	crl, err := pki.SignCRL(ca.PKI(), pki.CRLRequest{
		Number: big.NewInt(7), ThisUpdate: now, NextUpdate: now.Add(time.Hour),
		Revoked: []x509.RevocationListEntry{{SerialNumber: big.NewInt(42), RevocationTime: now, ReasonCode: 1}, {SerialNumber: big.NewInt(43), RevocationTime: now}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(ca.Root()); err != nil {
		t.Fatal(err)
	}
	if crl.Number.Int64() != 7 || len(crl.RevokedCertificateEntries) != 2 || crl.RevokedCertificateEntries[0].ReasonCode != 1 || string(crl.AuthorityKeyId) != string(ca.Root().SubjectKeyId) {
		t.Errorf("crl: number %v, entries %+v, AKI %x", crl.Number, crl.RevokedCertificateEntries, crl.AuthorityKeyId)
	}
	for name, req := range map[string]pki.CRLRequest{
		"no-number":       {ThisUpdate: now, NextUpdate: now.Add(time.Hour)},
		"backwards":       {Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now},
		"negative-number": {Number: big.NewInt(-1), ThisUpdate: now, NextUpdate: now.Add(time.Hour)},
	} {
		if _, err := pki.SignCRL(ca.PKI(), req); !errors.Is(err, pki.ErrProfile) {
			t.Errorf("%s: %v, want ErrProfile", name, err)
		}
	}
	if got, want := pki.CRLURL("http://ca.example/crl/", ca.Root()), "http://ca.example/crl/"+pki.CRLPath(ca.Root()); got != want {
		t.Errorf("CRLURL = %q, want %q", got, want)
	}
}
