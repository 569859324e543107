package voucher

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
)

// Format names an artifact's wire format.
type Format string

// The formats Parse recognises.
const (
	FormatCMS  Format = "cms"  // CMS SignedData around JSON (application/voucher-cms+json)
	FormatCOSE Format = "cose" // COSE_Sign1 around CBOR (application/voucher+cose)
	FormatJSON Format = "json" // unsigned YANG-JSON
	FormatCBOR Format = "cbor" // unsigned YANG-CBOR
)

// Media types of the signed formats.
const (
	MediaTypeCMS  = "application/voucher-cms+json"
	MediaTypeCOSE = "application/voucher+cose"
)

// MaxArtifactBytes caps an artifact after any text armour is removed.
const MaxArtifactBytes = 64 << 10

// Unwrap returns the binary artifact inside b, which may be binary already
// (DER, CBOR, JSON), PEM ("-----BEGIN CMS-----" or PKCS7), bare base64, or
// hex text. Whitespace around and inside text forms is ignored.
func Unwrap(b []byte) ([]byte, error) {
	if len(b) > 4*MaxArtifactBytes {
		return nil, fmt.Errorf("%w: input is %d bytes", ErrTooLarge, len(b))
	}
	// A binary artifact is taken exactly as given: it must never be
	// trimmed, because a CMS or COSE signature ends in arbitrary bytes and
	// one in 43 ends in a byte that TrimSpace would cut (0x09-0x0d, 0x20).
	if looksBinary(b) {
		return capped(b)
	}
	trimmed := bytes.TrimSpace(b)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%w: input is empty", ErrMalformed)
	}
	if bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) {
		blk, _ := pem.Decode(trimmed)
		if blk == nil {
			return nil, fmt.Errorf("%w: PEM armour does not decode", ErrMalformed)
		}
		switch blk.Type {
		case "CMS", "PKCS7", "PKCS #7 SIGNED DATA":
		default:
			return nil, fmt.Errorf("%w: PEM block %q is not a CMS artifact", ErrUnsupported, blk.Type)
		}
		return capped(blk.Bytes)
	}
	if looksBinary(trimmed) {
		return capped(trimmed)
	}
	compact := stripSpace(trimmed)
	if isHex(compact) {
		if out, err := hex.DecodeString(string(compact)); err == nil && looksBinary(out) {
			return capped(out)
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if out, err := enc.DecodeString(string(compact)); err == nil && looksBinary(out) {
			return capped(out)
		}
	}
	return nil, fmt.Errorf("%w: input is neither DER, CBOR, JSON, PEM, base64 nor hex", ErrMalformed)
}

func capped(b []byte) ([]byte, error) {
	if len(b) > MaxArtifactBytes {
		return nil, fmt.Errorf("%w: artifact is %d bytes, limit %d", ErrTooLarge, len(b), MaxArtifactBytes)
	}
	return b, nil
}

// DetectFormat classifies a binary artifact by its first bytes.
func DetectFormat(b []byte) (Format, error) {
	if len(b) == 0 {
		return "", fmt.Errorf("%w: empty artifact", ErrMalformed)
	}
	switch b[0] {
	case 0x30: // DER SEQUENCE: ContentInfo
		return FormatCMS, nil
	case 0xd2, 0x84: // tag 18 (COSE_Sign1), or an untagged 4-array
		return FormatCOSE, nil
	case '{':
		return FormatJSON, nil
	case 0xa1: // a one-pair CBOR map: an unsigned YANG-CBOR artifact
		return FormatCBOR, nil
	}
	return "", fmt.Errorf("%w: unrecognised leading byte 0x%02x", ErrUnsupported, b[0])
}

func looksBinary(b []byte) bool {
	f, err := DetectFormat(b)
	if err != nil {
		return false
	}
	if f == FormatJSON {
		return json.Valid(b)
	}
	return true
}

func stripSpace(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
		default:
			out = append(out, c)
		}
	}
	return out
}

func isHex(b []byte) bool {
	if len(b) == 0 || len(b)%2 != 0 {
		return false
	}
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}

// Artifact is a decoded voucher or voucher-request with its envelope.
// Exactly one of Voucher and Request is set.
type Artifact struct {
	Format  Format
	Voucher *Voucher
	Request *Request
	// Payload is the signed content (JSON or CBOR).
	Payload []byte
	// CMS or COSE is the parsed envelope of a signed artifact.
	CMS  *CMS
	COSE *COSE
}

