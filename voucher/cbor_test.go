package voucher

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/gatehouse-pki/gatehouse/internal/testvectors"
)

// cborHex decodes hex text with any whitespace, as the cbrski vectors hold it.
func cborHex(text []byte) ([]byte, error) {
	return hex.DecodeString(strings.Join(strings.Fields(string(text)), ""))
}

// cborHexVector reads a hex vector, or skips t when the vectors are absent.
func cborHexVector(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := cborHex(testvectors.Read(tb, name))
	if err != nil {
		tb.Fatalf("vector %s: %v", name, err)
	}
	return b
}

// cborOptionalVector reads a hex vector for fuzz seeding without skipping:
// nil when the vectors are absent. It mirrors testvectors' lookup.
func cborOptionalVector(name string) []byte {
	dir := os.Getenv("GATEHOUSE_VECTORS")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "vectors")
	}
	text, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
	if err != nil {
		return nil
	}
	b, err := cborHex(text)
	if err != nil {
		return nil
	}
	return b
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// cborKV and cborMap build CBOR maps with keys in the order given, to test
// inputs that are not deterministically encoded.
type cborKV struct{ k, v any }

type cborMap []cborKV

func (m cborMap) MarshalCBOR() ([]byte, error) {
	var out []byte
	switch n := len(m); {
	case n < 24:
		out = append(out, 0xa0|byte(n))
	case n < 256:
		out = append(out, 0xb8, byte(n))
	default:
		return nil, errors.New("test map too large")
	}
	for _, kv := range m {
		for _, x := range []any{kv.k, kv.v} {
			b, err := cbor.Marshal(x)
			if err != nil {
				return nil, err
			}
			out = append(out, b...)
		}
	}
	return out, nil
}

func cborEnc(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := cbor.Marshal(v)
	if err != nil {
		tb.Fatalf("encode test input: %v", err)
	}
	return b
}

// Expected leaves of the cBRSKI examples, read off pvr-nonsigned.txt,
// rvr-nonsigned.txt and voucher-nonsigned.txt.
var (
	vecSerial        = "JADA123456789"
	vecRequestNonce  = mustHex("23BFBBC9C2BCF213")
	vecVoucherNonce  = mustHex("57EED786AD404907") // not the request's: the examples are not one exchange
	vecRegistrarPubk = mustHex("3059301306072A8648CE3D020106082A8648CE3D030107034200042030855BE846910B3ECB15CAF8572D3EB565BDC654A15EFAF6EDEBAA8B9E1608C5C910C93A20868FC8504D370F1B26FA9759F67983BB78863EDA9ACBEA5124F6")
	// idevid-issuer is the whole OCTET STRING TLV around the pledge's AKI.
	vecIDevIDIssuer = mustHex("041830168014CB8D98CA74C51B58DDE7ACEF869A9443A8D666A6")
	vecRVRCreated   = time.Date(2022, 12, 6, 20, 4, 15, 754e6, time.UTC)
	vecVchCreated   = time.Date(2022, 12, 6, 20, 23, 30, 708e6, time.UTC)
)

