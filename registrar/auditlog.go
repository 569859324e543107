package registrar

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxAuditLogEvents bounds the events ParseAuditLog accepts.
const MaxAuditLogEvents = 4096

// AuditLog is a MASA audit-log response (RFC 8995 §5.8.1).
type AuditLog struct {
	// Version is the format version (1).
	Version uint64
	// Events are the log entries.
	Events []AuditLogEvent
	// Truncation counts entries the MASA left out.
	Truncation struct {
		NoncedDuplicates    uint64
		NoncelessDuplicates uint64
		Arbitrary           uint64
	}
}

// AuditLogEvent is one audit-log entry.
type AuditLogEvent struct {
	// Date is the entry's date as sent (RFC 3339).
	Date string
	// DomainID is the decoded domainID (base64 in the log); DomainIDText is
	// the text as sent.
	DomainID     []byte
	DomainIDText string
	// Nonce is the voucher's nonce text, or nil for a nonceless voucher.
	Nonce *string
	// Assertion is the voucher's assertion, or "" when absent.
	Assertion string
}

// ParseAuditLog decodes an audit-log response leniently, as the standards
// digest §1.12 asks: numbers may be JSON strings ("1"), the domain may be
// named "domainID" or "registrarID" (highway), and assertion may be absent.
// Events must be objects with a date and a base64 domainID; nonce is a
// string or null.
func ParseAuditLog(b []byte) (*AuditLog, error) {
	var raw struct {
		Version    json.RawMessage              `json:"version"`
		Events     []map[string]json.RawMessage `json:"events"`
		Truncation map[string]json.RawMessage   `json:"truncation"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	if len(raw.Events) > MaxAuditLogEvents {
		return nil, fmt.Errorf("audit log: %d events, limit %d", len(raw.Events), MaxAuditLogEvents)
	}
	out := &AuditLog{}
	v, err := lenientUint(raw.Version)
	if err != nil {
		return nil, fmt.Errorf("audit log: version: %w", err)
	}
	out.Version = v
	for name, val := range raw.Truncation {
		n, err := lenientUint(val)
		if err != nil {
			return nil, fmt.Errorf("audit log: truncation %q: %w", name, err)
		}
		switch name {
		case "nonced duplicates":
			out.Truncation.NoncedDuplicates = n
		case "nonceless duplicates":
			out.Truncation.NoncelessDuplicates = n
		case "arbitrary":
			out.Truncation.Arbitrary = n
		}
	}
	for i, e := range raw.Events {
		ev, err := parseAuditEvent(e)
		if err != nil {
			return nil, fmt.Errorf("audit log: event %d: %w", i, err)
		}
		out.Events = append(out.Events, ev)
	}
	return out, nil
}

func parseAuditEvent(e map[string]json.RawMessage) (AuditLogEvent, error) {
	var ev AuditLogEvent
	if err := json.Unmarshal(e["date"], &ev.Date); err != nil || ev.Date == "" {
		return ev, errors.New("date is missing or not a string")
	}
	id, ok := e["domainID"]
	if !ok {
		id, ok = e["registrarID"]
	}
	if !ok || json.Unmarshal(id, &ev.DomainIDText) != nil || ev.DomainIDText == "" {
		return ev, errors.New("domainID is missing or not a string")
	}
	d, err := decodeAnyBase64(ev.DomainIDText)
	if err != nil {
		return ev, fmt.Errorf("domainID: %w", err)
	}
	ev.DomainID = d
	switch n, ok := e["nonce"]; {
	case !ok, string(n) == "null":
	default:
		var s string
		if err := json.Unmarshal(n, &s); err != nil {
			return ev, errors.New("nonce is neither a string nor null")
		}
		ev.Nonce = &s
	}
	if a, ok := e["assertion"]; ok {
		if err := json.Unmarshal(a, &ev.Assertion); err != nil {
			return ev, errors.New("assertion is not a string")
		}
	}
	return ev, nil
}

func lenientUint(raw json.RawMessage) (uint64, error) {
	if len(raw) == 0 {
		return 0, nil
	}
	s := string(raw)
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, err
		}
	}
	return strconv.ParseUint(strings.TrimSpace(s), 10, 64)
}

func decodeAnyBase64(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}

// domainIDsOf returns the domainIDs RFC 8995 §5.8.2 derives from a pinned
// certificate: its SubjectKeyIdentifier, and the SHA-256 of its SPKI (RFC
// 7469 §2.4), accepted whichever the MASA chose.
func domainIDsOf(c *x509.Certificate) [][]byte {
	h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	ids := [][]byte{h[:]}
	if len(c.SubjectKeyId) > 0 {
		ids = append(ids, c.SubjectKeyId)
	}
	return ids
}
