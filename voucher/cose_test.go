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
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/gatehouse-pki/gatehouse/internal/testvectors"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
)

// coseNow is the verification time of the generated PKI, inside
// [coseNotBefore, coseNotAfter].
var (
	coseNotBefore = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	coseNotAfter  = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	coseNow       = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	// vecTime is inside the validity of every cbrski certificate
	// (registrar.der ends 2025-12-08).
	vecTime = time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
)

func coseKey(tb testing.TB, alg string) crypto.Signer {
	tb.Helper()
	var k crypto.Signer
	var err error
	switch alg {
	case "ES256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "EdDSA":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		tb.Fatalf("no key for %s", alg)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// coseCert issues a certificate for pub, signed by parentKey as parent
// (self-signed when parent is nil), valid for [from, to].
func coseCert(tb testing.TB, cn string, isCA bool, pub crypto.PublicKey, parent *x509.Certificate, parentKey crypto.Signer, from, to time.Time) *x509.Certificate {
	tb.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             from,
		NotAfter:              to,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		SubjectKeyId:          []byte(cn),
	}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	if parent == nil {
		// Go copies the AKI only from a distinct parent; a self-signed
		// certificate names its own key (zlint
		// e_ext_authority_key_identifier_no_key_identifier).
		parent = tmpl
		tmpl.AuthorityKeyId = tmpl.SubjectKeyId
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	pkitest.Lint(tb, c)
	return c
}

// cosePKI is a CA and a leaf it issued for a key of the given algorithm.
type cosePKI struct {
	caKey   crypto.Signer
	ca      *x509.Certificate
	leafKey crypto.Signer
	leaf    *x509.Certificate
}

func newCosePKI(tb testing.TB, alg string) *cosePKI {
	tb.Helper()
	p := &cosePKI{caKey: coseKey(tb, "ES256"), leafKey: coseKey(tb, alg)}
	p.ca = coseCert(tb, "Test CA", true, p.caKey.Public(), nil, p.caKey, coseNotBefore, coseNotAfter)
	p.leaf = coseCert(tb, "Test signer "+alg, false, p.leafKey.Public(), p.ca, p.caKey, coseNotBefore, coseNotAfter)
	return p
}

func testPayload(tb testing.TB) []byte {
	tb.Helper()
	b, err := testMinVoucher.MarshalCBOR()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func mustSign(tb testing.TB, payload []byte, key crypto.Signer, opts COSEOptions) []byte {
	tb.Helper()
	b, err := SignCOSE(payload, key, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func anchorsAt(at time.Time, anchors ...*x509.Certificate) VerifyOptions {
	return VerifyOptions{Anchors: anchors, Time: at}
}

// coseRawSign1 builds a tagged COSE_Sign1 with arbitrary headers, signed
// over the RFC 9052 Sig_structure with key and hash, to craft what SignCOSE
// refuses to produce. prot nil means a zero-length protected header.
func coseRawSign1(tb testing.TB, key crypto.Signer, hash crypto.Hash, prot, unprot any, payload []byte) []byte {
	tb.Helper()
	protBytes := []byte{}
	if prot != nil {
		protBytes = cborEnc(tb, prot)
	}
	if unprot == nil {
		unprot = cborMap{}
	}
	tbs := cborEnc(tb, []any{"Signature1", protBytes, []byte{}, payload})
	var sig []byte
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		h := hash.New()
		h.Write(tbs)
		r, s, err := ecdsa.Sign(rand.Reader, k, h.Sum(nil))
		if err != nil {
			tb.Fatal(err)
		}
		n := (k.Curve.Params().BitSize + 7) / 8
		sig = make([]byte, 2*n)
		r.FillBytes(sig[:n])
		s.FillBytes(sig[n:])
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, tbs)
	default:
		tb.Fatalf("key %T", key)
	}
	return cborEnc(tb, cbor.Tag{Number: 18, Content: []any{protBytes, unprot, payload, sig}})
}

func TestSignCOSE_RoundTrip(t *testing.T) {
	t.Parallel()
	algs := []struct {
		name string
		alg  int64
	}{{"ES256", -7}, {"ES384", -35}, {"EdDSA", -8}}
	for _, a := range algs {
		t.Run(a.name, func(t *testing.T) {
			t.Parallel()
			p := newCosePKI(t, a.name)
			payload := testPayload(t)
			modes := []struct {
				name      string
				opts      COSEOptions
				anchor    *x509.Certificate
				chainLen  int
				protCerts bool
			}{
				{"anchor-key", COSEOptions{}, p.leaf, 1, false},
				{"kid", COSEOptions{KID: []byte("key-1")}, p.leaf, 1, false},
				{"x5chain-to-ca", COSEOptions{X5Chain: []*x509.Certificate{p.leaf}}, p.ca, 2, false},
				{"x5bag-to-ca", COSEOptions{X5Bag: []*x509.Certificate{p.ca, p.leaf}}, p.ca, 2, false},
				{"protected-x5bag", COSEOptions{X5Bag: []*x509.Certificate{p.leaf}, ProtectedCerts: true}, p.ca, 2, true},
				{"x5bag-pinned-signer", COSEOptions{X5Bag: []*x509.Certificate{p.leaf}}, p.leaf, 1, false},
			}
			for _, m := range modes {
				t.Run(m.name, func(t *testing.T) {
					t.Parallel()
					msg := mustSign(t, payload, p.leafKey, m.opts)
					if msg[0] != 0xd2 {
						t.Errorf("message does not start with tag 18: %X", msg[:2])
					}
					got, v, err := VerifyCOSE(msg, anchorsAt(coseNow, m.anchor))
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, payload) {
						t.Errorf("payload %X, want %X", got, payload)
					}
					if !v.Signer.Equal(p.leaf) {
						t.Errorf("signer %s", v.Signer.Subject)
					}
					if len(v.Chain) != m.chainLen {
						t.Errorf("chain of %d, want %d", len(v.Chain), m.chainLen)
					}
					c, err := ParseCOSE(msg)
					if err != nil {
						t.Fatal(err)
					}
					if c.Algorithm != a.alg || !c.Tagged || !bytes.Equal(c.KID, m.opts.KID) ||
						len(c.X5Bag) != len(m.opts.X5Bag) || len(c.X5Chain) != len(m.opts.X5Chain) {
						t.Errorf("parsed %+v", c)
					}
					if c.UnprotectedCerts == m.protCerts && len(m.opts.X5Bag)+len(m.opts.X5Chain) > 0 {
						t.Errorf("UnprotectedCerts = %v", c.UnprotectedCerts)
					}
					// The untagged form verifies too.
					if _, _, err := VerifyCOSE(msg[1:], anchorsAt(coseNow, m.anchor)); err != nil {
						t.Errorf("untagged: %v", err)
					}
				})
			}
		})
	}
}

// TestSignCOSE_ProtectedHeader: ES256 gives the protected header h'A10126'
// byte for byte, as in the cBRSKI examples.
func TestSignCOSE_ProtectedHeader(t *testing.T) {
	t.Parallel()
	msg := mustSign(t, testPayload(t), coseKey(t, "ES256"), COSEOptions{})
	if want := []byte{0xd2, 0x84, 0x43, 0xa1, 0x01, 0x26, 0xa0}; !bytes.HasPrefix(msg, want) {
		t.Errorf("message starts %X, want %X", msg[:7], want)
	}
}

func TestSignCOSE_Errors(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := newCosePKI(t, "ES256")
	nine := make([]*x509.Certificate, MaxCertificates+1)
	for i := range nine {
		nine[i] = p.leaf
	}
	tests := []struct {
		name    string
		payload []byte
		key     crypto.Signer
		opts    COSEOptions
		want    error
	}{
		{"rsa", testPayload(t), rsaKey, COSEOptions{}, ErrUnsupported},
		{"p521", testPayload(t), p521, COSEOptions{}, ErrUnsupported},
		{"empty-payload", nil, p.leafKey, COSEOptions{}, ErrInvalid},
		{"too-many-certs", testPayload(t), p.leafKey, COSEOptions{X5Bag: nine}, ErrTooLarge},
		{"too-large", make([]byte, MaxCOSELen), p.leafKey, COSEOptions{}, ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := SignCOSE(tc.payload, tc.key, tc.opts); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestVerifyCOSE_Headers covers reliability B07/F4: the algorithm from the
// protected header only, from an allowlist, matching the key; crit.
func TestVerifyCOSE_Headers(t *testing.T) {
	t.Parallel()
	key := coseKey(t, "ES256")
	self := coseCert(t, "self", false, key.Public(), nil, key, coseNotBefore, coseNotAfter)
	edKey := coseKey(t, "EdDSA")
	edSelf := coseCert(t, "ed self", false, edKey.Public(), nil, edKey, coseNotBefore, coseNotAfter)
	payload := testPayload(t)
	es256 := cborMap{{1, -7}}
	nine := make([]any, MaxCertificates+1)
	for i := range nine {
		nine[i] = self.Raw
	}
	tests := []struct {
		name   string
		msg    []byte
		anchor *x509.Certificate
		want   error // nil: verifies
	}{
		{"baseline", coseRawSign1(t, key, crypto.SHA256, es256, nil, payload), self, nil},
		{"eddsa-baseline", coseRawSign1(t, edKey, 0, cborMap{{1, -8}}, nil, payload), edSelf, nil},
		{"alg-unprotected-only", coseRawSign1(t, key, crypto.SHA256, nil, cborMap{{1, -7}}, payload), self, ErrUnsupported},
		{"alg-unprotected-empty-map", coseRawSign1(t, key, crypto.SHA256, cborMap{}, cborMap{{1, -7}}, payload), self, ErrUnsupported},
		{"alg-in-both", coseRawSign1(t, key, crypto.SHA256, es256, cborMap{{1, -7}}, payload), self, ErrMalformed},
		{"alg-absent", coseRawSign1(t, key, crypto.SHA256, nil, nil, payload), self, ErrUnsupported},
		{"alg-reserved-0", coseRawSign1(t, key, crypto.SHA256, cborMap{{1, 0}}, nil, payload), self, ErrUnsupported},
		{"alg-es512", coseRawSign1(t, key, crypto.SHA256, cborMap{{1, -36}}, nil, payload), self, ErrUnsupported},
		{"alg-ps256", coseRawSign1(t, key, crypto.SHA256, cborMap{{1, -37}}, nil, payload), self, ErrUnsupported},
		{"alg-rs256", coseRawSign1(t, key, crypto.SHA256, cborMap{{1, -257}}, nil, payload), self, ErrUnsupported},
		{"alg-unknown", coseRawSign1(t, key, crypto.SHA256, cborMap{{1, 9999}}, nil, payload), self, ErrUnsupported},
		{"alg-text", coseRawSign1(t, key, crypto.SHA256, cborMap{{1, "ES256"}}, nil, payload), self, ErrUnsupported},
		// ES384 names P-384; a P-256 signature over SHA-384 would pass a
		// verifier that trusted the header over the key.
		{"alg-es384-p256-key", coseRawSign1(t, key, crypto.SHA384, cborMap{{1, -35}}, nil, payload), self, ErrBadSignature},
		{"alg-eddsa-ecdsa-key", coseRawSign1(t, key, crypto.SHA256, cborMap{{1, -8}}, nil, payload), self, ErrBadSignature},
		{"alg-es256-ed25519-key", coseRawSign1(t, edKey, 0, es256, nil, payload), edSelf, ErrBadSignature},
		{"crit-unknown-int", coseRawSign1(t, key, crypto.SHA256, cborMap{{1, -7}, {2, []any{99}}, {99, 1}}, nil, payload), self, ErrUnsupported},
		{"crit-unknown-text", coseRawSign1(t, key, crypto.SHA256, cborMap{{1, -7}, {2, []any{"x-policy"}}, {"x-policy", 1}}, nil, payload), self, ErrUnsupported},
		{"crit-known-kid", coseRawSign1(t, key, crypto.SHA256, cborMap{{1, -7}, {2, []any{4}}, {4, []byte{1}}}, nil, payload), self, nil},
		{"crit-label-absent", coseRawSign1(t, key, crypto.SHA256, cborMap{{1, -7}, {2, []any{99}}}, nil, payload), self, ErrMalformed},
		{"crit-empty", coseRawSign1(t, key, crypto.SHA256, cborMap{{1, -7}, {2, []any{}}}, nil, payload), self, ErrMalformed},
		{"crit-unprotected", coseRawSign1(t, key, crypto.SHA256, es256, cborMap{{2, []any{4}}, {4, []byte{1}}}, payload), self, ErrMalformed},
		{"kid-text", coseRawSign1(t, key, crypto.SHA256, es256, cborMap{{4, "k"}}, payload), self, ErrMalformed},
		{"x5bag-garbage", coseRawSign1(t, key, crypto.SHA256, es256, cborMap{{32, []byte{1, 2}}}, payload), self, ErrMalformed},
		{"x5bag-empty-array", coseRawSign1(t, key, crypto.SHA256, es256, cborMap{{32, []any{}}}, payload), self, ErrMalformed},
		{"x5chain-too-many", coseRawSign1(t, key, crypto.SHA256, es256, cborMap{{33, nine}}, payload), self, ErrTooLarge},
		{"tag-in-unprotected", coseRawSign1(t, key, crypto.SHA256, es256, cborMap{{99, cbor.Tag{Number: 1, Content: 0}}}, payload), self, ErrMalformed},
		{"detached-payload", coseRawSign1(t, key, crypto.SHA256, es256, nil, nil), self, ErrMalformed},
		{"too-large", coseRawSign1(t, key, crypto.SHA256, es256, nil, make([]byte, MaxCOSELen)), self, ErrTooLarge},
		{"wrong-outer-tag", cborEnc(t, cbor.Tag{Number: 98, Content: []any{[]byte{0xa1, 0x01, 0x26}, cborMap{}, payload, make([]byte, 64)}}), self, ErrMalformed},
		{"array-of-3", cborEnc(t, cbor.Tag{Number: 18, Content: []any{[]byte{0xa1, 0x01, 0x26}, cborMap{}, payload}}), self, ErrMalformed},
		{"empty-signature", cborEnc(t, cbor.Tag{Number: 18, Content: []any{[]byte{0xa1, 0x01, 0x26}, cborMap{}, payload, []byte{}}}), self, ErrMalformed},
		{"protected-not-map", cborEnc(t, cbor.Tag{Number: 18, Content: []any{[]byte{0x01}, cborMap{}, payload, make([]byte, 64)}}), self, ErrMalformed},
		{"unprotected-not-map", cborEnc(t, cbor.Tag{Number: 18, Content: []any{[]byte{0xa1, 0x01, 0x26}, []any{}, payload, make([]byte, 64)}}), self, ErrMalformed},
		{"empty-input", nil, self, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, v, err := VerifyCOSE(tc.msg, anchorsAt(coseNow, tc.anchor))
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, payload) || v == nil {
					t.Errorf("payload %X, verified %v", got, v)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if got != nil || v != nil {
				t.Errorf("results returned with an error")
			}
		})
	}
}

func TestVerifyCOSE_Trust(t *testing.T) {
	t.Parallel()
	p := newCosePKI(t, "ES256")
	other := newCosePKI(t, "ES256")
	payload := testPayload(t)
	expiredLeaf := coseCert(t, "expired", false, p.leafKey.Public(), p.ca, p.caKey, coseNotBefore, coseNow.Add(-time.Hour))
	futureLeaf := coseCert(t, "future", false, p.leafKey.Public(), p.ca, p.caKey, coseNow.Add(time.Hour), coseNotAfter)
	expiredSelf := coseCert(t, "expired self", false, p.leafKey.Public(), nil, p.leafKey, coseNotBefore, coseNow.Add(-time.Hour))
	sameKeyOtherCA := coseCert(t, "same key", false, p.leafKey.Public(), other.ca, other.caKey, coseNotBefore, coseNotAfter)
	withChain := mustSign(t, payload, p.leafKey, COSEOptions{X5Chain: []*x509.Certificate{p.leaf}})
	tests := []struct {
		name string
		msg  []byte
		opts VerifyOptions
		want []error // nil: verifies
	}{
		{"ca-anchor", withChain, anchorsAt(coseNow, p.ca), nil},
		{"one-of-anchors", withChain, anchorsAt(coseNow, other.ca, p.ca), nil},
		{"intermediates-from-options", mustSign(t, payload, p.leafKey, COSEOptions{}), VerifyOptions{Anchors: []*x509.Certificate{p.ca}, Time: coseNow}, []error{ErrUntrusted}},
		{"signer-from-options", mustSign(t, payload, p.leafKey, COSEOptions{}), VerifyOptions{Anchors: []*x509.Certificate{p.ca}, Time: coseNow, Signers: []*x509.Certificate{other.leaf, p.leaf}}, nil},
		{"same-key-second-cert-chains", mustSign(t, payload, p.leafKey, COSEOptions{X5Bag: []*x509.Certificate{sameKeyOtherCA, p.leaf}}), anchorsAt(coseNow, p.ca), nil},
		{"wrong-ca-anchor", withChain, anchorsAt(coseNow, other.ca), []error{ErrUntrusted}},
		{"wrong-pinned-anchor", withChain, anchorsAt(coseNow, other.leaf), []error{ErrUntrusted}},
		{"no-certs-wrong-anchor", mustSign(t, payload, p.leafKey, COSEOptions{}), anchorsAt(coseNow, other.leaf), []error{ErrUntrusted, ErrBadSignature}},
		{"unrelated-embedded-cert", mustSign(t, payload, p.leafKey, COSEOptions{X5Bag: []*x509.Certificate{other.leaf}}), anchorsAt(coseNow, other.ca), []error{ErrUntrusted, ErrBadSignature}},
		{"no-anchor", withChain, VerifyOptions{Time: coseNow}, []error{ErrUntrusted}},
		{"expired-leaf", mustSign(t, payload, p.leafKey, COSEOptions{X5Chain: []*x509.Certificate{expiredLeaf}}), anchorsAt(coseNow, p.ca), []error{ErrExpired}},
		{"future-leaf", mustSign(t, payload, p.leafKey, COSEOptions{X5Chain: []*x509.Certificate{futureLeaf}}), anchorsAt(coseNow, p.ca), []error{ErrNotYetValid}},
		{"expired-pinned-anchor", mustSign(t, payload, p.leafKey, COSEOptions{}), anchorsAt(coseNow, expiredSelf), []error{ErrExpired}},
		{"ca-expired-at-time", withChain, anchorsAt(coseNotAfter.Add(time.Hour), p.ca), []error{ErrExpired}},
		{"eku-mismatch", withChain, VerifyOptions{Anchors: []*x509.Certificate{p.ca}, Time: coseNow, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}, []error{ErrUntrusted}},
	}
	// The leaf given only through VerifyOptions.Intermediates is not a
	// signer candidate: the message must embed it.
	tests[2].opts.Intermediates = []*x509.Certificate{p.leaf}
	if tests[2].name != "intermediates-from-options" {
		t.Fatal("test table order changed")
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, v, err := VerifyCOSE(tc.msg, tc.opts)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if !v.Signer.Equal(p.leaf) {
					t.Errorf("signer %s", v.Signer.Subject)
				}
				return
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("err = %v, want %v", err, w)
				}
			}
		})
	}
	t.Run("no-time", func(t *testing.T) {
		t.Parallel()
		if _, _, err := VerifyCOSE(withChain, VerifyOptions{Anchors: []*x509.Certificate{p.ca}}); err == nil {
			t.Error("verified without a time")
		}
	})
}

