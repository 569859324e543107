package registrar_test

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/gatehouse-pki/gatehouse/internal/problem"
	"github.com/gatehouse-pki/gatehouse/internal/testvectors"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
	"github.com/gatehouse-pki/gatehouse/store"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

// input is a voucher-request as a non-HTTP transport hands it over.
func input(p *registrartest.Pledge, body []byte, served *x509.Certificate) registrar.VoucherInput {
	return registrar.VoucherInput{
		Body:             bytes.NewReader(body),
		MediaType:        registrar.MediaTypeVoucherCMS,
		PeerCertificates: []*x509.Certificate{p.IDevID.Leaf},
		Served:           served,
		Remote:           "192.0.2.1:5684",
	}
}

// TestService_RequestVoucher calls the transport-independent API directly,
// as the CoAP edge does: the same checks and refusals as over HTTPS, kinds
// instead of status codes, and no state change on refusal. Not parallel:
// the subtests compare the shared store's digest.
func TestService_RequestVoucher(t *testing.T) {
	e := newEnv(t)
	svc := e.reg.Service

	p := e.pledge(t, "SN-API-1")
	res, err := svc.RequestVoucher(t.Context(), input(p, p.Sign(t, p.Request(t)), e.reg.RA.Cert))
	if err != nil {
		t.Fatalf("RequestVoucher: %v", err)
	}
	if res.MediaType != registrar.MediaTypeVoucherCMS || res.Cached {
		t.Fatalf("response %s cached=%v", res.MediaType, res.Cached)
	}
	content, _, err := voucher.VerifyCMS(res.Body, voucher.VerifyOptions{Anchors: e.masaAnchors(), Time: e.fc.Now()})
	if err != nil {
		t.Fatalf("voucher does not verify: %v", err)
	}
	if v, err := voucher.DecodeVoucherJSON(content); err != nil || v.SerialNumber != "SN-API-1" {
		t.Fatalf("voucher %+v, %v", v, err)
	}
	e.reg.RequireAudit(t, "voucher-delivered", "SN-API-1")

	other := pkitest.NewServerCert(t, e.dom, "other.example").Cert
	tests := []struct {
		name      string
		in        func(p *registrartest.Pledge) registrar.VoucherInput
		wantKind  problem.Kind
		wantClose bool
	}{
		{name: "no-client-certificate", wantKind: problem.Unauthorized, in: func(p *registrartest.Pledge) registrar.VoucherInput {
			in := input(p, p.Sign(t, p.Request(t)), nil)
			in.PeerCertificates = nil
			return in
		}},
		{name: "proximity-pin-not-served", wantKind: problem.Unauthorized, wantClose: true, in: func(p *registrartest.Pledge) registrar.VoucherInput {
			return input(p, p.Sign(t, p.Request(t)), other)
		}},
		{name: "unsupported-media-type", wantKind: problem.UnsupportedMedia, in: func(p *registrartest.Pledge) registrar.VoucherInput {
			in := input(p, p.Sign(t, p.Request(t)), nil)
			in.MediaType = "application/x-unknown"
			return in
		}},
		{name: "accept-excludes-the-format", wantKind: problem.NotAcceptable, in: func(p *registrartest.Pledge) registrar.VoucherInput {
			in := input(p, p.Sign(t, p.Request(t)), nil)
			in.Accept = "text/plain"
			return in
		}},
		{name: "body-too-large", wantKind: problem.TooLarge, in: func(p *registrartest.Pledge) registrar.VoucherInput {
			return input(p, bytes.Repeat([]byte{0x30}, registrar.MaxBodyBytes+1), nil)
		}},
		{name: "signed-by-another-key", wantKind: problem.Forbidden, in: func(p *registrartest.Pledge) registrar.VoucherInput {
			q := e.pledge(t, "SN-API-OTHER")
			in := input(p, q.Sign(t, p.Request(t)), nil)
			return in
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := e.pledge(t, "SN-API-"+tc.name)
			in := tc.in(p)
			before := e.reg.StateDigest(t)
			_, err := svc.RequestVoucher(t.Context(), in)
			pe, ok := errors.AsType[*problem.Error](err)
			if !ok || pe.Kind != tc.wantKind || pe.CloseConnection != tc.wantClose {
				t.Fatalf("err = %v, want kind %s close=%v", err, tc.wantKind, tc.wantClose)
			}
			if after := e.reg.StateDigest(t); after != before {
				t.Error("a refusal changed the store beyond its audit event")
			}
		})
	}
}

