package registrar

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/internal/problem"
	"github.com/gatehouse-pki/gatehouse/internal/web"
	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/store"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

// ErrBadStatus reports a voucher_status or enrollstatus body that breaks
// its CDDL (RFC 8995 §5.7, §5.9.4) or the strict-JSON rules.
var ErrBadStatus = errors.New("malformed status report")

// MediaTypeCBOR carries voucher_status and enrollstatus over CoAP (cBRSKI:
// content format 60, the JSON form's map with the same text keys).
const MediaTypeCBOR = "application/cbor"

// maxStatusDepth bounds the nesting of a status report (reliability D3).
const maxStatusDepth = 8

// StatusReport is a voucher_status or enrollstatus body (RFC 8995 §5.7,
// §5.9.4): version and status are required, reason and reason-context
// optional; other members are ignored and listed in Unknown.
type StatusReport struct {
	// Version is the report's version; 1 today, more means an extended
	// format that a human should look at.
	Version uint64
	// Status reports success (true) or failure.
	Status bool
	// Reason is the human-readable reason, or "".
	Reason string
	// ReasonContext is the raw JSON object of reason-context, or nil.
	ReasonContext json.RawMessage
	// Unknown lists the member names the CDDL does not define.
	Unknown []string
}

// ParseStatus decodes a status report strictly: one JSON object, no
// duplicate member names at any depth, no case variants of the defined
// names (erratum 6834 fixed them as lowercase), nesting at most 8, no
// trailing data; version an unsigned integer, status a boolean, reason a
// string, reason-context an object. Errors wrap ErrBadStatus.
func ParseStatus(b []byte) (*StatusReport, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	d := &statusDecoder{dec: dec}
	rep, err := d.report()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadStatus, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: trailing data after the object", ErrBadStatus)
	}
	return rep, nil
}

type statusDecoder struct {
	dec *json.Decoder
}

var statusMembers = []string{"version", "status", "reason", "reason-context"}

func (d *statusDecoder) report() (*StatusReport, error) {
	tok, err := d.dec.Token()
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	rep := &StatusReport{}
	seen := map[string]bool{}
	var haveVersion, haveStatus bool
	for d.dec.More() {
		tok, err := d.dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := tok.(string)
		if seen[name] {
			return nil, fmt.Errorf("duplicate member %q", name)
		}
		seen[name] = true
		switch name {
		case "version":
			n, err := d.number()
			if err != nil {
				return nil, fmt.Errorf("version: %w", err)
			}
			rep.Version, haveVersion = n, true
		case "status":
			tok, err := d.dec.Token()
			if err != nil {
				return nil, err
			}
			v, ok := tok.(bool)
			if !ok {
				return nil, errors.New("status is not a boolean")
			}
			rep.Status, haveStatus = v, true
		case "reason":
			tok, err := d.dec.Token()
			if err != nil {
				return nil, err
			}
			v, ok := tok.(string)
			if !ok {
				return nil, errors.New("reason is not a string")
			}
			rep.Reason = v
		case "reason-context":
			var raw json.RawMessage
			if err := d.dec.Decode(&raw); err != nil {
				return nil, err
			}
			if len(raw) == 0 || raw[0] != '{' {
				return nil, errors.New("reason-context is not an object")
			}
			if err := checkStrict(raw, 2); err != nil {
				return nil, fmt.Errorf("reason-context: %w", err)
			}
			rep.ReasonContext = raw
		default:
			if slices.ContainsFunc(statusMembers, func(m string) bool { return strings.EqualFold(m, name) }) {
				return nil, fmt.Errorf("member %q is a case variant of a defined name", name)
			}
			var raw json.RawMessage
			if err := d.dec.Decode(&raw); err != nil {
				return nil, err
			}
			if err := checkStrict(raw, 2); err != nil {
				return nil, fmt.Errorf("member %q: %w", name, err)
			}
			rep.Unknown = append(rep.Unknown, name)
		}
	}
	if _, err := d.dec.Token(); err != nil { // the closing brace
		return nil, err
	}
	if !haveVersion || !haveStatus {
		return nil, errors.New("version and status are required")
	}
	return rep, nil
}

