package coap

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

func TestMultipart_RoundTrip(t *testing.T) {
	t.Parallel()
	parts := []Part{{FormatPKCS8, []byte{1, 2, 3}}, {FormatCertsOnly, []byte{4, 5}}}
	b, err := MarshalMultipart(parts)
	if err != nil {
		t.Fatal(err)
	}
	// RFC 9148 §5.3 example shape: 84 19 011C 43 … 19 0119 42 …
	want := []byte{0x84, 0x19, 0x01, 0x1c, 0x43, 1, 2, 3, 0x19, 0x01, 0x19, 0x42, 4, 5}
	if !bytes.Equal(b, want) {
		t.Fatalf("encoding %x, want %x", b, want)
	}
	got, err := ParseMultipart(b)
	if err != nil || !slices.EqualFunc(got, parts, func(a, b Part) bool { return a.Format == b.Format && bytes.Equal(a.Body, b.Body) }) {
		t.Fatalf("parse = %v, %v", got, err)
	}
	for name, bad := range map[string][]byte{
		"odd":          {0x81, 0x01},
		"empty":        {0x80},
		"text-body":    {0x82, 0x01, 0x61, 'a'},
		"negative-cf":  {0x82, 0x20, 0x41, 1},
		"indefinite":   {0x9f, 0x01, 0x41, 1, 0xff},
		"trailing":     {0x82, 0x01, 0x41, 1, 0},
		"cf-too-large": {0x82, 0x1a, 0, 1, 0, 0, 0x41, 1},
	} {
		if _, err := ParseMultipart(bad); !errors.Is(err, ErrMultipart) {
			t.Errorf("%s: %v, want ErrMultipart", name, err)
		}
	}
}

// FuzzParseMultipart: no panic; what parses re-encodes to something that
// parses to the same parts.
func FuzzParseMultipart(f *testing.F) {
	f.Add([]byte{0x84, 0x19, 0x01, 0x1c, 0x43, 1, 2, 3, 0x19, 0x01, 0x19, 0x42, 4, 5})
	f.Add([]byte{0x82, 0x19, 0x01, 0x1f, 0x40})
	f.Fuzz(func(t *testing.T, b []byte) {
		parts, err := ParseMultipart(b)
		if err != nil {
			return
		}
		enc, err := MarshalMultipart(parts)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseMultipart(enc)
		if err != nil || !slices.EqualFunc(again, parts, func(a, b Part) bool { return a.Format == b.Format && bytes.Equal(a.Body, b.Body) }) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
