package voucher

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"
)

// The audit log (RFC 8995 §5.8.1) is the MASA's record of the vouchers it
// issued for a device. The MASA writes it; the registrar reads it and
// refuses EST to a device whose log names another domain (§5.8.3). Both use
// this one model and parser.

// Limits of ParseAuditLog.
const (
	// MaxAuditLogBytes caps an audit-log document (the registrar reads MASA
	// answers up to 64 KiB; reliability B10).
	MaxAuditLogBytes = 64 << 10
	// MaxAuditLogDepth caps JSON nesting (the RFC shape needs 3).
	MaxAuditLogDepth = 8
)

// ErrBadAuditLog reports an audit-log document ParseAuditLog refuses. It
// wraps ErrMalformed.
var ErrBadAuditLog = fmt.Errorf("%w: audit log", ErrMalformed)

// AuditLog is the RFC 8995 §5.8.1 audit-log response.
type AuditLog struct {
	// Version is the format version; 1 for the RFC shape.
	Version int
	// Events are the vouchers issued for the device, oldest first.
	Events []AuditEvent
	// Truncation counts events the MASA left out (all zero: none).
	Truncation AuditTruncation
}

// AuditEvent is one issued voucher in an audit log.
type AuditEvent struct {
	// Date is when the voucher was issued.
	Date time.Time
	// DomainID identifies the domain the voucher pinned (RFC 8995 §5.8.2);
	// highway's "registrarID" is read into it.
	DomainID string
	// Nonce is the voucher's nonce text; "" for a nonceless voucher (JSON
	// null).
	Nonce string
	// Assertion is the voucher's assertion; "" when the MASA omitted it
	// (highway does).
	Assertion Assertion
	// Truncated counts identical events left out after this one.
	Truncated int
}

// AuditTruncation is the "truncation" member: counts of events left out.
type AuditTruncation struct {
	// NoncedDuplicates is "nonced duplicates".
	NoncedDuplicates int
	// NoncelessDuplicates is "nonceless duplicates".
	NoncelessDuplicates int
	// Arbitrary is "arbitrary".
	Arbitrary int
}

// IsZero reports whether nothing was truncated.
func (t AuditTruncation) IsZero() bool { return t == AuditTruncation{} }

// MarshalJSON encodes l in the RFC 8995 §5.8.1 shape: numbers as JSON
// numbers, nonce null when nonceless, truncation and truncated omitted when
// zero, assertion omitted when empty.
func (l *AuditLog) MarshalJSON() ([]byte, error) {
	type event struct {
		Date      string  `json:"date"`
		DomainID  string  `json:"domainID"`
		Nonce     *string `json:"nonce"`
		Assertion string  `json:"assertion,omitempty"`
		Truncated int     `json:"truncated,omitempty"`
	}
	type truncation struct {
		Nonced    int `json:"nonced duplicates,omitempty"`
		Nonceless int `json:"nonceless duplicates,omitempty"`
		Arbitrary int `json:"arbitrary,omitempty"`
	}
	type doc struct {
		Version    int         `json:"version"`
		Events     []event     `json:"events"`
		Truncation *truncation `json:"truncation,omitempty"`
	}
	d := doc{Version: l.Version, Events: make([]event, 0, len(l.Events))}
	for _, e := range l.Events {
		ev := event{Date: e.Date.Format(time.RFC3339Nano), DomainID: e.DomainID, Assertion: string(e.Assertion), Truncated: e.Truncated}
		if e.Nonce != "" {
			ev.Nonce = &e.Nonce
		}
		d.Events = append(d.Events, ev)
	}
	if !l.Truncation.IsZero() {
		d.Truncation = &truncation{l.Truncation.NoncedDuplicates, l.Truncation.NoncelessDuplicates, l.Truncation.Arbitrary}
	}
	return json.Marshal(d)
}

// ParseAuditLog decodes an audit-log response (RFC 8995 §5.8.1). Besides the
// RFC shape it accepts the interop variants of the standards digest §1.12:
// numbers written as strings (the RFC's own example), "registrarID" instead
// of "domainID" and a missing assertion (highway), a missing nonce (read as
// null). It is strict otherwise: at most MaxAuditLogBytes and
// MaxAuditLogDepth, no duplicate member names anywhere, version and events
// present, each event with an RFC 3339 date and a domainID, a known
// assertion when one is given, no trailing data. Unknown members are
// ignored. Failures wrap ErrBadAuditLog.
func ParseAuditLog(b []byte) (*AuditLog, error) {
	if len(b) > MaxAuditLogBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrBadAuditLog, len(b), MaxAuditLogBytes)
	}
	if err := checkJSONShape(b); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadAuditLog, err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil || top == nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrBadAuditLog)
	}
	l := &AuditLog{}
	var err error
	raw, ok := top["version"]
	if !ok {
		return nil, fmt.Errorf("%w: version is missing", ErrBadAuditLog)
	}
	if l.Version, err = jsonUint(raw); err != nil || l.Version < 1 {
		return nil, fmt.Errorf("%w: version: want a positive integer", ErrBadAuditLog)
	}
	raw, ok = top["events"]
	if !ok {
		return nil, fmt.Errorf("%w: events is missing", ErrBadAuditLog)
	}
	var events []json.RawMessage
	if err := json.Unmarshal(raw, &events); err != nil || events == nil {
		return nil, fmt.Errorf("%w: events is not an array", ErrBadAuditLog)
	}
	l.Events = make([]AuditEvent, 0, len(events))
	for i, er := range events {
		e, err := parseAuditEvent(er)
		if err != nil {
			return nil, fmt.Errorf("%w: event %d: %w", ErrBadAuditLog, i, err)
		}
		l.Events = append(l.Events, e)
	}
	if raw, ok := top["truncation"]; ok {
		var tr map[string]json.RawMessage
		if err := json.Unmarshal(raw, &tr); err != nil || tr == nil {
			return nil, fmt.Errorf("%w: truncation is not an object", ErrBadAuditLog)
		}
		for name, dst := range map[string]*int{
			"nonced duplicates":    &l.Truncation.NoncedDuplicates,
			"nonceless duplicates": &l.Truncation.NoncelessDuplicates,
			"arbitrary":            &l.Truncation.Arbitrary,
		} {
			if v, ok := tr[name]; ok {
				if *dst, err = jsonUint(v); err != nil {
					return nil, fmt.Errorf("%w: truncation %q: %w", ErrBadAuditLog, name, err)
				}
			}
		}
	}
	return l, nil
}

