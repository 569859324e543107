package est_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
)

func TestCreateCSR(t *testing.T) {
	t.Parallel()
	subject, err := asn1.Marshal(pkix.Name{CommonName: "GH-0001", SerialNumber: "GH-0001"}.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte("urn:dev:ops:GH-0001")}})
	if err != nil {
		t.Fatal(err)
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	binding := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32))
	tests := []struct {
		name    string
		key     crypto.Signer
		pw      string
		wantAlg x509.SignatureAlgorithm
		wantTag cbasn1.Tag
	}{
		{"p256-binding", p256, binding, x509.ECDSAWithSHA256, cbasn1.PrintableString},
		{"p384-no-binding", p384, "", x509.ECDSAWithSHA384, 0},
		{"rsa", rsaKey, binding, x509.SHA256WithRSA, cbasn1.PrintableString},
		{"ed25519-utf8", edKey, "mot de passe é", x509.PureEd25519, cbasn1.UTF8String},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			csr, err := est.CreateCSR(est.CSRRequest{
				RawSubject:        subject,
				Extensions:        []est.Extension{{ID: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: san}},
				ChallengePassword: tc.pw,
			}, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			if csr.SignatureAlgorithm != tc.wantAlg || !bytes.Equal(csr.RawSubject, subject) {
				t.Fatalf("algorithm %s, subject %s", csr.SignatureAlgorithm, csr.Subject)
			}
			if len(csr.URIs) != 1 || csr.URIs[0].String() != "urn:dev:ops:GH-0001" {
				t.Fatalf("URIs = %v", csr.URIs)
			}
			pw, tag := pkitest.ChallengePassword(t, csr)
			if pw != tc.pw || tag != tc.wantTag {
				t.Fatalf("challengePassword = %q (tag %d), want %q (tag %d)", pw, tag, tc.pw, tc.wantTag)
			}
			// The server side reads what the client side writes.
			if _, err := est.ParseCSR(csr.Raw); err != nil {
				t.Fatalf("ParseCSR: %v", err)
			}
		})
	}
	if _, err := est.CreateCSR(est.CSRRequest{ChallengePassword: strings.Repeat("x", 256)}, p256); err == nil {
		t.Fatal("a 256-character challengePassword was accepted")
	}
	for name, exts := range map[string][]est.Extension{
		"no-value":  {{ID: asn1.ObjectIdentifier{2, 5, 29, 17}}},
		"duplicate": {{ID: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: san}, {ID: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: san}},
	} {
		if _, err := est.CreateCSR(est.CSRRequest{Extensions: exts}, p256); err == nil {
			t.Errorf("%s: CreateCSR accepted %+v", name, exts)
		}
	}
}

// TestCreateCSR_OpenSSL checks that openssl verifies the CSR's signature
// and reads its challengePassword.
func TestCreateCSR_OpenSSL(t *testing.T) {
	t.Parallel()
	openssl := needOpenSSL(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	subject, err := asn1.Marshal(pkix.Name{SerialNumber: "GH-0001"}.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	binding := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x5a}, 32))
	csr, err := est.CreateCSR(est.CSRRequest{RawSubject: subject, ChallengePassword: binding}, key)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "req.der")
	if err := os.WriteFile(f, csr.Raw, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), openssl, "req", "-inform", "DER", "-in", f, "-verify", "-noout", "-text").CombinedOutput()
	if err != nil || !strings.Contains(string(out), binding) || !strings.Contains(strings.ToLower(string(out)), "challengepassword") {
		t.Fatalf("openssl req: %v\n%s", err, out)
	}
}

// TestKeyType: GenerateKey makes each supported type, KeyTypeOf names it
// back, and String reads as the pledge prints it.
func TestKeyType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kt   est.KeyType
		want string
	}{
		{est.KeyType{Algorithm: est.OIDPublicKeyEC, Curve: est.OIDCurveP256}, "ec P-256"},
		{est.KeyType{Algorithm: est.OIDPublicKeyEC, Curve: est.OIDCurveP384}, "ec P-384"},
		{est.KeyType{Algorithm: est.OIDPublicKeyEC, Curve: est.OIDCurveP521}, "ec P-521"},
		{est.KeyType{Algorithm: est.OIDPublicKeyRSA, RSABits: 2048}, "rsa 2048"},
		{est.KeyType{Algorithm: est.OIDPublicKeyEd25519}, "ed25519"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			t.Parallel()
			if got := tc.kt.String(); got != tc.want || !tc.kt.Supported() {
				t.Fatalf("String = %q, Supported = %v; want %q, true", got, tc.kt.Supported(), tc.want)
			}
			key, err := est.GenerateKey(tc.kt)
			if err != nil {
				t.Fatal(err)
			}
			back, err := est.KeyTypeOf(key.Public())
			if err != nil || back.String() != tc.want {
				t.Fatalf("KeyTypeOf = %v, %v; want %s", back, err, tc.want)
			}
		})
	}
	for _, kt := range []est.KeyType{
		{Algorithm: est.OIDPublicKeyEC, Curve: asn1.ObjectIdentifier{1, 3, 132, 0, 10}},
		{Algorithm: est.OIDPublicKeyEC},
		{Algorithm: asn1.ObjectIdentifier{1, 2, 3}},
	} {
		if _, err := est.GenerateKey(kt); !errors.Is(err, est.ErrUnsupportedKeyType) {
			t.Errorf("GenerateKey(%s) = %v, want ErrUnsupportedKeyType", kt, err)
		}
	}
	for _, kt := range []est.KeyType{{Algorithm: est.OIDPublicKeyRSA, RSABits: 1024}, {Algorithm: est.OIDPublicKeyRSA, RSABits: 16384}} {
		if kt.Supported() {
			t.Errorf("%s is supported", kt)
		}
	}
}
