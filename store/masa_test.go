package store_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jmhodges/clock"

	"github.com/gatehouse-pki/gatehouse/store"
)

// openMASA opens a MASA store in a fresh temporary directory.
func openMASA(t *testing.T) (*store.DB, clock.FakeClock, string) {
	t.Helper()
	fc := clock.NewFake()
	fc.Set(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	path := filepath.Join(t.TempDir(), "masa.db")
	db, err := store.Open(path, store.Options{Clock: fc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db, fc, path
}

func ownerHash(name string) []byte {
	h := sha256.Sum256([]byte(name))
	return h[:]
}

func issue(serial, nonce, domain string, claim store.MASAClaim) store.MASAIssue {
	return store.MASAIssue{
		Voucher: store.MASAVoucher{
			Serial: serial, Nonce: nonce, DomainID: "id-" + domain, Assertion: "proximity",
			Signed: []byte("voucher " + serial + " " + nonce + " " + domain),
		},
		OwnerSPKIHash: ownerHash(domain),
		Claim:         claim,
	}
}

func TestDB_RecordMASAVoucher(t *testing.T) {
	t.Parallel()
	type step struct {
		register *store.MASADevice
		issue    store.MASAIssue
		wantErr  error
		existing bool
	}
	owned := func(serial, domain string) *store.MASADevice {
		return &store.MASADevice{Serial: serial, OwnerSPKIHash: ownerHash(domain), OwnerDomainID: "id-" + domain}
	}
	tests := []struct {
		name    string
		steps   []step
		wantLog int
	}{
		{name: "registry/owner-matches", steps: []step{{register: owned("SN1", "a"), issue: issue("SN1", "n1", "a", store.MASARequireOwner)}}, wantLog: 1},
		{name: "registry/unknown-device", steps: []step{{issue: issue("SN1", "n1", "a", store.MASARequireOwner), wantErr: store.ErrNotFound}}},
		{name: "registry/other-owner", steps: []step{{register: owned("SN1", "b"), issue: issue("SN1", "n1", "a", store.MASARequireOwner), wantErr: store.ErrNotOwner}}},
		{name: "registry/unowned", steps: []step{{register: &store.MASADevice{Serial: "SN1"}, issue: issue("SN1", "n1", "a", store.MASARequireOwner), wantErr: store.ErrNotOwner}}},
		{name: "first-claim/unknown", steps: []step{{issue: issue("SN1", "n1", "a", store.MASAFirstClaim)}}, wantLog: 1},
		{name: "first-claim/unowned", steps: []step{{register: &store.MASADevice{Serial: "SN1"}, issue: issue("SN1", "n1", "a", store.MASAFirstClaim)}}, wantLog: 1},
		{name: "first-claim/other-owner", steps: []step{
			{issue: issue("SN1", "n1", "a", store.MASAFirstClaim)},
			{issue: issue("SN1", "n2", "b", store.MASAFirstClaim), wantErr: store.ErrNotOwner},
		}, wantLog: 1},
		{name: "retry/same-domain", steps: []step{
			{issue: issue("SN1", "n1", "a", store.MASAFirstClaim)},
			{issue: issue("SN1", "n1", "a", store.MASAFirstClaim), existing: true},
		}, wantLog: 1},
		{name: "nonceless/each-logged", steps: []step{
			{issue: issue("SN1", "", "a", store.MASAFirstClaim)},
			{issue: issue("SN1", "", "a", store.MASAFirstClaim)},
		}, wantLog: 2},
		{name: "invalid/nul-serial", steps: []step{{issue: issue("S\x00N", "n1", "a", store.MASAFirstClaim), wantErr: store.ErrInvalid}}},
		{name: "invalid/no-owner", steps: []step{{issue: store.MASAIssue{Voucher: store.MASAVoucher{Serial: "SN1", DomainID: "x", Assertion: "logged", Signed: []byte{1}}}, wantErr: store.ErrInvalid}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db, _, _ := openMASA(t)
			ctx := t.Context()
			for i, s := range tc.steps {
				if s.register != nil {
					if err := db.RegisterMASADevice(ctx, *s.register); err != nil {
						t.Fatal(err)
					}
				}
				before, err := db.StateDigest(ctx)
				if err != nil {
					t.Fatal(err)
				}
				got, err := db.RecordMASAVoucher(ctx, s.issue, store.Event{Type: "masa-voucher-signed", Fields: map[string]string{"step": "x"}})
				if !errors.Is(err, s.wantErr) || (err != nil) != (s.wantErr != nil) {
					t.Fatalf("step %d: err = %v, want %v", i, err, s.wantErr)
				}
				if err != nil {
					after, _ := db.StateDigest(ctx)
					if after != before {
						t.Fatalf("step %d: refused write changed the state", i)
					}
					continue
				}
				if got.Existing != s.existing {
					t.Errorf("step %d: Existing = %v, want %v", i, got.Existing, s.existing)
				}
				if len(got.Events) != 1 || got.Events[0].Seq == 0 || got.Events[0].Type != "masa-voucher-signed" {
					t.Errorf("step %d: events = %+v", i, got.Events)
				}
				if !bytes.Equal(got.Voucher.Signed, s.issue.Voucher.Signed) {
					t.Errorf("step %d: voucher = %q", i, got.Voucher.Signed)
				}
			}
			serial := tc.steps[0].issue.Voucher.Serial
			if serial == "S\x00N" {
				return
			}
			log, err := db.MASAAuditLog(ctx, serial)
			if err != nil {
				t.Fatal(err)
			}
			if len(log) != tc.wantLog {
				t.Fatalf("log = %+v, want %d entries", log, tc.wantLog)
			}
		})
	}
}

func TestDB_MASAReadBack(t *testing.T) {
	t.Parallel()
	db, fc, path := openMASA(t)
	ctx := t.Context()
	if _, err := db.MASADevice(ctx, "SN1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("before any write: %v", err)
	}
	if log, err := db.MASAAuditLog(ctx, "SN1"); err != nil || log != nil {
		t.Fatalf("before any write: %v %v", log, err)
	}
	if err := db.RegisterMASADevice(ctx, store.MASADevice{Serial: "SN1", OwnerSPKIHash: ownerHash("a"), OwnerDomainID: "id-a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RecordMASAVoucher(ctx, issue("SN1", "n1", "a", store.MASARequireOwner)); err != nil {
		t.Fatal(err)
	}
	fc.Add(time.Minute)
	if _, err := db.RecordMASAVoucher(ctx, issue("SN1", "", "a", store.MASARequireOwner)); err != nil {
		t.Fatal(err)
	}
	// Another device whose serial shares a prefix: its entries stay apart.
	if _, err := db.RecordMASAVoucher(ctx, issue("SN10", "n9", "b", store.MASAFirstClaim)); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(path, store.Options{Clock: fc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })

	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	log, err := db.MASAAuditLog(ctx, "SN1")
	if err != nil {
		t.Fatal(err)
	}
	want := []store.MASALogEntry{
		{Seq: 1, Serial: "SN1", Date: t0, DomainID: "id-a", Nonce: "n1", Assertion: "proximity"},
		{Seq: 2, Serial: "SN1", Date: t0.Add(time.Minute), DomainID: "id-a", Assertion: "proximity"},
	}
	if d := cmp.Diff(want, log); d != "" {
		t.Errorf("log (-want +got):\n%s", d)
	}
	all, err := db.MASAAuditLogs(ctx)
	if err != nil || len(all) != 3 {
		t.Fatalf("all logs = %+v, %v", all, err)
	}
	v, err := db.MASAVoucher(ctx, "SN1", "n1")
	if err != nil || string(v.Signed) != "voucher SN1 n1 a" || v.DomainID != "id-a" || !v.CreatedAt.Equal(t0) {
		t.Fatalf("voucher = %+v, %v", v, err)
	}
	v.Signed[0] = 'X' // copy-out: the next read is unaffected
	if v2, _ := db.MASAVoucher(ctx, "SN1", "n1"); v2.Signed[0] != 'v' {
		t.Fatal("returned voucher aliases stored bytes")
	}
	if _, err := db.MASAVoucher(ctx, "SN1", "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown nonce: %v", err)
	}
	dev, err := db.MASADevice(ctx, "SN10")
	if err != nil || !dev.Owned() || !bytes.Equal(dev.OwnerSPKIHash, ownerHash("b")) || dev.ClaimedAt.IsZero() {
		t.Fatalf("claimed device = %+v, %v", dev, err)
	}
	// Re-registering keeps RegisteredAt and hands the device over.
	fc.Add(time.Hour)
	if err := db.RegisterMASADevice(ctx, store.MASADevice{Serial: "SN10", OwnerSPKIHash: ownerHash("c")}); err != nil {
		t.Fatal(err)
	}
	dev2, _ := db.MASADevice(ctx, "SN10")
	if !dev2.RegisteredAt.Equal(dev.RegisteredAt) || !bytes.Equal(dev2.OwnerSPKIHash, ownerHash("c")) || !dev2.ClaimedAt.IsZero() {
		t.Fatalf("re-registered device = %+v", dev2)
	}
	if _, err := db.VerifyAuditChain(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestDB_RecordMASAVoucherConcurrentClaims(t *testing.T) {
	t.Parallel()
	db, _, _ := openMASA(t)
	ctx := t.Context()
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = db.RecordMASAVoucher(ctx, issue("SN1", "nonce", string(rune('a'+i)), store.MASAFirstClaim))
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrNotOwner):
			t.Errorf("unexpected error %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d claims succeeded, want exactly 1", ok)
	}
	log, _ := db.MASAAuditLog(ctx, "SN1")
	if len(log) != 1 {
		t.Fatalf("log has %d entries, want 1", len(log))
	}
}

func TestDB_RegisterMASADeviceInvalid(t *testing.T) {
	t.Parallel()
	db, _, _ := openMASA(t)
	for _, d := range []store.MASADevice{{}, {Serial: "SN1", OwnerSPKIHash: []byte{1, 2}}} {
		if err := db.RegisterMASADevice(t.Context(), d); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("RegisterMASADevice(%+v) = %v, want ErrInvalid", d, err)
		}
	}
}
