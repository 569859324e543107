package pki_test

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net"
	"net/url"
	"testing"

	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
)

func newCSR(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) *x509.CertificateRequest {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func ext(t testing.TB, id asn1.ObjectIdentifier, v any) pkix.Extension {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: id, Value: b}
}

// TestCheckCSRAgainstProfile covers reliability C02-C07 and Q6 at the CSR
// layer: foreign names and CA requests are refused (400), never silently
// dropped.
func TestCheckCSRAgainstProfile(t *testing.T) {
	t.Parallel()
	key := pkitest.NewKey(t)
	dev := device("SN-1")
	p := testProfile.WithDefaults()
	u, _ := url.Parse("urn:dev:ops:SN-1")
	foreignURI, _ := url.Parse("urn:dev:ops:SN-2")
	var (
		oidBC  = asn1.ObjectIdentifier{2, 5, 29, 19}
		oidKU  = asn1.ObjectIdentifier{2, 5, 29, 15}
		oidEKU = asn1.ObjectIdentifier{2, 5, 29, 37}
		oidNC  = asn1.ObjectIdentifier{2, 5, 29, 30}
	)
	type bc struct {
		IsCA bool `asn1:"optional"`
	}
	tests := []struct {
		name    string
		csr     func(t *testing.T) *x509.CertificateRequest
		wantErr error
	}{
		{name: "empty", csr: func(t *testing.T) *x509.CertificateRequest { return newCSR(t, key, &x509.CertificateRequest{}) }},
		{name: "own-names", csr: func(t *testing.T) *x509.CertificateRequest {
			return newCSR(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "SN-1", SerialNumber: "SN-1"}, DNSNames: []string{"SN-1.devices.example.com"}, URIs: []*url.URL{u}, IPAddresses: []net.IP{net.ParseIP("2001:db8::7")}})
		}},
		{name: "foreign-dns", wantErr: pki.ErrBadCSR, csr: func(t *testing.T) *x509.CertificateRequest {
			return newCSR(t, key, &x509.CertificateRequest{DNSNames: []string{"bank.example"}})
		}},
		{name: "foreign-ip", wantErr: pki.ErrBadCSR, csr: func(t *testing.T) *x509.CertificateRequest {
			return newCSR(t, key, &x509.CertificateRequest{IPAddresses: []net.IP{net.ParseIP("192.0.2.1")}})
		}},
		{name: "foreign-uri", wantErr: pki.ErrBadCSR, csr: func(t *testing.T) *x509.CertificateRequest {
			return newCSR(t, key, &x509.CertificateRequest{URIs: []*url.URL{foreignURI}})
		}},
		{name: "email", wantErr: pki.ErrBadCSR, csr: func(t *testing.T) *x509.CertificateRequest {
			return newCSR(t, key, &x509.CertificateRequest{EmailAddresses: []string{"a@example.com"}})
		}},
		{name: "other-device-cn", wantErr: pki.ErrBadCSR, csr: func(t *testing.T) *x509.CertificateRequest {
			return newCSR(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "SN-2"}})
		}},
		{name: "other-device-serial", wantErr: pki.ErrBadCSR, csr: func(t *testing.T) *x509.CertificateRequest {
			return newCSR(t, key, &x509.CertificateRequest{Subject: pkix.Name{SerialNumber: "SN-2"}})
		}},
		{name: "ca-true", wantErr: pki.ErrBadCSR, csr: func(t *testing.T) *x509.CertificateRequest {
			return newCSR(t, key, &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{ext(t, oidBC, bc{IsCA: true})}})
		}},
		{name: "ca-false-ok", csr: func(t *testing.T) *x509.CertificateRequest {
			return newCSR(t, key, &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{ext(t, oidBC, bc{})}})
		}},
		{name: "key-cert-sign", wantErr: pki.ErrBadCSR, csr: func(t *testing.T) *x509.CertificateRequest {
			return newCSR(t, key, &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{ext(t, oidKU, asn1.BitString{Bytes: []byte{0x04}, BitLength: 6})}})
		}},
		{name: "digital-signature-ok", csr: func(t *testing.T) *x509.CertificateRequest {
			return newCSR(t, key, &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{ext(t, oidKU, asn1.BitString{Bytes: []byte{0x80}, BitLength: 1})}})
		}},
		{name: "cmc-ra", wantErr: pki.ErrBadCSR, csr: func(t *testing.T) *x509.CertificateRequest {
			return newCSR(t, key, &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{ext(t, oidEKU, []asn1.ObjectIdentifier{pki.OIDExtKeyUsageCMCRA})}})
		}},
		{name: "server-auth-not-in-profile", wantErr: pki.ErrBadCSR, csr: func(t *testing.T) *x509.CertificateRequest {
			return newCSR(t, key, &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{ext(t, oidEKU, []asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 1}})}})
		}},
		{name: "client-auth-ok", csr: func(t *testing.T) *x509.CertificateRequest {
			return newCSR(t, key, &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{ext(t, oidEKU, []asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 2}})}})
		}},
		{name: "name-constraints", wantErr: pki.ErrBadCSR, csr: func(t *testing.T) *x509.CertificateRequest {
			return newCSR(t, key, &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{ext(t, oidNC, []int{})}})
		}},
		{name: "bad-signature", wantErr: pki.ErrBadCSR, csr: func(t *testing.T) *x509.CertificateRequest {
			c := newCSR(t, key, &x509.CertificateRequest{})
			c.Signature[len(c.Signature)-1] ^= 1
			return c
		}},
		{name: "sha1-signature", wantErr: pki.ErrBadCSR, csr: func(t *testing.T) *x509.CertificateRequest {
			c := newCSR(t, key, &x509.CertificateRequest{})
			c.SignatureAlgorithm = x509.ECDSAWithSHA1
			return c
		}},
		{name: "weak-key", wantErr: pki.ErrWeakKey, csr: func(t *testing.T) *x509.CertificateRequest {
			return newCSR(t, ecKeyP224(t), &x509.CertificateRequest{})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := pki.CheckCSRAgainstProfile(tc.csr(t), p, dev)
			if tc.wantErr == nil && err != nil {
				t.Fatalf("CheckCSRAgainstProfile = %v, want nil", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("CheckCSRAgainstProfile = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// TestIssuer_IgnoresCSRExtensions is reliability Q6: even when a caller
// skips the CSR check, the certificate's extensions come only from the
// profile.
func TestIssuer_IgnoresCSRExtensions(t *testing.T) {
	t.Parallel()
	key := pkitest.NewKey(t)
	csr := newCSR(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "evil"}, DNSNames: []string{"bank.example"},
		ExtraExtensions: []pkix.Extension{ext(t, asn1.ObjectIdentifier{2, 5, 29, 37}, []asn1.ObjectIdentifier{pki.OIDExtKeyUsageCMCRA})}})
	_, iss := newTestIssuer(t, pki.Profile{})
	c := issue(t, iss, csr.PublicKey, device("SN-1"))
	if c.Subject.CommonName != "SN-1" || len(c.DNSNames) != 0 || len(c.UnknownExtKeyUsage) != 0 || c.IsCA || c.KeyUsage&x509.KeyUsageCertSign != 0 {
		t.Fatalf("certificate took something from the CSR: %s %v %v", c.Subject, c.DNSNames, c.UnknownExtKeyUsage)
	}
}

func ecKeyP224(t *testing.T) crypto.Signer {
	t.Helper()
	return ecKeyCurve224(t)
}

// TestCheckCSRNames_LeavesSignatureToCheckCSR pins the split: CheckCSRNames
// judges names only (a back end whose CSR already passed CheckCSR calls it
// alone), and CheckCSRAgainstProfile still refuses a bad signature.
func TestCheckCSRNames_LeavesSignatureToCheckCSR(t *testing.T) {
	t.Parallel()
	csr := newCSR(t, pkitest.NewKey(t), &x509.CertificateRequest{Subject: pkix.Name{CommonName: "SN-1"}})
	csr.Signature = append([]byte(nil), csr.Signature...)
	csr.Signature[len(csr.Signature)-1] ^= 0xff
	p := testProfile.WithDefaults()
	if err := pki.CheckCSRNames(csr, p, device("SN-1")); err != nil {
		t.Fatalf("CheckCSRNames = %v, want nil: it does not verify signatures", err)
	}
	if err := pki.CheckCSRAgainstProfile(csr, p, device("SN-1")); !errors.Is(err, pki.ErrBadCSR) {
		t.Fatalf("CheckCSRAgainstProfile = %v, want ErrBadCSR for the bad signature", err)
	}
	if err := pki.CheckCSRNames(csr, p, device("SN-2")); !errors.Is(err, pki.ErrBadCSR) {
		t.Fatalf("CheckCSRNames for another device = %v, want ErrBadCSR", err)
	}
}
