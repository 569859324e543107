package est

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Decoding errors. The handlers turn them into 400s.
var (
	// ErrBase64 reports a request body that is not base64 (RFC 8951).
	ErrBase64 = errors.New("body is not base64")
	// ErrMalformedCSR reports a body that is not exactly one DER PKCS#10
	// CertificationRequest.
	ErrMalformedCSR = errors.New("malformed PKCS#10 certification request")
	// ErrBadChallengePassword reports a challengePassword attribute that is
	// not exactly one string value (RFC 2985 §5.4.1). crypto/x509 skips such
	// an attribute; EST refuses it, because the attribute carries the
	// channel binding (RFC 7030 §3.5). It wraps ErrMalformedCSR.
	ErrBadChallengePassword = fmt.Errorf("%w: challengePassword must be one PrintableString or UTF8String", ErrMalformedCSR)
	// ErrCertsOnly reports a body that is not one certs-only CMS SignedData
	// with at least one certificate (RFC 7030 §4.1.3).
	ErrCertsOnly = errors.New("malformed certs-only message")
)

// maxCertsOnlyCerts bounds the certificates ParseCertsOnly reads.
const maxCertsOnlyCerts = 64

var (
	oidSignedData        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidData              = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidChallengePassword = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}
)

// DecodeBase64Body decodes an EST request body. RFC 8951 §3: the body is
// base64 (RFC 4648 §4) whatever Content-Transfer-Encoding says, and
// receivers tolerate whitespace: line breaks (LF or CRLF) at any width,
// spaces and tabs are skipped, and missing trailing padding is accepted.
// Any other character outside the standard alphabet, padding before the
// end, or an impossible length is ErrBase64.
func DecodeBase64Body(body []byte) ([]byte, error) {
	clean := make([]byte, 0, len(body))
	pad := 0
	for i, c := range body {
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			continue
		case c == '=':
			pad++
			if pad > 2 {
				return nil, fmt.Errorf("%w: too much padding at offset %d", ErrBase64, i)
			}
			continue
		case pad > 0:
			return nil, fmt.Errorf("%w: data after padding at offset %d", ErrBase64, i)
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/':
			clean = append(clean, c)
		default:
			return nil, fmt.Errorf("%w: character 0x%02x at offset %d", ErrBase64, c, i)
		}
	}
	if pad > 0 && (len(clean)+pad)%4 != 0 {
		return nil, fmt.Errorf("%w: wrong padding", ErrBase64)
	}
	out, err := base64.RawStdEncoding.Strict().DecodeString(string(clean))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBase64, err)
	}
	return out, nil
}

// EncodeBase64 encodes an EST body, request or response: unwrapped
// standard base64 with padding, since some receivers cannot parse wrapped
// lines (RFC 8951 §3 requires no wrapping of senders).
func EncodeBase64(der []byte) []byte {
	out := make([]byte, base64.StdEncoding.EncodedLen(len(der)))
	base64.StdEncoding.Encode(out, der)
	return out
}

// MarshalCertsOnly returns the DER of a degenerate certs-only CMS
// SignedData (RFC 7030 §4.1.3, RFC 5272 §4.1 "Simple PKI Response"):
// version 1, no digest algorithms, encapsulated content id-data without
// content, the certificates in the given order, no signers. The order is
// kept (issuing CA first) rather than sorted into DER SET OF order, as
// other EST servers do, because clients read it.
func MarshalCertsOnly(certs []*x509.Certificate) ([]byte, error) {
	if len(certs) == 0 {
		return nil, errors.New("marshal certs-only: no certificates")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(ci *cryptobyte.Builder) { // ContentInfo
		ci.AddASN1ObjectIdentifier(oidSignedData)
		ci.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(e *cryptobyte.Builder) {
			e.AddASN1(cbasn1.SEQUENCE, func(sd *cryptobyte.Builder) { // SignedData
				sd.AddASN1Int64(1)
				sd.AddASN1(cbasn1.SET, func(*cryptobyte.Builder) {}) // digestAlgorithms
				sd.AddASN1(cbasn1.SEQUENCE, func(eci *cryptobyte.Builder) {
					eci.AddASN1ObjectIdentifier(oidData)
				})
				sd.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(cs *cryptobyte.Builder) {
					for _, c := range certs {
						cs.AddBytes(c.Raw)
					}
				})
				sd.AddASN1(cbasn1.SET, func(*cryptobyte.Builder) {}) // signerInfos
			})
		})
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("marshal certs-only: %w", err)
	}
	return der, nil
}

