package est

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/gatehouse-pki/gatehouse/pki"
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
// requirements"). Servers fill the fields in; clients read them, or ask
// ChallengePasswordRequested, PreferredKeyType and RequestedExtensions.
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
	// Attributes are any other attributes, values kept as DER. An
	// id-ExtensionReq whose values are bare extension OIDs (the form of
	// RFC 8951's own example, which RFC 9908 §3.2 replaced) is kept here.
	Attributes []Attribute
	// Raw is the DER ParseCSRAttrs read (nil when built by hand).
	// MarshalBinary does not use it.
	Raw []byte
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
	// Subject is the NameTemplate: its RDNs in order, each with its
	// attributes in order (more than one for a multi-valued RDN). An RDN
	// is never empty.
	Subject [][]NameAttribute
	// KeyType, if set, is the subjectPKInfo algorithm the client must use.
	KeyType *KeyType
	// Extensions the certificate will carry; see Extension.
	Extensions []Extension
	// Attributes are other CRI attributes, values as DER.
	Attributes []Attribute
}

// NameAttribute is one subject attribute of a Template (RFC 9908
// SingleAttributeTemplate). When HasValue is false the client fills the
// value in.
type NameAttribute struct {
	// Type is the attribute type.
	Type asn1.ObjectIdentifier
	// Value is the value as text when it is a UTF8String, PrintableString
	// or IA5String; "" for a value of another type (see Raw).
	Value string
	// HasValue reports that the server gave the value.
	HasValue bool
	// Raw is the value's DER, tag included, as received: clients copy it
	// into their CSR unchanged, whatever its type. When it is nil and
	// HasValue is set, MarshalBinary and MarshalName encode Value as a
	// PrintableString when it fits, else a UTF8String.
	Raw []byte
}

// maxCSRAttrsElements bounds the AttrOrOID elements of a CsrAttrs.
const maxCSRAttrsElements = 256

// ParseCSRAttrs parses the DER of a CsrAttrs. It reads every RFC 7030,
// RFC 8951 and RFC 9908 example, the bare-OID id-ExtensionReq of RFC 8951
// included. Unknown OIDs and attributes are kept (clients ignore what they
// do not recognise, RFC 7030 §4.5.2). Structural errors, trailing bytes,
// more than 256 elements, more than one id-ExtensionReq or template,
// duplicate extensions (RFC 9908 §3.2), and a key-type attribute that is
// not one curve OID (id-ecPublicKey) or one modulus size (rsaEncryption)
// are ErrCSRAttrs.
func ParseCSRAttrs(der []byte) (*CSRAttrs, error) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, fmt.Errorf("%w: not one DER SEQUENCE", ErrCSRAttrs)
	}
	a := &CSRAttrs{Raw: bytes.Clone(der)}
	var sawExt bool
	for n := 0; !seq.Empty(); n++ {
		if n == maxCSRAttrsElements {
			return nil, fmt.Errorf("%w: more than %d elements", ErrCSRAttrs, maxCSRAttrsElements)
		}
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
		case typ.Equal(OIDExtensionRequest) && bareOIDs(values):
			// RFC 8951 §4.5.2's example names an extension by its OID
			// alone; there is no value to request, so it is kept as is.
			a.Attributes = append(a.Attributes, Attribute{Type: typ, Values: values})
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
		case typ.Equal(OIDPublicKeyEC), typ.Equal(OIDPublicKeyRSA):
			kt, ok := keyTypeAttribute(typ, values)
			if !ok {
				return nil, fmt.Errorf("%w: key type attribute %s must hold one curve OID or one modulus size in (0, 2^20] (RFC 9908 §3.3)", ErrCSRAttrs, typ)
			}
			a.KeyTypes = append(a.KeyTypes, kt)
		default:
			a.Attributes = append(a.Attributes, Attribute{Type: typ, Values: values})
		}
	}
	return a, nil
}

