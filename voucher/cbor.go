package voucher

import (
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
)

// MaxCBORLen bounds a CBOR voucher or voucher-request in bytes (reliability
// table D9). Longer input is refused with ErrTooLarge before decoding.
const MaxCBORLen = 16 << 10

// CBOR structure limits of reliability table D9. fxamacker/cbor checks them
// while it scans the input for well-formedness, before it allocates for any
// value, so an announced length of 2^64 costs nothing.
const (
	cborMaxNestedLevels  = 8
	cborMaxArrayElements = 64
	cborMaxMapPairs      = 32
)

// cborDecOptions are the strict options every CBOR decode in this package
// starts from: duplicate keys, indefinite lengths, invalid UTF-8 and tags
// are refused (COSE's tag 18 is peeled off by ParseCOSE before decoding).
func cborDecOptions() cbor.DecOptions {
	return cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		MaxNestedLevels:  cborMaxNestedLevels,
		MaxArrayElements: cborMaxArrayElements,
		MaxMapPairs:      cborMaxMapPairs,
		UTF8:             cbor.UTF8RejectInvalid,
		TagsMd:           cbor.TagsForbidden,
	}
}

var (
	// cborDecMode decodes voucher payloads. Integers decode as uint64 or
	// int64 (IntDecConvertNone): an extension SID may use all 64 bits.
	cborDecMode = cborMustDecMode(cborDecOptions())
	// cborEncMode is RFC 8949 §4.2.1 core deterministic encoding: shortest
	// arguments, map keys sorted by their encoded bytes.
	cborEncMode = cborMustEncMode(cbor.CoreDetEncOptions())
)

func cborMustDecMode(o cbor.DecOptions) cbor.DecMode {
	dm, err := o.DecMode()
	if err != nil {
		panic("voucher: CBOR decoding options: " + err.Error())
	}
	return dm
}

func cborMustEncMode(o cbor.EncOptions) cbor.EncMode {
	em, err := o.EncMode()
	if err != nil {
		panic("voucher: CBOR encoding options: " + err.Error())
	}
	return em
}

