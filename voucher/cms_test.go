package voucher

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
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitorus/pkcs7"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gatehouse-pki/gatehouse/internal/testvectors"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
)

// cmsTestNow is the fixed test date (STYLE.md §3.12, principle 8).
var cmsTestNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// cmsVectorTime lies inside the validity of every RFC 8995 example
// certificate.
var cmsVectorTime = time.Date(2021, 6, 1, 0, 0, 0, 0, time.UTC)

// cmsTestPKI is a generated CA and a signer it issued.
type cmsTestPKI struct {
	ca      *x509.Certificate
	caKey   crypto.Signer
	leaf    *x509.Certificate
	leafKey crypto.Signer
}

// newCMSTestPKI issues a P-256 CA and a signer with the given key, both
// valid a year either side of cmsTestNow (the signer from notBefore to
// notAfter when those are set).
func newCMSTestPKI(t testing.TB, leafKey crypto.Signer, name string) *cmsTestPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name + " CA"},
		NotBefore:             cmsTestNow.AddDate(-1, 0, 0),
		NotAfter:              cmsTestNow.AddDate(1, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		SubjectKeyId:          []byte{1, 2, 3, 4},
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	pkitest.Lint(t, ca)
	if leafKey == nil {
		leafKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
	}
	leaf := cmsIssue(t, ca, caKey, leafKey.Public(), name+" signer", cmsTestNow.AddDate(0, -1, 0), cmsTestNow.AddDate(0, 1, 0))
	return &cmsTestPKI{ca: ca, caKey: caKey, leaf: leaf, leafKey: leafKey}
}

func cmsIssue(t testing.TB, ca *x509.Certificate, caKey crypto.Signer, pub crypto.PublicKey, cn string, notBefore, notAfter time.Time) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	ski := make([]byte, 20)
	rand.Read(ski)
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		SubjectKeyId: ski, // Go leaves it off leaf certificates (DESIGN.md)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pkitest.Lint(t, cert)
	return cert
}

// cmsRSAKey is generated once: RSA key generation is slow under -race.
var cmsRSAKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// cmsTestPayload is a small voucher in JSON.
func cmsTestPayload(t testing.TB) []byte {
	t.Helper()
	yes := true
	v := &Voucher{Fields: Fields{
		CreatedOn:                  cmsTestNow,
		Assertion:                  AssertionLogged,
		SerialNumber:               "SN-0001",
		PinnedDomainCert:           []byte{0x30, 0x03, 0x02, 0x01, 0x01},
		DomainCertRevocationChecks: &yes,
		Nonce:                      []byte("0123456789abcdef"),
	}}
	b, err := v.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// cmsReadVector returns the DER of a CMS vector, PEM (.pkcs) or bare
// base64 (.b64).
func cmsReadVector(t testing.TB, name string) []byte {
	t.Helper()
	raw := testvectors.Read(t, name)
	if blk, _ := pem.Decode(raw); blk != nil {
		return blk.Bytes
	}
	der, err := base64.StdEncoding.DecodeString(string(raw)) // skips line breaks
	if err != nil {
		t.Fatalf("vector %s: %v", name, err)
	}
	return der
}

func cmsReadCert(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(testvectors.Read(t, name))
	if blk == nil {
		t.Fatalf("vector %s: no PEM block", name)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("vector %s: %v", name, err)
	}
	return c
}

// cmsVectorJSON returns a vector's .json file, whose lines are wrapped at
// 60 columns even inside strings.
func cmsVectorJSON(t testing.TB, name string) []byte {
	t.Helper()
	return bytes.ReplaceAll(testvectors.Read(t, name), []byte("\n"), nil)
}

func TestVerifyCMS_RFC8995Vectors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cms     string
		anchor  string
		json    string
		request bool
		signer  string
	}{
		{name: "pledge-request/pem", cms: "rfc8995/vr_00-D0-E5-F2-00-02.pkcs", anchor: "rfc8995/vendor.crt", json: "rfc8995/vr_00-D0-E5-F2-00-02.json", request: true, signer: "00-D0-E5-F2-00-02"},
		{name: "pledge-request/b64", cms: "rfc8995/vr_00-D0-E5-F2-00-02.b64", anchor: "rfc8995/vendor.crt", json: "rfc8995/vr_00-D0-E5-F2-00-02.json", request: true, signer: "00-D0-E5-F2-00-02"},
		{name: "registrar-request/pem", cms: "rfc8995/parboiled_vr_00-D0-E5-F2-00-02.pkcs", anchor: "rfc8995/ownerca_secp384r1.crt", json: "rfc8995/parboiled_vr_00-D0-E5-F2-00-02.json", request: true, signer: "fountain-test.example.com"},
		{name: "registrar-request/b64", cms: "rfc8995/parboiled_vr_00-D0-E5-F2-00-02.b64", anchor: "rfc8995/ownerca_secp384r1.crt", json: "rfc8995/parboiled_vr_00-D0-E5-F2-00-02.json", request: true, signer: "fountain-test.example.com"},
		{name: "voucher/vendor-anchor", cms: "rfc8995/voucher_00-D0-E5-F2-00-02.pkcs", anchor: "rfc8995/vendor.crt", json: "rfc8995/voucher_00-D0-E5-F2-00-02.json", signer: "highway-test.example.com MASA"},
		{name: "voucher/masa-pinned", cms: "rfc8995/voucher_00-D0-E5-F2-00-02.b64", anchor: "rfc8995/masa.crt", json: "rfc8995/voucher_00-D0-E5-F2-00-02.json", signer: "highway-test.example.com MASA"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			der := cmsReadVector(t, tc.cms)
			anchor := cmsReadCert(t, tc.anchor)
			content, v, err := VerifyCMS(der, VerifyOptions{Anchors: []*x509.Certificate{anchor}, Time: cmsVectorTime})
			if err != nil {
				t.Fatalf("VerifyCMS: %v", err)
			}
			if got := v.Signer.Subject.String(); !strings.Contains(got, tc.signer) {
				t.Errorf("signer = %q, want it to name %q", got, tc.signer)
			}
			if last := v.Chain[len(v.Chain)-1]; !last.Equal(anchor) {
				t.Errorf("chain ends at %q, want the anchor %q", last.Subject, anchor.Subject)
			}
			want := cmsVectorJSON(t, tc.json)
			if !bytes.Equal(content, want) {
				t.Errorf("content differs from %s", tc.json)
			}
			c, err := ParseCMS(der)
			if err != nil {
				t.Fatal(err)
			}
			// The published examples: id-data, SignedData version 1,
			// SHA-256, with signed attributes and a signingTime.
			if !c.ContentType.Equal(OIDData) || c.Version != 1 || c.Digest != crypto.SHA256 || !c.SignedAttributes || c.SigningTime.IsZero() {
				t.Errorf("ParseCMS = type %v version %d digest %v attrs %v time %v", c.ContentType, c.Version, c.Digest, c.SignedAttributes, c.SigningTime)
			}
			if tc.request {
				got, err := DecodeRequestJSON(content)
				if err != nil {
					t.Fatal(err)
				}
				fromFile, err := DecodeRequestJSON(want)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(fromFile, got); diff != "" {
					t.Errorf("request differs from the .json (-file +cms):\n%s", diff)
				}
				if got.NonceText != "-_XE9zK9q8Ll1qylMtLKeg" {
					t.Errorf("nonce text = %q", got.NonceText)
				}
				return
			}
			got, err := DecodeVoucherJSON(content)
			if err != nil {
				t.Fatal(err)
			}
			fromFile, err := DecodeVoucherJSON(want)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(fromFile, got); diff != "" {
				t.Errorf("voucher differs from the .json (-file +cms):\n%s", diff)
			}
			if got.NonceText != "-_XE9zK9q8Ll1qylMtLKeg" || got.Assertion != AssertionLogged || got.SerialNumber != "00-D0-E5-F2-00-02" {
				t.Errorf("voucher = %+v", got.Fields)
			}
		})
	}
}

