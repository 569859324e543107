package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/gatehouse-pki/gatehouse/store"
)

// SeedIssuer is the DeviceKey.Issuer of seeded devices, so they never
// collide with a real IDevID issuer's key identifier.
const SeedIssuer = "bench-seed"

// seedWorkers is how many writers Seed runs: enough for the store's group
// commit to share each fsync among many records.
const seedWorkers = 256

// Seed adds n enrolled device records to a registrar store (serials
// SEED-000000001 …, issuer SeedIssuer), for measuring start-up and
// throughput with a large store. Devices already there are left as they
// are, so seeding is resumable. progress, when not nil, is called every
// 10,000 devices with the count so far.
func Seed(ctx context.Context, db *store.DB, n int, progress func(done int)) error {
	var next, done atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, seedWorkers)
	for range seedWorkers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				d := store.Device{
					Key:     store.DeviceKey{Issuer: SeedIssuer, Serial: fmt.Sprintf("SEED-%09d", i)},
					Status:  store.DeviceEnrolled,
					MASAURL: "https://masa.invalid/.well-known/brski",
				}
				if _, err := db.PutDevice(ctx, d); err != nil {
					errs <- fmt.Errorf("bench: seed: %w", err)
					return
				}
				if c := done.Add(1); progress != nil && c%10000 == 0 {
					progress(int(c))
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}
