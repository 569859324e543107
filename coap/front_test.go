package coap

import (
	"net"
	"net/netip"
	"runtime"
	"testing"

	"github.com/jmhodges/clock"
	"github.com/prometheus/client_golang/prometheus"
)

// newTestFront is a front on a loopback socket with nothing behind it:
// what it accepts stays in its accept queue.
func newTestFront(tb testing.TB) *front {
	tb.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	s := &Server{cfg: Config{MaxSessions: 4}.WithDefaults(), clk: clock.NewFake(), metrics: newMetrics(prometheus.NewRegistry())}
	f, err := newFront(pc, s)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = f.Close() })
	return f
}

// TestFront_NoStateBeforeCookie: reliability F08, measured: 10,000
// cookieless ClientHellos from 10,000 source addresses leave no peer, no
// accepted connection, no goroutine and no heap behind (less than 4 bytes
// a hello, allowing for the runtime's own noise), and each is answered
// with a HelloVerifyRequest. The one whose cookie is echoed then becomes
// a peer.
func TestFront_NoStateBeforeCookie(t *testing.T) {
	f := newTestFront(t)
	hello := helloRecord(t, nil)
	const n = 10_000
	addr := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 1, byte(i >> 8), byte(i)}), 40000)
	}
	// One round first, so that what is made once (the pool's MAC, the
	// metric's child) is not counted.
	f.handle(hello, addr(n))
	runtime.GC()
	var before, after runtime.MemStats
	goroutines := runtime.NumGoroutine()
	runtime.ReadMemStats(&before)
	for i := range n {
		f.handle(hello, addr(i))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d cookieless ClientHellos: heap %+d bytes, %d goroutines before and %d after", n, grown, goroutines, runtime.NumGoroutine())
	if grown > 4*n {
		t.Fatalf("heap grew by %d bytes for %d cookieless ClientHellos", grown, n)
	}
	if len(f.peers) != 0 || len(f.accept) != 0 {
		t.Fatalf("state before a cookie: %d peers, %d accepted", len(f.peers), len(f.accept))
	}
	if g := runtime.NumGoroutine(); g > goroutines {
		t.Fatalf("goroutines %d -> %d", goroutines, g)
	}

	// The check can fail: an echoed cookie does make state.
	h, _ := parseClientHello(hello)
	var c cookieMAC
	period := f.srv.clk.Now().UnixNano() / int64(cookiePeriod)
	echo := helloRecord(t, f.cookie(&c, period, addr(7), h))
	f.handle(echo, addr(7))
	if len(f.peers) != 1 || len(f.accept) != 1 {
		t.Fatalf("a valid cookie: %d peers, %d accepted, want 1 each", len(f.peers), len(f.accept))
	}
}

// BenchmarkFront_CookielessHello is the front's cost of answering one
// cookieless ClientHello (parse, HMAC, HelloVerifyRequest, send).
func BenchmarkFront_CookielessHello(b *testing.B) {
	f := newTestFront(b)
	hello := helloRecord(b, nil)
	ap := netip.MustParseAddrPort("127.0.0.1:9")
	b.ReportAllocs()
	for b.Loop() {
		f.handle(hello, ap)
	}
}

// BenchmarkFront_CookieCheck is the cost of checking one forged cookie
// (two periods' HMACs).
func BenchmarkFront_CookieCheck(b *testing.B) {
	f := newTestFront(b)
	h, _ := parseClientHello(helloRecord(b, make([]byte, cookieLen)))
	ap := netip.MustParseAddrPort("127.0.0.1:9")
	var out [cookieLen]byte
	b.ReportAllocs()
	for b.Loop() {
		if f.checkCookie(&out, ap, h) {
			b.Fatal("a zero cookie verified")
		}
	}
}

// FuzzFrontHandle: whatever datagram arrives from an address without a
// session, the front keeps nothing: only a valid cookie, which the fuzzer
// cannot forge, makes a peer (reliability F08).
func FuzzFrontHandle(f *testing.F) {
	f.Add(helloRecord(f, nil), uint16(40000))
	f.Add(helloRecord(f, make([]byte, cookieLen)), uint16(40001))
	f.Add([]byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, uint16(1))
	fr := newTestFront(f)
	f.Fuzz(func(t *testing.T, d []byte, port uint16) {
		fr.handle(d, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 2, 0, 1}), port))
		fr.mu.Lock()
		peers := len(fr.peers)
		fr.mu.Unlock()
		if peers != 0 || len(fr.accept) != 0 {
			t.Fatalf("a datagram without a valid cookie left state: %d peers (%x)", peers, d)
		}
	})
}
