package store

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// maxKeyPart bounds each part of a DeviceKey (and a nonce).
const maxKeyPart = 512

// DeviceKey identifies a pledge across manufacturers: the IDevID issuer's
// key identifier (RFC 8366bis idevid-issuer: the AuthorityKeyIdentifier, or
// a fingerprint of the issuer when there is none) and the X.520
// serialNumber. Neither part may be empty or contain a NUL byte.
type DeviceKey struct {
	// Issuer identifies the IDevID issuer, for example the hex of its key
	// identifier. The store compares it byte for byte.
	Issuer string
	// Serial is the pledge's serial-number (X.520 serialNumber of the IDevID).
	Serial string
}

// String returns "issuer/serial", for messages and audit fields.
func (k DeviceKey) String() string { return k.Issuer + "/" + k.Serial }

// validate reports why k cannot be a key.
func (k DeviceKey) validate() error {
	if err := validateKeyPart("issuer", k.Issuer, false); err != nil {
		return fmt.Errorf("device key: %w", err)
	}
	if err := validateKeyPart("serial", k.Serial, false); err != nil {
		return fmt.Errorf("device key: %w", err)
	}
	return nil
}

// validateKeyPart reports why s cannot be one NUL-separated part of a
// storage key: empty (unless allowEmpty), longer than maxKeyPart, or
// holding a NUL.
func validateKeyPart(what, s string, allowEmpty bool) error {
	switch {
	case s == "" && !allowEmpty:
		return fmt.Errorf("empty %s: %w", what, ErrInvalid)
	case len(s) > maxKeyPart:
		return fmt.Errorf("%s longer than %d bytes: %w", what, maxKeyPart, ErrInvalid)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("NUL in %s: %w", what, ErrInvalid)
	}
	return nil
}

// bytes is the storage key: issuer NUL serial.
func (k DeviceKey) bytes() []byte {
	return []byte(k.Issuer + "\x00" + k.Serial)
}

// DeviceStatus is where a pledge stands in onboarding.
type DeviceStatus string

// Device statuses. Allowed moves are in deviceTransitions.
const (
	// DeviceNew: seen (IDevID verified), no decision yet.
	DeviceNew DeviceStatus = "new"
	// DevicePendingApproval: waiting for an operator (policy said "ask").
	DevicePendingApproval DeviceStatus = "pending-approval"
	// DeviceApproved: an operator approved it; the next voucher request proceeds.
	DeviceApproved DeviceStatus = "approved"
	// DeviceVoucherIssued: a voucher was obtained from the MASA and stored.
	DeviceVoucherIssued DeviceStatus = "voucher-issued"
	// DeviceEnrolled: an LDevID was issued and persisted.
	DeviceEnrolled DeviceStatus = "enrolled"
	// DeviceDenied: an operator or the policy refused it.
	DeviceDenied DeviceStatus = "denied"
	// DeviceBlocked: refused everything, for example after an audit-log
	// policy failure (RFC 8995 §5.8.3); only an operator unblocks it.
	DeviceBlocked DeviceStatus = "blocked"
)

// IsValid reports whether s is one of the statuses above.
func (s DeviceStatus) IsValid() bool {
	_, ok := deviceTransitions[s]
	return ok
}

// deviceTransitions[from] lists the statuses a device may move to.
// Re-entering voucher-issued (a new nonce) and enrolled (re-enrollment) is
// allowed; a denied or blocked device gets no voucher or certificate until
// an operator moves it back.
var deviceTransitions = map[DeviceStatus][]DeviceStatus{
	DeviceNew:             {DevicePendingApproval, DeviceApproved, DeviceVoucherIssued, DeviceEnrolled, DeviceDenied, DeviceBlocked},
	DevicePendingApproval: {DeviceApproved, DeviceDenied, DeviceBlocked},
	DeviceApproved:        {DeviceVoucherIssued, DeviceEnrolled, DeviceDenied, DeviceBlocked},
	DeviceVoucherIssued:   {DeviceVoucherIssued, DeviceEnrolled, DeviceDenied, DeviceBlocked},
	DeviceEnrolled:        {DeviceVoucherIssued, DeviceEnrolled, DeviceBlocked},
	DeviceDenied:          {DevicePendingApproval, DeviceApproved, DeviceBlocked},
	DeviceBlocked:         {DeviceNew},
}

