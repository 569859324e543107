package coap

import (
	"bytes"
	"testing"

	"github.com/pion/dtls/v3/pkg/crypto/elliptic"
	"github.com/pion/dtls/v3/pkg/protocol"
	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/dtls/v3/pkg/protocol/recordlayer"
)

// helloRecord is a DTLS 1.2 ClientHello record as pion's client builds
// it, with cookie.
func helloRecord(tb testing.TB, cookie []byte) []byte {
	tb.Helper()
	return marshalRecord(tb, &handshake.MessageClientHello{
		Version:            protocol.Version1_2,
		Cookie:             cookie,
		CipherSuiteIDs:     []uint16{0xc0ae, 0xc02b},
		CompressionMethods: []*protocol.CompressionMethod{{}},
		Extensions: []extension.Extension{
			&extension.SupportedEllipticCurves{EllipticCurves: []elliptic.Curve{elliptic.P256}},
			&extension.ServerName{ServerName: "registrar.example"},
		},
	})
}

func marshalRecord(tb testing.TB, m handshake.Message) []byte {
	tb.Helper()
	b, err := (&recordlayer.RecordLayer{
		Header:  recordlayer.Header{Version: protocol.Version1_2},
		Content: &handshake.Handshake{Message: m},
	}).Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestParseClientHello(t *testing.T) {
	t.Parallel()
	cookie := bytes.Repeat([]byte{0xc0}, 20)
	good := helloRecord(t, cookie)
	noExt := marshalRecord(t, &handshake.MessageClientHello{
		Version: protocol.Version1_2, CipherSuiteIDs: []uint16{0xc0ae}, CompressionMethods: []*protocol.CompressionMethod{{}},
	})
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	tests := []struct {
		name   string
		in     []byte
		ok     bool
		cookie []byte
	}{
		{name: "cookie", in: good, ok: true, cookie: cookie},
		{name: "cookieless", in: helloRecord(t, nil), ok: true},
		{name: "no-extensions", in: noExt, ok: true},
		{name: "empty", in: nil},
		{name: "truncated", in: good[:len(good)-1]},
		{name: "trailing-byte", in: append(append([]byte(nil), good...), 0)},
		{name: "two-records", in: append(append([]byte(nil), good...), good...)},
		{name: "not-handshake", in: mutate(func(b []byte) []byte { b[0] = 23; return b })},
		{name: "epoch-1", in: mutate(func(b []byte) []byte { b[4] = 1; return b })},
		{name: "server-hello", in: mutate(func(b []byte) []byte { b[13] = 2; return b })},
		{name: "fragment", in: mutate(func(b []byte) []byte { b[13+11]--; return b })},
		{name: "fragment-offset", in: mutate(func(b []byte) []byte { b[13+8] = 1; return b })},
		{name: "tls-version", in: mutate(func(b []byte) []byte { b[25] = 3; return b })},
		// client_version(2) random(32) then the session_id length.
		{name: "session-id-overrun", in: mutate(func(b []byte) []byte { b[25+34] = 200; return b })},
		{name: "cookie-overrun", in: mutate(func(b []byte) []byte { b[25+35] = 255; return b })},
		// session_id(1) cookie(1+20) cipher_suites(2+4) compression(1+1),
		// then the extensions' length, one more than there is.
		{name: "extensions-overrun", in: mutate(func(b []byte) []byte { b[25+34+1+21+6+2+1]++; return b })},
		{name: "extension-overrun", in: mutate(func(b []byte) []byte { b[25+34+1+21+6+2+2+3]++; return b })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, ok := parseClientHello(tc.in)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if !bytes.Equal(h.cookie, tc.cookie) {
				t.Fatalf("cookie = %x, want %x", h.cookie, tc.cookie)
			}
		})
	}
}

func TestParseHelloVerifyRequest(t *testing.T) {
	t.Parallel()
	cookie := bytes.Repeat([]byte{7}, 20)
	hvr := marshalRecord(t, &handshake.MessageHelloVerifyRequest{Version: protocol.Version1_2, Cookie: cookie})
	if c, ok := parseHelloVerifyRequest(hvr); !ok || !bytes.Equal(c, cookie) {
		t.Fatalf("parse = %x %v, want %x", c, ok, cookie)
	}
	// Followed by another record in the same datagram: the first counts.
	if c, ok := parseHelloVerifyRequest(append(append([]byte(nil), hvr...), hvr...)); !ok || !bytes.Equal(c, cookie) {
		t.Fatalf("two records: %x %v", c, ok)
	}
	for _, bad := range [][]byte{nil, hvr[:len(hvr)-1], helloRecord(t, cookie), marshalRecord(t, &handshake.MessageHelloVerifyRequest{Version: protocol.Version1_2})} {
		if c, ok := parseHelloVerifyRequest(bad); ok {
			t.Fatalf("parse(%x) = %x, want refusal", bad, c)
		}
	}
}

// FuzzParseClientHello: the front's parsers never panic, return a cookie
// inside the input, and refuse any truncation of what they accept (every
// length is checked exactly).
func FuzzParseClientHello(f *testing.F) {
	f.Add(helloRecord(f, nil))
	f.Add(helloRecord(f, bytes.Repeat([]byte{1}, 32)))
	f.Add(marshalRecord(f, &handshake.MessageHelloVerifyRequest{Version: protocol.Version1_2, Cookie: []byte{1, 2, 3}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, ok := parseClientHello(b); ok {
			if len(h.cookie) > 255 || (len(h.cookie) > 0 && !bytes.Contains(b, h.cookie)) {
				t.Fatalf("cookie %x not from the input", h.cookie)
			}
			if _, ok := parseClientHello(b[:len(b)-1]); ok {
				t.Fatal("a truncated ClientHello was accepted")
			}
		}
		if c, ok := parseHelloVerifyRequest(b); ok {
			if len(c) == 0 || !bytes.Contains(b, c) {
				t.Fatalf("cookie %x not from the input", c)
			}
		}
	})
}
