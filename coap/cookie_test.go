package coap_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3/pkg/crypto/elliptic"
	"github.com/pion/dtls/v3/pkg/protocol"
	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/dtls/v3/pkg/protocol/recordlayer"

	"github.com/gatehouse-pki/gatehouse/coap"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/pledge"
	"github.com/prometheus/client_golang/prometheus"
)

// clientHello is a DTLS 1.2 ClientHello record offering
// TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 (0xC0AE) on P-256, with random,
// cookie and message_seq as given (a zero random is filled in).
func clientHello(t *testing.T, random *handshake.Random, cookie []byte, msgSeq uint16) []byte {
	t.Helper()
	if random.RandomBytes == [handshake.RandomBytesLength]byte{} {
		_, _ = rand.Read(random.RandomBytes[:])
	}
	rec := &recordlayer.RecordLayer{
		Header: recordlayer.Header{Version: protocol.Version1_0, SequenceNumber: uint64(msgSeq)},
		Content: &handshake.Handshake{
			Header: handshake.Header{MessageSequence: msgSeq},
			Message: &handshake.MessageClientHello{
				Version:            protocol.Version1_2,
				Random:             *random,
				Cookie:             cookie,
				CipherSuiteIDs:     []uint16{0xc0ae},
				CompressionMethods: []*protocol.CompressionMethod{{}},
				Extensions:         []extension.Extension{&extension.SupportedEllipticCurves{EllipticCurves: []elliptic.Curve{elliptic.P256}}},
			},
		},
	}
	b, err := rec.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// metric sums the samples of the named metric whose labels include want.
func metric(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range want {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || (lp.GetName() == k && lp.GetValue() == v)
				}
				if !found {
					continue next
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func hellos(t *testing.T, e *env, verdict string) float64 {
	t.Helper()
	return metric(t, e.metrics, "brski_coap_client_hellos_total", map[string]string{"verdict": verdict})
}

// roundTrip writes b on c and returns the answer, or nil when none comes
// within wait.
func roundTrip(t *testing.T, c net.Conn, b []byte, wait time.Duration) []byte {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(wait))
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// handshakeType is the handshake type of the first record of a datagram
// from the server (0 when it is not a handshake record).
func handshakeType(b []byte) handshake.Type {
	if len(b) < 14 || b[0] != byte(protocol.ContentTypeHandshake) {
		return 0
	}
	return handshake.Type(b[13])
}

// cookieOf returns the cookie of a HelloVerifyRequest datagram.
func cookieOf(t *testing.T, b []byte) []byte {
	t.Helper()
	var rec recordlayer.RecordLayer
	if err := rec.Unmarshal(b); err != nil {
		t.Fatalf("HelloVerifyRequest: %v", err)
	}
	h, ok := rec.Content.(*handshake.Handshake)
	if !ok {
		t.Fatalf("not a handshake: %T", rec.Content)
	}
	hvr, ok := h.Message.(*handshake.MessageHelloVerifyRequest)
	if !ok {
		t.Fatalf("not a HelloVerifyRequest: %T", h.Message)
	}
	return hvr.Cookie
}

// flood sends n cookieless ClientHellos, each from a new source port,
// and returns the bytes sent and answered (when read is set).
func flood(t *testing.T, addr string, n int, read bool) (int, int) {
	t.Helper()
	sent, got := 0, 0
	for i := range n {
		c, err := (&net.Dialer{}).DialContext(t.Context(), "udp", addr)
		if err != nil {
			t.Error(err)
			return sent, got
		}
		hello := clientHello(t, &handshake.Random{}, nil, 0)
		sent += len(hello)
		if !read {
			_, _ = c.Write(hello)
			_ = c.Close()
			continue
		}
		answer := roundTrip(t, c, hello, 2*time.Second)
		_ = c.Close()
		if answer == nil {
			t.Errorf("hello %d: no HelloVerifyRequest", i)
			continue
		}
		got += len(answer)
		if handshakeType(answer) != handshake.TypeHelloVerifyRequest {
			t.Errorf("hello %d: answered %x, want a HelloVerifyRequest", i, answer[:min(len(answer), 16)])
		}
	}
	return sent, got
}

// udp dials the server's UDP port, a bare socket for hand-made records;
// it is closed when t ends.
func (e *env) udp(t *testing.T) net.Conn {
	t.Helper()
	c, err := (&net.Dialer{}).DialContext(t.Context(), "udp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestServer_CookielessClientHellos: reliability F08: a flood of
// ClientHellos without a cookie, each from a new source port as a spoofing
// flood looks, gets only HelloVerifyRequests, no bigger than the requests,
// and takes no session slot: with MaxSessions 1 a pledge connects right
// after. (That nothing at all is kept per source is measured in
// TestFront_NoStateBeforeCookie.)
func TestServer_CookielessClientHellos(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, coap.Config{MaxSessions: 1}, nil)
	const n = 300
	sent, got := flood(t, e.addr, n, true)
	if got > sent {
		t.Fatalf("answered %d bytes to %d bytes of ClientHellos: amplification", got, sent)
	}
	t.Logf("%d cookieless ClientHellos, %d bytes; %d bytes of HelloVerifyRequests (ratio %.2f)", n, sent, got, float64(got)/float64(sent))
	if v := metric(t, e.metrics, "brski_coap_sessions", nil); v != 0 {
		t.Fatalf("%v session slots taken by cookieless ClientHellos", v)
	}
	if v := hellos(t, e, "challenged"); v != n {
		t.Fatalf("challenged = %v, want %d", v, n)
	}
	id := pkitest.NewIDevID(t, e.mfg, "SN-COAP-F08", e.masa.Authority)
	e.dial(t, *id)
	if v := hellos(t, e, "verified"); v != 1 {
		t.Fatalf("verified = %v, want 1 (the pledge)", v)
	}
}

// TestServer_CookieBinding: a cookie verifies only from the address it
// was sent to, for the hello parameters it was made for, and for one to
// two cookie periods (a minute each); otherwise the hello is answered
// with a fresh HelloVerifyRequest (RFC 6347 §4.2.1), statelessly.
func TestServer_CookieBinding(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, coap.Config{MaxSessions: 1}, nil)
	c := e.udp(t)
	var random handshake.Random
	cookie := cookieOf(t, roundTrip(t, c, clientHello(t, &random, nil, 0), 2*time.Second))
	rechallenged := func(what string, conn net.Conn, hello []byte) {
		t.Helper()
		a := roundTrip(t, conn, hello, 2*time.Second)
		if handshakeType(a) != handshake.TypeHelloVerifyRequest {
			t.Fatalf("%s: answered %x, want a HelloVerifyRequest", what, a[:min(len(a), 16)])
		}
		if bytes.Equal(cookieOf(t, a), cookie) {
			t.Fatalf("%s: the same cookie again", what)
		}
	}
	rechallenged("another source port", e.udp(t), clientHello(t, &random, cookie, 1))
	other := handshake.Random{}
	other.RandomBytes[0] = 1
	rechallenged("another random", c, clientHello(t, &other, cookie, 1))
	e.fc.Add(2 * time.Minute)
	rechallenged("two periods later", c, clientHello(t, &random, cookie, 1))
	if v := hellos(t, e, "bad_cookie"); v != 3 {
		t.Fatalf("bad_cookie = %v, want 3", v)
	}
	if v := metric(t, e.metrics, "brski_coap_sessions", nil); v != 0 {
		t.Fatalf("a cookie that does not verify took a session slot (%v)", v)
	}
	// A cookie of the last period still verifies.
	cookie = cookieOf(t, roundTrip(t, c, clientHello(t, &random, nil, 0), 2*time.Second))
	e.fc.Add(time.Minute)
	if a := roundTrip(t, c, clientHello(t, &random, cookie, 1), 2*time.Second); handshakeType(a) != handshake.TypeServerHello {
		t.Fatalf("a cookie of the last period was answered %x, want a ServerHello", a[:min(len(a), 16)])
	}
}

// TestServer_HelloFloodDuringHandshake: reliability F08: a pledge
// connects while cookieless ClientHellos from new source ports keep
// coming, with MaxSessions 1.
func TestServer_HelloFloodDuringHandshake(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, coap.Config{MaxSessions: 1}, nil)
	id := pkitest.NewIDevID(t, e.mfg, "SN-COAP-F08-2", e.masa.Authority)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		// At most 2,000, in bursts of 50, until the pledge is in.
		for range 40 {
			select {
			case <-stop:
				return
			default:
			}
			flood(t, e.addr, 50, false)
		}
	})
	defer wg.Wait()
	defer close(stop)
	var err error
	for range 3 {
		ctx, cancel := context.WithTimeout(t.Context(), 8*time.Second)
		var s *pledge.CoAPSession
		s, err = pledge.DialCoAPS(ctx, e.addr, id.TLS, e.verifyDomain)
		cancel()
		if err == nil {
			_ = s.Close()
			return
		}
	}
	t.Fatalf("the pledge did not get in during the flood: %v", err)
}

