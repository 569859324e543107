package est_test

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/internal/testvectors"
)

var csrattrVectors = []string{"harkins01", "harkins02", "harkins03", "potato-example", "realistic-acp", "rfc7030-example01"}

// TestParseCSRAttrs_Vectors reads every RFC 7030 / RFC 9908 example and
// checks what it asks for.
func TestParseCSRAttrs_Vectors(t *testing.T) {
	t.Parallel()
	for _, name := range csrattrVectors {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			der := testvectors.Read(t, "csrattrs/"+name+".csrattr.der")
			b64 := testvectors.Read(t, "csrattrs/"+name+".csrattr.b64")
			fromB64, err := est.DecodeBase64Body(b64)
			if err != nil || !bytes.Equal(fromB64, der) {
				t.Fatalf(".b64 and .der differ: %v", err)
			}
			a, err := est.ParseCSRAttrs(der)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a.Raw, der) {
				t.Fatal("Raw is not the input")
			}
			roundTrip(t, a)
			switch name {
			case "realistic-acp":
				if len(a.Extensions) != 1 || !a.Extensions[0].ID.Equal(asn1.ObjectIdentifier{2, 5, 29, 17}) || !a.Extensions[0].Critical ||
					!bytes.Contains(a.Extensions[0].Value, []byte("rfc8994+fd739fc23c3440112233445500000000+@acp.example.com")) {
					t.Fatalf("ACP subjectAltName not read: %+v", a.Extensions)
				}
			case "harkins01":
				if len(a.KeyTypes) != 1 || a.KeyTypes[0].RSABits != 4096 {
					t.Fatalf("RSA 4096 key type not read: %+v", a.KeyTypes)
				}
			default:
				if !a.OIDs[0].Equal(est.OIDChallengePassword) || len(a.KeyTypes) != 1 || !a.KeyTypes[0].Algorithm.Equal(est.OIDPublicKeyEC) {
					t.Fatalf("challengePassword and EC key type not read: %+v", a)
				}
			}
		})
	}
}

// ignoreRaw leaves out the DER ParseCSRAttrs records beside the values
// (CSRAttrs.Raw, NameAttribute.Raw), which a value built by hand lacks.
var ignoreRaw = cmp.Options{cmpopts.IgnoreFields(est.CSRAttrs{}, "Raw"), cmpopts.IgnoreFields(est.NameAttribute{}, "Raw")}

// roundTrip checks encode → parse gives the same value and encode is
// stable; then that the parsed value, Raw fields included, survives a
// second round trip. It returns the encoding and the parsed value.
func roundTrip(t *testing.T, a *est.CSRAttrs) ([]byte, *est.CSRAttrs) {
	t.Helper()
	der, err := a.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	b, err := est.ParseCSRAttrs(der)
	if err != nil {
		t.Fatalf("parse own encoding: %v", err)
	}
	if d := cmp.Diff(a, b, ignoreRaw); d != "" {
		t.Fatalf("round trip (-want +got):\n%s", d)
	}
	if !bytes.Equal(b.Raw, der) {
		t.Fatal("Raw is not the parsed DER")
	}
	again, err := b.MarshalBinary()
	if err != nil || !bytes.Equal(der, again) {
		t.Fatalf("encoding not stable: %v", err)
	}
	c, err := est.ParseCSRAttrs(again)
	if err != nil {
		t.Fatalf("parse own encoding: %v", err)
	}
	if d := cmp.Diff(b, c); d != "" {
		t.Fatalf("second round trip (-want +got):\n%s", d)
	}
	return der, b
}

