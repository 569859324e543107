// Package storetest is the contract test suite every store backend must
// pass: the bbolt store today, a PostgreSQL one later. It is imported only
// from _test.go files.
//
// Run(t, open) exercises every method of Backend, error cases included. A
// backend-specific test file adds what the contract cannot express
// (tampering with stored bytes, file locks, migrations from old files).
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-pki/gatehouse/store"
)

// Epoch is the time the backend's clock must read, and keep reading, for
// the whole of Run: the project's fixed test date.
var Epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// Backend is what the suite exercises: the store's domain API.
type Backend interface {
	PutDevice(ctx context.Context, d store.Device, audit ...store.Event) (store.Device, error)
	Device(ctx context.Context, key store.DeviceKey) (store.Device, error)
	TransitionDevice(ctx context.Context, key store.DeviceKey, from, to store.DeviceStatus, reason string, audit ...store.Event) (store.Device, error)
	ListDevices(ctx context.Context, f store.DeviceFilter) (store.DevicePage, error)

	PutVoucher(ctx context.Context, v store.Voucher, audit ...store.Event) error
	Voucher(ctx context.Context, device store.DeviceKey, nonce string) (store.Voucher, error)
	NonceUse(ctx context.Context, nonce string) (store.NonceUse, error)

	AppendTelemetry(ctx context.Context, t store.Telemetry, audit ...store.Event) (uint64, error)
	TelemetryFor(ctx context.Context, device store.DeviceKey) ([]store.Telemetry, error)

	AppendAudit(ctx context.Context, e store.Event) (store.Event, error)
	Audit(ctx context.Context, from uint64, limit int) ([]store.Event, error)
	AuditCount(ctx context.Context) (uint64, error)
	VerifyAuditChain(ctx context.Context) (store.AuditHead, error)

	BeginIssuance(ctx context.Context, in store.Intent, audit ...store.Event) error
	CompleteIssuance(ctx context.Context, c store.Completion, audit ...store.Event) error
	AbandonIssuance(ctx context.Context, serial *big.Int, reason string) error
	Intent(ctx context.Context, serial *big.Int) (store.Intent, error)
	OpenIntents(ctx context.Context) ([]store.Intent, error)
	ResolveIntents(ctx context.Context) (store.Resolved, error)
	Certificate(ctx context.Context, serial *big.Int) (store.Certificate, error)
	CertificatesFor(ctx context.Context, device store.DeviceKey) ([]store.Certificate, error)
	Revoke(ctx context.Context, serial *big.Int, reason int, audit ...store.Event) error

	PutGeneration(ctx context.Context, g store.Generation, audit ...store.Event) error
	Generations(ctx context.Context) ([]store.Generation, error)
	ActiveGeneration(ctx context.Context) (store.Generation, error)

	Dump(ctx context.Context, w io.Writer) error
	StateDigest(ctx context.Context) ([32]byte, error)
}

// Run runs the contract suite. open must return a new, empty backend whose
// clock reads Epoch and does not move, and arrange its cleanup.
func Run(t *testing.T, open func(t *testing.T) Backend) {
	t.Helper()
	tests := map[string]func(contract){
		"devices":                contract.testDevices,
		"device-transitions":     contract.testDeviceTransitions,
		"list-devices":           contract.testListDevices,
		"vouchers":               contract.testVouchers,
		"voucher-nonce-reuse":    contract.testVoucherNonceReuse,
		"voucher-new-device":     contract.testVoucherNewDevice,
		"telemetry":              contract.testTelemetry,
		"audit":                  contract.testAudit,
		"audit-in-other-writes":  contract.testAuditInOtherWrites,
		"issuance":               contract.testIssuance,
		"issuance-errors":        contract.testIssuanceErrors,
		"serial-never-reused":    contract.testSerialNeverReused,
		"resolve-intents":        contract.testResolveIntents,
		"revoke":                 contract.testRevoke,
		"generations":            contract.testGenerations,
		"copy-out":               contract.testCopyOut,
		"dump-and-digest":        contract.testDumpAndDigest,
		"no-state-change-on-err": contract.testNoStateChangeOnError,
		"concurrent-writers":     contract.testConcurrentWriters,
		"cancelled-context":      contract.testCancelledContext,
	}
	for _, name := range slices.Sorted(maps.Keys(tests)) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tests[name](contract{t: t, b: open(t)})
		})
	}
}

// contract is one subtest's view: its T and its fresh backend.
type contract struct {
	t *testing.T
	b Backend
}

// Helpers.

// cmpOpts compares serials by value.
var cmpOpts = cmp.Comparer(func(a, b *big.Int) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Cmp(b) == 0
})

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
}

// result carries a call's two results to must.
type result[T any] struct {
	v   T
	err error
}

func try[T any](v T, err error) result[T] { return result[T]{v: v, err: err} }