// Kind returns "voucher" or "voucher-request".
func (a *Artifact) Kind() string {
	if a.Request != nil {
		return "voucher-request"
	}
	return "voucher"
}

// MarshalJSON renders the artifact's content as YANG-JSON (RFC 7951),
// whatever its wire format.
func (a *Artifact) MarshalJSON() ([]byte, error) {
	if a.Request != nil {
		return a.Request.MarshalJSON()
	}
	return a.Voucher.MarshalJSON()
}

// Parse decodes an artifact in any supported format and armour WITHOUT
// verifying its signature: use it to inspect, never to trust.
func Parse(b []byte) (*Artifact, error) {
	bin, err := Unwrap(b)
	if err != nil {
		return nil, err
	}
	f, err := DetectFormat(bin)
	if err != nil {
		return nil, err
	}
	a := &Artifact{Format: f}
	switch f {
	case FormatCMS:
		c, err := ParseCMS(bin)
		if err != nil {
			return nil, err
		}
		a.CMS, a.Payload = c, c.Content
	case FormatCOSE:
		c, err := ParseCOSE(bin)
		if err != nil {
			return nil, err
		}
		a.COSE, a.Payload = c, c.Payload
	default:
		a.Payload = bin
	}
	if err := a.decodePayload(); err != nil {
		return nil, err
	}
	return a, nil
}

// Verify decodes an artifact in any supported signed format and verifies its
// signature against opts. Unsigned artifacts are refused.
func Verify(b []byte, opts VerifyOptions) (*Artifact, *Verified, error) {
	bin, err := Unwrap(b)
	if err != nil {
		return nil, nil, err
	}
	f, err := DetectFormat(bin)
	if err != nil {
		return nil, nil, err
	}
	a := &Artifact{Format: f}
	var v *Verified
	switch f {
	case FormatCMS:
		if a.Payload, v, err = VerifyCMS(bin, opts); err != nil {
			return nil, nil, err
		}
		if a.CMS, err = ParseCMS(bin); err != nil {
			return nil, nil, err
		}
	case FormatCOSE:
		if a.Payload, v, err = VerifyCOSE(bin, opts); err != nil {
			return nil, nil, err
		}
		if a.COSE, err = ParseCOSE(bin); err != nil {
			return nil, nil, err
		}
	default:
		return nil, nil, fmt.Errorf("%w: %s artifact is not signed", ErrUnsupported, f)
	}
	if err := a.decodePayload(); err != nil {
		return nil, nil, err
	}
	return a, v, nil
}

func (a *Artifact) decodePayload() error {
	var isRequest bool
	var err error
	switch a.Format {
	case FormatCMS, FormatJSON:
		isRequest, err = jsonIsRequest(a.Payload)
		if err != nil {
			return err
		}
		if isRequest {
			a.Request, err = DecodeRequestJSON(a.Payload)
		} else {
			a.Voucher, err = DecodeVoucherJSON(a.Payload)
		}
	case FormatCOSE, FormatCBOR:
		isRequest = cborIsRequest(a.Payload)
		if isRequest {
			a.Request, err = DecodeRequestCBOR(a.Payload)
		} else {
			a.Voucher, err = DecodeVoucherCBOR(a.Payload)
		}
	}
	return err
}

// jsonIsRequest peeks at the top-level member name.
func jsonIsRequest(b []byte) (bool, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return false, fmt.Errorf("%w: JSON artifact is not an object", ErrMalformed)
	}
	tok, err := dec.Token()
	if err != nil {
		return false, fmt.Errorf("%w: JSON artifact: %w", ErrMalformed, err)
	}
	switch tok {
	case "ietf-voucher-request:voucher":
		return true, nil
	case "ietf-voucher:voucher":
		return false, nil
	}
	return false, fmt.Errorf("%w: JSON artifact's member %v is neither ietf-voucher:voucher nor ietf-voucher-request:voucher", ErrMalformed, tok)
}

// cborIsRequest peeks at the container key of a one-pair map: SID 2501 (or
// its name) marks a voucher-request; anything else is decoded as a voucher,
// whose decoder reports what is wrong.
func cborIsRequest(b []byte) bool {
	if len(b) < 4 || b[0] != 0xa1 {
		return false
	}
	if b[1] == 0x19 && b[2] == 0x09 && b[3] == 0xc5 { // uint 2501
		return true
	}
	const name = "ietf-voucher-request:voucher"
	return bytes.HasPrefix(b[1:], append([]byte{0x78, byte(len(name))}, name...))
}
