package pki_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
)

var (
	oidSAN      = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidOtherHW  = "1.3.6.1.4.1.99999.1"
	testProfile = pki.Profile{
		Subject:     []pki.NameAttribute{{Type: "CN", Value: "{serial}"}, {Type: "serialNumber", Value: "{serial}"}, {Type: "O", Value: "Example Devices"}},
		DNSNames:    []string{"{serial}.devices.example.com"},
		IPAddresses: []string{"2001:db8::7"},
		URIs:        []string{"urn:dev:ops:{serial}"},
		OtherNames:  []pki.OtherNameTemplate{{OID: oidOtherHW, Value: "hw-{serial}"}},
		Validity:    30 * 24 * time.Hour,
	}
)

func device(serial string) *pki.DeviceIdentity {
	return &pki.DeviceIdentity{Serial: serial, CommonName: "Pledge " + serial}
}

// newTestIssuer returns a domain CA with an intermediate and an Issuer with
// the zlint linter.
func newTestIssuer(t testing.TB, p pki.Profile) (*pkitest.CA, *pki.Issuer) {
	t.Helper()
	ca := pkitest.NewCA(t, pkitest.Name("Domain CA"), pkitest.Intermediate())
	return ca, ca.NewIssuer(t, pki.IssuerConfig{LDevID: p}, pkitest.NewLinter(t))
}

func issue(t testing.TB, iss *pki.Issuer, pub crypto.PublicKey, dev *pki.DeviceIdentity) *x509.Certificate {
	t.Helper()
	p, err := iss.Prepare(pki.IssueRequest{PublicKey: pub, Device: dev})
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	c, err := iss.Sign(context.Background(), p)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return c
}

// TestIssuer_PrepareLDevID checks that the issued LDevID carries exactly the
// profile: subject, SANs, EKU, KU, SKI, AKI, no CA bit, exact validity.
func TestIssuer_PrepareLDevID(t *testing.T) {
	t.Parallel()
	ca, iss := newTestIssuer(t, testProfile)
	key := pkitest.NewKey(t)
	c := issue(t, iss, key.Public(), device("00-D0-E5-F2-00-02"))
	pkitest.Lint(t, c)

	if got, want := c.Subject.String(), "CN=00-D0-E5-F2-00-02,SERIALNUMBER=00-D0-E5-F2-00-02,O=Example Devices"; got != want {
		// pkix.Name.String prints RDNs in reverse order.
		var rdn pkix.RDNSequence
		if _, err := asn1.Unmarshal(c.RawSubject, &rdn); err != nil {
			t.Fatal(err)
		}
		if got := rdn.String(); got != "O=Example Devices,SERIALNUMBER=00-D0-E5-F2-00-02,CN=00-D0-E5-F2-00-02" {
			t.Errorf("subject = %q", got)
		}
	}
	type names struct {
		DNS  []string
		IP   []string
		URI  []string
		Mail []string
	}
	got := names{DNS: c.DNSNames, URI: nil, Mail: c.EmailAddresses}
	for _, ip := range c.IPAddresses {
		got.IP = append(got.IP, ip.String())
	}
	for _, u := range c.URIs {
		got.URI = append(got.URI, u.String())
	}
	want := names{DNS: []string{"00-D0-E5-F2-00-02.devices.example.com"}, IP: []string{"2001:db8::7"}, URI: []string{"urn:dev:ops:00-D0-E5-F2-00-02"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SANs (-want +got):\n%s", diff)
	}
	if !hasOtherName(t, c, oidOtherHW, "hw-00-D0-E5-F2-00-02") {
		t.Error("otherName missing")
	}
	if diff := cmp.Diff([]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, c.ExtKeyUsage); diff != "" || len(c.UnknownExtKeyUsage) != 0 {
		t.Errorf("EKU (-want +got):\n%s %v", diff, c.UnknownExtKeyUsage)
	}
	if c.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("KU = %v", c.KeyUsage)
	}
	for _, e := range c.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 15}) && !e.Critical {
			t.Error("KU not critical")
		}
	}
	ski, _ := pki.SubjectKeyID(key.Public())
	if diff := cmp.Diff(ski, c.SubjectKeyId); diff != "" {
		t.Errorf("SKI (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(ca.Cert.SubjectKeyId, c.AuthorityKeyId); diff != "" {
		t.Errorf("AKI (-want +got):\n%s", diff)
	}
	if c.IsCA || !c.BasicConstraintsValid {
		t.Error("CA bit set or basicConstraints missing")
	}
	wantNB := pkitest.TestTime.Add(-pki.DefaultBackdate)
	if !c.NotBefore.Equal(wantNB) || !c.NotAfter.Equal(wantNB.Add(30*24*time.Hour)) {
		t.Errorf("validity %s..%s, want %s..+30d", c.NotBefore, c.NotAfter, wantNB)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), Intermediates: ca.Intermediates(), CurrentTime: pkitest.TestTime, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("verify: %v", err)
	}
	// Exactly the profile's extensions, nothing else (reliability Q6).
	var ids []string
	for _, e := range c.Extensions {
		ids = append(ids, e.Id.String())
	}
	wantIDs := []string{"2.5.29.15", "2.5.29.37", "2.5.29.19", "2.5.29.14", "2.5.29.35", "2.5.29.17"}
	if diff := cmp.Diff(wantIDs, ids); diff != "" {
		t.Errorf("extensions (-want +got):\n%s", diff)
	}
}