func vectorCert(tb testing.TB, name string) *x509.Certificate {
	tb.Helper()
	c, err := x509.ParseCertificate(testvectors.Read(tb, "cbrski/"+name))
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return c
}

// TestVerifyCOSE_Vectors verifies the cBRSKI examples with the keys the
// vectors README names, and decodes their payloads.
func TestVerifyCOSE_Vectors(t *testing.T) {
	t.Parallel()
	afterRegistrar := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		file    string
		anchors []string
		at      time.Time
		want    []error
		request bool
		nonce   []byte
	}{
		{"pvr/pledge", "pvr.hex", []string{"pledge.der"}, vecTime, nil, true, vecRequestNonce},
		{"rvr/registrar", "rvr.hex", []string{"registrar.der"}, vecTime, nil, true, vecRequestNonce},
		// The x5bag holds the registrar certificate and its CA.
		{"rvr/domain-ca-via-x5bag", "rvr.hex", []string{"domain_ca.der"}, vecTime, nil, true, vecRequestNonce},
		{"voucher/masa-ca", "voucher.hex", []string{"masa_ca.der"}, vecTime, nil, false, vecVoucherNonce},
		{"voucher/masa-ca-among-others", "voucher.hex", []string{"pledge.der", "masa.der", "masa_ca.der"}, vecTime, nil, false, vecVoucherNonce},
		{"voucher/masa-server-cert", "voucher.hex", []string{"masa.der"}, vecTime, []error{ErrUntrusted, ErrBadSignature}, false, nil},
		{"pvr/registrar", "pvr.hex", []string{"registrar.der"}, vecTime, []error{ErrUntrusted}, true, nil},
		{"rvr/registrar-expired", "rvr.hex", []string{"registrar.der"}, afterRegistrar, []error{ErrExpired}, true, nil},
		{"voucher/before-masa-ca", "voucher.hex", []string{"masa_ca.der"}, time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC), []error{ErrNotYetValid}, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			msg := cborHexVector(t, "cbrski/"+tc.file)
			var anchors []*x509.Certificate
			for _, a := range tc.anchors {
				anchors = append(anchors, vectorCert(t, a))
			}
			payload, v, err := VerifyCOSE(msg, anchorsAt(tc.at, anchors...))
			if tc.want != nil {
				for _, w := range tc.want {
					if !errors.Is(err, w) {
						t.Errorf("err = %v, want %v", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.Signer == nil {
				t.Fatal("no signer")
			}
			var f *Fields
			if tc.request {
				r, err := DecodeRequestCBOR(payload)
				if err != nil {
					t.Fatal(err)
				}
				f = &r.Fields
			} else {
				vch, err := DecodeVoucherCBOR(payload)
				if err != nil {
					t.Fatal(err)
				}
				f = &vch.Fields
			}
			if f.SerialNumber != vecSerial || f.Assertion != AssertionProximity || !bytes.Equal(f.Nonce, tc.nonce) {
				t.Errorf("payload fields %+v", f)
			}
		})
	}
}

// coseRanges returns the byte ranges of the protected header, payload and
// signature items inside a COSE_Sign1 message.
func coseRanges(tb testing.TB, msg []byte) [][2]int {
	tb.Helper()
	off := 0
	if msg[0] == 0xd2 {
		off = 1
	}
	var parts []cbor.RawMessage
	if err := cbor.Unmarshal(msg[off:], &parts); err != nil || len(parts) != 4 {
		tb.Fatalf("split message: %v", err)
	}
	off++ // array head 0x84
	var r [][2]int
	for i, p := range parts {
		if i != 1 { // skip the unprotected header
			r = append(r, [2]int{off, off + len(p)})
		}
		off += len(p)
	}
	return r
}

// TestVerifyCOSE_Tampered flips every byte of the protected header, the
// payload and the signature (low bit, then all bits); none verifies.
func TestVerifyCOSE_Tampered(t *testing.T) {
	t.Parallel()
	type input struct {
		name string
		msg  func(t *testing.T) ([]byte, VerifyOptions)
	}
	inputs := []input{
		{"vector-pvr", func(t *testing.T) ([]byte, VerifyOptions) {
			t.Helper()
			return cborHexVector(t, "cbrski/pvr.hex"), anchorsAt(vecTime, vectorCert(t, "pledge.der"))
		}},
		{"vector-voucher", func(t *testing.T) ([]byte, VerifyOptions) {
			t.Helper()
			return cborHexVector(t, "cbrski/voucher.hex"), anchorsAt(vecTime, vectorCert(t, "masa_ca.der"))
		}},
		{"own-es256-x5chain", func(t *testing.T) ([]byte, VerifyOptions) {
			t.Helper()
			p := newCosePKI(t, "ES256")
			return mustSign(t, testPayload(t), p.leafKey, COSEOptions{X5Chain: []*x509.Certificate{p.leaf}}), anchorsAt(coseNow, p.ca)
		}},
		{"own-eddsa", func(t *testing.T) ([]byte, VerifyOptions) {
			t.Helper()
			p := newCosePKI(t, "EdDSA")
			return mustSign(t, testPayload(t), p.leafKey, COSEOptions{}), anchorsAt(coseNow, p.leaf)
		}},
	}
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			t.Parallel()
			msg, opts := in.msg(t)
			if _, _, err := VerifyCOSE(msg, opts); err != nil {
				t.Fatalf("untampered: %v", err)
			}
			for _, r := range coseRanges(t, msg) {
				for i := r[0]; i < r[1]; i++ {
					for _, mask := range []byte{0x01, 0xff} {
						bad := bytes.Clone(msg)
						bad[i] ^= mask
						if _, _, err := VerifyCOSE(bad, opts); err == nil {
							t.Fatalf("byte %d ^ %#x verified", i, mask)
						}
					}
				}
			}
		})
	}
}

