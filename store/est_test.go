package store_test

import (
	"errors"
	"math/big"
	"path/filepath"
	"testing"

	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/store"
)

// TestDB_KeyIndex: CompleteIssuance indexes the key under its device; the
// same key for another device is refused in the same transaction (C13),
// and the same device may be certified for it again.
func TestDB_KeyIndex(t *testing.T) {
	t.Parallel()
	db, err := store.Open(filepath.Join(t.TempDir(), "s.db"), store.Options{Clock: pkitest.NewClock()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ctx := t.Context()
	kh := store.KeyHashOf([]byte("spki"))
	if _, err := db.DeviceForKey(ctx, kh); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeviceForKey on an empty store = %v, want ErrNotFound", err)
	}
	a := store.DeviceKey{Issuer: "aa", Serial: "SN-A"}
	b := store.DeviceKey{Issuer: "aa", Serial: "SN-B"}
	issue := func(serial int64, dev store.DeviceKey) error {
		s := big.NewInt(serial)
		if err := db.BeginIssuance(ctx, store.Intent{Serial: s, Device: dev, Generation: "g1"}); err != nil {
			t.Fatal(err)
		}
		return db.CompleteIssuance(ctx, store.Completion{Serial: s, DER: []byte{byte(serial)}, Device: dev, KeyHash: kh},
			store.Event{Type: "issue-success"})
	}
	if err := issue(1, a); err != nil {
		t.Fatal(err)
	}
	if got, err := db.DeviceForKey(ctx, kh); err != nil || got != a {
		t.Fatalf("DeviceForKey = %v, %v; want %v", got, err, a)
	}
	if err := issue(2, a); err != nil {
		t.Errorf("same key, same device: %v", err)
	}
	if err := issue(3, b); !errors.Is(err, store.ErrConflict) {
		t.Errorf("same key, other device: %v, want ErrConflict", err)
	}
	if _, err := db.Certificate(ctx, big.NewInt(3)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused completion stored a certificate: %v", err)
	}
	if err := db.Check(ctx); err != nil {
		t.Error(err)
	}
}