func hasOtherName(t *testing.T, c *x509.Certificate, oid, value string) bool {
	t.Helper()
	for _, e := range c.Extensions {
		if !e.Id.Equal(oidSAN) {
			continue
		}
		var gns []asn1.RawValue
		if _, err := asn1.Unmarshal(e.Value, &gns); err != nil {
			t.Fatal(err)
		}
		for _, gn := range gns {
			if gn.Tag != 0 || gn.Class != asn1.ClassContextSpecific {
				continue
			}
			var on struct {
				ID    asn1.ObjectIdentifier
				Value string `asn1:"explicit,tag:0,utf8"`
			}
			if _, err := asn1.UnmarshalWithParams(gn.FullBytes, &on, "tag:0"); err != nil {
				t.Fatal(err)
			}
			if on.ID.String() == oid && on.Value == value {
				return true
			}
		}
	}
	return false
}

func TestIssuer_PrepareVariants(t *testing.T) {
	t.Parallel()
	rsa := rsaKey(t, 2048)
	tests := []struct {
		name    string
		profile pki.Profile
		pub     crypto.PublicKey
		dev     *pki.DeviceIdentity
		check   func(t *testing.T, c *x509.Certificate)
		wantErr error
	}{
		{name: "default-profile", pub: pkitest.NewKey(t).Public(), dev: device("SN-1"), check: func(t *testing.T, c *x509.Certificate) {
			if c.Subject.CommonName != "SN-1" || c.Subject.SerialNumber != "SN-1" || len(c.DNSNames)+len(c.URIs)+len(c.IPAddresses) != 0 {
				t.Errorf("subject %s, SANs %v %v %v", c.Subject, c.DNSNames, c.URIs, c.IPAddresses)
			}
		}},
		{name: "server-auth", profile: pki.Profile{ServerAuth: true, DNSNames: []string{"{serial}.example"}}, pub: pkitest.NewKey(t).Public(), dev: device("sn2"), check: func(t *testing.T, c *x509.Certificate) {
			if diff := cmp.Diff([]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}, c.ExtKeyUsage); diff != "" {
				t.Error(diff)
			}
		}},
		{name: "rsa-key-encipherment", profile: pki.Profile{KeyEncipherment: true, ServerAuth: true, DNSNames: []string{"{serial}.example"}}, pub: &rsa.PublicKey, dev: device("SN-3"), check: func(t *testing.T, c *x509.Certificate) {
			if c.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment {
				t.Errorf("KU %v", c.KeyUsage)
			}
		}},
		{name: "ec-key-encipherment-ignored", profile: pki.Profile{KeyEncipherment: true, ServerAuth: true, DNSNames: []string{"{serial}.example"}}, pub: pkitest.NewKey(t).Public(), dev: device("SN-4"), check: func(t *testing.T, c *x509.Certificate) {
			if c.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("KU %v", c.KeyUsage)
			}
		}},
		{name: "cn-placeholder", profile: pki.Profile{Subject: []pki.NameAttribute{{Type: "CN", Value: "{cn}"}}, URIs: []string{"urn:dev:ops:{serial}"}}, pub: pkitest.NewKey(t).Public(), dev: device("SN 5/x"), check: func(t *testing.T, c *x509.Certificate) {
			if c.Subject.CommonName != "Pledge SN 5/x" || len(c.URIs) != 1 || c.URIs[0].String() != "urn:dev:ops:SN%205%2Fx" {
				t.Errorf("subject %s, URIs %v", c.Subject, c.URIs)
			}
		}},
		{name: "weak-key", pub: &ecdsa.PublicKey{Curve: elliptic.P224()}, dev: device("SN-6"), wantErr: pki.ErrWeakKey},
		{name: "no-serial", pub: pkitest.NewKey(t).Public(), dev: &pki.DeviceIdentity{}, wantErr: pki.ErrNoSerialNumber},
		{name: "serial-not-dns", profile: pki.Profile{DNSNames: []string{"{serial}.example"}}, pub: pkitest.NewKey(t).Public(), dev: device("a_b"), wantErr: pki.ErrProfile},
		{name: "cn-missing", profile: pki.Profile{Subject: []pki.NameAttribute{{Type: "CN", Value: "{cn}"}}}, pub: pkitest.NewKey(t).Public(), dev: &pki.DeviceIdentity{Serial: "x"}, wantErr: pki.ErrProfile},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, iss := newTestIssuer(t, tc.profile)
			p, err := iss.Prepare(pki.IssueRequest{PublicKey: tc.pub, Device: tc.dev})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Prepare = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c, err := iss.Sign(t.Context(), p)
			if err != nil {
				t.Fatal(err)
			}
			pkitest.Lint(t, c)
			tc.check(t, c)
		})
	}
}