// bareOIDs reports values that are one or more OBJECT IDENTIFIERs.
func bareOIDs(values [][]byte) bool {
	for _, v := range values {
		s := cryptobyte.String(v)
		var oid asn1.ObjectIdentifier
		if !s.ReadASN1ObjectIdentifier(&oid) || !s.Empty() {
			return false
		}
	}
	return len(values) > 0
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
		if v.ReadASN1Integer(&bits) && v.Empty() && bits > 0 && bits <= maxRSABits {
			return KeyType{Algorithm: typ, RSABits: int(bits)}, true
		}
	}
	return KeyType{}, false
}

// maxRSABits is the largest modulus size a CsrAttrs may name.
const maxRSABits = 1 << 20

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
	var err error
	if t.Subject, err = parseRDNs(subject); err != nil {
		return nil, err
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
		if (!isReq && !isTmpl) || bareOIDs(values) {
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

// parseRDNs reads the contents of an RDNSequence or NameTemplate: SET OF
// (Single)AttributeTemplate per RDN, none of them empty.
func parseRDNs(rdns cryptobyte.String) ([][]NameAttribute, error) {
	var out [][]NameAttribute
	for !rdns.Empty() {
		var set cryptobyte.String
		if !rdns.ReadASN1(&set, cbasn1.SET) || set.Empty() {
			return nil, fmt.Errorf("%w: template RDN", ErrCSRAttrs)
		}
		var rdn []NameAttribute
		for !set.Empty() {
			na, err := readNameAttribute(&set)
			if err != nil {
				return nil, err
			}
			rdn = append(rdn, na)
		}
		out = append(out, rdn)
	}
	return out, nil
}

// ParseName reads a DER Name (an RDNSequence, as in a certificate's
// RawSubject) into the Template.Subject model, every value present, each
// kept as DER in Raw. Errors wrap ErrCSRAttrs.
func ParseName(der []byte) ([][]NameAttribute, error) {
	in := cryptobyte.String(der)
	var rdns cryptobyte.String
	if !in.ReadASN1(&rdns, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, fmt.Errorf("%w: malformed Name", ErrCSRAttrs)
	}
	return parseRDNs(rdns)
}

// readNameAttribute reads SingleAttributeTemplate ::= SEQUENCE { type OID,
// value ANY OPTIONAL }. A value of any type is kept as DER; a UTF8String,
// PrintableString or IA5String must also be valid for its type, and is
// kept as text too.
func readNameAttribute(s *cryptobyte.String) (NameAttribute, error) {
	var atv, elem cryptobyte.String
	var na NameAttribute
	if !s.ReadASN1(&atv, cbasn1.SEQUENCE) || !atv.ReadASN1ObjectIdentifier(&na.Type) {
		return na, fmt.Errorf("%w: template subject attribute", ErrCSRAttrs)
	}
	if atv.Empty() {
		return na, nil
	}
	var tag cbasn1.Tag
	if !atv.ReadAnyASN1Element(&elem, &tag) || !atv.Empty() {
		return na, fmt.Errorf("%w: template subject attribute %s", ErrCSRAttrs, na.Type)
	}
	na.Raw, na.HasValue = bytes.Clone(elem), true
	var val cryptobyte.String
	if !elem.ReadAnyASN1(&val, &tag) {
		return na, fmt.Errorf("%w: template subject attribute %s", ErrCSRAttrs, na.Type)
	}
	v := string(val)
	switch tag {
	case cbasn1.UTF8String, cbasn1.PrintableString, cbasn1.IA5String:
		if tag == cbasn1.UTF8String && !utf8.ValidString(v) || tag == cbasn1.PrintableString && !pki.IsPrintableString(v) || tag == cbasn1.IA5String && !isASCII(v) {
			return na, fmt.Errorf("%w: template subject attribute %s: invalid string of type %d", ErrCSRAttrs, na.Type, tag)
		}
		na.Value = v
	}
	return na, nil
}

// parseSPKITemplate reads SubjectPublicKeyInfoTemplate ::= SEQUENCE {
// algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING OPTIONAL }
// (its outer tag already removed), keeping the algorithm and curve. An
// id-ecPublicKey without parameters leaves the curve to the client.
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
	case alg.Empty():
	case kt.Algorithm.Equal(OIDPublicKeyEC):
		if !alg.ReadASN1ObjectIdentifier(&kt.Curve) || !alg.Empty() {
			return kt, fmt.Errorf("%w: template id-ecPublicKey parameters are not a named curve", ErrCSRAttrs)
		}
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

// ChallengePasswordRequested reports whether a listed challengePassword,
// as a bare OID (RFC 7030 §4.5.2) or an attribute, at the top level or
// among the template's attributes, asks the client to put the TLS channel
// binding in its CSR (RFC 7030 §3.5).
func (a *CSRAttrs) ChallengePasswordRequested() bool {
	if slices.ContainsFunc(a.OIDs, OIDChallengePassword.Equal) {
		return true
	}
	isCP := func(at Attribute) bool { return at.Type.Equal(OIDChallengePassword) }
	return slices.ContainsFunc(a.Attributes, isCP) || a.Template != nil && slices.ContainsFunc(a.Template.Attributes, isCP)
}

// PreferredKeyType returns the key type a client should generate, and
// false when the server names none that KeyType.Supported accepts: the
// template's subjectPKInfo algorithm (an id-ecPublicKey without a curve
// means P-256; rsaEncryption 2048 bits), else the first supported key-type
// attribute, in the order KeyTypes, then id-Ed25519 attributes, then
// key-type attributes among the template's attributes. A server listing
// several lists them in its order of preference.
func (a *CSRAttrs) PreferredKeyType() (KeyType, bool) {
	if t := a.Template; t != nil && t.KeyType != nil {
		kt := *t.KeyType
		switch {
		case kt.Algorithm.Equal(OIDPublicKeyEC) && len(kt.Curve) == 0:
			kt.Curve = OIDCurveP256
		case kt.Algorithm.Equal(OIDPublicKeyRSA) && kt.RSABits == 0:
			kt.RSABits = minRSABits
		}
		if kt.Supported() {
			return kt, true
		}
	}
	candidates := slices.Clone(a.KeyTypes)
	attrs := slices.Clone(a.Attributes)
	if a.Template != nil {
		attrs = append(attrs, a.Template.Attributes...)
	}
	for _, at := range attrs {
		if at.Type.Equal(OIDPublicKeyEd25519) {
			candidates = append(candidates, KeyType{Algorithm: OIDPublicKeyEd25519})
		} else if kt, ok := keyTypeAttribute(at.Type, at.Values); ok {
			candidates = append(candidates, kt)
		}
	}
	for _, kt := range candidates {
		if kt.Supported() {
			return kt, true
		}
	}
	return KeyType{}, false
}

// RequestedExtensions returns the extensions the server asks for: the
// id-ExtensionReq ones, then the template's that name another extension
// (a CSR carries each extension once, RFC 5280 §4.2). A nil Value leaves
// the value to the client.
func (a *CSRAttrs) RequestedExtensions() []Extension {
	exts := slices.Clone(a.Extensions)
	if a.Template != nil {
		for _, x := range a.Template.Extensions {
			if !slices.ContainsFunc(exts, func(e Extension) bool { return e.ID.Equal(x.ID) }) {
				exts = append(exts, x)
			}
		}
	}
	return exts
}

// MarshalBinary returns the DER CsrAttrs. It refuses what ParseCSRAttrs
// would not read back the same: a key type without its parameter, an
// extension without a value outside a template, duplicate extensions,
// an empty subject RDN, an Attribute of a type that has its own field,
// more than 256 elements.
func (a *CSRAttrs) MarshalBinary() ([]byte, error) {
	var b cryptobyte.Builder
	var errs []error
	if n := len(a.OIDs) + len(a.KeyTypes) + len(a.Attributes); n > maxCSRAttrsElements {
		errs = append(errs, fmt.Errorf("%w: more than %d elements", ErrCSRAttrs, maxCSRAttrsElements))
	}
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, oid := range a.OIDs {
			b.AddASN1ObjectIdentifier(oid)
		}
		for _, kt := range a.KeyTypes {
			switch {
			case kt.Algorithm.Equal(OIDPublicKeyEC) && len(kt.Curve) > 0:
				addAttribute(b, kt.Algorithm, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(kt.Curve) })
			case kt.Algorithm.Equal(OIDPublicKeyRSA) && kt.RSABits > 0 && kt.RSABits <= maxRSABits:
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
			errs = append(errs, checkRawAttribute(at, false))
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

// checkRawAttribute refuses an Attribute that ParseCSRAttrs would read into
// another field: an extension request other than the bare-OID form, a
// template, or (at the top level) a key type.
func checkRawAttribute(at Attribute, inTemplate bool) error {
	switch {
	case (at.Type.Equal(OIDExtensionRequest) || inTemplate && at.Type.Equal(OIDExtensionReqTemplate)) && !bareOIDs(at.Values),
		!inTemplate && (at.Type.Equal(OIDCertificationRequestInfoTemplate) || at.Type.Equal(OIDPublicKeyEC) || at.Type.Equal(OIDPublicKeyRSA)):
		return fmt.Errorf("%w: attribute %s belongs in its own field", ErrCSRAttrs, at.Type)
	}
	return nil
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
	var errs []error
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(0)
		if len(t.Subject) > 0 {
			errs = append(errs, addName(b, t.Subject, false))
		}
		if kt := t.KeyType; kt != nil {
			b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(kt.Algorithm)
					switch {
					case kt.Algorithm.Equal(OIDPublicKeyEC):
						if len(kt.Curve) > 0 { // none: the client chooses
							b.AddASN1ObjectIdentifier(kt.Curve)
						}
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
				addAttribute(b, typ, func(b *cryptobyte.Builder) { errs = append(errs, addExtensions(b, t.Extensions, true)) })
			}
			for _, at := range t.Attributes {
				errs = append(errs, checkRawAttribute(at, true))
				addRawAttribute(b, at)
			}
		})
	})
	return errors.Join(errs...)
}

// MarshalName encodes a Name (RDNSequence) from attributes that all have
// values, as a client does to build its CSR subject from a Template's.
// Errors wrap ErrCSRAttrs.
func MarshalName(rdns [][]NameAttribute) ([]byte, error) {
	var b cryptobyte.Builder
	err := addName(&b, rdns, true)
	der, berr := b.Bytes()
	if err = errors.Join(err, berr); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCSRAttrs, err)
	}
	return der, nil
}