func TestVerifyCMS_RFC8995VoucherRefused(t *testing.T) {
	t.Parallel()
	der := cmsReadVector(t, "rfc8995/voucher_00-D0-E5-F2-00-02.b64")
	vendor := cmsReadCert(t, "rfc8995/vendor.crt")
	masa := cmsReadCert(t, "rfc8995/masa.crt")
	other := newCMSTestPKI(t, nil, "unrelated")
	tests := []struct {
		name     string
		opts     VerifyOptions
		want     error
		contains []string
	}{
		{
			name:     "expired/vendor-anchor-2030",
			opts:     VerifyOptions{Anchors: []*x509.Certificate{vendor}, Time: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)},
			want:     ErrExpired,
			contains: []string{"signer certificate", "highway-test.example.com MASA", "expired at 2023-04-13T21:40:16Z", "2030-01-01T00:00:00Z"},
		},
		{
			name:     "expired/masa-pinned-2030",
			opts:     VerifyOptions{Anchors: []*x509.Certificate{masa}, Time: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)},
			want:     ErrExpired,
			contains: []string{"signer certificate", "highway-test.example.com MASA", "expired"},
		},
		{
			name:     "not-yet-valid/2020",
			opts:     VerifyOptions{Anchors: []*x509.Certificate{vendor}, Time: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)},
			want:     ErrNotYetValid,
			contains: []string{"highway-test.example.com MASA"},
		},
		{
			name: "untrusted/unrelated-anchor",
			opts: VerifyOptions{Anchors: []*x509.Certificate{other.ca}, Time: cmsVectorTime},
			want: ErrUntrusted,
		},
		{
			name: "untrusted/wrong-vendor-role",
			opts: VerifyOptions{Anchors: []*x509.Certificate{cmsReadCert(t, "rfc8995/ownerca_secp384r1.crt")}, Time: cmsVectorTime},
			want: ErrUntrusted,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			content, v, err := VerifyCMS(der, tc.opts)
			if !errors.Is(err, tc.want) {
				t.Fatalf("VerifyCMS error = %v, want %v", err, tc.want)
			}
			if content != nil || v != nil {
				t.Errorf("VerifyCMS returned content or a result with an error")
			}
			for _, s := range tc.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestSignCMS_RoundTrip(t *testing.T) {
	t.Parallel()
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signingTime := cmsTestNow.Add(-time.Hour)
	tests := []struct {
		name        string
		key         crypto.Signer
		opts        CMSOptions
		wantType    asn1.ObjectIdentifier
		wantVersion int
		wantDigest  crypto.Hash
	}{
		{name: "p256/voucher-type", wantType: OIDAnimaJSONVoucher, wantVersion: 3, wantDigest: crypto.SHA256},
		{name: "p256/id-data", opts: CMSOptions{ContentType: OIDData}, wantType: OIDData, wantVersion: 1, wantDigest: crypto.SHA256},
		{name: "p256/signing-time", opts: CMSOptions{SigningTime: signingTime}, wantType: OIDAnimaJSONVoucher, wantVersion: 3, wantDigest: crypto.SHA256},
		{name: "p384", key: p384, wantType: OIDAnimaJSONVoucher, wantVersion: 3, wantDigest: crypto.SHA384},
		{name: "rsa2048", key: cmsRSAKey(), wantType: OIDAnimaJSONVoucher, wantVersion: 3, wantDigest: crypto.SHA256},
		{name: "ed25519", key: edKey, opts: CMSOptions{SigningTime: signingTime}, wantType: OIDAnimaJSONVoucher, wantVersion: 3, wantDigest: crypto.SHA512},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pki := newCMSTestPKI(t, tc.key, tc.name)
			payload := cmsTestPayload(t)
			der, err := SignCMS(payload, pki.leafKey, pki.leaf, []*x509.Certificate{pki.ca}, tc.opts)
			if err != nil {
				t.Fatalf("SignCMS: %v", err)
			}
			content, v, err := VerifyCMS(der, VerifyOptions{Anchors: []*x509.Certificate{pki.ca}, Time: cmsTestNow})
			if err != nil {
				t.Fatalf("VerifyCMS: %v", err)
			}
			if !bytes.Equal(content, payload) {
				t.Errorf("content = %q, want %q", content, payload)
			}
			if !v.Signer.Equal(pki.leaf) || len(v.Chain) != 2 || !v.Chain[1].Equal(pki.ca) {
				t.Errorf("verified signer %q chain length %d", v.Signer.Subject, len(v.Chain))
			}
			c, err := ParseCMS(der)
			if err != nil {
				t.Fatal(err)
			}
			if !c.ContentType.Equal(tc.wantType) || c.Version != tc.wantVersion || c.Digest != tc.wantDigest || !c.SignedAttributes {
				t.Errorf("ParseCMS = type %v version %d digest %v attrs %v, want %v %d %v true",
					c.ContentType, c.Version, c.Digest, c.SignedAttributes, tc.wantType, tc.wantVersion, tc.wantDigest)
			}
			if !c.SigningTime.Equal(tc.opts.SigningTime) {
				t.Errorf("signing time = %v, want %v (zero means absent)", c.SigningTime, tc.opts.SigningTime)
			}
			if len(c.Certificates) != 2 || !c.Certificates[0].Equal(pki.leaf) || !c.Certificates[1].Equal(pki.ca) {
				t.Errorf("certificates: %d, want leaf then CA", len(c.Certificates))
			}
			// The signer chains to the CA, and also verifies pinned.
			if _, _, err := VerifyCMS(der, VerifyOptions{Anchors: []*x509.Certificate{pki.leaf}, Time: cmsTestNow}); err != nil {
				t.Errorf("VerifyCMS with the signer pinned: %v", err)
			}
		})
	}
}

