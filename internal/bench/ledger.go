package bench

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/gatehouse-pki/gatehouse/store"
)

// LedgerEntry is one line of the ledger: what the registrar promised one
// successful operation, as the pledge received and verified it.
type LedgerEntry struct {
	// Kind is "enroll" (full onboarding) or "reenroll".
	Kind string `json:"kind"`
	// Transport is "https" or "coaps".
	Transport string `json:"transport,omitempty"`
	// Pledge is the IDevID's serial number.
	Pledge string `json:"pledge"`
	// VoucherSerial is the voucher's serial-number (enroll only).
	VoucherSerial string `json:"voucher_serial,omitempty"`
	// Nonce is the voucher's nonce, standard base64 (enroll only).
	Nonce string `json:"nonce,omitempty"`
	// VoucherSHA256 is the hex SHA-256 of the voucher as received.
	VoucherSHA256 string `json:"voucher_sha256,omitempty"`
	// LDevIDSerial is the issued certificate's serial, hex.
	LDevIDSerial string `json:"ldevid_serial"`
	// LDevIDSHA256 is the hex SHA-256 of the certificate's DER.
	LDevIDSHA256 string `json:"ldevid_sha256"`
}

func digest(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// ledgerWriter writes JSON lines, buffered.
type ledgerWriter struct {
	w   *bufio.Writer
	enc *json.Encoder
}

func newLedgerWriter(w io.Writer) *ledgerWriter {
	bw := bufio.NewWriter(w)
	return &ledgerWriter{w: bw, enc: json.NewEncoder(bw)}
}

func (l *ledgerWriter) write(e LedgerEntry) error { return l.enc.Encode(e) }
func (l *ledgerWriter) flush() error              { return l.w.Flush() }

// Reconciliation is the outcome of Reconcile.
type Reconciliation struct {
	// Entries counts the ledger lines checked.
	Entries int `json:"entries"`
	// LostRecords counts promises the store does not hold: a voucher, a
	// nonce or a certificate missing or different. Must be zero.
	LostRecords int `json:"lost_records"`
	// Problems describes the first few lost records.
	Problems []string `json:"problems,omitempty"`
}

// maxProblems bounds Reconciliation.Problems.
const maxProblems = 10

// Reconcile checks every ledger line against the registrar's store: for an
// onboarding, the nonce is recorded for the pledge and the voucher stored
// under it is the one the pledge received; for every operation, the
// certificate with the LDevID serial is stored, byte for byte, for that
// pledge.
func Reconcile(ctx context.Context, db *store.DB, ledger io.Reader) (*Reconciliation, error) {
	rec := &Reconciliation{}
	lost := func(format string, args ...any) {
		rec.LostRecords++
		if len(rec.Problems) < maxProblems {
			rec.Problems = append(rec.Problems, fmt.Sprintf(format, args...))
		}
	}
	sc := bufio.NewScanner(ledger)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		var e LedgerEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("bench: ledger line %d: %w", line, err)
		}
		rec.Entries++
		var dev store.DeviceKey
		if e.Kind == "enroll" {
			use, err := db.NonceUse(ctx, e.Nonce)
			if err != nil {
				lost("%s: nonce %s: %v", e.Pledge, e.Nonce, err)
				continue
			}
			if use.Device.Serial != e.Pledge {
				lost("%s: nonce %s recorded for %s", e.Pledge, e.Nonce, use.Device.Serial)
				continue
			}
			dev = use.Device
			v, err := db.Voucher(ctx, dev, e.Nonce)
			if err != nil {
				lost("%s: voucher: %v", e.Pledge, err)
				continue
			}
			if digest(v.Signed) != e.VoucherSHA256 {
				lost("%s: stored voucher differs from the one received", e.Pledge)
				continue
			}
		}
		serial, ok := new(big.Int).SetString(e.LDevIDSerial, 16)
		if !ok {
			return nil, fmt.Errorf("bench: ledger line %d: bad LDevID serial %q", line, e.LDevIDSerial)
		}
		c, err := db.Certificate(ctx, serial)
		switch {
		case errors.Is(err, store.ErrNotFound):
			lost("%s: LDevID %s not in the store", e.Pledge, e.LDevIDSerial)
		case err != nil:
			return nil, fmt.Errorf("bench: %w", err)
		case digest(c.DER) != e.LDevIDSHA256:
			lost("%s: stored LDevID %s differs from the one received", e.Pledge, e.LDevIDSerial)
		case c.Device.Serial != e.Pledge || (dev != store.DeviceKey{} && c.Device != dev):
			lost("%s: LDevID %s recorded for %s", e.Pledge, e.LDevIDSerial, c.Device)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("bench: ledger: %w", err)
	}
	return rec, nil
}

// nonceText is how the registrar keys a binary nonce (standard base64).
func nonceText(n []byte) string { return base64.StdEncoding.EncodeToString(n) }
