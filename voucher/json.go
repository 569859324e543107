package voucher

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// JSON member names of the two containers (RFC 8366 §5.3, RFC 8995 §3.4):
// the module name qualifies the top-level node, as RFC 7951 §4 requires.
const (
	JSONVoucherKey = "ietf-voucher:voucher"
	JSONRequestKey = "ietf-voucher-request:voucher"
)

// Limits of the strict JSON decoder (reliability table D3).
const (
	// MaxJSONSize caps a JSON artifact in bytes.
	MaxJSONSize = 64 << 10
	// MaxJSONDepth caps the nesting of objects and arrays; the top-level
	// object is depth 1, the container depth 2.
	MaxJSONDepth = 8
)

// jsonExtensionPrefix marks an 8366bis extension member
// ("extension:<module-name>"), whose value is a sub-map.
const jsonExtensionPrefix = "extension:"

// jsonLeaf identifies a leaf the codec knows.
type jsonLeaf int

const (
	leafCreatedOn jsonLeaf = iota
	leafExpiresOn
	leafAssertion
	leafSerialNumber
	leafIDevIDIssuer
	leafPinnedDomainCert
	leafPinnedDomainPubk
	leafPinnedDomainPubkSHA256
	leafDomainCertRevocationChecks
	leafNonce
	leafLastRenewalDate
	leafESTDomain
	leafAdditionalConfigurationURL
	leafManufacturerProprietary
	leafExtensions
	leafPriorSignedVoucherRequest
	leafProximityRegistrarCert
	leafProximityRegistrarPubk
	leafProximityRegistrarPubkSHA256
	leafAgentProvidedProximityRegistrarCert
	leafAgentSignCert
	leafAgentSignedData
)

// jsonLeafNames lists the RFC 7951 member names in the order MarshalJSON
// emits them; the first fifteen belong to both containers, the rest to
// voucher-requests only.
var jsonLeafNames = [...]string{
	leafCreatedOn:                           "created-on",
	leafExpiresOn:                           "expires-on",
	leafAssertion:                           "assertion",
	leafSerialNumber:                        "serial-number",
	leafIDevIDIssuer:                        "idevid-issuer",
	leafPinnedDomainCert:                    "pinned-domain-cert",
	leafPinnedDomainPubk:                    "pinned-domain-pubk",
	leafPinnedDomainPubkSHA256:              "pinned-domain-pubk-sha256",
	leafDomainCertRevocationChecks:          "domain-cert-revocation-checks",
	leafNonce:                               "nonce",
	leafLastRenewalDate:                     "last-renewal-date",
	leafESTDomain:                           "est-domain",
	leafAdditionalConfigurationURL:          "additional-configuration-url",
	leafManufacturerProprietary:             "manufacturer-proprietary",
	leafExtensions:                          "extensions",
	leafPriorSignedVoucherRequest:           "prior-signed-voucher-request",
	leafProximityRegistrarCert:              "proximity-registrar-cert",
	leafProximityRegistrarPubk:              "proximity-registrar-pubk",
	leafProximityRegistrarPubkSHA256:        "proximity-registrar-pubk-sha256",
	leafAgentProvidedProximityRegistrarCert: "agent-provided-proximity-registrar-cert",
	leafAgentSignCert:                       "agent-sign-cert",
	leafAgentSignedData:                     "agent-signed-data",
}

// lastVoucherLeaf is the last leaf a voucher (not only a request) carries.
const lastVoucherLeaf = leafExtensions

func lookupLeaf(name string, request bool) (jsonLeaf, bool) {
	for i, n := range jsonLeafNames {
		if !request && jsonLeaf(i) > lastVoucherLeaf {
			break
		}
		if n == name {
			return jsonLeaf(i), true
		}
	}
	return 0, false
}

