package store_test

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/gatehouse-pki/gatehouse/store"
	"github.com/gatehouse-pki/gatehouse/store/storetest"
)

// benchParallelism multiplies GOMAXPROCS into the number of goroutines of
// the parallel benchmarks: a registrar has many requests in flight per core.
const benchParallelism = 32

func openBench(b *testing.B) *store.DB {
	b.Helper()
	db, err := store.Open(filepath.Join(b.TempDir(), "bench.db"), store.Options{Clock: fixedClock()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	return db
}

func reportOpsPerSecond(b *testing.B, ops int64) {
	b.Helper()
	b.ReportMetric(float64(ops)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkAppendAudit: one durable audit append per op, from one goroutine
// (every op pays an fsync) and from many (ops share commits).
func BenchmarkAppendAudit(b *testing.B) {
	ev := store.Event{Type: "vr-received", Fields: map[string]string{"device": "6a1f0c/SN-1", "nonce": "abcdef0123456789"}}
	b.Run("serial", func(b *testing.B) {
		db := openBench(b)
		b.ReportAllocs()
		var n int64
		for b.Loop() {
			if _, err := db.AppendAudit(b.Context(), ev); err != nil {
				b.Fatal(err)
			}
			n++
		}
		reportOpsPerSecond(b, n)
	})
	b.Run("parallel", func(b *testing.B) {
		db := openBench(b)
		b.ReportAllocs()
		b.SetParallelism(benchParallelism)
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := db.AppendAudit(b.Context(), ev); err != nil {
					b.Error(err)
					return
				}
				n.Add(1)
			}
		})
		reportOpsPerSecond(b, n.Load())
	})
}

// issueOnce runs the two durable transactions of one issuance (intent, then
// certificate + device + audit), without signing.
func issueOnce(b *testing.B, db *store.DB, dev store.DeviceKey) {
	b.Helper()
	s := storetest.NewSerial()
	der := make([]byte, 600) // about an LDevID's size
	copy(der, s.Bytes())
	in := store.Intent{Serial: s, Device: dev, TBSHash: sha256.Sum256(der), Generation: "g1"}
	if err := db.BeginIssuance(b.Context(), in, store.Event{Type: "issue-intent"}); err != nil {
		b.Error(err)
		return
	}
	c := store.Completion{Serial: s, DER: der, Device: dev, NotAfter: storetest.Epoch}
	if err := db.CompleteIssuance(b.Context(), c, store.Event{Type: "issue-success"}); err != nil {
		b.Error(err)
	}
}

// BenchmarkCompleteIssuance: one op is BeginIssuance + CompleteIssuance
// (two fsynced transactions when alone).
func BenchmarkCompleteIssuance(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		db := openBench(b)
		b.ReportAllocs()
		var n int64
		for b.Loop() {
			issueOnce(b, db, storetest.Key("SN-bench"))
			n++
		}
		reportOpsPerSecond(b, n)
	})
	b.Run("parallel", func(b *testing.B) {
		db := openBench(b)
		b.ReportAllocs()
		b.SetParallelism(benchParallelism)
		var n, worker atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			dev := storetest.Key(fmt.Sprintf("SN-bench-%d", worker.Add(1)))
			for pb.Next() {
				issueOnce(b, db, dev)
				n.Add(1)
			}
		})
		reportOpsPerSecond(b, n.Load())
	})
}

// BenchmarkBoltBatchSerial is the baseline behind the choice of a
// group-commit writer over bbolt's db.Batch: a lone caller of Batch waits
// MaxBatchDelay (10 ms) before its commit.
func BenchmarkBoltBatchSerial(b *testing.B) {
	bdb, err := bolt.Open(filepath.Join(b.TempDir(), "batch.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer bdb.Close()
	var n int64
	for b.Loop() {
		err := bdb.Batch(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("x"))
			if err != nil {
				return err
			}
			return bk.Put(binary.BigEndian.AppendUint64(nil, uint64(n)), []byte("event"))
		})
		if err != nil {
			b.Fatal(err)
		}
		n++
	}
	reportOpsPerSecond(b, n)
}