func (d *statusDecoder) number() (uint64, error) {
	tok, err := d.dec.Token()
	if err != nil {
		return 0, err
	}
	n, ok := tok.(json.Number)
	if !ok {
		return 0, errors.New("not a number")
	}
	v, err := strconv.ParseUint(string(n), 10, 64)
	if err != nil {
		return 0, errors.New("not an unsigned integer")
	}
	return v, nil
}

// checkStrict walks a JSON value starting at depth and refuses duplicate
// member names and nesting deeper than maxStatusDepth.
func checkStrict(raw []byte, depth int) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	type frame struct {
		obj   bool
		names map[string]bool
		key   bool // next token in an object is a name
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.obj && top.key {
			if name, ok := tok.(string); ok {
				if top.names[name] {
					return fmt.Errorf("duplicate member %q", name)
				}
				top.names[name] = true
				top.key = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if depth+len(stack) > maxStatusDepth {
				return fmt.Errorf("nested deeper than %d", maxStatusDepth)
			}
			if top != nil && top.obj {
				top.key = true
			}
			stack = append(stack, &frame{obj: tok == json.Delim('{'), names: map[string]bool{}, key: tok == json.Delim('{')})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		default:
			if top != nil && top.obj {
				top.key = true
			}
		}
	}
}

// StatusInput is a voucher_status or enrollstatus report as a transport
// received it: JSON over HTTPS (RFC 8995 §5.7, §5.9.4), CBOR over CoAP
// (cBRSKI: the same map with the same text keys).
type StatusInput struct {
	// Kind says which report it is.
	Kind store.TelemetryKind
	// Body reads the report; at most MaxBodyBytes are read.
	Body io.Reader
	// MediaType is application/json or application/cbor, parameters
	// allowed; anything else is problem.UnsupportedMedia.
	MediaType string
	// PeerCertificates is the client's chain from the (D)TLS handshake,
	// leaf first: the device's IDevID, or the LDevID it just enrolled;
	// none is problem.Unauthorized.
	PeerCertificates []*x509.Certificate
}

// handleVoucherStatus serves POST /.well-known/brski/voucher_status (RFC
// 8995 §5.7).
func (s *Service) handleVoucherStatus(w http.ResponseWriter, r *http.Request) error {
	return s.handleStatus(w, r, store.TelemetryVoucherStatus)
}

// handleEnrollStatus serves POST /.well-known/brski/enrollstatus (RFC 8995
// §5.9.4).
func (s *Service) handleEnrollStatus(w http.ResponseWriter, r *http.Request) error {
	return s.handleStatus(w, r, store.TelemetryEnrollStatus)
}

