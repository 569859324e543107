package coap_test

import (
	"context"
	"crypto/rand"
	"net"
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
)

// clientHello is a cookieless DTLS 1.2 ClientHello record offering
// TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 (0xC0AE) on P-256.
func clientHello(t *testing.T, seq uint64) []byte {
	t.Helper()
	var random handshake.Random
	_, _ = rand.Read(random.RandomBytes[:])
	rec := &recordlayer.RecordLayer{
		Header: recordlayer.Header{Version: protocol.Version1_0, SequenceNumber: seq},
		Content: &handshake.Handshake{Message: &handshake.MessageClientHello{
			Version:            protocol.Version1_2,
			Random:             random,
			CipherSuiteIDs:     []uint16{0xc0ae},
			CompressionMethods: []*protocol.CompressionMethod{{}},
			Extensions:         []extension.Extension{&extension.SupportedEllipticCurves{EllipticCurves: []elliptic.Curve{elliptic.P256}}},
		}},
	}
	b, err := rec.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestServer_CookielessClientHellos: reliability F08 (in part): a flood
// of ClientHellos without a cookie gets only HelloVerifyRequests, no
// bigger than the requests (no amplification), and no handshake proceeds.
// The "0 bytes of per-peer state" half is not met: pion's listener keeps a
// connection object per source address from its first ClientHello
// (docs/flows/coap.md).
func TestServer_CookielessClientHellos(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ua, err := net.ResolveUDPAddr("udp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	const n = 200 // more sources than the default session cap (128)
	sent, got := 0, 0
	buf := make([]byte, 2048)
	for i := range n {
		// A new source port for each, as a spoofing flood would look.
		c, err := (&net.Dialer{}).DialContext(t.Context(), "udp", ua.String())
		if err != nil {
			t.Fatal(err)
		}
		hello := clientHello(t, 0)
		if _, err := c.Write(hello); err != nil {
			t.Fatal(err)
		}
		sent += len(hello)
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		m, err := c.Read(buf)
		_ = c.Close()
		if err != nil {
			// Not answered (the session cap, or a lost datagram): no
			// state to keep either.
			continue
		}
		got += m
		// Record header (13 bytes), then the handshake header: type 3 is
		// HelloVerifyRequest.
		if m < 14 || buf[0] != byte(protocol.ContentTypeHandshake) || buf[13] != byte(handshake.TypeHelloVerifyRequest) {
			t.Fatalf("hello %d: answered %x, want a HelloVerifyRequest", i, buf[:min(m, 16)])
		}
	}
	if got == 0 {
		t.Fatal("no ClientHello was answered")
	}
	if got > sent {
		t.Fatalf("answered %d bytes to %d bytes of ClientHellos: amplification", got, sent)
	}
	t.Logf("%d cookieless ClientHellos, %d bytes; %d bytes of HelloVerifyRequests (ratio %.2f)", n, sent, got, float64(got)/float64(sent))
}

// TestServer_UnterminatedHandshake: reliability F10: a peer that sends the
// first fragment of a ClientHello and never the rest holds a session slot
// only until HandshakeTimeout; then a pledge gets in.
func TestServer_UnterminatedHandshake(t *testing.T) {
	t.Parallel()
	// The margins are wide because a DTLS handshake under the race
	// detector on a loaded machine can itself take a second or more, and a
	// client attempt abandoned early would hold the only slot in turn.
	e := newEnvWith(t, coap.Config{MaxSessions: 1, HandshakeTimeout: 2 * time.Second}, nil)
	id := pkitest.NewIDevID(t, e.mfg, "SN-COAP-F10", e.masa.Authority)
	c, err := (&net.Dialer{}).DialContext(t.Context(), "udp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Handshake header: ClientHello of 60000 bytes, message_seq 0, offset 0,
	// a 100-byte fragment.
	hs := append([]byte{1, 0, 0xea, 0x60, 0, 0, 0, 0, 0, 0, 0, 100}, make([]byte, 100)...)
	rec := append([]byte{22, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(hs))}, hs...)
	if _, err := c.Write(rec); err != nil {
		t.Fatal(err)
	}
	// At once, the slot is taken.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	s, err := pledge.DialCoAPS(ctx, e.addr, id.TLS, e.verifyDomain)
	cancel()
	if err == nil {
		_ = s.Close()
		t.Fatal("a session was accepted while the unterminated handshake held the only slot")
	}
	for range 5 {
		ctx, cancel := context.WithTimeout(t.Context(), 8*time.Second)
		s, err := pledge.DialCoAPS(ctx, e.addr, id.TLS, e.verifyDomain)
		cancel()
		if err == nil {
			_ = s.Close()
			return
		}
	}
	t.Fatal("the unterminated handshake still holds the only session slot")
}
