package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Audit event types the store writes on its own (the others come from the
// callers' audit package).
const (
	// EventIssueAbandoned records an intent closed without a certificate, by
	// AbandonIssuance or by ResolveIntents at start-up. Fields: cert_serial,
	// reason.
	EventIssueAbandoned = "issue-abandoned"
	// EventCertSuperseded records a certificate marked superseded by a
	// re-enrolment's CompleteIssuance (Completion.Supersede). Fields:
	// cert_serial (the superseded one), superseded_by, device.
	EventCertSuperseded = "cert-superseded"
)

// Event is one audit-log entry. Callers set Type, Fields and optionally
// Time; the store assigns Seq, PrevHash and Hash.
//
// Each event's Hash is SHA-256(PrevHash || canonical JSON of the event
// without its hash), and PrevHash is the previous event's Hash (zero for
// the first), so removing, reordering or editing a stored event breaks the
// chain (reliability Q7). VerifyAuditChain checks it.
type Event struct {
	// Seq is the event's position, from 1, contiguous.
	Seq uint64
	// Time is when it happened; the store's clock when zero. Stored in UTC,
	// truncated to the second.
	Time time.Time
	// Type names the event ("issue-intent", "issue-success",
	// "vr-received"…). Required.
	Type string
	// Fields carry the details (snake_case keys: device, cert_serial,
	// nonce, cert_der…). Never secrets.
	Fields map[string]string
	// PrevHash is the previous event's Hash.
	PrevHash [32]byte
	// Hash chains this event to the previous one.
	Hash [32]byte
}

// auditBodyV1 is the hashed part of a stored event: the canonical JSON is
// json.Marshal of it (fixed field order, sorted map keys, no spaces).
type auditBodyV1 struct {
	V      int               `json:"v"`
	Seq    uint64            `json:"seq"`
	Time   time.Time         `json:"time"`
	Type   string            `json:"type"`
	Fields map[string]string `json:"fields,omitempty"`
	Prev   string            `json:"prev"`
}

// auditRecordV1 is the stored event: the body plus its hash.
type auditRecordV1 struct {
	auditBodyV1
	Hash string `json:"hash"`
}

// auditHeadV1 is the part of a stored event that the next one chains to.
type auditHeadV1 struct {
	V    int    `json:"v"`
	Hash string `json:"hash"`
}

func (b auditBodyV1) hash() ([32]byte, error) {
	body, err := json.Marshal(b)
	if err != nil {
		return [32]byte{}, fmt.Errorf("encode audit event: %w", err)
	}
	prev, err := decodeHash(b.Prev)
	if err != nil {
		return [32]byte{}, err
	}
	h := sha256.New()
	h.Write(prev[:])
	h.Write(body)
	return [32]byte(h.Sum(nil)), nil
}

func (rec auditRecordV1) event() (Event, error) {
	prev, err := decodeHash(rec.Prev)
	if err != nil {
		return Event{}, err
	}
	hash, err := decodeHash(rec.Hash)
	if err != nil {
		return Event{}, err
	}
	return Event{
		Seq:      rec.Seq,
		Time:     rec.Time,
		Type:     rec.Type,
		Fields:   rec.Fields, // freshly decoded: not shared
		PrevHash: prev,
		Hash:     hash,
	}, nil
}

func decodeHash(s string) ([32]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return [32]byte{}, fmt.Errorf("hash %q is not 32 hex bytes", s)
	}
	return [32]byte(b), nil
}

// prepareEvents validates events and copies them (fields included) before
// they are queued, filling Time from the clock.
func (db *DB) prepareEvents(events []Event) ([]Event, error) {
	out := make([]Event, len(events))
	for i, e := range events {
		if e.Type == "" {
			return nil, fmt.Errorf("audit event without a type: %w", ErrInvalid)
		}
		if e.Time.IsZero() {
			e.Time = db.now()
		}
		e.Time = e.Time.UTC().Truncate(time.Second)
		e.Fields = maps.Clone(e.Fields)
		out[i] = e
	}
	return out, nil
}

// OnAudit registers fn to receive every audit event, as stored (with Seq and
// hashes), after the transaction that wrote it has been committed and
// fsynced, in sequence order: events appended on their own (AppendAudit)
// and those written inside another operation's transaction alike. fn runs
// on the store's writer goroutine, so it must be quick and must not call
// the store. Use it to mirror the audit trail to a file. A later call
// replaces the hook; nil removes it.
func (db *DB) OnAudit(fn func(Event)) {
	if fn == nil {
		db.auditHook.Store(nil)
		return
	}
	db.auditHook.Store(&fn)
}

// txEvents collects, per write transaction attempt, the audit events its
// write functions appended, for delivery to the OnAudit hook once the
// transaction has committed. Keyed by *bolt.Tx; entries live only during
// one attempt of commit.
var txEvents sync.Map

