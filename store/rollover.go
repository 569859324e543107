package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// RolloverStep is how far a domain CA rollover got. Each step is durable
// before the next begins, so a crash anywhere leaves the last completed
// step on disk and the rollover rolls forward from there (reliability R4).
type RolloverStep string

// Rollover steps, in order (RFC 4210 §4.4 operator steps 1–4, then the
// switch of issuance, which comes last).
const (
	// RolloverKeyGenerated: the new key exists and is recorded (KeyRef,
	// To). Nothing is signed with it yet.
	RolloverKeyGenerated RolloverStep = "key-generated"
	// RolloverNewWithNewSigned: the new self-signed root is recorded.
	RolloverNewWithNewSigned RolloverStep = "new-with-new-signed"
	// RolloverNewWithOldSigned: the old key certified the new one.
	RolloverNewWithOldSigned RolloverStep = "new-with-old-signed"
	// RolloverOldWithNewSigned: the new key certified the old one; the set
	// of link certificates is complete.
	RolloverOldWithNewSigned RolloverStep = "old-with-new-signed"
	// RolloverSwitched: the new generation is stored and active, in the
	// same transaction as this step. What remains is for running
	// registrars to pick it up; FinishRollover then removes the record.
	RolloverSwitched RolloverStep = "switched"
)

var rolloverOrder = []RolloverStep{RolloverKeyGenerated, RolloverNewWithNewSigned, RolloverNewWithOldSigned, RolloverOldWithNewSigned, RolloverSwitched}

func (s RolloverStep) index() int {
	for i, x := range rolloverOrder {
		if x == s {
			return i
		}
	}
	return -1
}

// IsValid reports whether s is one of the steps.
func (s RolloverStep) IsValid() bool { return s.index() >= 0 }

// Rollover is the record of a domain CA rollover in progress. There is at
// most one.
type Rollover struct {
	// From is the ID of the generation being replaced (active until the
	// switch).
	From string
	// To is the ID of the new generation.
	To string
	// Step is the last durable step.
	Step RolloverStep
	// KeyRef locates the new private key (a KMS URI or file path).
	KeyRef string
	// NewWithNew, NewWithOld and OldWithNew are the certificates (DER) once
	// their step is reached.
	NewWithNew, NewWithOld, OldWithNew []byte
	// StartedAt and UpdatedAt are set by the store.
	StartedAt, UpdatedAt time.Time
}

