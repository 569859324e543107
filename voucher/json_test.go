package voucher

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// jsonCert is a stand-in for a DER certificate leaf: any bytes will do.
var jsonCert = []byte{0x30, 0x82, 0x01, 0x0a, 0xff, 0x00, 0x7f}

// jsonVoucher wraps container members into a voucher document.
func jsonVoucher(members string) string {
	return `{"ietf-voucher:voucher":{` + members + `}}`
}

// jsonRequest wraps container members into a voucher-request document.
func jsonRequest(members string) string {
	return `{"ietf-voucher-request:voucher":{` + members + `}}`
}

// jsonMinimal holds the leaves Voucher.Validate requires.
const jsonMinimal = `"assertion":"logged","serial-number":"SN-1","pinned-domain-cert":"MAMCAQE="`

func TestVoucher_MarshalJSON(t *testing.T) {
	t.Parallel()
	yes := false
	v := &Voucher{Fields: Fields{
		CreatedOn:                  time.Date(2030, 1, 2, 3, 4, 5, 600_000_000, time.FixedZone("EST", -5*3600)),
		ExpiresOn:                  time.Date(2030, 2, 1, 0, 0, 0, 0, time.UTC),
		Assertion:                  AssertionVerified,
		SerialNumber:               "JADA123456789",
		IDevIDIssuer:               []byte{4, 2, 0xab, 0xcd},
		PinnedDomainCert:           jsonCert,
		PinnedDomainPubkSHA256:     bytes.Repeat([]byte{0xee}, 32),
		DomainCertRevocationChecks: &yes,
		Nonce:                      []byte{0xfb, 0xff, 0xbf, 1, 2, 3, 4, 5},
		LastRenewalDate:            time.Date(2029, 12, 1, 0, 0, 0, 0, time.UTC),
		ESTDomain:                  "https://registrar.example.com/.well-known/est?a=b&c=d",
		ManufacturerProprietary:    []byte("mfg"),
		Extensions:                 []string{"example-ext"},
	}}
	got, err := v.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	// Canonical voucher JSON before signing (STYLE.md §3.12, principle 6):
	// fixed member order, UTC times, standard base64, no HTML escaping.
	want := `{"ietf-voucher:voucher":{` +
		`"created-on":"2030-01-02T08:04:05.6Z",` +
		`"expires-on":"2030-02-01T00:00:00Z",` +
		`"assertion":"verified",` +
		`"serial-number":"JADA123456789",` +
		`"idevid-issuer":"BAKrzQ==",` +
		`"pinned-domain-cert":"MIIBCv8Afw==",` +
		`"pinned-domain-pubk-sha256":"7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u4=",` +
		`"domain-cert-revocation-checks":false,` +
		`"nonce":"+/+/AQIDBAU=",` +
		`"last-renewal-date":"2029-12-01T00:00:00Z",` +
		`"est-domain":"https://registrar.example.com/.well-known/est?a=b&c=d",` +
		`"manufacturer-proprietary":"bWZn",` +
		`"extensions":["example-ext"]}}`
	if string(got) != want {
		t.Errorf("MarshalJSON =\n%s\nwant\n%s", got, want)
	}
	back, err := DecodeVoucherJSON(got)
	if err != nil {
		t.Fatal(err)
	}
	v.CreatedOn = v.CreatedOn.UTC()
	back.NonceText = "" // decoding records the text; the original had none
	if diff := cmp.Diff(v, back); diff != "" {
		t.Errorf("decode(encode(v)) differs (-want +got):\n%s", diff)
	}
}

