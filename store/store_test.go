package store_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jmhodges/clock"
	bolt "go.etcd.io/bbolt"

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
		t.Helper()
		db, _ := openTemp(t)
		return db
	})
}

func TestOpen_DurabilitySettings(t *testing.T) {
	t.Parallel()
	db, path := openTemp(t)
	b := store.Bolt(db)
	if b.NoSync || b.NoGrowSync {
		t.Fatalf("NoSync = %v, NoGrowSync = %v; both must be false", b.NoSync, b.NoGrowSync)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Fatalf("file mode %o, want 600", mode)
	}
}

func TestOpen_Options(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "x.db")
	for name, opts := range map[string]store.Options{
		"no-clock":         {},
		"negative-timeout": {Clock: fixedClock(), Timeout: -time.Second},
		"negative-batch":   {Clock: fixedClock(), MaxBatch: -1},
	} {
		if _, err := store.Open(path, opts); err == nil {
			t.Errorf("%s: Open succeeded", name)
		}
	}
	if got := (store.Options{}).WithDefaults(); got.Timeout != time.Second || got.MaxBatch != store.DefaultMaxBatch {
		t.Fatalf("defaults = %+v", got)
	}
}

// TestOpen_Locked: a second Open of a held file fails fast with a message
// that names the file and says what holds it. flock locks belong to the
// open file, so a second Open in the same process conflicts like another
// process would (the crash test checks a real second process too).
func TestOpen_Locked(t *testing.T) {
	t.Parallel()
	_, path := openTemp(t)
	assertLocked(t, path)
}

func assertLocked(t *testing.T, path string) {
	t.Helper()
	const timeout = 200 * time.Millisecond
	start := time.Now()
	db, err := store.Open(path, store.Options{Clock: fixedClock(), Timeout: timeout})
	elapsed := time.Since(start)
	if err == nil {
		_ = db.Close()
		t.Fatal("second Open of a held database succeeded")
	}
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("error = %v, want ErrLocked", err)
	}
	if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "another process holds the database") {
		t.Fatalf("message %q does not name the file and the cause", msg)
	}
	if elapsed > timeout+time.Second {
		t.Fatalf("Open took %s with a %s timeout", elapsed, timeout)
	}
}