// must fails the test on an error and returns the value.
func (r result[T]) must(t *testing.T) T {
	t.Helper()
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.v
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Key returns a device key for tests.
func Key(serial string) store.DeviceKey {
	return store.DeviceKey{Issuer: "6a1f0c", Serial: serial}
}

// NewSerial returns a fresh random serial as the CA makes them: a non-zero
// prefix byte and 128 random bits.
func NewSerial() *big.Int {
	b := make([]byte, 17)
	_, _ = rand.Read(b[1:])
	b[0] = 0x47
	return new(big.Int).SetBytes(b)
}

func event(typ string, kv ...string) store.Event {
	e := store.Event{Type: typ, Fields: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		e.Fields[kv[i]] = kv[i+1]
	}
	return e
}

func newDevice(t *testing.T, b Backend, serial string) store.DeviceKey {
	t.Helper()
	k := Key(serial)
	try(b.PutDevice(t.Context(), store.Device{Key: k, MASAURL: "https://masa.example"})).must(t)
	return k
}

// issue runs the whole issuance protocol and returns the serial and DER.
func issue(t *testing.T, b Backend, dev store.DeviceKey) (*big.Int, []byte) {
	t.Helper()
	s := NewSerial()
	der := fmt.Appendf(nil, "DER of %x", s)
	noErr(t, b.BeginIssuance(t.Context(), store.Intent{Serial: s, Device: dev, TBSHash: sha256.Sum256(der), Generation: "g1"}, event("issue-intent", "cert_serial", s.Text(16))))
	noErr(t, b.CompleteIssuance(t.Context(), store.Completion{Serial: s, DER: der, Device: dev, NotAfter: Epoch.AddDate(1, 0, 0)}, event("issue-success", "cert_serial", s.Text(16))))
	return s, der
}

func auditTypes(t *testing.T, b Backend) []string {
	t.Helper()
	var types []string
	for _, e := range try(b.Audit(t.Context(), 0, 1000)).must(t) {
		types = append(types, e.Type)
	}
	return types
}

// Tests.

func (ct contract) testDevices() {
	t, b := ct.t, ct.b
	ctx := t.Context()
	k := Key("SN-1")
	_, err := b.Device(ctx, k)
	wantErr(t, err, store.ErrNotFound)

	got := try(b.PutDevice(ctx, store.Device{Key: k, MASAURL: "https://masa.example"})).must(t)
	want := store.Device{Key: k, Status: store.DeviceNew, MASAURL: "https://masa.example", CreatedAt: Epoch, UpdatedAt: Epoch}
	if d := cmp.Diff(want, got, cmpOpts); d != "" {
		t.Fatalf("PutDevice (-want +got):\n%s", d)
	}
	if d := cmp.Diff(want, try(b.Device(ctx, k)).must(t), cmpOpts); d != "" {
		t.Fatalf("Device (-want +got):\n%s", d)
	}

	// A refresh changes the MASA URL only, never the status.
	try(b.TransitionDevice(ctx, k, "", store.DevicePendingApproval, "policy: ask")).must(t)
	got = try(b.PutDevice(ctx, store.Device{Key: k, Status: store.DeviceEnrolled, MASAURL: "https://masa2.example"})).must(t)
	if got.Status != store.DevicePendingApproval || got.MASAURL != "https://masa2.example" || got.StatusReason != "policy: ask" {
		t.Fatalf("refreshed device = %+v", got)
	}

	for name, d := range map[string]store.Device{
		"empty-issuer":   {Key: store.DeviceKey{Serial: "x"}},
		"empty-serial":   {Key: store.DeviceKey{Issuer: "x"}},
		"nul-in-serial":  {Key: store.DeviceKey{Issuer: "x", Serial: "a\x00b"}},
		"unknown-status": {Key: Key("SN-2"), Status: "sleeping"},
	} {
		_, err := b.PutDevice(ctx, d)
		if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: error = %v, want ErrInvalid", name, err)
		}
	}
	// The same serial under another issuer is another device.
	other := store.DeviceKey{Issuer: "ffee", Serial: "SN-1"}
	_, err = b.Device(ctx, other)
	wantErr(t, err, store.ErrNotFound)
}