// addName writes an RDNSequence or, unless needValues, a NameTemplate.
func addName(b *cryptobyte.Builder, rdns [][]NameAttribute, needValues bool) error {
	var errs []error
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, rdn := range rdns {
			if len(rdn) == 0 {
				errs = append(errs, fmt.Errorf("%w: empty subject RDN", ErrCSRAttrs))
			}
			b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
				for _, na := range rdn {
					if needValues && !na.HasValue {
						errs = append(errs, fmt.Errorf("%w: subject attribute %s has no value", ErrCSRAttrs, na.Type))
					}
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(na.Type)
						if na.HasValue {
							errs = append(errs, addNameValue(b, na))
						}
					})
				}
			})
		}
	})
	return errors.Join(errs...)
}

// addNameValue writes Raw, which must be one DER element, or else Value
// as a PrintableString when it fits, otherwise a UTF8String.
func addNameValue(b *cryptobyte.Builder, na NameAttribute) error {
	if na.Raw != nil {
		s := cryptobyte.String(na.Raw)
		var elem cryptobyte.String
		var tag cbasn1.Tag
		if !s.ReadAnyASN1Element(&elem, &tag) || !s.Empty() {
			return fmt.Errorf("%w: subject attribute %s: Raw is not one DER element", ErrCSRAttrs, na.Type)
		}
		b.AddBytes(na.Raw)
		return nil
	}
	tag := cbasn1.UTF8String
	if pki.IsPrintableString(na.Value) {
		tag = cbasn1.PrintableString
	} else if !utf8.ValidString(na.Value) {
		return fmt.Errorf("%w: subject attribute %s is not UTF-8", ErrCSRAttrs, na.Type)
	}
	b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes([]byte(na.Value)) })
	return nil
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
