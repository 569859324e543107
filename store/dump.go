package store

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"

	bolt "go.etcd.io/bbolt"
)

// dumpHeader starts every dump; change it if the format changes.
const dumpHeader = "gatehouse-store-dump 1\n"

// Dump writes the canonical dump of the whole store (reliability §2.0) to
// w: a header line, then for every bucket in name order a line
// `bucket NAME sequence N`, then one line per key in key order,
// `HEXKEY QUOTEDVALUE` (Go %q of the stored bytes). Equal stores give equal
// bytes. It runs in one read transaction, which writes to w do not block
// other readers or the writer, but a slow w keeps old pages alive.
func (db *DB) Dump(ctx context.Context, w io.Writer) error {
	err := db.view(ctx, func(tx *bolt.Tx) error { return dumpTx(tx, w, nil) })
	if err != nil {
		return fmt.Errorf("dump store: %w", err)
	}
	return nil
}

// StateDigest returns the state hash (reliability §2.0): SHA-256 of the
// canonical dump without the append-only audit bucket. "No state change"
// means equal digests before and after.
func (db *DB) StateDigest(ctx context.Context) ([32]byte, error) {
	h := sha256.New()
	err := db.view(ctx, func(tx *bolt.Tx) error { return dumpTx(tx, h, digestExcluded) })
	if err != nil {
		return [32]byte{}, fmt.Errorf("state digest: %w", err)
	}
	return [32]byte(h.Sum(nil)), nil
}

func dumpTx(tx *bolt.Tx, w io.Writer, exclude map[string]bool) error {
	bw := bufio.NewWriter(w)
	if _, err := io.WriteString(bw, dumpHeader); err != nil {
		return err
	}
	err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		if exclude[string(name)] {
			return nil
		}
		return dumpBucket(bw, name, b)
	})
	if err != nil {
		return err
	}
	return bw.Flush()
}

func dumpBucket(w io.Writer, name []byte, b *bolt.Bucket) error {
	if _, err := fmt.Fprintf(w, "bucket %s sequence %d\n", name, b.Sequence()); err != nil {
		return err
	}
	return b.ForEach(func(k, v []byte) error {
		if v == nil { // a nested bucket (the schema has none; dump it anyway)
			return dumpBucket(w, fmt.Appendf(nil, "%s/%x", name, k), b.Bucket(k))
		}
		_, err := fmt.Fprintf(w, "%x %q\n", k, v)
		return err
	})
}