// caseVariantOfKnown reports whether name differs from a known member name
// only in letter case ("Serial-Number"): attack table A16 refuses those
// rather than ignoring them as unknown leaves.
func caseVariantOfKnown(name string) bool {
	for _, n := range jsonLeafNames {
		if n != name && strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// MarshalJSON encodes v as RFC 7951 JSON under "ietf-voucher:voucher":
// binary leaves in standard base64, times in RFC 3339 UTC, absent leaves
// omitted, members in a fixed order.
func (v *Voucher) MarshalJSON() ([]byte, error) {
	return marshalArtifact(JSONVoucherKey, &v.Fields, nil)
}

// MarshalJSON encodes r as RFC 7951 JSON under
// "ietf-voucher-request:voucher"; see Voucher.MarshalJSON.
func (r *Request) MarshalJSON() ([]byte, error) {
	return marshalArtifact(JSONRequestKey, &r.Fields, r)
}

// UnmarshalJSON decodes b with DecodeVoucherJSON, so that encoding/json
// never fills a Voucher by reflection.
func (v *Voucher) UnmarshalJSON(b []byte) error {
	d, err := DecodeVoucherJSON(b)
	if err != nil {
		return err
	}
	*v = *d
	return nil
}

// UnmarshalJSON decodes b with DecodeRequestJSON, so that encoding/json
// never fills a Request by reflection.
func (r *Request) UnmarshalJSON(b []byte) error {
	d, err := DecodeRequestJSON(b)
	if err != nil {
		return err
	}
	*r = *d
	return nil
}

// jsonWriter accumulates the members of one object.
type jsonWriter struct {
	buf   bytes.Buffer
	first bool
	err   error
}

func (w *jsonWriter) name(leaf jsonLeaf) {
	if !w.first {
		w.buf.WriteByte(',')
	}
	w.first = false
	w.str(jsonLeafNames[leaf])
	w.buf.WriteByte(':')
}

// str writes s as a JSON string without HTML escaping (URLs stay legible).
func (w *jsonWriter) str(s string) {
	if !utf8.ValidString(s) {
		w.fail(fmt.Errorf("%w: string %q is not UTF-8", ErrInvalid, s))
		return
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		w.fail(fmt.Errorf("%w: encode string: %w", ErrInvalid, err))
		return
	}
	w.buf.Write(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}

func (w *jsonWriter) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

func (w *jsonWriter) stringLeaf(leaf jsonLeaf, s string) {
	if s == "" {
		return
	}
	w.name(leaf)
	w.str(s)
}

func (w *jsonWriter) binaryLeaf(leaf jsonLeaf, b []byte) {
	if b == nil {
		return
	}
	w.name(leaf)
	w.str(base64.StdEncoding.EncodeToString(b))
}

func (w *jsonWriter) timeLeaf(leaf jsonLeaf, t time.Time) {
	if t.IsZero() {
		return
	}
	u := t.UTC()
	if u.Year() < 0 || u.Year() > 9999 {
		w.fail(fmt.Errorf("%w: %s: year %d is outside 0000-9999", ErrInvalid, jsonLeafNames[leaf], u.Year()))
		return
	}
	w.name(leaf)
	w.str(u.Format(time.RFC3339Nano))
}

func (w *jsonWriter) stringList(leaf jsonLeaf, list []string) {
	if len(list) == 0 {
		return
	}
	w.name(leaf)
	w.buf.WriteByte('[')
	for i, s := range list {
		if i > 0 {
			w.buf.WriteByte(',')
		}
		w.str(s)
	}
	w.buf.WriteByte(']')
}

func marshalArtifact(container string, f *Fields, r *Request) ([]byte, error) {
	w := &jsonWriter{first: true}
	w.buf.WriteByte('{')
	w.str(container)
	w.buf.WriteString(":{")
	w.timeLeaf(leafCreatedOn, f.CreatedOn)
	w.timeLeaf(leafExpiresOn, f.ExpiresOn)
	w.stringLeaf(leafAssertion, string(f.Assertion))
	w.stringLeaf(leafSerialNumber, f.SerialNumber)
	w.binaryLeaf(leafIDevIDIssuer, f.IDevIDIssuer)
	w.binaryLeaf(leafPinnedDomainCert, f.PinnedDomainCert)
	w.binaryLeaf(leafPinnedDomainPubk, f.PinnedDomainPubk)
	w.binaryLeaf(leafPinnedDomainPubkSHA256, f.PinnedDomainPubkSHA256)
	if f.DomainCertRevocationChecks != nil {
		w.name(leafDomainCertRevocationChecks)
		if *f.DomainCertRevocationChecks {
			w.buf.WriteString("true")
		} else {
			w.buf.WriteString("false")
		}
	}
	if f.NonceText != "" {
		// RFC 8995 §5.5: the nonce is relayed verbatim. The text must still
		// say what Nonce says, or a caller changed one and not the other.
		b, err := decodeNonceText(f.NonceText)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(b, f.Nonce) {
			return nil, fmt.Errorf("%w: nonce: NonceText does not decode to Nonce", ErrInvalid)
		}
		w.name(leafNonce)
		w.str(f.NonceText)
	} else {
		w.binaryLeaf(leafNonce, f.Nonce)
	}
	w.timeLeaf(leafLastRenewalDate, f.LastRenewalDate)
	w.stringLeaf(leafESTDomain, f.ESTDomain)
	w.stringLeaf(leafAdditionalConfigurationURL, f.AdditionalConfigurationURL)
	w.binaryLeaf(leafManufacturerProprietary, f.ManufacturerProprietary)
	w.stringList(leafExtensions, f.Extensions)
	if r != nil {
		w.binaryLeaf(leafPriorSignedVoucherRequest, r.PriorSignedVoucherRequest)
		w.binaryLeaf(leafProximityRegistrarCert, r.ProximityRegistrarCert)
		w.binaryLeaf(leafProximityRegistrarPubk, r.ProximityRegistrarPubk)
		w.binaryLeaf(leafProximityRegistrarPubkSHA256, r.ProximityRegistrarPubkSHA256)
		w.binaryLeaf(leafAgentProvidedProximityRegistrarCert, r.AgentProvidedProximityRegistrarCert)
		switch len(r.AgentSignCert) {
		case 0:
		case 1:
			// The 8366bis YANG makes agent-sign-cert a single binary leaf.
			w.binaryLeaf(leafAgentSignCert, r.AgentSignCert[0])
		default:
			// Earlier BRSKI-PRM drafts made it a leaf-list.
			list := make([]string, len(r.AgentSignCert))
			for i, c := range r.AgentSignCert {
				list[i] = base64.StdEncoding.EncodeToString(c)
			}
			w.stringList(leafAgentSignCert, list)
		}
		w.binaryLeaf(leafAgentSignedData, r.AgentSignedData)
	}
	w.buf.WriteString("}}")
	if w.err != nil {
		return nil, w.err
	}
	return w.buf.Bytes(), nil
}

// DecodeVoucherJSON strictly decodes a voucher in RFC 7951 JSON and
// validates it (Voucher.Validate). Duplicate or case-variant member names,
// nesting deeper than MaxJSONDepth, input above MaxJSONSize, a top-level
// member other than "ietf-voucher:voucher", wrong JSON types and trailing
// data are refused. Unknown leaves are ignored (RFC 8995 §5.6.1).
func DecodeVoucherJSON(b []byte) (*Voucher, error) {
	v := &Voucher{}
	if err := decodeArtifact(b, JSONVoucherKey, JSONRequestKey, &v.Fields, nil); err != nil {
		return nil, err
	}
	if err := v.Validate(); err != nil {
		return nil, err
	}
	return v, nil
}

// DecodeRequestJSON strictly decodes a voucher-request in RFC 7951 JSON and
// validates it (Request.Validate), with the rules of DecodeVoucherJSON and
// the top-level member "ietf-voucher-request:voucher".
func DecodeRequestJSON(b []byte) (*Request, error) {
	r := &Request{}
	if err := decodeArtifact(b, JSONRequestKey, JSONVoucherKey, &r.Fields, r); err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

// jsonDecoder walks the token stream of one artifact.
type jsonDecoder struct {
	dec   *json.Decoder
	depth int
}

func (d *jsonDecoder) token() (json.Token, error) {
	tok, err := d.dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: JSON ends early", ErrMalformed)
		}
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return tok, nil
}

// open records entering an object or array.
func (d *jsonDecoder) open() error {
	d.depth++
	if d.depth > MaxJSONDepth {
		return fmt.Errorf("%w: JSON nesting is deeper than %d", ErrTooLarge, MaxJSONDepth)
	}
	return nil
}

// memberNames tracks the member names of one object.
type memberNames map[string]struct{}

// add refuses a repeated name, and a name equal to an earlier one but for
// letter case (attack table A16).
func (m memberNames) add(name string) error {
	folded := strings.ToLower(name)
	if _, dup := m[folded]; dup {
		return fmt.Errorf("%w: member %q appears twice (names compared without letter case)", ErrMalformed, name)
	}
	m[folded] = struct{}{}
	return nil
}

// skipValue consumes one value of any type, still enforcing the depth
// limit and the member-name rules inside it.
func (d *jsonDecoder) skipValue(first json.Token) error {
	delim, ok := first.(json.Delim)
	if !ok {
		return nil // a scalar
	}
	if err := d.open(); err != nil {
		return err
	}
	defer func() { d.depth-- }()
	switch delim {
	case '{':
		names := memberNames{}
		for {
			tok, err := d.token()
			if err != nil {
				return err
			}
			if tok == json.Delim('}') {
				return nil
			}
			name, _ := tok.(string)
			if err := names.add(name); err != nil {
				return err
			}
			tok, err = d.token()
			if err != nil {
				return err
			}
			if err := d.skipValue(tok); err != nil {
				return err
			}
		}
	case '[':
		for {
			tok, err := d.token()
			if err != nil {
				return err
			}
			if tok == json.Delim(']') {
				return nil
			}
			if err := d.skipValue(tok); err != nil {
				return err
			}
		}
	}
	return fmt.Errorf("%w: unexpected %v", ErrMalformed, delim)
}

func decodeArtifact(b []byte, want, other string, f *Fields, r *Request) error {
	if len(b) > MaxJSONSize {
		return fmt.Errorf("%w: JSON artifact is %d bytes, limit %d", ErrTooLarge, len(b), MaxJSONSize)
	}
	if !utf8.Valid(b) {
		return fmt.Errorf("%w: JSON artifact is not UTF-8", ErrMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	d := &jsonDecoder{dec: dec}

	tok, err := d.token()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("%w: JSON artifact is not an object", ErrMalformed)
	}
	if err := d.open(); err != nil {
		return err
	}
	tok, err = d.token()
	if err != nil {
		return err
	}
	switch tok {
	case want:
	case json.Delim('}'):
		return fmt.Errorf("%w: JSON artifact is an empty object, want member %q", ErrInvalid, want)
	case other:
		return fmt.Errorf("%w: top-level member is %q, want %q", ErrInvalid, other, want)
	default:
		name, _ := tok.(string)
		if strings.EqualFold(name, want) || strings.EqualFold(name, other) {
			return fmt.Errorf("%w: top-level member %q differs from %q in letter case", ErrMalformed, name, want)
		}
		return fmt.Errorf("%w: top-level member is %q, want %q", ErrInvalid, name, want)
	}
	tok, err = d.token()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("%w: %q is not an object", ErrInvalid, want)
	}
	if err := d.open(); err != nil {
		return err
	}
	if err := d.container(f, r); err != nil {
		return err
	}
	d.depth--
	// Exactly one top-level member.
	tok, err = d.token()
	if err != nil {
		return err
	}
	if tok != json.Delim('}') {
		if name, ok := tok.(string); ok && strings.EqualFold(name, want) {
			return fmt.Errorf("%w: member %q appears twice (names compared without letter case)", ErrMalformed, name)
		}
		return fmt.Errorf("%w: JSON artifact has more than one top-level member", ErrMalformed)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: data after the JSON object", ErrMalformed)
	}
	return nil
}

// container decodes the members of the container object up to its '}'.
func (d *jsonDecoder) container(f *Fields, r *Request) error {
	names := memberNames{}
	for {
		tok, err := d.token()
		if err != nil {
			return err
		}
		if tok == json.Delim('}') {
			return nil
		}
		name, _ := tok.(string)
		if err := names.add(name); err != nil {
			return err
		}
		leaf, known := lookupLeaf(name, r != nil)
		if !known {
			if caseVariantOfKnown(name) {
				return fmt.Errorf("%w: member %q differs from a known leaf only in letter case", ErrMalformed, name)
			}
			tok, err := d.token()
			if err != nil {
				return err
			}
			if strings.HasPrefix(name, jsonExtensionPrefix) {
				// 8366bis §extensions: "extension:<module-name>" holds a
				// sub-map. Its content is not modelled; it is checked for
				// shape and skipped.
				if len(name) == len(jsonExtensionPrefix) || tok != json.Delim('{') {
					return fmt.Errorf("%w: %s: want an object under a module name", ErrInvalid, name)
				}
			}
			// RFC 8995 §5.6.1: unknown leaves are ignored.
			if err := d.skipValue(tok); err != nil {
				return err
			}
			continue
		}
		if err := d.leaf(leaf, f, r); err != nil {
			return err
		}
	}
}

func (d *jsonDecoder) leaf(leaf jsonLeaf, f *Fields, r *Request) error {
	name := jsonLeafNames[leaf]
	tok, err := d.token()
	if err != nil {
		return err
	}
	switch leaf {
	case leafDomainCertRevocationChecks:
		v, ok := tok.(bool)
		if !ok {
			return wrongType(name, "boolean", tok)
		}
		f.DomainCertRevocationChecks = &v
		return nil
	case leafExtensions:
		list, err := d.stringList(name, tok)
		if err != nil {
			return err
		}
		for _, s := range list {
			if s == "" {
				return fmt.Errorf("%w: %s: empty module name", ErrInvalid, name)
			}
		}
		f.Extensions = list
		return nil
	case leafAgentSignCert:
		var list []string
		if s, ok := tok.(string); ok {
			list = []string{s}
		} else if list, err = d.stringList(name, tok); err != nil {
			return err
		}
		r.AgentSignCert = nil
		for _, s := range list {
			b, err := decodeBinary(name, s)
			if err != nil {
				return err
			}
			r.AgentSignCert = append(r.AgentSignCert, b)
		}
		return nil
	}
	s, ok := tok.(string)
	if !ok {
		return wrongType(name, "string", tok)
	}
	switch leaf {
	case leafCreatedOn:
		f.CreatedOn, err = decodeTime(name, s)
	case leafExpiresOn:
		f.ExpiresOn, err = decodeTime(name, s)
	case leafLastRenewalDate:
		f.LastRenewalDate, err = decodeTime(name, s)
	case leafAssertion:
		if !Assertion(s).IsValid() {
			return fmt.Errorf("%w: %s: %q is not a defined value", ErrInvalid, name, s)
		}
		f.Assertion = Assertion(s)
	case leafSerialNumber:
		if err := ValidateSerial(s); err != nil {
			return err
		}
		f.SerialNumber = s
	case leafESTDomain:
		err = checkURI(name, s)
		f.ESTDomain = s
	case leafAdditionalConfigurationURL:
		err = checkURI(name, s)
		f.AdditionalConfigurationURL = s
	case leafNonce:
		f.Nonce, err = decodeNonceText(s)
		f.NonceText = s
	case leafIDevIDIssuer:
		f.IDevIDIssuer, err = decodeBinary(name, s)
	case leafPinnedDomainCert:
		f.PinnedDomainCert, err = decodeBinary(name, s)
	case leafPinnedDomainPubk:
		f.PinnedDomainPubk, err = decodeBinary(name, s)
	case leafPinnedDomainPubkSHA256:
		f.PinnedDomainPubkSHA256, err = decodeBinary(name, s)
	case leafManufacturerProprietary:
		f.ManufacturerProprietary, err = decodeBinary(name, s)
	case leafPriorSignedVoucherRequest:
		r.PriorSignedVoucherRequest, err = decodeBinary(name, s)
	case leafProximityRegistrarCert:
		r.ProximityRegistrarCert, err = decodeBinary(name, s)
	case leafProximityRegistrarPubk:
		r.ProximityRegistrarPubk, err = decodeBinary(name, s)
	case leafProximityRegistrarPubkSHA256:
		r.ProximityRegistrarPubkSHA256, err = decodeBinary(name, s)
	case leafAgentProvidedProximityRegistrarCert:
		r.AgentProvidedProximityRegistrarCert, err = decodeBinary(name, s)
	case leafAgentSignedData:
		r.AgentSignedData, err = decodeBinary(name, s)
	}
	return err
}

// stringList reads a JSON array of strings whose '[' is first. An empty
// array is the same as an absent leaf-list (RFC 7951 §5.3 never emits one).
func (d *jsonDecoder) stringList(name string, first json.Token) ([]string, error) {
	if first != json.Delim('[') {
		return nil, wrongType(name, "array of strings", first)
	}
	if err := d.open(); err != nil {
		return nil, err
	}
	defer func() { d.depth-- }()
	var list []string
	for {
		tok, err := d.token()
		if err != nil {
			return nil, err
		}
		if tok == json.Delim(']') {
			return list, nil
		}
		s, ok := tok.(string)
		if !ok {
			return nil, wrongType(name, "array of strings", tok)
		}
		list = append(list, s)
	}
}

func wrongType(name, want string, tok json.Token) error {
	var got string
	switch t := tok.(type) {
	case json.Delim:
		if t == '{' {
			got = "object"
		} else {
			got = "array"
		}
	case string:
		got = "string"
	case json.Number:
		got = "number"
	case bool:
		got = "boolean"
	case nil:
		got = "null"
	default:
		got = fmt.Sprintf("%T", tok)
	}
	return fmt.Errorf("%w: %s: want %s, got %s", ErrInvalid, name, want, got)
}

// decodeTime parses a yang:date-and-time (RFC 3339 with a '.' fraction)
// and returns it in UTC.
func decodeTime(name, s string) (time.Time, error) {
	if strings.ContainsRune(s, ',') {
		return time.Time{}, fmt.Errorf("%w: %s: %q is not a date-and-time", ErrInvalid, name, s)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %s: %q is not a date-and-time", ErrInvalid, name, s)
	}
	// MarshalJSON writes UTC, which must still have four year digits.
	if u := t.UTC(); u.Year() >= 0 && u.Year() <= 9999 {
		return u, nil
	}
	return time.Time{}, fmt.Errorf("%w: %s: %q falls outside years 0000-9999 in UTC", ErrInvalid, name, s)
}

func checkURI(name, s string) error {
	if s == "" {
		return fmt.Errorf("%w: %s is empty", ErrInvalid, name)
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return fmt.Errorf("%w: %s: %q is not an absolute URI", ErrInvalid, name, s)
	}
	return nil
}

// decodeBinary decodes a YANG binary leaf: standard base64 (RFC 7951 §6.6),
// padded or not. Whitespace and the URL-safe alphabet are refused.
func decodeBinary(name, s string) ([]byte, error) {
	if !isBase64(s, '+', '/') {
		return nil, fmt.Errorf("%w: %s is not standard base64", ErrInvalid, name)
	}
	b, err := decodeBase64(s, base64.StdEncoding)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not standard base64", ErrInvalid, name)
	}
	return b, nil
}

// decodeNonceText decodes a nonce as published examples carry it: standard
// base64 or base64url, each padded or not (standards digest §9, item 2).
func decodeNonceText(s string) ([]byte, error) {
	var (
		b   []byte
		err error
	)
	switch {
	case isBase64(s, '+', '/'):
		b, err = decodeBase64(s, base64.StdEncoding)
	case isBase64(s, '-', '_'):
		b, err = decodeBase64(s, base64.URLEncoding)
	default:
		err = errors.New("bad alphabet")
	}
	if err != nil {
		return nil, fmt.Errorf("%w: nonce is neither base64 nor base64url", ErrInvalid)
	}
	return b, nil
}

// decodeBase64 decodes s with enc when s is padded and with enc's unpadded
// form otherwise. The result is never nil.
func decodeBase64(s string, enc *base64.Encoding) ([]byte, error) {
	if !strings.HasSuffix(s, "=") {
		enc = enc.WithPadding(base64.NoPadding)
	}
	b, err := enc.DecodeString(s)
	if err != nil {
		return nil, err
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// isBase64 reports whether s uses only the base64 alphabet with the two
// given extra symbols, followed by at most two '=' (encoding/base64 would
// otherwise skip CR and LF).
func isBase64(s string, c62, c63 byte) bool {
	body := strings.TrimRight(s, "=")
	if len(s)-len(body) > 2 {
		return false
	}
	for i := range len(body) {
		c := body[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == c62, c == c63:
		default:
			return false
		}
	}
	return true
}

// NonceEqual reports whether f and other carry the same nonce. When both
// carry the nonce's JSON text, the texts must match as well as the bytes: a
// relayed nonce is compared as sent, never after re-encoding. It reports
// false when either has no nonce.
func (f *Fields) NonceEqual(other *Fields) bool {
	if f == nil || other == nil || len(f.Nonce) == 0 || len(other.Nonce) == 0 {
		return false
	}
	if f.NonceText != "" && other.NonceText != "" && f.NonceText != other.NonceText {
		return false
	}
	return bytes.Equal(f.Nonce, other.Nonce)
}