// TestServer_ForgedCookie: reliability F08: a ClientHello with a cookie
// nobody issued, or an altered one, is answered like a cookieless one
// (RFC 6347 §4.2.1) and takes nothing; the right cookie gets the
// ServerHello and takes the session slot.
func TestServer_ForgedCookie(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, coap.Config{MaxSessions: 1}, nil)
	c := e.udp(t)
	var random handshake.Random
	forged := bytes.Repeat([]byte{0x5a}, 16)
	if a := roundTrip(t, c, clientHello(t, &random, forged, 1), 2*time.Second); handshakeType(a) != handshake.TypeHelloVerifyRequest {
		t.Fatalf("a ClientHello with a cookie nobody issued was answered %x, want a HelloVerifyRequest", a[:min(len(a), 16)])
	}
	hvr := roundTrip(t, c, clientHello(t, &random, nil, 0), 2*time.Second)
	if handshakeType(hvr) != handshake.TypeHelloVerifyRequest {
		t.Fatalf("cookieless ClientHello answered %x, want a HelloVerifyRequest", hvr)
	}
	cookie := cookieOf(t, hvr)
	wrong := append([]byte(nil), cookie...)
	wrong[0] ^= 1
	if a := roundTrip(t, c, clientHello(t, &random, wrong, 1), 2*time.Second); handshakeType(a) != handshake.TypeHelloVerifyRequest {
		t.Fatalf("a ClientHello with a wrong cookie was answered %x, want a HelloVerifyRequest", a[:min(len(a), 16)])
	}
	if v := hellos(t, e, "bad_cookie"); v != 2 {
		t.Fatalf("bad_cookie = %v, want 2", v)
	}
	if v := metric(t, e.metrics, "brski_coap_sessions", nil); v != 0 {
		t.Fatalf("a wrong cookie took a session slot (%v)", v)
	}
	if a := roundTrip(t, c, clientHello(t, &random, cookie, 1), 2*time.Second); handshakeType(a) != handshake.TypeServerHello {
		t.Fatalf("the right cookie was answered %x, want a ServerHello", a[:min(len(a), 16)])
	}
	if hellos(t, e, "verified") != 1 || metric(t, e.metrics, "brski_coap_sessions", nil) != 1 {
		t.Fatal("the right cookie did not take the session slot")
	}
}

