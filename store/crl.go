package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// CRL is the current CRL of one CA generation.
type CRL struct {
	// Generation is the ID of the CA generation that signed it.
	Generation string
	// Number is its cRLNumber; each stored CRL of a generation has a larger
	// one than the last.
	Number uint64
	// DER is the signed CRL.
	DER []byte
	// ThisUpdate and NextUpdate are its validity.
	ThisUpdate, NextUpdate time.Time
}

type crlRecordV1 struct {
	V          int       `json:"v"`
	Generation string    `json:"generation"`
	Number     uint64    `json:"number"`
	DER        []byte    `json:"der"`
	ThisUpdate time.Time `json:"thisUpdate"`
	NextUpdate time.Time `json:"nextUpdate"`
}

// CRL returns the stored CRL of generation, or ErrNotFound.
func (db *DB) CRL(ctx context.Context, generation string) (CRL, error) {
	var rec crlRecordV1
	err := db.view(ctx, func(tx *bolt.Tx) error {
		return get(tx, bucketCRLs, []byte(generation), &rec)
	})
	if err != nil {
		return CRL{}, fmt.Errorf("crl of %s: %w", generation, err)
	}
	return CRL{Generation: rec.Generation, Number: rec.Number, DER: rec.DER, ThisUpdate: rec.ThisUpdate, NextUpdate: rec.NextUpdate}, nil
}

// PutCRL durably replaces the CRL of c.Generation, with audit in the same
// transaction. Its number must exceed the stored one (ErrConflict), so a
// CRL never goes backwards.
func (db *DB) PutCRL(ctx context.Context, c CRL, audit ...Event) error {
	if c.Generation == "" || len(c.Generation) > maxKeyPart || c.Number == 0 || len(c.DER) == 0 {
		return fmt.Errorf("put crl: generation, number and DER are required: %w", ErrInvalid)
	}
	events, err := db.prepareEvents(audit)
	if err != nil {
		return fmt.Errorf("put crl: %w", err)
	}
	rec := crlRecordV1{V: 1, Generation: c.Generation, Number: c.Number, DER: bytes.Clone(c.DER), ThisUpdate: c.ThisUpdate.UTC(), NextUpdate: c.NextUpdate.UTC()}
	err = db.update(ctx, func(tx *bolt.Tx) error {
		var old crlRecordV1
		err := get(tx, bucketCRLs, []byte(c.Generation), &old)
		switch {
		case err == nil && old.Number >= c.Number:
			return fmt.Errorf("crl number %d is not above the stored %d: %w", c.Number, old.Number, ErrConflict)
		case err != nil && !errors.Is(err, ErrNotFound):
			return err
		}
		if err := put(tx, bucketCRLs, []byte(c.Generation), rec); err != nil {
			return err
		}
		return appendEvents(tx, events)
	})
	if err != nil {
		return fmt.Errorf("put crl of %s: %w", c.Generation, err)
	}
	return nil
}
