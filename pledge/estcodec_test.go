package pledge_test

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

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/pledge"
)

// rfc8951CSRAttrs is the CSR attributes example of RFC 8951 §4.5.2:
// challengePassword, ecPublicKey secp384r1, an extensionRequest naming
// macAddress, and ecdsaWithSHA384.
const rfc8951CSRAttrs = "MEEGCSqGSIb3DQEJBzASBgcqhkjOPQIBMQcGBSuBBAAiMBYGCSqGSIb3DQEJDjEJBgcrBgEBAQEWBggqhkjOPQQDAw=="

func TestDecodeBase64(t *testing.T) {
	t.Parallel()
	der := bytes.Repeat([]byte{0x30, 0x82, 0xff, 0x00, 0x7e}, 40)
	std := base64.StdEncoding.EncodeToString(der)
	wrap := func(s string, n int, eol string) string {
		var b strings.Builder
		for len(s) > n {
			b.WriteString(s[:n] + eol)
			s = s[n:]
		}
		b.WriteString(s + eol)
		return b.String()
	}
	tests := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{"unwrapped", std, false},
		{"lf-64", wrap(std, 64, "\n"), false},
		{"crlf-76", wrap(std, 76, "\r\n"), false},
		{"no-padding", strings.TrimRight(std, "="), false},
		{"spaces", " " + std + " \t", false},
		{"not-base64", "MIIB*not base64*", true},
		{"url-alphabet", strings.NewReplacer("+", "-", "/", "_").Replace(std), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := pledge.DecodeBase64([]byte(tc.in))
			if tc.wantErr {
				if !errors.Is(err, pledge.ErrESTEncoding) {
					t.Fatalf("err = %v, want ErrESTEncoding", err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, der) {
				t.Fatalf("DecodeBase64 = %x, %v; want the DER", got, err)
			}
		})
	}
	if got := string(pledge.EncodeBase64(der)); got != std || strings.ContainsAny(got, "\r\n") {
		t.Fatalf("EncodeBase64 = %q, want unwrapped standard base64", got)
	}
}

func TestCertsOnly_RoundTrip(t *testing.T) {
	t.Parallel()
	ca := pkitest.NewCA(t, pkitest.Intermediate())
	der, err := pledge.MarshalCertsOnly(ca.Chain)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pledge.ParseCertsOnly(der)
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
		if _, err := pledge.ParseCertsOnly(bad); !errors.Is(err, pledge.ErrESTEncoding) {
			t.Errorf("ParseCertsOnly(%d bytes) = %v, want ErrESTEncoding", len(bad), err)
		}
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
	der, err := pledge.MarshalCertsOnly(ca.Chain)
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
	got, err := pledge.ParseCertsOnly(theirs)
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

func TestParseCSRAttrs_RFC8951(t *testing.T) {
	t.Parallel()
	der, err := pledge.DecodeBase64([]byte(rfc8951CSRAttrs))
	if err != nil {
		t.Fatal(err)
	}
	a, err := pledge.ParseCSRAttrs(der)
	if err != nil {
		t.Fatal(err)
	}
	if !a.ChallengePassword {
		t.Error("challengePassword not seen")
	}
	if a.KeyType == nil || a.KeyType.String() != "ec P-384" {
		t.Errorf("key type = %v, want ec P-384", a.KeyType)
	}
	if a.Template || a.Subject != nil || len(a.Extensions) != 0 {
		t.Errorf("unexpected template/subject/extensions: %+v", a)
	}
	empty, err := pledge.ParseCSRAttrs([]byte{0x30, 0x00})
	if err != nil || empty.ChallengePassword || empty.KeyType != nil {
		t.Fatalf("empty CsrAttrs = %+v, %v", empty, err)
	}
}

// csrTemplateAttrs builds an RFC 9908 CsrAttrs with a
// CertificationRequestInfoTemplate: subject CN (value given) and
// serialNumber (left to the client), an id-ecPublicKey P-384 key, and an
// extensionReqTemplate with a SAN value and a keyUsage left open.
func csrTemplateAttrs(san []byte) []byte {
	oid := func(s ...int) asn1.ObjectIdentifier { return asn1.ObjectIdentifier(s) }
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid(1, 2, 840, 113549, 1, 9, 7))
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid(1, 2, 840, 113549, 1, 9, 16, 2, 61))
			b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1Int64(0)
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
							b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
								b.AddASN1ObjectIdentifier(oid(2, 5, 4, 3))
								b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte("device.example")) })
							})
						})
						b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
							b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
								b.AddASN1ObjectIdentifier(oid(2, 5, 4, 5))
							})
						})
					})
					b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1ObjectIdentifier(oid(1, 2, 840, 10045, 2, 1))
							b.AddASN1ObjectIdentifier(oid(1, 3, 132, 0, 34))
						})
					})
					b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1ObjectIdentifier(oid(1, 2, 840, 113549, 1, 9, 16, 2, 62))
							b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
								b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
									b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
										b.AddASN1ObjectIdentifier(oid(2, 5, 29, 17))
										b.AddASN1OctetString(san)
									})
									b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
										b.AddASN1ObjectIdentifier(oid(2, 5, 29, 15))
										b.AddASN1Boolean(true)
									})
								})
							})
						})
					})
				})
			})
		})
	})
	return b.BytesOrPanic()
}

