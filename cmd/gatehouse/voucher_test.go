package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-pki/gatehouse/internal/testvectors"
)

func TestVoucherVerify_Vectors(t *testing.T) {
	t.Parallel()
	v := testvectors.Dir(t)
	p := func(name string) string { return filepath.Join(v, filepath.FromSlash(name)) }
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantSerial string // in the printed JSON
		wantErr    string // in stderr
	}{
		{
			name:       "rfc8995-voucher-in-validity",
			args:       []string{"voucher", "verify", p("rfc8995/voucher_00-D0-E5-F2-00-02.pkcs"), "--anchor", p("rfc8995/vendor.crt"), "--at", "2021-06-01T00:00:00Z"},
			wantSerial: "00-D0-E5-F2-00-02",
		},
		{
			name:       "rfc8995-voucher-pinned-masa-cert",
			args:       []string{"voucher", "verify", p("rfc8995/voucher_00-D0-E5-F2-00-02.b64"), "--anchor", p("rfc8995/masa.crt"), "--at", "2021-06-01T00:00:00Z"},
			wantSerial: "00-D0-E5-F2-00-02",
		},
		{
			name:     "rfc8995-voucher-masa-expired",
			args:     []string{"voucher", "verify", p("rfc8995/voucher_00-D0-E5-F2-00-02.pkcs"), "--anchor", p("rfc8995/vendor.crt"), "--at", "2030-01-01T00:00:00Z"},
			wantCode: exitFailure,
			wantErr:  `expired: signer certificate "CN=highway-test.example.com MASA" expired at 2023-04-13T21:40:16Z`,
		},
		{
			name:     "rfc8995-voucher-wrong-anchor",
			args:     []string{"voucher", "verify", p("rfc8995/voucher_00-D0-E5-F2-00-02.pkcs"), "--anchor", p("rfc8995/ownerca_secp384r1.crt"), "--at", "2021-06-01T00:00:00Z"},
			wantCode: exitFailure,
			wantErr:  "untrusted",
		},
		{
			name:       "rfc8995-pledge-request",
			args:       []string{"voucher", "verify", p("rfc8995/vr_00-D0-E5-F2-00-02.pkcs"), "--anchor", p("rfc8995/vendor.crt"), "--at", "2021-06-01T00:00:00Z"},
			wantSerial: "00-D0-E5-F2-00-02",
		},
		{
			name:       "cbrski-voucher",
			args:       []string{"voucher", "verify", p("cbrski/voucher.hex"), "--anchor", p("cbrski/masa_ca.der"), "--at", "2024-06-01T00:00:00Z"},
			wantSerial: "JADA123456789",
		},
		{
			name:     "cbrski-voucher-masa-tls-cert-is-not-the-signer",
			args:     []string{"voucher", "verify", p("cbrski/voucher.hex"), "--anchor", p("cbrski/masa.der"), "--at", "2024-06-01T00:00:00Z"},
			wantCode: exitFailure,
			wantErr:  "untrusted",
		},
		{
			name:     "no-anchor",
			args:     []string{"voucher", "verify", p("cbrski/voucher.hex")},
			wantCode: exitUsage,
			wantErr:  "--anchor is required",
		},
		{
			name:     "bad-time",
			args:     []string{"voucher", "verify", p("cbrski/voucher.hex"), "--anchor", p("cbrski/masa_ca.der"), "--at", "yesterday"},
			wantCode: exitUsage,
			wantErr:  "RFC 3339",
		},
		{
			name:     "missing-file",
			args:     []string{"voucher", "verify", p("nope.pkcs"), "--anchor", p("cbrski/masa_ca.der")},
			wantCode: exitFailure,
			wantErr:  "no such file",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := runCLI(t, tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.wantCode, errOut)
			}
			if tc.wantCode != exitOK {
				if !strings.Contains(errOut, tc.wantErr) || strings.Count(errOut, "\n") != 1 {
					t.Fatalf("stderr %q: want one line containing %q", errOut, tc.wantErr)
				}
				if out != "" {
					t.Fatalf("printed %q on failure", out)
				}
				return
			}
			var doc map[string]map[string]any
			if err := json.Unmarshal([]byte(out), &doc); err != nil {
				t.Fatalf("stdout is not JSON: %v\n%s", err, out)
			}
			var content map[string]any
			for _, c := range doc {
				content = c
			}
			if len(doc) != 1 || content["serial-number"] != tc.wantSerial {
				t.Fatalf("printed %v, want one container with serial-number %q", doc, tc.wantSerial)
			}
			if !strings.HasPrefix(errOut, "verified: ") {
				t.Fatalf("stderr %q, want a verified: summary", errOut)
			}
		})
	}
}

func TestVoucherInspect_Vectors(t *testing.T) {
	t.Parallel()
	v := testvectors.Dir(t)
	tests := []struct {
		file, wantFormat, wantKind, wantMedia string
	}{
		{"rfc8995/parboiled_vr_00-D0-E5-F2-00-02.pkcs", "cms", "voucher-request", "application/voucher-cms+json"},
		{"rfc8995/voucher_00-D0-E5-F2-00-02.b64", "cms", "voucher", "application/voucher-cms+json"},
		{"cbrski/pvr.hex", "cose", "voucher-request", "application/voucher+cose"},
		{"cbrski/voucher.hex", "cose", "voucher", "application/voucher+cose"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := runCLI(t, "voucher", "inspect", filepath.Join(v, filepath.FromSlash(tc.file)))
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			var doc struct {
				Format    string          `json:"format"`
				Kind      string          `json:"kind"`
				MediaType string          `json:"mediaType"`
				Content   json.RawMessage `json:"content"`
			}
			if err := json.Unmarshal([]byte(out), &doc); err != nil {
				t.Fatalf("not JSON: %v", err)
			}
			if doc.Format != tc.wantFormat || doc.Kind != tc.wantKind || doc.MediaType != tc.wantMedia || !strings.Contains(string(doc.Content), "serial-number") {
				t.Fatalf("inspect = %+v", doc)
			}
		})
	}
}