func TestStripUnprotectedCerts(t *testing.T) {
	t.Parallel()
	p := newCosePKI(t, "ES256")
	payload := testPayload(t)
	t.Run("own", func(t *testing.T) {
		t.Parallel()
		msg := mustSign(t, payload, p.leafKey, COSEOptions{
			KID: []byte("k"), X5Bag: []*x509.Certificate{p.leaf, p.ca}, X5Chain: []*x509.Certificate{p.leaf},
		})
		out, err := StripUnprotectedCerts(msg)
		if err != nil {
			t.Fatal(err)
		}
		c, err := ParseCOSE(out)
		if err != nil {
			t.Fatal(err)
		}
		if c.X5Bag != nil || c.X5Chain != nil || c.UnprotectedCerts || !c.Tagged || !bytes.Equal(c.KID, []byte("k")) {
			t.Errorf("stripped %+v", c)
		}
		orig := coseRanges(t, msg)
		got := coseRanges(t, out)
		for i := range orig {
			if !bytes.Equal(msg[orig[i][0]:orig[i][1]], out[got[i][0]:got[i][1]]) {
				t.Errorf("item %d changed", i)
			}
		}
		if _, _, err := VerifyCOSE(out, anchorsAt(coseNow, p.leaf)); err != nil {
			t.Errorf("stripped message with the signer pinned: %v", err)
		}
		// Without the embedded chain, the CA alone no longer suffices.
		if _, _, err := VerifyCOSE(out, anchorsAt(coseNow, p.ca)); !errors.Is(err, ErrUntrusted) {
			t.Errorf("stripped message against the CA: %v", err)
		}
	})
	t.Run("untagged-stays-untagged", func(t *testing.T) {
		t.Parallel()
		msg := mustSign(t, payload, p.leafKey, COSEOptions{X5Bag: []*x509.Certificate{p.leaf}})[1:]
		out, err := StripUnprotectedCerts(msg)
		if err != nil {
			t.Fatal(err)
		}
		if out[0] != 0x84 {
			t.Errorf("output starts %X", out[0])
		}
		if want := []byte{0x84, 0x43, 0xa1, 0x01, 0x26, 0xa0}; !bytes.HasPrefix(out, want) {
			t.Errorf("output starts %X, want %X", out[:6], want)
		}
		if _, _, err := VerifyCOSE(out, anchorsAt(coseNow, p.leaf)); err != nil {
			t.Error(err)
		}
	})
	t.Run("protected-certs-stay", func(t *testing.T) {
		t.Parallel()
		msg := mustSign(t, payload, p.leafKey, COSEOptions{X5Bag: []*x509.Certificate{p.leaf}, ProtectedCerts: true})
		out, err := StripUnprotectedCerts(msg)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, msg) {
			t.Error("a message without unprotected certificates changed")
		}
		if _, _, err := VerifyCOSE(out, anchorsAt(coseNow, p.ca)); err != nil {
			t.Error(err)
		}
	})
	t.Run("vector-rvr", func(t *testing.T) {
		t.Parallel()
		msg := cborHexVector(t, "cbrski/rvr.hex")
		out, err := StripUnprotectedCerts(msg)
		if err != nil {
			t.Fatal(err)
		}
		if want := []byte{0xd2, 0x84, 0x43, 0xa1, 0x01, 0x26, 0xa0}; !bytes.HasPrefix(out, want) {
			t.Errorf("output starts %X, want %X", out[:7], want)
		}
		if _, _, err := VerifyCOSE(out, anchorsAt(vecTime, vectorCert(t, "registrar.der"))); err != nil {
			t.Error(err)
		}
	})
	t.Run("malformed", func(t *testing.T) {
		t.Parallel()
		if _, err := StripUnprotectedCerts([]byte{0xd2, 0x83}); !errors.Is(err, ErrMalformed) {
			t.Errorf("err = %v", err)
		}
	})
}

