package est

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"fmt"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ErrCSRAttrs reports a CSR attributes document that cannot be parsed or
// encoded.
var ErrCSRAttrs = errors.New("malformed CSR attributes")

// Object identifiers used in CSR attributes.
var (
	// OIDChallengePassword (PKCS#9, 1.2.840.113549.1.9.7): listed in
	// csrattrs, it asks the client to put its channel binding in the CSR
	// (RFC 7030 §3.5, §4.5.2).
	OIDChallengePassword = oidChallengePassword
	// OIDExtensionRequest is PKCS#9 id-ExtensionReq (1.2.840.113549.1.9.14).
	OIDExtensionRequest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 14}
	// OIDCertificationRequestInfoTemplate is RFC 9908 §3.4
	// id-aa-certificationRequestInfoTemplate (1.2.840.113549.1.9.16.2.61).
	OIDCertificationRequestInfoTemplate = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 61}
	// OIDExtensionReqTemplate is RFC 9908 §3.4 id-aa-extensionReqTemplate
	// (1.2.840.113549.1.9.16.2.62), used inside a template when some
	// extension values are left to the client.
	OIDExtensionReqTemplate = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 62}
	// OIDPublicKeyEC is id-ecPublicKey (RFC 5480).
	OIDPublicKeyEC = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	// OIDPublicKeyRSA is rsaEncryption (RFC 8017).
	OIDPublicKeyRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	// OIDPublicKeyEd25519 is id-Ed25519 (RFC 8410).
	OIDPublicKeyEd25519 = asn1.ObjectIdentifier{1, 3, 101, 112}
	// OIDCurveP256 is secp256r1 (RFC 5480).
	OIDCurveP256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	// OIDCurveP384 is secp384r1 (RFC 5480).
	OIDCurveP384 = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
)

// CSRAttrs is a CSR attributes document (RFC 7030 §4.5.2 as corrected by
// RFC 8951 and RFC 9908):
//
//	CsrAttrs ::= SEQUENCE SIZE (0..MAX) OF AttrOrOID
//	AttrOrOID ::= CHOICE { oid OBJECT IDENTIFIER, attribute Attribute }
//
// ParseCSRAttrs sorts each element into the field that gives it meaning;
// MarshalBinary writes the fields in the order OIDs, KeyTypes, Extensions,
// Template, Attributes. The zero value is the empty SEQUENCE ("no specific
// requirements").
type CSRAttrs struct {
	// OIDs are bare object identifiers: attribute types the client should
	// include (challengePassword, serialNumber, …) or a signature algorithm
	// it should use (RFC 7030 §4.5.2).
	OIDs []asn1.ObjectIdentifier
	// KeyTypes are RFC 9908 §3.3 key-type attributes: id-ecPublicKey with a
	// named curve, or rsaEncryption with a modulus size.
	KeyTypes []KeyType
	// Extensions, when not empty, is the one id-ExtensionReq attribute
	// (RFC 9908 §3.2): extensions, with values, the CSR should request.
	Extensions []Extension
	// Template is the RFC 9908 §3.4 CertificationRequestInfoTemplate: the
	// subject, key type and extensions the CA will issue.
	Template *Template
	// Attributes are any other attributes, values kept as DER.
	Attributes []Attribute
}

// KeyType is a key algorithm and its parameter: a named curve for
// id-ecPublicKey, a modulus size for rsaEncryption, nothing for Ed25519
// (template only).
type KeyType struct {
	// Algorithm is the SubjectPublicKeyInfo algorithm OID.
	Algorithm asn1.ObjectIdentifier
	// Curve is the named curve (id-ecPublicKey only).
	Curve asn1.ObjectIdentifier
	// RSABits is the modulus size (rsaEncryption only; not expressible in
	// a Template).
	RSABits int
}

// Extension is an X.509 extension request. In a Template, a nil Value
// leaves the value to the client (RFC 9908 id-aa-extensionReqTemplate);
// elsewhere a Value is required.
type Extension struct {
	ID       asn1.ObjectIdentifier
	Critical bool
	Value    []byte
}

// Attribute is an attribute this package gives no meaning to; Values holds
// the DER of each value.
type Attribute struct {
	Type   asn1.ObjectIdentifier
	Values [][]byte
}

