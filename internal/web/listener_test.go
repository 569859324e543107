package web

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
)

// limitServer serves "ok" with NewServer over TLS on a LimitListener and
// reports every connection the server has closed on closed.
func limitServer(t *testing.T, o LimitOptions, edit func(*http.Server)) (addr string, tlsCfg *tls.Config, closed <-chan struct{}) {
	t.Helper()
	ca := pkitest.NewCA(t, pkitest.Name("Listener Test CA"))
	leaf := pkitest.NewServerCert(t, ca)
	srvTLS := ServerTLSConfig()
	srvTLS.Certificates = []tls.Certificate{leaf.TLS}
	srvTLS.Time = pkitest.NewClock().Now
	srv := NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }), srvTLS, slog.New(slog.DiscardHandler))
	ch := make(chan struct{}, 16)
	srv.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			ch <- struct{}{}
		}
	}
	if edit != nil {
		edit(srv)
	}
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ServeTLS(LimitListener(ln, o), "", "")
	}()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS12, Time: pkitest.NewClock().Now}, ch
}

// keepAlive is one client connection that sends keep-alive requests.
type keepAlive struct {
	conn *tls.Conn
	r    *bufio.Reader
}

// dialFrom connects from the local address src (a loopback IP) and does
// the TLS handshake; the error is returned, not fatal.
func dialFrom(t *testing.T, src, addr string, cfg *tls.Config) (*keepAlive, error) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	raw, err := d.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = raw.Close() })
	// Safety net only: every read below ends by the server's action.
	_ = raw.SetDeadline(time.Now().Add(20 * time.Second))
	c := tls.Client(raw, cfg)
	if err := c.HandshakeContext(t.Context()); err != nil {
		return nil, err
	}
	return &keepAlive{conn: c, r: bufio.NewReader(c)}, nil
}

// get sends one keep-alive GET and reads the response.
func (k *keepAlive) get(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(k.conn, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(k.r, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || string(b) != "ok" {
		t.Fatalf("GET: %d %q %v", resp.StatusCode, b, err)
	}
}

// requireClosedByServer reads until the connection ends and fails t if it
// ended by the safety deadline rather than by the server closing it.
func (k *keepAlive) requireClosedByServer(t *testing.T) {
	t.Helper()
	_, err := io.Copy(io.Discard, k.r)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the server did not close the connection")
	}
}

// TestLimitListener_PerIP (reliability G05): with a cap of 2, a third
// connection from one address is closed before its handshake and counted;
// another address is not affected; once the server has closed one of the
// first two, the address may connect again.
func TestLimitListener_PerIP(t *testing.T) {
	t.Parallel()
	var refused atomic.Int64
	addr, cfg, closed := limitServer(t, LimitOptions{MaxConnsPerIP: 2, OnRefused: func() { refused.Add(1) }}, nil)
	var held []*keepAlive
	for range 2 {
		k, err := dialFrom(t, "127.0.0.1", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		k.get(t)
		held = append(held, k)
	}
	if _, err := dialFrom(t, "127.0.0.1", addr, cfg); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("third connection from one address: handshake %v, want closed by the server", err)
	}
	if refused.Load() != 1 {
		t.Fatalf("refused = %d, want 1", refused.Load())
	}
	other, err := dialFrom(t, "127.0.0.2", addr, cfg)
	if err != nil {
		t.Fatalf("another address is capped too: %v", err)
	}
	other.get(t)

	// The client leaves; the server closes its side and frees the slot.
	_ = held[0].conn.Close()
	<-closed
	again, err := dialFrom(t, "127.0.0.1", addr, cfg)
	if err != nil {
		t.Fatalf("after a connection closed: %v", err)
	}
	again.get(t)
	if refused.Load() != 1 {
		t.Fatalf("refused = %d, want 1", refused.Load())
	}
}

// TestNewServer_IdleTimeout (reliability G05): an idle keep-alive
// connection is closed by the server after IdleTimeout (60 s in
// production, ≤ 60 s by the row; shortened here), which frees its per-IP
// slot.
func TestNewServer_IdleTimeout(t *testing.T) {
	t.Parallel()
	if IdleTimeout <= 0 || IdleTimeout > 60*time.Second {
		t.Fatalf("IdleTimeout = %s, want (0, 60 s]", IdleTimeout)
	}
	var refused atomic.Int64
	addr, cfg, closed := limitServer(t, LimitOptions{MaxConnsPerIP: 1, OnRefused: func() { refused.Add(1) }},
		func(s *http.Server) { s.IdleTimeout = 200 * time.Millisecond })
	k, err := dialFrom(t, "127.0.0.1", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	k.get(t)
	k.requireClosedByServer(t)
	<-closed
	next, err := dialFrom(t, "127.0.0.1", addr, cfg)
	if err != nil {
		t.Fatalf("the idle connection's slot was not freed: %v", err)
	}
	next.get(t)
	if refused.Load() != 0 {
		t.Fatalf("refused = %d, want 0", refused.Load())
	}
}

func TestLimitListener_Uncapped(t *testing.T) {
	t.Parallel()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	if LimitListener(ln, LimitOptions{MaxConnsPerIP: -1}) != ln {
		t.Fatal("a negative cap still wraps the listener")
	}
	if l, ok := LimitListener(ln, LimitOptions{}).(*limitListener); !ok || l.max != DefaultMaxConnsPerIP {
		t.Fatal("the zero cap is not DefaultMaxConnsPerIP")
	}
}
