package pledge

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ErrESTEncoding reports an EST body that does not decode: bad base64, a
// malformed PKCS#7 certs-only message or malformed CSR attributes.
var ErrESTEncoding = errors.New("pledge: malformed EST message")

// Object identifiers used on the EST wire.
var (
	oidSignedData         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidChallengePassword  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}
	oidExtensionRequest   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 14}
	oidCSRTemplate        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 61} // RFC 9908 id-aa-certificationRequestInfoTemplate
	oidExtensionReqTmpl   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 62} // RFC 9908 id-aa-extensionReqTemplate
	oidECPublicKey        = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidRSAEncryption      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidEd25519            = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidCurveP256          = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidCurveP384          = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidCurveP521          = asn1.ObjectIdentifier{1, 3, 132, 0, 35}
	oidSubjectAltName     = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidSerialNumber       = asn1.ObjectIdentifier{2, 5, 4, 5}
	oidECDSAWithSHA256    = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384    = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSAWithSHA512    = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidSHA256WithRSA      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidEKUCMCRA           = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 28}
	tagContext0Explicit   = cbasn1.Tag(0).ContextSpecific().Constructed()
	tagContext1Explicit   = cbasn1.Tag(1).ContextSpecific().Constructed()
	errTrailingData       = errors.New("trailing data")
	errNotSignedData      = errors.New("not a PKCS#7 SignedData")
	errTooManyCertificate = errors.New("too many certificates")
)

// Limits of the EST codecs.
const (
	maxCertsOnlyCerts    = 64
	maxCSRAttrsElements  = 256
	defaultRSAKeyBits    = 2048
	maxRSAKeyBits        = 8192
	maxChallengePassword = 255 // PKCS#9 ub-challengePassword
)

// DecodeBase64 decodes an EST body (RFC 8951: base64 of the DER, whatever
// Content-Transfer-Encoding says). It tolerates whitespace, CR and LF
// anywhere (line-wrapped senders), and missing padding.
func DecodeBase64(b []byte) ([]byte, error) {
	clean := make([]byte, 0, len(b))
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
		default:
			clean = append(clean, c)
		}
	}
	clean = bytes.TrimRight(clean, "=")
	out, err := base64.RawStdEncoding.DecodeString(string(clean))
	if err != nil {
		return nil, fmt.Errorf("%w: base64: %w", ErrESTEncoding, err)
	}
	return out, nil
}

// EncodeBase64 encodes DER for an EST body: standard base64, unwrapped
// (RFC 8951; some clients cannot parse line-wrapped base64).
func EncodeBase64(der []byte) []byte {
	out := make([]byte, base64.StdEncoding.EncodedLen(len(der)))
	base64.StdEncoding.Encode(out, der)
	return out
}

// ParseCertsOnly parses a PKCS#7 "certs-only" message (RFC 7030 §4.1.3: a
// CMS SignedData with no signers and no content, RFC 5652 §5) and returns
// its certificates in the order sent. Other SignedData forms are accepted
// too: only the certificates field is read.
func ParseCertsOnly(der []byte) ([]*x509.Certificate, error) {
	certs, err := parseCertsOnly(der)
	if err != nil {
		return nil, fmt.Errorf("%w: certs-only: %w", ErrESTEncoding, err)
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
		return nil, errTrailingData
	}
	if !ci.ReadASN1ObjectIdentifier(&ct) || !ct.Equal(oidSignedData) {
		return nil, errNotSignedData
	}
	if !ci.ReadASN1(&content, tagContext0Explicit) || !ci.Empty() {
		return nil, errNotSignedData
	}
	if !content.ReadASN1(&sd, cbasn1.SEQUENCE) || !content.Empty() {
		return nil, errNotSignedData
	}
	var version int64
	var digestAlgs, encap cryptobyte.String
	if !sd.ReadASN1Integer(&version) || !sd.ReadASN1(&digestAlgs, cbasn1.SET) || !sd.ReadASN1(&encap, cbasn1.SEQUENCE) {
		return nil, errors.New("malformed SignedData")
	}
	var rawCerts cryptobyte.String
	var hasCerts bool
	if !sd.ReadOptionalASN1(&rawCerts, &hasCerts, tagContext0Explicit) {
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
			return nil, errTooManyCertificate
		}
		c, err := x509.ParseCertificate(one)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	var skip cryptobyte.String
	if !sd.SkipOptionalASN1(tagContext1Explicit) || !sd.ReadASN1(&skip, cbasn1.SET) || !sd.Empty() {
		return nil, errors.New("malformed SignedData after the certificates")
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificates")
	}
	return certs, nil
}