func TestSignCMS_Refused(t *testing.T) {
	t.Parallel()
	pki := newCMSTestPKI(t, nil, "refused")
	other := newCMSTestPKI(t, nil, "other")
	payload := cmsTestPayload(t)
	nine := make([]*x509.Certificate, MaxCertificates)
	for i := range nine {
		nine[i] = pki.ca
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallPKI := newCMSTestPKI(t, small, "small-rsa")
	tests := []struct {
		name    string
		payload []byte
		key     crypto.Signer
		cert    *x509.Certificate
		chain   []*x509.Certificate
		opts    CMSOptions
		want    error
	}{
		{name: "empty-payload", payload: nil, key: pki.leafKey, cert: pki.leaf, want: ErrInvalid},
		{name: "key-certificate-mismatch", payload: payload, key: other.leafKey, cert: pki.leaf, want: ErrInvalid},
		{name: "nil-certificate", payload: payload, key: pki.leafKey, want: ErrInvalid},
		{name: "too-many-certificates", payload: payload, key: pki.leafKey, cert: pki.leaf, chain: nine, want: ErrTooLarge},
		{name: "other-content-type", payload: payload, key: pki.leafKey, cert: pki.leaf, opts: CMSOptions{ContentType: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 1}}, want: ErrUnsupported},
		{name: "rsa-1024", payload: payload, key: small, cert: smallPKI.leaf, want: ErrUnsupported},
		{name: "too-large", payload: bytes.Repeat([]byte("x"), MaxCMSSize), key: pki.leafKey, cert: pki.leaf, want: ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			der, err := SignCMS(tc.payload, tc.key, tc.cert, tc.chain, tc.opts)
			if !errors.Is(err, tc.want) || der != nil {
				t.Fatalf("SignCMS = %d bytes, %v; want %v", len(der), err, tc.want)
			}
		})
	}
}

// errFailingSigner is what cmsFailingSigner returns.
var errFailingSigner = errors.New("hsm unavailable")

type cmsFailingSigner struct{ crypto.Signer }

