package store_test

import (
	"errors"
	"math/big"
	"path/filepath"
	"slices"
	"testing"
	"time"

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

// TestDB_Supersede: a completion with Supersede marks every other issued
// certificate of its device superseded by it, with one cert-superseded
// event each, in its transaction; revoked certificates and other devices'
// are untouched, and a superseded certificate can still be revoked.
func TestDB_Supersede(t *testing.T) {
	t.Parallel()
	fc := pkitest.NewClock()
	db, err := store.Open(filepath.Join(t.TempDir(), "s.db"), store.Options{Clock: fc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ctx := t.Context()
	a := store.DeviceKey{Issuer: "aa", Serial: "SN-A"}
	b := store.DeviceKey{Issuer: "aa", Serial: "SN-B"}
	issue := func(serial int64, dev store.DeviceKey, supersede bool) {
		t.Helper()
		s := big.NewInt(serial)
		if err := db.BeginIssuance(ctx, store.Intent{Serial: s, Device: dev, Generation: "g1"}); err != nil {
			t.Fatal(err)
		}
		err := db.CompleteIssuance(ctx, store.Completion{Serial: s, DER: []byte{byte(serial)}, Device: dev, Supersede: supersede},
			store.Event{Type: "issue-success"})
		if err != nil {
			t.Fatal(err)
		}
	}
	issue(1, a, false)
	issue(2, a, false)
	issue(3, a, false)
	issue(4, b, false)
	if err := db.Revoke(ctx, big.NewInt(2), 1); err != nil {
		t.Fatal(err)
	}
	before, err := db.AuditCount(ctx)
	if err != nil {
		t.Fatal(err)
	}
	issue(5, a, true)
	want := map[int64]store.CertStatus{1: store.CertSuperseded, 2: store.CertRevoked, 3: store.CertSuperseded, 4: store.CertIssued, 5: store.CertIssued}
	for serial, status := range want {
		c, err := db.Certificate(ctx, big.NewInt(serial))
		if err != nil {
			t.Fatal(err)
		}
		if c.Status != status {
			t.Errorf("certificate %d: status %s, want %s", serial, c.Status, status)
		}
		superseded := status == store.CertSuperseded
		if superseded != (c.SupersededBy != nil && c.SupersededBy.Int64() == 5 && c.SupersededAt.Equal(fc.Now().UTC().Truncate(time.Second))) {
			t.Errorf("certificate %d: superseded by %v at %v", serial, c.SupersededBy, c.SupersededAt)
		}
	}
	evs, err := db.Audit(ctx, before+1, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		if ev.Type == store.EventCertSuperseded {
			if ev.Fields["superseded_by"] != "05" || ev.Fields["device"] != a.String() {
				t.Errorf("event fields = %v", ev.Fields)
			}
			got = append(got, ev.Fields["cert_serial"])
		}
	}
	if !slices.Equal(got, []string{"01", "03"}) {
		t.Errorf("cert-superseded events for %v, want 01 and 03", got)
	}
	// Superseded is not revoked: it may be revoked later.
	if err := db.Revoke(ctx, big.NewInt(1), 1); err != nil {
		t.Errorf("revoke a superseded certificate: %v", err)
	}
	if c, err := db.Certificate(ctx, big.NewInt(1)); err != nil || c.Status != store.CertRevoked || c.SupersededBy == nil {
		t.Errorf("after revoke: %+v, %v", c, err)
	}
	if err := db.Check(ctx); err != nil {
		t.Error(err)
	}
}