// TestService_ReportStatus records a CBOR voucher_status (cBRSKI /vs) and
// refuses what ParseStatusCBOR refuses, with the kinds the CoAP edge maps.
// Not parallel: the subtests compare the shared store's digest.
func TestService_ReportStatus(t *testing.T) {
	e := newEnv(t)
	p := e.pledge(t, "SN-API-VS")
	e.onboard(t, p)
	report := []byte{0xa2, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x01, 0x66, 's', 't', 'a', 't', 'u', 's', 0xf5}
	in := registrar.StatusInput{
		Kind: store.TelemetryVoucherStatus, Body: bytes.NewReader(report), MediaType: registrar.MediaTypeCBOR,
		PeerCertificates: []*x509.Certificate{p.IDevID.Leaf},
	}
	if err := e.reg.Service.ReportStatus(t.Context(), in); err != nil {
		t.Fatalf("ReportStatus: %v", err)
	}
	key := registrar.DeviceKeyFor(p.IDevID.Leaf, "SN-API-VS")
	got, err := e.reg.DB().TelemetryFor(t.Context(), key)
	if err != nil || len(got) != 1 || !bytes.Equal(got[0].Raw, report) || !got[0].ClientCertMatched {
		t.Fatalf("telemetry = %+v, %v", got, err)
	}

	for _, tc := range []struct {
		name string
		edit func(*registrar.StatusInput)
		want problem.Kind
	}{
		{"no-client-certificate", func(in *registrar.StatusInput) { in.PeerCertificates = nil }, problem.Unauthorized},
		{"unsupported-media-type", func(in *registrar.StatusInput) { in.MediaType = "application/voucher+cose" }, problem.UnsupportedMedia},
		{"malformed-cbor", func(in *registrar.StatusInput) { in.Body = bytes.NewReader([]byte{0xa1, 0x61}) }, problem.BadRequest},
		{"json-as-cbor", func(in *registrar.StatusInput) { in.Body = strings.NewReader(`{"version":1,"status":true}`) }, problem.BadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := registrar.StatusInput{Kind: store.TelemetryEnrollStatus, Body: bytes.NewReader(report), MediaType: registrar.MediaTypeCBOR,
				PeerCertificates: []*x509.Certificate{p.IDevID.Leaf}}
			tc.edit(&in)
			before := e.reg.StateDigest(t)
			err := e.reg.Service.ReportStatus(t.Context(), in)
			if pe, ok := errors.AsType[*problem.Error](err); !ok || pe.Kind != tc.want {
				t.Fatalf("err = %v, want kind %s", err, tc.want)
			}
			if e.reg.StateDigest(t) != before {
				t.Error("a refused report changed the store")
			}
		})
	}
}

// TestParseStatusCBOR checks the CBOR form of voucher_status against the
// cBRSKI example (whose reason-context has an integer key) and the strict
// rules ParseStatus applies to JSON.
func TestParseStatusCBOR(t *testing.T) {
	t.Parallel()
	t.Run("cbrski-example", func(t *testing.T) {
		t.Parallel()
		rep, err := registrar.ParseStatusCBOR(testvectors.ReadHex(t, "cbrski/voucher-status.hex"))
		if err != nil {
			t.Fatalf("ParseStatusCBOR: %v", err)
		}
		if rep.Version != 1 || rep.Status || rep.Reason != "Informative human-readable error message" || len(rep.Unknown) != 0 {
			t.Fatalf("report = %+v", rep)
		}
	})
	for _, tc := range []struct {
		name string
		hex  string
		ok   bool
	}{
		{"minimal", "a26776657273696f6e0166737461747573f5", true},
		{"unknown-member", "a36776657273696f6e0166737461747573f46178a0", true},
		{"integer-key-member", "a36776657273696f6e0166737461747573f40001", true},
		{"missing-status", "a16776657273696f6e01", false},
		{"duplicate-key", "a36776657273696f6e0166737461747573f566737461747573f5", false},
		{"case-variant", "a36776657273696f6e0166737461747573f566537461747573f5", false},
		{"negative-version", "a26776657273696f6e2066737461747573f5", false},
		{"text-status", "a26776657273696f6e01667374617475736161", false},
		{"reason-not-text", "a36776657273696f6e0166737461747573f566726561736f6e01", false},
		{"reason-context-not-map", "a36776657273696f6e0166737461747573f56e726561736f6e2d636f6e7465787401", false},
		{"trailing-data", "a26776657273696f6e0166737461747573f500", false},
		{"array", "8201f5", false},
		{"tagged", "d818a26776657273696f6e0166737461747573f5", false},
		{"duplicate-nested", "a36776657273696f6e0166737461747573f56178a200010002", false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := hex.DecodeString(strings.ReplaceAll(tc.hex, " ", ""))
			if err != nil {
				t.Fatal(err)
			}
			_, err = registrar.ParseStatusCBOR(b)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseStatusCBOR(%s) = %v, want ok %v", tc.hex, err, tc.ok)
			}
			if err != nil && !errors.Is(err, registrar.ErrBadStatus) {
				t.Fatalf("error does not wrap ErrBadStatus: %v", err)
			}
		})
	}
}
