package store

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"time"

	bolt "go.etcd.io/bbolt"
)

// maxSerialOctets is RFC 5280 §4.1.2.2's limit on a serial number.
const maxSerialOctets = 20

// serialKey is the storage key of a certificate serial: its big-endian
// magnitude. The serial must be positive and at most 20 octets.
func serialKey(s *big.Int) ([]byte, error) {
	if s == nil || s.Sign() <= 0 {
		return nil, fmt.Errorf("serial must be positive: %w", ErrInvalid)
	}
	b := s.Bytes()
	// DER encodes a positive integer with a leading zero octet when the
	// top bit is set; count that octet against the limit too.
	if n := len(b) + int(b[0]>>7); n > maxSerialOctets {
		return nil, fmt.Errorf("serial is %d octets in DER, more than %d: %w", n, maxSerialOctets, ErrInvalid)
	}
	return b, nil
}

// serialHex formats a serial in lower-case hex for records and messages.
func serialHex(s *big.Int) string {
	if s == nil {
		return "<nil>"
	}
	return hex.EncodeToString(s.Bytes())
}

func parseSerialHex(h string) (*big.Int, error) {
	b, err := hex.DecodeString(h)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("serial %q is not hex", h)
	}
	return new(big.Int).SetBytes(b), nil
}

// IntentStatus is the state of an issuance intent.
type IntentStatus string

// Intent statuses.
const (
	// IntentOpen: written before signing; not yet completed or abandoned.
	IntentOpen IntentStatus = "open"
	// IntentCompleted: the certificate was stored in the same transaction.
	IntentCompleted IntentStatus = "completed"
	// IntentAbandoned: closed without a certificate. The serial stays
	// reserved forever.
	IntentAbandoned IntentStatus = "abandoned"
)

// Intent is the durable promise, written before signing, that a serial is
// about to be used for a device (DESIGN.md, issuance protocol step 1).
type Intent struct {
	// Serial is the certificate serial reserved by the intent.
	Serial *big.Int
	// Device is the device the certificate is for.
	Device DeviceKey
	// TBSHash is the SHA-256 of the TBSCertificate that will be signed.
	TBSHash [32]byte
	// Generation is the ID of the CA generation that signs it.
	Generation string
	// Status is set by the store.
	Status IntentStatus
	// Reason says why an intent was abandoned.
	Reason string
	// CreatedAt and ResolvedAt are set by the store (ResolvedAt is zero
	// while open).
	CreatedAt, ResolvedAt time.Time
}

// intentRecordV1 is the stored form of Intent.
type intentRecordV1 struct {
	V            int       `json:"v"`
	Serial       string    `json:"serial"`
	Issuer       string    `json:"issuer"`
	DeviceSerial string    `json:"deviceSerial"`
	TBSHash      string    `json:"tbsHash"`
	Generation   string    `json:"generation"`
	Status       string    `json:"status"`
	Reason       string    `json:"reason,omitempty"`
	CreatedAt    time.Time `json:"createdAt"`
	ResolvedAt   time.Time `json:"resolvedAt,omitzero"`
}

func (rec intentRecordV1) intent() (Intent, error) {
	s, err := parseSerialHex(rec.Serial)
	if err != nil {
		return Intent{}, err
	}
	h, err := decodeHash(rec.TBSHash)
	if err != nil {
		return Intent{}, fmt.Errorf("intent %s: %w", rec.Serial, err)
	}
	return Intent{
		Serial:     s,
		Device:     DeviceKey{Issuer: rec.Issuer, Serial: rec.DeviceSerial},
		TBSHash:    h,
		Generation: rec.Generation,
		Status:     IntentStatus(rec.Status),
		Reason:     rec.Reason,
		CreatedAt:  rec.CreatedAt,
		ResolvedAt: rec.ResolvedAt,
	}, nil
}

// CertStatus is the status of an issued certificate.
type CertStatus string