// TestServer_UnterminatedHandshake: reliability F10: the first fragment
// of a ClientHello from an unknown source is dropped and creates nothing
// (the only session slot stays free for the next source); a source that
// echoed its cookie and then stalls holds that slot only until
// HandshakeTimeout, then a pledge gets in.
func TestServer_UnterminatedHandshake(t *testing.T) {
	t.Parallel()
	// The margins are wide because a DTLS handshake under the race
	// detector on a loaded machine can itself take a second or more, and a
	// client attempt abandoned early would hold the only slot in turn.
	e := newEnvWith(t, coap.Config{MaxSessions: 1, HandshakeTimeout: 2 * time.Second}, nil)
	id := pkitest.NewIDevID(t, e.mfg, "SN-COAP-F10", e.masa.Authority)
	frag := e.udp(t)
	// Handshake header: ClientHello of 60000 bytes, message_seq 0, offset 0,
	// a 100-byte fragment.
	hs := append([]byte{1, 0, 0xea, 0x60, 0, 0, 0, 0, 0, 0, 0, 100}, make([]byte, 100)...)
	rec := append([]byte{22, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(hs))}, hs...)
	if a := roundTrip(t, frag, rec, 300*time.Millisecond); a != nil {
		t.Fatalf("a ClientHello fragment was answered: %x", a[:min(len(a), 16)])
	}
	if hellos(t, e, "dropped") != 1 || hellos(t, e, "challenged") != 0 {
		t.Fatal("a ClientHello fragment was not dropped statelessly")
	}

	// A source that proves its address and stops.
	c := e.udp(t)
	var random handshake.Random
	hvr := roundTrip(t, c, clientHello(t, &random, nil, 0), 2*time.Second)
	if handshakeType(hvr) != handshake.TypeHelloVerifyRequest {
		t.Fatalf("cookieless ClientHello answered %x, want a HelloVerifyRequest", hvr)
	}
	// The slot is free (the fragment took none): the cookie is taken.
	if a := roundTrip(t, c, clientHello(t, &random, cookieOf(t, hvr), 1), 2*time.Second); handshakeType(a) != handshake.TypeServerHello {
		t.Fatalf("the echoed cookie was answered %x, want a ServerHello", a[:min(len(a), 16)])
	}
	// At once, the slot is taken.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	s, err := pledge.DialCoAPS(ctx, e.addr, id.TLS, e.verifyDomain)
	cancel()
	if err == nil {
		_ = s.Close()
		t.Fatal("a session was accepted while the stalled handshake held the only slot")
	}
	// Refusals are immediate (an alert), so retry until well past the
	// handshake timeout.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(t.Context(), 8*time.Second)
		s, err := pledge.DialCoAPS(ctx, e.addr, id.TLS, e.verifyDomain)
		cancel()
		if err == nil {
			_ = s.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the stalled handshake still holds the only session slot")
}

