package lint_test

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"testing"
	"time"

	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pki/lint"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
)

func TestLinter_Lint(t *testing.T) {
	t.Parallel()
	l, err := lint.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	ca := pkitest.NewCA(t)
	if err := l.Lint(ca.Cert.Raw); err != nil {
		t.Fatalf("generated CA: %v", err)
	}
	// A leaf without an SKI (Go leaves it off leaves) must fail on
	// w_ext_subject_key_identifier_missing_sub_cert.
	key := pkitest.NewKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: pki.NewSerial(), Subject: pkix.Name{CommonName: "bad"},
		NotBefore: pkitest.TestTime, NotAfter: pkitest.TestTime.Add(time.Hour),
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, AuthorityKeyId: ca.Cert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Signer)
	if err != nil {
		t.Fatal(err)
	}
	err = l.Lint(der)
	lerr, ok := errors.AsType[*lint.Error](err)
	if !ok || len(lerr.Findings) == 0 {
		t.Fatalf("Lint = %v, want findings", err)
	}
	if err := l.Lint([]byte{0x30}); err == nil {
		t.Error("garbage accepted")
	}
}

func TestNew_Allowlist(t *testing.T) {
	t.Parallel()
	if _, err := lint.New(map[string]string{"e_no_such_lint": "typo"}); err == nil {
		t.Error("unknown lint name accepted")
	}
	if _, err := lint.New(map[string]string{"e_ext_authority_key_identifier_no_key_identifier": " "}); err == nil {
		t.Error("allowlist entry without a reason accepted")
	}
	for name, reason := range lint.DefaultAllowlist() {
		if reason == "" {
			t.Errorf("%s has no reason", name)
		}
	}
}

func TestNewMode(t *testing.T) {
	t.Parallel()
	ca := pkitest.NewCA(t)
	for _, m := range []lint.Mode{lint.ModeFull, lint.ModeFast} {
		l, err := lint.NewMode(m, nil)
		if err != nil || l == nil {
			t.Fatalf("%s: %v", m, err)
		}
		if err := l.Lint(ca.Cert.Raw); err != nil {
			t.Errorf("%s: generated CA: %v", m, err)
		}
	}
	if l, err := lint.NewMode(lint.ModeOff, nil); err != nil || l != nil {
		t.Errorf("off = %v, %v; want nil, nil", l, err)
	}
	if _, err := lint.NewMode("bogus", nil); err == nil || lint.Mode("bogus").IsValid() {
		t.Error("unknown mode accepted")
	}
	if len(lint.ExpensiveLints()) == 0 {
		t.Error("no expensive lints listed")
	}
}

// BenchmarkLint measures the per-certificate cost of each mode on a P-256
// LDevID (docs/flows/enroll.md quotes the figures).
func BenchmarkLint(b *testing.B) {
	ca := pkitest.NewCA(b)
	iss := ca.NewIssuer(b, pki.IssuerConfig{}, nil)
	p, err := iss.Prepare(pki.IssueRequest{PublicKey: pkitest.NewKey(b).Public(), Device: &pki.DeviceIdentity{Serial: "SN-1"}})
	if err != nil {
		b.Fatal(err)
	}
	der := p.Precertificate()
	for _, m := range []lint.Mode{lint.ModeFull, lint.ModeFast} {
		b.Run(string(m), func(b *testing.B) {
			l, err := lint.NewMode(m, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := l.Lint(der); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
