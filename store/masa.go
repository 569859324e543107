package store

// The MASA's persistence. A MASA runs on its own bbolt file (never the
// registrar's), opened with the same Open; its buckets are created by the
// first write that needs them, so the registrar's schema and migrations are
// untouched and a registrar file never grows MASA buckets.
//
//	masa-devices   serial → masaDeviceRecordV1 {v, serial, ownerSPKIHash
//	               (hex SHA-256 of the owner's SubjectPublicKeyInfo, "" when
//	               unowned), ownerDomainID, registeredAt, claimedAt}
//	masa-vouchers  serial NUL nonce → masaVoucherRecordV1 {v, serial, nonce,
//	               domainID, assertion, signed (base64), createdAt}; nonce
//	               empty for a nonceless voucher (the last one is kept)
//	masa-log       serial NUL uint64be(seq) → masaLogRecordV1 {v, seq, serial,
//	               date, domainID, nonce (absent when nonceless), assertion};
//	               seq from the bucket's NextSequence, so a prefix scan is in
//	               insertion order (RFC 8995 §5.8.1 audit log)
//
// The masa-log bucket is append-only but grows only when a voucher is
// issued, never on a refusal, so it stays inside StateDigest.

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// MASA bucket names (see the comment at the top of this file).
const (
	bucketMASADevices  = "masa-devices"
	bucketMASAVouchers = "masa-vouchers"
	bucketMASALog      = "masa-log"
)

// MASA ownership errors. Both wrap ErrConflict.
var (
	// ErrNotOwner means the device is owned by another domain, or (under a
	// registry policy) by no domain at all.
	ErrNotOwner = fmt.Errorf("device is not owned by this domain: %w", ErrConflict)
	// ErrVoucherExists means a voucher for this serial and nonce was already
	// issued to another domain: the nonce is being replayed.
	ErrVoucherExists = fmt.Errorf("a voucher for this nonce was issued to another domain: %w", ErrConflict)
)

// MASADevice is a device the MASA knows, with its owner.
type MASADevice struct {
	// Serial is the device's X.520 serialNumber.
	Serial string
	// OwnerSPKIHash is the SHA-256 of the owning domain CA's
	// SubjectPublicKeyInfo; nil when the device is unowned.
	OwnerSPKIHash []byte
	// OwnerDomainID is the owner's RFC 8995 §5.8.2 domainID (informational).
	OwnerDomainID string
	// RegisteredAt is set by the store when the device is first written.
	RegisteredAt time.Time
	// ClaimedAt is when a first-claim voucher set the owner; zero otherwise.
	ClaimedAt time.Time
}

// Owned reports whether the device has an owner.
func (d MASADevice) Owned() bool { return len(d.OwnerSPKIHash) > 0 }

// MASAVoucher is a voucher the MASA issued.
type MASAVoucher struct {
	// Serial is the voucher's serial-number.
	Serial string
	// Nonce is the nonce exactly as the voucher-request carried it (its JSON
	// text); empty for a nonceless voucher.
	Nonce string
	// DomainID identifies the pinned domain (RFC 8995 §5.8.2).
	DomainID string
	// Assertion is the voucher's assertion.
	Assertion string
	// Signed is the signed voucher as sent.
	Signed []byte
	// CreatedAt is set by the store.
	CreatedAt time.Time
}

// MASALogEntry is one event of a device's RFC 8995 §5.8.1 audit log.
type MASALogEntry struct {
	// Seq orders the entries (store-wide, increasing).
	Seq uint64
	// Serial is the device the entry belongs to.
	Serial string
	// Date is when the voucher was issued (UTC, whole seconds).
	Date time.Time
	// DomainID is the domain the voucher pinned.
	DomainID string
	// Nonce is the voucher's nonce text; empty for a nonceless voucher
	// (JSON null on the wire).
	Nonce string
	// Assertion is the voucher's assertion.
	Assertion string
}