// appendEvents appends events to the audit bucket, chaining each to the
// last stored one. It reads and writes only tx, so a re-run is harmless.
func appendEvents(tx *bolt.Tx, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	b := tx.Bucket([]byte(bucketAudit))
	var list *[]Event
	if c, ok := txEvents.Load(tx); ok {
		list = c.(*[]Event)
	}
	var prev [32]byte
	if list != nil && len(*list) > 0 {
		// The chain head is the last event this transaction appended: the
		// group commit puts many writers' events in one transaction, and
		// each would otherwise decode the whole last record (an
		// issue-success event carries the certificate) to read its hash.
		prev = (*list)[len(*list)-1].Hash
	} else if k, v := b.Cursor().Last(); k != nil {
		var last auditHeadV1 // the hash only: the rest is skipped, not decoded
		if err := decodeRecord(v, &last); err != nil {
			return fmt.Errorf("last audit event %x: %w", k, err)
		}
		h, err := decodeHash(last.Hash)
		if err != nil {
			return fmt.Errorf("last audit event %x: %w: %w", k, err, ErrAuditChain)
		}
		prev = h
	}
	for _, e := range events {
		seq, err := b.NextSequence()
		if err != nil {
			return fmt.Errorf("audit sequence: %w", err)
		}
		body := auditBodyV1{V: 1, Seq: seq, Time: e.Time, Type: e.Type, Fields: e.Fields, Prev: hex.EncodeToString(prev[:])}
		h, err := body.hash()
		if err != nil {
			return err
		}
		rec := auditRecordV1{auditBodyV1: body, Hash: hex.EncodeToString(h[:])}
		if err := put(tx, bucketAudit, itob(seq), rec); err != nil {
			return err
		}
		if list != nil {
			stored, err := rec.event()
			if err != nil {
				return err
			}
			*list = append(*list, stored)
		}
		prev = h
	}
	return nil
}

// AppendAudit appends one event to the audit log durably and returns it as
// stored (with Seq and hashes). Concurrent calls share commits.
func (db *DB) AppendAudit(ctx context.Context, e Event) (Event, error) {
	events, err := db.prepareEvents([]Event{e})
	if err != nil {
		return Event{}, fmt.Errorf("append audit: %w", err)
	}
	var stored Event
	err = db.update(ctx, func(tx *bolt.Tx) error {
		if err := appendEvents(tx, events); err != nil {
			return err
		}
		if c, ok := txEvents.Load(tx); ok {
			// appendEvents recorded it as stored: no need to read it back.
			list := *c.(*[]Event)
			stored = list[len(list)-1]
			stored.Fields = maps.Clone(stored.Fields)
			return nil
		}
		_, v := tx.Bucket([]byte(bucketAudit)).Cursor().Last()
		var rec auditRecordV1
		if err := decodeRecord(v, &rec); err != nil {
			return err
		}
		e, err := rec.event()
		stored = e
		return err
	})
	if err != nil {
		return Event{}, fmt.Errorf("append audit %s: %w", e.Type, err)
	}
	return stored, nil
}

// Audit returns up to limit events (default 100, at most 1000) with Seq at
// least from, in order.
func (db *DB) Audit(ctx context.Context, from uint64, limit int) ([]Event, error) {
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	var out []Event
	err := db.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucketAudit)).Cursor()
		for k, v := c.Seek(itob(from)); k != nil && len(out) < limit; k, v = c.Next() {
			var rec auditRecordV1
			if err := decodeRecord(v, &rec); err != nil {
				return fmt.Errorf("audit event %x: %w", k, err)
			}
			e, err := rec.event()
			if err != nil {
				return fmt.Errorf("audit event %x: %w", k, err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read audit from %d: %w", from, err)
	}
	return out, nil
}

// AuditCount returns the number of events in the audit log.
func (db *DB) AuditCount(ctx context.Context) (uint64, error) {
	var n uint64
	err := db.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucketAudit)).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count audit events: %w", err)
	}
	return n, nil
}

// AuditHead summarises a verified audit log. Record Hash outside the store
// (for example in the audit slog file) to detect a truncated tail later.
type AuditHead struct {
	// Count is the number of events, equal to the last Seq.
	Count uint64
	// Hash is the last event's hash (zero for an empty log).
	Hash [32]byte
}

// VerifyAuditChain walks the whole audit log and checks that sequence
// numbers run 1, 2, 3… without gaps, that each key matches its record, that
// each event's PrevHash is the previous Hash and that each Hash recomputes.
// The bucket's sequence counter must equal the last Seq, so a removed tail
// is caught too. Any failure wraps ErrAuditChain.
func (db *DB) VerifyAuditChain(ctx context.Context) (AuditHead, error) {
	var head AuditHead
	err := db.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketAudit))
		var prev [32]byte
		var n uint64
		err := b.ForEach(func(k, v []byte) error {
			n++
			seq, ok := btoi(k)
			if !ok || seq != n {
				return fmt.Errorf("audit key %x at position %d: %w", k, n, ErrAuditChain)
			}
			var rec auditRecordV1
			if err := decodeRecord(v, &rec); err != nil {
				return fmt.Errorf("audit event %d: %w: %w", n, err, ErrAuditChain)
			}
			if rec.Seq != seq {
				return fmt.Errorf("audit event under key %d says seq %d: %w", seq, rec.Seq, ErrAuditChain)
			}
			if rec.Prev != hex.EncodeToString(prev[:]) {
				return fmt.Errorf("audit event %d does not chain to event %d: %w", seq, seq-1, ErrAuditChain)
			}
			h, err := rec.hash()
			if err != nil {
				return fmt.Errorf("audit event %d: %w: %w", seq, err, ErrAuditChain)
			}
			if rec.Hash != hex.EncodeToString(h[:]) {
				return fmt.Errorf("audit event %d: content does not match its hash: %w", seq, ErrAuditChain)
			}
			prev = h
			return nil
		})
		if err != nil {
			return err
		}
		if b.Sequence() != n {
			return fmt.Errorf("audit log ends at event %d but %d were appended: %w", n, b.Sequence(), ErrAuditChain)
		}
		head = AuditHead{Count: n, Hash: prev}
		return nil
	})
	if err != nil {
		return AuditHead{}, fmt.Errorf("verify audit chain: %w", err)
	}
	return head, nil
}