func FuzzParseCOSE(f *testing.F) {
	for _, name := range []string{"cbrski/pvr.hex", "cbrski/rvr.hex", "cbrski/voucher.hex"} {
		if b := cborOptionalVector(name); b != nil {
			f.Add(b)
		}
	}
	p := newCosePKI(f, "ES256")
	ed := newCosePKI(f, "EdDSA")
	payload := testPayload(f)
	for _, opts := range []COSEOptions{
		{},
		{KID: []byte("k"), X5Bag: []*x509.Certificate{p.leaf, p.ca}},
		{X5Chain: []*x509.Certificate{p.leaf}, ProtectedCerts: true},
	} {
		msg := mustSign(f, payload, p.leafKey, opts)
		f.Add(msg)
		f.Add(msg[1:])
	}
	f.Add(mustSign(f, payload, ed.leafKey, COSEOptions{X5Chain: []*x509.Certificate{ed.leaf}}))
	// An anchor whose key never signs anything: nothing may verify under it.
	untrustedKey := coseKey(f, "ES256")
	untrusted := coseCert(f, "untrusted", true, untrustedKey.Public(), nil, untrustedKey, coseNotBefore, coseNotAfter)
	trusted := anchorsAt(coseNow, p.ca, p.leaf)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCOSE(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("parse error wraps no sentinel: %v", err)
			}
		} else {
			out, err := StripUnprotectedCerts(b)
			if err != nil {
				t.Fatalf("strip a parsed message: %v", err)
			}
			c2, err := ParseCOSE(out)
			if err != nil {
				t.Fatalf("parse stripped message: %v", err)
			}
			if c2.UnprotectedCerts || !bytes.Equal(c2.Payload, c.Payload) || c2.Tagged != c.Tagged {
				t.Fatalf("stripped message %+v from %+v", c2, c)
			}
			if _, _, err := VerifyCOSE(b, trusted); err == nil {
				if _, _, err := VerifyCOSE(out, anchorsAt(coseNow, p.leaf)); err != nil {
					t.Fatalf("stripping broke the signature: %v", err)
				}
			}
		}
		if _, _, err := VerifyCOSE(b, anchorsAt(coseNow, untrusted)); err == nil {
			t.Fatal("verified under an anchor whose key signed nothing")
		}
	})
}

func BenchmarkSignCOSE(b *testing.B) {
	p := newCosePKI(b, "ES256")
	payload := testPayload(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := SignCOSE(payload, p.leafKey, COSEOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyCOSE(b *testing.B) {
	p := newCosePKI(b, "ES256")
	payload := testPayload(b)
	cases := []struct {
		name   string
		opts   COSEOptions
		anchor *x509.Certificate
	}{
		{"anchor-key", COSEOptions{}, p.leaf},
		{"x5chain-to-ca", COSEOptions{X5Chain: []*x509.Certificate{p.leaf}}, p.ca},
	}
	for _, c := range cases {
		msg := mustSign(b, payload, p.leafKey, c.opts)
		opts := anchorsAt(coseNow, c.anchor)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := VerifyCOSE(msg, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
