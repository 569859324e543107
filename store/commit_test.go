package store

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jmhodges/clock"
	bolt "go.etcd.io/bbolt"
)

func openInternal(t *testing.T) *DB {
	t.Helper()
	fc := clock.NewFake()
	fc.Set(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	db, err := Open(filepath.Join(t.TempDir(), "s.db"), Options{Clock: fc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// TestDB_CommitIsolatesFailures: in one batch, a failing, a panicking and a
// cancelled operation get their own errors, write nothing, and the others
// commit (after being re-run, which is why write functions are idempotent).
func TestDB_CommitIsolatesFailures(t *testing.T) {
	t.Parallel()
	db := openInternal(t)
	if err := db.bolt.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("scratch")); return err }); err != nil {
		t.Fatal(err)
	}
	runs := map[string]int{}
	putOp := func(ctx context.Context, key string, fail error) *writeOp {
		return &writeOp{ctx: ctx, done: make(chan error, 1), fn: func(tx *bolt.Tx) error {
			runs[key]++
			if err := tx.Bucket([]byte("scratch")).Put([]byte(key), []byte("v")); err != nil {
				return err
			}
			return fail
		}}
	}
	errBoom := errors.New("boom")
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	panicking := &writeOp{ctx: t.Context(), done: make(chan error, 1), fn: func(*bolt.Tx) error { panic("bad write function") }}
	ops := []*writeOp{
		putOp(t.Context(), "a", nil),
		putOp(t.Context(), "b", errBoom),
		panicking,
		putOp(t.Context(), "c", nil),
		putOp(cancelled, "d", nil),
	}
	db.commit(ops)

	if err := <-ops[0].done; err != nil {
		t.Errorf("a: %v", err)
	}
	if err := <-ops[1].done; !errors.Is(err, errBoom) {
		t.Errorf("b: %v, want boom", err)
	}
	if err := <-ops[2].done; err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Errorf("panicking op: %v", err)
	}
	if err := <-ops[3].done; err != nil {
		t.Errorf("c: %v", err)
	}
	if err := <-ops[4].done; !errors.Is(err, context.Canceled) {
		t.Errorf("d: %v, want context.Canceled", err)
	}
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("scratch"))
		for key, want := range map[string]bool{"a": true, "b": false, "c": true, "d": false} {
			if got := b.Get([]byte(key)) != nil; got != want {
				t.Errorf("key %s stored = %v, want %v", key, got, want)
			}
		}
		return nil
	})
	if runs["a"] != 3 || runs["d"] != 0 {
		t.Errorf("runs = %v; want a re-run after each failure (3) and d never run", runs)
	}
}

func TestDB_Close(t *testing.T) {
	t.Parallel()
	db := openInternal(t)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := db.AppendAudit(t.Context(), Event{Type: "x"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after Close: %v, want ErrClosed", err)
	}
	if _, err := db.AuditCount(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after Close: %v, want ErrClosed", err)
	}
}

// TestDB_CommitChainsAuditInBatch: the events of several operations in one
// batch chain to each other (each takes the chain head from the events the
// transaction appended before it), also when an operation that appended
// events fails and the batch is re-run without it; each caller gets its
// event as stored.
func TestDB_CommitChainsAuditInBatch(t *testing.T) {
	t.Parallel()
	db := openInternal(t)
	ctx := t.Context()
	if _, err := db.AppendAudit(ctx, Event{Type: "before"}); err != nil {
		t.Fatal(err)
	}
	errBoom := errors.New("boom")
	stored := make([]Event, 3)
	appendOp := func(i int, typ string, fail error) *writeOp {
		events, err := db.prepareEvents([]Event{{Type: typ}, {Type: typ + "-2"}})
		if err != nil {
			t.Fatal(err)
		}
		return &writeOp{ctx: ctx, done: make(chan error, 1), fn: func(tx *bolt.Tx) error {
			if err := appendEvents(tx, events); err != nil {
				return err
			}
			if fail != nil {
				return fail
			}
			list, _ := txEvents.Load(tx)
			l := *list.(*[]Event)
			stored[i] = l[len(l)-1]
			return nil
		}}
	}
	ops := []*writeOp{appendOp(0, "a", nil), appendOp(1, "b", errBoom), appendOp(2, "c", nil)}
	db.commit(ops)
	for i, want := range []error{nil, errBoom, nil} {
		if err := <-ops[i].done; !errors.Is(err, want) {
			t.Fatalf("op %d: %v, want %v", i, err, want)
		}
	}
	head, err := db.VerifyAuditChain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if head.Count != 5 || head.Hash != stored[2].Hash {
		t.Fatalf("head = %+v, want 5 events ending with c's last (%x)", head, stored[2].Hash)
	}
	got, err := db.Audit(ctx, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range got {
		types = append(types, e.Type)
	}
	if strings.Join(types, " ") != "before a a-2 c c-2" {
		t.Fatalf("audit types %v", types)
	}
	if got[2].Hash != stored[0].Hash || got[4].Hash != stored[2].Hash {
		t.Fatal("the events the operations saw are not the stored ones")
	}
	e, err := db.AppendAudit(ctx, Event{Type: "after", Fields: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	if e.Seq != 6 || e.PrevHash != stored[2].Hash || e.Fields["k"] != "v" {
		t.Fatalf("AppendAudit returned %+v", e)
	}
	if _, err := db.VerifyAuditChain(ctx); err != nil {
		t.Fatal(err)
	}
}