func parseAuditEvent(raw json.RawMessage) (AuditEvent, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return AuditEvent{}, errors.New("not an object")
	}
	var e AuditEvent
	date, err := jsonString(m["date"])
	if err != nil {
		return AuditEvent{}, fmt.Errorf("date: %w", err)
	}
	if e.Date, err = time.Parse(time.RFC3339Nano, date); err != nil {
		return AuditEvent{}, errors.New("date is not RFC 3339")
	}
	d, hasD := m["domainID"]
	r, hasR := m["registrarID"]
	switch {
	case hasD:
		e.DomainID, err = jsonString(d)
		if err == nil && hasR {
			var alt string
			if alt, err = jsonString(r); err == nil && alt != e.DomainID {
				err = errors.New("domainID and registrarID differ")
			}
		}
	case hasR:
		e.DomainID, err = jsonString(r)
	default:
		err = errors.New("missing")
	}
	if err == nil && e.DomainID == "" {
		err = errors.New("empty")
	}
	if err != nil {
		return AuditEvent{}, fmt.Errorf("domainID: %w", err)
	}
	if n, ok := m["nonce"]; ok && !bytes.Equal(bytes.TrimSpace(n), []byte("null")) {
		if e.Nonce, err = jsonString(n); err != nil || e.Nonce == "" {
			return AuditEvent{}, errors.New("nonce: want a non-empty string or null")
		}
	}
	if a, ok := m["assertion"]; ok {
		s, err := jsonString(a)
		if err != nil || !Assertion(s).IsValid() {
			return AuditEvent{}, errors.New("assertion: want a defined assertion value")
		}
		e.Assertion = Assertion(s)
	}
	if t, ok := m["truncated"]; ok {
		if e.Truncated, err = jsonUint(t); err != nil {
			return AuditEvent{}, fmt.Errorf("truncated: %w", err)
		}
	}
	return e, nil
}

// jsonString decodes a JSON string.
func jsonString(raw json.RawMessage) (string, error) {
	var s string
	if raw == nil || json.Unmarshal(raw, &s) != nil {
		return "", errors.New("want a string")
	}
	return s, nil
}

// jsonUint decodes a non-negative integer written as a JSON number or as a
// string of decimal digits (RFC 8995's example does the latter).
func jsonUint(raw json.RawMessage) (int, error) {
	raw = bytes.TrimSpace(raw)
	text := string(raw)
	if len(raw) > 0 && raw[0] == '"' {
		if err := json.Unmarshal(raw, &text); err != nil {
			return 0, errors.New("want an unsigned integer")
		}
	}
	n, err := strconv.ParseUint(text, 10, 32)
	if err != nil || n > math.MaxInt32 {
		return 0, errors.New("want an unsigned integer")
	}
	return int(n), nil
}

// checkJSONShape walks b once: one JSON value, nested at most
// MaxAuditLogDepth deep, with no member name repeated in any object.
func checkJSONShape(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	type frame struct {
		names  map[string]struct{}
		object bool
		key    bool // the next token in this object is a member name
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return errors.New("not valid JSON")
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.key {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			name, _ := tok.(string)
			if _, dup := top.names[name]; dup {
				return fmt.Errorf("member %q is repeated", name)
			}
			top.names[name] = struct{}{}
			top.key = false
			continue
		}
		if top != nil && top.object {
			top.key = true // a value was read; a name (or '}') comes next
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{names: map[string]struct{}{}, object: true, key: true})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > MaxAuditLogDepth {
			return fmt.Errorf("nested deeper than %d", MaxAuditLogDepth)
		}
		if len(stack) == 0 && dec.More() {
			return errors.New("trailing data after the document")
		}
	}
	return nil
}

// DomainIDBytes decodes the event's domainID. RFC 8995 §5.8.2 makes it
// base64 of a binary identifier; MASAs in the field also use the URL-safe
// and unpadded alphabets, so all four are accepted.
func (e AuditEvent) DomainIDBytes() ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(e.DomainID); err == nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("%w: domainID %q is not base64", ErrBadAuditLog, e.DomainID)
}