// MarshalCertsOnly encodes certificates as a PKCS#7 certs-only message
// (SignedData version 1, no digest algorithms, id-data without content, no
// signers). It is the inverse of ParseCertsOnly, for tests and fixtures.
func MarshalCertsOnly(certs []*x509.Certificate) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oidSignedData)
		b.AddASN1(tagContext0Explicit, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(1)
				b.AddASN1(cbasn1.SET, func(*cryptobyte.Builder) {})
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1})
				})
				b.AddASN1(tagContext0Explicit, func(b *cryptobyte.Builder) {
					for _, c := range certs {
						b.AddBytes(c.Raw)
					}
				})
				b.AddASN1(cbasn1.SET, func(*cryptobyte.Builder) {})
			})
		})
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("pledge: encode certs-only: %w", err)
	}
	return der, nil
}

// KeyType is a kind of key a CSR attributes response asks for.
type KeyType struct {
	// Algorithm is "ec", "rsa" or "ed25519".
	Algorithm string
	// Curve is the elliptic curve for "ec".
	Curve elliptic.Curve
	// Bits is the modulus size for "rsa".
	Bits int
}

// String names the key type, such as "ec P-256" or "rsa 3072".
func (k KeyType) String() string {
	switch k.Algorithm {
	case "ec":
		return "ec " + k.Curve.Params().Name
	case "rsa":
		return fmt.Sprintf("rsa %d", k.Bits)
	default:
		return k.Algorithm
	}
}

// DefaultKeyType is the LDevID key when the registrar asks for none: ECDSA
// P-256 (DESIGN.md performance budget).
var DefaultKeyType = KeyType{Algorithm: "ec", Curve: elliptic.P256()}

// Extension is one requested X.509 extension. A nil Value means the server
// named the extension without a value (RFC 9908 extensionReqTemplate): the
// client fills it in.
type Extension struct {
	// ID is the extension's OID.
	ID asn1.ObjectIdentifier
	// Critical is the criticality the server asked for.
	Critical bool
	// Value is the DER extnValue, or nil.
	Value []byte
}

// SubjectAttribute is one attribute of a subject name template (RFC 9908
// SingleAttributeTemplate): a type and, optionally, its DER value (nil: the
// client fills in its own value).
type SubjectAttribute struct {
	// Type is the attribute type.
	Type asn1.ObjectIdentifier
	// Value is the full DER encoding of the value (tag included), or nil.
	Value []byte
}

// CSRAttrs is what the pledge uses from a CSR attributes response (RFC 7030
// §4.5 as updated by RFC 8951 and RFC 9908). Unknown OIDs and attributes
// are ignored, as RFC 8951 §4.5.2 requires.
type CSRAttrs struct {
	// ChallengePassword reports the challengePassword OID (or attribute):
	// the server wants the CSR linked to the TLS channel.
	ChallengePassword bool
	// KeyType is the requested key, or nil: the template's, else the first
	// key-type attribute the pledge supports (a server listing several
	// lists them in its order of preference).
	KeyType *KeyType
	// Subject is the subject template of an RFC 9908 template, one entry
	// per RDN, or nil when the server gave none.
	Subject [][]SubjectAttribute
	// Extensions are the requested extensions (id-ExtensionReq, or the
	// template's extensionReqTemplate).
	Extensions []Extension
	// Template reports that an RFC 9908 CertificationRequestInfoTemplate
	// was present.
	Template bool
	// Raw is the DER as received.
	Raw []byte
}

// ParseCSRAttrs parses a DER CsrAttrs (RFC 7030 §4.5.2): SEQUENCE OF
// AttrOrOID. An empty sequence means no requirements.
func ParseCSRAttrs(der []byte) (*CSRAttrs, error) {
	a, err := parseCSRAttrs(der)
	if err != nil {
		return nil, fmt.Errorf("%w: csrattrs: %w", ErrESTEncoding, err)
	}
	return a, nil
}