func (cmsFailingSigner) Sign(_ io.Reader, _ []byte, _ crypto.SignerOpts) ([]byte, error) {
	return nil, errFailingSigner
}

func TestSignCMS_SignerFailure(t *testing.T) {
	t.Parallel()
	pki := newCMSTestPKI(t, nil, "failing")
	_, err := SignCMS(cmsTestPayload(t), cmsFailingSigner{pki.leafKey}, pki.leaf, nil, CMSOptions{})
	if !errors.Is(err, errFailingSigner) {
		t.Fatalf("SignCMS error = %v, want the signer's error", err)
	}
}

// TestSignCMS_OpenSSL checks that a third-party CMS implementation accepts
// our signature and recovers the exact payload.
func TestSignCMS_OpenSSL(t *testing.T) {
	t.Parallel()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not on PATH")
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		key  crypto.Signer
		opts CMSOptions
	}{
		{name: "p256/voucher-type"},
		{name: "p256/id-data-signing-time", opts: CMSOptions{ContentType: OIDData, SigningTime: cmsTestNow}},
		{name: "rsa2048", key: cmsRSAKey()},
		{name: "ed25519", key: edKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pki := newCMSTestPKI(t, tc.key, tc.name)
			payload := cmsTestPayload(t)
			der, err := SignCMS(payload, pki.leafKey, pki.leaf, nil, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			caFile := filepath.Join(dir, "ca.pem")
			inFile := filepath.Join(dir, "voucher.der")
			outFile := filepath.Join(dir, "payload.json")
			if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pki.ca.Raw}), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(inFile, der, 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(t.Context(), openssl, "cms", "-verify", "-binary", "-inform", "DER",
				"-in", inFile, "-CAfile", caFile, "-purpose", "any",
				"-attime", strconv.FormatInt(cmsTestNow.Unix(), 10), "-out", outFile)
			if out, err := cmd.CombinedOutput(); err != nil {
				if _, isEd := tc.key.(ed25519.PrivateKey); isEd && bytes.Contains(out, []byte("eddsa_digest_signverify_init:invalid digest")) {
					// OpenSSL 3.0 cannot sign or verify Ed25519 CMS with
					// signed attributes at all (fixed in later releases).
					t.Skipf("this openssl cannot verify Ed25519 CMS: %s", out)
				}
				t.Fatalf("openssl cms -verify: %v\n%s", err, out)
			}
			got, err := os.ReadFile(outFile)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, payload) {
				t.Errorf("openssl output = %q, want %q", got, payload)
			}
		})
	}
}

// TestVerifyCMS_SigningTimeIgnored is attack A19: a signingTime inside the
// signer's validity does not rescue a signer that has expired at the
// verification time.
func TestVerifyCMS_SigningTimeIgnored(t *testing.T) {
	t.Parallel()
	pki := newCMSTestPKI(t, nil, "a19")
	der, err := SignCMS(cmsTestPayload(t), pki.leafKey, pki.leaf, nil, CMSOptions{SigningTime: cmsTestNow})
	if err != nil {
		t.Fatal(err)
	}
	later := pki.leaf.NotAfter.Add(time.Second)
	_, _, err = VerifyCMS(der, VerifyOptions{Anchors: []*x509.Certificate{pki.ca}, Time: later})
	if !errors.Is(err, ErrExpired) {
		t.Fatalf("VerifyCMS after the signer's NotAfter = %v, want ErrExpired", err)
	}
}

func TestVerifyCMS_Options(t *testing.T) {
	t.Parallel()
	pki := newCMSTestPKI(t, nil, "options")
	der, err := SignCMS(cmsTestPayload(t), pki.leafKey, pki.leaf, nil, CMSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := VerifyCMS(der, VerifyOptions{Time: cmsTestNow}); !errors.Is(err, ErrUntrusted) {
		t.Errorf("no anchors: %v, want ErrUntrusted", err)
	}
	if _, _, err := VerifyCMS(der, VerifyOptions{Anchors: []*x509.Certificate{pki.ca}}); err == nil {
		t.Errorf("no verification time: accepted")
	}
	// The CA is offered as an intermediate under a different root: no
	// chain to the anchor, so untrusted.
	other := newCMSTestPKI(t, nil, "other-root")
	if _, _, err := VerifyCMS(der, VerifyOptions{Anchors: []*x509.Certificate{other.ca}, Intermediates: []*x509.Certificate{pki.ca}, Time: cmsTestNow}); !errors.Is(err, ErrUntrusted) {
		t.Errorf("unrelated anchor with intermediates: %v, want ErrUntrusted", err)
	}
}

// cmsSpec describes a SignedData for cmsBuild: a hand-made DER writer that
// can break each rule ParseCMS and VerifyCMS enforce, while still signing
// what it writes with a real key.
type cmsSpec struct {
	version          int64
	digestOID        asn1.ObjectIdentifier
	sigOID           asn1.ObjectIdentifier
	eContentType     asn1.ObjectIdentifier
	attrContentType  asn1.ObjectIdentifier
	noSignedAttrs    bool
	noMessageDigest  bool
	dupMessageDigest bool
	wrongDigest      bool
	detached         bool
	certs            []*x509.Certificate
	signerInfos      int
	useSKI           []byte
	content          []byte
}

var (
	cmsOIDMD5  = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 5}
	cmsOIDSHA1 = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
)

