package coap_test

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/gatehouse-pki/gatehouse/coap"
	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
	"github.com/gatehouse-pki/gatehouse/store"
)

// TestServer_StatusOverCoAP: cBRSKI /vs and /es take the CBOR report
// (60) and answer 2.04 empty; the registrar records it for the device the
// DTLS certificate names. A non-CBOR report is 4.15, a malformed one 4.00,
// neither recorded.
func TestServer_StatusOverCoAP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.onboarded(t, "SN-COAP-VS")
	s := e.dial(t, *id)
	report, err := cbor.Marshal(map[string]any{"version": 1, "status": true})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		cf   message.MediaType
		body []byte
		want codes.Code
	}{
		{"vs/cbor", "/.well-known/brski/vs", 60, report, codes.Changed},
		{"vs/text", "/.well-known/brski/vs", 0, []byte("ok"), codes.UnsupportedMediaType},
		{"vs/malformed", "/.well-known/brski/vs", 60, []byte{0xa1, 0x61}, codes.BadRequest},
		{"rv/not-cose", "/.well-known/brski/rv", 836, []byte{0x01}, 0},
	}
	for _, tc := range tests {
		resp, err := s.Conn().Post(t.Context(), tc.path, tc.cf, bytes.NewReader(tc.body))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if tc.want == 0 {
			if resp.Code() < codes.BadRequest || resp.Code() >= codes.InternalServerError {
				t.Errorf("%s: %v, want a 4.xx refusal", tc.name, resp.Code())
			}
			continue
		}
		if resp.Code() != tc.want {
			body, _ := resp.ReadBody()
			t.Errorf("%s: %v (%s), want %v", tc.name, resp.Code(), body, tc.want)
		}
	}
	tel, err := e.reg.DB().TelemetryFor(t.Context(), registrar.DeviceKeyFor(id.Cert, "SN-COAP-VS"))
	if err != nil {
		t.Fatal(err)
	}
	if len(tel) != 1 || tel[0].Kind != store.TelemetryVoucherStatus {
		t.Fatalf("telemetry = %+v, want one voucher_status", tel)
	}
}

// TestServer_ESTFormats: /crts as multipart-core (62) of 287 parts and as
// one certificate (287), /att (285), /skg (62: a PKCS#8 key and the
// certs-only certificate for it), and 4.06 for a format a resource does
// not offer.
func TestServer_ESTFormats(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.onboarded(t, "SN-COAP-FMT")
	s := e.dial(t, *id)
	get := func(path string, accept message.MediaType) (codes.Code, message.MediaType, []byte) {
		t.Helper()
		resp, err := s.Conn().Get(t.Context(), path, message.Option{ID: message.Accept, Value: acceptValue(accept)})
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := resp.ReadBody()
		cf, _ := resp.ContentFormat()
		return resp.Code(), cf, body
	}
	code, cf, body := get("/.well-known/est/crts", 62)
	if code != codes.Content || cf != 62 {
		t.Fatalf("crts 62: %v cf %d", code, cf)
	}
	parts, err := coap.ParseMultipart(body)
	if err != nil || len(parts) != len(e.reg.DomainCA.Chain) {
		t.Fatalf("crts 62: %d parts (%v)", len(parts), err)
	}
	for i, p := range parts {
		if p.Format != coap.FormatPKIXCert || !bytes.Equal(p.Body, e.reg.DomainCA.Chain[i].Raw) {
			t.Fatalf("crts 62 part %d: format %d, not the domain chain's certificate", i, p.Format)
		}
	}
	code, cf, body = get("/.well-known/est/crts", 287)
	if len(e.reg.DomainCA.Chain) == 1 && (code != codes.Content || cf != 287 || !bytes.Equal(body, e.reg.DomainCA.Chain[0].Raw)) {
		t.Fatalf("crts 287: %v cf %d", code, cf)
	}
	if code, _, _ = get("/.well-known/est/crts", 50); code != codes.NotAcceptable {
		t.Fatalf("crts 50: %v, want 4.06", code)
	}
	code, cf, body = get("/.well-known/est/att", 285)
	if _, err := est.ParseCSRAttrs(body); code != codes.Content || cf != 285 || err != nil {
		t.Fatalf("att: %v cf %d: %v", code, cf, err)
	}

	csr := registrartest.NewCSR(t, pkitest.NewKey(t), "SN-COAP-FMT")
	resp, err := s.Conn().Post(t.Context(), "/.well-known/est/skg", 286, bytes.NewReader(csr))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = resp.ReadBody()
	if resp.Code() != codes.Changed {
		t.Fatalf("skg: %v %s", resp.Code(), body)
	}
	parts, err = coap.ParseMultipart(body)
	if err != nil || len(parts) != 2 || parts[0].Format != coap.FormatPKCS8 || parts[1].Format != coap.FormatCertsOnly {
		t.Fatalf("skg: %+v (%v)", parts, err)
	}
	key, err := x509.ParsePKCS8PrivateKey(parts[0].Body)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := est.ParseCertsOnly(parts[1].Body)
	if err != nil {
		t.Fatal(err)
	}
	if pub, ok := key.(crypto.Signer); !ok || !certs[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub.Public()) {
		t.Fatal("skg: the certificate is not for the returned key")
	}
}

func acceptValue(cf message.MediaType) []byte {
	if cf < 256 {
		return []byte{byte(cf)}
	}
	return []byte{byte(cf >> 8), byte(cf)}
}