// cborError wraps an error of fxamacker/cbor in this package's sentinels: a
// structure limit passed is ErrTooLarge, anything else ErrMalformed.
func cborError(err error) error {
	if _, ok := errors.AsType[*cbor.MaxNestedLevelError](err); ok {
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	if _, ok := errors.AsType[*cbor.MaxArrayElementsError](err); ok {
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	if _, ok := errors.AsType[*cbor.MaxMapPairsError](err); ok {
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	return fmt.Errorf("%w: %w", ErrMalformed, err)
}

// cborAssertionCodes are the YANG enum values of assertion (8366bis).
var cborAssertionCodes = [...]Assertion{
	0: AssertionVerified,
	1: AssertionLogged,
	2: AssertionProximity,
	3: AssertionAgentProximity,
}

func cborAssertionCode(a Assertion) (uint64, bool) {
	for i, v := range cborAssertionCodes {
		if v == a {
			return uint64(i), true
		}
	}
	return 0, false
}

// MarshalCBOR encodes v as YANG-CBOR (RFC 9254): a map whose one key is
// SIDVoucher and whose value maps each present leaf's delta SID to its
// value, in core deterministic encoding. v must pass Validate.
func (v *Voucher) MarshalCBOR() ([]byte, error) {
	if err := v.Validate(); err != nil {
		return nil, fmt.Errorf("encode cbor voucher: %w", err)
	}
	m := cborLeafMap{t: voucherSIDs, m: make(map[uint64]any, 8)}
	if err := m.putFields(&v.Fields); err != nil {
		return nil, fmt.Errorf("encode cbor voucher: %w", err)
	}
	b, err := m.marshal()
	if err != nil {
		return nil, fmt.Errorf("encode cbor voucher: %w", err)
	}
	return b, nil
}

// MarshalCBOR encodes r as YANG-CBOR (RFC 9254) under SIDRequest, as
// Voucher.MarshalCBOR does. r must pass Validate. A single agent-sign-cert
// is a byte string as the YANG leaf says; several are an array of them.
func (r *Request) MarshalCBOR() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("encode cbor voucher-request: %w", err)
	}
	m := cborLeafMap{t: requestSIDs, m: make(map[uint64]any, 8)}
	if err := m.putFields(&r.Fields); err != nil {
		return nil, fmt.Errorf("encode cbor voucher-request: %w", err)
	}
	m.putBytes(sidPriorSignedVoucherRequest, r.PriorSignedVoucherRequest)
	m.putBytes(sidProximityRegistrarCert, r.ProximityRegistrarCert)
	m.putBytes(sidProximityRegistrarPubk, r.ProximityRegistrarPubk)
	m.putBytes(sidProximityRegistrarPubkSHA256, r.ProximityRegistrarPubkSHA256)
	m.putBytes(sidAgentProvidedProximityRegistrarCert, r.AgentProvidedProximityRegistrarCert)
	m.putBytes(sidAgentSignedData, r.AgentSignedData)
	switch n := len(r.AgentSignCert); {
	case r.AgentSignCert == nil:
	case n == 1:
		m.putBytes(sidAgentSignCert, r.AgentSignCert[0])
	case n > cborMaxArrayElements:
		return nil, fmt.Errorf("encode cbor voucher-request: %w: %d agent-sign-cert values, limit %d", ErrTooLarge, n, cborMaxArrayElements)
	default:
		certs := make([]any, n)
		for i, c := range r.AgentSignCert {
			certs[i] = cborNonNil(c)
		}
		m.put(sidAgentSignCert, certs)
	}
	b, err := m.marshal()
	if err != nil {
		return nil, fmt.Errorf("encode cbor voucher-request: %w", err)
	}
	return b, nil
}

// cborLeafMap collects the leaves of one container keyed by delta SID.
type cborLeafMap struct {
	t *sidTable
	m map[uint64]any
}

func (m cborLeafMap) put(l sidLeafID, v any) { m.m[m.t.delta(l)] = v }

// putBytes puts a binary leaf unless it is absent (nil). An empty, non-nil
// value is an empty byte string.
func (m cborLeafMap) putBytes(l sidLeafID, b []byte) {
	if b != nil {
		m.put(l, b)
	}
}

func (m cborLeafMap) putText(l sidLeafID, s string) error {
	if s == "" {
		return nil
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not UTF-8", ErrInvalid, m.t.name(l))
	}
	m.put(l, s)
	return nil
}

func (m cborLeafMap) putTime(l sidLeafID, t time.Time) error {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	if y := u.Year(); y < 0 || y > 9999 {
		return fmt.Errorf("%w: %s year %d is outside yang:date-and-time", ErrInvalid, m.t.name(l), y)
	}
	m.put(l, u.Format(time.RFC3339Nano))
	return nil
}

func (m cborLeafMap) putFields(f *Fields) error {
	if f.Assertion != "" {
		code, ok := cborAssertionCode(f.Assertion)
		if !ok {
			return fmt.Errorf("%w: assertion %q is not a defined value", ErrInvalid, f.Assertion)
		}
		m.put(sidAssertion, code)
	}
	if err := m.putTime(sidCreatedOn, f.CreatedOn); err != nil {
		return err
	}
	if err := m.putTime(sidExpiresOn, f.ExpiresOn); err != nil {
		return err
	}
	if err := m.putTime(sidLastRenewalDate, f.LastRenewalDate); err != nil {
		return err
	}
	if f.DomainCertRevocationChecks != nil {
		m.put(sidDomainCertRevocationChecks, *f.DomainCertRevocationChecks)
	}
	if err := m.putText(sidSerialNumber, f.SerialNumber); err != nil {
		return err
	}
	if err := m.putText(sidESTDomain, f.ESTDomain); err != nil {
		return err
	}
	if err := m.putText(sidAdditionalConfigurationURL, f.AdditionalConfigurationURL); err != nil {
		return err
	}
	m.putBytes(sidIDevIDIssuer, f.IDevIDIssuer)
	m.putBytes(sidNonce, f.Nonce)
	m.putBytes(sidPinnedDomainCert, f.PinnedDomainCert)
	m.putBytes(sidPinnedDomainPubk, f.PinnedDomainPubk)
	m.putBytes(sidPinnedDomainPubkSHA256, f.PinnedDomainPubkSHA256)
	m.putBytes(sidManufacturerProprietary, f.ManufacturerProprietary)
	// extensions is a leaf-list of union {uint64; string}: SIDs in CBOR,
	// names where a sender has no SID for an extension.
	if n := len(f.ExtensionSIDs) + len(f.Extensions); n > 0 {
		if n > cborMaxArrayElements {
			return fmt.Errorf("%w: %d extensions, limit %d", ErrTooLarge, n, cborMaxArrayElements)
		}
		ext := make([]any, 0, n)
		for _, sid := range f.ExtensionSIDs {
			ext = append(ext, sid)
		}
		for _, name := range f.Extensions {
			if !utf8.ValidString(name) {
				return fmt.Errorf("%w: extension name is not UTF-8", ErrInvalid)
			}
			ext = append(ext, name)
		}
		m.put(sidExtensions, ext)
	}
	return nil
}

func (m cborLeafMap) marshal() ([]byte, error) {
	b, err := cborEncMode.Marshal(map[uint64]any{m.t.container: m.m})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(b) > MaxCBORLen {
		return nil, fmt.Errorf("%w: encoding is %d bytes, limit %d", ErrTooLarge, len(b), MaxCBORLen)
	}
	return b, nil
}

// DecodeVoucherCBOR decodes a YANG-CBOR voucher (the payload of a
// COSE_Sign1 voucher) and validates it. Keys inside the container may be
// delta SIDs, absolute SIDs or YANG names, mixed; the container key may be
// SIDVoucher or "ietf-voucher:voucher". Unknown leaves are ignored; a leaf
// given twice (under two spellings) is an error. Errors wrap ErrTooLarge,
// ErrMalformed or ErrInvalid.
func DecodeVoucherCBOR(b []byte) (*Voucher, error) {
	inner, err := cborContainer(b, voucherSIDs, requestSIDs)
	if err != nil {
		return nil, fmt.Errorf("decode cbor voucher: %w", err)
	}
	// Allocated only now, so that refused input costs little.
	v := new(Voucher)
	if err := cborDecodeLeaves(inner, voucherSIDs, &v.Fields, nil); err != nil {
		return nil, fmt.Errorf("decode cbor voucher: %w", err)
	}
	if err := v.Validate(); err != nil {
		return nil, fmt.Errorf("decode cbor voucher: %w", err)
	}
	return v, nil
}

// DecodeRequestCBOR decodes a YANG-CBOR voucher-request under SIDRequest
// or "ietf-voucher-request:voucher", with the rules of DecodeVoucherCBOR,
// and validates it with Request.Validate.
func DecodeRequestCBOR(b []byte) (*Request, error) {
	inner, err := cborContainer(b, requestSIDs, voucherSIDs)
	if err != nil {
		return nil, fmt.Errorf("decode cbor voucher-request: %w", err)
	}
	r := new(Request)
	if err := cborDecodeLeaves(inner, requestSIDs, &r.Fields, r); err != nil {
		return nil, fmt.Errorf("decode cbor voucher-request: %w", err)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("decode cbor voucher-request: %w", err)
	}
	return r, nil
}

// cborContainer decodes b and returns the map inside the container of
// table t. other is the table of the other artifact, named in the error
// when b holds that one instead.
func cborContainer(b []byte, t, other *sidTable) (map[any]any, error) {
	if len(b) > MaxCBORLen {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), MaxCBORLen)
	}
	var top map[any]any
	if err := cborDecMode.Unmarshal(b, &top); err != nil {
		return nil, cborError(err)
	}
	if len(top) != 1 {
		return nil, fmt.Errorf("%w: top-level map has %d entries, want the one container %d", ErrMalformed, len(top), t.container)
	}
	var inner map[any]any
	for k, v := range top {
		switch {
		case k == any(t.container) || k == any(t.qualified):
		case k == any(other.container) || k == any(other.qualified):
			return nil, fmt.Errorf("%w: holds %s, not %s", ErrMalformed, other.qualified, t.qualified)
		default:
			return nil, fmt.Errorf("%w: top-level key %v is neither %d nor %q", ErrMalformed, k, t.container, t.qualified)
		}
		m, ok := v.(map[any]any)
		if !ok {
			return nil, fmt.Errorf("%w: %s is %s, want a map", ErrMalformed, t.qualified, cborKind(v))
		}
		inner = m
	}
	return inner, nil
}

