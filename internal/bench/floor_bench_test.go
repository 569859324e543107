package bench

import (
	"testing"

	"github.com/jmhodges/clock"

	"github.com/gatehouse-pki/gatehouse/internal/lab"
)

// BenchmarkFloorUnit is the floor's unit of work, one onboarding's server
// share (see Floor), on one goroutine: TLS handshake over a pipe (both
// halves run here), four CMS verifications, two CMS signatures, CSR check,
// issuance with the lab's lint mode, one durable store write.
func BenchmarkFloorUnit(b *testing.B) {
	clk := clock.New()
	dir := b.TempDir()
	if err := lab.Generate(dir, lab.GenerateOptions{Clock: clk, MASAAuthority: "127.0.0.1:1"}); err != nil {
		b.Fatal(err)
	}
	p, err := lab.Load(b.Context(), dir)
	if err != nil {
		b.Fatal(err)
	}
	ids, err := LoadIdentities(b.Context(), dir, clk)
	if err != nil {
		b.Fatal(err)
	}
	w, err := newFloorWork(b.Context(), FloorConfig{Lab: p, Identities: ids, Clock: clk})
	if err != nil {
		b.Fatal(err)
	}
	defer w.close()
	var i int64
	b.ReportAllocs()
	for b.Loop() {
		i++
		if _, err := w.unit(b.Context(), i); err != nil {
			b.Fatal(err)
		}
	}
}
