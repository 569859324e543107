package registrar_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/gatehouse-pki/gatehouse/registrar"
)

// FuzzParseStatus (reliability F10): no panic; a report either parses with
// version and status or fails with ErrBadStatus; parsing is deterministic.
func FuzzParseStatus(f *testing.F) {
	for _, name := range []string{"example-telemetry.json", "example-enrollstatus.json"} {
		if b, err := os.ReadFile(filepath.Join("..", "..", "shared", "vectors", "rfc8995", name)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"version":1,"status":false,"reason":"x","reason-context":{"additional":"JSON"}}`))
	f.Add([]byte(`{"version":1,"status":true,"status":true}`))
	f.Add([]byte(`{"Version":1,"status":true}`))
	f.Add([]byte(`{"version":1,"status":true,"x":[[[[[[[[[]]]]]]]]]}`))
	f.Add([]byte(`{"version":-1,"status":true}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := registrar.ParseStatus(b)
		if err != nil {
			if !errors.Is(err, registrar.ErrBadStatus) {
				t.Fatalf("error does not wrap ErrBadStatus: %v", err)
			}
			return
		}
		again, err := registrar.ParseStatus(b)
		if err != nil || again.Version != rep.Version || again.Status != rep.Status || again.Reason != rep.Reason {
			t.Fatalf("not deterministic: %+v vs %+v (%v)", rep, again, err)
		}
	})
}

func TestParseStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in     string
		wantOK bool
	}{
		{`{"version":1,"status":true}`, true},
		{`{"version":2,"status":false,"reason":"r","reason-context":{"a":{"b":1}},"extra":[1]}`, true},
		{`{"version":1}`, false},
		{`{"status":true}`, false},
		{`{"version":1,"status":"true"}`, false},
		{`{"version":1.5,"status":true}`, false},
		{`{"version":1,"status":true,"status":false}`, false},
		{`{"version":1,"Status":true}`, false},
		{`{"version":1,"status":true,"reason-context":[]}`, false},
		{`{"version":1,"status":true,"reason-context":{"a":1,"a":2}}`, false},
		{`{"version":1,"status":true,"x":[[[[[[[[[[1]]]]]]]]]]}`, false},
		{`{"version":1,"status":true} {}`, false},
		{`[]`, false},
	}
	for _, tc := range tests {
		_, err := registrar.ParseStatus([]byte(tc.in))
		if (err == nil) != tc.wantOK {
			t.Errorf("ParseStatus(%s) = %v, want ok %v", tc.in, err, tc.wantOK)
		}
	}
}

// FuzzParseStatusCBOR (reliability F10, CBOR form of cBRSKI /vs and /es):
// no panic; a report parses with version and status or fails with
// ErrBadStatus; parsing is deterministic.
func FuzzParseStatusCBOR(f *testing.F) {
	f.Add([]byte{0xa2, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x01, 0x66, 's', 't', 'a', 't', 'u', 's', 0xf5})
	f.Add([]byte{0xa1, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x01})
	f.Add([]byte{0xa3, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x01, 0x66, 's', 't', 'a', 't', 'u', 's', 0xf4, 0x00, 0xa1, 0x00, 0x60})
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := registrar.ParseStatusCBOR(b)
		if err != nil {
			if !errors.Is(err, registrar.ErrBadStatus) {
				t.Fatalf("error does not wrap ErrBadStatus: %v", err)
			}
			return
		}
		again, err := registrar.ParseStatusCBOR(b)
		if err != nil || again.Version != rep.Version || again.Status != rep.Status || again.Reason != rep.Reason {
			t.Fatalf("not deterministic: %+v vs %+v (%v)", rep, again, err)
		}
	})
}