// CanTransition reports whether a device in status from may move to to.
func CanTransition(from, to DeviceStatus) bool {
	for _, s := range deviceTransitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// VoucherRef points at the last voucher stored for a device.
type VoucherRef struct {
	// Nonce is the voucher's nonce; empty for a nonceless voucher.
	Nonce string
	// At is when it was stored.
	At time.Time
}

// Device is a pledge's onboarding record.
type Device struct {
	// Key identifies the device.
	Key DeviceKey
	// Status is where onboarding stands.
	Status DeviceStatus
	// StatusReason says why the last transition happened (policy reason,
	// operator note); may be empty.
	StatusReason string
	// MASAURL is the MASA the IDevID names (or the configured override).
	MASAURL string
	// LastVoucher is the last voucher stored for the device; zero if none.
	LastVoucher VoucherRef
	// LDevIDs are the serials of the certificates issued to the device, in
	// serial order (CertificatesFor gives dates and status). Derived from the
	// certs-by-device index, never stored twice; ignored by PutDevice.
	LDevIDs []*big.Int
	// CreatedAt and UpdatedAt are set by the store.
	CreatedAt, UpdatedAt time.Time
}

// deviceRecordV1 is the stored form of Device.
type deviceRecordV1 struct {
	V            int       `json:"v"`
	Issuer       string    `json:"issuer"`
	Serial       string    `json:"serial"`
	Status       string    `json:"status"`
	StatusReason string    `json:"statusReason,omitempty"`
	MASAURL      string    `json:"masaURL,omitempty"`
	VoucherNonce string    `json:"voucherNonce,omitempty"`
	VoucherAt    time.Time `json:"voucherAt,omitzero"`
	CreatedAt    time.Time `json:"createdAt"`
	UpdatedAt    time.Time `json:"updatedAt"`
}

func deviceToRecord(d Device) deviceRecordV1 {
	rec := deviceRecordV1{
		V:            1,
		Issuer:       d.Key.Issuer,
		Serial:       d.Key.Serial,
		Status:       string(d.Status),
		StatusReason: d.StatusReason,
		MASAURL:      d.MASAURL,
		VoucherNonce: d.LastVoucher.Nonce,
		VoucherAt:    d.LastVoucher.At,
		CreatedAt:    d.CreatedAt,
		UpdatedAt:    d.UpdatedAt,
	}
	return rec
}

// device converts rec, reading the device's LDevID serials from the index
// in tx.
func (rec deviceRecordV1) device(tx *bolt.Tx) Device {
	d := Device{
		Key:          DeviceKey{Issuer: rec.Issuer, Serial: rec.Serial},
		Status:       DeviceStatus(rec.Status),
		StatusReason: rec.StatusReason,
		MASAURL:      rec.MASAURL,
		LastVoucher:  VoucherRef{Nonce: rec.VoucherNonce, At: rec.VoucherAt},
		CreatedAt:    rec.CreatedAt,
		UpdatedAt:    rec.UpdatedAt,
	}
	prefix := append(d.Key.bytes(), 0)
	c := tx.Bucket([]byte(bucketCertsByDevice)).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		d.LDevIDs = append(d.LDevIDs, new(big.Int).SetBytes(k[len(prefix):]))
	}
	return d
}

// loadDevice reads the device record; ErrNotFound if absent.
func loadDevice(tx *bolt.Tx, key DeviceKey) (deviceRecordV1, error) {
	var rec deviceRecordV1
	err := get(tx, bucketDevices, key.bytes(), &rec)
	return rec, err
}

// transitionDevice moves rec to status to (checking the table) and stores it.
func transitionDevice(tx *bolt.Tx, rec *deviceRecordV1, to DeviceStatus, reason string, now time.Time) error {
	from := DeviceStatus(rec.Status)
	if !CanTransition(from, to) {
		return fmt.Errorf("device %s/%s is %s, cannot become %s: %w", rec.Issuer, rec.Serial, from, to, ErrConflict)
	}
	rec.Status = string(to)
	rec.StatusReason = reason
	rec.UpdatedAt = now
	return put(tx, bucketDevices, DeviceKey{Issuer: rec.Issuer, Serial: rec.Serial}.bytes(), rec)
}

// PutDevice records a pledge as identified by its IDevID. A new device is
// stored with d.Status (default DeviceNew), d.StatusReason and d.MASAURL.
// For a known device only MASAURL (when not empty) is refreshed; its status,
// voucher and LDevIDs are left alone (use TransitionDevice). It returns the
// stored record. audit events are appended in the same transaction.
func (db *DB) PutDevice(ctx context.Context, d Device, audit ...Event) (Device, error) {
	if err := d.Key.validate(); err != nil {
		return Device{}, fmt.Errorf("put device: %w", err)
	}
	if d.Status == "" {
		d.Status = DeviceNew
	}
	if !d.Status.IsValid() {
		return Device{}, fmt.Errorf("put device %s: status %q: %w", d.Key, d.Status, ErrInvalid)
	}
	now := db.now()
	events, err := db.prepareEvents(audit)
	if err != nil {
		return Device{}, fmt.Errorf("put device %s: %w", d.Key, err)
	}
	var out Device
	err = db.update(ctx, func(tx *bolt.Tx) error {
		rec, err := loadDevice(tx, d.Key)
		switch {
		case err == nil:
			if d.MASAURL != "" && d.MASAURL != rec.MASAURL {
				rec.MASAURL = d.MASAURL
				rec.UpdatedAt = now
			}
		case errors.Is(err, ErrNotFound):
			rec = deviceToRecord(Device{
				Key: d.Key, Status: d.Status, StatusReason: d.StatusReason, MASAURL: d.MASAURL,
				CreatedAt: now, UpdatedAt: now,
			})
		default:
			return err
		}
		if err := put(tx, bucketDevices, d.Key.bytes(), rec); err != nil {
			return err
		}
		out = rec.device(tx)
		return appendEvents(tx, events)
	})
	if err != nil {
		return Device{}, fmt.Errorf("put device %s: %w", d.Key, err)
	}
	return out, nil
}