func cmsBuild(t testing.TB, pki *cmsTestPKI, s cmsSpec) []byte {
	t.Helper()
	if s.version == 0 {
		s.version = 1
	}
	if s.digestOID == nil {
		s.digestOID = oidSHA256
	}
	if s.sigOID == nil {
		s.sigOID = oidECDSAWithSHA256
	}
	if s.eContentType == nil {
		s.eContentType = oidData
	}
	if s.attrContentType == nil {
		s.attrContentType = s.eContentType
	}
	if s.signerInfos == 0 {
		s.signerInfos = 1
	}
	if s.content == nil {
		s.content = cmsTestPayload(t)
	}
	digest := cryptoSHA256(s.content)
	if s.wrongDigest {
		digest[0] ^= 0xff
	}
	addAttr := func(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, value func(*cryptobyte.Builder)) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			b.AddASN1(cbasn1.SET, value)
		})
	}
	attrsBody := func(b *cryptobyte.Builder) {
		addAttr(b, oidAttrContentType, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(s.attrContentType) })
		if !s.noMessageDigest {
			addAttr(b, oidAttrMessageDigest, func(b *cryptobyte.Builder) { b.AddASN1OctetString(digest) })
		}
		if s.dupMessageDigest {
			addAttr(b, oidAttrMessageDigest, func(b *cryptobyte.Builder) { b.AddASN1OctetString(digest) })
		}
	}
	var setB cryptobyte.Builder
	setB.AddASN1(cbasn1.SET, attrsBody)
	signedSet := setB.BytesOrPanic()
	var sig []byte
	var err error
	if s.noSignedAttrs {
		sig, err = pki.leafKey.Sign(rand.Reader, digest, crypto.SHA256)
	} else {
		sig, err = pki.leafKey.Sign(rand.Reader, cryptoSHA256(signedSet), crypto.SHA256)
	}
	if err != nil {
		t.Fatal(err)
	}
	algID := func(b *cryptobyte.Builder, oid asn1.ObjectIdentifier) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oid) })
	}
	signerInfo := func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			if s.useSKI != nil {
				b.AddASN1Int64(3)
				b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(s.useSKI) })
			} else {
				b.AddASN1Int64(1)
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddBytes(pki.leaf.RawIssuer)
					b.AddASN1BigInt(pki.leaf.SerialNumber)
				})
			}
			algID(b, s.digestOID)
			if !s.noSignedAttrs {
				b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), attrsBody)
			}
			algID(b, s.sigOID)
			b.AddASN1OctetString(sig)
		})
	}
	var out cryptobyte.Builder
	out.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oidSignedData)
		b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(s.version)
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { algID(b, s.digestOID) })
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(s.eContentType)
					if !s.detached {
						b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
							b.AddASN1OctetString(s.content)
						})
					}
				})
				if len(s.certs) > 0 {
					b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
						for _, c := range s.certs {
							b.AddBytes(c.Raw)
						}
					})
				}
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
					for range s.signerInfos {
						signerInfo(b)
					}
				})
			})
		})
	})
	return out.BytesOrPanic()
}

func cryptoSHA256(b []byte) []byte {
	h := crypto.SHA256.New()
	h.Write(b)
	return h.Sum(nil)
}

// cmsIndefinite re-encodes the outer SEQUENCE of der with an indefinite
// length (BER).
func cmsIndefinite(t testing.TB, der []byte) []byte {
	t.Helper()
	s := cryptobyte.String(der)
	var body cryptobyte.String
	if !s.ReadASN1(&body, cbasn1.SEQUENCE) {
		t.Fatal("not a SEQUENCE")
	}
	out := append([]byte{0x30, 0x80}, body...)
	return append(out, 0, 0)
}

// cmsDeep nests n SEQUENCEs with definite lengths.
func cmsDeep(n int) []byte {
	b := []byte{0x05, 0x00}
	for range n {
		var bb cryptobyte.Builder
		bb.AddASN1(cbasn1.SEQUENCE, func(c *cryptobyte.Builder) { c.AddBytes(b) })
		b = bb.BytesOrPanic()
	}
	return b
}

