package coap_test

import (
	"strings"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"

	"github.com/gatehouse-pki/gatehouse/coap"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
)

// TestServer_PlainCoAP: reliability E05: CoAP without DTLS reaches no
// resource. The listener serves DTLS only (there is no udp/5683
// listener); a plain CoAP request to it, GET /.well-known/core and POST
// /.well-known/est/sen, gets no answer and creates nothing.
func TestServer_PlainCoAP(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, coap.Config{}, nil)
	c := e.udp(t)
	for _, req := range [][]byte{
		msg(get, 1, []byte{1}, path("/.well-known/core"), nil),
		msg(post, 2, []byte{2}, append(path("/.well-known/est/sen"), opt{12, u(286)}), []byte{0x30, 0}),
	} {
		if a := roundTrip(t, c, req, 500*time.Millisecond); a != nil {
			t.Fatalf("a plain CoAP request was answered: %x", a[:min(len(a), 16)])
		}
	}
	if v := hellos(t, e, "dropped"); v != 2 {
		t.Fatalf("dropped = %v, want 2", v)
	}
	if v := metric(t, e.metrics, "brski_coap_sessions", nil); v != 0 {
		t.Fatalf("%v sessions after plain CoAP", v)
	}
}

// TestServer_PSKRefused: reliability E06: a DTLS client that offers only
// a pre-shared key (no certificate) does not get a session: the server
// offers certificate suites only, and the handshake fails at once.
func TestServer_PSKRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, err := e.dtlsClient(t,
		piondtls.WithPSK(func([]byte) ([]byte, error) { return []byte("sixteen byte key"), nil }),
		piondtls.WithPSKIdentityHint([]byte("pledge")),
		piondtls.WithCipherSuites(piondtls.TLS_PSK_WITH_AES_128_CCM_8),
	)
	if err == nil {
		t.Fatal("a PSK-only DTLS handshake succeeded")
	}
	if strings.Contains(err.Error(), "deadline passed") {
		t.Fatalf("the PSK handshake ran into the deadline instead of being refused: %v", err)
	}
	// The refused handshake echoed its cookie, so it held a session slot
	// for a moment; it must not keep it.
	deadline := time.Now().Add(5 * time.Second)
	for metric(t, e.metrics, "brski_coap_sessions", nil) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the refused PSK handshake still holds a session slot after 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The server still serves certificate clients.
	id := pkitest.NewIDevID(t, e.mfg, "SN-COAP-E06", e.masa.Authority)
	if _, err := e.dial(t, *id).CACerts(t.Context()); err != nil {
		t.Fatal(err)
	}
}
