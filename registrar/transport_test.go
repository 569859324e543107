package registrar_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
)

// TestTransport covers E03, E04, G04 and G06.
func TestTransport(t *testing.T) {
	t.Parallel()
	t.Run("E03 plain HTTP to the TLS port", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		c, err := net.Dial("tcp", e.reg.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		_, _ = fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", registrar.PathRequestVoucher)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status = %d, want 400", resp.StatusCode)
		}
	})
	t.Run("E04 Basic auth without a client certificate", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		p := registrartest.NewPledge(t, e.reg, "SN-E04", tls.Certificate{})
		resp, _, err := p.Post(t.Context(), registrar.PathRequestVoucher, registrar.MediaTypeVoucherCMS, []byte("x"), "Authorization", "Basic dXNlcjpwYXNz")
		if err != nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%v %v, want 401", err, resp)
		}
	})
	t.Run("G04 header section over 16 KiB", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		p := e.pledge(t, "SN-G04")
		// HTTP/1.1, so the limit is the server's MaxHeaderBytes.
		p.Client.Transport.(*http.Transport).ForceAttemptHTTP2 = false
		p.Client.Transport.(*http.Transport).TLSClientConfig.NextProtos = []string{"http/1.1"}
		resp, _, err := p.Post(t.Context(), registrar.PathRequestVoucher, registrar.MediaTypeVoucherCMS, []byte("x"), "X-Big", strings.Repeat("a", 32<<10))
		if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("%v %v, want 431", err, resp)
		}
	})
	t.Run("G06 per-IDevID rate limit", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, func(o *registrartest.Options) {
			o.Config = func(c *registrar.Config) { c.PerIDevID = registrar.RateLimit{Rate: 0.01, Burst: 1} }
		})
		p := e.pledge(t, "SN-G06")
		e.onboard(t, p)
		digest := e.reg.StateDigest(t)
		resp, _, err := p.RequestVoucher(t.Context(), p.Sign(t, p.Request(t)))
		if err != nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("%v %v, want 429 with Retry-After", err, resp)
		}
		if e.reg.StateDigest(t) != digest {
			t.Errorf("state changed")
		}
		// Another IDevID from the same address is not throttled.
		e.onboard(t, e.pledge(t, "SN-G06-OTHER"))
	})
}

// TestFailClosed (E07, A23): every path × method not documented is 404 or
// 405 from the mux; the documented ones refuse the wrong content type.
func TestFailClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.pledge(t, "SN-E07")
	paths := []string{registrar.PathRequestVoucher, registrar.PathVoucherStatus, registrar.PathEnrollStatus,
		"/.well-known/brski/enroll_status", "/.well-known/est/requestvoucher", "/.well-known/est/voucher_status",
		"/.well-known/brski/requestauditlog", "/.well-known/brski/", "/", "/api/v1/devices", "/metrics"}
	documented := map[string]bool{}
	for _, p := range paths[:6] {
		documented[p] = true
	}
	for _, path := range paths {
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions, http.MethodPost} {
			for _, ct := range []string{"text/plain", "application/json", registrar.MediaTypeVoucherCMS} {
				req, _ := http.NewRequestWithContext(t.Context(), m, e.reg.URL+path, bytes.NewReader([]byte("{}")))
				req.Header.Set("Content-Type", ct)
				o := do(p, req)
				if o.err != nil {
					t.Fatalf("%s %s: %v", m, path, o.err)
				}
				code := o.resp.StatusCode
				switch {
				case code >= 200 && code < 300:
					t.Errorf("%s %s (%s) = %d: only valid requests may succeed", m, path, ct, code)
				case !documented[path] && code != 404:
					t.Errorf("%s %s = %d, want 404", m, path, code)
				case documented[path] && m != http.MethodPost && code != 405:
					t.Errorf("%s %s = %d, want 405", m, path, code)
				}
			}
		}
	}
}