// Certificate statuses.
const (
	// CertIssued: issued and not revoked.
	CertIssued CertStatus = "issued"
	// CertRevoked: revoked; RevokedAt and RevocationReason say when and why.
	CertRevoked CertStatus = "revoked"
	// CertSuperseded: replaced by a re-enrolment of its device
	// (SupersededBy, SupersededAt). Not a revocation: the certificate stays
	// valid until its NotAfter and is on no CRL; it may still be revoked,
	// which makes it CertRevoked.
	CertSuperseded CertStatus = "superseded"
)

// Certificate is an issued certificate (an LDevID).
type Certificate struct {
	// Serial is the certificate serial.
	Serial *big.Int
	// DER is the certificate exactly as returned to the pledge.
	DER []byte
	// Device is the device it was issued to.
	Device DeviceKey
	// Generation is the CA generation that signed it.
	Generation string
	// NotAfter is the certificate's NotAfter.
	NotAfter time.Time
	// IssuedAt is when the store recorded it.
	IssuedAt time.Time
	// Status is issued or revoked.
	Status CertStatus
	// RevokedAt is when it was revoked; zero if not.
	RevokedAt time.Time
	// RevocationReason is the RFC 5280 CRLReason code (0 unspecified,
	// 1 keyCompromise, 4 superseded, …); meaningful only when revoked.
	RevocationReason int
	// SupersededBy is the serial of the certificate that superseded this
	// one (status superseded, or revoked after it); nil if none.
	SupersededBy *big.Int
	// SupersededAt is when it was superseded; zero if not.
	SupersededAt time.Time
}

// certificateRecordV1 is the stored form of Certificate.
type certificateRecordV1 struct {
	V                int       `json:"v"`
	Serial           string    `json:"serial"`
	DER              []byte    `json:"der"`
	Issuer           string    `json:"issuer"`
	DeviceSerial     string    `json:"deviceSerial"`
	Generation       string    `json:"generation"`
	NotAfter         time.Time `json:"notAfter"`
	IssuedAt         time.Time `json:"issuedAt"`
	Status           string    `json:"status"`
	RevokedAt        time.Time `json:"revokedAt,omitzero"`
	RevocationReason int       `json:"revocationReason,omitempty"`
	SupersededBy     string    `json:"supersededBy,omitempty"`
	SupersededAt     time.Time `json:"supersededAt,omitzero"`
}

func (rec certificateRecordV1) certificate() (Certificate, error) {
	s, err := parseSerialHex(rec.Serial)
	if err != nil {
		return Certificate{}, err
	}
	c := Certificate{
		Serial:           s,
		DER:              rec.DER, // decoded from JSON: a fresh slice
		Device:           DeviceKey{Issuer: rec.Issuer, Serial: rec.DeviceSerial},
		Generation:       rec.Generation,
		NotAfter:         rec.NotAfter,
		IssuedAt:         rec.IssuedAt,
		Status:           CertStatus(rec.Status),
		RevokedAt:        rec.RevokedAt,
		RevocationReason: rec.RevocationReason,
		SupersededAt:     rec.SupersededAt,
	}
	if rec.SupersededBy != "" {
		if c.SupersededBy, err = parseSerialHex(rec.SupersededBy); err != nil {
			return Certificate{}, fmt.Errorf("certificate %s: superseded by: %w", rec.Serial, err)
		}
	}
	return c, nil
}

// certByDeviceKey is the index key device NUL serial.
func certByDeviceKey(d DeviceKey, serial []byte) []byte {
	k := append(d.bytes(), 0)
	return append(k, serial...)
}

// serialUsed reports whether the serial appears as an intent (any status)
// or a certificate.
func serialUsed(tx *bolt.Tx, key []byte) bool {
	return tx.Bucket([]byte(bucketIntents)).Get(key) != nil ||
		tx.Bucket([]byte(bucketCertificates)).Get(key) != nil
}