func TestDecodeRequestCBOR_Vectors(t *testing.T) {
	t.Parallel()
	t.Run("pvr-nonsigned", func(t *testing.T) {
		t.Parallel()
		r, err := DecodeRequestCBOR(cborHexVector(t, "cbrski/pvr-nonsigned.hex"))
		if err != nil {
			t.Fatal(err)
		}
		want := &Request{
			Fields:                 Fields{Assertion: AssertionProximity, Nonce: vecRequestNonce, SerialNumber: vecSerial},
			ProximityRegistrarPubk: vecRegistrarPubk,
		}
		if !reflect.DeepEqual(r, want) {
			t.Errorf("decoded\n%+v\nwant\n%+v", r, want)
		}
		if err := r.ValidatePledge(); err != nil {
			t.Errorf("ValidatePledge: %v", err)
		}
	})
	t.Run("rvr-nonsigned", func(t *testing.T) {
		t.Parallel()
		r, err := DecodeRequestCBOR(cborHexVector(t, "cbrski/rvr-nonsigned.hex"))
		if err != nil {
			t.Fatal(err)
		}
		// prior-signed-voucher-request is the signed PVR, byte for byte.
		pvr := cborHexVector(t, "cbrski/pvr.hex")
		want := &Request{
			Fields: Fields{
				Assertion: AssertionProximity, CreatedOn: vecRVRCreated, IDevIDIssuer: vecIDevIDIssuer,
				Nonce: vecRequestNonce, SerialNumber: vecSerial,
			},
			PriorSignedVoucherRequest: pvr,
		}
		if !reflect.DeepEqual(r, want) {
			t.Errorf("decoded\n%+v\nwant\n%+v", r, want)
		}
		pledge, err := x509.ParseCertificate(testvectors.Read(t, "cbrski/pledge.der"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasSuffix(r.IDevIDIssuer, pledge.AuthorityKeyId) || !bytes.HasPrefix(r.IDevIDIssuer, []byte{0x04, 0x18, 0x30, 0x16, 0x80, 0x14}) {
			t.Errorf("idevid-issuer %X is not the OCTET STRING TLV of the pledge AKI %X", r.IDevIDIssuer, pledge.AuthorityKeyId)
		}
	})
}

func TestDecodeVoucherCBOR_Vector(t *testing.T) {
	t.Parallel()
	v, err := DecodeVoucherCBOR(cborHexVector(t, "cbrski/voucher-nonsigned.hex"))
	if err != nil {
		t.Fatal(err)
	}
	if v.Assertion != AssertionProximity || !v.CreatedOn.Equal(vecVchCreated) || v.SerialNumber != vecSerial ||
		!bytes.Equal(v.Nonce, vecVoucherNonce) || v.DomainCertRevocationChecks == nil || *v.DomainCertRevocationChecks {
		t.Errorf("decoded %+v", v.Fields)
	}
	if n := len(v.PinnedDomainCert); n != 583 || !bytes.HasPrefix(v.PinnedDomainCert, mustHex("30820243")) || !bytes.HasSuffix(v.PinnedDomainCert, mustHex("F1E5E843")) {
		t.Errorf("pinned-domain-cert: %d bytes %X…", n, v.PinnedDomainCert[:min(8, n)])
	}
	c, err := x509.ParseCertificate(v.PinnedDomainCert)
	if err != nil {
		t.Fatalf("pinned-domain-cert: %v", err)
	}
	if c.Subject.CommonName != "Custom-ER Global CA" {
		t.Errorf("pinned-domain-cert subject %s", c.Subject)
	}
}

// TestMarshalCBOR_VectorsReencode: all three non-signed examples are core
// deterministic (ascending small delta keys, shortest heads, times with
// trailing-zero-free fractions), so they re-encode byte for byte.
func TestMarshalCBOR_VectorsReencode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file   string
		decode func([]byte) (cbor.Marshaler, error)
	}{
		{"cbrski/pvr-nonsigned.hex", func(b []byte) (cbor.Marshaler, error) { return DecodeRequestCBOR(b) }},
		{"cbrski/rvr-nonsigned.hex", func(b []byte) (cbor.Marshaler, error) { return DecodeRequestCBOR(b) }},
		{"cbrski/voucher-nonsigned.hex", func(b []byte) (cbor.Marshaler, error) { return DecodeVoucherCBOR(b) }},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			in := cborHexVector(t, tc.file)
			m, err := tc.decode(in)
			if err != nil {
				t.Fatal(err)
			}
			out, err := m.MarshalCBOR()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, in) {
				t.Errorf("re-encoding differs:\n got %X\nwant %X", out, in)
			}
		})
	}
}

var (
	testPin        = []byte{0x30, 0x03, 0x02, 0x01, 0x01}
	testMinVoucher = &Voucher{Fields: Fields{Assertion: AssertionVerified, PinnedDomainCert: testPin, SerialNumber: vecSerial}}
)

