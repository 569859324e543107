package store

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Voucher is a voucher obtained from a MASA for a device, kept so that an
// identical retried voucher-request is answered from the store without
// asking the MASA again (RFC 8995 §5.6; reliability L8).
type Voucher struct {
	// Device is the pledge the voucher is for.
	Device DeviceKey
	// Nonce is the voucher's nonce, as in the voucher-request; empty for a
	// nonceless voucher (one per device, the last one stored wins).
	Nonce string
	// MediaType is the voucher's media type (application/voucher-cms+json…).
	MediaType string
	// Signed is the voucher exactly as the MASA returned it.
	Signed []byte
	// RequestHash is the SHA-256 of the pledge voucher-request it answers,
	// to tell an identical retry from a different request.
	RequestHash [32]byte
	// NewDevice, when set, is the record PutVoucher creates (status new,
	// its MASAURL and StatusReason) if the device has none yet, in the
	// same transaction as the voucher: a pledge's first voucher is one
	// durable write, and a refused one leaves no device behind. Without
	// it, an unknown device is refused with ErrNotFound. Its Key is
	// ignored (Device is the key).
	NewDevice *Device
	// CreatedAt is set by the store.
	CreatedAt time.Time
}

// NonceUse says which request first used a nonce.
type NonceUse struct {
	// Device is the device whose request carried the nonce.
	Device DeviceKey
	// RequestHash is the SHA-256 of that voucher-request.
	RequestHash [32]byte
}

// voucherRecordV1 is the stored form of Voucher.
type voucherRecordV1 struct {
	V           int       `json:"v"`
	Issuer      string    `json:"issuer"`
	Serial      string    `json:"serial"`
	Nonce       string    `json:"nonce,omitempty"`
	MediaType   string    `json:"mediaType"`
	Signed      []byte    `json:"signed"`
	RequestHash string    `json:"requestHash"`
	CreatedAt   time.Time `json:"createdAt"`
}

// nonceRecordV1 is the stored form of NonceUse.
type nonceRecordV1 struct {
	V           int    `json:"v"`
	Issuer      string `json:"issuer"`
	Serial      string `json:"serial"`
	RequestHash string `json:"requestHash"`
}

func (rec voucherRecordV1) voucher() (Voucher, error) {
	h, err := decodeHash(rec.RequestHash)
	if err != nil {
		return Voucher{}, err
	}
	return Voucher{
		Device:      DeviceKey{Issuer: rec.Issuer, Serial: rec.Serial},
		Nonce:       rec.Nonce,
		MediaType:   rec.MediaType,
		Signed:      rec.Signed,
		RequestHash: h,
		CreatedAt:   rec.CreatedAt,
	}, nil
}

// voucherKey is device NUL nonce.
func voucherKey(d DeviceKey, nonce string) []byte {
	return append(append(d.bytes(), 0), nonce...)
}

func validateNonce(nonce string) error {
	if len(nonce) > maxKeyPart || strings.IndexByte(nonce, 0) >= 0 {
		return fmt.Errorf("nonce longer than %d bytes or with a NUL: %w", maxKeyPart, ErrInvalid)
	}
	return nil
}