// Template is an RFC 9908 §3.4 CertificationRequestInfoTemplate: a
// partially filled CSR.
type Template struct {
	// Subject lists the subject attributes in order, one per RDN
	// (multi-valued RDNs are flattened when parsed).
	Subject []NameAttribute
	// KeyType, if set, is the subjectPKInfo algorithm the client must use.
	KeyType *KeyType
	// Extensions the certificate will carry; see Extension.
	Extensions []Extension
	// Attributes are other CRI attributes, values as DER.
	Attributes []Attribute
}

// NameAttribute is one subject attribute of a Template. When HasValue is
// false the client fills the value in.
type NameAttribute struct {
	Type     asn1.ObjectIdentifier
	Value    string
	HasValue bool
}

// ParseCSRAttrs parses the DER of a CsrAttrs. It reads every RFC 7030,
// RFC 8951 and RFC 9908 example. Unknown OIDs and attributes are kept
// (clients ignore what they do not recognise, RFC 7030 §4.5.2); structural
// errors, trailing bytes, more than one id-ExtensionReq or template, or
// duplicate extensions (RFC 9908 §3.2) are ErrCSRAttrs.
func ParseCSRAttrs(der []byte) (*CSRAttrs, error) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, fmt.Errorf("%w: not one DER SEQUENCE", ErrCSRAttrs)
	}
	a := &CSRAttrs{}
	var sawExt bool
	for !seq.Empty() {
		if seq.PeekASN1Tag(cbasn1.OBJECT_IDENTIFIER) {
			var oid asn1.ObjectIdentifier
			if !seq.ReadASN1ObjectIdentifier(&oid) {
				return nil, fmt.Errorf("%w: object identifier", ErrCSRAttrs)
			}
			a.OIDs = append(a.OIDs, oid)
			continue
		}
		typ, values, err := readAttribute(&seq)
		if err != nil {
			return nil, err
		}
		switch {
		case typ.Equal(OIDExtensionRequest):
			if sawExt {
				return nil, fmt.Errorf("%w: more than one id-ExtensionReq attribute (RFC 9908)", ErrCSRAttrs)
			}
			sawExt = true
			if a.Extensions, err = parseExtensionReq(values, false); err != nil {
				return nil, err
			}
		case typ.Equal(OIDCertificationRequestInfoTemplate):
			if a.Template != nil || len(values) != 1 {
				return nil, fmt.Errorf("%w: one template attribute with one value", ErrCSRAttrs)
			}
			if a.Template, err = parseTemplate(values[0]); err != nil {
				return nil, err
			}
		default:
			if kt, ok := keyTypeAttribute(typ, values); ok {
				a.KeyTypes = append(a.KeyTypes, kt)
				continue
			}
			a.Attributes = append(a.Attributes, Attribute{Type: typ, Values: values})
		}
	}
	return a, nil
}

// readAttribute reads Attribute ::= SEQUENCE { type OID, values SET OF ANY }
// and returns the DER of each value.
func readAttribute(s *cryptobyte.String) (asn1.ObjectIdentifier, [][]byte, error) {
	var attr, set cryptobyte.String
	var typ asn1.ObjectIdentifier
	if !s.ReadASN1(&attr, cbasn1.SEQUENCE) || !attr.ReadASN1ObjectIdentifier(&typ) ||
		!attr.ReadASN1(&set, cbasn1.SET) || !attr.Empty() {
		return nil, nil, fmt.Errorf("%w: attribute", ErrCSRAttrs)
	}
	var values [][]byte
	for !set.Empty() {
		var v cryptobyte.String
		var tag cbasn1.Tag
		if !set.ReadAnyASN1Element(&v, &tag) {
			return nil, nil, fmt.Errorf("%w: attribute %s value", ErrCSRAttrs, typ)
		}
		values = append(values, bytes.Clone(v))
	}
	return typ, values, nil
}