func TestParseCMS_Limits(t *testing.T) {
	t.Parallel()
	pki := newCMSTestPKI(t, nil, "limits")
	nine := make([]*x509.Certificate, MaxCertificates+1)
	for i := range nine {
		nine[i] = pki.leaf
	}
	good := cmsBuild(t, pki, cmsSpec{certs: []*x509.Certificate{pki.leaf}})

	tests := []struct {
		name       string
		der        []byte
		wantParse  error // from ParseCMS; nil means it parses
		wantVerify error // from VerifyCMS when ParseCMS succeeds
	}{
		{name: "baseline/hand-built", der: good},
		{name: "baseline/ski-version-3", der: cmsBuild(t, pki, cmsSpec{version: 3, useSKI: pki.leaf.SubjectKeyId, eContentType: oidAnimaJSONVoucher, certs: []*x509.Certificate{pki.leaf}})},
		{name: "certificates/nine", der: cmsBuild(t, pki, cmsSpec{certs: nine}), wantParse: ErrTooLarge},
		{name: "signerinfos/two", der: cmsBuild(t, pki, cmsSpec{signerInfos: 2, certs: []*x509.Certificate{pki.leaf}}), wantParse: ErrUnsupported},
		{name: "signerinfos/none", der: cmsBuild(t, pki, cmsSpec{signerInfos: -1}), wantParse: ErrMalformed},
		{name: "ber/indefinite-length", der: cmsIndefinite(t, good), wantParse: ErrMalformed},
		{name: "ber/trailing-data", der: append(bytes.Clone(good), 0x05, 0x00), wantParse: ErrMalformed},
		{name: "nesting/17", der: cmsDeep(MaxCMSDepth + 1), wantParse: ErrTooLarge},
		{name: "nesting/thousands", der: cmsDeep(8000), wantParse: ErrTooLarge},
		{name: "size/64KiB+1", der: make([]byte, MaxCMSSize+1), wantParse: ErrTooLarge},
		{name: "empty", der: nil, wantParse: ErrMalformed},
		{name: "digest/md5", der: cmsBuild(t, pki, cmsSpec{digestOID: cmsOIDMD5}), wantParse: ErrUnsupported},
		{name: "digest/sha1", der: cmsBuild(t, pki, cmsSpec{digestOID: cmsOIDSHA1}), wantParse: ErrUnsupported},
		{name: "signature/ecdsa-sha1", der: cmsBuild(t, pki, cmsSpec{sigOID: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}}), wantParse: ErrUnsupported},
		{name: "signature/ecdsa-sha384-with-sha256-digest", der: cmsBuild(t, pki, cmsSpec{sigOID: oidECDSAWithSHA384}), wantParse: ErrUnsupported},
		{name: "econtenttype/other", der: cmsBuild(t, pki, cmsSpec{eContentType: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 1}}), wantParse: ErrUnsupported},
		{name: "econtent/detached", der: cmsBuild(t, pki, cmsSpec{detached: true}), wantParse: ErrUnsupported},
		{name: "version/2", der: cmsBuild(t, pki, cmsSpec{version: 2}), wantParse: ErrUnsupported},
		{name: "attributes/contenttype-mismatch", der: cmsBuild(t, pki, cmsSpec{eContentType: oidAnimaJSONVoucher, attrContentType: oidData}), wantParse: ErrInvalid},
		{name: "attributes/no-message-digest", der: cmsBuild(t, pki, cmsSpec{noMessageDigest: true}), wantParse: ErrInvalid},
		{name: "attributes/duplicate", der: cmsBuild(t, pki, cmsSpec{dupMessageDigest: true}), wantParse: ErrInvalid},
		{name: "attributes/absent", der: cmsBuild(t, pki, cmsSpec{noSignedAttrs: true, certs: []*x509.Certificate{pki.leaf}}), wantVerify: ErrInvalid},
		{name: "attributes/digest-mismatch", der: cmsBuild(t, pki, cmsSpec{wrongDigest: true, certs: []*x509.Certificate{pki.leaf}}), wantVerify: ErrBadSignature},
		{name: "signer/unknown-issuer-and-serial", der: cmsBuild(t, newCMSTestPKI(t, nil, "stranger"), cmsSpec{certs: []*x509.Certificate{pki.leaf}}), wantVerify: ErrUntrusted},
		{name: "signer/ski-version-mismatch", der: cmsPatchSignerVersion(t, cmsBuild(t, pki, cmsSpec{version: 3, useSKI: pki.leaf.SubjectKeyId})), wantParse: ErrMalformed},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			c, err := ParseCMS(tc.der)
			elapsed := time.Since(start)
			if !errors.Is(err, tc.wantParse) || (tc.wantParse == nil && err != nil) {
				t.Fatalf("ParseCMS error = %v, want %v", err, tc.wantParse)
			}
			// Attack table A17: refused before any chain building, fast.
			if tc.wantParse != nil {
				if elapsed > 50*time.Millisecond {
					t.Errorf("ParseCMS took %v to refuse", elapsed)
				}
				if _, _, err := VerifyCMS(tc.der, VerifyOptions{Anchors: []*x509.Certificate{pki.ca}, Time: cmsTestNow}); !errors.Is(err, tc.wantParse) {
					t.Errorf("VerifyCMS error = %v, want %v", err, tc.wantParse)
				}
				return
			}
			if c == nil {
				t.Fatal("ParseCMS returned nil without an error")
			}
			_, _, err = VerifyCMS(tc.der, VerifyOptions{Anchors: []*x509.Certificate{pki.ca}, Time: cmsTestNow})
			if !errors.Is(err, tc.wantVerify) || (tc.wantVerify == nil && err != nil) {
				t.Fatalf("VerifyCMS error = %v, want %v", err, tc.wantVerify)
			}
		})
	}
}

// cmsPatchSignerVersion rewrites the SignerInfo version 3 of a
// hand-built SKI artifact to 1 (the byte sequence 02 01 03 80 is unique:
// INTEGER 3 followed by the [0] subjectKeyIdentifier).
func cmsPatchSignerVersion(t testing.TB, der []byte) []byte {
	t.Helper()
	i := bytes.Index(der, []byte{0x02, 0x01, 0x03, 0x80})
	if i < 0 {
		t.Fatal("SignerInfo version not found")
	}
	out := bytes.Clone(der)
	out[i+2] = 0x01
	return out
}