func TestRequest_MarshalJSON(t *testing.T) {
	t.Parallel()
	r := &Request{
		Fields: Fields{
			CreatedOn:    time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC),
			Assertion:    AssertionProximity,
			SerialNumber: "00-D0-E5-F2-00-02",
			Nonce:        []byte{0xfb, 0xf5, 0xc4, 0xf7, 0x32, 0xbd, 0xab, 0xc2, 0xe5, 0xd6, 0xac, 0xa5, 0x4b, 0x4b, 0x4b, 0x4b},
			NonceText:    "-_XE9zK9q8Ll1qylS0tLSw",
		},
		PriorSignedVoucherRequest: []byte{1, 2, 3},
		ProximityRegistrarCert:    jsonCert,
		AgentSignCert:             [][]byte{{9}},
	}
	got, err := r.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"ietf-voucher-request:voucher":{` +
		`"created-on":"2030-01-02T03:04:05Z",` +
		`"assertion":"proximity",` +
		`"serial-number":"00-D0-E5-F2-00-02",` +
		`"nonce":"-_XE9zK9q8Ll1qylS0tLSw",` +
		`"prior-signed-voucher-request":"AQID",` +
		`"proximity-registrar-cert":"MIIBCv8Afw==",` +
		`"agent-sign-cert":"CQ=="}}`
	if string(got) != want {
		t.Errorf("MarshalJSON =\n%s\nwant\n%s", got, want)
	}
	// A nonce without its text is emitted as standard base64.
	r.NonceText = ""
	got, err = r.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(got, []byte(`"nonce":"+/XE9zK9q8Ll1qylS0tLSw=="`)) {
		t.Errorf("nonce without text: %s", got)
	}
	// Two agent certificates are a leaf-list (earlier BRSKI-PRM drafts).
	r.AgentSignCert = [][]byte{{9}, {10}}
	got, err = r.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(got, []byte(`"agent-sign-cert":["CQ==","Cg=="]`)) {
		t.Errorf("agent-sign-cert list: %s", got)
	}
	back, err := DecodeRequestJSON(got)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r.AgentSignCert, back.AgentSignCert); diff != "" {
		t.Errorf("agent-sign-cert round trip (-want +got):\n%s", diff)
	}
}

func TestFields_MarshalJSONRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		v    *Voucher
	}{
		{name: "nonce-text-disagrees", v: &Voucher{Fields: Fields{Nonce: []byte("01234567"), NonceText: "AAAAAAAAAAA"}}},
		{name: "nonce-text-not-base64", v: &Voucher{Fields: Fields{Nonce: []byte("01234567"), NonceText: "not base64!"}}},
		{name: "year-10000", v: &Voucher{Fields: Fields{CreatedOn: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}},
		{name: "serial-not-utf8", v: &Voucher{Fields: Fields{SerialNumber: "\xff"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := tc.v.MarshalJSON()
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("MarshalJSON = %s, %v; want ErrInvalid", b, err)
			}
		})
	}
}

func TestDecodeVoucherJSON_Strict(t *testing.T) {
	t.Parallel()
	deep := func(levels int) string {
		// An extension member nested so that the document reaches the
		// given depth (top object 1, container 2, extension 3, ...).
		return jsonVoucher(jsonMinimal + `,"extension:deep":` + strings.Repeat(`{"a":`, levels-3) + `{}` + strings.Repeat(`}`, levels-3))
	}
	tests := []struct {
		name string
		in   string
		want error // nil: accepted
	}{
		{name: "ok/minimal", in: jsonVoucher(jsonMinimal)},
		{name: "ok/whitespace-around", in: " \n" + jsonVoucher(jsonMinimal) + "\n\t "},
		{name: "ok/unknown-leaf-ignored", in: jsonVoucher(jsonMinimal + `,"future-leaf":{"x":[1,2,{"y":null}]}`)},
		{name: "ok/request-leaf-in-voucher-ignored", in: jsonVoucher(jsonMinimal + `,"proximity-registrar-cert":"AAAA"`)},
		{name: "ok/extension-member", in: jsonVoucher(jsonMinimal + `,"extensions":["example-ext"],"extension:example-ext":{"k":"v"}`)},
		{name: "ok/depth-8", in: deep(8)},
		{name: "ok/unpadded-base64", in: jsonVoucher(`"assertion":"logged","serial-number":"SN-1","pinned-domain-cert":"MAMCAQE"`)},
		{name: "ok/empty-extensions", in: jsonVoucher(jsonMinimal + `,"extensions":[]`)},
		{name: "ok/escaped-member-name", in: jsonVoucher(`"assertion":"logged","serial\u002dnumber":"SN-1","pinned-domain-cert":"MAMCAQE="`)},

		{name: "size/over-64KiB", in: jsonVoucher(jsonMinimal + `,"pad":"` + strings.Repeat("x", MaxJSONSize) + `"`), want: ErrTooLarge},
		{name: "depth/9", in: deep(9), want: ErrTooLarge},
		{name: "depth/array-9", in: jsonVoucher(jsonMinimal + `,"x":` + strings.Repeat("[", 7) + strings.Repeat("]", 7)), want: ErrTooLarge},

		{name: "duplicate/leaf", in: jsonVoucher(jsonMinimal + `,"serial-number":"SN-2"`), want: ErrMalformed},
		{name: "duplicate/leaf-by-case", in: jsonVoucher(jsonMinimal + `,"SERIAL-NUMBER":"SN-2"`), want: ErrMalformed},
		{name: "duplicate/unknown-leaf", in: jsonVoucher(jsonMinimal + `,"x":1,"x":2`), want: ErrMalformed},
		{name: "duplicate/inside-extension", in: jsonVoucher(jsonMinimal + `,"extension:e":{"a":1,"a":2}`), want: ErrMalformed},
		{name: "duplicate/container", in: `{"ietf-voucher:voucher":{` + jsonMinimal + `},"ietf-voucher:voucher":{` + jsonMinimal + `}}`, want: ErrMalformed},
		{name: "case-variant/serial-number", in: jsonVoucher(`"assertion":"logged","Serial-Number":"SN-1","pinned-domain-cert":"MAMCAQE="`), want: ErrMalformed},
		{name: "case-variant/container", in: `{"IETF-voucher:voucher":{` + jsonMinimal + `}}`, want: ErrMalformed},

		{name: "trailing/garbage", in: jsonVoucher(jsonMinimal) + "x", want: ErrMalformed},
		{name: "trailing/second-object", in: jsonVoucher(jsonMinimal) + "{}", want: ErrMalformed},
		{name: "trailing/extra-brace", in: jsonVoucher(jsonMinimal) + "}", want: ErrMalformed},
		{name: "syntax/truncated", in: jsonVoucher(jsonMinimal)[:40], want: ErrMalformed},
		{name: "syntax/empty", in: "", want: ErrMalformed},
		{name: "syntax/not-utf8", in: jsonVoucher(`"assertion":"logged","serial-number":"SN-\xff","pinned-domain-cert":"MAMCAQE="`), want: ErrMalformed},
		{name: "structure/array", in: `[` + jsonVoucher(jsonMinimal) + `]`, want: ErrMalformed},
		{name: "structure/two-top-members", in: `{"ietf-voucher:voucher":{` + jsonMinimal + `},"other":1}`, want: ErrMalformed},

		{name: "container/request-key", in: jsonRequest(jsonMinimal), want: ErrInvalid},
		{name: "container/unknown-key", in: `{"voucher":{` + jsonMinimal + `}}`, want: ErrInvalid},
		{name: "container/empty-object", in: `{}`, want: ErrInvalid},
		{name: "container/not-object", in: `{"ietf-voucher:voucher":[]}`, want: ErrInvalid},

		{name: "type/serial-number-number", in: jsonVoucher(`"assertion":"logged","serial-number":12,"pinned-domain-cert":"MAMCAQE="`), want: ErrInvalid},
		{name: "type/assertion-null", in: jsonVoucher(`"assertion":null,"serial-number":"SN-1","pinned-domain-cert":"MAMCAQE="`), want: ErrInvalid},
		{name: "type/revocation-checks-string", in: jsonVoucher(jsonMinimal + `,"domain-cert-revocation-checks":"true"`), want: ErrInvalid},
		{name: "type/extensions-string", in: jsonVoucher(jsonMinimal + `,"extensions":"example-ext"`), want: ErrInvalid},
		{name: "type/extensions-number-item", in: jsonVoucher(jsonMinimal + `,"extensions":[2460]`), want: ErrInvalid},
		{name: "type/created-on-object", in: jsonVoucher(jsonMinimal + `,"created-on":{}`), want: ErrInvalid},
		{name: "type/extension-member-not-object", in: jsonVoucher(jsonMinimal + `,"extension:e":[1]`), want: ErrInvalid},
		{name: "type/extension-without-name", in: jsonVoucher(jsonMinimal + `,"extension:":{}`), want: ErrInvalid},

		{name: "value/created-on-not-rfc3339", in: jsonVoucher(jsonMinimal + `,"created-on":"2021-04-13 17:43:23"`), want: ErrInvalid},
		{name: "value/created-on-comma-fraction", in: jsonVoucher(jsonMinimal + `,"created-on":"2021-04-13T17:43:23,5Z"`), want: ErrInvalid},
		{name: "value/created-on-year-overflows-in-utc", in: jsonVoucher(jsonMinimal + `,"created-on":"9999-12-31T23:00:00-02:00"`), want: ErrInvalid},
		{name: "value/assertion-unknown", in: jsonVoucher(`"assertion":"trusted","serial-number":"SN-1","pinned-domain-cert":"MAMCAQE="`), want: ErrInvalid},
		{name: "value/serial-empty", in: jsonVoucher(`"assertion":"logged","serial-number":"","pinned-domain-cert":"MAMCAQE="`), want: ErrInvalid},
		{name: "value/serial-control-char", in: jsonVoucher(`"assertion":"logged","serial-number":"SN\u0007","pinned-domain-cert":"MAMCAQE="`), want: ErrInvalid},
		{name: "value/binary-with-newline", in: jsonVoucher(`"assertion":"logged","serial-number":"SN-1","pinned-domain-cert":"MAMC\nAQE="`), want: ErrInvalid},
		{name: "value/binary-with-space", in: jsonVoucher(`"assertion":"logged","serial-number":"SN-1","pinned-domain-cert":"MAMC AQE="`), want: ErrInvalid},
		{name: "value/binary-base64url", in: jsonVoucher(`"assertion":"logged","serial-number":"SN-1","pinned-domain-cert":"-_-_"`), want: ErrInvalid},
		{name: "value/binary-bad-padding", in: jsonVoucher(`"assertion":"logged","serial-number":"SN-1","pinned-domain-cert":"MAMCAQ==="`), want: ErrInvalid},
		{name: "value/est-domain-relative", in: jsonVoucher(jsonMinimal + `,"est-domain":"registrar/est"`), want: ErrInvalid},
		{name: "value/nonce-7-bytes", in: jsonVoucher(jsonMinimal + `,"nonce":"` + base64.StdEncoding.EncodeToString(make([]byte, 7)) + `"`), want: ErrInvalid},
		{name: "value/nonce-65-bytes", in: jsonVoucher(jsonMinimal + `,"nonce":"` + base64.RawURLEncoding.EncodeToString(make([]byte, 65)) + `"`), want: ErrInvalid},
		{name: "value/nonce-mixed-alphabets", in: jsonVoucher(jsonMinimal + `,"nonce":"ab+_cdefghijklmn"`), want: ErrInvalid},
		{name: "schema/no-pin", in: jsonVoucher(`"assertion":"logged","serial-number":"SN-1"`), want: ErrInvalid},
		{name: "schema/no-serial", in: jsonVoucher(`"assertion":"logged","pinned-domain-cert":"MAMCAQE="`), want: ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v, err := DecodeVoucherJSON([]byte(tc.in))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("DecodeVoucherJSON: %v", err)
				}
				if v.SerialNumber != "SN-1" || v.Assertion != AssertionLogged {
					t.Errorf("decoded %+v", v.Fields)
				}
				return
			}
			if !errors.Is(err, tc.want) || v != nil {
				t.Fatalf("DecodeVoucherJSON = %v, %v; want %v", v, err, tc.want)
			}
		})
	}
}

func TestDecodeRequestJSON_Strict(t *testing.T) {
	t.Parallel()
	const pvr = `"assertion":"proximity","nonce":"-_XE9zK9q8Ll1qylMtLKeg","proximity-registrar-cert":"MAMCAQE="`
	tests := []struct {
		name string
		in   string
		want error
	}{
		{name: "ok/pledge-request", in: jsonRequest(pvr)},
		{name: "ok/nonceless-registrar-request", in: jsonRequest(`"created-on":"2017-01-01T00:00:00.000Z","idevid-issuer":"BBgwFoAU","serial-number":"JADA123456789"`)},
		{name: "ok/agent-sign-cert-list", in: jsonRequest(pvr + `,"agent-sign-cert":["AQ==","Ag=="]`)},
		{name: "container/voucher-key", in: jsonVoucher(pvr), want: ErrInvalid},
		{name: "duplicate/nonce", in: jsonRequest(pvr + `,"nonce":"AAAAAAAAAAA="`), want: ErrMalformed},
		{name: "case-variant/proximity", in: jsonRequest(`"assertion":"proximity","Proximity-Registrar-Cert":"MAMCAQE="`), want: ErrMalformed},
		{name: "type/prior-number", in: jsonRequest(pvr + `,"prior-signed-voucher-request":5`), want: ErrInvalid},
		{name: "type/agent-sign-cert-object", in: jsonRequest(pvr + `,"agent-sign-cert":{}`), want: ErrInvalid},
		{name: "value/pubk-sha256-short", in: jsonRequest(pvr + `,"proximity-registrar-pubk-sha256":"AAAA"`), want: ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := DecodeRequestJSON([]byte(tc.in))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("DecodeRequestJSON: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || r != nil {
				t.Fatalf("DecodeRequestJSON = %v, %v; want %v", r, err, tc.want)
			}
		})
	}
}

// TestDecodeRequestJSON_NonceForms checks that each nonce spelling the
// published examples use decodes, and comes back out byte for byte.
func TestDecodeRequestJSON_NonceForms(t *testing.T) {
	t.Parallel()
	raw := []byte{0xfb, 0xf5, 0xc4, 0xf7, 0x32, 0xbd, 0xab, 0xc2, 0xe5, 0xd6, 0x5c, 0xa9, 0x4b, 0x4b, 0x4b, 0x4b}
	tests := []struct {
		name string
		text string
		want []byte
	}{
		{name: "base64url/unpadded", text: base64.RawURLEncoding.EncodeToString(raw), want: raw},
		{name: "base64url/padded", text: base64.URLEncoding.EncodeToString(raw), want: raw},
		{name: "base64/unpadded", text: base64.RawStdEncoding.EncodeToString(raw), want: raw},
		{name: "base64/padded", text: base64.StdEncoding.EncodeToString(raw), want: raw},
		{name: "rfc8995/vector", text: "-_XE9zK9q8Ll1qylMtLKeg", want: []byte{0xfb, 0xf5, 0xc4, 0xf7, 0x32, 0xbd, 0xab, 0xc2, 0xe5, 0xd6, 0xac, 0xa5, 0x32, 0xd2, 0xca, 0x7a}},
		// RFC 8995 Fig 6 carries hex-looking text; it is base64 of 24 bytes.
		{name: "rfc8995/hex-looking", text: "62a2e7693d82fcda2624de58fb6722e5", want: mustStdBase64(t, "62a2e7693d82fcda2624de58fb6722e5")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := jsonRequest(`"assertion":"proximity","nonce":"` + tc.text + `","proximity-registrar-cert":"MAMCAQE="`)
			r, err := DecodeRequestJSON([]byte(in))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(r.Nonce, tc.want) || r.NonceText != tc.text {
				t.Fatalf("nonce = %x %q, want %x %q", r.Nonce, r.NonceText, tc.want, tc.text)
			}
			out, err := r.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(out, []byte(`"nonce":"`+tc.text+`"`)) {
				t.Errorf("re-encoded nonce changed: %s", out)
			}
			// A voucher built from the request carries the same nonce text.
			v := &Voucher{Fields: Fields{Assertion: AssertionLogged, SerialNumber: "SN-1", PinnedDomainCert: jsonCert, Nonce: r.Nonce, NonceText: r.NonceText}}
			vb, err := v.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			back, err := DecodeVoucherJSON(vb)
			if err != nil {
				t.Fatal(err)
			}
			if !back.NonceEqual(&r.Fields) {
				t.Errorf("voucher nonce %q does not equal request nonce %q", back.NonceText, r.NonceText)
			}
		})
	}
}

func mustStdBase64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFields_NonceEqual(t *testing.T) {
	t.Parallel()
	n := []byte{0xfb, 0xf5, 0xc4, 0xf7, 0x32, 0xbd, 0xab, 0xc2}
	tests := []struct {
		name string
		a, b *Fields
		want bool
	}{
		{name: "bytes-equal/no-text", a: &Fields{Nonce: n}, b: &Fields{Nonce: bytes.Clone(n)}, want: true},
		{name: "bytes-equal/one-text", a: &Fields{Nonce: n, NonceText: "-_XE9zK9q8I"}, b: &Fields{Nonce: n}, want: true},
		{name: "same-text", a: &Fields{Nonce: n, NonceText: "-_XE9zK9q8I"}, b: &Fields{Nonce: n, NonceText: "-_XE9zK9q8I"}, want: true},
		{name: "text-differs/re-encoded", a: &Fields{Nonce: n, NonceText: "-_XE9zK9q8I"}, b: &Fields{Nonce: n, NonceText: "+/XE9zK9q8I="}, want: false},
		{name: "bytes-differ", a: &Fields{Nonce: n}, b: &Fields{Nonce: []byte("01234567")}, want: false},
		{name: "one-absent", a: &Fields{Nonce: n}, b: &Fields{}, want: false},
		{name: "both-absent", a: &Fields{}, b: &Fields{}, want: false},
		{name: "nil-other", a: &Fields{Nonce: n}, b: nil, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.a.NonceEqual(tc.b); got != tc.want {
				t.Errorf("NonceEqual = %v, want %v", got, tc.want)
			}
			if tc.b != nil {
				if got := tc.b.NonceEqual(tc.a); got != tc.want {
					t.Errorf("NonceEqual (swapped) = %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// TestDecodeVoucherJSON_Vectors decodes the published example JSON and
// checks decode→encode→decode is stable.
func TestDecodeVoucherJSON_Vectors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		file      string
		request   bool
		nonceText string
	}{
		{name: "rfc8995/voucher", file: "rfc8995/voucher_00-D0-E5-F2-00-02.json", nonceText: "-_XE9zK9q8Ll1qylMtLKeg"},
		{name: "rfc8995/example-voucher", file: "rfc8995/example-voucher.json", nonceText: "62a2e7693d82fcda2624de58fb6722e5"},
		{name: "rfc8995/pledge-request", file: "rfc8995/vr_00-D0-E5-F2-00-02.json", request: true, nonceText: "-_XE9zK9q8Ll1qylMtLKeg"},
		{name: "rfc8995/registrar-request", file: "rfc8995/parboiled_vr_00-D0-E5-F2-00-02.json", request: true, nonceText: "-_XE9zK9q8Ll1qylMtLKeg"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := cmsVectorJSON(t, tc.file)
			first, second, err := jsonRoundTrip(in, tc.request)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(first, second); diff != "" {
				t.Errorf("decode→encode→decode differs (-first +second):\n%s", diff)
			}
			var f *Fields
			switch v := first.(type) {
			case *Voucher:
				f = &v.Fields
			case *Request:
				f = &v.Fields
			}
			if f.NonceText != tc.nonceText {
				t.Errorf("nonce text = %q, want %q", f.NonceText, tc.nonceText)
			}
		})
	}
	t.Run("rfc8995/pledge-request-fields", func(t *testing.T) {
		t.Parallel()
		r, err := DecodeRequestJSON(cmsVectorJSON(t, "rfc8995/vr_00-D0-E5-F2-00-02.json"))
		if err != nil {
			t.Fatal(err)
		}
		wantCreated := time.Date(2021, 4, 13, 21, 43, 23, 747_000_000, time.UTC)
		if !r.CreatedOn.Equal(wantCreated) || r.SerialNumber != "00-D0-E5-F2-00-02" || r.Assertion != AssertionProximity || len(r.ProximityRegistrarCert) != 512 {
			t.Errorf("request = created %v serial %q assertion %q proximity cert %d bytes", r.CreatedOn, r.SerialNumber, r.Assertion, len(r.ProximityRegistrarCert))
		}
		if err := r.ValidatePledge(); err != nil {
			t.Errorf("ValidatePledge: %v", err)
		}
	})
}

// jsonRoundTrip decodes b, encodes the result, and decodes that again.
func jsonRoundTrip(b []byte, request bool) (first, second any, err error) {
	if request {
		r, err := DecodeRequestJSON(b)
		if err != nil {
			return nil, nil, err
		}
		out, err := r.MarshalJSON()
		if err != nil {
			return r, nil, err
		}
		r2, err := DecodeRequestJSON(out)
		if err != nil {
			return r, nil, err
		}
		return r, r2, nil
	}
	v, err := DecodeVoucherJSON(b)
	if err != nil {
		return nil, nil, err
	}
	out, err := v.MarshalJSON()
	if err != nil {
		return v, nil, err
	}
	v2, err := DecodeVoucherJSON(out)
	if err != nil {
		return v, nil, err
	}
	return v, v2, nil
}

func TestVoucher_UnmarshalJSON(t *testing.T) {
	t.Parallel()
	var v Voucher
	if err := v.UnmarshalJSON([]byte(jsonVoucher(jsonMinimal))); err != nil {
		t.Fatal(err)
	}
	if v.SerialNumber != "SN-1" {
		t.Errorf("serial = %q", v.SerialNumber)
	}
	var r Request
	if err := r.UnmarshalJSON([]byte(jsonVoucher(jsonMinimal))); !errors.Is(err, ErrInvalid) {
		t.Errorf("request from a voucher document: %v, want ErrInvalid", err)
	}
}

func FuzzDecodeJSON(f *testing.F) {
	f.Add([]byte(jsonVoucher(jsonMinimal)))
	f.Add([]byte(jsonVoucher(jsonMinimal + `,"nonce":"-_XE9zK9q8Ll1qylMtLKeg","created-on":"2021-04-13T17:43:24.589-04:00","extensions":["e"],"extension:e":{"a":[1]}`)))
	f.Add([]byte(jsonRequest(`"assertion":"proximity","nonce":"62a2e7693d82fcda2624de58fb6722e5","proximity-registrar-cert":"MAMCAQE=","agent-sign-cert":["AQ==","Ag=="]`)))
	f.Add([]byte(jsonVoucher(jsonMinimal + `,"Serial-Number":"x"`)))
	f.Add([]byte(`{"ietf-voucher:voucher":{}}`))
	for _, name := range []string{"voucher_00-D0-E5-F2-00-02.json", "vr_00-D0-E5-F2-00-02.json", "parboiled_vr_00-D0-E5-F2-00-02.json", "example-voucher.json"} {
		if b := jsonOptionalVector(name); b != nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, request := range []bool{false, true} {
			first, second, err := jsonRoundTrip(b, request)
			if first == nil {
				if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
					t.Fatalf("decode error wraps no expected sentinel: %v", err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("decoded, but encode→decode failed: %v", err)
			}
			if diff := cmp.Diff(first, second); diff != "" {
				t.Fatalf("decode→encode→decode differs (-first +second):\n%s", diff)
			}
		}
	})
}

// jsonOptionalVector returns an RFC 8995 JSON vector with its line
// wrapping removed, or nil when the vectors are absent.
func jsonOptionalVector(name string) []byte {
	dir := os.Getenv("GATEHOUSE_VECTORS")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "vectors")
	}
	b, err := os.ReadFile(filepath.Join(dir, "rfc8995", name))
	if err != nil {
		return nil
	}
	return bytes.ReplaceAll(b, []byte("\n"), nil)
}

func BenchmarkDecodeRequestJSON(b *testing.B) {
	in := []byte(jsonRequest(`"assertion":"proximity","created-on":"2021-04-13T17:43:23.747-04:00","serial-number":"00-D0-E5-F2-00-02","nonce":"-_XE9zK9q8Ll1qylMtLKeg","proximity-registrar-cert":"` + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x30}, 500)) + `"`))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeRequestJSON(in); err != nil {
			b.Fatal(err)
		}
	}
}
