package est

import (
	"crypto/x509"
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
)

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

// encodeBase64 encodes a response body: unwrapped standard base64 with
// padding, since some clients cannot parse wrapped lines (RFC 8951 §3
// requires no wrapping of senders).
func encodeBase64(der []byte) []byte {
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

// parseCSROuter walks the CertificationRequest (RFC 2986 §4):
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
// It is exactly as lenient as crypto/x509's encoding/asn1 structures
// (which allow trailing elements inside a SEQUENCE) and no more, so the two
// accept the same outer structures; nothing may follow the outer SEQUENCE.
func parseCSROuter(der []byte) (*csrInfo, error) {
	in := cryptobyte.String(der)
	var req, cri, alg, spki, spkiAlg, attrs cryptobyte.String
	var sig asn1.BitString
	var version int64
	var oid asn1.ObjectIdentifier
	var subject cryptobyte.String
	var tag cbasn1.Tag
	if !in.ReadASN1(&req, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, fmt.Errorf("%w: not one DER SEQUENCE", ErrMalformedCSR)
	}
	if !req.ReadASN1(&cri, cbasn1.SEQUENCE) ||
		!req.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) ||
		!req.ReadASN1BitString(&sig) {
		return nil, fmt.Errorf("%w: CertificationRequest structure", ErrMalformedCSR)
	}
	if !readOptionalAny(&alg) ||
		!cri.ReadASN1Integer(&version) ||
		!cri.ReadAnyASN1Element(&subject, &tag) || // subject: checked by crypto/x509
		!cri.ReadASN1(&spki, cbasn1.SEQUENCE) ||
		!spki.ReadASN1(&spkiAlg, cbasn1.SEQUENCE) || !spkiAlg.ReadASN1ObjectIdentifier(&oid) || !readOptionalAny(&spkiAlg) ||
		!spki.ReadASN1BitString(&sig) ||
		!cri.ReadASN1(&attrs, cbasn1.Tag(0).ContextSpecific().Constructed()) {
		return nil, fmt.Errorf("%w: CertificationRequestInfo structure", ErrMalformedCSR)
	}
	info := &csrInfo{}
	for !attrs.Empty() {
		var attr cryptobyte.String
		if !attrs.ReadAnyASN1(&attr, &tag) {
			return nil, fmt.Errorf("%w: attributes", ErrMalformedCSR)
		}
		var typ asn1.ObjectIdentifier
		if tag != cbasn1.SEQUENCE || !attr.ReadASN1ObjectIdentifier(&typ) || !typ.Equal(oidChallengePassword) {
			continue // other attributes are crypto/x509's and the CA's business
		}
		// RFC 2985 §5.4.1: challengePassword ATTRIBUTE ::= { WITH SYNTAX
		// DirectoryString {pkcs-9-ub-challengePassword} SINGLE VALUE TRUE }.
		var set, val cryptobyte.String
		var vtag cbasn1.Tag
		if info.hasChallenge || !attr.ReadASN1(&set, cbasn1.SET) || !attr.Empty() ||
			!set.ReadAnyASN1(&val, &vtag) || !set.Empty() ||
			(vtag != cbasn1.PrintableString && vtag != cbasn1.UTF8String && vtag != cbasn1.IA5String) {
			return nil, ErrBadChallengePassword
		}
		info.challengePassword, info.hasChallenge = string(val), true
	}
	return info, nil
}

// readOptionalAny reads the optional parameters of an AlgorithmIdentifier.
func readOptionalAny(s *cryptobyte.String) bool {
	// encoding/asn1, which crypto/x509 uses for these structures, decodes
	// the one optional parameters element and ignores whatever follows it
	// inside the SEQUENCE without parsing it; so do we.
	if s.Empty() {
		return true
	}
	var elem cryptobyte.String
	var tag cbasn1.Tag
	return s.ReadAnyASN1Element(&elem, &tag)
}
