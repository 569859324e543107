package est_test

import (
	"bytes"
	"encoding/asn1"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

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

// roundTrip checks encode → parse gives the same value and encode is stable.
func roundTrip(t *testing.T, a *est.CSRAttrs) []byte {
	t.Helper()
	der, err := a.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	b, err := est.ParseCSRAttrs(der)
	if err != nil {
		t.Fatalf("parse own encoding: %v", err)
	}
	if d := cmp.Diff(a, b); d != "" {
		t.Fatalf("round trip (-want +got):\n%s", d)
	}
	again, err := b.MarshalBinary()
	if err != nil || !bytes.Equal(der, again) {
		t.Fatalf("encoding not stable: %v", err)
	}
	return der
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
			Subject: []est.NameAttribute{
				{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "SN-0001", HasValue: true},
				{Type: asn1.ObjectIdentifier{2, 5, 4, 5}, Value: "SN-0001", HasValue: true},
				{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: "Gatehouse Ünïcode", HasValue: true},
				{Type: asn1.ObjectIdentifier{2, 5, 4, 11}},
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
	der := roundTrip(t, fullAttrs())
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