func (ct contract) testDeviceTransitions() {
	t, b := ct.t, ct.b
	ctx := t.Context()
	k := newDevice(t, b, "SN-T")
	steps := []struct {
		name     string
		from, to store.DeviceStatus
		wantErr  error
	}{
		{name: "new-to-pending", to: store.DevicePendingApproval},
		{name: "pending-to-enrolled-refused", to: store.DeviceEnrolled, wantErr: store.ErrConflict},
		{name: "cas-wrong-from", from: store.DeviceNew, to: store.DeviceApproved, wantErr: store.ErrConflict},
		{name: "cas-right-from", from: store.DevicePendingApproval, to: store.DeviceApproved},
		{name: "approved-to-voucher", to: store.DeviceVoucherIssued},
		{name: "voucher-to-blocked", to: store.DeviceBlocked},
		{name: "blocked-to-enrolled-refused", to: store.DeviceEnrolled, wantErr: store.ErrConflict},
		{name: "blocked-to-new", to: store.DeviceNew},
		{name: "invalid-target", to: "flying", wantErr: store.ErrInvalid},
	}
	for _, s := range steps {
		d, err := b.TransitionDevice(ctx, k, s.from, s.to, s.name)
		if s.wantErr != nil {
			if !errors.Is(err, s.wantErr) {
				t.Fatalf("%s: error = %v, want %v", s.name, err, s.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if d.Status != s.to || d.StatusReason != s.name {
			t.Fatalf("%s: device = %+v", s.name, d)
		}
	}
	_, err := b.TransitionDevice(ctx, Key("nobody"), "", store.DeviceApproved, "")
	wantErr(t, err, store.ErrNotFound)
}

func (ct contract) testListDevices() {
	t, b := ct.t, ct.b
	ctx := t.Context()
	var all []string
	for i := range 7 {
		k := newDevice(t, b, fmt.Sprintf("SN-%02d", i))
		all = append(all, k.Serial)
		if i%2 == 0 {
			try(b.TransitionDevice(ctx, k, "", store.DevicePendingApproval, "")).must(t)
		}
	}
	var got []string
	f := store.DeviceFilter{Limit: 3}
	pages := 0
	for {
		p := try(b.ListDevices(ctx, f)).must(t)
		pages++
		for _, d := range p.Devices {
			got = append(got, d.Key.Serial)
		}
		if p.Next == "" {
			break
		}
		f.Cursor = p.Next
	}
	if d := cmp.Diff(all, got, cmpOpts); d != "" || pages != 3 {
		t.Fatalf("paged listing in %d pages (-want +got):\n%s", pages, d)
	}
	p := try(b.ListDevices(ctx, store.DeviceFilter{Status: store.DevicePendingApproval, Limit: 4})).must(t)
	if len(p.Devices) != 4 || p.Next != "" {
		t.Fatalf("pending filter: %d devices, next %q; want 4 and no next page", len(p.Devices), p.Next)
	}
	p = try(b.ListDevices(ctx, store.DeviceFilter{Serial: "SN-03"})).must(t)
	if len(p.Devices) != 1 || p.Devices[0].Key.Serial != "SN-03" {
		t.Fatalf("serial filter: %+v", p.Devices)
	}
	_, err := b.ListDevices(ctx, store.DeviceFilter{Cursor: "not hex"})
	wantErr(t, err, store.ErrInvalid)
}

func (ct contract) testVouchers() {
	t, b := ct.t, ct.b
	ctx := t.Context()
	k := Key("SN-V")
	v := store.Voucher{Device: k, Nonce: "n-1", MediaType: "application/voucher-cms+json", Signed: []byte("voucher-bytes"), RequestHash: sha256.Sum256([]byte("pvr"))}
	wantErr(t, b.PutVoucher(ctx, v), store.ErrNotFound) // device first
	newDevice(t, b, "SN-V")

	noErr(t, b.PutVoucher(ctx, v, event("voucher-delivered")))
	got := try(b.Voucher(ctx, k, "n-1")).must(t)
	want := v
	want.CreatedAt = Epoch
	if d := cmp.Diff(want, got, cmpOpts); d != "" {
		t.Fatalf("Voucher (-want +got):\n%s", d)
	}
	d := try(b.Device(ctx, k)).must(t)
	if d.Status != store.DeviceVoucherIssued || d.LastVoucher != (store.VoucherRef{Nonce: "n-1", At: Epoch}) {
		t.Fatalf("device after voucher = %+v", d)
	}
	use := try(b.NonceUse(ctx, "n-1")).must(t)
	if use.Device != k || use.RequestHash != v.RequestHash {
		t.Fatalf("NonceUse = %+v", use)
	}

	// An identical retry is a no-op; a different voucher for the nonce is a conflict.
	before := try(b.AuditCount(ctx)).must(t)
	noErr(t, b.PutVoucher(ctx, v))
	if n := try(b.AuditCount(ctx)).must(t); n != before {
		t.Fatalf("identical PutVoucher wrote audit events: %d → %d", before, n)
	}
	other := v
	other.Signed = []byte("another voucher")
	wantErr(t, b.PutVoucher(ctx, other), store.ErrConflict)

	_, err := b.Voucher(ctx, k, "n-2")
	wantErr(t, err, store.ErrNotFound)
	_, err = b.NonceUse(ctx, "n-2")
	wantErr(t, err, store.ErrNotFound)

	// Nonceless vouchers: one per device, the last one wins.
	nl := store.Voucher{Device: k, MediaType: "application/voucher-cms+json", Signed: []byte("nonceless-1")}
	noErr(t, b.PutVoucher(ctx, nl))
	nl.Signed = []byte("nonceless-2")
	noErr(t, b.PutVoucher(ctx, nl))
	if got := try(b.Voucher(ctx, k, "")).must(t); string(got.Signed) != "nonceless-2" {
		t.Fatalf("nonceless voucher = %q", got.Signed)
	}

	// A blocked device gets no voucher.
	try(b.TransitionDevice(ctx, k, "", store.DeviceBlocked, "audit-log policy")).must(t)
	v3 := v
	v3.Nonce = "n-3"
	wantErr(t, b.PutVoucher(ctx, v3), store.ErrConflict)
	_, err = b.Voucher(ctx, k, "n-3")
	wantErr(t, err, store.ErrNotFound)

	wantErr(t, b.PutVoucher(ctx, store.Voucher{Device: k, Nonce: "x", Signed: []byte("v")}), store.ErrInvalid)
}

// testVoucherNewDevice: a first voucher creates its device in the same
// transaction (Voucher.NewDevice), and a refused one leaves no device.
func (ct contract) testVoucherNewDevice() {
	t, b := ct.t, ct.b
	ctx := t.Context()
	k := Key("SN-NEW")
	v := store.Voucher{Device: k, Nonce: "n-new-1", MediaType: "application/voucher-cms+json", Signed: []byte("voucher"),
		RequestHash: sha256.Sum256([]byte("pvr-new")), NewDevice: &store.Device{MASAURL: "https://masa.example/.well-known/brski"}}
	noErr(t, b.PutVoucher(ctx, v, event("voucher-delivered")))
	d := try(b.Device(ctx, k)).must(t)
	if d.Status != store.DeviceVoucherIssued || d.MASAURL != v.NewDevice.MASAURL || d.LastVoucher.Nonce != "n-new-1" || !d.CreatedAt.Equal(Epoch) {
		t.Fatalf("device created with its first voucher = %+v", d)
	}
	// For a known device NewDevice changes nothing.
	v2 := v
	v2.Nonce, v2.RequestHash = "n-new-2", sha256.Sum256([]byte("pvr-new-2"))
	v2.NewDevice = &store.Device{MASAURL: "https://other.example/.well-known/brski"}
	noErr(t, b.PutVoucher(ctx, v2))
	if d := try(b.Device(ctx, k)).must(t); d.MASAURL != v.NewDevice.MASAURL {
		t.Fatalf("NewDevice rewrote a known device's MASA URL: %q", d.MASAURL)
	}

	// Another unknown device reusing that nonce is refused, and leaves
	// nothing behind: no device, no voucher, the same state digest.
	before := try(b.StateDigest(ctx)).must(t)
	thief := store.Voucher{Device: Key("SN-NEW-THIEF"), Nonce: "n-new-1", MediaType: "application/voucher-cms+json", Signed: []byte("v"),
		RequestHash: sha256.Sum256([]byte("other pvr")), NewDevice: &store.Device{MASAURL: "https://masa.example/.well-known/brski"}}
	wantErr(t, b.PutVoucher(ctx, thief), store.ErrNonceReused)
	_, err := b.Device(ctx, thief.Device)
	wantErr(t, err, store.ErrNotFound)
	if after := try(b.StateDigest(ctx)).must(t); after != before {
		t.Fatal("a refused first voucher changed the store")
	}
}

func (ct contract) testVoucherNonceReuse() {
	t, b := ct.t, ct.b
	ctx := t.Context()
	a, c := newDevice(t, b, "SN-A"), newDevice(t, b, "SN-C")
	v := store.Voucher{Device: a, Nonce: "shared", MediaType: "m", Signed: []byte("va"), RequestHash: sha256.Sum256([]byte("a"))}
	noErr(t, b.PutVoucher(ctx, v))

	// Another device with the same nonce.
	v2 := v
	v2.Device = c
	err := b.PutVoucher(ctx, v2)
	wantErr(t, err, store.ErrNonceReused)
	wantErr(t, err, store.ErrConflict)
	// The same device, a different request.
	v3 := v
	v3.RequestHash = sha256.Sum256([]byte("other request"))
	wantErr(t, b.PutVoucher(ctx, v3), store.ErrNonceReused)
	if d := try(b.Device(ctx, c)).must(t); d.Status != store.DeviceNew {
		t.Fatalf("refused voucher changed the device: %+v", d)
	}
}

func (ct contract) testTelemetry() {
	t, b := ct.t, ct.b
	ctx := t.Context()
	k, other := Key("SN-TL"), Key("SN-TL2")
	s1 := try(b.AppendTelemetry(ctx, store.Telemetry{Kind: store.TelemetryVoucherStatus, Device: k, Raw: []byte(`{"version":1,"status":true}`)})).must(t)
	try(b.AppendTelemetry(ctx, store.Telemetry{Kind: store.TelemetryEnrollStatus, Device: other, Raw: []byte(`{}`)})).must(t)
	s3 := try(b.AppendTelemetry(ctx, store.Telemetry{Kind: store.TelemetryEnrollStatus, Device: k, Raw: []byte(`{"version":1,"status":true}`), ClientCertMatched: true}, event("enrollstatus-received"))).must(t)
	if s3 <= s1 {
		t.Fatalf("sequence went from %d to %d", s1, s3)
	}
	got := try(b.TelemetryFor(ctx, k)).must(t)
	want := []store.Telemetry{
		{Seq: s1, Kind: store.TelemetryVoucherStatus, Device: k, Raw: []byte(`{"version":1,"status":true}`), Time: Epoch},
		{Seq: s3, Kind: store.TelemetryEnrollStatus, Device: k, Raw: []byte(`{"version":1,"status":true}`), ClientCertMatched: true, Time: Epoch},
	}
	if d := cmp.Diff(want, got, cmpOpts); d != "" {
		t.Fatalf("TelemetryFor (-want +got):\n%s", d)
	}
	if got := try(b.TelemetryFor(ctx, Key("none"))).must(t); len(got) != 0 {
		t.Fatalf("telemetry of an unknown device: %+v", got)
	}
	_, err := b.AppendTelemetry(ctx, store.Telemetry{Kind: "status", Device: k})
	wantErr(t, err, store.ErrInvalid)
}

func (ct contract) testAudit() {
	t, b := ct.t, ct.b
	ctx := t.Context()
	if head := try(b.VerifyAuditChain(ctx)).must(t); head.Count != 0 {
		t.Fatalf("empty log head = %+v", head)
	}
	var stored []store.Event
	for i := range 3 {
		e := event("vr-received", "device", fmt.Sprint(i))
		if i == 1 {
			e.Time = Epoch.Add(-time.Hour).Add(300 * time.Millisecond)
		}
		stored = append(stored, try(b.AppendAudit(ctx, e)).must(t))
	}
	for i, e := range stored {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
		if i > 0 && e.PrevHash != stored[i-1].Hash {
			t.Fatalf("event %d does not chain to %d", e.Seq, e.Seq-1)
		}
	}
	if stored[0].PrevHash != ([32]byte{}) || !stored[0].Time.Equal(Epoch) {
		t.Fatalf("first event = %+v", stored[0])
	}
	if want := Epoch.Add(-time.Hour); !stored[1].Time.Equal(want) {
		t.Fatalf("explicit time stored as %s, want %s (UTC, whole seconds)", stored[1].Time, want)
	}
	got := try(b.Audit(ctx, 2, 1)).must(t)
	if d := cmp.Diff(stored[1:2], got, cmpOpts); d != "" {
		t.Fatalf("Audit(2, 1) (-want +got):\n%s", d)
	}
	if n := try(b.AuditCount(ctx)).must(t); n != 3 {
		t.Fatalf("AuditCount = %d", n)
	}
	head := try(b.VerifyAuditChain(ctx)).must(t)
	if head.Count != 3 || head.Hash != stored[2].Hash {
		t.Fatalf("head = %+v, want count 3 and the last hash", head)
	}
	_, err := b.AppendAudit(ctx, store.Event{})
	wantErr(t, err, store.ErrInvalid)
}

func (ct contract) testAuditInOtherWrites() {
	t, b := ct.t, ct.b
	ctx := t.Context()
	k := Key("SN-AU")
	try(b.PutDevice(ctx, store.Device{Key: k}, event("device-seen"))).must(t)
	try(b.TransitionDevice(ctx, k, "", store.DeviceDenied, "operator", event("device-denied"), event("operator-action"))).must(t)
	// A refused write appends nothing.
	_, err := b.TransitionDevice(ctx, k, "", store.DeviceEnrolled, "", event("must-not-appear"))
	wantErr(t, err, store.ErrConflict)
	want := []string{"device-seen", "device-denied", "operator-action"}
	if d := cmp.Diff(want, auditTypes(t, b), cmpOpts); d != "" {
		t.Fatalf("audit (-want +got):\n%s", d)
	}
	try(b.VerifyAuditChain(ctx)).must(t)
}

func (ct contract) testIssuance() {
	t, b := ct.t, ct.b
	ctx := t.Context()
	k := newDevice(t, b, "SN-I")
	s := NewSerial()
	der := []byte("certificate DER")
	in := store.Intent{Serial: s, Device: k, TBSHash: sha256.Sum256([]byte("tbs")), Generation: "g1"}
	noErr(t, b.BeginIssuance(ctx, in, event("issue-intent")))

	open := try(b.OpenIntents(ctx)).must(t)
	wantIn := in
	wantIn.Status, wantIn.CreatedAt = store.IntentOpen, Epoch
	if d := cmp.Diff([]store.Intent{wantIn}, open, cmpOpts); d != "" {
		t.Fatalf("OpenIntents (-want +got):\n%s", d)
	}
	_, err := b.Certificate(ctx, s)
	wantErr(t, err, store.ErrNotFound)

	noErr(t, b.CompleteIssuance(ctx, store.Completion{Serial: s, DER: der, Device: k, NotAfter: Epoch.AddDate(1, 0, 0)}, event("issue-success")))
	cert := try(b.Certificate(ctx, s)).must(t)
	wantCert := store.Certificate{Serial: s, DER: der, Device: k, Generation: "g1", NotAfter: Epoch.AddDate(1, 0, 0), IssuedAt: Epoch, Status: store.CertIssued}
	if d := cmp.Diff(wantCert, cert, cmpOpts); d != "" {
		t.Fatalf("Certificate (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]store.Certificate{wantCert}, try(b.CertificatesFor(ctx, k)).must(t), cmpOpts); d != "" {
		t.Fatalf("CertificatesFor (-want +got):\n%s", d)
	}
	dev := try(b.Device(ctx, k)).must(t)
	if dev.Status != store.DeviceEnrolled || len(dev.LDevIDs) != 1 || dev.LDevIDs[0].Cmp(s) != 0 {
		t.Fatalf("device after issuance = %+v", dev)
	}
	if got := try(b.Intent(ctx, s)).must(t); got.Status != store.IntentCompleted || !got.ResolvedAt.Equal(Epoch) {
		t.Fatalf("intent after completion = %+v", got)
	}
	if open := try(b.OpenIntents(ctx)).must(t); len(open) != 0 {
		t.Fatalf("open intents after completion: %+v", open)
	}
	if d := cmp.Diff([]string{"issue-intent", "issue-success"}, auditTypes(t, b), cmpOpts); d != "" {
		t.Fatalf("audit (-want +got):\n%s", d)
	}
	// A retried completion with the same bytes is answered without writing.
	noErr(t, b.CompleteIssuance(ctx, store.Completion{Serial: s, DER: der, Device: k}, event("issue-success")))
	if n := try(b.AuditCount(ctx)).must(t); n != 2 {
		t.Fatalf("retried completion appended audit: count %d", n)
	}
	// Re-enrollment: a second certificate for the same device.
	s2, _ := issue(t, b, k)
	dev = try(b.Device(ctx, k)).must(t)
	if len(dev.LDevIDs) != 2 || !slices.ContainsFunc(dev.LDevIDs, func(x *big.Int) bool { return x.Cmp(s2) == 0 }) {
		t.Fatalf("LDevIDs after re-enrollment = %v", dev.LDevIDs)
	}
	if n := len(try(b.CertificatesFor(ctx, k)).must(t)); n != 2 {
		t.Fatalf("CertificatesFor after re-enrollment: %d", n)
	}
	// EST without BRSKI: an unknown device is created at completion.
	est := Key("SN-EST-only")
	issue(t, b, est)
	if d := try(b.Device(ctx, est)).must(t); d.Status != store.DeviceEnrolled || len(d.LDevIDs) != 1 {
		t.Fatalf("EST-only device = %+v", d)
	}
}

func (ct contract) testIssuanceErrors() {
	t, b := ct.t, ct.b
	ctx := t.Context()
	k := newDevice(t, b, "SN-E")
	s := NewSerial()
	der := []byte("der")
	success := event("issue-success")

	tooLong := new(big.Int).Lsh(big.NewInt(1), 8*20-1) // 20 octets with the top bit set: 21 in DER
	for name, serial := range map[string]*big.Int{"nil": nil, "zero": big.NewInt(0), "negative": big.NewInt(-5), "21-octets": tooLong} {
		err := b.BeginIssuance(ctx, store.Intent{Serial: serial, Device: k, Generation: "g1"})
		if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("serial %s: error = %v, want ErrInvalid", name, err)
		}
	}
	wantErr(t, b.BeginIssuance(ctx, store.Intent{Serial: s, Device: k}), store.ErrInvalid) // no generation
	wantErr(t, b.CompleteIssuance(ctx, store.Completion{Serial: s, DER: der, Device: k}, success), store.ErrNotFound)

	noErr(t, b.BeginIssuance(ctx, store.Intent{Serial: s, Device: k, Generation: "g1"}))
	wantErr(t, b.CompleteIssuance(ctx, store.Completion{Serial: s, DER: der, Device: k}), store.ErrInvalid) // no audit event (C7)
	wantErr(t, b.CompleteIssuance(ctx, store.Completion{Serial: s, Device: k}, success), store.ErrInvalid)
	wantErr(t, b.CompleteIssuance(ctx, store.Completion{Serial: s, DER: der, Device: Key("someone else")}, success), store.ErrConflict)
	noErr(t, b.CompleteIssuance(ctx, store.Completion{Serial: s, DER: der, Device: k}, success))
	wantErr(t, b.CompleteIssuance(ctx, store.Completion{Serial: s, DER: []byte("other der"), Device: k}, success), store.ErrConflict)
	wantErr(t, b.AbandonIssuance(ctx, s, "late"), store.ErrConflict)
	wantErr(t, b.AbandonIssuance(ctx, NewSerial(), "unknown"), store.ErrNotFound)

	// A blocked device: no intent, and an intent opened before the block cannot complete.
	s2 := NewSerial()
	noErr(t, b.BeginIssuance(ctx, store.Intent{Serial: s2, Device: k, Generation: "g1"}))
	try(b.TransitionDevice(ctx, k, "", store.DeviceBlocked, "policy")).must(t)
	wantErr(t, b.BeginIssuance(ctx, store.Intent{Serial: NewSerial(), Device: k, Generation: "g1"}), store.ErrConflict)
	wantErr(t, b.CompleteIssuance(ctx, store.Completion{Serial: s2, DER: der, Device: k}, success), store.ErrConflict)
	_, err := b.Certificate(ctx, s2)
	wantErr(t, err, store.ErrNotFound)
	noErr(t, b.AbandonIssuance(ctx, s2, "device blocked"))
	noErr(t, b.AbandonIssuance(ctx, s2, "device blocked")) // idempotent
	wantErr(t, b.CompleteIssuance(ctx, store.Completion{Serial: s2, DER: der, Device: k}, success), store.ErrConflict)
}

func (ct contract) testSerialNeverReused() {
	t, b := ct.t, ct.b
	ctx := t.Context()
	k := newDevice(t, b, "SN-R")
	completed, _ := issue(t, b, k)
	open, abandoned := NewSerial(), NewSerial()
	noErr(t, b.BeginIssuance(ctx, store.Intent{Serial: open, Device: k, Generation: "g1"}))
	noErr(t, b.BeginIssuance(ctx, store.Intent{Serial: abandoned, Device: k, Generation: "g1"}))
	noErr(t, b.AbandonIssuance(ctx, abandoned, "sign failed"))
	for name, s := range map[string]*big.Int{"completed": completed, "open": open, "abandoned": abandoned} {
		// Same value, another *big.Int and another device: still refused.
		err := b.BeginIssuance(ctx, store.Intent{Serial: new(big.Int).Set(s), Device: Key("SN-other"), Generation: "g2"})
		if !errors.Is(err, store.ErrSerialExists) || !errors.Is(err, store.ErrConflict) {
			t.Errorf("%s serial: error = %v, want ErrSerialExists", name, err)
		}
	}
	in := try(b.Intent(ctx, abandoned)).must(t)
	if in.Status != store.IntentAbandoned || in.Reason != "sign failed" {
		t.Fatalf("abandoned intent = %+v", in)
	}
}

func (ct contract) testResolveIntents() {
	t, b := ct.t, ct.b
	ctx := t.Context()
	k := newDevice(t, b, "SN-RI")
	if r := try(b.ResolveIntents(ctx)).must(t); r != (store.Resolved{}) {
		t.Fatalf("nothing to resolve, got %+v", r)
	}
	done, _ := issue(t, b, k)
	a, c := NewSerial(), NewSerial()
	noErr(t, b.BeginIssuance(ctx, store.Intent{Serial: a, Device: k, Generation: "g1"}))
	noErr(t, b.BeginIssuance(ctx, store.Intent{Serial: c, Device: k, Generation: "g1"}))
	if n := len(try(b.OpenIntents(ctx)).must(t)); n != 2 {
		t.Fatalf("open intents = %d, want 2", n)
	}
	before := try(b.AuditCount(ctx)).must(t)
	if r := try(b.ResolveIntents(ctx)).must(t); r != (store.Resolved{Abandoned: 2}) {
		t.Fatalf("ResolveIntents = %+v, want 2 abandoned", r)
	}
	if open := try(b.OpenIntents(ctx)).must(t); len(open) != 0 {
		t.Fatalf("open after resolve: %+v", open)
	}
	for _, s := range []*big.Int{a, c} {
		if in := try(b.Intent(ctx, s)).must(t); in.Status != store.IntentAbandoned || in.Reason == "" {
			t.Fatalf("resolved intent = %+v", in)
		}
		wantErr(t, b.BeginIssuance(ctx, store.Intent{Serial: s, Device: k, Generation: "g1"}), store.ErrSerialExists)
	}
	if in := try(b.Intent(ctx, done)).must(t); in.Status != store.IntentCompleted {
		t.Fatalf("completed intent changed: %+v", in)
	}
	if n := try(b.AuditCount(ctx)).must(t); n != before+2 {
		t.Fatalf("audit grew by %d, want one %s per abandoned intent", n-before, store.EventIssueAbandoned)
	}
	if r := try(b.ResolveIntents(ctx)).must(t); r != (store.Resolved{}) {
		t.Fatalf("second ResolveIntents = %+v", r)
	}
}

func (ct contract) testRevoke() {
	t, b := ct.t, ct.b
	ctx := t.Context()
	k := newDevice(t, b, "SN-RV")
	s, _ := issue(t, b, k)
	wantErr(t, b.Revoke(ctx, s, 7), store.ErrInvalid)
	wantErr(t, b.Revoke(ctx, NewSerial(), 1), store.ErrNotFound)
	noErr(t, b.Revoke(ctx, s, 1, event("revoked")))
	c := try(b.Certificate(ctx, s)).must(t)
	if c.Status != store.CertRevoked || c.RevocationReason != 1 || !c.RevokedAt.Equal(Epoch) {
		t.Fatalf("revoked certificate = %+v", c)
	}
	wantErr(t, b.Revoke(ctx, s, 4), store.ErrConflict)
}

func (ct contract) testGenerations() {
	t, b := ct.t, ct.b
	ctx := t.Context()
	_, err := b.ActiveGeneration(ctx)
	wantErr(t, err, store.ErrNotFound)
	g1 := store.Generation{ID: "g1", Certificate: []byte("ca1"), KeyRef: "softkms:path=ca1.key", Active: true}
	noErr(t, b.PutGeneration(ctx, g1, event("ca-generation-created")))
	g2 := store.Generation{ID: "g2", Certificate: []byte("ca2"), KeyRef: "pkcs11:object=ca2", LinkCertificates: [][]byte{[]byte("old-with-new"), []byte("new-with-old")}, Active: true}
	noErr(t, b.PutGeneration(ctx, g2))

	g1.Active, g1.CreatedAt, g2.CreatedAt = false, Epoch, Epoch
	if d := cmp.Diff([]store.Generation{g1, g2}, try(b.Generations(ctx)).must(t), cmpOpts); d != "" {
		t.Fatalf("Generations (-want +got):\n%s", d)
	}
	if got := try(b.ActiveGeneration(ctx)).must(t); got.ID != "g2" {
		t.Fatalf("active generation = %s", got.ID)
	}
	for name, g := range map[string]store.Generation{
		"no-id":          {Certificate: []byte("c"), KeyRef: "k"},
		"no-certificate": {ID: "g3", KeyRef: "k"},
		"no-key-ref":     {ID: "g3", Certificate: []byte("c")},
		"key-material":   {ID: "g3", Certificate: []byte("c"), KeyRef: "-----BEGIN EC PRIVATE KEY-----\nMHc..."}, //nolint:gosec // G101: a truncated fake key, to check it is refused
	} {
		if err := b.PutGeneration(ctx, g); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: error = %v, want ErrInvalid", name, err)
		}
	}
}

func (ct contract) testCopyOut() {
	t, b := ct.t, ct.b
	ctx := t.Context()
	k := newDevice(t, b, "SN-CP")
	v := store.Voucher{Device: k, Nonce: "n", MediaType: "m", Signed: []byte("voucher")}
	noErr(t, b.PutVoucher(ctx, v))
	v.Signed[0] = 'X' // the caller's slice after the call
	got := try(b.Voucher(ctx, k, "n")).must(t)
	if string(got.Signed) != "voucher" {
		t.Fatalf("store kept the caller's slice: %q", got.Signed)
	}
	got.Signed[0] = 'Y'
	if again := try(b.Voucher(ctx, k, "n")).must(t); string(again.Signed) != "voucher" {
		t.Fatalf("mutating a returned voucher changed the store: %q", again.Signed)
	}

	s, der := issue(t, b, k)
	c := try(b.Certificate(ctx, s)).must(t)
	c.DER[0] ^= 0xff
	c.Serial.SetInt64(1)
	if again := try(b.Certificate(ctx, s)).must(t); !bytes.Equal(again.DER, der) || again.Serial.Cmp(s) != 0 {
		t.Fatalf("mutating a returned certificate changed the store")
	}
	d := try(b.Device(ctx, k)).must(t)
	d.LDevIDs[0].SetInt64(1)
	if again := try(b.Device(ctx, k)).must(t); again.LDevIDs[0].Cmp(s) != 0 {
		t.Fatalf("mutating a returned device changed the store")
	}

	e := event("x", "k", "v")
	stored := try(b.AppendAudit(ctx, e)).must(t)
	e.Fields["k"] = "changed"
	stored.Fields["k"] = "changed too"
	last := try(b.Audit(ctx, stored.Seq, 1)).must(t)
	if last[0].Fields["k"] != "v" {
		t.Fatalf("audit fields aliased: %v", last[0].Fields)
	}

	gen := store.Generation{ID: "g", Certificate: []byte("ca"), KeyRef: "k", LinkCertificates: [][]byte{[]byte("link")}}
	noErr(t, b.PutGeneration(ctx, gen))
	gen.LinkCertificates[0][0] = 'X'
	gs := try(b.Generations(ctx)).must(t)
	gs[0].Certificate[0] = 'X'
	if again := try(b.Generations(ctx)).must(t); string(again[0].Certificate) != "ca" || string(again[0].LinkCertificates[0]) != "link" {
		t.Fatalf("generation aliased: %+v", again[0])
	}
}

func (ct contract) testDumpAndDigest() {
	t, b := ct.t, ct.b
	ctx := t.Context()
	dump := func() []byte {
		var buf bytes.Buffer
		noErr(t, b.Dump(ctx, &buf))
		return buf.Bytes()
	}
	k := newDevice(t, b, "SN-D")
	issue(t, b, k)
	d1, d2 := dump(), dump()
	if !bytes.Equal(d1, d2) {
		t.Fatal("two dumps of the same state differ")
	}
	if !bytes.Contains(d1, []byte("bucket audit")) {
		t.Fatalf("dump lacks the audit bucket:\n%s", d1)
	}
	h1 := try(b.StateDigest(ctx)).must(t)
	try(b.AppendAudit(ctx, event("rejected", "reason", "test"))).must(t)
	if h2 := try(b.StateDigest(ctx)).must(t); h2 != h1 {
		t.Fatal("an audit event changed the state digest")
	}
	if bytes.Equal(d1, dump()) {
		t.Fatal("an audit event did not change the dump")
	}
	newDevice(t, b, "SN-D2")
	if h3 := try(b.StateDigest(ctx)).must(t); h3 == h1 {
		t.Fatal("a new device did not change the state digest")
	}
}

func (ct contract) testNoStateChangeOnError() {
	t, b := ct.t, ct.b
	ctx := t.Context()
	k := newDevice(t, b, "SN-N")
	s, _ := issue(t, b, k)
	v := store.Voucher{Device: k, Nonce: "n", MediaType: "m", Signed: []byte("v")}
	noErr(t, b.PutVoucher(ctx, v))
	h := try(b.StateDigest(ctx)).must(t)
	n := try(b.AuditCount(ctx)).must(t)
	bad := event("must-not-appear")
	refused := []error{
		b.BeginIssuance(ctx, store.Intent{Serial: s, Device: k, Generation: "g1"}, bad),
		b.CompleteIssuance(ctx, store.Completion{Serial: NewSerial(), DER: []byte("d"), Device: k}, bad),
		b.PutVoucher(ctx, store.Voucher{Device: Key("unknown"), Nonce: "n", MediaType: "m", Signed: []byte("v")}, bad),
		b.Revoke(ctx, NewSerial(), 0, bad),
	}
	_, err := b.TransitionDevice(ctx, k, "", store.DevicePendingApproval, "", bad)
	refused = append(refused, err)
	for i, err := range refused {
		if err == nil {
			t.Fatalf("refused write %d succeeded", i)
		}
	}
	if got := try(b.StateDigest(ctx)).must(t); got != h {
		t.Fatal("refused writes changed the state digest")
	}
	if got := try(b.AuditCount(ctx)).must(t); got != n {
		t.Fatalf("refused writes appended %d audit events", got-n)
	}
}

func (ct contract) testConcurrentWriters() {
	t, b := ct.t, ct.b
	ctx := t.Context()
	const workers, each = 16, 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen = map[string]bool{}
	)
	for w := range workers {
		wg.Go(func() {
			k := Key(fmt.Sprintf("SN-W%02d", w))
			for range each {
				s := NewSerial()
				der := s.Bytes()
				if err := b.BeginIssuance(ctx, store.Intent{Serial: s, Device: k, Generation: "g1"}, event("issue-intent")); err != nil {
					t.Error(err)
					return
				}
				if err := b.CompleteIssuance(ctx, store.Completion{Serial: s, DER: der, Device: k}, event("issue-success")); err != nil {
					t.Error(err)
					return
				}
				if _, err := b.AppendAudit(ctx, event("voucher-delivered")); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seen[s.Text(16)] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if len(seen) != workers*each {
		t.Fatalf("%d serials issued, want %d", len(seen), workers*each)
	}
	head := try(b.VerifyAuditChain(ctx)).must(t)
	if head.Count != 3*workers*each {
		t.Fatalf("audit count %d, want %d", head.Count, 3*workers*each)
	}
	for w := range workers {
		if n := len(try(b.CertificatesFor(ctx, Key(fmt.Sprintf("SN-W%02d", w)))).must(t)); n != each {
			t.Fatalf("worker %d: %d certificates, want %d", w, n, each)
		}
	}
}

func (ct contract) testCancelledContext() {
	t, b := ct.t, ct.b
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := b.AppendAudit(ctx, event("x"))
	wantErr(t, err, context.Canceled)
	_, err = b.Device(ctx, Key("x"))
	wantErr(t, err, context.Canceled)
	if n := try(b.AuditCount(t.Context())).must(t); n != 0 {
		t.Fatalf("a cancelled write was stored: count %d", n)
	}
}
