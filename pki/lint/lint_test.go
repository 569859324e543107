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