// fullAttrs uses every feature of the encoder: the BRSKI shape a registrar
// sends (challengePassword, key type, the exact subject and SANs).
func fullAttrs() *est.CSRAttrs {
	san := []byte{0x30, 0x0f, 0x82, 0x0d, 'p', 'l', 'e', 'd', 'g', 'e', '.', 'e', 'x', 'a', 'm', 'p', 'l'}
	san = san[:2+13]
	san[1] = 13
	return &est.CSRAttrs{
		OIDs:       []asn1.ObjectIdentifier{est.OIDChallengePassword, {1, 2, 840, 10045, 4, 3, 2}},
		KeyTypes:   []est.KeyType{{Algorithm: est.OIDPublicKeyEC, Curve: est.OIDCurveP256}, {Algorithm: est.OIDPublicKeyRSA, RSABits: 3072}},
		Extensions: []est.Extension{{ID: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: san}},
		Template: &est.Template{
			Subject: [][]est.NameAttribute{
				{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "SN-0001", HasValue: true}},
				{{Type: asn1.ObjectIdentifier{2, 5, 4, 5}, Value: "SN-0001", HasValue: true}},
				{{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: "Gatehouse Ünïcode", HasValue: true}},
				{{Type: asn1.ObjectIdentifier{2, 5, 4, 11}}},
				// A multi-valued RDN, one value a BMPString kept as DER.
				{
					{Type: asn1.ObjectIdentifier{2, 5, 4, 7}, Value: "Berlin", HasValue: true},
					{Type: asn1.ObjectIdentifier{2, 5, 4, 8}, HasValue: true, Raw: []byte{0x1e, 0x04, 0x00, 'B', 0x00, 'E'}},
				},
			},
			KeyType: &est.KeyType{Algorithm: est.OIDPublicKeyEC, Curve: est.OIDCurveP256},
			Extensions: []est.Extension{
				{ID: asn1.ObjectIdentifier{2, 5, 29, 17}, Critical: true, Value: san},
				{ID: asn1.ObjectIdentifier{2, 5, 29, 37}},
			},
		},
		Attributes: []est.Attribute{{Type: asn1.ObjectIdentifier{1, 2, 3, 4}, Values: [][]byte{{0x05, 0x00}}}},
	}
}

func TestCSRAttrs_RoundTripAndOpenSSL(t *testing.T) {
	t.Parallel()
	der, parsed := roundTrip(t, fullAttrs())
	// Values given as text are encoded PrintableString when they fit,
	// else UTF8String; a value given as DER is kept as it is.
	subj := parsed.Template.Subject
	for i, want := range []byte{0x13, 0x13, 0x0c} {
		if got := subj[i][0].Raw; len(got) == 0 || got[0] != want {
			t.Errorf("subject attribute %d encoded as %x, want tag %#x", i, got, want)
		}
	}
	if got := subj[4][1]; !bytes.Equal(got.Raw, []byte{0x1e, 0x04, 0x00, 'B', 0x00, 'E'}) || got.Value != "" || !got.HasValue {
		t.Errorf("BMPString subject attribute = %+v", got)
	}
	if empty, err := (&est.CSRAttrs{}).MarshalBinary(); err != nil || !bytes.Equal(empty, []byte{0x30, 0x00}) {
		t.Fatalf("empty CsrAttrs = %x, %v", empty, err)
	}
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	path := filepath.Join(t.TempDir(), "attrs.der")
	if err := os.WriteFile(path, der, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), openssl, "asn1parse", "-inform", "DER", "-in", path).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl asn1parse: %v\n%s", err, out)
	}
	for _, want := range []string{"challengePassword", "prime256v1", "Extension Request", "1.2.840.113549.1.9.16.2.61", "1.2.840.113549.1.9.16.2.62", "SN-0001", "X509v3 Subject Alternative Name"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("openssl asn1parse output lacks %q:\n%s", want, out)
		}
	}
}