type rolloverRecordV1 struct {
	V          int       `json:"v"`
	From       string    `json:"from"`
	To         string    `json:"to"`
	Step       string    `json:"step"`
	KeyRef     string    `json:"keyRef"`
	NewWithNew []byte    `json:"newWithNew,omitempty"`
	NewWithOld []byte    `json:"newWithOld,omitempty"`
	OldWithNew []byte    `json:"oldWithNew,omitempty"`
	StartedAt  time.Time `json:"startedAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
}

func (rec rolloverRecordV1) rollover() Rollover {
	return Rollover{
		From: rec.From, To: rec.To, Step: RolloverStep(rec.Step), KeyRef: rec.KeyRef,
		NewWithNew: rec.NewWithNew, NewWithOld: rec.NewWithOld, OldWithNew: rec.OldWithNew,
		StartedAt: rec.StartedAt, UpdatedAt: rec.UpdatedAt,
	}
}

// rolloverKey is the one key of bucketRollover.
var rolloverKey = []byte("current")

// validate checks that r carries exactly what its step promises.
func (r Rollover) validate() error {
	i := r.Step.index()
	switch {
	case i < 0:
		return fmt.Errorf("unknown step %q: %w", r.Step, ErrInvalid)
	case r.From == "" || r.To == "" || r.From == r.To || len(r.To) > maxKeyPart:
		return fmt.Errorf("from %q to %q: %w", r.From, r.To, ErrInvalid)
	case r.KeyRef == "" || bytes.Contains([]byte(r.KeyRef), []byte("PRIVATE KEY")):
		return fmt.Errorf("key reference missing or holding key material: %w", ErrInvalid)
	}
	have := []bool{true, len(r.NewWithNew) > 0, len(r.NewWithOld) > 0, len(r.OldWithNew) > 0, true}
	for j := 1; j <= 3; j++ {
		if have[j] != (i >= j) {
			return fmt.Errorf("step %s with certificates %v: %w", r.Step, have[1:4], ErrInvalid)
		}
	}
	return nil
}

// CurrentRollover returns the rollover in progress, or ErrNotFound.
func (db *DB) CurrentRollover(ctx context.Context) (Rollover, error) {
	var rec rolloverRecordV1
	err := db.view(ctx, func(tx *bolt.Tx) error {
		return get(tx, bucketRollover, rolloverKey, &rec)
	})
	if err != nil {
		return Rollover{}, fmt.Errorf("current rollover: %w", err)
	}
	return rec.rollover(), nil
}

// RecordRollover durably records the next step of the rollover, with audit
// in the same transaction. A new rollover starts at RolloverKeyGenerated,
// From must be the active generation, and no other rollover may be in
// progress (ErrConflict). Afterwards each call must advance exactly one
// step and keep every earlier field (ErrConflict otherwise). The switch is
// not recorded here but by SwitchGeneration.
func (db *DB) RecordRollover(ctx context.Context, r Rollover, audit ...Event) error {
	if err := r.validate(); err != nil {
		return fmt.Errorf("record rollover: %w", err)
	}
	if r.Step == RolloverSwitched {
		return fmt.Errorf("record rollover: the switch is SwitchGeneration's: %w", ErrInvalid)
	}
	events, err := db.prepareEvents(audit)
	if err != nil {
		return fmt.Errorf("record rollover: %w", err)
	}
	now := db.now()
	err = db.update(ctx, func(tx *bolt.Tx) error {
		var cur rolloverRecordV1
		err := get(tx, bucketRollover, rolloverKey, &cur)
		switch {
		case errors.Is(err, ErrNotFound):
			if r.Step != RolloverKeyGenerated {
				return fmt.Errorf("no rollover in progress to advance to %s: %w", r.Step, ErrConflict)
			}
			active, err := activeGeneration(tx)
			if err != nil {
				return err
			}
			if active.ID != r.From {
				return fmt.Errorf("rollover from %s, but %s is active: %w", r.From, active.ID, ErrConflict)
			}
			cur = rolloverRecordV1{V: 1, StartedAt: now}
		case err != nil:
			return err
		default:
			c := cur.rollover()
			if c.Step.index()+1 != r.Step.index() {
				return fmt.Errorf("rollover at %s cannot record %s: %w", c.Step, r.Step, ErrConflict)
			}
			if c.From != r.From || c.To != r.To || c.KeyRef != r.KeyRef ||
				!bytes.Equal(c.NewWithNew, r.NewWithNew) && c.Step.index() >= 1 ||
				!bytes.Equal(c.NewWithOld, r.NewWithOld) && c.Step.index() >= 2 {
				return fmt.Errorf("rollover record changed beyond its step: %w", ErrConflict)
			}
		}
		rec := rolloverRecordV1{
			V: 1, From: r.From, To: r.To, Step: string(r.Step), KeyRef: r.KeyRef,
			NewWithNew: bytes.Clone(r.NewWithNew), NewWithOld: bytes.Clone(r.NewWithOld), OldWithNew: bytes.Clone(r.OldWithNew),
			StartedAt: cur.StartedAt, UpdatedAt: now,
		}
		if err := put(tx, bucketRollover, rolloverKey, rec); err != nil {
			return err
		}
		return appendEvents(tx, events)
	})
	if err != nil {
		return fmt.Errorf("record rollover to %s: %w", r.Step, err)
	}
	return nil
}

// SwitchGeneration is the last step of a rollover: in one durable
// transaction it stores the new generation (NewWithNew, the key reference,
// the link certificates NewWithOld and OldWithNew, Previous = From) as the
// active one, deactivates the old, and marks the rollover switched. It
// requires the rollover at RolloverOldWithNewSigned (ErrConflict), and
// returns the new generation.
func (db *DB) SwitchGeneration(ctx context.Context, audit ...Event) (Generation, error) {
	events, err := db.prepareEvents(audit)
	if err != nil {
		return Generation{}, fmt.Errorf("switch CA generation: %w", err)
	}
	now := db.now()
	var g Generation
	err = db.update(ctx, func(tx *bolt.Tx) error {
		var cur rolloverRecordV1
		if err := get(tx, bucketRollover, rolloverKey, &cur); err != nil {
			return err
		}
		if RolloverStep(cur.Step) != RolloverOldWithNewSigned {
			return fmt.Errorf("rollover at %s: %w", cur.Step, ErrConflict)
		}
		g = Generation{
			ID: cur.To, Certificate: cur.NewWithNew, KeyRef: cur.KeyRef,
			LinkCertificates: [][]byte{cur.NewWithOld, cur.OldWithNew}, Active: true, Previous: cur.From,
		}
		rec := g.record(now)
		if err := putGeneration(tx, rec); err != nil {
			return err
		}
		g.CreatedAt = rec.CreatedAt
		cur.Step, cur.UpdatedAt = string(RolloverSwitched), now
		if err := put(tx, bucketRollover, rolloverKey, cur); err != nil {
			return err
		}
		return appendEvents(tx, events)
	})
	if err != nil {
		return Generation{}, fmt.Errorf("switch CA generation: %w", err)
	}
	return g, nil
}

// FinishRollover removes the record of a switched rollover, with audit in
// the same transaction (ErrConflict before the switch, ErrNotFound when
// none is in progress).
func (db *DB) FinishRollover(ctx context.Context, audit ...Event) error {
	events, err := db.prepareEvents(audit)
	if err != nil {
		return fmt.Errorf("finish rollover: %w", err)
	}
	err = db.update(ctx, func(tx *bolt.Tx) error {
		var cur rolloverRecordV1
		if err := get(tx, bucketRollover, rolloverKey, &cur); err != nil {
			return err
		}
		if RolloverStep(cur.Step) != RolloverSwitched {
			return fmt.Errorf("rollover at %s: %w", cur.Step, ErrConflict)
		}
		if err := tx.Bucket([]byte(bucketRollover)).Delete(rolloverKey); err != nil {
			return err
		}
		return appendEvents(tx, events)
	})
	if err != nil {
		return fmt.Errorf("finish rollover: %w", err)
	}
	return nil
}

func activeGeneration(tx *bolt.Tx) (generationRecordV1, error) {
	var found generationRecordV1
	n := 0
	err := tx.Bucket([]byte(bucketGenerations)).ForEach(func(k, v []byte) error {
		var rec generationRecordV1
		if err := decodeRecord(v, &rec); err != nil {
			return fmt.Errorf("generation %q: %w", k, err)
		}
		if rec.Active {
			found = rec
			n++
		}
		return nil
	})
	switch {
	case err != nil:
		return found, err
	case n == 0:
		return found, fmt.Errorf("no active CA generation: %w", ErrNotFound)
	case n > 1:
		return found, fmt.Errorf("%d active CA generations: %w", n, ErrConflict)
	}
	return found, nil
}
