package pledge_test

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jmhodges/clock"

	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/pledge"
	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
)

// on429 is a slog.Handler that counts the registrar's 429 answers by path
// and, inside each, before it is sent, moves the fake clock on by a
// second so that the rate limit's bucket holds a token again when the
// pledge comes back.
type on429 struct {
	mu   sync.Mutex
	clk  clock.FakeClock
	seen map[string]int
}

func (h *on429) Enabled(context.Context, slog.Level) bool { return true }
func (h *on429) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *on429) WithGroup(string) slog.Handler            { return h }
func (h *on429) Handle(_ context.Context, r slog.Record) error {
	status, path, ok := requestLog(r)
	if !ok || status != http.StatusTooManyRequests {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seen[path]++
	h.clk.Add(time.Second)
	return nil
}

func (h *on429) count(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seen[path]
}

// TestClient_RateLimitedRetried: a registrar whose per-IDevID limit
// admits one request a second (burst 1) answers every request of an
// onboarding after the first with 429 + Retry-After once; the pledge
// waits each out and the onboarding completes. With MaxBusyRetries
// negative the first 429 is final.
func TestClient_RateLimitedRetried(t *testing.T) {
	t.Parallel()
	hook := &on429{seen: map[string]int{}}
	e := newEnv(t, registrartest.Options{
		Logger: slog.New(hook),
		Config: func(c *registrar.Config) { c.PerIDevID = registrar.RateLimit{Rate: 1, Burst: 1} },
	})
	hook.clk = e.clk
	c := e.enrollClient(t, "SN-429-1", e.reg.URL, 0)
	res, err := c.Enroll(t.Context())
	if err != nil {
		t.Fatalf("Enroll under a rate limit: %v", err)
	}
	if res.Attempts != 2 {
		t.Errorf("simpleenroll attempts %d, want 2 (one 429)", res.Attempts)
	}
	for _, p := range []string{pledge.PathVoucherStatus, pledge.PathCACerts, pledge.PathCSRAttrs, pledge.PathSimpleEnroll} {
		if n := hook.count(p); n != 1 {
			t.Errorf("%s: %d answers 429, want 1 (every request but the first is limited once)", p, n)
		}
	}

	u, err := url.Parse(e.reg.URL)
	if err != nil {
		t.Fatal(err)
	}
	idevid := pkitest.NewIDevID(t, e.mfg, "SN-429-2", e.masa.Authority, pkitest.WithNoExpiry())
	final, err := pledge.New(pledge.Config{
		Registrar: u, IDevID: idevid.TLS, MASAAnchors: []*x509.Certificate{e.masa.Anchor()}, Clock: e.clk,
		MaxRetryWait: time.Millisecond, MaxWait: time.Minute, MaxBusyRetries: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = final.Close() })
	before := hook.count(pledge.PathVoucherStatus)
	v, err := final.RequestVoucher(t.Context())
	if err != nil {
		t.Fatalf("MaxBusyRetries -1: the voucher (the first request) was refused: %v", err)
	}
	se, ok := errors.AsType[*pledge.StatusError](v.VoucherStatusErr)
	if !ok || se.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("MaxBusyRetries -1: voucher_status err = %v, want the 429 StatusError", v.VoucherStatusErr)
	}
	if n := hook.count(pledge.PathVoucherStatus) - before; n != 1 {
		t.Errorf("MaxBusyRetries -1: %d answers 429 to voucher_status, want 1", n)
	}
}