func TestCSRAttrs_Refusals(t *testing.T) {
	t.Parallel()
	bad := map[string]*est.CSRAttrs{
		"ec-without-curve":     {KeyTypes: []est.KeyType{{Algorithm: est.OIDPublicKeyEC}}},
		"ed25519-as-key-type":  {KeyTypes: []est.KeyType{{Algorithm: est.OIDPublicKeyEd25519}}},
		"extension-no-value":   {Extensions: []est.Extension{{ID: asn1.ObjectIdentifier{2, 5, 29, 17}}}},
		"duplicate-extensions": {Extensions: []est.Extension{{ID: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: []byte{0x30, 0}}, {ID: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: []byte{0x30, 0}}}},
	}
	bad["template-as-attribute"] = &est.CSRAttrs{Attributes: []est.Attribute{{Type: est.OIDCertificationRequestInfoTemplate, Values: [][]byte{{0x30, 0x03, 0x02, 0x01, 0x00}}}}}
	bad["extreq-as-attribute"] = &est.CSRAttrs{Attributes: []est.Attribute{{Type: est.OIDExtensionRequest, Values: [][]byte{{0x30, 0x00}}}}}
	bad["empty-subject-rdn"] = &est.CSRAttrs{Template: &est.Template{Subject: [][]est.NameAttribute{{}}}}
	bad["too-many-elements"] = &est.CSRAttrs{OIDs: make([]asn1.ObjectIdentifier, 257)}
	for i := range bad["too-many-elements"].OIDs {
		bad["too-many-elements"].OIDs[i] = asn1.ObjectIdentifier{1, 2, i}
	}
	for name, a := range bad {
		if _, err := a.MarshalBinary(); err == nil {
			t.Errorf("%s: MarshalBinary succeeded", name)
		}
	}
	for name, b := range map[string]string{
		"trailing":      "MAAF",
		"not-sequence":  "BQA=",
		"two-extreqs":   "MCYwEQYJKoZIhvcNAQkOMQQwAjAAMBEGCSqGSIb3DQEJDjEEMAIwAA==",
		"integer-child": "MAMCAQE=",
		// RFC 9908 §3.3 key types with the wrong value: a curve that is an
		// INTEGER, two curves, an RSA size of zero.
		"ec-curve-integer": "MBEwDwYHKoZIzj0CATEEAgIBAA==",
		"ec-two-curves":    "MBswGQYHKoZIzj0CATEOBgUrgQQAIgYFK4EEACM=",
		"rsa-zero-bits":    "MBIwEAYJKoZIhvcNAQEBMQMCAQA=",
	} {
		der, err := base64.StdEncoding.DecodeString(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := est.ParseCSRAttrs(der); err == nil {
			t.Errorf("%s: ParseCSRAttrs accepted %x", name, der)
		}
	}
}

// rfc8951CSRAttrs is the CSR attributes example of RFC 8951 §4.5.2:
// challengePassword, ecPublicKey secp384r1, an extensionRequest naming
// macAddress by its bare OID, and ecdsaWithSHA384.
const rfc8951CSRAttrs = "MEEGCSqGSIb3DQEJBzASBgcqhkjOPQIBMQcGBSuBBAAiMBYGCSqGSIb3DQEJDjEJBgcrBgEBAQEWBggqhkjOPQQDAw=="

// TestCSRAttrs_ClientView_RFC8951 reads the RFC 8951 example as a client
// does: it asks for the channel binding and a P-384 key; the bare-OID
// extension request carries nothing to copy.
func TestCSRAttrs_ClientView_RFC8951(t *testing.T) {
	t.Parallel()
	der, err := est.DecodeBase64Body([]byte(rfc8951CSRAttrs))
	if err != nil {
		t.Fatal(err)
	}
	a, err := est.ParseCSRAttrs(der)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, a)
	if !a.ChallengePasswordRequested() {
		t.Error("challengePassword not seen")
	}
	if kt, ok := a.PreferredKeyType(); !ok || kt.String() != "ec P-384" {
		t.Errorf("key type = %v (%v), want ec P-384", kt, ok)
	}
	if a.Template != nil || len(a.RequestedExtensions()) != 0 {
		t.Errorf("unexpected template/subject/extensions: %+v", a)
	}
	if len(a.Attributes) != 1 || !a.Attributes[0].Type.Equal(est.OIDExtensionRequest) {
		t.Errorf("the bare-OID extension request is not kept: %+v", a.Attributes)
	}
	empty, err := est.ParseCSRAttrs([]byte{0x30, 0x00})
	if err != nil || empty.ChallengePasswordRequested() {
		t.Fatalf("empty CsrAttrs = %+v, %v", empty, err)
	}
	if kt, ok := empty.PreferredKeyType(); ok {
		t.Fatalf("empty CsrAttrs asks for key type %s", kt)
	}
}

