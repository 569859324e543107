package audit

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmhodges/clock"

	"github.com/gatehouse-pki/gatehouse/store"
)

func fakeClock() clock.Clock {
	fc := clock.NewFake()
	fc.Set(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	return fc
}

func TestRecorder_RecordWritesStoreThenFile(t *testing.T) {
	t.Parallel()
	db, err := store.Open(filepath.Join(t.TempDir(), "audit.db"), store.Options{Clock: fakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var file syncBuffer
	r := NewRecorder(db, slog.New(slog.NewJSONHandler(&file, nil)))

	if err := r.Record(t.Context(), New(VRRefused, "pledge_serial", "SN-1", "reason", "nonce too short", "empty", "")); err != nil {
		t.Fatal(err)
	}
	if err := r.Record(t.Context(), New(VRReceived, "pledge_serial", "SN-2")); err != nil {
		t.Fatal(err)
	}
	evs, err := db.Audit(t.Context(), 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Type != VRRefused || evs[0].Fields["reason"] != "nonce too short" {
		t.Fatalf("store holds %+v", evs)
	}
	if _, ok := evs[0].Fields["empty"]; ok {
		t.Fatal("an empty value was recorded")
	}
	if _, err := db.VerifyAuditChain(t.Context()); err != nil {
		t.Fatalf("chain: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(file.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("file has %d lines, want 2:\n%s", len(lines), file.String())
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first["type"] != VRRefused || first["seq"] != float64(evs[0].Seq) || first["pledge_serial"] != "SN-1" {
		t.Fatalf("mirrored %v", first)
	}
}

func TestRecorder_StoreFailureIsReturnedAndNotMirrored(t *testing.T) {
	t.Parallel()
	db, err := store.Open(filepath.Join(t.TempDir(), "audit.db"), store.Options{Clock: fakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	db.Close() // every write now fails
	var file syncBuffer
	r := NewRecorder(db, slog.New(slog.NewJSONHandler(&file, nil)))
	if err := r.Record(t.Context(), New(Startup)); err == nil {
		t.Fatal("Record on a closed store succeeded")
	}
	if file.String() != "" {
		t.Fatalf("an unrecorded event was mirrored: %s", file.String())
	}
}

func TestRecorder_MirrorsEventsWrittenInsideOtherTransactions(t *testing.T) {
	t.Parallel()
	db, err := store.Open(filepath.Join(t.TempDir(), "audit.db"), store.Options{Clock: fakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var file syncBuffer
	r := NewRecorder(db, slog.New(slog.NewJSONHandler(&file, nil)))

	key := store.DeviceKey{Issuer: "abcd", Serial: "SN-9"}
	if err := r.Record(t.Context(), New(VRReceived, "pledge_serial", "SN-9")); err != nil {
		t.Fatal(err)
	}
	// Written by the store inside the telemetry transaction, not by Record.
	if _, err := db.AppendTelemetry(t.Context(), store.Telemetry{Kind: store.TelemetryVoucherStatus, Device: key, Raw: []byte(`{"version":1,"status":true}`)},
		New(VoucherStatus, "pledge_serial", "SN-9")); err != nil {
		t.Fatal(err)
	}
	// A write that fails is rolled back: its event must never be mirrored.
	if _, err := db.AppendTelemetry(t.Context(), store.Telemetry{Kind: store.TelemetryVoucherStatus, Device: store.DeviceKey{}}, New("must-not-appear")); err == nil {
		t.Fatal("telemetry for an empty device key was accepted")
	}

	lines := strings.Split(strings.TrimSpace(file.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("audit file has %d lines, want 2 (each committed event once):\n%s", len(lines), file.String())
	}
	for i, want := range []string{VRReceived, VoucherStatus} {
		var ev map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &ev); err != nil {
			t.Fatal(err)
		}
		if ev["type"] != want || ev["seq"] != float64(i+1) {
			t.Fatalf("line %d = %v, want type %s seq %d", i, ev, want, i+1)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the store's writer goroutine and
// the test goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestOpen_AppendsToA0600File(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "audit.db"), store.Options{Clock: fakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	path := filepath.Join(dir, "audit.log")
	for i, typ := range []string{Startup, Shutdown} { // two opens: the second appends
		r, f, err := Open(db, path)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Record(t.Context(), New(typ, "run", strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		db.OnAudit(nil) // detach before closing the file this recorder mirrors to
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("audit file mode %v, want 0600", fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"type":"startup"`) || !strings.Contains(lines[1], `"type":"shutdown"`) {
		t.Fatalf("audit file:\n%s", b)
	}
	if _, _, err := Open(db, filepath.Join(dir, "missing", "audit.log")); err == nil {
		t.Fatal("Open in a missing directory succeeded")
	}
}
