package store_test

import (
	"path/filepath"
	"testing"

	"github.com/jmhodges/clock"

	"github.com/gatehouse-pki/gatehouse/store"
	"github.com/gatehouse-pki/gatehouse/store/storetest"
)

var _ storetest.Backend = (*store.DB)(nil)

// fixedClock returns a fake clock at the project's test date.
func fixedClock() clock.FakeClock {
	fc := clock.NewFake()
	fc.Set(storetest.Epoch)
	return fc
}

// openTemp opens a store in a fresh temporary directory, closed at cleanup.
func openTemp(t *testing.T) (*store.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gatehouse.db")
	db, err := store.Open(path, store.Options{Clock: fixedClock()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return db, path
}

func TestDB_Contract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		db, _ := openTemp(t)
		return db
	})
}