// handleStatus is the HTTPS adapter of ReportStatus.
func (s *Service) handleStatus(w http.ResponseWriter, r *http.Request, kind store.TelemetryKind) error {
	var certs []*x509.Certificate
	if r.TLS != nil {
		certs = r.TLS.PeerCertificates
	}
	err := s.ReportStatus(r.Context(), StatusInput{
		Kind:             kind,
		Body:             http.MaxBytesReader(w, r.Body, MaxBodyBytes),
		MediaType:        r.Header.Get("Content-Type"),
		PeerCertificates: certs,
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// ReportStatus records a pledge's voucher_status or enrollstatus report
// (RFC 8995 §5.7, §5.9.4): the client is authenticated (401 without a
// certificate), the body is read (415, 413) and parsed strictly (JSON by
// ParseStatus, CBOR by ParseStatusCBOR), stored unchanged with whether the
// client certificate matched a known device, and audited; a version above 1
// adds an alert. After a voucher_status the MASA audit log is fetched and
// checked before ReportStatus returns (see CheckAuditLog). Errors are
// *problem.Error for the edges to map.
func (s *Service) ReportStatus(ctx context.Context, in StatusInput) error {
	peer, err := s.peerFrom(ctx, in.PeerCertificates)
	if err != nil {
		return err
	}
	mt, err := mediaTypeIn(in.MediaType, MediaTypeJSON, MediaTypeCBOR)
	if err != nil {
		return err
	}
	body, err := readBody(in.Body)
	if err != nil {
		return err
	}
	return s.telemetry(ctx, peer, in.Kind, body, mt)
}

// telemetry records a report of media type mt from an authenticated peer.
func (s *Service) telemetry(ctx context.Context, peer *Peer, kind store.TelemetryKind, body []byte, mt string) error {
	var (
		key    store.DeviceKey
		serial string
	)
	switch {
	case peer.Kind == PeerIDevID:
		var err error
		if serial, err = serialOf(peer, &s.mfgs[peer.Manufacturer]); err != nil {
			return err
		}
		key = DeviceKeyFor(peer.Leaf, serial)
	case peer.Kind == PeerLDevID && !peer.Revoked && !peer.Expired:
		// RFC 8995 §5.9.4: after a successful enrolment the pledge reports
		// over a new connection authenticated with its new LDevID.
		key, serial = peer.Device, peer.Device.Serial
	default:
		return problem.New(problem.Forbidden, nil, "a status report needs the device's IDevID or a valid LDevID")
	}
	ev := web.EventFrom(ctx)
	ev.Add(slog.String("pledge_serial", serial), slog.String("telemetry", string(kind)))
	parse := ParseStatus
	if mt == MediaTypeCBOR {
		parse = ParseStatusCBOR
	}
	rep, err := parse(body)
	if err != nil {
		return problem.New(problem.BadRequest, err, "the status report is malformed: %v", err)
	}
	if len(rep.Unknown) > 0 {
		// RFC 8995 §5.7: unknown fields are logged and ignored.
		ev.Add(slog.Any("unknown_members", rep.Unknown))
	}
	dev, derr := s.db.Device(ctx, key)
	matched := derr == nil
	typ := audit.VoucherStatus
	if kind == store.TelemetryEnrollStatus {
		typ = audit.EnrollStatus
	}
	alert := ""
	if rep.Version > 1 {
		// RFC 8995 §5.7: a newer version is logged and a human alerted.
		alert = "unknown-version"
	}
	fields := []string{"pledge_serial", serial, "device", key.String(), "version", strconv.FormatUint(rep.Version, 10),
		"status", strconv.FormatBool(rep.Status), "reason", truncate(rep.Reason, 256), "alert", alert,
		"client_cert_matched", strconv.FormatBool(matched), "client_cert", peerKindName(peer.Kind), "media_type", mt}
	tel := store.Telemetry{Kind: kind, Device: key, Raw: body, ClientCertMatched: matched}
	events := []store.Event{audit.New(typ, fields...)}
	var blockReason string
	var checkErr error
	if kind == store.TelemetryVoucherStatus && matched && dev.Status == store.DeviceVoucherIssued {
		// RFC 8995 §5.8: the registrar SHOULD fetch the audit log now. It is
		// fetched before the report is stored so that a passed (or
		// unavailable) check is recorded in the report's own transaction:
		// one durable commit instead of two, both still before the answer,
		// the report's event first. A report lost to a crash during the
		// fetch was never answered. A failed check blocks the device in a
		// transaction of its own, after the report, as before.
		var checked store.Event
		checked, blockReason, checkErr = s.auditLogCheck(ctx, key)
		if checkErr == nil && blockReason == "" {
			events = append(events, checked)
		}
	}
	if _, err := s.db.AppendTelemetry(ctx, tel, events...); err != nil {
		return fmt.Errorf("store telemetry: %w", err)
	}
	if checkErr != nil {
		return checkErr
	}
	if blockReason != "" {
		return s.block(ctx, key, blockReason)
	}
	return nil
}

func serialOf(peer *Peer, m *manufacturer) (string, error) {
	id, err := pki.SerialNumber(peer.Leaf, m.IDevID.SerialFallback)
	if err != nil {
		return "", problem.New(problem.NotFound, err, "the IDevID carries no usable serial number")
	}
	return id, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// CheckAuditLog fetches the MASA audit log for a device with the registrar
// voucher-request of its last voucher and applies the policy of RFC 8995
// §5.8.3: an entry whose domainID is not one of this domain's, or a
// nonceless entry, blocks the device (EnrollAllowed then refuses it) and
// writes an auditlog-alert event. It runs synchronously, bounded by
// MASATimeout. A MASA that cannot be reached leaves the device as it is
// (an auditlog-checked event records the failure); it is not evidence of a
// takeover.
func (s *Service) CheckAuditLog(ctx context.Context, key store.DeviceKey) error {
	checked, blockReason, err := s.auditLogCheck(ctx, key)
	switch {
	case err != nil:
		return err
	case blockReason != "":
		return s.block(ctx, key, blockReason)
	}
	return s.audit.Record(ctx, checked)
}

// auditLogCheck is CheckAuditLog without its write: it fetches and checks
// the audit log and returns either the auditlog-checked event to record
// (passed, unavailable, or skipped) or the reason to block the device.
func (s *Service) auditLogCheck(ctx context.Context, key store.DeviceKey) (store.Event, string, error) {
	rec, ok := s.recalledRVR(key)
	if !ok {
		// The RVR is kept in memory only; after a restart the check is
		// skipped and says so.
		return audit.New(audit.AuditLogChecked, "device", key.String(), "pledge_serial", key.Serial, "result", "skipped: no voucher-request since start-up"), "", nil
	}
	m := &s.mfgs[rec.mfg]
	base, err := url.Parse(rec.base)
	if err != nil {
		return store.Event{}, "", fmt.Errorf("masa url: %w", err)
	}
	body, err := s.callMASA(ctx, m, base, "/requestauditlog", rec.rvr, rec.mediaType)
	if err != nil {
		web.EventFrom(ctx).Add(slog.String("auditlog_error", err.Error()))
		return audit.New(audit.AuditLogChecked, "device", key.String(), "pledge_serial", key.Serial, "result", "unavailable", "reason", problem.From(err).Detail), "", nil
	}
	s.metrics.masaRequests.WithLabelValues(masaOK).Inc()
	log, perr := voucher.ParseAuditLog(body)
	var reason string
	if perr != nil {
		reason = "audit log is malformed: " + perr.Error()
	} else {
		reason = s.auditLogViolation(log)
	}
	if reason != "" {
		return store.Event{}, reason, nil
	}
	return audit.New(audit.AuditLogChecked, "device", key.String(), "pledge_serial", key.Serial, "result", "ok", "events", strconv.Itoa(len(log.Events))), "", nil
}

// auditLogViolation returns why log breaks policy, or "".
func (s *Service) auditLogViolation(log *voucher.AuditLog) string {
	for _, e := range log.Events {
		if id, err := e.DomainIDBytes(); err != nil || !s.ca().domainIDs[string(id)] {
			return "audit log names a foreign domainID " + e.DomainID
		}
		if e.Nonce == "" {
			// RFC 8995 §5.8.3: nonceless entries are a reset-and-takeover
			// risk.
			return "audit log has a nonceless entry dated " + e.Date.UTC().Format(time.RFC3339)
		}
	}
	if log.Truncation.NoncelessDuplicates > 0 {
		return "audit log reports truncated nonceless entries"
	}
	return ""
}

func (s *Service) block(ctx context.Context, key store.DeviceKey, reason string) error {
	ev := audit.New(audit.AuditLogAlert, "device", key.String(), "pledge_serial", key.Serial, "reason", reason, "alert", "auditlog")
	if _, err := s.db.TransitionDevice(ctx, key, "", store.DeviceBlocked, reason, ev); err != nil {
		return fmt.Errorf("block device: %w", err)
	}
	web.EventFrom(ctx).Add(slog.String("auditlog_alert", reason))
	return nil
}

// EnrollAllowed reports whether EST may serve the device: it must have a
// voucher (voucher-issued or enrolled) and not be blocked by a failed
// audit-log check (RFC 8995 §5.8.3: "MUST then refuse any EST actions") or
// denied. The error is a *problem.Error of kind Forbidden.
func (s *Service) EnrollAllowed(ctx context.Context, key store.DeviceKey) error {
	return enrollAllowed(s.db.Device(ctx, key))
}

// enrollAllowed is EnrollAllowed's decision on a device record already
// read (dev and err as store.Device returned them).
func enrollAllowed(dev store.Device, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return problem.New(problem.Forbidden, err, "no voucher was issued for this device")
	case err != nil:
		return fmt.Errorf("read device: %w", err)
	}
	switch dev.Status {
	case store.DeviceVoucherIssued, store.DeviceEnrolled:
		return nil
	case store.DeviceBlocked:
		return problem.New(problem.Forbidden, nil, "device is blocked: %s", dev.StatusReason)
	}
	return problem.New(problem.Forbidden, nil, "device is %s, not voucher-issued", dev.Status)
}

// peerKindName names a peer kind in audit events.
func peerKindName(k PeerKind) string {
	switch k {
	case PeerIDevID:
		return "idevid"
	case PeerLDevID:
		return "ldevid"
	case PeerESTClient:
		return "est-client"
	}
	return "none"
}

// statusCBOR decodes CBOR status reports with the limits of reliability D3
// and D9: duplicate map keys refused at every depth, nesting at most
// maxStatusDepth, definite and indefinite lengths bounded, no tags, valid
// UTF-8 only.
var statusCBOR = func() cbor.DecMode {
	m, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  maxStatusDepth,
		MaxArrayElements: 256,
		MaxMapPairs:      256,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		UTF8:             cbor.UTF8RejectInvalid,
		IntDec:           cbor.IntDecConvertNone,
	}.DecMode()
	if err != nil {
		panic(err) // constant options
	}
	return m
}()

// ParseStatusCBOR decodes a CBOR status report (cBRSKI /vs and /es, content
// format 60): one map with the text keys of the JSON form, under the rules
// of ParseStatus (duplicate keys at any depth, case variants of the defined
// names, nesting over 8 and trailing data refused; version an unsigned
// integer, status a boolean, reason a text string, reason-context a map,
// whose keys may be of any type, as in cBRSKI's example). Members with
// other keys are listed in Unknown; ReasonContext stays nil. Errors wrap
// ErrBadStatus.
func ParseStatusCBOR(b []byte) (*StatusReport, error) {
	rep, err := parseStatusCBOR(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadStatus, err)
	}
	return rep, nil
}

func parseStatusCBOR(b []byte) (*StatusReport, error) {
	if len(b) == 0 || b[0]>>5 != 5 {
		return nil, errors.New("not a CBOR map")
	}
	// Decoded once whole, for the limits and duplicate keys at every depth.
	var whole map[any]any
	if err := statusCBOR.Unmarshal(b, &whole); err != nil {
		return nil, err
	}
	var members map[any]cbor.RawMessage
	if err := statusCBOR.Unmarshal(b, &members); err != nil {
		return nil, err
	}
	rep := &StatusReport{}
	var haveVersion, haveStatus bool
	for k, raw := range members {
		name, ok := k.(string)
		if !ok {
			rep.Unknown = append(rep.Unknown, fmt.Sprint(k))
			continue
		}
		var err error
		switch name {
		case "version":
			err = statusCBOR.Unmarshal(raw, &rep.Version)
			if err == nil && raw[0]>>5 != 0 {
				err = errors.New("not an unsigned integer")
			}
			haveVersion = true
		case "status":
			err = statusCBOR.Unmarshal(raw, &rep.Status)
			if err == nil && raw[0] != 0xf4 && raw[0] != 0xf5 {
				err = errors.New("not a boolean")
			}
			haveStatus = true
		case "reason":
			err = statusCBOR.Unmarshal(raw, &rep.Reason)
			if err == nil && raw[0]>>5 != 3 {
				err = errors.New("not a text string")
			}
		case "reason-context":
			if raw[0]>>5 != 5 {
				err = errors.New("not a map")
			}
		default:
			if slices.ContainsFunc(statusMembers, func(m string) bool { return strings.EqualFold(m, name) }) {
				return nil, fmt.Errorf("member %q is a case variant of a defined name", name)
			}
			rep.Unknown = append(rep.Unknown, name)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	if !haveVersion || !haveStatus {
		return nil, errors.New("version and status are required")
	}
	slices.Sort(rep.Unknown)
	return rep, nil
}
