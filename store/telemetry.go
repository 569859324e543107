package store

import (
	"bytes"
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TelemetryKind says which pledge report a telemetry record holds.
type TelemetryKind string

// Telemetry kinds.
const (
	// TelemetryVoucherStatus is a voucher_status report (RFC 8995 §5.7).
	TelemetryVoucherStatus TelemetryKind = "voucher_status"
	// TelemetryEnrollStatus is an enrollstatus report (RFC 8995 §5.9.4).
	TelemetryEnrollStatus TelemetryKind = "enrollstatus"
)

// IsValid reports whether k is a known kind.
func (k TelemetryKind) IsValid() bool {
	return k == TelemetryVoucherStatus || k == TelemetryEnrollStatus
}

// Telemetry is one status report posted by a pledge.
type Telemetry struct {
	// Seq is assigned by the store; it orders reports (across devices too).
	Seq uint64
	// Kind is voucher_status or enrollstatus.
	Kind TelemetryKind
	// Device is the pledge that posted it.
	Device DeviceKey
	// Raw is the body as received (normally JSON), stored unchanged.
	Raw []byte
	// ClientCertMatched records whether the report arrived over TLS with a
	// client certificate matching the device (RFC 8995 §5.9.4: the server
	// MUST record it).
	ClientCertMatched bool
	// Time is set by the store.
	Time time.Time
}

// telemetryRecordV1 is the stored form of Telemetry, under the key
// device NUL big-endian sequence.
type telemetryRecordV1 struct {
	V                 int       `json:"v"`
	Seq               uint64    `json:"seq"`
	Kind              string    `json:"kind"`
	Issuer            string    `json:"issuer"`
	Serial            string    `json:"serial"`
	Raw               []byte    `json:"raw"`
	ClientCertMatched bool      `json:"clientCertMatched"`
	Time              time.Time `json:"time"`
}

// AppendTelemetry stores a pledge report, with audit, in one durable
// transaction, and returns its sequence number.
func (db *DB) AppendTelemetry(ctx context.Context, t Telemetry, audit ...Event) (uint64, error) {
	if err := t.Device.validate(); err != nil {
		return 0, fmt.Errorf("append telemetry: %w", err)
	}
	if !t.Kind.IsValid() {
		return 0, fmt.Errorf("append telemetry %s: kind %q: %w", t.Device, t.Kind, ErrInvalid)
	}
	events, err := db.prepareEvents(audit)
	if err != nil {
		return 0, fmt.Errorf("append telemetry %s: %w", t.Device, err)
	}
	rec := telemetryRecordV1{
		V: 1, Kind: string(t.Kind), Issuer: t.Device.Issuer, Serial: t.Device.Serial,
		Raw: bytes.Clone(t.Raw), ClientCertMatched: t.ClientCertMatched, Time: db.now(),
	}
	var seq uint64
	err = db.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketTelemetry))
		n, err := b.NextSequence()
		if err != nil {
			return err
		}
		r := rec
		r.Seq = n
		if err := put(tx, bucketTelemetry, append(append(t.Device.bytes(), 0), itob(n)...), r); err != nil {
			return err
		}
		seq = n
		return appendEvents(tx, events)
	})
	if err != nil {
		return 0, fmt.Errorf("append telemetry %s %s: %w", t.Kind, t.Device, err)
	}
	return seq, nil
}

// TelemetryFor returns the reports of device in the order they arrived.
func (db *DB) TelemetryFor(ctx context.Context, device DeviceKey) ([]Telemetry, error) {
	if err := device.validate(); err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	prefix := append(device.bytes(), 0)
	var out []Telemetry
	err := db.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucketTelemetry)).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var rec telemetryRecordV1
			if err := decodeRecord(v, &rec); err != nil {
				return fmt.Errorf("telemetry %x: %w", k, err)
			}
			out = append(out, Telemetry{
				Seq: rec.Seq, Kind: TelemetryKind(rec.Kind), Device: device,
				Raw: rec.Raw, ClientCertMatched: rec.ClientCertMatched, Time: rec.Time,
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("telemetry for %s: %w", device, err)
	}
	return out, nil
}
