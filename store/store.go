package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmhodges/clock"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Errors returned by the store. Match them with errors.Is; the returned
// errors wrap them with the operation and the record concerned.
var (
	// ErrNotFound means the record asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means the write contradicts the stored state: a state
	// transition from the wrong prior state, a record that already exists
	// with different content, a certificate already revoked.
	ErrConflict = errors.New("conflict with stored state")
	// ErrSerialExists means a certificate serial was already used, by an
	// intent (open, completed or abandoned) or a certificate. It wraps
	// ErrConflict.
	ErrSerialExists = fmt.Errorf("serial already used: %w", ErrConflict)
	// ErrNonceReused means a voucher-request nonce was already used by another
	// device or by a different request. It wraps ErrConflict.
	ErrNonceReused = fmt.Errorf("nonce already used by another request: %w", ErrConflict)
	// ErrInvalid means the caller passed a value the store refuses to record
	// (empty key, unknown status, non-positive serial…). It is a programming
	// or validation error of the caller, never a state problem.
	ErrInvalid = errors.New("invalid argument")
	// ErrLocked means another process (or another Open in this process)
	// holds the database file lock.
	ErrLocked = errors.New("database is locked by another process")
	// ErrSchemaTooNew means the database was written by a newer build, with a
	// schema version this code does not know.
	ErrSchemaTooNew = errors.New("database schema is newer than this build")
	// ErrNotStore means the file is a bbolt database but not a Gatehouse
	// store (it has buckets but no schema version).
	ErrNotStore = errors.New("not a gatehouse store")
	// ErrAuditChain means the audit log's hash chain does not verify: an
	// event was removed, reordered or edited.
	ErrAuditChain = errors.New("audit hash chain broken")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("store closed")
)

// DefaultTimeout is how long Open waits for the file lock by default.
const DefaultTimeout = time.Second

// DefaultMaxBatch is the default upper bound on write operations committed
// in one transaction.
const DefaultMaxBatch = 256

// Options configures Open. The zero value is not usable: Clock is required.
// There is deliberately no way to turn off fsync (bbolt's NoSync or
// NoGrowSync): every acknowledged write is durable.
type Options struct {
	// Clock supplies every timestamp the store records. Required.
	Clock clock.Clock
	// Timeout is how long Open waits for the file lock before failing with
	// ErrLocked. Default DefaultTimeout (1 s).
	Timeout time.Duration
	// MaxBatch bounds how many concurrent write operations share one
	// transaction and one fsync. Default DefaultMaxBatch (256).
	MaxBatch int
}

// WithDefaults returns o with zero fields replaced by their defaults.
func (o Options) WithDefaults() Options {
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	return o
}

// Validate reports every problem with o. It does not fill defaults.
func (o Options) Validate() error {
	var errs []error
	if o.Clock == nil {
		errs = append(errs, errors.New("store options: Clock is required"))
	}
	if o.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("store options: Timeout %s must be positive (a zero timeout waits forever on a held lock)", o.Timeout))
	}
	if o.MaxBatch < 1 {
		errs = append(errs, fmt.Errorf("store options: MaxBatch %d must be at least 1", o.MaxBatch))
	}
	return errors.Join(errs...)
}

// DB is the bbolt store. It is safe for concurrent use. Reads run in
// concurrent bbolt read transactions; writes go through one group-commit
// writer goroutine (see update).
type DB struct {
	bolt     *bolt.DB
	clk      clock.Clock
	path     string
	maxBatch int

	mu      sync.RWMutex // guards closed and sends on writes
	closed  bool
	writes  chan *writeOp
	stopped chan struct{} // closed when the writer goroutine returns

	auditHook atomic.Pointer[func(Event)] // see OnAudit
}