// TestCSRAttrs_ClientView_KeyTypes: unknown OIDs and attributes are
// ignored, and the first key type a client supports wins; the template's
// key type wins over any attribute.
func TestCSRAttrs_ClientView_KeyTypes(t *testing.T) {
	t.Parallel()
	secp256k1 := asn1.ObjectIdentifier{1, 3, 132, 0, 10}
	unknown := est.Attribute{Type: asn1.ObjectIdentifier{1, 2, 3, 4}, Values: [][]byte{{0x05, 0x00}}}
	ed := est.Attribute{Type: est.OIDPublicKeyEd25519, Values: [][]byte{{0x05, 0x00}}}
	cpAttr := est.Attribute{Type: est.OIDChallengePassword}
	tests := []struct {
		name   string
		attrs  *est.CSRAttrs
		want   string
		wantCP bool
	}{
		{name: "first-supported", want: "rsa 3072", attrs: &est.CSRAttrs{
			OIDs:       []asn1.ObjectIdentifier{{1, 2, 3, 4, 5}},
			KeyTypes:   []est.KeyType{{Algorithm: est.OIDPublicKeyEC, Curve: secp256k1}, {Algorithm: est.OIDPublicKeyRSA, RSABits: 1024}, {Algorithm: est.OIDPublicKeyRSA, RSABits: 3072}, {Algorithm: est.OIDPublicKeyEC, Curve: est.OIDCurveP384}},
			Attributes: []est.Attribute{unknown},
		}},
		{name: "ed25519-attribute", want: "ed25519", wantCP: true, attrs: &est.CSRAttrs{Attributes: []est.Attribute{unknown, ed, cpAttr}}},
		{name: "template-wins", want: "ec P-521", attrs: &est.CSRAttrs{
			KeyTypes: []est.KeyType{{Algorithm: est.OIDPublicKeyEC, Curve: est.OIDCurveP256}},
			Template: &est.Template{KeyType: &est.KeyType{Algorithm: est.OIDPublicKeyEC, Curve: est.OIDCurveP521}},
		}},
		{name: "template-ec-any-curve", want: "ec P-256", attrs: &est.CSRAttrs{Template: &est.Template{KeyType: &est.KeyType{Algorithm: est.OIDPublicKeyEC}}}},
		{name: "template-rsa", want: "rsa 2048", attrs: &est.CSRAttrs{Template: &est.Template{KeyType: &est.KeyType{Algorithm: est.OIDPublicKeyRSA}}}},
		{name: "template-unsupported-falls-back", want: "ec P-384", wantCP: true, attrs: &est.CSRAttrs{
			KeyTypes: []est.KeyType{{Algorithm: est.OIDPublicKeyEC, Curve: est.OIDCurveP384}},
			Template: &est.Template{KeyType: &est.KeyType{Algorithm: est.OIDPublicKeyEC, Curve: secp256k1}, Attributes: []est.Attribute{cpAttr}},
		}},
		{name: "none-supported", want: "", attrs: &est.CSRAttrs{KeyTypes: []est.KeyType{{Algorithm: est.OIDPublicKeyEC, Curve: secp256k1}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, a := roundTrip(t, tc.attrs) // as the client receives it
			kt, ok := a.PreferredKeyType()
			if got := map[bool]string{true: kt.String()}[ok]; got != tc.want {
				t.Errorf("PreferredKeyType = %q, want %q", got, tc.want)
			}
			if a.ChallengePasswordRequested() != tc.wantCP {
				t.Errorf("ChallengePasswordRequested = %v, want %v", !tc.wantCP, tc.wantCP)
			}
		})
	}
}

// csrTemplateAttrs builds an RFC 9908 CsrAttrs with a
// CertificationRequestInfoTemplate: subject CN (value given) and
// serialNumber (left to the client), an id-ecPublicKey P-384 key, and an
// extensionReqTemplate with a SAN value and a keyUsage left open. It is
// written with cryptobyte, independently of MarshalBinary.
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

// TestCSRAttrs_ClientView_Template reads an RFC 9908 template as a client
// does: subject RDNs with DER values (or none, for the client to fill),
// the template's key type, extensions with and without values.
func TestCSRAttrs_ClientView_Template(t *testing.T) {
	t.Parallel()
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte("device.example")}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := est.ParseCSRAttrs(csrTemplateAttrs(san))
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, a)
	kt, ok := a.PreferredKeyType()
	if a.Template == nil || !a.ChallengePasswordRequested() || !ok || kt.String() != "ec P-384" {
		t.Fatalf("attrs = %+v", a)
	}
	s := a.Template.Subject
	if len(s) != 2 || !s[0][0].HasValue || !bytes.Equal(s[0][0].Raw, append([]byte{0x0c, 14}, "device.example"...)) || s[0][0].Value != "device.example" || s[1][0].HasValue || s[1][0].Raw != nil {
		t.Fatalf("subject template = %+v", s)
	}
	exts := a.RequestedExtensions()
	if len(exts) != 2 || !bytes.Equal(exts[0].Value, san) || exts[1].Value != nil || !exts[1].Critical {
		t.Fatalf("extensions = %+v", exts)
	}
	for _, bad := range [][]byte{nil, {0x31, 0x00}, {0x30, 0x01, 0x05}, {0x30, 0x03, 0x02, 0x01, 0x01}} {
		if _, err := est.ParseCSRAttrs(bad); !errors.Is(err, est.ErrCSRAttrs) {
			t.Errorf("ParseCSRAttrs(%x) = %v, want ErrCSRAttrs", bad, err)
		}
	}
}