func parseCSRAttrs(der []byte) (*CSRAttrs, error) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) {
		return nil, errors.New("not a SEQUENCE")
	}
	if !in.Empty() {
		return nil, errTrailingData
	}
	a := &CSRAttrs{Raw: slices.Clone(der)}
	for n := 0; !seq.Empty(); n++ {
		if n == maxCSRAttrsElements {
			return nil, errors.New("too many elements")
		}
		switch {
		case seq.PeekASN1Tag(cbasn1.OBJECT_IDENTIFIER):
			var oid asn1.ObjectIdentifier
			if !seq.ReadASN1ObjectIdentifier(&oid) {
				return nil, errors.New("malformed OID")
			}
			if oid.Equal(oidChallengePassword) {
				a.ChallengePassword = true
			}
		case seq.PeekASN1Tag(cbasn1.SEQUENCE):
			var attr cryptobyte.String
			if !seq.ReadASN1(&attr, cbasn1.SEQUENCE) {
				return nil, errors.New("malformed attribute")
			}
			if err := a.attribute(attr); err != nil {
				return nil, err
			}
		default:
			return nil, errors.New("element is neither an OID nor an attribute")
		}
	}
	return a, nil
}

// attribute reads one Attribute ::= SEQUENCE { type, values SET }.
func (a *CSRAttrs) attribute(attr cryptobyte.String) error {
	var typ asn1.ObjectIdentifier
	var values cryptobyte.String
	if !attr.ReadASN1ObjectIdentifier(&typ) || !attr.ReadASN1(&values, cbasn1.SET) || !attr.Empty() {
		return fmt.Errorf("malformed attribute")
	}
	switch {
	case typ.Equal(oidChallengePassword):
		a.ChallengePassword = true
	case typ.Equal(oidECPublicKey):
		// RFC 9908: the value is the curve's OID.
		var curve asn1.ObjectIdentifier
		if !values.ReadASN1ObjectIdentifier(&curve) {
			return errors.New("ecPublicKey attribute: malformed curve")
		}
		if c := curveFor(curve); c != nil && a.KeyType == nil {
			a.KeyType = &KeyType{Algorithm: "ec", Curve: c}
		}
	case typ.Equal(oidRSAEncryption):
		// RFC 9908: the value is the modulus size as an INTEGER.
		var bits int64
		if !values.ReadASN1Int64WithTag(&bits, cbasn1.INTEGER) {
			return errors.New("rsaEncryption attribute: malformed size")
		}
		if bits >= defaultRSAKeyBits && bits <= maxRSAKeyBits && a.KeyType == nil {
			a.KeyType = &KeyType{Algorithm: "rsa", Bits: int(bits)}
		}
	case typ.Equal(oidEd25519):
		if a.KeyType == nil {
			a.KeyType = &KeyType{Algorithm: "ed25519"}
		}
	case typ.Equal(oidExtensionRequest), typ.Equal(oidExtensionReqTmpl):
		var exts cryptobyte.String
		if !values.PeekASN1Tag(cbasn1.SEQUENCE) {
			// RFC 8951's own example lists a bare extension OID here
			// (macAddress), a form RFC 9908 §3.2 replaced: nothing to copy.
			return nil
		}
		if !values.ReadASN1(&exts, cbasn1.SEQUENCE) {
			return errors.New("extensionRequest attribute: malformed Extensions")
		}
		e, err := parseExtensionTemplates(exts)
		if err != nil {
			return err
		}
		a.Extensions = append(a.Extensions, e...)
	case typ.Equal(oidCSRTemplate):
		var tmpl cryptobyte.String
		if !values.ReadASN1(&tmpl, cbasn1.SEQUENCE) {
			return errors.New("template attribute: malformed template")
		}
		if err := a.template(tmpl); err != nil {
			return fmt.Errorf("template attribute: %w", err)
		}
	}
	return nil
}

