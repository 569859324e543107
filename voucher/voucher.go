package voucher

import (
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
)

// Sentinel errors. Every error this package returns wraps one of them.
var (
	// ErrMalformed reports bytes that do not decode as the expected artifact.
	ErrMalformed = errors.New("voucher: malformed")
	// ErrInvalid reports an artifact that decodes but breaks a rule of its
	// schema (a missing mandatory leaf, a nonce of the wrong length, …).
	ErrInvalid = errors.New("voucher: invalid")
	// ErrTooLarge reports input above a size or structure limit.
	ErrTooLarge = errors.New("voucher: too large")
	// ErrUnsupported reports a well-formed artifact using a feature this
	// package refuses (an algorithm, a content type, a critical header).
	ErrUnsupported = errors.New("voucher: unsupported")
	// ErrBadSignature reports a signature that does not verify.
	ErrBadSignature = errors.New("voucher: bad signature")
	// ErrUntrusted reports a signer that does not chain to any given anchor.
	ErrUntrusted = errors.New("voucher: untrusted signer")
	// ErrExpired reports a certificate or artifact past its validity at the
	// verification time.
	ErrExpired = errors.New("voucher: expired")
	// ErrNotYetValid reports a certificate or artifact before its validity at
	// the verification time.
	ErrNotYetValid = errors.New("voucher: not yet valid")
)

// Assertion is the voucher's statement about how the MASA established the
// pledge's ownership (RFC 8366 §5.3, enumeration "assertion").
type Assertion string

// The assertion values of RFC 8366 and draft-ietf-anima-rfc8366bis.
const (
	AssertionVerified       Assertion = "verified"
	AssertionLogged         Assertion = "logged"
	AssertionProximity      Assertion = "proximity"
	AssertionAgentProximity Assertion = "agent-proximity" // 8366bis
)

// IsValid reports whether a is one of the defined assertion values.
func (a Assertion) IsValid() bool {
	switch a {
	case AssertionVerified, AssertionLogged, AssertionProximity, AssertionAgentProximity:
		return true
	}
	return false
}

// Limits on leaf values.
const (
	// MinNonceLen and MaxNonceLen bound a nonce in bytes. RFC 8366 types the
	// nonce as binary of length 8..32; this project accepts up to 64, the
	// bound its attack table (A12) sets, to tolerate longer pledge nonces.
	MinNonceLen = 8
	MaxNonceLen = 64
	// MaxSerialLen bounds serial-number in characters (attack table A07).
	MaxSerialLen = 64
	// MaxCertLen bounds an embedded certificate leaf in bytes.
	MaxCertLen = 8 << 10
	// MaxPriorLen bounds prior-signed-voucher-request in bytes.
	MaxPriorLen = 32 << 10
)

// Fields holds the leaves a voucher and a voucher-request share (the
// "voucher-artifact-grouping" of RFC 8366 and 8366bis). A zero value means
// the leaf is absent: zero time, nil slice, empty string, nil pointer.
type Fields struct {
	CreatedOn                  time.Time
	ExpiresOn                  time.Time
	Assertion                  Assertion
	SerialNumber               string
	IDevIDIssuer               []byte
	PinnedDomainCert           []byte
	PinnedDomainPubk           []byte
	PinnedDomainPubkSHA256     []byte
	DomainCertRevocationChecks *bool
	Nonce                      []byte
	// NonceText is the nonce exactly as the JSON carried it; MarshalJSON
	// emits it unchanged when set so a relayed nonce is never re-encoded.
	NonceText                  string
	LastRenewalDate            time.Time
	ESTDomain                  string
	AdditionalConfigurationURL string
	ManufacturerProprietary    []byte
	// Extensions lists extension module names (JSON). CBOR carries SIDs;
	// those are kept in ExtensionSIDs.
	Extensions    []string
	ExtensionSIDs []uint64
}

// Voucher is the MASA's signed statement binding a pledge to a domain
// (module ietf-voucher, JSON member "ietf-voucher:voucher").
type Voucher struct {
	Fields
}

// Request is a voucher-request, from a pledge (PVR) or a registrar (RVR)
// (module ietf-voucher-request, JSON member "ietf-voucher-request:voucher").
type Request struct {
	Fields
	PriorSignedVoucherRequest           []byte
	ProximityRegistrarCert              []byte
	ProximityRegistrarPubk              []byte
	ProximityRegistrarPubkSHA256        []byte
	AgentProvidedProximityRegistrarCert []byte
	AgentSignCert                       [][]byte
	AgentSignedData                     []byte
}