// buildV1 writes, with bbolt directly, a database as schema version 1 left
// it: no nonces, certs-by-device or open-intents index buckets.
func buildV1(t *testing.T, path string, records map[string]map[string]string) {
	t.Helper()
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	err = b.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{"meta", "devices", "vouchers", "telemetry", "audit", "certificates", "intents", "ca-generations"} {
			bk, err := tx.CreateBucket([]byte(name))
			if err != nil {
				return err
			}
			for k, v := range records[name] {
				if err := bk.Put([]byte(k), []byte(v)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpen_MigratesSchema1(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "v1.db")
	openSerial, doneSerial := big.NewInt(0x4711), big.NewInt(0x4712)
	hash := strings.Repeat("ab", 32)
	buildV1(t, path, map[string]map[string]string{
		"meta": {"schema-version": "1"},
		"devices": {"6a1f0c\x00SN-1": `{"v":1,"issuer":"6a1f0c","serial":"SN-1","status":"enrolled",` +
			`"createdAt":"2030-01-02T03:04:05Z","updatedAt":"2030-01-02T03:04:05Z"}`},
		"vouchers": {"6a1f0c\x00SN-1\x00nonce-1": `{"v":1,"issuer":"6a1f0c","serial":"SN-1","nonce":"nonce-1","mediaType":"application/voucher-cms+json",` +
			`"signed":"dm91Y2hlcg==","requestHash":"` + hash + `","createdAt":"2030-01-02T03:04:05Z"}`},
		"certificates": {"\x47\x12": `{"v":1,"serial":"4712","der":"REVS","issuer":"6a1f0c","deviceSerial":"SN-1","generation":"g1",` +
			`"notAfter":"2031-01-02T03:04:05Z","issuedAt":"2030-01-02T03:04:05Z","status":"issued"}`},
		"intents": {
			"\x47\x11": `{"v":1,"serial":"4711","issuer":"6a1f0c","deviceSerial":"SN-1","tbsHash":"` + hash + `","generation":"g1","status":"open","createdAt":"2030-01-02T03:04:05Z"}`,
			"\x47\x12": `{"v":1,"serial":"4712","issuer":"6a1f0c","deviceSerial":"SN-1","tbsHash":"` + hash + `","generation":"g1","status":"completed","createdAt":"2030-01-02T03:04:05Z","resolvedAt":"2030-01-02T03:04:05Z"}`,
		},
	})

	db, err := store.Open(path, store.Options{Clock: fixedClock()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var version string
	_ = store.Bolt(db).View(func(tx *bolt.Tx) error {
		version = string(tx.Bucket([]byte("meta")).Get([]byte("schema-version")))
		return nil
	})
	if version != strconv.Itoa(store.SchemaVersion) {
		t.Fatalf("schema version after migration = %q, want %d", version, store.SchemaVersion)
	}
	open, err := db.OpenIntents(ctx)
	if err != nil || len(open) != 1 || open[0].Serial.Cmp(openSerial) != 0 {
		t.Fatalf("OpenIntents = %+v, %v; want the one open intent", open, err)
	}
	certs, err := db.CertificatesFor(ctx, storetest.Key("SN-1"))
	if err != nil || len(certs) != 1 || certs[0].Serial.Cmp(doneSerial) != 0 || string(certs[0].DER) != "DER" {
		t.Fatalf("CertificatesFor = %+v, %v", certs, err)
	}
	use, err := db.NonceUse(ctx, "nonce-1")
	if err != nil || use.Device != storetest.Key("SN-1") {
		t.Fatalf("NonceUse = %+v, %v", use, err)
	}
	if err := db.BeginIssuance(ctx, store.Intent{Serial: openSerial, Device: storetest.Key("SN-1"), Generation: "g1"}); !errors.Is(err, store.ErrSerialExists) {
		t.Fatalf("reusing a schema-1 serial: %v", err)
	}
	if r, err := db.ResolveIntents(ctx); err != nil || r.Abandoned != 1 {
		t.Fatalf("ResolveIntents = %+v, %v", r, err)
	}
}

func TestOpen_RefusesNewerSchema(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "future.db")
	buildV1(t, path, map[string]map[string]string{"meta": {"schema-version": strconv.Itoa(store.SchemaVersion + 1)}})
	_, err := store.Open(path, store.Options{Clock: fixedClock()})
	if !errors.Is(err, store.ErrSchemaTooNew) {
		t.Fatalf("error = %v, want ErrSchemaTooNew", err)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "schema version 3") {
		t.Fatalf("message %q does not name the file and version", err)
	}
}

func TestOpen_RefusesForeignDatabase(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "foreign.db")
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("etcd")); return err })
	_ = b.Close()
	if _, err := store.Open(path, store.Options{Clock: fixedClock()}); !errors.Is(err, store.ErrNotStore) {
		t.Fatalf("error = %v, want ErrNotStore", err)
	}
}

func TestDB_VerifyAuditChainDetectsTampering(t *testing.T) {
	t.Parallel()
	key := func(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }
	tests := map[string]func(b *bolt.Bucket) error{
		"edit-field": func(b *bolt.Bucket) error {
			v := bytes.Replace(b.Get(key(2)), []byte(`"device":"1"`), []byte(`"device":"9"`), 1)
			return b.Put(key(2), v)
		},
		"edit-type-and-rehash-itself": func(b *bolt.Bucket) error {
			// Event 2 edited and its own hash recomputed (the layout is in
			// doc.go): event 3's link to it breaks.
			type body struct {
				V      int               `json:"v"`
				Seq    uint64            `json:"seq"`
				Time   string            `json:"time"`
				Type   string            `json:"type"`
				Fields map[string]string `json:"fields,omitempty"`
				Prev   string            `json:"prev"`
			}
			var rec struct {
				body
				Hash string `json:"hash"`
			}
			if err := json.Unmarshal(b.Get(key(2)), &rec); err != nil {
				return err
			}
			rec.Type = "issue-success"
			canonical, err := json.Marshal(rec.body)
			if err != nil {
				return err
			}
			prev, _ := hex.DecodeString(rec.Prev)
			h := sha256.Sum256(append(prev, canonical...))
			rec.Hash = hex.EncodeToString(h[:])
			v, err := json.Marshal(rec)
			if err != nil {
				return err
			}
			return b.Put(key(2), v)
		},
		"remove-middle": func(b *bolt.Bucket) error { return b.Delete(key(2)) },
		"remove-first":  func(b *bolt.Bucket) error { return b.Delete(key(1)) },
		"remove-last":   func(b *bolt.Bucket) error { return b.Delete(key(4)) },
		"swap": func(b *bolt.Bucket) error {
			v2, v3 := bytes.Clone(b.Get(key(2))), bytes.Clone(b.Get(key(3)))
			if err := b.Put(key(2), v3); err != nil {
				return err
			}
			return b.Put(key(3), v2)
		},
		"move-to-other-key": func(b *bolt.Bucket) error {
			v := bytes.Clone(b.Get(key(4)))
			if err := b.Delete(key(4)); err != nil {
				return err
			}
			return b.Put(key(5), v)
		},
	}
	for name, tamper := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db, _ := openTemp(t)
			for i := range 4 {
				if _, err := db.AppendAudit(t.Context(), store.Event{Type: "vr-received", Fields: map[string]string{"device": strconv.Itoa(i)}}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := db.VerifyAuditChain(t.Context()); err != nil {
				t.Fatalf("untouched log: %v", err)
			}
			err := store.Bolt(db).Update(func(tx *bolt.Tx) error { return tamper(tx.Bucket([]byte("audit"))) })
			if err != nil {
				t.Fatal(err)
			}
			_, err = db.VerifyAuditChain(t.Context())
			if !errors.Is(err, store.ErrAuditChain) {
				t.Fatalf("VerifyAuditChain after %s: %v, want ErrAuditChain", name, err)
			}
			if name == "edit-type-and-rehash-itself" && !strings.Contains(err.Error(), "event 3 does not chain to event 2") {
				t.Fatalf("error %q: want the break found at event 3", err)
			}
		})
	}
}