func TestParseCSRAttrs_Template(t *testing.T) {
	t.Parallel()
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte("device.example")}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := pledge.ParseCSRAttrs(csrTemplateAttrs(san))
	if err != nil {
		t.Fatal(err)
	}
	if !a.Template || !a.ChallengePassword || a.KeyType == nil || a.KeyType.String() != "ec P-384" {
		t.Fatalf("attrs = %+v", a)
	}
	if len(a.Subject) != 2 || a.Subject[0][0].Value == nil || a.Subject[1][0].Value != nil {
		t.Fatalf("subject template = %+v", a.Subject)
	}
	if len(a.Extensions) != 2 || !bytes.Equal(a.Extensions[0].Value, san) || a.Extensions[1].Value != nil || !a.Extensions[1].Critical {
		t.Fatalf("extensions = %+v", a.Extensions)
	}
	for _, bad := range [][]byte{nil, {0x31, 0x00}, {0x30, 0x01, 0x05}, {0x30, 0x03, 0x02, 0x01, 0x01}} {
		if _, err := pledge.ParseCSRAttrs(bad); !errors.Is(err, pledge.ErrESTEncoding) {
			t.Errorf("ParseCSRAttrs(%x) = %v, want ErrESTEncoding", bad, err)
		}
	}
}

// challengePassword returns the challengePassword of a CSR (crypto/x509
// does not expose it) and the tag of its value.
func challengePassword(t *testing.T, csr *x509.CertificateRequest) (string, cbasn1.Tag) {
	t.Helper()
	in := cryptobyte.String(csr.RawTBSCertificateRequest)
	var tbs, attrs cryptobyte.String
	var version int64
	if !in.ReadASN1(&tbs, cbasn1.SEQUENCE) || !tbs.ReadASN1Integer(&version) ||
		!tbs.SkipASN1(cbasn1.SEQUENCE) || !tbs.SkipASN1(cbasn1.SEQUENCE) ||
		!tbs.ReadASN1(&attrs, cbasn1.Tag(0).ContextSpecific().Constructed()) {
		t.Fatal("malformed CertificationRequestInfo")
	}
	for !attrs.Empty() {
		var attr, set, val cryptobyte.String
		var typ asn1.ObjectIdentifier
		var tag cbasn1.Tag
		if !attrs.ReadASN1(&attr, cbasn1.SEQUENCE) || !attr.ReadASN1ObjectIdentifier(&typ) || !attr.ReadASN1(&set, cbasn1.SET) {
			t.Fatal("malformed attribute")
		}
		if typ.Equal(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}) {
			if !set.ReadAnyASN1(&val, &tag) || !set.Empty() {
				t.Fatal("malformed challengePassword")
			}
			return string(val), tag
		}
	}
	return "", 0
}

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
			csr, err := pledge.CreateCSR(pledge.CSRRequest{
				RawSubject:        subject,
				Extensions:        []pledge.Extension{{ID: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: san}},
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
			pw, tag := challengePassword(t, csr)
			if pw != tc.pw || tag != tc.wantTag {
				t.Fatalf("challengePassword = %q (tag %d), want %q (tag %d)", pw, tag, tc.pw, tc.wantTag)
			}
		})
	}
	if _, err := pledge.CreateCSR(pledge.CSRRequest{ChallengePassword: strings.Repeat("x", 256)}, p256); err == nil {
		t.Fatal("a 256-character challengePassword was accepted")
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
	csr, err := pledge.CreateCSR(pledge.CSRRequest{RawSubject: subject, ChallengePassword: binding}, key)
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

func FuzzParseCertsOnly(f *testing.F) {
	ca := pkitest.NewCA(f, pkitest.Intermediate())
	der, err := pledge.MarshalCertsOnly(ca.Chain)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(der)
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		certs, err := pledge.ParseCertsOnly(b)
		if err != nil {
			return
		}
		// Round trip: re-encoding gives back the same certificates.
		again, err := pledge.MarshalCertsOnly(certs)
		if err != nil {
			t.Fatal(err)
		}
		back, err := pledge.ParseCertsOnly(again)
		if err != nil || len(back) != len(certs) {
			t.Fatalf("round trip: %d certificates, %v; want %d", len(back), err, len(certs))
		}
	})
}

func FuzzParseCSRAttrs(f *testing.F) {
	der, err := base64.StdEncoding.DecodeString(rfc8951CSRAttrs)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(der)
	f.Add([]byte{0x30, 0x00})
	san, _ := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte("a.example")}})
	f.Add(csrTemplateAttrs(san))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := pledge.ParseCSRAttrs(b)
		if err != nil {
			return
		}
		if !bytes.Equal(a.Raw, b) {
			t.Fatal("Raw is not the input")
		}
		if a.KeyType != nil {
			_ = a.KeyType.String()
		}
	})
}
