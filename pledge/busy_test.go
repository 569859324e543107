package pledge_test

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-pki/gatehouse/masa/masatest"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/pledge"
	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
)

// busyEnv is a registrar that makes one MASA call at a time
// (MASAMaxInFlight 1), in front of a real MASA that holds the first call
// until release: meanwhile every other pledge gets the registrar's 503 +
// Retry-After. onBusy(n) runs inside the registrar's n-th 503 answer to
// requestvoucher, before the answer is sent.
type busyEnv struct {
	*env
	held    chan struct{}
	release func()
	holder  chan error // the held pledge's RequestVoucher result
	busy    atomic.Int32
}

func newBusyEnv(t *testing.T, onBusy func(b *busyEnv, n int32)) *busyEnv {
	t.Helper()
	b := &busyEnv{held: make(chan struct{}), holder: make(chan error, 1)}
	gate := make(chan struct{})
	b.release = sync.OnceFunc(func() { close(gate) })
	var first atomic.Bool
	fc := pkitest.NewClock()
	mfg := pkitest.NewCA(t, pkitest.Name("Busy Test Manufacturer"), pkitest.Clock(fc))
	m := masatest.Start(t, masatest.Options{Clock: fc, Manufacturer: mfg, Observe: func(string, string, []byte) {
		if first.CompareAndSwap(false, true) {
			close(b.held)
			<-gate
		}
	}})
	hook := &onStatus{status: http.StatusServiceUnavailable, fire: func(_ context.Context, n int32) error {
		b.busy.Store(n)
		if onBusy != nil {
			onBusy(b, n)
		}
		return nil
	}}
	reg := registrartest.Start(t, registrartest.Options{
		Clock: fc, Manufacturer: mfg, MASA: m, Logger: slog.New(hook),
		Config: func(c *registrar.Config) { c.MASAMaxInFlight = 1 },
	})
	b.env = &env{clk: fc, mfg: mfg, masa: m, reg: reg}
	// The holder takes the only MASA slot and keeps it until release.
	holder := b.busyClient(t, "SN-HOLDER", 0)
	go func() {
		_, err := holder.RequestVoucher(context.WithoutCancel(t.Context()))
		b.holder <- err
	}()
	t.Cleanup(func() {
		b.release()
		if err := <-b.holder; err != nil {
			t.Logf("holder: %v", err)
		}
	})
	<-b.held
	return b
}

// busyClient is a pledge client that waits 1 ms after each 503 or 202 and
// waits out at most maxBusy 503s in a row.
func (b *busyEnv) busyClient(t *testing.T, serial string, maxBusy int) *pledge.Client {
	t.Helper()
	idevid := pkitest.NewIDevID(t, b.mfg, serial, b.masa.Authority, pkitest.WithNoExpiry())
	u, err := url.Parse(b.reg.URL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pledge.New(pledge.Config{
		Registrar: u, IDevID: idevid.TLS, MASAAnchors: []*x509.Certificate{b.masa.Anchor()}, Clock: b.clk,
		MaxRetryWait: time.Millisecond, MaxWait: time.Minute, MaxBusyRetries: maxBusy,
	})
	if err != nil {
		t.Fatalf("pledge.New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestClient_RequestVoucher_BusyRetried(t *testing.T) {
	t.Parallel()
	// On the second 503 the held MASA call is let through and finishes
	// (its pledge has its voucher, so the slot is free) before that 503
	// leaves: the third attempt gets the voucher.
	b := newBusyEnv(t, func(b *busyEnv, n int32) {
		if n == 2 {
			b.release()
			if err := <-b.holder; err != nil {
				t.Errorf("holder: %v", err)
			}
			b.holder <- nil
		}
	})
	c := b.busyClient(t, "SN-BUSY-1", 0)
	res, err := c.RequestVoucher(t.Context())
	if err != nil {
		t.Fatalf("RequestVoucher: %v", err)
	}
	if res.Attempts != 3 || b.busy.Load() != 2 {
		t.Errorf("attempts %d, 503 answers %d; want 3 and 2", res.Attempts, b.busy.Load())
	}
}

func TestClient_RequestVoucher_BusyBounded(t *testing.T) {
	t.Parallel()
	b := newBusyEnv(t, nil)
	for _, tc := range []struct {
		name     string
		maxBusy  int
		attempts int32
	}{
		{"two-retries", 2, 3},
		{"default", 0, pledge.DefaultMaxBusyRetries + 1},
		{"never", -1, 1},
	} {
		before := b.busy.Load()
		_, err := b.busyClient(t, "SN-BUSY-"+tc.name, tc.maxBusy).RequestVoucher(t.Context())
		se, ok := errors.AsType[*pledge.StatusError](err)
		if !ok || se.StatusCode != http.StatusServiceUnavailable || errors.Is(err, context.Canceled) {
			t.Errorf("%s: err = %v; want the final 503 StatusError", tc.name, err)
		}
		if got := b.busy.Load() - before; got != tc.attempts {
			t.Errorf("%s: %d 503 answers, want %d", tc.name, got, tc.attempts)
		}
	}
}

func TestClient_RequestVoucher_ContextEndsWhileBusy(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// The caller gives up during the second 503 (before or after it
	// arrives): the error is that 503, after the context's.
	b := newBusyEnv(t, func(_ *busyEnv, n int32) {
		if n == 2 {
			cancel()
		}
	})
	_, err := b.busyClient(t, "SN-BUSY-CTX", 100).RequestVoucher(ctx)
	se, ok := errors.AsType[*pledge.StatusError](err)
	if !ok || se.StatusCode != http.StatusServiceUnavailable || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v; want the 503 StatusError wrapping context.Canceled", err)
	}
	if n := b.busy.Load(); n != 2 {
		t.Errorf("%d 503 answers, want 2", n)
	}
}

// onStatus is a slog.Handler that calls fire(ctx, n) when the registrar
// logs its n-th answer with status to requestvoucher, inside the request,
// before the answer is sent; ctx is the request's, without its
// cancellation, and fire's error is the handler's.
type onStatus struct {
	status int64
	fire   func(ctx context.Context, n int32) error
	n      atomic.Int32
}

func (h *onStatus) Enabled(context.Context, slog.Level) bool { return true }
func (h *onStatus) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *onStatus) WithGroup(string) slog.Handler            { return h }
func (h *onStatus) Handle(ctx context.Context, r slog.Record) error {
	status, path, ok := requestLog(r)
	if !ok || status != h.status || path != pledge.PathRequestVoucher {
		return nil
	}
	return h.fire(context.WithoutCancel(ctx), h.n.Add(1))
}

// requestLog returns the status and path of the registrar's request log
// record r; ok is false for any other record.
func requestLog(r slog.Record) (status int64, path string, ok bool) {
	if r.Message != "request" {
		return 0, "", false
	}
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "status":
			status = a.Value.Int64()
		case "path":
			path = a.Value.String()
		}
		return true
	})
	return status, path, true
}