// BeginIssuance durably records the intent to issue in.Serial to in.Device
// (step 1 of the issuance protocol), before anything is signed. It fails
// with ErrSerialExists if the serial was ever used, and with ErrConflict if
// the device exists in a status that cannot become enrolled (denied,
// blocked, pending approval). audit events (the issue-intent event) are
// appended in the same transaction.
func (db *DB) BeginIssuance(ctx context.Context, in Intent, audit ...Event) error {
	key, err := serialKey(in.Serial)
	if err != nil {
		return fmt.Errorf("begin issuance: %w", err)
	}
	if err := in.Device.validate(); err != nil {
		return fmt.Errorf("begin issuance %s: %w", serialHex(in.Serial), err)
	}
	if in.Generation == "" {
		return fmt.Errorf("begin issuance %s: empty CA generation: %w", serialHex(in.Serial), ErrInvalid)
	}
	events, err := db.prepareEvents(audit)
	if err != nil {
		return fmt.Errorf("begin issuance %s: %w", serialHex(in.Serial), err)
	}
	rec := intentRecordV1{
		V:            1,
		Serial:       serialHex(in.Serial),
		Issuer:       in.Device.Issuer,
		DeviceSerial: in.Device.Serial,
		TBSHash:      hex.EncodeToString(in.TBSHash[:]),
		Generation:   in.Generation,
		Status:       string(IntentOpen),
		CreatedAt:    db.now(),
	}
	err = db.update(ctx, func(tx *bolt.Tx) error {
		if serialUsed(tx, key) {
			return ErrSerialExists
		}
		dev, err := loadDevice(tx, in.Device)
		switch {
		case errors.Is(err, ErrNotFound):
			// EST without BRSKI: CompleteIssuance creates the record.
		case err != nil:
			return err
		case !CanTransition(DeviceStatus(dev.Status), DeviceEnrolled):
			return fmt.Errorf("device %s is %s: %w", in.Device, dev.Status, ErrConflict)
		}
		if err := put(tx, bucketIntents, key, rec); err != nil {
			return err
		}
		if err := tx.Bucket([]byte(bucketOpenIntents)).Put(key, nil); err != nil {
			return err
		}
		return appendEvents(tx, events)
	})
	if err != nil {
		return fmt.Errorf("begin issuance %s: %w", serialHex(in.Serial), err)
	}
	return nil
}

// Completion is what CompleteIssuance stores once the certificate is
// signed.
type Completion struct {
	// Serial is the serial reserved by BeginIssuance.
	Serial *big.Int
	// DER is the signed certificate, stored byte for byte.
	DER []byte
	// Device must equal the intent's device.
	Device DeviceKey
	// NotAfter is the certificate's NotAfter.
	NotAfter time.Time
	// KeyHash, when not zero, is KeyHashOf the certificate's
	// SubjectPublicKeyInfo, recorded in the key-uniqueness index
	// (store/est.go) in the same transaction.
	KeyHash KeyHash
	// Supersede marks every other certificate of the device that is still
	// CertIssued as CertSuperseded by this one, in the same transaction,
	// with one EventCertSuperseded each (a re-enrolment: one logical LDevID
	// per device, reliability L8).
	Supersede bool
}

