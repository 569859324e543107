package store

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Generation is one generation of the domain CA: its certificate, a
// reference to its key and the link certificates that tie it to its
// neighbours in a "new-signs-old" rollover (RFC 4210 §4.4). At most one
// generation is active (issues certificates).
type Generation struct {
	// ID names the generation (for example "2030-01"); the store key.
	ID string
	// Certificate is the CA certificate (DER).
	Certificate []byte
	// KeyRef locates the private key (a KMS URI or a file path). Never the
	// key itself: the store refuses anything that looks like key material.
	KeyRef string
	// LinkCertificates are the rollover link certificates (OldWithNew,
	// NewWithOld), DER.
	LinkCertificates [][]byte
	// Active marks the generation that issues. Storing an active generation
	// deactivates the others in the same transaction.
	Active bool
	// CreatedAt is set by the store when the generation is first stored.
	CreatedAt time.Time
	// Previous is the ID of the generation this one rolled over from;
	// empty for the first.
	Previous string
}

// generationRecordV1 is the stored form of Generation.
type generationRecordV1 struct {
	V                int       `json:"v"`
	ID               string    `json:"id"`
	Certificate      []byte    `json:"certificate"`
	KeyRef           string    `json:"keyRef"`
	LinkCertificates [][]byte  `json:"linkCertificates,omitempty"`
	Active           bool      `json:"active"`
	CreatedAt        time.Time `json:"createdAt"`
	Previous         string    `json:"previous,omitempty"`
}

func (rec generationRecordV1) generation() Generation {
	return Generation{
		ID: rec.ID, Certificate: rec.Certificate, KeyRef: rec.KeyRef,
		LinkCertificates: rec.LinkCertificates, Active: rec.Active, CreatedAt: rec.CreatedAt,
		Previous: rec.Previous,
	}
}

// PutGeneration stores or replaces (by ID) a CA generation, keeping the
// CreatedAt of an existing one; when g.Active it deactivates every other
// generation, all in one durable transaction with audit.
func (db *DB) PutGeneration(ctx context.Context, g Generation, audit ...Event) error {
	if err := g.validate(); err != nil {
		return err
	}
	events, err := db.prepareEvents(audit)
	if err != nil {
		return fmt.Errorf("put CA generation %s: %w", g.ID, err)
	}
	rec := g.record(db.now())
	err = db.update(ctx, func(tx *bolt.Tx) error {
		if err := putGeneration(tx, rec); err != nil {
			return err
		}
		return appendEvents(tx, events)
	})
	if err != nil {
		return fmt.Errorf("put CA generation %s: %w", g.ID, err)
	}
	return nil
}

func (g Generation) validate() error {
	switch {
	case g.ID == "" || len(g.ID) > maxKeyPart:
		return fmt.Errorf("put CA generation: ID empty or longer than %d bytes: %w", maxKeyPart, ErrInvalid)
	case len(g.Certificate) == 0:
		return fmt.Errorf("put CA generation %s: no certificate: %w", g.ID, ErrInvalid)
	case g.KeyRef == "":
		return fmt.Errorf("put CA generation %s: no key reference: %w", g.ID, ErrInvalid)
	case strings.Contains(g.KeyRef, "PRIVATE KEY"):
		return fmt.Errorf("put CA generation %s: key reference holds key material; store a KMS URI or path instead: %w", g.ID, ErrInvalid)
	}
	return nil
}

func (g Generation) record(now time.Time) generationRecordV1 {
	rec := generationRecordV1{
		V: 1, ID: g.ID, Certificate: bytes.Clone(g.Certificate), KeyRef: g.KeyRef,
		Active: g.Active, CreatedAt: now, Previous: g.Previous,
	}
	for _, l := range g.LinkCertificates {
		rec.LinkCertificates = append(rec.LinkCertificates, bytes.Clone(l))
	}
	return rec
}

// putGeneration stores rec inside tx, keeping an existing CreatedAt and
// deactivating every other generation when rec is active.
func putGeneration(tx *bolt.Tx, r generationRecordV1) error {
	var old generationRecordV1
	err := get(tx, bucketGenerations, []byte(r.ID), &old)
	switch {
	case err == nil:
		r.CreatedAt = old.CreatedAt
	case !errors.Is(err, ErrNotFound):
		return err
	}
	if r.Active {
		// bbolt forbids changing a bucket inside its ForEach, so the
		// generations to deactivate are collected first.
		var demote []generationRecordV1
		err := tx.Bucket([]byte(bucketGenerations)).ForEach(func(k, v []byte) error {
			var other generationRecordV1
			if err := decodeRecord(v, &other); err != nil {
				return fmt.Errorf("generation %q: %w", k, err)
			}
			if other.Active && other.ID != r.ID {
				other.Active = false
				demote = append(demote, other)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, other := range demote {
			if err := put(tx, bucketGenerations, []byte(other.ID), other); err != nil {
				return err
			}
		}
	}
	return put(tx, bucketGenerations, []byte(r.ID), r)
}

// Generations returns every CA generation, oldest first (by CreatedAt, then
// ID).
func (db *DB) Generations(ctx context.Context) ([]Generation, error) {
	var out []Generation
	err := db.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketGenerations)).ForEach(func(k, v []byte) error {
			var rec generationRecordV1
			if err := decodeRecord(v, &rec); err != nil {
				return fmt.Errorf("generation %q: %w", k, err)
			}
			out = append(out, rec.generation())
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("CA generations: %w", err)
	}
	slices.SortStableFunc(out, func(a, b Generation) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// ActiveGeneration returns the generation that issues, or ErrNotFound.
func (db *DB) ActiveGeneration(ctx context.Context) (Generation, error) {
	gens, err := db.Generations(ctx)
	if err != nil {
		return Generation{}, err
	}
	for _, g := range gens {
		if g.Active {
			return g, nil
		}
	}
	return Generation{}, fmt.Errorf("active CA generation: %w", ErrNotFound)
}