// template reads an RFC 9908 CertificationRequestInfoTemplate.
func (a *CSRAttrs) template(t cryptobyte.String) error {
	a.Template = true
	var version int64
	if !t.ReadASN1Integer(&version) || version != 0 {
		return errors.New("version is not v1")
	}
	if t.PeekASN1Tag(cbasn1.SEQUENCE) {
		var rdns cryptobyte.String
		if !t.ReadASN1(&rdns, cbasn1.SEQUENCE) {
			return errors.New("malformed subject")
		}
		subject, err := parseNameTemplate(rdns)
		if err != nil {
			return err
		}
		a.Subject = subject
	}
	var spki cryptobyte.String
	var hasSPKI bool
	if !t.ReadOptionalASN1(&spki, &hasSPKI, tagContext0Explicit) {
		return errors.New("malformed subjectPKInfo")
	}
	if hasSPKI {
		if kt := keyTypeFromSPKITemplate(spki); kt != nil {
			a.KeyType = kt
		}
	}
	var attrs cryptobyte.String
	var hasAttrs bool
	if !t.ReadOptionalASN1(&attrs, &hasAttrs, tagContext1Explicit) {
		return errors.New("malformed attributes")
	}
	for !attrs.Empty() {
		var attr cryptobyte.String
		if !attrs.ReadASN1(&attr, cbasn1.SEQUENCE) {
			return errors.New("malformed attributes")
		}
		if err := a.attribute(attr); err != nil {
			return err
		}
	}
	return nil
}

// parseNameTemplate reads RDNSequenceTemplate: SEQUENCE OF SET OF
// SingleAttributeTemplate { type, value ANY OPTIONAL }. An ordinary Name
// parses too (every value present).
func parseNameTemplate(rdns cryptobyte.String) ([][]SubjectAttribute, error) {
	var out [][]SubjectAttribute
	for !rdns.Empty() {
		var set cryptobyte.String
		if !rdns.ReadASN1(&set, cbasn1.SET) {
			return nil, errors.New("malformed subject RDN")
		}
		var rdn []SubjectAttribute
		for !set.Empty() {
			var atv cryptobyte.String
			var typ asn1.ObjectIdentifier
			if !set.ReadASN1(&atv, cbasn1.SEQUENCE) || !atv.ReadASN1ObjectIdentifier(&typ) {
				return nil, errors.New("malformed subject attribute")
			}
			sa := SubjectAttribute{Type: typ}
			if !atv.Empty() {
				var v cryptobyte.String
				if !atv.ReadAnyASN1Element(&v, nil) || !atv.Empty() {
					return nil, errors.New("malformed subject attribute value")
				}
				sa.Value = slices.Clone([]byte(v))
			}
			rdn = append(rdn, sa)
		}
		if len(rdn) == 0 {
			return nil, errors.New("empty subject RDN")
		}
		out = append(out, rdn)
	}
	return out, nil
}

// parseExtensionTemplates reads Extensions, or RFC 9908 ExtensionTemplates
// (extnValue OPTIONAL).
func parseExtensionTemplates(exts cryptobyte.String) ([]Extension, error) {
	var out []Extension
	for !exts.Empty() {
		var ext cryptobyte.String
		var e Extension
		if !exts.ReadASN1(&ext, cbasn1.SEQUENCE) || !ext.ReadASN1ObjectIdentifier(&e.ID) {
			return nil, errors.New("malformed extension")
		}
		if ext.PeekASN1Tag(cbasn1.BOOLEAN) && !ext.ReadASN1Boolean(&e.Critical) {
			return nil, errors.New("malformed extension criticality")
		}
		if !ext.Empty() {
			var v cryptobyte.String
			if !ext.ReadASN1(&v, cbasn1.OCTET_STRING) || !ext.Empty() {
				return nil, errors.New("malformed extension value")
			}
			e.Value = slices.Clone([]byte(v))
		}
		if slices.ContainsFunc(out, func(o Extension) bool { return o.ID.Equal(e.ID) }) {
			return nil, fmt.Errorf("extension %s requested twice", e.ID)
		}
		out = append(out, e)
	}
	return out, nil
}

// keyTypeFromSPKITemplate reads the algorithm of a
// SubjectPublicKeyInfoTemplate (the [0] content: AlgorithmIdentifier, then
// an optional BIT STRING).
func keyTypeFromSPKITemplate(spki cryptobyte.String) *KeyType {
	var alg cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !spki.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) {
		return nil
	}
	switch {
	case oid.Equal(oidECPublicKey):
		var curve asn1.ObjectIdentifier
		if !alg.ReadASN1ObjectIdentifier(&curve) {
			return &DefaultKeyType
		}
		if c := curveFor(curve); c != nil {
			return &KeyType{Algorithm: "ec", Curve: c}
		}
	case oid.Equal(oidRSAEncryption):
		return &KeyType{Algorithm: "rsa", Bits: defaultRSAKeyBits}
	case oid.Equal(oidEd25519):
		return &KeyType{Algorithm: "ed25519"}
	}
	return nil
}