// cborDecodeLeaves decodes the leaves of the container map inner into f
// (and r, for a voucher-request).
func cborDecodeLeaves(inner map[any]any, t *sidTable, f *Fields, r *Request) error {
	var seen [sidNumLeaves]bool
	for k, v := range inner {
		l, known, err := t.resolve(k)
		if err != nil {
			return err
		}
		if !known {
			continue // RFC 8366bis: recipients ignore leaves they do not know
		}
		if seen[l] {
			return fmt.Errorf("%w: leaf %s appears twice (key %v)", ErrMalformed, t.name(l), k)
		}
		seen[l] = true
		if err := cborDecodeLeaf(t, l, v, f, r); err != nil {
			return err
		}
	}
	return nil
}

// resolve maps a key inside the container to a leaf: a delta SID, an
// absolute SID (the deltas, at most 22, and the SIDs, above 2450, cannot
// collide) or a YANG name, bare or qualified by the module. known is false
// for a key that names no leaf of the module.
func (t *sidTable) resolve(k any) (sidLeafID, bool, error) {
	switch k := k.(type) {
	case uint64:
		if k <= math.MaxUint64-t.container {
			if l, ok := t.bySID(t.container + k); ok {
				return l, true, nil
			}
		}
		l, ok := t.bySID(k)
		return l, ok, nil
	case int64:
		// A negative delta points before the container: no leaf of it.
		return 0, false, nil
	case string:
		l, ok := t.byName[k]
		return l, ok, nil
	}
	return 0, false, fmt.Errorf("%w: %s key inside %s, want an integer or a name", ErrMalformed, cborKind(k), t.qualified)
}

