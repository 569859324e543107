package store

import (
	"fmt"
	"strconv"

	bolt "go.etcd.io/bbolt"
)

// SchemaVersion is the schema version this build writes. Open migrates an
// older database up to it and refuses a newer one.
const SchemaVersion = 2

// migration moves a database from version from to from+1. It runs inside
// the transaction Open uses, together with every other step and the new
// version number, so a crash leaves the database at the old version or at
// the new one, never between.
type migration struct {
	from int
	name string
	fn   func(tx *bolt.Tx) error
}

// migrations are ordered by from. Never edit or remove a shipped step; add
// a new one and raise SchemaVersion.
var migrations = []migration{
	{from: 1, name: "build the nonce, certificate-by-device and open-intent indexes", fn: migrate1to2},
}

// migrate brings the schema in tx to SchemaVersion. A new (empty) file gets
// every bucket and the current version directly.
func migrate(tx *bolt.Tx, path string) error {
	meta := tx.Bucket([]byte(bucketMeta))
	if meta == nil {
		if err := tx.ForEach(func([]byte, *bolt.Bucket) error { return ErrNotStore }); err != nil {
			return fmt.Errorf("%s has buckets but no %q bucket: %w", path, bucketMeta, err)
		}
		if err := createBuckets(tx); err != nil {
			return err
		}
		return setSchemaVersion(tx, SchemaVersion)
	}
	version, err := schemaVersion(tx)
	if err != nil {
		return err
	}
	if version > SchemaVersion {
		return fmt.Errorf("%s has schema version %d, this build knows up to %d; run a newer gatehouse or restore a backup: %w", path, version, SchemaVersion, ErrSchemaTooNew)
	}
	for _, m := range migrations {
		if m.from < version {
			continue
		}
		if m.from != version {
			return fmt.Errorf("no migration from schema version %d", version)
		}
		if err := m.fn(tx); err != nil {
			return fmt.Errorf("migrate schema %d to %d (%s): %w", m.from, m.from+1, m.name, err)
		}
		version = m.from + 1
	}
	if version != SchemaVersion {
		return fmt.Errorf("migrations end at schema version %d, want %d", version, SchemaVersion)
	}
	// Buckets added without data to move need no migration step.
	if err := createBuckets(tx); err != nil {
		return err
	}
	return setSchemaVersion(tx, version)
}

func createBuckets(tx *bolt.Tx) error {
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	return nil
}

func schemaVersion(tx *bolt.Tx) (int, error) {
	raw := tx.Bucket([]byte(bucketMeta)).Get([]byte(metaSchemaVersion))
	if raw == nil {
		return 0, fmt.Errorf("no schema version in %q: %w", bucketMeta, ErrNotStore)
	}
	v, err := strconv.Atoi(string(raw))
	if err != nil || v < 1 {
		return 0, fmt.Errorf("schema version %q is not a positive integer: %w", raw, ErrNotStore)
	}
	return v, nil
}

func setSchemaVersion(tx *bolt.Tx, v int) error {
	if err := tx.Bucket([]byte(bucketMeta)).Put([]byte(metaSchemaVersion), []byte(strconv.Itoa(v))); err != nil {
		return fmt.Errorf("write schema version: %w", err)
	}
	return nil
}

// migrate1to2 builds the index buckets that schema 1 lacked: nonces from
// vouchers, certs-by-device from certificates, open-intents from intents.
func migrate1to2(tx *bolt.Tx) error {
	for _, name := range []string{bucketNonces, bucketCertsByDevice, bucketOpenIntents} {
		if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	err := tx.Bucket([]byte(bucketVouchers)).ForEach(func(k, raw []byte) error {
		var rec voucherRecordV1
		if err := decodeRecord(raw, &rec); err != nil {
			return fmt.Errorf("voucher %x: %w", k, err)
		}
		if rec.Nonce == "" {
			return nil
		}
		return put(tx, bucketNonces, []byte(rec.Nonce), nonceRecordV1{V: 1, Issuer: rec.Issuer, Serial: rec.Serial, RequestHash: rec.RequestHash})
	})
	if err != nil {
		return err
	}
	err = tx.Bucket([]byte(bucketCertificates)).ForEach(func(k, raw []byte) error {
		var rec certificateRecordV1
		if err := decodeRecord(raw, &rec); err != nil {
			return fmt.Errorf("certificate %x: %w", k, err)
		}
		dk := DeviceKey{Issuer: rec.Issuer, Serial: rec.DeviceSerial}
		return tx.Bucket([]byte(bucketCertsByDevice)).Put(certByDeviceKey(dk, k), nil)
	})
	if err != nil {
		return err
	}
	return tx.Bucket([]byte(bucketIntents)).ForEach(func(k, raw []byte) error {
		var rec intentRecordV1
		if err := decodeRecord(raw, &rec); err != nil {
			return fmt.Errorf("intent %x: %w", k, err)
		}
		if IntentStatus(rec.Status) != IntentOpen {
			return nil
		}
		return tx.Bucket([]byte(bucketOpenIntents)).Put(k, nil)
	})
}