func TestIssuer_ValidityCappedAtIssuer(t *testing.T) {
	t.Parallel()
	ca := pkitest.NewCA(t, pkitest.Validity(10*24*time.Hour))
	iss := ca.NewIssuer(t, pki.IssuerConfig{}, pkitest.NewLinter(t))
	c := issue(t, iss, pkitest.NewKey(t).Public(), device("SN-1"))
	if !c.NotAfter.Equal(ca.Cert.NotAfter) {
		t.Fatalf("NotAfter %s, want the CA's %s", c.NotAfter, ca.Cert.NotAfter)
	}
	pkitest.Lint(t, c)
}

func TestIssuer_PrepareRA(t *testing.T) {
	t.Parallel()
	ca, iss := newTestIssuer(t, pki.Profile{})
	key := pkitest.NewKey(t)
	p, err := iss.PrepareRA(pki.RARequest{PublicKey: key.Public(), Subject: pkix.Name{CommonName: "registrar"}, DNSNames: []string{"localhost", "registrar.example"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := iss.Sign(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	pkitest.Lint(t, c)
	if diff := cmp.Diff([]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, c.ExtKeyUsage); diff != "" {
		t.Error(diff)
	}
	if len(c.UnknownExtKeyUsage) != 1 || !c.UnknownExtKeyUsage[0].Equal(pki.OIDExtKeyUsageCMCRA) {
		t.Errorf("cmcRA missing: %v", c.UnknownExtKeyUsage)
	}
	if c.KeyUsage != x509.KeyUsageDigitalSignature || c.IsCA || len(c.SubjectKeyId) != 20 {
		t.Errorf("KU %v CA %v SKI %x", c.KeyUsage, c.IsCA, c.SubjectKeyId)
	}
	if !c.NotAfter.Equal(c.NotBefore.Add(pki.DefaultRAValidity)) {
		t.Errorf("validity %s..%s", c.NotBefore, c.NotAfter)
	}
	if _, err := c.Verify(x509.VerifyOptions{DNSName: "registrar.example", Roots: ca.Pool(), Intermediates: ca.Intermediates(), CurrentTime: pkitest.TestTime}); err != nil {
		t.Error(err)
	}
	if _, err := iss.PrepareRA(pki.RARequest{PublicKey: key.Public(), Subject: pkix.Name{CommonName: "r"}}); !errors.Is(err, pki.ErrProfile) {
		t.Errorf("no SANs: %v", err)
	}
}

// TestIssuer_SignDeterministic is reliability Q3: the TBS hash is stable and
// the signed TBS equals the linted TBS.
func TestIssuer_SignDeterministic(t *testing.T) {
	t.Parallel()
	_, iss := newTestIssuer(t, testProfile)
	p, err := iss.Prepare(pki.IssueRequest{PublicKey: pkitest.NewKey(t).Public(), Device: device("SN-1")})
	if err != nil {
		t.Fatal(err)
	}
	h1, tbs := p.TBSHash(), p.TBS()
	if h1 != sha256.Sum256(tbs) || h1 != p.TBSHash() {
		t.Fatal("TBS hash unstable")
	}
	pre, err := x509.ParseCertificate(p.Precertificate())
	if err != nil {
		t.Fatal(err)
	}
	c, err := iss.Sign(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(pre.RawTBSCertificate, c.RawTBSCertificate); diff != "" {
		t.Errorf("signed TBS differs from linted TBS:\n%s", diff)
	}
	if sha256.Sum256(c.RawTBSCertificate) != h1 || c.SerialNumber.Cmp(p.Serial()) != 0 {
		t.Error("certificate does not match the prepared hash or serial")
	}
	if _, err := iss.Sign(t.Context(), p); !errors.Is(err, pki.ErrAlreadySigned) {
		t.Errorf("second Sign = %v, want ErrAlreadySigned", err)
	}
	// Two prepares never share a serial.
	p2, err := iss.Prepare(pki.IssueRequest{PublicKey: pkitest.NewKey(t).Public(), Device: device("SN-1")})
	if err != nil {
		t.Fatal(err)
	}
	if p2.Serial().Cmp(p.Serial()) == 0 {
		t.Error("serial reused")
	}
}

// failingSigner is a crypto.Signer that always fails (failure injection).
type failingSigner struct{ crypto.Signer }

func (f failingSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("hsm unplugged")
}

// corruptSigner signs with another key of the same type.
type corruptSigner struct {
	crypto.Signer
	other crypto.Signer
}

func (c corruptSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	return c.other.Sign(r, d, o)
}

func TestIssuer_SignFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		signer func(crypto.Signer) crypto.Signer
		ctx    func(t *testing.T) context.Context
	}{
		{name: "signer-error", signer: func(s crypto.Signer) crypto.Signer { return failingSigner{s} }},
		{name: "wrong-signature", signer: func(s crypto.Signer) crypto.Signer { return corruptSigner{s, pkitest.NewKey(t)} }},
		{name: "cancelled", signer: func(s crypto.Signer) crypto.Signer { return s }, ctx: func(t *testing.T) context.Context {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			return ctx
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ca := pkitest.NewCA(t)
			pca := *ca.PKI()
			pca.Signer = tc.signer(pca.Signer)
			iss, err := pki.NewIssuer(pki.IssuerConfig{}.WithDefaults(), pki.IssuerDeps{Clock: ca.Clock, CA: &pca, Linter: pkitest.NewLinter(t)})
			if err != nil {
				t.Fatal(err)
			}
			p, err := iss.Prepare(pki.IssueRequest{PublicKey: pkitest.NewKey(t).Public(), Device: device("SN-1")})
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			if tc.ctx != nil {
				ctx = tc.ctx(t)
			}
			c, err := iss.Sign(ctx, p)
			if err == nil || c != nil {
				t.Fatalf("Sign = %v, %v; want an error and no certificate", c, err)
			}
		})
	}
}

type refuseAll struct{}

func (refuseAll) Lint([]byte) error { return errors.New("e_everything") }

func TestIssuer_LintRefusal(t *testing.T) {
	t.Parallel()
	ca := pkitest.NewCA(t)
	iss := ca.NewIssuer(t, pki.IssuerConfig{}, refuseAll{})
	_, err := iss.Prepare(pki.IssueRequest{PublicKey: pkitest.NewKey(t).Public(), Device: device("SN-1")})
	if !errors.Is(err, pki.ErrLint) {
		t.Fatalf("Prepare = %v, want ErrLint", err)
	}
}

func TestIssuer_ExpiredCA(t *testing.T) {
	t.Parallel()
	fc := pkitest.NewClock()
	ca := pkitest.NewCA(t, pkitest.Clock(fc), pkitest.Validity(24*time.Hour))
	iss := ca.NewIssuer(t, pki.IssuerConfig{}, nil)
	fc.Add(48 * time.Hour)
	if _, err := iss.Prepare(pki.IssueRequest{PublicKey: pkitest.NewKey(t).Public(), Device: device("SN-1")}); !errors.Is(err, pki.ErrBadCA) {
		t.Fatalf("Prepare = %v, want ErrBadCA", err)
	}
}

func TestProfile_Validate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		p       pki.Profile
		wantErr bool
	}{
		{name: "defaults", p: pki.Profile{}},
		{name: "full", p: testProfile},
		{name: "398-days", p: pki.Profile{Validity: 398 * 24 * time.Hour}},
		{name: "399-days", p: pki.Profile{Validity: 399 * 24 * time.Hour}, wantErr: true},
		{name: "negative-backdate", p: pki.Profile{Backdate: -time.Second}, wantErr: true},
		{name: "backdate-2h", p: pki.Profile{Backdate: 2 * time.Hour}, wantErr: true},
		{name: "two-dns", p: pki.Profile{DNSNames: []string{"a.{serial}", "b.{serial}"}}, wantErr: true},
		{name: "two-dns-allowed", p: pki.Profile{DNSNames: []string{"a.{serial}", "b.{serial}"}, AllowMultipleNames: true}},
		{name: "two-uris", p: pki.Profile{URIs: []string{"urn:a:{serial}", "urn:b:{serial}"}}, wantErr: true},
		{name: "unknown-placeholder", p: pki.Profile{URIs: []string{"urn:{mac}"}}, wantErr: true},
		{name: "unbalanced", p: pki.Profile{URIs: []string{"urn:{serial"}}, wantErr: true},
		{name: "wildcard", p: pki.Profile{DNSNames: []string{"*.{serial}"}}, wantErr: true},
		{name: "bad-attribute", p: pki.Profile{Subject: []pki.NameAttribute{{Type: "nope", Value: "x"}}}, wantErr: true},
		{name: "key-encipherment-without-server-auth", p: pki.Profile{KeyEncipherment: true}, wantErr: true},
		{name: "bacnet-uri", p: pki.Profile{URIs: []string{"bacnet://{serial}"}}},
		{name: "oid-attribute", p: pki.Profile{Subject: []pki.NameAttribute{{Type: "2.5.4.5", Value: "{serial}"}}}},
		{name: "bad-othername-oid", p: pki.Profile{OtherNames: []pki.OtherNameTemplate{{OID: "1", Value: "x"}}}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.p.WithDefaults().Validate()
			if (err != nil) != tc.wantErr || (err != nil && !errors.Is(err, pki.ErrProfile)) {
				t.Fatalf("Validate = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
	// errors.Join: every problem reported at once.
	err := pki.Profile{Validity: -1, Backdate: -1}.Validate()
	if err == nil || len(err.Error()) < 40 {
		t.Fatalf("Validate = %v", err)
	}
}

// recordingLinter keeps the certificate it was given and allows it.
type recordingLinter struct{ der []byte }

func (r *recordingLinter) Lint(der []byte) error {
	r.der = bytes.Clone(der)
	return nil
}

// certParts splits a DER certificate into its TBSCertificate, outer
// signature AlgorithmIdentifier and signature BIT STRING elements.
func certParts(t *testing.T, der []byte) (tbs, alg, sig []byte) {
	t.Helper()
	in := cryptobyte.String(der)
	var body, a, b, c cryptobyte.String
	if !in.ReadASN1(&body, cbasn1.SEQUENCE) || !in.Empty() || !body.ReadASN1Element(&a, cbasn1.SEQUENCE) ||
		!body.ReadASN1Element(&b, cbasn1.SEQUENCE) || !body.ReadASN1Element(&c, cbasn1.BIT_STRING) || !body.Empty() {
		t.Fatalf("malformed certificate %x", der)
	}
	return a, b, c
}

// TestIssuer_LintCopy: for every CA key type, the certificate the linter
// saw (the lint copy, built without x509.CreateCertificate's signature
// check) is the issued certificate byte for byte but for the signature
// value: same TBSCertificate, same outer signature algorithm, same layout.
func TestIssuer_LintCopy(t *testing.T) {
	t.Parallel()
	keys := map[string]func(t *testing.T) crypto.Signer{
		"p256": func(t *testing.T) crypto.Signer { return pkitest.NewKey(t) },
		"p384": func(t *testing.T) crypto.Signer {
			k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			return k
		},
		"rsa2048": func(t *testing.T) crypto.Signer { return rsaKey(t, 2048) },
		"ed25519": func(t *testing.T) crypto.Signer {
			_, k, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			return k
		},
	}
	for name, newKey := range keys {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fc := pkitest.NewClock()
			ca, err := pki.NewRootCA(fc, pki.CAConfig{Subject: pkix.Name{CommonName: "Lint Copy CA " + name}}, newKey(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			l := &recordingLinter{}
			iss, err := pki.NewIssuer(pki.IssuerConfig{LDevID: testProfile}.WithDefaults(), pki.IssuerDeps{Clock: fc, CA: ca, Linter: l})
			if err != nil {
				t.Fatal(err)
			}
			p, err := iss.Prepare(pki.IssueRequest{PublicKey: pkitest.NewKey(t).Public(), Device: device("SN-LINT")})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(l.der, p.Precertificate()) {
				t.Fatal("the linter saw another certificate than Precertificate")
			}
			pre, err := x509.ParseCertificate(l.der)
			if err != nil {
				t.Fatalf("the lint copy does not parse: %v", err)
			}
			c, err := iss.Sign(t.Context(), p)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.CheckSignatureFrom(ca.Cert); err != nil {
				t.Errorf("issued certificate: %v", err)
			}
			preTBS, preAlg, preSig := certParts(t, l.der)
			tbs, alg, sig := certParts(t, c.Raw)
			if !bytes.Equal(preTBS, tbs) || !bytes.Equal(preAlg, alg) || pre.SignatureAlgorithm != c.SignatureAlgorithm {
				t.Errorf("lint copy differs beyond the signature: TBS equal %v, algorithm %x vs %x", bytes.Equal(preTBS, tbs), preAlg, alg)
			}
			if bytes.Equal(preSig, sig) {
				t.Error("the lint copy carries the CA's signature")
			}
			if sha256.Sum256(tbs) != p.TBSHash() {
				t.Error("TBS hash does not match the issued certificate")
			}
		})
	}
}