// TestDecodeVoucherCBOR_Spellings: keys as delta SIDs, absolute SIDs, names
// and qualified names, in any order, and the assertion as an integer or a
// name, all decode to the same voucher; re-encoding yields the canonical
// form (so these inputs do not re-encode identically).
func TestDecodeVoucherCBOR_Spellings(t *testing.T) {
	t.Parallel()
	canonical, err := testMinVoucher.MarshalCBOR()
	if err != nil {
		t.Fatal(err)
	}
	if want := cborEnc(t, cborMap{{2451, cborMap{{1, 0}, {8, testPin}, {11, vecSerial}}}}); !bytes.Equal(canonical, want) {
		t.Fatalf("canonical %X, want %X", canonical, want)
	}
	tests := []struct {
		name string
		in   any
	}{
		{"delta-unsorted", cborMap{{2451, cborMap{{11, vecSerial}, {1, 0}, {8, testPin}}}}},
		{"absolute", cborMap{{2451, cborMap{{2452, 0}, {2459, testPin}, {2462, vecSerial}}}}},
		{"names", cborMap{{"ietf-voucher:voucher", cborMap{{"assertion", "verified"}, {"pinned-domain-cert", testPin}, {"serial-number", vecSerial}}}}},
		{"qualified-names", cborMap{{2451, cborMap{{"ietf-voucher:serial-number", vecSerial}, {"ietf-voucher:assertion", 0}, {8, testPin}}}}},
		{"mixed", cborMap{{"ietf-voucher:voucher", cborMap{{"serial-number", vecSerial}, {2452, "verified"}, {8, testPin}}}}},
		{"unknown-ignored", cborMap{{2451, cborMap{
			{1, 0}, {8, testPin}, {11, vecSerial},
			{99, "unknown delta"}, {-3, 1}, {2499, []any{1, 2}}, {"vendor-leaf", cborMap{{"x", []byte{1}}}},
			{"ietf-voucher-request:serial-number", "another module"},
		}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := cborEnc(t, tc.in)
			v, err := DecodeVoucherCBOR(in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(v, testMinVoucher) {
				t.Errorf("decoded %+v", v.Fields)
			}
			out, err := v.MarshalCBOR()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, canonical) {
				t.Errorf("re-encoded %X, want %X", out, canonical)
			}
		})
	}
}

// TestDecodeRequestCBOR_Names decodes voucher-request-example2.txt's shape
// (names throughout, text container key) with the rvr example's values.
func TestDecodeRequestCBOR_Names(t *testing.T) {
	t.Parallel()
	in := cborEnc(t, cborMap{{"ietf-voucher-request:voucher", cborMap{
		{"assertion", 2},
		{"created-on", "2022-12-06T21:04:15.754+01:00"},
		{"nonce", vecRequestNonce},
		{"idevid-issuer", vecIDevIDIssuer},
		{"serial-number", vecSerial},
		{"prior-signed-voucher-request", []byte{0xd2, 0x84}},
	}}})
	r, err := DecodeRequestCBOR(in)
	if err != nil {
		t.Fatal(err)
	}
	want := &Request{
		Fields: Fields{
			Assertion: AssertionProximity, CreatedOn: vecRVRCreated, Nonce: vecRequestNonce,
			IDevIDIssuer: vecIDevIDIssuer, SerialNumber: vecSerial,
		},
		PriorSignedVoucherRequest: []byte{0xd2, 0x84},
	}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("decoded\n%+v\nwant\n%+v", r, want)
	}
	out, err := r.MarshalCBOR()
	if err != nil {
		t.Fatal(err)
	}
	// The +01:00 offset comes back as UTC.
	if !bytes.Contains(out, []byte("2022-12-06T20:04:15.754Z")) {
		t.Errorf("created-on not re-encoded in UTC: %X", out)
	}
}