// TestVerifyCMS_NoEmbeddedCertificates covers artifacts that carry no
// certificate: the signer is found among the anchors, or else the
// signature must verify under an anchor's own key.
func TestVerifyCMS_NoEmbeddedCertificates(t *testing.T) {
	t.Parallel()
	pki := newCMSTestPKI(t, nil, "bare")
	other := newCMSTestPKI(t, nil, "bare-other")
	tests := []struct {
		name    string
		der     []byte
		anchors []*x509.Certificate
		inter   []*x509.Certificate
		want    error
	}{
		{name: "issuer-serial/anchor-is-signer", der: cmsBuild(t, pki, cmsSpec{}), anchors: []*x509.Certificate{pki.leaf}},
		{name: "issuer-serial/signer-as-intermediate", der: cmsBuild(t, pki, cmsSpec{}), anchors: []*x509.Certificate{pki.ca}, inter: []*x509.Certificate{pki.leaf}},
		{name: "unknown-ski/anchor-key", der: cmsBuild(t, pki, cmsSpec{version: 3, useSKI: []byte{9, 9, 9}}), anchors: []*x509.Certificate{other.ca, pki.leaf}},
		{name: "unknown-ski/wrong-anchor", der: cmsBuild(t, pki, cmsSpec{version: 3, useSKI: []byte{9, 9, 9}}), anchors: []*x509.Certificate{other.leaf}, want: ErrUntrusted},
		{name: "issuer-serial/only-ca", der: cmsBuild(t, pki, cmsSpec{}), anchors: []*x509.Certificate{pki.ca}, want: ErrUntrusted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			content, v, err := VerifyCMS(tc.der, VerifyOptions{Anchors: tc.anchors, Intermediates: tc.inter, Time: cmsTestNow})
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("VerifyCMS error = %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("VerifyCMS: %v", err)
			}
			if !v.Signer.Equal(pki.leaf) || !bytes.Equal(content, cmsTestPayload(t)) {
				t.Errorf("signer %q, content %q", v.Signer.Subject, content)
			}
		})
	}
}

// cmsRegions returns the offsets of the content, the signed attributes and
// the signature inside der.
func cmsRegions(t testing.TB, der []byte) (content, attrs, sig [2]int) {
	t.Helper()
	c, err := ParseCMS(der)
	if err != nil {
		t.Fatal(err)
	}
	find := func(b []byte) [2]int {
		i := bytes.Index(der, b)
		if i < 0 || bytes.Contains(der[i+1:], b) {
			t.Fatalf("region not found exactly once")
		}
		return [2]int{i, i + len(b)}
	}
	// The signed attributes are carried with tag [0]; skip the tag byte.
	return find(c.Content), find(c.signer.signedAttrs[1:]), find(c.signer.signature)
}

func TestVerifyCMS_Tamper(t *testing.T) {
	t.Parallel()
	pki := newCMSTestPKI(t, nil, "tamper")
	own, err := SignCMS(cmsTestPayload(t), pki.leafKey, pki.leaf, []*x509.Certificate{pki.ca}, CMSOptions{SigningTime: cmsTestNow})
	if err != nil {
		t.Fatal(err)
	}
	ownOpts := VerifyOptions{Anchors: []*x509.Certificate{pki.ca}, Time: cmsTestNow}

	type artifact struct {
		name   string
		der    func(t *testing.T) []byte
		opts   func(t *testing.T) VerifyOptions
		stride int
	}
	artifacts := []artifact{
		{name: "own", der: func(*testing.T) []byte { return own }, opts: func(*testing.T) VerifyOptions { return ownOpts }, stride: 1},
		{
			name: "rfc8995-voucher",
			der:  func(t *testing.T) []byte { return cmsReadVector(t, "rfc8995/voucher_00-D0-E5-F2-00-02.b64") },
			opts: func(t *testing.T) VerifyOptions {
				return VerifyOptions{Anchors: []*x509.Certificate{cmsReadCert(t, "rfc8995/vendor.crt")}, Time: cmsVectorTime}
			},
			stride: 7,
		},
	}
	for _, a := range artifacts {
		t.Run(a.name, func(t *testing.T) {
			t.Parallel()
			der, opts := a.der(t), a.opts(t)
			if _, _, err := VerifyCMS(der, opts); err != nil {
				t.Fatalf("untampered artifact: %v", err)
			}
			content, attrs, sig := cmsRegions(t, der)
			regions := []struct {
				name   string
				span   [2]int
				stride int
				want   error // nil: any error
			}{
				{name: "content", span: content, stride: a.stride, want: ErrBadSignature},
				{name: "signed-attributes", span: attrs, stride: 1},
				{name: "signature", span: sig, stride: 1},
			}
			for _, r := range regions {
				tried := 0
				for i := r.span[0]; i < r.span[1]; i += r.stride {
					bad := bytes.Clone(der)
					bad[i] ^= 0xff
					_, v, err := VerifyCMS(bad, opts)
					tried++
					if err == nil || v != nil {
						t.Fatalf("%s: flipping byte %d was accepted", r.name, i)
					}
					if r.want != nil && !errors.Is(err, r.want) {
						t.Fatalf("%s: flipping byte %d: %v, want %v", r.name, i, err, r.want)
					}
				}
				if tried == 0 {
					t.Errorf("%s: no byte tried", r.name)
				}
			}
		})
	}
}