func cborDecodeLeaf(t *sidTable, l sidLeafID, v any, f *Fields, r *Request) error {
	name := t.name(l)
	var err error
	switch l {
	case sidAssertion:
		f.Assertion, err = cborAssertion(name, v)
	case sidCreatedOn:
		f.CreatedOn, err = cborTime(name, v)
	case sidExpiresOn:
		f.ExpiresOn, err = cborTime(name, v)
	case sidLastRenewalDate:
		f.LastRenewalDate, err = cborTime(name, v)
	case sidDomainCertRevocationChecks:
		b, ok := v.(bool)
		if !ok {
			return cborTypeError(name, "a boolean", v)
		}
		f.DomainCertRevocationChecks = &b
	case sidSerialNumber:
		f.SerialNumber, err = cborText(name, v)
	case sidESTDomain:
		f.ESTDomain, err = cborText(name, v)
	case sidAdditionalConfigurationURL:
		f.AdditionalConfigurationURL, err = cborText(name, v)
	case sidIDevIDIssuer:
		f.IDevIDIssuer, err = cborBytes(name, v)
	case sidNonce:
		f.Nonce, err = cborBytes(name, v)
	case sidPinnedDomainCert:
		f.PinnedDomainCert, err = cborBytes(name, v)
	case sidPinnedDomainPubk:
		f.PinnedDomainPubk, err = cborBytes(name, v)
	case sidPinnedDomainPubkSHA256:
		f.PinnedDomainPubkSHA256, err = cborBytes(name, v)
	case sidManufacturerProprietary:
		f.ManufacturerProprietary, err = cborBytes(name, v)
	case sidExtensions:
		f.ExtensionSIDs, f.Extensions, err = cborExtensions(name, v)
	}
	if err != nil || r == nil {
		return err
	}
	switch l {
	case sidPriorSignedVoucherRequest:
		r.PriorSignedVoucherRequest, err = cborBytes(name, v)
	case sidProximityRegistrarCert:
		r.ProximityRegistrarCert, err = cborBytes(name, v)
	case sidProximityRegistrarPubk:
		r.ProximityRegistrarPubk, err = cborBytes(name, v)
	case sidProximityRegistrarPubkSHA256:
		r.ProximityRegistrarPubkSHA256, err = cborBytes(name, v)
	case sidAgentProvidedProximityRegistrarCert:
		r.AgentProvidedProximityRegistrarCert, err = cborBytes(name, v)
	case sidAgentSignedData:
		r.AgentSignedData, err = cborBytes(name, v)
	case sidAgentSignCert:
		r.AgentSignCert, err = cborBytesList(name, v)
	}
	return err
}