func TestMarshalCBOR_RoundTrip(t *testing.T) {
	t.Parallel()
	yes := true
	created := time.Date(2026, 3, 1, 10, 0, 0, 123456789, time.UTC)
	fields := Fields{
		CreatedOn:                  created,
		ExpiresOn:                  created.Add(24 * time.Hour),
		LastRenewalDate:            created.Add(time.Hour),
		Assertion:                  AssertionAgentProximity,
		SerialNumber:               "SN-1",
		IDevIDIssuer:               vecIDevIDIssuer,
		PinnedDomainCert:           testPin,
		PinnedDomainPubk:           vecRegistrarPubk,
		PinnedDomainPubkSHA256:     bytes.Repeat([]byte{7}, 32),
		DomainCertRevocationChecks: &yes,
		Nonce:                      vecRequestNonce,
		ESTDomain:                  "https://est.example.com/.well-known/est",
		AdditionalConfigurationURL: "https://cfg.example.com/x",
		ManufacturerProprietary:    []byte{0xa0},
		Extensions:                 []string{"example-ext"},
		ExtensionSIDs:              []uint64{1<<64 - 1, 60000},
	}
	t.Run("voucher", func(t *testing.T) {
		t.Parallel()
		v := &Voucher{Fields: fields}
		b, err := v.MarshalCBOR()
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeVoucherCBOR(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, v) {
			t.Errorf("round trip\n got %+v\nwant %+v", got.Fields, v.Fields)
		}
	})
	t.Run("request", func(t *testing.T) {
		t.Parallel()
		for _, agentCerts := range [][][]byte{nil, {{1, 2}}, {{1}, {}, {3}}, {}} {
			r := &Request{
				Fields:                              fields,
				PriorSignedVoucherRequest:           []byte{0xd2},
				ProximityRegistrarCert:              testPin,
				ProximityRegistrarPubk:              vecRegistrarPubk,
				ProximityRegistrarPubkSHA256:        bytes.Repeat([]byte{8}, 32),
				AgentProvidedProximityRegistrarCert: testPin,
				AgentSignCert:                       agentCerts,
				AgentSignedData:                     []byte{},
			}
			b, err := r.MarshalCBOR()
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeRequestCBOR(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, r) {
				t.Errorf("round trip with %d agent certs\n got %+v\nwant %+v", len(agentCerts), got, r)
			}
		}
	})
}