func curveFor(oid asn1.ObjectIdentifier) elliptic.Curve {
	switch {
	case oid.Equal(oidCurveP256):
		return elliptic.P256()
	case oid.Equal(oidCurveP384):
		return elliptic.P384()
	case oid.Equal(oidCurveP521):
		return elliptic.P521()
	}
	return nil
}

// GenerateKey returns a fresh key of type k from crypto/rand.
func GenerateKey(k KeyType) (crypto.Signer, error) {
	var (
		key crypto.Signer
		err error
	)
	switch k.Algorithm {
	case "ec":
		key, err = ecdsa.GenerateKey(k.Curve, rand.Reader)
	case "rsa":
		key, err = rsa.GenerateKey(rand.Reader, k.Bits)
	case "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("pledge: unsupported key type %q", k.Algorithm)
	}
	if err != nil {
		return nil, fmt.Errorf("pledge: generate %s key: %w", k, err)
	}
	return key, nil
}

// CSRRequest is what goes into a PKCS#10 request.
type CSRRequest struct {
	// RawSubject is the DER subject Name (an empty RDNSequence when nil).
	RawSubject []byte
	// Extensions go into one extensionRequest attribute (RFC 9908: one
	// attribute, no duplicate extnIDs). Every Value must be set.
	Extensions []Extension
	// ChallengePassword, when not empty, is added as the PKCS#9
	// challengePassword attribute (a PrintableString when it fits, else a
	// UTF8String): the channel binding of RFC 7030 §3.5.
	ChallengePassword string
}

// CreateCSR builds and signs a PKCS#10 request (RFC 2986) with key, and
// returns it parsed, its signature checked. It writes the attributes
// itself because crypto/x509 cannot encode challengePassword.
func CreateCSR(req CSRRequest, key crypto.Signer) (*x509.CertificateRequest, error) {
	csr, err := createCSR(req, key)
	if err != nil {
		return nil, fmt.Errorf("pledge: create csr: %w", err)
	}
	return csr, nil
}

func createCSR(req CSRRequest, key crypto.Signer) (*x509.CertificateRequest, error) {
	if len(req.ChallengePassword) > maxChallengePassword {
		return nil, errors.New("challengePassword is too long")
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	sigAlg, hash, err := signatureFor(key)
	if err != nil {
		return nil, err
	}
	subject := req.RawSubject
	if len(subject) == 0 {
		subject = []byte{0x30, 0x00}
	}
	var tb cryptobyte.Builder
	tb.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(0)
		b.AddBytes(subject)
		b.AddBytes(spki)
		b.AddASN1(tagContext0Explicit, func(b *cryptobyte.Builder) {
			if req.ChallengePassword != "" {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidChallengePassword)
					b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
						tag := cbasn1.Tag(asn1.TagPrintableString)
						if !isPrintableString(req.ChallengePassword) {
							tag = cbasn1.UTF8String
						}
						b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes([]byte(req.ChallengePassword)) })
					})
				})
			}
			if len(req.Extensions) > 0 {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidExtensionRequest)
					b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							for _, e := range req.Extensions {
								b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
									b.AddASN1ObjectIdentifier(e.ID)
									if e.Critical {
										b.AddASN1Boolean(true)
									}
									b.AddASN1OctetString(e.Value)
								})
							}
						})
					})
				})
			}
		})
	})
	tbs, err := tb.Bytes()
	if err != nil {
		return nil, err
	}
	for _, e := range req.Extensions {
		if e.Value == nil {
			return nil, fmt.Errorf("extension %s has no value", e.ID)
		}
	}
	digest := tbs
	if hash != crypto.Hash(0) {
		h := hash.New()
		h.Write(tbs)
		digest = h.Sum(nil)
	}
	sig, err := key.Sign(rand.Reader, digest, hash)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(sigAlg)
		b.AddASN1BitString(sig)
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("parse back: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("check signature: %w", err)
	}
	return csr, nil
}

