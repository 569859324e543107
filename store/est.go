package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// KeyHash is the SHA-256 of a DER SubjectPublicKeyInfo: the key of the
// LDevID key-uniqueness index (reliability §2.0 regcheck: no public key is
// used by two devices; attack table C13).
type KeyHash [sha256.Size]byte

// KeyHashOf returns the KeyHash of a DER SubjectPublicKeyInfo.
func KeyHashOf(spki []byte) KeyHash { return sha256.Sum256(spki) }

// indexCertificateKey records the certificate's public key hash h under
// its device in bucketLDevIDKeys, inside CompleteIssuance's transaction. A
// zero h records nothing. A key already certified for another device is
// ErrConflict, so two devices never hold certificates for one key, even
// when their requests race.
func indexCertificateKey(tx *bolt.Tx, h KeyHash, device DeviceKey) error {
	if h == (KeyHash{}) {
		return nil
	}
	b := tx.Bucket([]byte(bucketLDevIDKeys))
	want := device.bytes()
	if have := b.Get(h[:]); have != nil {
		if bytes.Equal(have, want) {
			return nil
		}
		return fmt.Errorf("public key is already certified for device %s: %w", bytes.ReplaceAll(have, []byte{0}, []byte{'/'}), ErrConflict)
	}
	return b.Put(h[:], want)
}

// DeviceForKey returns the device whose issued certificate carries the
// public key with hash h, or ErrNotFound when no certificate does.
func (db *DB) DeviceForKey(ctx context.Context, h KeyHash) (DeviceKey, error) {
	var dk DeviceKey
	err := db.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte(bucketLDevIDKeys)).Get(h[:])
		if v == nil {
			return ErrNotFound
		}
		issuer, serial, ok := bytes.Cut(v, []byte{0})
		if !ok {
			return fmt.Errorf("key index entry %x is malformed", h[:])
		}
		dk = DeviceKey{Issuer: string(issuer), Serial: string(serial)}
		return nil
	})
	if err != nil {
		return DeviceKey{}, fmt.Errorf("device for key %x: %w", h[:8], err)
	}
	return dk, nil
}

// Check runs bbolt's consistency check (tx.Check) in a read transaction and
// returns every error it reports, joined; nil for a sound file (reliability
// C1 (c)).
func (db *DB) Check(ctx context.Context) error {
	var errs []error
	err := db.view(ctx, func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("check store: %w", err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("check store: %d errors, first: %w", len(errs), errs[0])
	}
	return nil
}