// CompleteIssuance stores the signed certificate (and indexes it under the
// device, which lists it in Device.LDevIDs), moves the device to enrolled
// (creating its record if there was none), appends audit (the issue-success event, required: reliability
// C7) and closes the intent, all in one durable transaction (step 3 of the
// issuance protocol). The caller responds to the pledge only after it
// returns nil.
//
// It fails with ErrNotFound without an intent, with ErrConflict if the
// intent was abandoned, names another device, or the device can no longer
// be enrolled. Completing an already completed intent with the same DER
// succeeds without writing anything (a retried call).
func (db *DB) CompleteIssuance(ctx context.Context, c Completion, audit ...Event) error {
	key, err := serialKey(c.Serial)
	if err != nil {
		return fmt.Errorf("complete issuance: %w", err)
	}
	sh := serialHex(c.Serial)
	if len(c.DER) == 0 {
		return fmt.Errorf("complete issuance %s: empty certificate: %w", sh, ErrInvalid)
	}
	if len(audit) == 0 {
		return fmt.Errorf("complete issuance %s: no audit event (issue-success must commit with the certificate): %w", sh, ErrInvalid)
	}
	events, err := db.prepareEvents(audit)
	if err != nil {
		return fmt.Errorf("complete issuance %s: %w", sh, err)
	}
	now := db.now()
	der := bytes.Clone(c.DER)
	notAfter := c.NotAfter.UTC().Truncate(time.Second)
	err = db.update(ctx, func(tx *bolt.Tx) error {
		var in intentRecordV1
		if err := get(tx, bucketIntents, key, &in); err != nil {
			return fmt.Errorf("intent: %w", err)
		}
		if in.Issuer != c.Device.Issuer || in.DeviceSerial != c.Device.Serial {
			return fmt.Errorf("intent is for device %s/%s, not %s: %w", in.Issuer, in.DeviceSerial, c.Device, ErrConflict)
		}
		switch IntentStatus(in.Status) {
		case IntentOpen:
		case IntentCompleted:
			var cert certificateRecordV1
			if err := get(tx, bucketCertificates, key, &cert); err == nil && bytes.Equal(cert.DER, der) {
				return nil
			}
			return fmt.Errorf("intent already completed with another certificate: %w", ErrConflict)
		default:
			return fmt.Errorf("intent is %s; its serial must not be used: %w", in.Status, ErrConflict)
		}
		if tx.Bucket([]byte(bucketCertificates)).Get(key) != nil {
			return ErrSerialExists
		}
		dev, err := loadDevice(tx, c.Device)
		switch {
		case errors.Is(err, ErrNotFound):
			dev = deviceToRecord(Device{Key: c.Device, Status: DeviceNew, CreatedAt: now})
		case err != nil:
			return err
		}
		if err := transitionDevice(tx, &dev, DeviceEnrolled, "", now); err != nil {
			return err
		}
		cert := certificateRecordV1{
			V: 1, Serial: sh, DER: der, Issuer: c.Device.Issuer, DeviceSerial: c.Device.Serial,
			Generation: in.Generation, NotAfter: notAfter, IssuedAt: now, Status: string(CertIssued),
		}
		if err := put(tx, bucketCertificates, key, cert); err != nil {
			return err
		}
		if err := tx.Bucket([]byte(bucketCertsByDevice)).Put(certByDeviceKey(c.Device, key), nil); err != nil {
			return err
		}
		if err := indexCertificateKey(tx, c.KeyHash, c.Device); err != nil {
			return err
		}
		if c.Supersede {
			if err := supersede(tx, c.Device, key, sh, now); err != nil {
				return err
			}
		}
		in.Status, in.ResolvedAt = string(IntentCompleted), now
		if err := put(tx, bucketIntents, key, in); err != nil {
			return err
		}
		if err := tx.Bucket([]byte(bucketOpenIntents)).Delete(key); err != nil {
			return err
		}
		return appendEvents(tx, events)
	})
	if err != nil {
		return fmt.Errorf("complete issuance %s: %w", sh, err)
	}
	return nil
}

// supersede marks device's CertIssued certificates other than the one with
// serial key (hex by) CertSuperseded by it, each with an
// EventCertSuperseded event.
func supersede(tx *bolt.Tx, device DeviceKey, key []byte, by string, now time.Time) error {
	prefix := append(device.bytes(), 0)
	c := tx.Bucket([]byte(bucketCertsByDevice)).Cursor()
	var old [][]byte
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if serial := k[len(prefix):]; !bytes.Equal(serial, key) {
			old = append(old, bytes.Clone(serial))
		}
	}
	for _, serial := range old {
		// The status alone first: a device that renews often has a long
		// history of certificates already superseded, whose DER need not
		// be decoded again.
		var st struct {
			V      int    `json:"v"` // so decodeRecord parses once
			Status string `json:"status"`
		}
		if err := get(tx, bucketCertificates, serial, &st); err != nil {
			return fmt.Errorf("indexed certificate %x: %w", serial, err)
		}
		if CertStatus(st.Status) != CertIssued {
			continue
		}
		var rec certificateRecordV1
		if err := get(tx, bucketCertificates, serial, &rec); err != nil {
			return fmt.Errorf("indexed certificate %x: %w", serial, err)
		}
		rec.Status, rec.SupersededBy, rec.SupersededAt = string(CertSuperseded), by, now
		if err := put(tx, bucketCertificates, serial, rec); err != nil {
			return err
		}
		err := appendEvents(tx, []Event{{Time: now, Type: EventCertSuperseded, Fields: map[string]string{
			"cert_serial": rec.Serial, "superseded_by": by, "device": device.String(),
		}}})
		if err != nil {
			return err
		}
	}
	return nil
}

