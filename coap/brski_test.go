package coap_test

import (
	"bytes"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/gatehouse-pki/gatehouse/registrar"
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