// ParseCertsOnly parses a certs-only message (RFC 7030 §4.1.3: a CMS
// SignedData with no signers and no content, RFC 5652 §5) and returns its
// certificates in the order sent. It reads exactly one DER ContentInfo of
// type id-signedData with nothing after it, a SignedData with its version,
// digestAlgorithms SET, an encapContentInfo that names its content type,
// optional certificates [0], optional crls [1] and a signerInfos SET, and
// nothing else. Other CertificateChoices (attribute or other certificates)
// are skipped; at least one and at most 64 certificates are required, and
// each must parse. Signers, if any, are not verified: EST trusts the TLS
// channel, not the message. Every error wraps ErrCertsOnly.
func ParseCertsOnly(der []byte) ([]*x509.Certificate, error) {
	certs, err := parseCertsOnly(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCertsOnly, err)
	}
	return certs, nil
}

func parseCertsOnly(der []byte) ([]*x509.Certificate, error) {
	in := cryptobyte.String(der)
	var ci, content, sd cryptobyte.String
	var ct asn1.ObjectIdentifier
	if !in.ReadASN1(&ci, cbasn1.SEQUENCE) {
		return nil, errors.New("not a ContentInfo")
	}
	if !in.Empty() {
		return nil, errors.New("trailing data")
	}
	if !ci.ReadASN1ObjectIdentifier(&ct) || !ct.Equal(oidSignedData) ||
		!ci.ReadASN1(&content, cbasn1.Tag(0).ContextSpecific().Constructed()) || !ci.Empty() ||
		!content.ReadASN1(&sd, cbasn1.SEQUENCE) || !content.Empty() {
		return nil, errors.New("not a CMS SignedData")
	}
	var version int64
	var digestAlgs, encap cryptobyte.String
	var encapType asn1.ObjectIdentifier
	if !sd.ReadASN1Integer(&version) || !sd.ReadASN1(&digestAlgs, cbasn1.SET) ||
		!sd.ReadASN1(&encap, cbasn1.SEQUENCE) || !encap.ReadASN1ObjectIdentifier(&encapType) ||
		!allSequences(digestAlgs, true) {
		return nil, errors.New("malformed SignedData")
	}
	var rawCerts cryptobyte.String
	if !sd.ReadOptionalASN1(&rawCerts, nil, cbasn1.Tag(0).ContextSpecific().Constructed()) {
		return nil, errors.New("malformed certificates")
	}
	var certs []*x509.Certificate
	for !rawCerts.Empty() {
		var one cryptobyte.String
		var tag cbasn1.Tag
		if !rawCerts.ReadAnyASN1Element(&one, &tag) {
			return nil, errors.New("malformed certificates")
		}
		if tag != cbasn1.SEQUENCE {
			// RFC 5652 CertificateChoices: only plain certificates are
			// used; attribute and other certificates are skipped.
			continue
		}
		if len(certs) == maxCertsOnlyCerts {
			return nil, fmt.Errorf("more than %d certificates", maxCertsOnlyCerts)
		}
		c, err := x509.ParseCertificate(one)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	var signers cryptobyte.String
	if !sd.SkipOptionalASN1(cbasn1.Tag(1).ContextSpecific().Constructed()) || !sd.ReadASN1(&signers, cbasn1.SET) || !sd.Empty() ||
		!allSequences(signers, false) {
		return nil, errors.New("malformed SignedData after the certificates")
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificates")
	}
	return certs, nil
}

// allSequences reports whether s is a run of SEQUENCEs (AlgorithmIdentifiers
// when withOID: each starts with an OBJECT IDENTIFIER), as encoding/asn1
// reads SET OF AlgorithmIdentifier and SET OF SignerInfo.
func allSequences(s cryptobyte.String, withOID bool) bool {
	for !s.Empty() {
		var e cryptobyte.String
		var oid asn1.ObjectIdentifier
		if !s.ReadASN1(&e, cbasn1.SEQUENCE) || (withOID && !e.ReadASN1ObjectIdentifier(&oid)) {
			return false
		}
	}
	return true
}

// csrInfo is what the edge reads from a CSR beyond crypto/x509.
type csrInfo struct {
	// challengePassword is the PKCS#9 challengePassword value, if present.
	challengePassword string
	hasChallenge      bool
}

// ParseCSR decodes one DER PKCS#10 request: crypto/x509 parses it, and a
// cryptobyte re-parse of the outer structure (reliability F5) checks it is
// one CertificationRequest with nothing after it and extracts the
// challengePassword attribute, which crypto/x509 does not expose.
func ParseCSR(der []byte) (*x509.CertificateRequest, error) {
	csr, _, err := parseCSR(der)
	return csr, err
}

func parseCSR(der []byte) (*x509.CertificateRequest, *csrInfo, error) {
	info, err := parseCSROuter(der)
	if err != nil {
		return nil, nil, err
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrMalformedCSR, err)
	}
	return csr, info, nil
}

