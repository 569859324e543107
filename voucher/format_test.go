package voucher

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/gatehouse-pki/gatehouse/internal/testvectors"
)

func TestUnwrap_Armours(t *testing.T) {
	t.Parallel()
	der := testvectorCMS(t)
	wrap64 := func(s string, n int, eol string) string {
		var b strings.Builder
		for len(s) > n {
			b.WriteString(s[:n] + eol)
			s = s[n:]
		}
		b.WriteString(s + eol)
		return b.String()
	}
	b64 := base64.StdEncoding.EncodeToString(der)
	tests := []struct {
		name string
		in   []byte
	}{
		{"der", der},
		{"pem-cms", pem.EncodeToMemory(&pem.Block{Type: "CMS", Bytes: der})},
		{"pem-pkcs7", pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: der})},
		{"base64-unwrapped", []byte(b64)},
		{"base64-lf-64", []byte(wrap64(b64, 64, "\n"))},
		{"base64-crlf-76", []byte(wrap64(b64, 76, "\r\n"))},
		{"base64-raw-url", []byte(base64.RawURLEncoding.EncodeToString(der))},
		{"hex", []byte(hex.EncodeToString(der))},
		{"hex-upper-spaced", []byte(wrap64(strings.ToUpper(hex.EncodeToString(der)), 32, "\n"))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Unwrap(tc.in)
			if err != nil {
				t.Fatalf("Unwrap: %v", err)
			}
			if !bytes.Equal(got, der) {
				t.Fatalf("Unwrap returned %d bytes, want the %d DER bytes", len(got), len(der))
			}
			a, err := Parse(tc.in)
			if err != nil || a.Format != FormatCMS || a.Voucher == nil || a.Voucher.SerialNumber != "00-D0-E5-F2-00-02" {
				t.Fatalf("Parse = %+v, %v", a, err)
			}
		})
	}
}

func TestUnwrap_Refusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"whitespace", []byte(" \n\t"), ErrMalformed},
		{"pem-certificate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0}}), ErrUnsupported},
		{"pem-broken", []byte("-----BEGIN CMS-----\n!!!\n"), ErrMalformed},
		{"text", []byte("hello, voucher"), ErrMalformed},
		{"json-invalid", []byte("{nope"), ErrMalformed},
		{"too-large", bytes.Repeat([]byte{0x30}, 4*MaxArtifactBytes+1), ErrTooLarge},
		{"decoded-too-large", []byte(base64.StdEncoding.EncodeToString(append([]byte{0x30}, make([]byte, MaxArtifactBytes)...))), ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := Unwrap(tc.in); !errors.Is(err, tc.want) {
				t.Fatalf("Unwrap err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDetectFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   []byte
		want Format
	}{
		{[]byte{0x30, 0x82}, FormatCMS},
		{[]byte{0xd2, 0x84}, FormatCOSE},
		{[]byte{0x84, 0x43}, FormatCOSE},
		{[]byte(`{"x":1}`), FormatJSON},
		{[]byte{0xa1, 0x19, 0x09, 0x93}, FormatCBOR},
	}
	for _, tc := range tests {
		if got, err := DetectFormat(tc.in); err != nil || got != tc.want {
			t.Errorf("DetectFormat(% x) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := DetectFormat([]byte{0x05}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("DetectFormat(05) err = %v", err)
	}
}

func TestParse_UnsignedArtifacts(t *testing.T) {
	t.Parallel()
	v := &Voucher{Fields: Fields{Assertion: AssertionLogged, SerialNumber: "SN-1", PinnedDomainCert: []byte{0x30, 0x03, 0x02, 0x01, 0x01}, Nonce: []byte("12345678")}}
	js, err := v.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	cb, err := v.MarshalCBOR()
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range [][]byte{js, cb} {
		a, err := Parse(in)
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		if a.Voucher == nil || a.Voucher.SerialNumber != "SN-1" || a.Kind() != "voucher" {
			t.Fatalf("Parse = %+v", a)
		}
		// Unsigned artifacts are never "verified".
		if _, _, err := Verify(in, VerifyOptions{}); !errors.Is(err, ErrUnsupported) {
			t.Fatalf("Verify(unsigned) err = %v, want ErrUnsupported", err)
		}
	}
	r := &Request{Fields: Fields{Assertion: AssertionProximity, SerialNumber: "SN-2", Nonce: []byte("abcdefgh")}}
	rc, err := r.MarshalCBOR()
	if err != nil {
		t.Fatal(err)
	}
	a, err := Parse(rc)
	if err != nil || a.Request == nil || a.Kind() != "voucher-request" {
		t.Fatalf("Parse(request cbor) = %+v, %v", a, err)
	}
}

func testvectorCMS(t *testing.T) []byte {
	t.Helper()
	blk, _ := pem.Decode(testvectors.Read(t, "rfc8995/voucher_00-D0-E5-F2-00-02.pkcs"))
	if blk == nil {
		t.Fatal("vector is not PEM")
	}
	return blk.Bytes
}

// FuzzParse feeds arbitrary bytes through armour detection and decoding.
// Properties: no panic; whatever Parse accepts re-renders as JSON, and that
// JSON parses again to an artifact of the same kind and serial.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "{}", "-----BEGIN CMS-----\n", "d284", "3082", `{"ietf-voucher:voucher":{}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		a, err := Parse(in)
		if err != nil {
			return
		}
		js, err := a.MarshalJSON()
		if err != nil {
			t.Fatalf("accepted artifact does not render: %v", err)
		}
		b, err := Parse(js)
		if err != nil {
			t.Fatalf("rendered JSON does not parse: %v\n%s", err, js)
		}
		if b.Kind() != a.Kind() {
			t.Fatalf("kind changed: %s → %s", a.Kind(), b.Kind())
		}
	})
}

// TestVerify_SignatureEndingInWhitespaceByte: a signed artifact is binary
// and must reach the verifier byte for byte, even when its last signature
// byte is one that bytes.TrimSpace would cut. About one signature in 43 ends
// in 0x09-0x0d or 0x20; before Unwrap stopped trimming binary input, such a
// voucher failed `gatehouse voucher verify` as "cms is not DER" (CMS) or
// "unexpected EOF" (COSE).
func TestVerify_SignatureEndingInWhitespaceByte(t *testing.T) {
	t.Parallel()
	pki := newCMSTestPKI(t, nil, "whitespace-tail")
	payload := cmsTestPayload(t)
	opts := VerifyOptions{Anchors: []*x509.Certificate{pki.ca}, Time: cmsTestNow}
	for i := 0; ; i++ {
		if i == 5000 {
			t.Fatal("no signature ended in a whitespace byte in 5000 tries")
		}
		der, err := SignCMS(payload, pki.leafKey, pki.leaf, []*x509.Certificate{pki.ca}, CMSOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if last := der[len(der)-1]; !bytes.ContainsRune([]byte("\t\n\v\f\r "), rune(last)) {
			continue
		}
		got, err := Unwrap(der)
		if err != nil || !bytes.Equal(got, der) {
			t.Fatalf("Unwrap changed a binary artifact ending in 0x%02x: %d of %d bytes, %v", der[len(der)-1], len(got), len(der), err)
		}
		if _, _, err := Verify(der, opts); err != nil {
			t.Fatalf("Verify of a voucher whose signature ends in 0x%02x: %v", der[len(der)-1], err)
		}
		return
	}
}
