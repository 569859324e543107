package store

import (
	"context"
	"errors"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Group commit.
//
// Every write goes through one writer goroutine. It takes the first queued
// operation, then everything else already queued (up to MaxBatch) without
// waiting, runs them all in one bbolt read-write transaction and commits it
// with one fsync. Operations that arrive while that fsync runs form the next
// batch. A lone writer therefore pays one fsync and no added delay, and many
// concurrent writers share fsyncs.
//
// bbolt's own db.Batch was the alternative. It holds every batch open for
// MaxBatchDelay (10 ms by default) unless MaxBatchSize calls arrive first,
// which puts a 10 ms floor under every write at low load (two writes per
// issuance); shrinking the delay shrinks the batches. Draining a queue
// between commits needs no tuning.
//
// The contract is the same as db.Batch's: a write function may run more
// than once (when another function in its batch fails, the transaction is
// rolled back and the others are run again), so it must be idempotent and
// free of side effects outside the transaction. Functions assign their
// results to variables of the caller; they never append to them. They never
// read the clock (callers read it before queueing) and never block.

// writeOp is one queued write.
type writeOp struct {
	ctx  context.Context
	fn   func(tx *bolt.Tx) error
	done chan error // buffered, capacity 1
}

// update runs fn in a durable read-write transaction shared with other
// concurrent writers, and returns once that transaction is committed and
// fsynced (or failed). fn may run several times; see the comment above.
func (db *DB) update(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	op := &writeOp{ctx: ctx, fn: fn, done: make(chan error, 1)}
	db.mu.RLock()
	if db.closed {
		db.mu.RUnlock()
		return ErrClosed
	}
	db.writes <- op
	db.mu.RUnlock()
	// Wait for the outcome even if ctx ends meanwhile: once queued, the
	// write may commit, and the caller must not believe otherwise.
	return <-op.done
}

// writer is the group-commit goroutine. It returns when writes is closed and
// drained.
func (db *DB) writer() {
	defer close(db.stopped)
	batch := make([]*writeOp, 0, db.maxBatch)
	for op := range db.writes {
		batch = append(batch[:0], op)
	fill:
		for len(batch) < db.maxBatch {
			select {
			case next, ok := <-db.writes:
				if !ok {
					break fill
				}
				batch = append(batch, next)
			default:
				break fill
			}
		}
		db.commit(batch)
	}
}

// commit runs ops in one transaction. When one of them fails, the
// transaction is rolled back, that operation gets its error, and the others
// run again without it.
func (db *DB) commit(ops []*writeOp) {
	ops = slices.DeleteFunc(slices.Clone(ops), func(op *writeOp) bool {
		// ctx is checked before a write transaction opens for it.
		if err := op.ctx.Err(); err != nil {
			op.done <- err
			return true
		}
		return false
	})
	for len(ops) > 0 {
		failed := -1
		var failErr error
		var events []Event // audit events this attempt stored, for OnAudit
		err := db.bolt.Update(func(tx *bolt.Tx) error {
			txEvents.Store(tx, &events)
			defer txEvents.Delete(tx)
			for i, op := range ops {
				if err := callWrite(op.fn, tx); err != nil {
					failed, failErr = i, err
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			if errors.Is(err, berrors.ErrDatabaseNotOpen) {
				err = ErrClosed
			} else if err != nil {
				err = fmt.Errorf("commit: %w", err)
			}
			if err == nil {
				db.deliverAudit(events)
			}
			for _, op := range ops {
				op.done <- err
			}
			return
		}
		ops[failed].done <- failErr
		ops = slices.Delete(ops, failed, failed+1)
	}
}

// callWrite runs fn, turning a panic into an error so that one bad write
// function cannot take the writer goroutine (and every waiting caller) down.
func callWrite(fn func(tx *bolt.Tx) error, tx *bolt.Tx) error {
	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("store write function panicked: %v", p)
			}
		}()
		err = fn(tx)
	}()
	return err
}

// deliverAudit hands committed audit events to the OnAudit hook.
func (db *DB) deliverAudit(events []Event) {
	if len(events) == 0 {
		return
	}
	if fn := db.auditHook.Load(); fn != nil {
		for _, e := range events {
			(*fn)(e)
		}
	}
}