// keyTypeAttribute recognises RFC 9908 §3.3 key-type attributes: one curve
// OID for id-ecPublicKey, one positive INTEGER for rsaEncryption.
func keyTypeAttribute(typ asn1.ObjectIdentifier, values [][]byte) (KeyType, bool) {
	if len(values) != 1 {
		return KeyType{}, false
	}
	v := cryptobyte.String(values[0])
	switch {
	case typ.Equal(OIDPublicKeyEC):
		var curve asn1.ObjectIdentifier
		if v.ReadASN1ObjectIdentifier(&curve) && v.Empty() {
			return KeyType{Algorithm: typ, Curve: curve}, true
		}
	case typ.Equal(OIDPublicKeyRSA):
		var bits int64
		if v.ReadASN1Integer(&bits) && v.Empty() && bits > 0 && bits <= 1<<20 {
			return KeyType{Algorithm: typ, RSABits: int(bits)}, true
		}
	}
	return KeyType{}, false
}

// parseExtensionReq reads the value of id-ExtensionReq (exactly one
// Extensions SEQUENCE) or, with template set, of id-aa-extensionReqTemplate
// (extnValue OPTIONAL).
func parseExtensionReq(values [][]byte, template bool) ([]Extension, error) {
	if len(values) != 1 {
		return nil, fmt.Errorf("%w: extension request must hold exactly one Extensions value (RFC 9908)", ErrCSRAttrs)
	}
	in := cryptobyte.String(values[0])
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, fmt.Errorf("%w: Extensions", ErrCSRAttrs)
	}
	var exts []Extension
	for !seq.Empty() {
		var e, val cryptobyte.String
		var x Extension
		var present bool
		if !seq.ReadASN1(&e, cbasn1.SEQUENCE) || !e.ReadASN1ObjectIdentifier(&x.ID) ||
			(e.PeekASN1Tag(cbasn1.BOOLEAN) && !e.ReadASN1Boolean(&x.Critical)) ||
			!e.ReadOptionalASN1(&val, &present, cbasn1.OCTET_STRING) || !e.Empty() || (!present && !template) {
			return nil, fmt.Errorf("%w: Extension", ErrCSRAttrs)
		}
		if present {
			x.Value = bytes.Clone(val)
			if x.Value == nil {
				x.Value = []byte{}
			}
		}
		for _, prev := range exts {
			if prev.ID.Equal(x.ID) {
				return nil, fmt.Errorf("%w: duplicate extension %s (RFC 9908)", ErrCSRAttrs, x.ID)
			}
		}
		exts = append(exts, x)
	}
	return exts, nil
}

