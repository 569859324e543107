package masa

import (
	"crypto/x509"
	"testing"
	"time"
)

func TestVerifiedCache_Bounds(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	leaf := &x509.Certificate{Raw: []byte{0x30, 0x00}}
	key := func(i int) verifiedKey { return newVerifiedKey(MediaVoucherCMS, leaf, []byte{byte(i)}) }
	window := validity{notBefore: at.Add(-time.Hour), notAfter: at.Add(time.Hour)}

	vc := newVerifiedCache(2, time.Minute)
	vc.put(key(1), claim{serial: "1"}, window, at)
	vc.put(key(2), claim{serial: "2"}, window, at)
	if c, ok := vc.get(key(1), at); !ok || c.serial != "1" { // 1 is now the most recent
		t.Fatalf("get 1 = %v, %v", c.serial, ok)
	}
	vc.put(key(3), claim{serial: "3"}, window, at) // evicts 2, the least recently used
	if _, ok := vc.get(key(2), at); ok {
		t.Error("2 was not evicted")
	}
	for _, i := range []int{1, 3} {
		if _, ok := vc.get(key(i), at); !ok {
			t.Errorf("%d was evicted", i)
		}
	}
	if len(vc.entries) != 2 || vc.order.Len() != 2 {
		t.Errorf("%d entries, %d in order, want 2", len(vc.entries), vc.order.Len())
	}

	tests := []struct {
		name string
		now  time.Time
		want bool
	}{
		{"ttl/inside", at.Add(time.Minute - time.Second), true},
		{"ttl/at-end", at.Add(time.Minute), false},
		{"clock-set-back", at.Add(-time.Second), false},
	}
	for _, tc := range tests {
		vc := newVerifiedCache(2, time.Minute)
		vc.put(key(1), claim{}, window, at)
		if _, ok := vc.get(key(1), tc.now); ok != tc.want {
			t.Errorf("%s: hit = %v, want %v", tc.name, ok, tc.want)
		}
	}

	// The window: inclusive at both ends, like checkValidity.
	w := everywhere()
	w.narrow(&x509.Certificate{NotBefore: at, NotAfter: at.Add(time.Hour)}, false)
	w.narrow(&x509.Certificate{NotBefore: at.Add(-time.Hour), NotAfter: at.Add(time.Minute)}, false)
	w.narrow(&x509.Certificate{NotBefore: at.Add(-time.Hour), NotAfter: at.Add(-time.Hour)}, true) // an expired IDevID
	for _, tc := range []struct {
		now  time.Time
		want bool
	}{
		{at.Add(-time.Nanosecond), false}, {at, true}, {at.Add(time.Minute), true}, {at.Add(time.Minute + time.Nanosecond), false},
	} {
		if got := w.contains(tc.now); got != tc.want {
			t.Errorf("window contains %s = %v, want %v", tc.now, got, tc.want)
		}
	}
}