// signatureFor returns the DER AlgorithmIdentifier and the hash for a key:
// ECDSA with the curve's matching SHA-2, RSA PKCS#1 v1.5 with SHA-256,
// Ed25519.
func signatureFor(key crypto.Signer) ([]byte, crypto.Hash, error) {
	var (
		oid    asn1.ObjectIdentifier
		hash   crypto.Hash
		params bool
	)
	switch k := key.Public().(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P384():
			oid, hash = oidECDSAWithSHA384, crypto.SHA384
		case elliptic.P521():
			oid, hash = oidECDSAWithSHA512, crypto.SHA512
		default:
			oid, hash = oidECDSAWithSHA256, crypto.SHA256
		}
	case *rsa.PublicKey:
		oid, hash, params = oidSHA256WithRSA, crypto.SHA256, true
	case ed25519.PublicKey:
		oid = oidEd25519
	default:
		return nil, 0, fmt.Errorf("unsupported key type %T", k)
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if params {
			b.AddASN1NULL()
		}
	})
	der, err := b.Bytes()
	return der, hash, err
}

// isPrintableString reports whether s fits an ASN.1 PrintableString (base64
// always does: A-Z a-z 0-9 + / = all qualify).
func isPrintableString(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == ' ', r == '\'', r == '(', r == ')', r == '+', r == ',', r == '-', r == '.', r == '/', r == ':', r == '=', r == '?':
		default:
			return false
		}
	}
	return true
}

// subjectFromTemplate builds the DER subject Name from a template: values
// the server set are used as sent; an attribute without a value takes the
// fallback subject's value of the same type (the IDevID's), or is left out
// when the fallback has none.
func subjectFromTemplate(tmpl [][]SubjectAttribute, fallback []byte) ([]byte, error) {
	fb, err := nameValues(fallback)
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, rdn := range tmpl {
			var vals []SubjectAttribute
			for _, sa := range rdn {
				v := sa.Value
				if v == nil {
					i := slices.IndexFunc(fb, func(f SubjectAttribute) bool { return f.Type.Equal(sa.Type) })
					if i < 0 {
						continue
					}
					v = fb[i].Value
				}
				vals = append(vals, SubjectAttribute{Type: sa.Type, Value: v})
			}
			if len(vals) == 0 {
				continue
			}
			b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
				for _, sa := range vals {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(sa.Type)
						b.AddBytes(sa.Value)
					})
				}
			})
		}
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("pledge: encode subject: %w", err)
	}
	return der, nil
}

// deviceSubject is the CSR subject when the registrar gives no template:
// the IDevID's X.520 serialNumber, the device's identity in BRSKI (RFC 8995
// §2.3.1), alone. The rest of an IDevID subject names the manufacturer's
// view of the device, which a domain CA's profile does not grant.
func deviceSubject(idevidSubject []byte) ([]byte, error) {
	return subjectFromTemplate([][]SubjectAttribute{{{Type: oidSerialNumber}}}, idevidSubject)
}

// nameValues flattens a DER Name into its attributes.
func nameValues(der []byte) ([]SubjectAttribute, error) {
	in := cryptobyte.String(der)
	var rdns cryptobyte.String
	if !in.ReadASN1(&rdns, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, fmt.Errorf("%w: malformed subject name", ErrESTEncoding)
	}
	t, err := parseNameTemplate(rdns)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrESTEncoding, err)
	}
	var out []SubjectAttribute
	for _, rdn := range t {
		out = append(out, rdn...)
	}
	return out, nil
}

// sanExtension returns the certificate's subjectAltName extension, if any.
func sanExtension(c *x509.Certificate) (Extension, bool) {
	for _, e := range c.Extensions {
		if e.Id.Equal(oidSubjectAltName) {
			return Extension{ID: e.Id, Critical: e.Critical, Value: e.Value}, true
		}
	}
	return Extension{}, false
}

// hasEKU reports whether c lists the extended key usage oid.
// (crypto/x509 has no constant for id-kp-cmcRA, so it lands in
// UnknownExtKeyUsage).
func hasEKU(c *x509.Certificate, oid asn1.ObjectIdentifier) bool {
	return slices.ContainsFunc(c.UnknownExtKeyUsage, oid.Equal)
}