// parseCSROuter decodes the CertificationRequest (RFC 2986 §4):
//
//	CertificationRequest ::= SEQUENCE {
//	     certificationRequestInfo CertificationRequestInfo,
//	     signatureAlgorithm AlgorithmIdentifier,
//	     signature          BIT STRING }
//	CertificationRequestInfo ::= SEQUENCE {
//	     version       INTEGER { v1(0) },
//	     subject       Name,
//	     subjectPKInfo SubjectPublicKeyInfo,
//	     attributes    [0] Attributes }
//
// to read the challengePassword, which crypto/x509 does not expose. It uses
// encoding/asn1 with the same structure shapes as crypto/x509, so the two
// accept exactly the same outer structures (a re-parse with cryptobyte
// cannot: it has no high-tag-number form, which encoding/asn1 accepts in
// every RawValue). The one deliberate difference is the challengePassword:
// crypto/x509 skips a malformed one; EST refuses it (ErrBadChallengePassword).
func parseCSROuter(der []byte) (*csrInfo, error) {
	var req csrOuter
	rest, err := asn1.Unmarshal(der, &req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedCSR, err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the request", ErrMalformedCSR, len(rest))
	}
	info := &csrInfo{}
	for _, raw := range req.TBS.RawAttributes {
		var attr struct {
			Type   asn1.ObjectIdentifier
			Values asn1.RawValue
		}
		if _, err := asn1.Unmarshal(raw.FullBytes, &attr); err != nil || !attr.Type.Equal(oidChallengePassword) {
			continue // other attributes are crypto/x509's and the CA's business
		}
		// RFC 2985 §5.4.1: challengePassword ATTRIBUTE ::= { WITH SYNTAX
		// DirectoryString {pkcs-9-ub-challengePassword} SINGLE VALUE TRUE }.
		if info.hasChallenge || attr.Values.Class != asn1.ClassUniversal || attr.Values.Tag != asn1.TagSet || !attr.Values.IsCompound {
			return nil, ErrBadChallengePassword
		}
		var val asn1.RawValue
		rest, err := asn1.Unmarshal(attr.Values.Bytes, &val)
		if err != nil || len(rest) != 0 || val.Class != asn1.ClassUniversal || val.IsCompound ||
			(val.Tag != asn1.TagPrintableString && val.Tag != asn1.TagUTF8String && val.Tag != asn1.TagIA5String) {
			return nil, ErrBadChallengePassword
		}
		info.challengePassword, info.hasChallenge = string(val.Bytes), true
	}
	return info, nil
}

// csrOuter and csrTBS mirror crypto/x509's certificateRequest and
// tbsCertificateRequest structures.
type csrOuter struct {
	Raw                asn1.RawContent
	TBS                csrTBS
	SignatureAlgorithm pkix.AlgorithmIdentifier
	SignatureValue     asn1.BitString
}

type csrTBS struct {
	Raw           asn1.RawContent
	Version       int
	Subject       asn1.RawValue
	PublicKey     csrPublicKeyInfo
	RawAttributes []asn1.RawValue `asn1:"tag:0"`
}

type csrPublicKeyInfo struct {
	Raw       asn1.RawContent
	Algorithm pkix.AlgorithmIdentifier
	PublicKey asn1.BitString
}