// parseTemplate reads RFC 9908 §3.4:
//
//	CertificationRequestInfoTemplate ::= SEQUENCE {
//	    version       INTEGER { v1(0) } (v1, ... ),
//	    subject       NameTemplate OPTIONAL,
//	    subjectPKInfo [0] SubjectPublicKeyInfoTemplate OPTIONAL,
//	    attributes    [1] Attributes }
func parseTemplate(der []byte) (*Template, error) {
	in := cryptobyte.String(der)
	var seq, subject, spki, attrs cryptobyte.String
	var version int64
	var hasSubject, hasSPKI, hasAttrs bool
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1Integer(&version) || version != 0 ||
		!seq.ReadOptionalASN1(&subject, &hasSubject, cbasn1.SEQUENCE) ||
		!seq.ReadOptionalASN1(&spki, &hasSPKI, cbasn1.Tag(0).ContextSpecific().Constructed()) ||
		!seq.ReadOptionalASN1(&attrs, &hasAttrs, cbasn1.Tag(1).ContextSpecific().Constructed()) || !seq.Empty() {
		return nil, fmt.Errorf("%w: CertificationRequestInfoTemplate", ErrCSRAttrs)
	}
	t := &Template{}
	for !subject.Empty() {
		var rdn cryptobyte.String
		if !subject.ReadASN1(&rdn, cbasn1.SET) || rdn.Empty() {
			return nil, fmt.Errorf("%w: template RDN", ErrCSRAttrs)
		}
		for !rdn.Empty() {
			na, err := readNameAttribute(&rdn)
			if err != nil {
				return nil, err
			}
			t.Subject = append(t.Subject, na)
		}
	}
	if hasSPKI {
		kt, err := parseSPKITemplate(spki)
		if err != nil {
			return nil, err
		}
		t.KeyType = &kt
	}
	var sawExt bool
	for !attrs.Empty() {
		typ, values, err := readAttribute(&attrs)
		if err != nil {
			return nil, err
		}
		isReq, isTmpl := typ.Equal(OIDExtensionRequest), typ.Equal(OIDExtensionReqTemplate)
		if !isReq && !isTmpl {
			t.Attributes = append(t.Attributes, Attribute{Type: typ, Values: values})
			continue
		}
		if sawExt {
			return nil, fmt.Errorf("%w: more than one extension request in the template", ErrCSRAttrs)
		}
		sawExt = true
		if t.Extensions, err = parseExtensionReq(values, isTmpl); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// readNameAttribute reads SingleAttributeTemplate ::= SEQUENCE { type OID,
// value ANY OPTIONAL }, with a value of a string type.
func readNameAttribute(s *cryptobyte.String) (NameAttribute, error) {
	var atv, val cryptobyte.String
	var na NameAttribute
	if !s.ReadASN1(&atv, cbasn1.SEQUENCE) || !atv.ReadASN1ObjectIdentifier(&na.Type) {
		return na, fmt.Errorf("%w: template subject attribute", ErrCSRAttrs)
	}
	if atv.Empty() {
		return na, nil
	}
	var tag cbasn1.Tag
	if !atv.ReadAnyASN1(&val, &tag) || !atv.Empty() {
		return na, fmt.Errorf("%w: template subject attribute %s", ErrCSRAttrs, na.Type)
	}
	v := string(val)
	switch {
	case tag == cbasn1.UTF8String && utf8.ValidString(v),
		tag == cbasn1.PrintableString && isPrintable(v),
		tag == cbasn1.IA5String && isASCII(v):
	default:
		return na, fmt.Errorf("%w: template subject attribute %s: unsupported string type %d", ErrCSRAttrs, na.Type, tag)
	}
	na.Value, na.HasValue = v, true
	return na, nil
}

// parseSPKITemplate reads SubjectPublicKeyInfoTemplate ::= SEQUENCE {
// algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING OPTIONAL }
// (its outer tag already removed), keeping the algorithm and curve.
func parseSPKITemplate(spki cryptobyte.String) (KeyType, error) {
	var alg cryptobyte.String
	var kt KeyType
	if !spki.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&kt.Algorithm) {
		return kt, fmt.Errorf("%w: template subjectPKInfo", ErrCSRAttrs)
	}
	var bits cryptobyte.String
	var hasKey bool
	if !spki.ReadOptionalASN1(&bits, &hasKey, cbasn1.BIT_STRING) || !spki.Empty() {
		return kt, fmt.Errorf("%w: template subjectPKInfo", ErrCSRAttrs)
	}
	switch {
	case kt.Algorithm.Equal(OIDPublicKeyEC):
		if !alg.ReadASN1ObjectIdentifier(&kt.Curve) || !alg.Empty() {
			return kt, fmt.Errorf("%w: template id-ecPublicKey without a named curve", ErrCSRAttrs)
		}
	case alg.Empty():
	case alg.PeekASN1Tag(cbasn1.NULL):
		var null cryptobyte.String
		if !alg.ReadASN1(&null, cbasn1.NULL) || !null.Empty() || !alg.Empty() {
			return kt, fmt.Errorf("%w: template algorithm parameters", ErrCSRAttrs)
		}
	default:
		return kt, fmt.Errorf("%w: template algorithm %s parameters not understood", ErrCSRAttrs, kt.Algorithm)
	}
	return kt, nil
}

// MarshalBinary returns the DER CsrAttrs. It refuses what ParseCSRAttrs
// would not read back the same: a key type without its parameter, an
// extension without a value outside a template, duplicate extensions.
func (a *CSRAttrs) MarshalBinary() ([]byte, error) {
	var b cryptobyte.Builder
	var errs []error
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, oid := range a.OIDs {
			b.AddASN1ObjectIdentifier(oid)
		}
		for _, kt := range a.KeyTypes {
			switch {
			case kt.Algorithm.Equal(OIDPublicKeyEC) && len(kt.Curve) > 0:
				addAttribute(b, kt.Algorithm, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(kt.Curve) })
			case kt.Algorithm.Equal(OIDPublicKeyRSA) && kt.RSABits > 0 && kt.RSABits <= 1<<20:
				addAttribute(b, kt.Algorithm, func(b *cryptobyte.Builder) { b.AddASN1Int64(int64(kt.RSABits)) })
			default:
				errs = append(errs, fmt.Errorf("%w: key type %s needs a curve (EC) or a modulus size (RSA); list other algorithms as OIDs", ErrCSRAttrs, kt.Algorithm))
			}
		}
		if len(a.Extensions) > 0 {
			addAttribute(b, OIDExtensionRequest, func(b *cryptobyte.Builder) { errs = append(errs, addExtensions(b, a.Extensions, false)) })
		}
		if a.Template != nil {
			addAttribute(b, OIDCertificationRequestInfoTemplate, func(b *cryptobyte.Builder) { errs = append(errs, a.Template.marshal(b)) })
		}
		for _, at := range a.Attributes {
			addRawAttribute(b, at)
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCSRAttrs, err)
	}
	return der, nil
}