// TestDB_ResolveIntentsCertificatePresent covers the branch the domain API
// cannot reach (CompleteIssuance closes the intent with the certificate): an
// open intent whose certificate is stored is marked completed.
func TestDB_ResolveIntentsCertificatePresent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, _ := openTemp(t)
	s := storetest.NewSerial()
	dev := storetest.Key("SN-1")
	if err := db.BeginIssuance(ctx, store.Intent{Serial: s, Device: dev, Generation: "g1"}); err != nil {
		t.Fatal(err)
	}
	err := store.Bolt(db).Update(func(tx *bolt.Tx) error {
		rec := `{"v":1,"serial":"` + s.Text(16) + `","der":"REVS","issuer":"6a1f0c","deviceSerial":"SN-1","generation":"g1","notAfter":"2031-01-02T03:04:05Z","issuedAt":"2030-01-02T03:04:05Z","status":"issued"}`
		return tx.Bucket([]byte("certificates")).Put(s.Bytes(), []byte(rec))
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := db.ResolveIntents(ctx)
	if err != nil || r != (store.Resolved{Completed: 1}) {
		t.Fatalf("ResolveIntents = %+v, %v; want 1 completed", r, err)
	}
	if in, err := db.Intent(ctx, s); err != nil || in.Status != store.IntentCompleted {
		t.Fatalf("intent = %+v, %v", in, err)
	}
}

func TestDB_DumpFormat(t *testing.T) {
	t.Parallel()
	db, _ := openTemp(t)
	if _, err := db.PutDevice(t.Context(), store.Device{Key: storetest.Key("SN-1")}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := db.Dump(t.Context(), &buf); err != nil {
		t.Fatal(err)
	}
	want := "gatehouse-store-dump 1\n" +
		"bucket audit sequence 0\n" +
		"bucket ca-generations sequence 0\n" +
		"bucket ca-rollover sequence 0\n" +
		"bucket certificates sequence 0\n" +
		"bucket certs-by-device sequence 0\n" +
		"bucket crls sequence 0\n" +
		"bucket devices sequence 0\n" +
		`36613166306300534e2d31 "{\"v\":1,\"issuer\":\"6a1f0c\",\"serial\":\"SN-1\",\"status\":\"new\",\"createdAt\":\"2030-01-02T03:04:05Z\",\"updatedAt\":\"2030-01-02T03:04:05Z\"}"` + "\n" +
		"bucket intents sequence 0\n" +
		"bucket ldevid-keys sequence 0\n" +
		"bucket meta sequence 0\n" +
		`736368656d612d76657273696f6e "2"` + "\n" +
		"bucket nonces sequence 0\n" +
		"bucket open-intents sequence 0\n" +
		"bucket telemetry sequence 0\n" +
		"bucket vouchers sequence 0\n"
	if d := cmp.Diff(want, buf.String()); d != "" {
		t.Fatalf("dump (-want +got):\n%s", d)
	}
}