// Device returns the record of the device key, or ErrNotFound.
func (db *DB) Device(ctx context.Context, key DeviceKey) (Device, error) {
	var out Device
	err := db.view(ctx, func(tx *bolt.Tx) error {
		rec, err := loadDevice(tx, key)
		if err != nil {
			return err
		}
		out = rec.device(tx)
		return nil
	})
	if err != nil {
		return Device{}, fmt.Errorf("device %s: %w", key, err)
	}
	return out, nil
}

// TransitionDevice moves a device to status to, with a reason, if the
// table of allowed transitions permits it from the stored status (otherwise
// ErrConflict; ErrNotFound for an unknown device). When from is not empty
// the stored status must also equal from (compare-and-swap, for operator
// actions on a status they saw). audit events are appended in the same
// transaction.
func (db *DB) TransitionDevice(ctx context.Context, key DeviceKey, from, to DeviceStatus, reason string, audit ...Event) (Device, error) {
	if err := key.validate(); err != nil {
		return Device{}, fmt.Errorf("transition device: %w", err)
	}
	if !to.IsValid() || (from != "" && !from.IsValid()) {
		return Device{}, fmt.Errorf("transition device %s: status %q → %q: %w", key, from, to, ErrInvalid)
	}
	now := db.now()
	events, err := db.prepareEvents(audit)
	if err != nil {
		return Device{}, fmt.Errorf("transition device %s: %w", key, err)
	}
	var out Device
	err = db.update(ctx, func(tx *bolt.Tx) error {
		rec, err := loadDevice(tx, key)
		if err != nil {
			return err
		}
		if from != "" && DeviceStatus(rec.Status) != from {
			return fmt.Errorf("device is %s, not %s: %w", rec.Status, from, ErrConflict)
		}
		if err := transitionDevice(tx, &rec, to, reason, now); err != nil {
			return err
		}
		out = rec.device(tx)
		return appendEvents(tx, events)
	})
	if err != nil {
		return Device{}, fmt.Errorf("transition device %s to %s: %w", key, to, err)
	}
	return out, nil
}

// DeviceFilter selects and pages devices for ListDevices.
type DeviceFilter struct {
	// Status, when not empty, keeps only devices in that status.
	Status DeviceStatus
	// Serial, when not empty, keeps only devices with that serial-number
	// (from any issuer).
	Serial string
	// Cursor continues a listing: pass the previous page's Next.
	Cursor string
	// Limit is the page size. Default 100, at most 1000.
	Limit int
}

// DevicePage is one page of ListDevices.
type DevicePage struct {
	// Devices in key order (issuer, then serial).
	Devices []Device
	// Next is the cursor of the following page; empty on the last page.
	Next string
}

// ListDevices returns the devices matching f, in key order, one page at a
// time.
func (db *DB) ListDevices(ctx context.Context, f DeviceFilter) (DevicePage, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	var start []byte
	if f.Cursor != "" {
		c, err := hex.DecodeString(f.Cursor)
		if err != nil {
			return DevicePage{}, fmt.Errorf("list devices: cursor: %w", ErrInvalid)
		}
		start = c
	}
	var page DevicePage
	err := db.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucketDevices)).Cursor()
		k, v := c.First()
		if start != nil {
			k, v = c.Seek(start)
			if bytes.Equal(k, start) {
				k, v = c.Next()
			}
		}
		for ; k != nil; k, v = c.Next() {
			var rec deviceRecordV1
			if err := decodeRecord(v, &rec); err != nil {
				return fmt.Errorf("device %x: %w", k, err)
			}
			if (f.Status != "" && DeviceStatus(rec.Status) != f.Status) || (f.Serial != "" && rec.Serial != f.Serial) {
				continue
			}
			if len(page.Devices) == limit {
				page.Next = hex.EncodeToString(page.Devices[limit-1].Key.bytes())
				return nil
			}
			d := rec.device(tx)
			page.Devices = append(page.Devices, d)
		}
		return nil
	})
	if err != nil {
		return DevicePage{}, fmt.Errorf("list devices: %w", err)
	}
	return page, nil
}
