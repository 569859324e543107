// Package audit is the append-only audit trail: the catalogue of event types,
// and a Recorder that writes each event durably to the store's hash-chained
// audit bucket and mirrors it, once committed, to a dedicated JSON log (its
// own file, separate from the request log).
//
// An event is written for every accept or refuse decision (with its policy
// reason), before and after every signature (registrar voucher-request,
// voucher, LDevID) with its outcome, and at start-up, shut-down and panic.
// Events carry serials, fingerprints and, for issued certificates, the hex
// DER; never a private key, password or token.
package audit

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"

	"github.com/gatehouse-pki/gatehouse/store"
)

// Event types. The names are stable: operators' tooling and the
// reconciliation checks of the reliability plan read them.
const (
	// Registrar, voucher phase.
	VRReceived       = "vr-received"       // a pledge voucher-request passed its checks
	VRRefused        = "vr-refused"        // a pledge voucher-request was refused (reason)
	DevicePending    = "device-pending"    // a pledge waits for operator approval
	DeviceApproved   = "device-approved"   // an operator approved a pledge
	DeviceDenied     = "device-denied"     // an operator denied a pledge
	RVRSigning       = "rvr-signing"       // before signing a registrar voucher-request
	RVRSigned        = "rvr-signed"        // after signing it (outcome)
	MASARequest      = "masa-request"      // a call to a MASA is about to be made
	MASAVoucher      = "masa-voucher"      // the MASA's voucher passed its checks
	MASARefused      = "masa-refused"      // the MASA's answer was refused or failed (reason)
	VoucherDelivered = "voucher-delivered" // a voucher was returned to a pledge
	VoucherCached    = "voucher-cached"    // an identical retry was answered from the store
	VoucherStatus    = "voucher-status"    // voucher_status telemetry received
	EnrollStatus     = "enroll-status"     // enrollstatus telemetry received
	AuditLogChecked  = "auditlog-checked"  // the MASA audit log was fetched and passed policy
	AuditLogAlert    = "auditlog-alert"    // the MASA audit log broke policy: a human must look

	// Issuance (the store writes issue-abandoned itself).
	IssueIntent  = "issue-intent"
	IssueSuccess = "issue-success"
	IssueFailure = "issue-failure"

	// MASA.
	MASAVoucherSigning = "masa-voucher-signing" // before the MASA signs a voucher
	MASAVoucherSigned  = "masa-voucher-signed"  // after (outcome)
	MASAClaimRefused   = "masa-claim-refused"   // a registrar's claim on a device was refused

	// Process lifecycle.
	Startup  = "startup"
	Shutdown = "shutdown"
	Panic    = "panic"
)

// appender is the store method the Recorder needs.
type appender interface {
	AppendAudit(ctx context.Context, e store.Event) (store.Event, error)
}

// committer is a store that reports every committed audit event, including
// those written inside its other transactions (store.DB.OnAudit).
type committer interface {
	OnAudit(fn func(store.Event))
}

// Recorder writes audit events.
type Recorder struct {
	store  appender
	file   *slog.Logger
	hooked bool // the store reports commits: mirror from its hook only
}

// NewRecorder returns a Recorder writing to s and mirroring to file (a JSON
// slog logger on the audit file; nil discards the mirror). When s reports
// its commits (store.DB does), every audit event it commits, whoever wrote
// it, is mirrored once, after its fsync; NewRecorder takes over that hook.
func NewRecorder(s appender, file *slog.Logger) *Recorder {
	if file == nil {
		file = slog.New(slog.DiscardHandler)
	}
	r := &Recorder{store: s, file: file}
	if c, ok := s.(committer); ok {
		c.OnAudit(func(e store.Event) { r.Mirror(context.Background(), e) })
		r.hooked = true
	}
	return r
}

// Open opens the append-only JSON audit file at path (created with mode
// 0600) and returns a Recorder writing to s and mirroring to that file, and
// the file to close when the process stops.
func Open(s appender, path string) (*Recorder, io.Closer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open audit file: %w", err)
	}
	return NewRecorder(s, slog.New(slog.NewJSONHandler(f, nil))), f, nil
}

// New builds an event of type typ from alternating key, value strings.
func New(typ string, kv ...string) store.Event {
	e := store.Event{Type: typ, Fields: make(map[string]string, len(kv)/2)}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			e.Fields[kv[i]] = kv[i+1]
		}
	}
	return e
}

// Record appends e durably to the store; it reaches the audit file once
// committed. The error is the store's: a caller that must not proceed
// without an audit record (before a signature) fails when it fails.
func (r *Recorder) Record(ctx context.Context, e store.Event) error {
	stored, err := r.store.AppendAudit(ctx, e)
	if err != nil {
		return fmt.Errorf("audit %s: %w", e.Type, err)
	}
	if !r.hooked {
		r.Mirror(ctx, stored)
	}
	return nil
}

// Mirror writes a committed event to the audit file. Recorders on a store
// that reports its commits call it themselves; call it directly only for a
// store that does not.
func (r *Recorder) Mirror(ctx context.Context, e store.Event) {
	attrs := []slog.Attr{
		slog.Uint64("seq", e.Seq),
		slog.Time("event_time", e.Time),
		slog.String("type", e.Type),
	}
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		attrs = append(attrs, slog.String(k, e.Fields[k]))
	}
	r.file.LogAttrs(ctx, slog.LevelInfo, "audit", attrs...)
}