// MASAClaim says how RecordMASAVoucher treats the device's owner.
type MASAClaim int

const (
	// MASARequireOwner (registry policy) requires the device to exist and to
	// be owned by the voucher's domain: ErrNotFound or ErrNotOwner otherwise.
	MASARequireOwner MASAClaim = iota
	// MASAFirstClaim creates an unknown device, and gives an unowned one to
	// the voucher's domain; a device owned by another domain is ErrNotOwner.
	MASAFirstClaim
)

// MASAIssue is what RecordMASAVoucher stores.
type MASAIssue struct {
	// Voucher is the signed voucher; CreatedAt is ignored.
	Voucher MASAVoucher
	// OwnerSPKIHash is the SHA-256 of the pinned domain certificate's
	// SubjectPublicKeyInfo, compared with (or recorded as) the owner.
	OwnerSPKIHash []byte
	// Claim selects the ownership policy.
	Claim MASAClaim
}

// MASAIssued is the outcome of RecordMASAVoucher.
type MASAIssued struct {
	// Voucher is the voucher as stored: the one given, or, when Existing,
	// the one issued earlier for the same serial and nonce.
	Voucher MASAVoucher
	// Existing reports that an identical earlier request (same serial,
	// nonce and domain) was answered before: nothing but the audit events
	// was written, and Voucher is the earlier voucher.
	Existing bool
	// Events are the audit events as stored (with Seq and hashes), for the
	// caller's audit mirror.
	Events []Event
}

type masaDeviceRecordV1 struct {
	V             int       `json:"v"`
	Serial        string    `json:"serial"`
	OwnerSPKIHash string    `json:"ownerSPKIHash"`
	OwnerDomainID string    `json:"ownerDomainID,omitempty"`
	RegisteredAt  time.Time `json:"registeredAt"`
	ClaimedAt     time.Time `json:"claimedAt,omitzero"`
}

type masaVoucherRecordV1 struct {
	V         int       `json:"v"`
	Serial    string    `json:"serial"`
	Nonce     string    `json:"nonce,omitempty"`
	DomainID  string    `json:"domainID"`
	Assertion string    `json:"assertion"`
	Signed    []byte    `json:"signed"`
	CreatedAt time.Time `json:"createdAt"`
}

type masaLogRecordV1 struct {
	V         int       `json:"v"`
	Seq       uint64    `json:"seq"`
	Serial    string    `json:"serial"`
	Date      time.Time `json:"date"`
	DomainID  string    `json:"domainID"`
	Nonce     string    `json:"nonce,omitempty"`
	Assertion string    `json:"assertion"`
}

func (rec masaDeviceRecordV1) device() (MASADevice, error) {
	d := MASADevice{Serial: rec.Serial, OwnerDomainID: rec.OwnerDomainID, RegisteredAt: rec.RegisteredAt, ClaimedAt: rec.ClaimedAt}
	if rec.OwnerSPKIHash != "" {
		h, err := hex.DecodeString(rec.OwnerSPKIHash)
		if err != nil {
			return MASADevice{}, fmt.Errorf("device %q: owner hash: %w", rec.Serial, err)
		}
		d.OwnerSPKIHash = h
	}
	return d, nil
}

func (rec masaVoucherRecordV1) voucher() MASAVoucher {
	return MASAVoucher{Serial: rec.Serial, Nonce: rec.Nonce, DomainID: rec.DomainID, Assertion: rec.Assertion, Signed: rec.Signed, CreatedAt: rec.CreatedAt}
}

func (rec masaLogRecordV1) entry() MASALogEntry {
	return MASALogEntry{Seq: rec.Seq, Serial: rec.Serial, Date: rec.Date, DomainID: rec.DomainID, Nonce: rec.Nonce, Assertion: rec.Assertion}
}

func masaVoucherKey(serial, nonce string) []byte {
	return []byte(serial + "\x00" + nonce)
}