// abandonIntent marks the open intent in rec abandoned and appends an
// EventIssueAbandoned event.
func abandonIntent(tx *bolt.Tx, key []byte, rec intentRecordV1, reason string, now time.Time) error {
	rec.Status, rec.Reason, rec.ResolvedAt = string(IntentAbandoned), reason, now
	if err := put(tx, bucketIntents, key, rec); err != nil {
		return err
	}
	if err := tx.Bucket([]byte(bucketOpenIntents)).Delete(key); err != nil {
		return err
	}
	return appendEvents(tx, []Event{{
		Time: now,
		Type: EventIssueAbandoned,
		Fields: map[string]string{
			"cert_serial": rec.Serial,
			"device":      rec.Issuer + "/" + rec.DeviceSerial,
			"reason":      reason,
		},
	}})
}

// AbandonIssuance closes an open intent without a certificate (signing or
// linting failed, the device was blocked meanwhile…) and appends an
// EventIssueAbandoned event. The serial stays reserved forever. Abandoning
// an abandoned intent is a no-op; a completed one is ErrConflict; an
// unknown serial is ErrNotFound.
func (db *DB) AbandonIssuance(ctx context.Context, serial *big.Int, reason string) error {
	key, err := serialKey(serial)
	if err != nil {
		return fmt.Errorf("abandon issuance: %w", err)
	}
	now := db.now()
	err = db.update(ctx, func(tx *bolt.Tx) error {
		var rec intentRecordV1
		if err := get(tx, bucketIntents, key, &rec); err != nil {
			return err
		}
		switch IntentStatus(rec.Status) {
		case IntentAbandoned:
			return nil
		case IntentOpen:
			return abandonIntent(tx, key, rec, reason, now)
		default:
			return fmt.Errorf("intent is %s: %w", rec.Status, ErrConflict)
		}
	})
	if err != nil {
		return fmt.Errorf("abandon issuance %s: %w", serialHex(serial), err)
	}
	return nil
}

// Intent returns the intent for serial, whatever its status, or
// ErrNotFound.
func (db *DB) Intent(ctx context.Context, serial *big.Int) (Intent, error) {
	key, err := serialKey(serial)
	if err != nil {
		return Intent{}, fmt.Errorf("intent: %w", err)
	}
	var rec intentRecordV1
	err = db.view(ctx, func(tx *bolt.Tx) error {
		return get(tx, bucketIntents, key, &rec)
	})
	if err != nil {
		return Intent{}, fmt.Errorf("intent %s: %w", serialHex(serial), err)
	}
	return rec.intent()
}

// OpenIntents lists the intents neither completed nor abandoned, in serial
// order.
func (db *DB) OpenIntents(ctx context.Context) ([]Intent, error) {
	var out []Intent
	err := db.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketOpenIntents)).ForEach(func(k, _ []byte) error {
			var rec intentRecordV1
			if err := get(tx, bucketIntents, k, &rec); err != nil {
				return fmt.Errorf("open intent %x: %w", k, err)
			}
			in, err := rec.intent()
			if err != nil {
				return err
			}
			out = append(out, in)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("open intents: %w", err)
	}
	return out, nil
}

// Resolved counts what ResolveIntents did.
type Resolved struct {
	// Completed intents had their certificate stored already.
	Completed int
	// Abandoned intents had none; their serials stay reserved.
	Abandoned int
}