// TestServer_NewHandshakeSameAddress: RFC 6347 §4.2.8: a client that
// starts over from the address of a session (a pledge rebooted on a fixed
// port) gets a new cookie exchange, and the old session gives way to the
// new one once the cookie comes back, not before.
func TestServer_NewHandshakeSameAddress(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, coap.Config{MaxSessions: 1}, nil)
	c := e.udp(t)
	for i := range 2 {
		var random handshake.Random
		hvr := roundTrip(t, c, clientHello(t, &random, nil, 0), 2*time.Second)
		if handshakeType(hvr) != handshake.TypeHelloVerifyRequest {
			t.Fatalf("handshake %d: cookieless ClientHello answered %x, want a HelloVerifyRequest", i, hvr)
		}
		if v := metric(t, e.metrics, "brski_coap_sessions", nil); v != float64(i) {
			t.Fatalf("handshake %d: %v sessions before the cookie, want %d", i, v, i)
		}
		if a := roundTrip(t, c, clientHello(t, &random, cookieOf(t, hvr), 1), 2*time.Second); handshakeType(a) != handshake.TypeServerHello {
			t.Fatalf("handshake %d: the echoed cookie was answered %x, want a ServerHello", i, a[:min(len(a), 16)])
		}
		if v := metric(t, e.metrics, "brski_coap_sessions", nil); v != 1 {
			t.Fatalf("handshake %d: %v sessions after the cookie, want 1", i, v)
		}
	}
}

// TestServer_CloseReleasesSlot: a pledge's close_notify frees its
// session slot at once, so with MaxSessions 1 the same pledge can open a
// session, use it and close it again and again without waiting for the
// idle timeout (2 minutes).
func TestServer_CloseReleasesSlot(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, coap.Config{MaxSessions: 1}, nil)
	id := pkitest.NewIDevID(t, e.mfg, "SN-COAP-CLOSE", e.masa.Authority)
	for i := range 5 {
		s := e.dial(t, *id)
		if _, err := s.CACerts(t.Context()); err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		_ = s.Close()
		// A bound for a slow machine, not a speed target: the slot is
		// normally free within milliseconds.
		deadline := time.Now().Add(5 * time.Second)
		for metric(t, e.metrics, "brski_coap_sessions", nil) != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("session %d: slot still taken 5 s after close_notify", i)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// withRecordSeq returns record b (one DTLS record) with its 48-bit record
// sequence number set to seq.
func withRecordSeq(b []byte, seq uint64) []byte {
	b = bytes.Clone(b)
	for i := range 6 {
		b[10-i] = byte(seq >> (8 * i))
	}
	return b
}

// recordSeqs returns the record sequence numbers of the records in
// datagram b.
func recordSeqs(b []byte) []uint64 {
	var out []uint64
	for len(b) >= 13 {
		var s uint64
		for _, x := range b[5:11] {
			s = s<<8 | uint64(x)
		}
		out = append(out, s)
		n := 13 + (int(b[11])<<8 | int(b[12]))
		if n > len(b) {
			break
		}
		b = b[n:]
	}
	return out
}

// TestServer_RecordSequenceAfterCookie: the HelloVerifyRequest repeats
// the ClientHello's record sequence number (RFC 6347 §4.2.1), so the
// client's replay window has seen it; the server's first flight after the
// echoed cookie must use record sequence numbers the client has not seen
// (from the echoing hello's on), or the client drops the ServerHello as a
// replay and the handshake stalls until a retransmission (it did: one
// second per handshake).
func TestServer_RecordSequenceAfterCookie(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.udp(t)
	var random handshake.Random
	// A client that sent its first hello three times (record 0, 1, 2).
	hvr := roundTrip(t, c, withRecordSeq(clientHello(t, &random, nil, 0), 2), 2*time.Second)
	if handshakeType(hvr) != handshake.TypeHelloVerifyRequest || recordSeqs(hvr)[0] != 2 {
		t.Fatalf("HelloVerifyRequest %x: want record sequence 2, the hello's", hvr[:min(len(hvr), 16)])
	}
	flight := roundTrip(t, c, withRecordSeq(clientHello(t, &random, cookieOf(t, hvr), 1), 3), 2*time.Second)
	if handshakeType(flight) != handshake.TypeServerHello {
		t.Fatalf("the echoed cookie was answered %x, want a ServerHello", flight[:min(len(flight), 16)])
	}
	for _, s := range recordSeqs(flight) {
		if s < 3 {
			t.Fatalf("server flight record sequence numbers %v: %d was already used by a HelloVerifyRequest", recordSeqs(flight), s)
		}
	}
}