func TestMarshalCBOR_Errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		m    cbor.Marshaler
		want error
	}{
		{"voucher-without-serial", &Voucher{Fields: Fields{Assertion: AssertionVerified, PinnedDomainCert: testPin}}, ErrInvalid},
		{"voucher-bad-assertion", &Voucher{Fields: Fields{Assertion: "owned", PinnedDomainCert: testPin, SerialNumber: "a"}}, ErrInvalid},
		{"voucher-too-large", &Voucher{Fields: Fields{Assertion: AssertionVerified, PinnedDomainCert: testPin, SerialNumber: "a",
			ManufacturerProprietary: make([]byte, MaxCBORLen)}}, ErrTooLarge},
		{"voucher-year-10000", &Voucher{Fields: Fields{Assertion: AssertionVerified, PinnedDomainCert: testPin, SerialNumber: "a",
			CreatedOn: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}, ErrInvalid},
		{"request-bad-utf8", &Request{Fields: Fields{ESTDomain: "\xff"}}, ErrInvalid},
		{"request-too-many-extensions", &Request{Fields: Fields{ExtensionSIDs: make([]uint64, 65)}}, ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := tc.m.MarshalCBOR(); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// cborVoucherWith returns a valid minimal voucher container with extra
// pairs appended.
func cborVoucherWith(extra ...cborKV) cborMap {
	inner := cborMap{{1, 0}, {8, testPin}, {11, vecSerial}}
	return cborMap{{2451, append(inner, extra...)}}
}

func cborNested(depth int) any {
	var v any = 1
	for range depth {
		v = []any{v}
	}
	return v
}

func TestDecodeVoucherCBOR_Errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"truncated", cborEnc(t, cborVoucherWith())[:20], ErrMalformed},
		{"trailing-data", append(cborEnc(t, cborVoucherWith()), 0x00), ErrMalformed},
		{"top-level-array", cborEnc(t, []any{2451}), ErrMalformed},
		{"top-level-null", []byte{0xf6}, ErrMalformed},
		{"two-containers", cborEnc(t, cborMap{{2451, cborMap{}}, {"ietf-voucher:voucher", cborMap{}}}), ErrMalformed},
		{"request-container", cborEnc(t, cborMap{{2501, cborMap{{1, 2}}}}), ErrMalformed},
		{"unknown-container", cborEnc(t, cborMap{{1001100, cborMap{{1, 2}}}}), ErrMalformed},
		{"container-not-map", cborEnc(t, cborMap{{2451, []any{1}}}), ErrMalformed},
		{"dup-delta-and-name", cborEnc(t, cborVoucherWith(cborKV{"serial-number", "B"})), ErrMalformed},
		{"dup-delta-and-absolute", cborEnc(t, cborVoucherWith(cborKV{2452, 0})), ErrMalformed},
		{"dup-name-and-qualified", cborEnc(t, cborMap{{2451, cborMap{{"assertion", 0}, {"ietf-voucher:assertion", 0}, {8, testPin}, {11, "a"}}}}), ErrMalformed},
		{"dup-same-key", cborEnc(t, cborVoucherWith(cborKV{1, 0})), ErrMalformed},
		{"bytes-key", cborEnc(t, cborVoucherWith(cborKV{[]byte{1}, 0})), ErrMalformed},
		{"float-key", cborEnc(t, cborVoucherWith(cborKV{1.5, 0})), ErrMalformed},
		{"assertion-bool", cborEnc(t, cborMap{{2451, cborMap{{1, true}, {8, testPin}, {11, "a"}}}}), ErrMalformed},
		{"assertion-4", cborEnc(t, cborMap{{2451, cborMap{{1, 4}, {8, testPin}, {11, "a"}}}}), ErrInvalid},
		{"assertion-negative", cborEnc(t, cborMap{{2451, cborMap{{1, -1}, {8, testPin}, {11, "a"}}}}), ErrMalformed},
		{"assertion-unknown-name", cborEnc(t, cborMap{{2451, cborMap{{1, "owned"}, {8, testPin}, {11, "a"}}}}), ErrInvalid},
		{"created-on-int", cborEnc(t, cborVoucherWith(cborKV{2, 1700000000})), ErrMalformed},
		{"created-on-text", cborEnc(t, cborVoucherWith(cborKV{2, "yesterday"})), ErrInvalid},
		{"created-on-zero", cborEnc(t, cborVoucherWith(cborKV{2, "0001-01-01T00:00:00Z"})), ErrInvalid},
		{"nonce-text", cborEnc(t, cborVoucherWith(cborKV{7, "23BFBBC9C2BCF213"})), ErrMalformed},
		{"nonce-short", cborEnc(t, cborVoucherWith(cborKV{7, []byte{1, 2, 3}})), ErrInvalid},
		{"revocation-checks-int", cborEnc(t, cborVoucherWith(cborKV{3, 0})), ErrMalformed},
		{"serial-bytes", cborEnc(t, cborMap{{2451, cborMap{{1, 0}, {8, testPin}, {11, []byte("a")}}}}), ErrMalformed},
		{"serial-missing", cborEnc(t, cborMap{{2451, cborMap{{1, 0}, {8, testPin}}}}), ErrInvalid},
		{"serial-control-char", cborEnc(t, cborMap{{2451, cborMap{{1, 0}, {8, testPin}, {11, "a\nb"}}}}), ErrInvalid},
		{"no-pin", cborEnc(t, cborMap{{2451, cborMap{{1, 0}, {11, "a"}}}}), ErrInvalid},
		{"extensions-not-array", cborEnc(t, cborVoucherWith(cborKV{15, 5})), ErrMalformed},
		{"extensions-bool-entry", cborEnc(t, cborVoucherWith(cborKV{15, []any{true}})), ErrMalformed},
		{"extensions-negative-entry", cborEnc(t, cborVoucherWith(cborKV{15, []any{-1}})), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v, err := DecodeVoucherCBOR(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if v != nil {
				t.Errorf("got a voucher with an error")
			}
			if !strings.HasPrefix(err.Error(), "decode cbor voucher: ") {
				t.Errorf("error %q lacks the operation", err)
			}
		})
	}
}

// cborSized returns a valid voucher encoding of exactly n bytes, padded
// with manufacturer-proprietary.
func cborSized(t *testing.T, n int) []byte {
	t.Helper()
	pad := n - len(cborEnc(t, cborVoucherWith(cborKV{14, make([]byte, 1000)}))) + 1000
	b := cborEnc(t, cborVoucherWith(cborKV{14, make([]byte, pad)}))
	if len(b) != n {
		t.Fatalf("sized input is %d bytes, want %d", len(b), n)
	}
	return b
}

