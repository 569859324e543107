package pki_test

import (
	"encoding/asn1"
	"testing"

	"github.com/gatehouse-pki/gatehouse/pki"
)

// TestNewSerial_Properties is reliability Q4: 10^5 serials, all unique,
// positive, at most 20 DER octets, a fixed non-zero prefix, and every random
// bit position set in 50% ± 1% of the samples.
func TestNewSerial_Properties(t *testing.T) {
	t.Parallel()
	const n = 100_000
	seen := make(map[string]struct{}, n)
	var ones [128]int
	for range n {
		s := pki.NewSerial()
		if s.Sign() <= 0 {
			t.Fatalf("serial %x is not positive", s)
		}
		der, err := asn1.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if l := len(der) - 2; l > 20 || l != 17 {
			t.Fatalf("serial %x encodes to %d content octets, want 17 (≤ 20)", s, l)
		}
		b := s.Bytes()
		if b[0] != 0x7f {
			t.Fatalf("serial %x: prefix %#x, want 0x7f", s, b[0])
		}
		key := string(b)
		if _, dup := seen[key]; dup {
			t.Fatalf("duplicate serial %x", s)
		}
		seen[key] = struct{}{}
		for i := range 128 {
			if s.Bit(i) == 1 {
				ones[i]++
			}
		}
	}
	for i, c := range ones {
		if f := float64(c) / n; f < 0.49 || f > 0.51 {
			t.Errorf("bit %d set in %.4f of serials, want 0.50 ± 0.01", i, f)
		}
	}
}