// cmsFuzzKeys is the fixed PKI the fuzz target checks against, generated
// once outside f.Fuzz.
type cmsFuzzKeys struct {
	pki   *cmsTestPKI
	other *cmsTestPKI
}

func FuzzParseCMS(f *testing.F) {
	keys := cmsFuzzKeys{pki: newCMSTestPKI(f, nil, "fuzz"), other: newCMSTestPKI(f, nil, "fuzz-other")}
	own, err := SignCMS(cmsTestPayload(f), keys.pki.leafKey, keys.pki.leaf, []*x509.Certificate{keys.pki.ca}, CMSOptions{SigningTime: cmsTestNow})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(own)
	f.Add(cmsBuild(f, keys.pki, cmsSpec{version: 3, useSKI: keys.pki.leaf.SubjectKeyId, eContentType: oidAnimaJSONVoucher}))
	f.Add(cmsBuild(f, keys.pki, cmsSpec{certs: []*x509.Certificate{keys.pki.leaf, keys.pki.ca}}))
	f.Add(cmsIndefinite(f, own))
	f.Add(cmsDeep(20))
	for _, name := range []string{"vr_00-D0-E5-F2-00-02.b64", "parboiled_vr_00-D0-E5-F2-00-02.b64", "voucher_00-D0-E5-F2-00-02.b64"} {
		if der := cmsOptionalVector(name); der != nil {
			f.Add(der)
		}
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		c, err := ParseCMS(der)
		if err != nil {
			if !cmsIsSentinel(err) {
				t.Fatalf("ParseCMS error wraps no sentinel: %v", err)
			}
			return
		}
		if len(c.Certificates) > MaxCertificates || len(der) > MaxCMSSize {
			t.Fatalf("ParseCMS accepted %d certificates, %d bytes", len(c.Certificates), len(der))
		}
		content, v, err := VerifyCMS(der, VerifyOptions{Anchors: []*x509.Certificate{keys.pki.ca}, Time: cmsTestNow})
		if err == nil {
			// Only our CA's signer can produce an accepted artifact.
			if !v.Chain[len(v.Chain)-1].Equal(keys.pki.ca) || !v.Signer.Equal(keys.pki.leaf) || !bytes.Equal(content, c.Content) {
				t.Fatalf("accepted a signer %q that does not chain to the anchor", v.Signer.Subject)
			}
		} else if !cmsIsSentinel(err) {
			t.Fatalf("VerifyCMS error wraps no sentinel: %v", err)
		}
		if _, _, err := VerifyCMS(der, VerifyOptions{Anchors: []*x509.Certificate{keys.other.ca}, Time: cmsTestNow}); err == nil {
			t.Fatal("accepted under an unrelated anchor")
		}
	})
}

// cmsOptionalVector returns an RFC 8995 CMS vector's DER, or nil when the
// vectors are absent (fuzz seeding must not skip the target).
func cmsOptionalVector(name string) []byte {
	dir := os.Getenv("GATEHOUSE_VECTORS")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "vectors")
	}
	raw, err := os.ReadFile(filepath.Join(dir, "rfc8995", name))
	if err != nil {
		return nil
	}
	der, err := base64.StdEncoding.DecodeString(string(raw))
	if err != nil {
		return nil
	}
	return der
}

func cmsIsSentinel(err error) bool {
	for _, s := range []error{ErrMalformed, ErrInvalid, ErrTooLarge, ErrUnsupported, ErrBadSignature, ErrUntrusted, ErrExpired, ErrNotYetValid} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func BenchmarkSignCMS(b *testing.B) {
	pki := newCMSTestPKI(b, nil, "bench")
	payload := cmsTestPayload(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := SignCMS(payload, pki.leafKey, pki.leaf, []*x509.Certificate{pki.ca}, CMSOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyCMS(b *testing.B) {
	pki := newCMSTestPKI(b, nil, "bench")
	der, err := SignCMS(cmsTestPayload(b), pki.leafKey, pki.leaf, []*x509.Certificate{pki.ca}, CMSOptions{})
	if err != nil {
		b.Fatal(err)
	}
	opts := VerifyOptions{Anchors: []*x509.Certificate{pki.ca}, Time: cmsTestNow}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := VerifyCMS(der, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSignCMS_LibraryParses checks that the library's own parser reads what
// SignCMS writes (digitorus/pkcs7 is what peers in Go would use).
func TestSignCMS_LibraryParses(t *testing.T) {
	t.Parallel()
	pki := newCMSTestPKI(t, nil, "library")
	payload := cmsTestPayload(t)
	der, err := SignCMS(payload, pki.leafKey, pki.leaf, []*x509.Certificate{pki.ca}, CMSOptions{SigningTime: cmsTestNow})
	if err != nil {
		t.Fatal(err)
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		t.Fatalf("pkcs7.Parse: %v", err)
	}
	if !bytes.Equal(p7.Content, payload) || len(p7.Certificates) != 2 {
		t.Errorf("pkcs7.Parse: content %q, %d certificates", p7.Content, len(p7.Certificates))
	}
	// The library checks the signature (not trust) at a given time.
	pool := x509.NewCertPool()
	pool.AddCert(pki.ca)
	if err := p7.VerifyWithChainAtTime(pool, cmsTestNow); err != nil {
		t.Errorf("pkcs7 VerifyWithChainAtTime: %v", err)
	}
}