func addAttribute(b *cryptobyte.Builder, typ asn1.ObjectIdentifier, value cryptobyte.BuilderContinuation) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(typ)
		b.AddASN1(cbasn1.SET, value)
	})
}

func addRawAttribute(b *cryptobyte.Builder, at Attribute) {
	addAttribute(b, at.Type, func(b *cryptobyte.Builder) {
		for _, v := range at.Values {
			b.AddBytes(v)
		}
	})
}

// addExtensions writes one Extensions (or ExtensionTemplates) SEQUENCE.
func addExtensions(b *cryptobyte.Builder, exts []Extension, template bool) error {
	for i, x := range exts {
		if x.Value == nil && !template {
			return fmt.Errorf("%w: extension %s has no value", ErrCSRAttrs, x.ID)
		}
		for _, prev := range exts[:i] {
			if prev.ID.Equal(x.ID) {
				return fmt.Errorf("%w: duplicate extension %s (RFC 9908)", ErrCSRAttrs, x.ID)
			}
		}
	}
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, x := range exts {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(x.ID)
				if x.Critical { // DER: DEFAULT FALSE is omitted
					b.AddASN1Boolean(true)
				}
				if x.Value != nil {
					b.AddASN1OctetString(x.Value)
				}
			})
		}
	})
	return nil
}

func (t *Template) marshal(b *cryptobyte.Builder) error {
	var err error
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(0)
		if len(t.Subject) > 0 {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, na := range t.Subject {
					b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1ObjectIdentifier(na.Type)
							if !na.HasValue {
								return
							}
							tag := cbasn1.UTF8String
							if isPrintable(na.Value) {
								tag = cbasn1.PrintableString
							} else if !utf8.ValidString(na.Value) {
								err = fmt.Errorf("%w: subject attribute %s is not UTF-8", ErrCSRAttrs, na.Type)
							}
							b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes([]byte(na.Value)) })
						})
					})
				}
			})
		}
		if kt := t.KeyType; kt != nil {
			b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(kt.Algorithm)
					switch {
					case kt.Algorithm.Equal(OIDPublicKeyEC):
						if len(kt.Curve) == 0 {
							err = fmt.Errorf("%w: template id-ecPublicKey needs a curve", ErrCSRAttrs)
							return
						}
						b.AddASN1ObjectIdentifier(kt.Curve)
					case kt.Algorithm.Equal(OIDPublicKeyRSA):
						b.AddASN1NULL() // RFC 4055 §1.2: rsaEncryption parameters are NULL
					}
				})
			})
		}
		b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			if len(t.Extensions) > 0 {
				typ := OIDExtensionRequest
				for _, x := range t.Extensions {
					if x.Value == nil { // RFC 9908 §3.4: a value left to the client
						typ = OIDExtensionReqTemplate
					}
				}
				addAttribute(b, typ, func(b *cryptobyte.Builder) {
					if e := addExtensions(b, t.Extensions, true); e != nil {
						err = e
					}
				})
			}
			for _, at := range t.Attributes {
				addRawAttribute(b, at)
			}
		})
	})
	return err
}

// isPrintable reports whether s fits an ASN.1 PrintableString (X.680 §41.4).
func isPrintable(s string) bool {
	for i := range len(s) {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == ' ', c == '\'', c == '(', c == ')', c == '+', c == ',', c == '-', c == '.', c == '/', c == ':', c == '=', c == '?':
		default:
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