// TestParseName reads a certificate subject, multi-valued RDN and
// non-string values included, and MarshalName writes it back byte for
// byte.
func TestParseName(t *testing.T) {
	t.Parallel()
	der, err := asn1.Marshal(pkix.RDNSequence{
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 5}, Value: "SN-1"}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "dev ü"}, {Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}, Value: asn1.RawValue{Tag: asn1.TagIA5String, Bytes: []byte("example")}}},
		{{Type: asn1.ObjectIdentifier{1, 2, 3}, Value: 7}},
	})
	if err != nil {
		t.Fatal(err)
	}
	rdns, err := est.ParseName(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(rdns) != 3 || len(rdns[1]) != 2 || rdns[0][0].Value != "SN-1" || rdns[1][0].Value != "dev ü" || rdns[1][1].Value != "example" || rdns[2][0].Value != "" || !rdns[2][0].HasValue {
		t.Fatalf("ParseName = %+v", rdns)
	}
	back, err := est.MarshalName(rdns)
	if err != nil || !bytes.Equal(back, der) {
		t.Fatalf("MarshalName = %x, %v; want %x", back, err, der)
	}
	if _, err := est.MarshalName([][]est.NameAttribute{{{Type: asn1.ObjectIdentifier{2, 5, 4, 5}}}}); !errors.Is(err, est.ErrCSRAttrs) {
		t.Errorf("MarshalName without a value = %v, want ErrCSRAttrs", err)
	}
	if _, err := est.MarshalName([][]est.NameAttribute{{}}); !errors.Is(err, est.ErrCSRAttrs) {
		t.Errorf("MarshalName with an empty RDN = %v, want ErrCSRAttrs", err)
	}
	for _, bad := range [][]byte{nil, {0x30, 0x02, 0x31, 0x00}, append(bytes.Clone(der), 0)} {
		if _, err := est.ParseName(bad); !errors.Is(err, est.ErrCSRAttrs) {
			t.Errorf("ParseName(%x) = %v, want ErrCSRAttrs", bad, err)
		}
	}
}
