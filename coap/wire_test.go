package coap

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestCheckRequest(t *testing.T) {
	t.Parallel()
	get := func(opts ...byte) []byte {
		return append([]byte{0x40, 0x01, 0x12, 0x34}, opts...)
	}
	tests := []struct {
		name     string
		in       []byte
		want     Verdict
		wantCode byte // 0: a Reset or nothing
	}{
		{"ok/uri-path", get(0xb4, 'c', 'r', 't', 's'), Pass, 0},
		{"ok/empty-ack", []byte{0x60, 0, 0, 1}, Pass, 0},
		{"ok/elective-unknown", get(0xe1, 0x06, 0xf3, 1), Pass, 0}, // option 2048 is even
		{"short", []byte{0x40, 1}, Drop, 0},
		{"version-2", []byte{0x80, 1, 0, 1}, Drop, 0},
		{"tkl-9", append([]byte{0x49, 1, 0, 1}, make([]byte, 9)...), Reply, 0},
		{"tkl-9-ack", append([]byte{0x69, 0x45, 0, 1}, make([]byte, 9)...), Drop, 0},
		{"truncated-token", []byte{0x44, 1, 0, 1, 1}, Reply, 0},
		{"truncated-option", get(0xb4, 'c'), Reply, 0},
		{"reserved-nibble", get(0xf1, 0), Reply, 0},
		{"marker-no-payload", get(0xff), Reply, 0},
		{"empty-with-token", []byte{0x41, 0, 0, 1, 9}, Reply, 0},
		{"unknown-critical", get(0xd1, 8, 1), Reply, codeBadOption}, // option 21
		{"critical-65001", get(0xe1, 0xfc, 0xdc, 1), Reply, codeBadOption},
		{"two-content-formats", get(0xc1, 50, 0x01, 50), Reply, codeBadOption},
		{"content-format-3-bytes", get(0xc3, 0, 1, 30), Reply, codeBadOption},
		{"if-none-match", get(0x50), Reply, codeBadOption},
		{"response-with-bad-option-passes", []byte{0x60, 0x45, 0, 1, 0xd1, 0, 1}, Pass, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v, out := CheckRequest(tc.in)
			if v != tc.want {
				t.Fatalf("verdict %d, want %d", v, tc.want)
			}
			if v != Reply {
				return
			}
			mid := binary.BigEndian.Uint16(tc.in[2:4])
			if got := binary.BigEndian.Uint16(out[2:4]); got != mid {
				t.Fatalf("reply mid %d, want %d", got, mid)
			}
			if tc.wantCode == 0 {
				if out[0]>>4&3 != typeRST || out[1] != 0 {
					t.Fatalf("reply %x, want RST", out)
				}
				return
			}
			if out[1] != tc.wantCode || out[0]>>4&3 != typeACK {
				t.Fatalf("reply %x, want ACK %d", out, tc.wantCode)
			}
		})
	}
}

// FuzzCheckRequest: no panic; a Reply is a well-formed message for the
// same message ID (ACK or RST) or a NON; a Pass is a message whose header
// and options parse.
func FuzzCheckRequest(f *testing.F) {
	f.Add([]byte{0x40, 0x01, 0x12, 0x34, 0xb4, 'c', 'r', 't', 's'})
	f.Add([]byte{0x44, 0x02, 0, 1, 1, 2, 3, 4, 0xbd, 0x00, 'x', 0x12, 0x01, 0x1e, 0xff, 1})
	f.Add([]byte{0x50, 0x02, 0, 1, 0xe1, 0xfc, 0xdc, 1})
	f.Add([]byte{0x49, 1, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		if r := CheckSize(b, len(b)/2); r != nil && (len(r) < 4 || r[1] != codeTooLarge || !bytes.Equal(r[2:4], b[2:4]) && r[0]>>4&3 == typeACK) {
			t.Fatalf("CheckSize reply %x", r)
		}
		v, out := CheckRequest(b)
		if !bytes.Equal(in, b) {
			t.Fatal("input modified")
		}
		switch v {
		case Reply:
			if len(out) < 4 || out[0]>>6 != 1 {
				t.Fatalf("bad reply %x", out)
			}
			if typ := out[0] >> 4 & 3; typ != typeNON && !bytes.Equal(out[2:4], b[2:4]) {
				t.Fatalf("reply mid %x, request %x", out[2:4], b[2:4])
			}
			if rv, _ := CheckRequest(out); rv == Reply {
				t.Fatalf("our own reply %x is rejected", out)
			}
		case Pass:
			h := header{code: b[1]}
			if _, err := checkOptions(b, &h); err != nil {
				t.Fatalf("passed a format error: %v", err)
			}
		case Drop:
		default:
			t.Fatalf("verdict %d", v)
		}
	})
}

func TestCheckSize(t *testing.T) {
	t.Parallel()
	req := append([]byte{0x42, 0x02, 0, 7, 0xaa, 0xbb, 0xff}, make([]byte, 100)...)
	if CheckSize(req, 200) != nil {
		t.Fatal("a request under the limit was answered")
	}
	out := CheckSize(req, 50)
	if len(out) < 6 || out[1] != codeTooLarge || out[0]>>4&3 != typeACK || out[2] != 0 || out[3] != 7 || out[4] != 0xaa || out[5] != 0xbb {
		t.Fatalf("reply %x, want an ACK 4.13 for mid 7 with the token", out)
	}
	resp := append([]byte{0x60, 0x45, 0, 7, 0xff}, make([]byte, 100)...)
	if CheckSize(resp, 50) != nil {
		t.Fatal("a response was answered")
	}
}