func cborTypeError(name, want string, got any) error {
	return fmt.Errorf("%w: %s is %s, want %s", ErrMalformed, name, cborKind(got), want)
}

// cborKind names the CBOR type a decoded value came from.
func cborKind(v any) string {
	switch v.(type) {
	case uint64, int64:
		return "an integer"
	case string:
		return "a text string"
	case []byte:
		return "a byte string"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	case []any:
		return "an array"
	case map[any]any:
		return "a map"
	case float32, float64:
		return "a float"
	}
	return fmt.Sprintf("a %T", v)
}

// cborAssertion accepts the enum value (RFC 9254 §6.6) or, as some
// implementations send, the enum name.
func cborAssertion(name string, v any) (Assertion, error) {
	switch v := v.(type) {
	case uint64:
		if v < uint64(len(cborAssertionCodes)) {
			return cborAssertionCodes[v], nil
		}
		return "", fmt.Errorf("%w: %s value %d is not a defined enum value", ErrInvalid, name, v)
	case string:
		if a := Assertion(v); a.IsValid() {
			return a, nil
		}
		return "", fmt.Errorf("%w: %s %q is not a defined enum name", ErrInvalid, name, v)
	}
	return "", cborTypeError(name, "an enum integer or name", v)
}

// cborTime parses a yang:date-and-time (RFC 3339) and returns it in UTC.
func cborTime(name string, v any) (time.Time, error) {
	s, ok := v.(string)
	if !ok {
		return time.Time{}, cborTypeError(name, "a date-and-time text string", v)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %s %q is not an RFC 3339 date-and-time", ErrInvalid, name, s)
	}
	if t.IsZero() {
		// 0001-01-01T00:00:00Z is Go's zero time, which Fields reads as
		// an absent leaf.
		return time.Time{}, fmt.Errorf("%w: %s %q is not a plausible time", ErrInvalid, name, s)
	}
	return t.UTC(), nil
}

func cborText(name string, v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", cborTypeError(name, "a text string", v)
	}
	return s, nil
}

// cborBytes returns a binary leaf byte-exact. The decoder has already
// copied it out of the input; an empty byte string stays non-nil (present).
func cborBytes(name string, v any) ([]byte, error) {
	b, ok := v.([]byte)
	if !ok {
		return nil, cborTypeError(name, "a byte string", v)
	}
	return cborNonNil(b), nil
}

func cborNonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// cborBytesList accepts one byte string or an array of them.
func cborBytesList(name string, v any) ([][]byte, error) {
	switch v := v.(type) {
	case []byte:
		return [][]byte{cborNonNil(v)}, nil
	case []any:
		out := make([][]byte, 0, len(v))
		for _, e := range v {
			b, err := cborBytes(name, e)
			if err != nil {
				return nil, err
			}
			out = append(out, b)
		}
		return out, nil
	}
	return nil, cborTypeError(name, "a byte string or an array of them", v)
}

// cborExtensions splits the leaf-list into SIDs and names.
func cborExtensions(name string, v any) ([]uint64, []string, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, nil, cborTypeError(name, "an array", v)
	}
	var sids []uint64
	var names []string
	for _, e := range list {
		switch e := e.(type) {
		case uint64:
			sids = append(sids, e)
		case string:
			names = append(names, e)
		default:
			return nil, nil, cborTypeError(name+" entry", "a SID or a name", e)
		}
	}
	return sids, names, nil
}