// TestDecodeVoucherCBOR_Limits passes each limit of reliability D9 by one,
// after checking that the limit itself is accepted.
func TestDecodeVoucherCBOR_Limits(t *testing.T) {
	t.Parallel()
	manyExt := func(n int) []any {
		l := make([]any, n)
		for i := range l {
			l[i] = uint64(i)
		}
		return l
	}
	pairs := func(n int) []cborKV { // n extra unknown pairs
		kv := make([]cborKV, n)
		for i := range kv {
			kv[i] = cborKV{100 + i, 0}
		}
		return kv
	}
	valid := cborEnc(t, cborVoucherWith())
	tests := []struct {
		name string
		in   []byte
		want error // nil: accepted
	}{
		// top map 1, container 2, six arrays reach 8.
		{"nesting-8", cborEnc(t, cborVoucherWith(cborKV{99, cborNested(6)})), nil},
		{"nesting-9", cborEnc(t, cborVoucherWith(cborKV{99, cborNested(7)})), ErrTooLarge},
		{"array-64", cborEnc(t, cborVoucherWith(cborKV{15, manyExt(64)})), nil},
		{"array-65", cborEnc(t, cborVoucherWith(cborKV{15, manyExt(65)})), ErrTooLarge},
		{"array-65-unknown-leaf", cborEnc(t, cborVoucherWith(cborKV{99, manyExt(65)})), ErrTooLarge},
		{"map-32-pairs", cborEnc(t, cborVoucherWith(pairs(29)...)), nil},
		{"map-33-pairs", cborEnc(t, cborVoucherWith(pairs(30)...)), ErrTooLarge},
		{"size-16384", cborSized(t, MaxCBORLen), nil},
		{"size-16385", cborSized(t, MaxCBORLen+1), ErrTooLarge},
		// {2451: {_ 1: 0, 8: h'…', 11: "…"}} with an indefinite-length inner map.
		{"indefinite-map", append(append([]byte{0xa1, 0x19, 0x09, 0x93, 0xbf}, valid[5:]...), 0xff), ErrMalformed},
		{"indefinite-bytes", cborEnc(t, cborVoucherWith()), ErrMalformed}, // patched below
		{"indefinite-array", cborEnc(t, cborMap{{2451, cborMap{{1, 0}, {8, testPin}, {11, "a"}, {15, cbor.RawMessage{0x9f, 0x01, 0xff}}}}}), ErrMalformed},
		{"duplicate-key", []byte{0xa1, 0x19, 0x09, 0x93, 0xa2, 0x01, 0x00, 0x01, 0x00}, ErrMalformed},
		{"invalid-utf8-leaf", cborEnc(t, cborMap{{2451, cborMap{{1, 0}, {8, testPin}, {11, cbor.RawMessage{0x62, 0xc3, 0x28}}}}}), ErrMalformed},
		{"invalid-utf8-unknown-leaf", cborEnc(t, cborVoucherWith(cborKV{99, cbor.RawMessage{0x61, 0xff}})), ErrMalformed},
		{"invalid-utf8-key", cborEnc(t, cborVoucherWith(cborKV{cbor.RawMessage{0x61, 0xff}, 0})), ErrMalformed},
		{"tag-epoch-time", cborEnc(t, cborVoucherWith(cborKV{2, cbor.Tag{Number: 1, Content: 1700000000}})), ErrMalformed},
		{"tag-date-string", cborEnc(t, cborVoucherWith(cborKV{2, cbor.Tag{Number: 0, Content: "2026-01-01T00:00:00Z"}})), ErrMalformed},
		{"tag-absolute-sid-47", cborEnc(t, cborVoucherWith(cborKV{cbor.Tag{Number: 47, Content: 2466}, []any{}})), ErrMalformed},
		{"tag-18-around-payload", cborEnc(t, cbor.Tag{Number: 18, Content: cborVoucherWith()}), ErrMalformed},
		{"hostile-array-header", []byte{0x9b, 0x00, 0x00, 0x42, 0xfa, 0x00, 0x00, 0x00, 0x00, 0x00}, ErrTooLarge},
	}
	// An indefinite-length byte string for the nonce: 5F 48 <8 bytes> FF.
	tests[10].in = cborEnc(t, cborVoucherWith(cborKV{7, cbor.RawMessage(append(append([]byte{0x5f, 0x48}, vecVoucherNonce...), 0xff))}))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := DecodeVoucherCBOR(tc.in)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("at the limit: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			_, err = DecodeRequestCBOR(bytes.Replace(tc.in, []byte{0x19, 0x09, 0x93}, []byte{0x19, 0x09, 0xc5}, 1))
			if err == nil {
				t.Errorf("the same input as a voucher-request was accepted")
			}
		})
	}
}