// masaLogPrefix is the key prefix of a device's log entries.
func masaLogPrefix(serial string) []byte {
	return []byte(serial + "\x00")
}

// masaBuckets creates the MASA buckets if they are missing. Only write
// transactions call it.
func masaBuckets(tx *bolt.Tx) error {
	for _, name := range []string{bucketMASADevices, bucketMASAVouchers, bucketMASALog} {
		if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	return nil
}

// masaGet is get for a bucket that may not exist yet (ErrNotFound then).
func masaGet(tx *bolt.Tx, name string, key []byte, into any) error {
	if tx.Bucket([]byte(name)) == nil {
		return ErrNotFound
	}
	return get(tx, name, key, into)
}

// RegisterMASADevice records d.Serial with owner d.OwnerSPKIHash (nil:
// unowned), replacing any earlier owner: it is the manufacturer's
// sales-channel integration, the authority on ownership under the registry
// policy. RegisteredAt is kept from the first registration; ClaimedAt is
// cleared.
func (db *DB) RegisterMASADevice(ctx context.Context, d MASADevice) error {
	if err := validateKeyPart("serial", d.Serial, false); err != nil {
		return fmt.Errorf("register masa device: %w", err)
	}
	if n := len(d.OwnerSPKIHash); n != 0 && n != 32 {
		return fmt.Errorf("register masa device %q: owner hash is %d bytes, want 32: %w", d.Serial, n, ErrInvalid)
	}
	now := db.now()
	rec := masaDeviceRecordV1{V: recordV1, Serial: d.Serial, OwnerSPKIHash: hex.EncodeToString(d.OwnerSPKIHash), OwnerDomainID: d.OwnerDomainID, RegisteredAt: now}
	if !d.Owned() {
		rec.OwnerDomainID = ""
	}
	err := db.update(ctx, func(tx *bolt.Tx) error {
		if err := masaBuckets(tx); err != nil {
			return err
		}
		r := rec // a re-run starts from the same value
		var old masaDeviceRecordV1
		switch err := get(tx, bucketMASADevices, []byte(r.Serial), &old); {
		case err == nil:
			r.RegisteredAt = old.RegisteredAt
		case !errors.Is(err, ErrNotFound):
			return err
		}
		return put(tx, bucketMASADevices, []byte(r.Serial), r)
	})
	if err != nil {
		return fmt.Errorf("register masa device %q: %w", d.Serial, err)
	}
	return nil
}

// MASADevice returns the device with this serial, or ErrNotFound.
func (db *DB) MASADevice(ctx context.Context, serial string) (MASADevice, error) {
	if err := validateKeyPart("serial", serial, false); err != nil {
		return MASADevice{}, fmt.Errorf("masa device: %w", err)
	}
	var rec masaDeviceRecordV1
	err := db.view(ctx, func(tx *bolt.Tx) error {
		return masaGet(tx, bucketMASADevices, []byte(serial), &rec)
	})
	if err != nil {
		return MASADevice{}, fmt.Errorf("masa device %q: %w", serial, err)
	}
	return rec.device()
}

// MASAVoucher returns the voucher issued for (serial, nonce), or
// ErrNotFound. An empty nonce asks for the last nonceless voucher.
func (db *DB) MASAVoucher(ctx context.Context, serial, nonce string) (MASAVoucher, error) {
	if err := validateKeyPart("serial", serial, false); err != nil {
		return MASAVoucher{}, fmt.Errorf("masa voucher: %w", err)
	}
	if err := validateKeyPart("nonce", nonce, true); err != nil {
		return MASAVoucher{}, fmt.Errorf("masa voucher: %w", err)
	}
	var rec masaVoucherRecordV1
	err := db.view(ctx, func(tx *bolt.Tx) error {
		return masaGet(tx, bucketMASAVouchers, masaVoucherKey(serial, nonce), &rec)
	})
	if err != nil {
		return MASAVoucher{}, fmt.Errorf("masa voucher %q nonce %q: %w", serial, nonce, err)
	}
	return rec.voucher(), nil
}

// RecordMASAVoucher is the MASA's one promise: in a single durable
// transaction it applies the ownership policy (iss.Claim), stores the
// voucher, appends the device's audit-log entry (RFC 8995 §5.6: "every
// issued voucher MUST be logged") and appends the audit events. Nothing is
// written when it fails.
//
// A nonced voucher whose (serial, nonce) was already issued to the same
// domain is not stored again: the earlier voucher is returned with
// Existing set, no log entry is added, and only the audit events are
// written, so a retried request is logged once. Issued to another domain,
// it fails with ErrVoucherExists. The ownership failures are ErrNotFound
// (unknown device under MASARequireOwner) and ErrNotOwner.
func (db *DB) RecordMASAVoucher(ctx context.Context, iss MASAIssue, audit ...Event) (MASAIssued, error) {
	v := iss.Voucher
	if err := validateKeyPart("serial", v.Serial, false); err != nil {
		return MASAIssued{}, fmt.Errorf("record masa voucher: %w", err)
	}
	if err := validateKeyPart("nonce", v.Nonce, true); err != nil {
		return MASAIssued{}, fmt.Errorf("record masa voucher %q: %w", v.Serial, err)
	}
	if len(iss.OwnerSPKIHash) != 32 || v.DomainID == "" || v.Assertion == "" || len(v.Signed) == 0 {
		return MASAIssued{}, fmt.Errorf("record masa voucher %q: owner hash, domainID, assertion and voucher are required: %w", v.Serial, ErrInvalid)
	}
	if iss.Claim != MASARequireOwner && iss.Claim != MASAFirstClaim {
		return MASAIssued{}, fmt.Errorf("record masa voucher %q: unknown claim policy %d: %w", v.Serial, iss.Claim, ErrInvalid)
	}
	events, err := db.prepareEvents(audit)
	if err != nil {
		return MASAIssued{}, fmt.Errorf("record masa voucher %q: %w", v.Serial, err)
	}
	now := db.now()
	owner := hex.EncodeToString(iss.OwnerSPKIHash)
	vrec := masaVoucherRecordV1{
		V: recordV1, Serial: v.Serial, Nonce: v.Nonce, DomainID: v.DomainID, Assertion: v.Assertion,
		Signed: bytes.Clone(v.Signed), CreatedAt: now,
	}
	key := masaVoucherKey(v.Serial, v.Nonce)
	var out MASAIssued
	err = db.update(ctx, func(tx *bolt.Tx) error {
		out = MASAIssued{} // a re-run starts afresh
		if err := masaBuckets(tx); err != nil {
			return err
		}
		dev, err := masaClaim(tx, iss.Claim, v.Serial, owner, v.DomainID, now)
		if err != nil {
			return err
		}
		if v.Nonce != "" {
			var old masaVoucherRecordV1
			switch err := get(tx, bucketMASAVouchers, key, &old); {
			case err == nil:
				if old.DomainID != vrec.DomainID {
					return ErrVoucherExists
				}
				out.Voucher, out.Existing = old.voucher(), true
			case !errors.Is(err, ErrNotFound):
				return err
			}
		}
		if !out.Existing {
			if err := put(tx, bucketMASADevices, []byte(dev.Serial), dev); err != nil {
				return err
			}
			if err := put(tx, bucketMASAVouchers, key, vrec); err != nil {
				return err
			}
			b := tx.Bucket([]byte(bucketMASALog))
			seq, err := b.NextSequence()
			if err != nil {
				return fmt.Errorf("masa log sequence: %w", err)
			}
			lrec := masaLogRecordV1{V: recordV1, Seq: seq, Serial: v.Serial, Date: now, DomainID: v.DomainID, Nonce: v.Nonce, Assertion: v.Assertion}
			if err := put(tx, bucketMASALog, append(masaLogPrefix(v.Serial), itob(seq)...), lrec); err != nil {
				return err
			}
			out.Voucher = vrec.voucher()
		}
		if err := appendEvents(tx, events); err != nil {
			return err
		}
		stored, err := lastEvents(tx, len(events))
		out.Events = stored
		return err
	})
	if err != nil {
		return MASAIssued{}, fmt.Errorf("record masa voucher %q nonce %q: %w", v.Serial, v.Nonce, err)
	}
	out.Voucher.Signed = bytes.Clone(out.Voucher.Signed)
	return out, nil
}

// masaClaim applies the ownership policy to the device serial inside tx and
// returns the record to store (unchanged when the owner already matches).
func masaClaim(tx *bolt.Tx, claim MASAClaim, serial, owner, domainID string, now time.Time) (masaDeviceRecordV1, error) {
	var dev masaDeviceRecordV1
	err := get(tx, bucketMASADevices, []byte(serial), &dev)
	switch {
	case errors.Is(err, ErrNotFound) && claim == MASAFirstClaim:
		return masaDeviceRecordV1{V: recordV1, Serial: serial, OwnerSPKIHash: owner, OwnerDomainID: domainID, RegisteredAt: now, ClaimedAt: now}, nil
	case err != nil:
		return masaDeviceRecordV1{}, fmt.Errorf("device: %w", err)
	}
	switch {
	case dev.OwnerSPKIHash == owner:
		return dev, nil
	case dev.OwnerSPKIHash == "" && claim == MASAFirstClaim:
		dev.OwnerSPKIHash, dev.OwnerDomainID, dev.ClaimedAt = owner, domainID, now
		return dev, nil
	}
	return masaDeviceRecordV1{}, ErrNotOwner
}

// lastEvents returns the last n audit events of tx, in order.
func lastEvents(tx *bolt.Tx, n int) ([]Event, error) {
	if n == 0 {
		return nil, nil
	}
	out := make([]Event, n)
	c := tx.Bucket([]byte(bucketAudit)).Cursor()
	k, v := c.Last()
	for i := n - 1; i >= 0; i-- {
		if k == nil {
			return nil, fmt.Errorf("audit log holds fewer than %d events", n)
		}
		var rec auditRecordV1
		if err := decodeRecord(v, &rec); err != nil {
			return nil, fmt.Errorf("audit event %x: %w", k, err)
		}
		e, err := rec.event()
		if err != nil {
			return nil, fmt.Errorf("audit event %x: %w", k, err)
		}
		out[i] = e
		k, v = c.Prev()
	}
	return out, nil
}

// MASAAuditLog returns the device's audit-log entries in order; an unknown
// device has none (no error).
func (db *DB) MASAAuditLog(ctx context.Context, serial string) ([]MASALogEntry, error) {
	if err := validateKeyPart("serial", serial, false); err != nil {
		return nil, fmt.Errorf("masa audit log: %w", err)
	}
	out, err := db.masaLog(ctx, masaLogPrefix(serial))
	if err != nil {
		return nil, fmt.Errorf("masa audit log %q: %w", serial, err)
	}
	return out, nil
}

// MASAAuditLogs returns every device's audit-log entries, ordered by serial
// and then by Seq (for reconciliation and test counters).
func (db *DB) MASAAuditLogs(ctx context.Context) ([]MASALogEntry, error) {
	out, err := db.masaLog(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("masa audit logs: %w", err)
	}
	return out, nil
}

func (db *DB) masaLog(ctx context.Context, prefix []byte) ([]MASALogEntry, error) {
	var out []MASALogEntry
	err := db.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketMASALog))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var rec masaLogRecordV1
			if err := decodeRecord(v, &rec); err != nil {
				return fmt.Errorf("log entry %x: %w", k, err)
			}
			out = append(out, rec.entry())
		}
		return nil
	})
	return out, err
}
