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

// TestHelloVerifyRequest: the front's HelloVerifyRequest is what pion's
// parser reads (record and message version DTLS 1.0, the hello's record
// sequence number, message_seq 0, the cookie) and shorter than the hello.
func TestHelloVerifyRequest(t *testing.T) {
	t.Parallel()
	in := helloRecord(t, nil)
	in[10] = 9 // record sequence number 9
	h, ok := parseClientHello(in)
	if !ok {
		t.Fatal("hello refused")
	}
	cookie := bytes.Repeat([]byte{7}, cookieLen)
	out := helloVerifyRequest(nil, h.recordSeq, cookie)
	if len(out) >= len(in) {
		t.Fatalf("HelloVerifyRequest of %d bytes for a hello of %d", len(out), len(in))
	}
	var rec recordlayer.RecordLayer
	if err := rec.Unmarshal(out); err != nil {
		t.Fatal(err)
	}
	if rec.Header.SequenceNumber != 9 || !rec.Header.Version.Equal(protocol.Version1_0) || rec.Header.Epoch != 0 {
		t.Fatalf("record header %+v", rec.Header)
	}
	hs, ok := rec.Content.(*handshake.Handshake)
	if !ok {
		t.Fatalf("content %T", rec.Content)
	}
	hvr, ok := hs.Message.(*handshake.MessageHelloVerifyRequest)
	if !ok || hs.Header.MessageSequence != 0 {
		t.Fatalf("message %T, message_seq %d", hs.Message, hs.Header.MessageSequence)
	}
	if !hvr.Version.Equal(protocol.Version1_0) || !bytes.Equal(hvr.Cookie, cookie) {
		t.Fatalf("HelloVerifyRequest %+v", hvr)
	}
}

// TestClientHelloParameters: the parameters a cookie is bound to are
// those RFC 6347 §4.2.1 has a client repeat (version, random,
// session_id, cipher_suites, compression_methods): the cookie itself and
// the extensions are not among them, each of the others is.
func TestClientHelloParameters(t *testing.T) {
	t.Parallel()
	params := func(b []byte) string {
		h, ok := parseClientHello(b)
		if !ok {
			t.Fatal("hello refused")
		}
		return string(h.head) + "|" + string(h.tail)
	}
	base := &handshake.MessageClientHello{
		Version:            protocol.Version1_2,
		CipherSuiteIDs:     []uint16{0xc0ae, 0xc02b},
		CompressionMethods: []*protocol.CompressionMethod{{}},
	}
	with := func(f func(m *handshake.MessageClientHello)) []byte {
		m := *base
		f(&m)
		return marshalRecord(t, &m)
	}
	ref := params(with(func(*handshake.MessageClientHello) {}))
	if p := params(with(func(m *handshake.MessageClientHello) {
		m.Cookie = []byte{1, 2, 3}
		m.Extensions = []extension.Extension{&extension.ServerName{ServerName: "x"}}
	})); p != ref {
		t.Fatal("cookie or extensions change the bound parameters")
	}
	for name, f := range map[string]func(m *handshake.MessageClientHello){
		"random":     func(m *handshake.MessageClientHello) { m.Random.RandomBytes[0] = 1 },
		"session_id": func(m *handshake.MessageClientHello) { m.SessionID = []byte{1} },
		"suites":     func(m *handshake.MessageClientHello) { m.CipherSuiteIDs = []uint16{0xc0ae} },
		"compression": func(m *handshake.MessageClientHello) {
			m.CompressionMethods = append(m.CompressionMethods, &protocol.CompressionMethod{ID: 1})
		},
	} {
		if params(with(f)) == ref {
			t.Errorf("%s is not bound", name)
		}
	}
}

// FuzzParseClientHello: the front's parser never panics, returns a cookie
// inside the input, refuses any truncation of what it accepts (every
// length is checked exactly), and what it accepts is answered with fewer
// bytes.
func FuzzParseClientHello(f *testing.F) {
	f.Add(helloRecord(f, nil))
	f.Add(helloRecord(f, bytes.Repeat([]byte{1}, 32)))
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, ok := parseClientHello(b); ok {
			if len(h.cookie) > 255 || (len(h.cookie) > 0 && !bytes.Contains(b, h.cookie)) {
				t.Fatalf("cookie %x not from the input", h.cookie)
			}
			if _, ok := parseClientHello(b[:len(b)-1]); ok {
				t.Fatal("a truncated ClientHello was accepted")
			}
			if len(h.recordSeq) != 6 || len(h.head) < 35 || len(h.tail) < 5 {
				t.Fatalf("parameters: seq %x head %x tail %x", h.recordSeq, h.head, h.tail)
			}
			// The answer is never larger than the hello (F08: no
			// amplification).
			if out := helloVerifyRequest(nil, h.recordSeq, make([]byte, cookieLen)); len(out) >= len(b) {
				t.Fatalf("HelloVerifyRequest of %d bytes for a hello of %d", len(out), len(b))
			}
		}
	})
}