// Open opens (creating if needed, mode 0600) the store at path, creates
// missing buckets and migrates the schema to the current version. It fails
// with ErrLocked, within opts.Timeout, when another process holds the file,
// and with ErrSchemaTooNew when a newer build wrote it.
func Open(path string, opts Options) (*DB, error) {
	opts = opts.WithDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.Timeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: another process holds the database (file lock not acquired within %s); stop it or use another data directory: %w", path, opts.Timeout, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if bdb.NoSync || bdb.NoGrowSync {
		_ = bdb.Close()
		return nil, fmt.Errorf("open store %s: bbolt opened with NoSync or NoGrowSync; refusing (writes would not be durable)", path)
	}
	if err := bdb.Update(func(tx *bolt.Tx) error { return migrate(tx, path) }); err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	db := &DB{
		bolt:     bdb,
		clk:      opts.Clock,
		path:     path,
		maxBatch: opts.MaxBatch,
		writes:   make(chan *writeOp, opts.MaxBatch),
		stopped:  make(chan struct{}),
	}
	go db.writer()
	return db, nil
}

// Path returns the file the store was opened from.
func (db *DB) Path() string { return db.path }

// Close waits for queued writes to commit, then closes the file. Calling it
// again returns nil.
func (db *DB) Close() error {
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		return nil
	}
	db.closed = true
	close(db.writes)
	db.mu.Unlock()
	<-db.stopped
	if err := db.bolt.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", db.path, err)
	}
	return nil
}

// now is the store's time: the clock in UTC, truncated to the second. It is
// read outside transactions so that a re-run write function records the
// same instant.
func (db *DB) now() time.Time {
	return db.clk.Now().UTC().Truncate(time.Second)
}

// view runs fn in a read transaction.
func (db *DB) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := db.bolt.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// itob encodes a sequence number as a big-endian key, so that bbolt's byte
// order is insertion order.
func itob(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

// btoi decodes a key written by itob; ok is false for a key of another
// length.
func btoi(b []byte) (uint64, bool) {
	if len(b) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(b), true
}

// versioned is the part of every record that names its layout.
type versioned struct {
	V int `json:"v"`
}

// recordV1 is the layout version of every record type. When one record
// type gets a v2, its decoding switches on the stored "v" and a migration
// rewrites or keeps the old records.
const recordV1 = 1

// decodeRecord unmarshals a stored record after checking that its "v"
// field is recordV1. The decoder copies, so the result does not alias bbolt
// memory.
//
// Record types carry the version themselves (a V int field tagged "v",
// embedded or not), so a well-formed record is decoded in one pass and its
// version read from the result; only when that pass fails, or for a type
// without the field, is the version decoded first, so that a record of
// another version is reported as such rather than as a decoding error.
func decodeRecord(raw []byte, into any) error {
	if f, ok := versionField(into); ok {
		f.SetInt(0)
		if err := json.Unmarshal(raw, into); err == nil {
			if v := f.Int(); v != recordV1 {
				return fmt.Errorf("decode record: version %d, this build reads %d", v, recordV1)
			}
			return nil
		}
	}
	var v versioned
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("decode record: %w", err)
	}
	if v.V != recordV1 {
		return fmt.Errorf("decode record: version %d, this build reads %d", v.V, recordV1)
	}
	if err := json.Unmarshal(raw, into); err != nil {
		return fmt.Errorf("decode record: %w", err)
	}
	return nil
}

// versionField returns the settable "v" field (an int named V tagged
// `json:"v"`) of the struct into points to.
func versionField(into any) (reflect.Value, bool) {
	rv := reflect.ValueOf(into)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return reflect.Value{}, false
	}
	sf, ok := rv.Elem().Type().FieldByName("V")
	if !ok || sf.Type.Kind() != reflect.Int || sf.Tag.Get("json") != "v" {
		return reflect.Value{}, false
	}
	f, err := rv.Elem().FieldByIndexErr(sf.Index)
	if err != nil {
		return reflect.Value{}, false
	}
	return f, f.CanSet()
}

// put marshals rec and stores it under key in bucket name.
func put(tx *bolt.Tx, name string, key []byte, rec any) error {
	raw, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode %s record: %w", name, err)
	}
	if err := tx.Bucket([]byte(name)).Put(key, raw); err != nil {
		return fmt.Errorf("put %s record: %w", name, err)
	}
	return nil
}

// get loads the record under key from bucket name into into, or returns
// ErrNotFound.
func get(tx *bolt.Tx, name string, key []byte, into any) error {
	raw := tx.Bucket([]byte(name)).Get(key)
	if raw == nil {
		return ErrNotFound
	}
	return decodeRecord(raw, into)
}