// PutVoucher stores v, records its nonce as used, and moves the device
// (which must exist: ErrNotFound otherwise) to voucher-issued with v as its
// last voucher, appending audit, in one durable transaction.
//
// Storing the same voucher again is a no-op. It fails with ErrNonceReused
// when the nonce was used by another device or another request, with
// ErrConflict when a different voucher is stored for the same (device,
// nonce) or the device's status forbids a voucher (denied, blocked, pending
// approval).
func (db *DB) PutVoucher(ctx context.Context, v Voucher, audit ...Event) error {
	if err := v.Device.validate(); err != nil {
		return fmt.Errorf("put voucher: %w", err)
	}
	if err := validateNonce(v.Nonce); err != nil {
		return fmt.Errorf("put voucher %s: %w", v.Device, err)
	}
	if v.MediaType == "" || len(v.Signed) == 0 {
		return fmt.Errorf("put voucher %s: empty media type or voucher: %w", v.Device, ErrInvalid)
	}
	events, err := db.prepareEvents(audit)
	if err != nil {
		return fmt.Errorf("put voucher %s: %w", v.Device, err)
	}
	now := db.now()
	rec := voucherRecordV1{
		V: 1, Issuer: v.Device.Issuer, Serial: v.Device.Serial, Nonce: v.Nonce,
		MediaType: v.MediaType, Signed: bytes.Clone(v.Signed),
		RequestHash: hex.EncodeToString(v.RequestHash[:]), CreatedAt: now,
	}
	key := voucherKey(v.Device, v.Nonce)
	err = db.update(ctx, func(tx *bolt.Tx) error {
		if v.Nonce != "" {
			var used nonceRecordV1
			err := get(tx, bucketNonces, []byte(v.Nonce), &used)
			switch {
			case err == nil:
				if used.Issuer != rec.Issuer || used.Serial != rec.Serial || used.RequestHash != rec.RequestHash {
					return ErrNonceReused
				}
			case !errors.Is(err, ErrNotFound):
				return err
			}
			var old voucherRecordV1
			err = get(tx, bucketVouchers, key, &old)
			switch {
			case err == nil:
				if old.MediaType == rec.MediaType && bytes.Equal(old.Signed, rec.Signed) && old.RequestHash == rec.RequestHash {
					return nil // the same voucher again
				}
				return fmt.Errorf("another voucher is stored for this nonce: %w", ErrConflict)
			case !errors.Is(err, ErrNotFound):
				return err
			}
		}
		dev, err := loadDevice(tx, v.Device)
		switch {
		case errors.Is(err, ErrNotFound) && v.NewDevice != nil:
			dev = deviceToRecord(Device{
				Key: v.Device, Status: DeviceNew, StatusReason: v.NewDevice.StatusReason, MASAURL: v.NewDevice.MASAURL,
				CreatedAt: now, UpdatedAt: now,
			})
		case err != nil:
			return fmt.Errorf("device: %w", err)
		}
		dev.VoucherNonce, dev.VoucherAt = v.Nonce, now
		if err := transitionDevice(tx, &dev, DeviceVoucherIssued, "", now); err != nil {
			return err
		}
		if err := put(tx, bucketVouchers, key, rec); err != nil {
			return err
		}
		if v.Nonce != "" {
			nr := nonceRecordV1{V: 1, Issuer: rec.Issuer, Serial: rec.Serial, RequestHash: rec.RequestHash}
			if err := put(tx, bucketNonces, []byte(v.Nonce), nr); err != nil {
				return err
			}
		}
		return appendEvents(tx, events)
	})
	if err != nil {
		return fmt.Errorf("put voucher %s nonce %q: %w", v.Device, v.Nonce, err)
	}
	return nil
}

// Voucher returns the voucher stored for (device, nonce), or ErrNotFound.
// An empty nonce asks for the device's nonceless voucher.
func (db *DB) Voucher(ctx context.Context, device DeviceKey, nonce string) (Voucher, error) {
	if err := device.validate(); err != nil {
		return Voucher{}, fmt.Errorf("voucher: %w", err)
	}
	if err := validateNonce(nonce); err != nil {
		return Voucher{}, fmt.Errorf("voucher %s: %w", device, err)
	}
	var rec voucherRecordV1
	err := db.view(ctx, func(tx *bolt.Tx) error {
		return get(tx, bucketVouchers, voucherKey(device, nonce), &rec)
	})
	if err != nil {
		return Voucher{}, fmt.Errorf("voucher %s nonce %q: %w", device, nonce, err)
	}
	return rec.voucher()
}

// NonceUse returns who first used nonce in a stored voucher, or
// ErrNotFound. A voucher-request whose nonce is known but whose device or
// request hash differs is a replay or a collision.
func (db *DB) NonceUse(ctx context.Context, nonce string) (NonceUse, error) {
	if nonce == "" {
		return NonceUse{}, fmt.Errorf("nonce use: empty nonce: %w", ErrInvalid)
	}
	var rec nonceRecordV1
	err := db.view(ctx, func(tx *bolt.Tx) error {
		return get(tx, bucketNonces, []byte(nonce), &rec)
	})
	if err != nil {
		return NonceUse{}, fmt.Errorf("nonce use %q: %w", nonce, err)
	}
	h, err := decodeHash(rec.RequestHash)
	if err != nil {
		return NonceUse{}, fmt.Errorf("nonce use %q: %w", nonce, err)
	}
	return NonceUse{Device: DeviceKey{Issuer: rec.Issuer, Serial: rec.Serial}, RequestHash: h}, nil
}