// validateFields checks the rules every artifact obeys.
func (f *Fields) validateFields() error {
	var errs []error
	if f.Assertion != "" && !f.Assertion.IsValid() {
		errs = append(errs, fmt.Errorf("assertion %q is not a defined value", f.Assertion))
	}
	if f.SerialNumber != "" {
		if err := ValidateSerial(f.SerialNumber); err != nil {
			errs = append(errs, err)
		}
	}
	if f.Nonce != nil && (len(f.Nonce) < MinNonceLen || len(f.Nonce) > MaxNonceLen) {
		errs = append(errs, fmt.Errorf("nonce is %d bytes, want %d to %d", len(f.Nonce), MinNonceLen, MaxNonceLen))
	}
	if !f.CreatedOn.IsZero() && !f.ExpiresOn.IsZero() && !f.ExpiresOn.After(f.CreatedOn) {
		errs = append(errs, errors.New("expires-on is not after created-on"))
	}
	// RFC 8366 §5.3: last-renewal-date "must ../expires-on".
	if !f.LastRenewalDate.IsZero() && f.ExpiresOn.IsZero() {
		errs = append(errs, errors.New("last-renewal-date requires expires-on"))
	}
	if len(f.PinnedDomainCert) > MaxCertLen {
		errs = append(errs, fmt.Errorf("pinned-domain-cert is %d bytes, limit %d", len(f.PinnedDomainCert), MaxCertLen))
	}
	if f.PinnedDomainPubkSHA256 != nil && len(f.PinnedDomainPubkSHA256) != 32 {
		errs = append(errs, fmt.Errorf("pinned-domain-pubk-sha256 is %d bytes, want 32", len(f.PinnedDomainPubkSHA256)))
	}
	return errors.Join(errs...)
}

// ValidateSerial checks a serial-number leaf: 1 to MaxSerialLen characters
// of printable UTF-8 with no control characters.
func ValidateSerial(s string) error {
	if s == "" {
		return fmt.Errorf("%w: serial-number is empty", ErrInvalid)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: serial-number is not UTF-8", ErrInvalid)
	}
	if n := utf8.RuneCountInString(s); n > MaxSerialLen {
		return fmt.Errorf("%w: serial-number is %d characters, limit %d", ErrInvalid, n, MaxSerialLen)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: serial-number contains a control character", ErrInvalid)
		}
	}
	return nil
}

// Validate checks v against the voucher schema as this project applies it:
// serial-number is mandatory (8366bis), and a voucher must pin something
// (pinned-domain-cert, -pubk or -pubk-sha256) and carry an assertion, as
// RFC 8366 requires. Validate does not check times against a clock; see
// CheckTimes.
func (v *Voucher) Validate() error {
	var errs []error
	if err := v.validateFields(); err != nil {
		errs = append(errs, err)
	}
	if v.SerialNumber == "" {
		errs = append(errs, errors.New("serial-number is missing"))
	}
	if v.Assertion == "" {
		errs = append(errs, errors.New("assertion is missing"))
	}
	if v.PinnedDomainCert == nil && v.PinnedDomainPubk == nil && v.PinnedDomainPubkSHA256 == nil {
		errs = append(errs, errors.New("no pinned-domain-cert, pinned-domain-pubk or pinned-domain-pubk-sha256"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// CheckTimes checks the voucher's time leaves against now: expires-on must
// not have passed, and created-on may lead now by at most skew.
func (v *Voucher) CheckTimes(now time.Time, skew time.Duration) error {
	if !v.ExpiresOn.IsZero() && !now.Before(v.ExpiresOn) {
		return fmt.Errorf("%w: voucher expires-on %s is not after %s", ErrExpired,
			v.ExpiresOn.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if !v.CreatedOn.IsZero() && v.CreatedOn.After(now.Add(skew)) {
		return fmt.Errorf("%w: voucher created-on %s is after %s", ErrNotYetValid,
			v.CreatedOn.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// Validate checks r against the voucher-request schema: the shared rules,
// and the size of the request-only binary leaves. Which leaves are
// mandatory depends on who sent the request; see ValidatePledge.
func (r *Request) Validate() error {
	var errs []error
	if err := r.validateFields(); err != nil {
		errs = append(errs, err)
	}
	if len(r.PriorSignedVoucherRequest) > MaxPriorLen {
		errs = append(errs, fmt.Errorf("prior-signed-voucher-request is %d bytes, limit %d", len(r.PriorSignedVoucherRequest), MaxPriorLen))
	}
	if len(r.ProximityRegistrarCert) > MaxCertLen {
		errs = append(errs, fmt.Errorf("proximity-registrar-cert is %d bytes, limit %d", len(r.ProximityRegistrarCert), MaxCertLen))
	}
	if r.ProximityRegistrarPubkSHA256 != nil && len(r.ProximityRegistrarPubkSHA256) != 32 {
		errs = append(errs, fmt.Errorf("proximity-registrar-pubk-sha256 is %d bytes, want 32", len(r.ProximityRegistrarPubkSHA256)))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// ValidatePledge checks the rules of a pledge voucher-request (RFC 8995
// §5.2): a nonce, the proximity assertion, and a proximity registrar pin.
// Leaves a pledge must not set (pinned-domain-cert and friends) are ignored,
// as RFC 8995 §3.4 requires, not refused.
func (r *Request) ValidatePledge() error {
	if err := r.Validate(); err != nil {
		return err
	}
	var errs []error
	if r.Nonce == nil {
		errs = append(errs, errors.New("nonce is missing"))
	}
	if r.Assertion != AssertionProximity {
		errs = append(errs, fmt.Errorf("assertion is %q, want %q", r.Assertion, AssertionProximity))
	}
	if r.ProximityRegistrarCert == nil && r.ProximityRegistrarPubk == nil && r.ProximityRegistrarPubkSHA256 == nil {
		errs = append(errs, errors.New("no proximity-registrar-cert, -pubk or -pubk-sha256"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}