// ResolveIntents closes every open intent, in one durable transaction:
// completed if its certificate is present, abandoned otherwise (with an
// EventIssueAbandoned event). Run it at start-up, before listeners open and
// before any BeginIssuance: an intent opened concurrently would be
// abandoned under its caller.
func (db *DB) ResolveIntents(ctx context.Context) (Resolved, error) {
	now := db.now()
	var res Resolved
	err := db.update(ctx, func(tx *bolt.Tx) error {
		res = Resolved{}
		open := tx.Bucket([]byte(bucketOpenIntents))
		var keys [][]byte
		if err := open.ForEach(func(k, _ []byte) error {
			keys = append(keys, bytes.Clone(k))
			return nil
		}); err != nil {
			return err
		}
		for _, key := range keys {
			var rec intentRecordV1
			if err := get(tx, bucketIntents, key, &rec); err != nil {
				return fmt.Errorf("open intent %x: %w", key, err)
			}
			if tx.Bucket([]byte(bucketCertificates)).Get(key) == nil {
				if err := abandonIntent(tx, key, rec, "open at start-up: not signed or not stored before a restart", now); err != nil {
					return err
				}
				res.Abandoned++
				continue
			}
			rec.Status, rec.ResolvedAt = string(IntentCompleted), now
			if err := put(tx, bucketIntents, key, rec); err != nil {
				return err
			}
			if err := open.Delete(key); err != nil {
				return err
			}
			res.Completed++
		}
		return nil
	})
	if err != nil {
		return Resolved{}, fmt.Errorf("resolve intents: %w", err)
	}
	return res, nil
}

// Certificate returns the certificate with serial, or ErrNotFound.
func (db *DB) Certificate(ctx context.Context, serial *big.Int) (Certificate, error) {
	key, err := serialKey(serial)
	if err != nil {
		return Certificate{}, fmt.Errorf("certificate: %w", err)
	}
	var rec certificateRecordV1
	err = db.view(ctx, func(tx *bolt.Tx) error {
		return get(tx, bucketCertificates, key, &rec)
	})
	if err != nil {
		return Certificate{}, fmt.Errorf("certificate %s: %w", serialHex(serial), err)
	}
	return rec.certificate()
}

// CertificatesFor returns the certificates issued to device, in serial
// order (none is not an error).
func (db *DB) CertificatesFor(ctx context.Context, device DeviceKey) ([]Certificate, error) {
	if err := device.validate(); err != nil {
		return nil, fmt.Errorf("certificates for device: %w", err)
	}
	prefix := append(device.bytes(), 0)
	var out []Certificate
	err := db.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucketCertsByDevice)).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			var rec certificateRecordV1
			if err := get(tx, bucketCertificates, k[len(prefix):], &rec); err != nil {
				return fmt.Errorf("indexed certificate %x: %w", k[len(prefix):], err)
			}
			cert, err := rec.certificate()
			if err != nil {
				return err
			}
			out = append(out, cert)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("certificates for device %s: %w", device, err)
	}
	return out, nil
}

// Revoke marks the certificate revoked with an RFC 5280 CRLReason code
// (0–10 except 7) and appends audit in the same transaction. ErrNotFound
// for an unknown serial, ErrConflict if already revoked.
func (db *DB) Revoke(ctx context.Context, serial *big.Int, reason int, audit ...Event) error {
	key, err := serialKey(serial)
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	if reason < 0 || reason > 10 || reason == 7 {
		return fmt.Errorf("revoke %s: reason code %d: %w", serialHex(serial), reason, ErrInvalid)
	}
	events, err := db.prepareEvents(audit)
	if err != nil {
		return fmt.Errorf("revoke %s: %w", serialHex(serial), err)
	}
	now := db.now()
	err = db.update(ctx, func(tx *bolt.Tx) error {
		var rec certificateRecordV1
		if err := get(tx, bucketCertificates, key, &rec); err != nil {
			return err
		}
		if CertStatus(rec.Status) == CertRevoked {
			return fmt.Errorf("already revoked: %w", ErrConflict)
		}
		rec.Status, rec.RevokedAt, rec.RevocationReason = string(CertRevoked), now, reason
		if err := put(tx, bucketCertificates, key, rec); err != nil {
			return err
		}
		return appendEvents(tx, events)
	})
	if err != nil {
		return fmt.Errorf("revoke %s: %w", serialHex(serial), err)
	}
	return nil
}