// TestDecodeVoucherCBOR_HostileHeader: the 10-byte header announcing an
// array of ~2^46 elements is refused at once, with little allocation
// (reliability D9: < 1 ms, < 1 KiB). Not parallel: it reads MemStats.
func TestDecodeVoucherCBOR_HostileHeader(t *testing.T) {
	hdr := []byte{0x9b, 0x00, 0x00, 0x42, 0xfa, 0x00, 0x00, 0x00, 0x00, 0x00}
	if _, err := DecodeVoucherCBOR(hdr); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if allocs := testing.AllocsPerRun(200, func() { _, _ = DecodeVoucherCBOR(hdr) }); allocs > 16 {
		t.Errorf("%.0f allocations per decode, want at most 16", allocs)
	}
	const runs = 1000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	for range runs {
		_, _ = DecodeRequestCBOR(hdr)
	}
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	if perOp := (after.TotalAlloc - before.TotalAlloc) / runs; perOp >= 1024 {
		t.Errorf("%d bytes allocated per decode, want < 1 KiB", perOp)
	}
	if perOp := elapsed / runs; perOp >= time.Millisecond {
		t.Errorf("%v per decode, want < 1ms", perOp)
	}
}

// cborCheckSentinel fails t unless err wraps one of the decode sentinels.
func cborCheckSentinel(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
		t.Fatalf("error wraps no sentinel: %v", err)
	}
}

func FuzzDecodeCBOR(f *testing.F) {
	for _, name := range []string{"cbrski/pvr-nonsigned.hex", "cbrski/rvr-nonsigned.hex", "cbrski/voucher-nonsigned.hex"} {
		if b := cborOptionalVector(name); b != nil {
			f.Add(b)
		}
	}
	if b, err := testMinVoucher.MarshalCBOR(); err == nil {
		f.Add(b)
	}
	f.Add(cborEnc(f, cborMap{{"ietf-voucher-request:voucher", cborMap{{"assertion", "proximity"}, {7, vecRequestNonce}, {2514, "x"}, {2, "2026-01-01T00:00:00+02:00"}}}}))
	f.Add(cborEnc(f, cborVoucherWith(cborKV{15, []any{uint64(3), "ext"}}, cborKV{3, true})))
	f.Add([]byte{0x9b, 0x00, 0x00, 0x42, 0xfa, 0x00, 0x00, 0x00, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, err := DecodeVoucherCBOR(b); err != nil {
			cborCheckSentinel(t, err)
		} else {
			enc, err := v.MarshalCBOR()
			if err != nil {
				t.Fatalf("re-encode decoded voucher: %v", err)
			}
			v2, err := DecodeVoucherCBOR(enc)
			if err != nil {
				t.Fatalf("decode re-encoded voucher %X: %v", enc, err)
			}
			if !reflect.DeepEqual(v, v2) {
				t.Fatalf("voucher round trip differs:\n%+v\n%+v", v, v2)
			}
		}
		if r, err := DecodeRequestCBOR(b); err != nil {
			cborCheckSentinel(t, err)
		} else {
			enc, err := r.MarshalCBOR()
			if err != nil {
				t.Fatalf("re-encode decoded request: %v", err)
			}
			r2, err := DecodeRequestCBOR(enc)
			if err != nil {
				t.Fatalf("decode re-encoded request %X: %v", enc, err)
			}
			if !reflect.DeepEqual(r, r2) {
				t.Fatalf("request round trip differs:\n%+v\n%+v", r, r2)
			}
			enc2, err := r2.MarshalCBOR()
			if err != nil || !bytes.Equal(enc, enc2) {
				t.Fatalf("encoding is not stable: %X vs %X (%v)", enc, enc2, err)
			}
		}
	})
}

func BenchmarkDecodeCBOR(b *testing.B) {
	in := cborOptionalVector("cbrski/voucher-nonsigned.hex")
	if in == nil {
		var err error
		if in, err = testMinVoucher.MarshalCBOR(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := DecodeVoucherCBOR(in); err != nil {
			b.Fatal(err)
		}
	}
}
