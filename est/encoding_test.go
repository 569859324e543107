package est_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
)

// TestDecodeBase64Body_ClientBodies: what a client reads, wrapped or not,
// decodes (RFC 8951 §3), and EncodeBase64 writes unwrapped standard
// base64. Moved from the pledge's copy of the codec.
func TestDecodeBase64Body_ClientBodies(t *testing.T) {
	t.Parallel()
	der := bytes.Repeat([]byte{0x30, 0x82, 0xff, 0x00, 0x7e}, 40)
	std := base64.StdEncoding.EncodeToString(der)
	tests := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{"unwrapped", std, false},
		{"lf-64", wrapLines(std, 64, "\n"), false},
		{"crlf-76", wrapLines(std, 76, "\r\n"), false},
		{"no-padding", strings.TrimRight(std, "="), false},
		{"spaces", " " + std + " \t", false},
		{"not-base64", "MIIB*not base64*", true},
		{"url-alphabet", strings.NewReplacer("+", "-", "/", "_").Replace(std), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := est.DecodeBase64Body([]byte(tc.in))
			if tc.wantErr {
				if !errors.Is(err, est.ErrBase64) {
					t.Fatalf("err = %v, want ErrBase64", err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, der) {
				t.Fatalf("DecodeBase64Body = %x, %v; want the DER", got, err)
			}
		})
	}
	if got := string(est.EncodeBase64(der)); got != std || strings.ContainsAny(got, "\r\n") {
		t.Fatalf("EncodeBase64 = %q, want unwrapped standard base64", got)
	}
}

func TestCertsOnly_RoundTrip(t *testing.T) {
	t.Parallel()
	ca := pkitest.NewCA(t, pkitest.Intermediate())
	der, err := est.MarshalCertsOnly(ca.Chain)
	if err != nil {
		t.Fatal(err)
	}
	got, err := est.ParseCertsOnly(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ca.Chain) {
		t.Fatalf("%d certificates, want %d", len(got), len(ca.Chain))
	}
	for i := range got {
		if !got[i].Equal(ca.Chain[i]) {
			t.Fatalf("certificate %d differs", i)
		}
	}
	for _, bad := range [][]byte{nil, {0x30, 0x00}, append(bytes.Clone(der), 0), der[:len(der)-1]} {
		if _, err := est.ParseCertsOnly(bad); !errors.Is(err, est.ErrCertsOnly) {
			t.Errorf("ParseCertsOnly(%d bytes) = %v, want ErrCertsOnly", len(bad), err)
		}
	}
	if _, err := est.MarshalCertsOnly(nil); err == nil {
		t.Error("MarshalCertsOnly(nil) succeeded")
	}
}

// TestCertsOnly_OpenSSL checks both directions against openssl: openssl
// reads what MarshalCertsOnly writes, and ParseCertsOnly reads what
// `openssl crl2pkcs7 -nocrl` writes.
func TestCertsOnly_OpenSSL(t *testing.T) {
	t.Parallel()
	openssl := needOpenSSL(t)
	ca := pkitest.NewCA(t, pkitest.Intermediate())
	dir := t.TempDir()
	der, err := est.MarshalCertsOnly(ca.Chain)
	if err != nil {
		t.Fatal(err)
	}
	p7 := filepath.Join(dir, "ours.p7")
	if err := os.WriteFile(p7, der, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), openssl, "pkcs7", "-inform", "DER", "-in", p7, "-print_certs").CombinedOutput()
	if err != nil || strings.Count(string(out), "BEGIN CERTIFICATE") != len(ca.Chain) {
		t.Fatalf("openssl pkcs7: %v\n%s", err, out)
	}
	pemFile := filepath.Join(dir, "chain.pem")
	if err := os.WriteFile(pemFile, ca.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	theirs, err := exec.CommandContext(t.Context(), openssl, "crl2pkcs7", "-nocrl", "-certfile", pemFile, "-outform", "DER").Output()
	if err != nil {
		t.Fatalf("openssl crl2pkcs7: %v", err)
	}
	got, err := est.ParseCertsOnly(theirs)
	if err != nil || len(got) != len(ca.Chain) {
		t.Fatalf("ParseCertsOnly(openssl) = %d certificates, %v", len(got), err)
	}
}

func needOpenSSL(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed (make test-deps installs it)")
	}
	return p
}
