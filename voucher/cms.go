package voucher

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"
	"slices"
	"time"

	// The digests the allowlist names, linked in for crypto.Hash.New.
	_ "crypto/sha256"
	_ "crypto/sha512"

	"github.com/digitorus/pkcs7"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Content types of the voucher's CMS encapsulation (RFC 8366 §5.4).
var (
	// OIDAnimaJSONVoucher is id-ct-animaJSONVoucher, the eContentType RFC
	// 8366 §5.4 assigns, and the one SignCMS emits by default.
	OIDAnimaJSONVoucher = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 40}
	// OIDData is id-data, the eContentType every published BRSKI example
	// uses instead (standards digest §2.1); accepted and signable on request.
	OIDData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
)

// Limits of the CMS parser (attack table A17, reliability table D2).
const (
	// MaxCMSSize caps a CMS artifact in bytes.
	MaxCMSSize = 64 << 10
	// MaxCMSDepth caps the nesting of constructed DER elements; the
	// ContentInfo SEQUENCE is depth 1.
	MaxCMSDepth = 16
)

// Private copies of the OIDs the checks compare against, so that no caller
// can change what the parser accepts by writing to an exported variable.
var (
	oidAnimaJSONVoucher = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 40}
	oidData             = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidSignedData       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}

	oidAttrContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidAttrMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	oidAttrSigningTime   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 5}

	oidSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}

	oidECPublicKey     = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSAWithSHA512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidRSAEncryption   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSHA384WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSHA512WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
	oidEd25519         = asn1.ObjectIdentifier{1, 3, 101, 112}
)

// minRSABits is the smallest RSA modulus accepted for a CMS signature.
const minRSABits = 2048

// CMSOptions tunes SignCMS.
type CMSOptions struct {
	// ContentType is the eContentType. Zero means OIDAnimaJSONVoucher, the
	// RFC 8366 value; OIDData is allowed for peers that expect the form of
	// the published examples. Anything else is refused.
	ContentType asn1.ObjectIdentifier
	// SigningTime, when set, is carried as the signingTime signed attribute
	// (RFC 5652 §11.3), from the caller's clock. Zero omits the attribute.
	// Verifiers never use it for trust.
	SigningTime time.Time
}

// cmsSigAlg is a signature algorithm family the verifier accepts.
type cmsSigAlg int

const (
	cmsSigECDSA cmsSigAlg = iota + 1
	cmsSigRSAPKCS1
	cmsSigEd25519
)

// CMS is a parsed CMS SignedData voucher artifact (RFC 8366 §5.4). ParseCMS
// checks its structure only; nothing in it is trusted until VerifyCMS
// accepts it.
type CMS struct {
	// ContentType is the eContentType: OIDAnimaJSONVoucher or OIDData.
	ContentType asn1.ObjectIdentifier
	// Content is the encapsulated content: the voucher or voucher-request
	// JSON.
	Content []byte
	// Certificates are the certificates the artifact embeds, in order.
	Certificates []*x509.Certificate
	// SigningTime is the signingTime signed attribute, zero when absent. It
	// is informational and never used for trust (attack table A19).
	SigningTime time.Time
	// Version is the SignedData version: 1 or 3.
	Version int
	// Digest is the SignerInfo's digest algorithm.
	Digest crypto.Hash
	// SignedAttributes reports whether the SignerInfo carries signed
	// attributes (draft-ietf-anima-rfc8366bis requires them).
	SignedAttributes bool

	signer cmsSignerInfo
}

// cmsSignerInfo is what verification needs from the single SignerInfo.
type cmsSignerInfo struct {
	issuer        []byte   // DER Name of issuerAndSerialNumber, or nil
	serial        *big.Int // serial of issuerAndSerialNumber, or nil
	ski           []byte   // subjectKeyIdentifier, or nil
	sigAlg        cmsSigAlg
	signedAttrs   []byte // the signed attributes as a DER SET OF (tag 0x31)
	signature     []byte
	messageDigest []byte
}

// SignCMS signs payload as a CMS SignedData (RFC 5652) voucher artifact
// (RFC 8366 §5.4) and returns its DER ContentInfo. The signer is
// identified by issuerAndSerialNumber; the signed attributes are
// contentType, messageDigest and, when opts.SigningTime is set,
// signingTime; the certificates field holds cert followed by chain. The
// digest is SHA-256 (SHA-384 for P-384, SHA-512 for P-521 and, as RFC 8419
// requires, Ed25519). ECDSA, RSA (PKCS #1 v1.5, at least 2048 bits) and
// Ed25519 keys are supported. An error returned by key.Sign is passed
// through, wrapped.
func SignCMS(payload []byte, key crypto.Signer, cert *x509.Certificate, chain []*x509.Certificate, opts CMSOptions) ([]byte, error) {
	if len(payload) == 0 {
		return nil, fmt.Errorf("%w: sign cms: payload is empty", ErrInvalid)
	}
	if key == nil || cert == nil {
		return nil, fmt.Errorf("%w: sign cms: key and certificate are required", ErrInvalid)
	}
	if n := 1 + len(chain); n > MaxCertificates {
		return nil, fmt.Errorf("%w: sign cms: %d certificates, limit %d", ErrTooLarge, n, MaxCertificates)
	}
	if slices.Contains(chain, nil) {
		return nil, fmt.Errorf("%w: sign cms: nil certificate in chain", ErrInvalid)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%w: sign cms: key does not match certificate %q", ErrInvalid, cert.Subject.String())
	}
	contentType := opts.ContentType
	switch {
	case len(contentType) == 0:
		contentType = oidAnimaJSONVoucher
	case contentType.Equal(oidAnimaJSONVoucher), contentType.Equal(oidData):
	default:
		return nil, fmt.Errorf("%w: sign cms: eContentType %s is neither id-ct-animaJSONVoucher nor id-data", ErrUnsupported, contentType)
	}
	hash, hashOID, err := cmsDigestFor(key.Public())
	if err != nil {
		return nil, err
	}

	sd, err := pkcs7.NewSignedData(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: sign cms: %w", ErrInvalid, err)
	}
	// The library's default digest is SHA-1, and SetContentType must come
	// before AddSigner, which copies it into the contentType attribute.
	sd.SetDigestAlgorithm(hashOID)
	sd.SetContentType(contentType)
	// AddSigner builds the SignerInfo, but it always adds a signingTime
	// read from the wall clock. So it gets a stand-in that signs nothing;
	// the attributes are then set from opts and signed once, below, with
	// the real key.
	if err := sd.AddSigner(cert, cmsDeferredSigner{pub: key.Public()}, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, fmt.Errorf("%w: sign cms: %w", ErrUnsupported, err)
	}
	for _, c := range chain {
		sd.AddCertificate(c)
	}
	inner := sd.GetSignedData()
	if len(inner.SignerInfos) != 1 {
		return nil, fmt.Errorf("%w: sign cms: library built %d SignerInfos", ErrInvalid, len(inner.SignerInfos))
	}
	si := &inner.SignerInfos[0]

	attrs := si.AuthenticatedAttributes[:0:0]
	for _, a := range si.AuthenticatedAttributes {
		if a.Type.Equal(oidAttrSigningTime) {
			if opts.SigningTime.IsZero() {
				continue
			}
			// RFC 5652 §11.3: UTCTime through 2049, GeneralizedTime after;
			// encoding/asn1 chooses the same way.
			v, err := asn1.Marshal(opts.SigningTime.UTC().Truncate(time.Second))
			if err != nil {
				return nil, fmt.Errorf("%w: sign cms: signing time: %w", ErrInvalid, err)
			}
			a.Value.Bytes = v
		}
		attrs = append(attrs, a)
	}
	// DER orders a SET OF by its elements' encodings (X.690 §11.6); the
	// SignerInfo carries them in the order that is signed.
	encs := make([][]byte, len(attrs))
	for i, a := range attrs {
		if encs[i], err = asn1.Marshal(a); err != nil {
			return nil, fmt.Errorf("%w: sign cms: signed attribute: %w", ErrInvalid, err)
		}
	}
	order := make([]int, len(attrs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(i, j int) int { return bytes.Compare(encs[i], encs[j]) })
	sorted := attrs[:0:0]
	var set cryptobyte.Builder
	set.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
		for _, i := range order {
			sorted = append(sorted, attrs[i])
			b.AddBytes(encs[i])
		}
	})
	signed, err := set.Bytes()
	if err != nil {
		return nil, fmt.Errorf("%w: sign cms: signed attributes: %w", ErrInvalid, err)
	}
	si.AuthenticatedAttributes = sorted

	var sig []byte
	if _, isEd := key.Public().(ed25519.PublicKey); isEd {
		sig, err = key.Sign(rand.Reader, signed, crypto.Hash(0))
	} else {
		h := hash.New()
		h.Write(signed)
		sig, err = key.Sign(rand.Reader, h.Sum(nil), hash)
	}
	if err != nil {
		return nil, fmt.Errorf("sign cms: %w", err)
	}
	si.EncryptedDigest = sig
	// RFC 5652 §5.1: version 3 when eContentType is not id-data. The
	// library always writes 1.
	if !contentType.Equal(oidData) {
		inner.Version = 3
	}
	der, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("%w: sign cms: %w", ErrInvalid, err)
	}
	if len(der) > MaxCMSSize {
		return nil, fmt.Errorf("%w: sign cms: artifact is %d bytes, limit %d", ErrTooLarge, len(der), MaxCMSSize)
	}
	return der, nil
}

// cmsDeferredSigner stands in for the key while the library assembles a
// SignerInfo; SignCMS signs the final attributes itself.
type cmsDeferredSigner struct{ pub crypto.PublicKey }

func (s cmsDeferredSigner) Public() crypto.PublicKey { return s.pub }

func (s cmsDeferredSigner) Sign(_ io.Reader, _ []byte, _ crypto.SignerOpts) ([]byte, error) {
	return nil, nil
}

// cmsDigestFor picks the digest for a signing key: the hash matched to
// the curve (RFC 5480 §4), SHA-256 for RSA, SHA-512 for Ed25519 (RFC 8419
// §3).
func cmsDigestFor(pub crypto.PublicKey) (crypto.Hash, asn1.ObjectIdentifier, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return crypto.SHA256, oidSHA256, nil
		case elliptic.P384():
			return crypto.SHA384, oidSHA384, nil
		case elliptic.P521():
			return crypto.SHA512, oidSHA512, nil
		}
		return 0, nil, fmt.Errorf("%w: sign cms: ECDSA curve %s", ErrUnsupported, k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return 0, nil, fmt.Errorf("%w: sign cms: RSA key of %d bits, minimum %d", ErrUnsupported, k.N.BitLen(), minRSABits)
		}
		return crypto.SHA256, oidSHA256, nil
	case ed25519.PublicKey:
		return crypto.SHA512, oidSHA512, nil
	}
	return 0, nil, fmt.Errorf("%w: sign cms: key type %T", ErrUnsupported, pub)
}

// ParseCMS parses a CMS SignedData voucher artifact without verifying it.
// It bounds the input before any other work: at most MaxCMSSize bytes, DER
// only (indefinite lengths are refused), constructed nesting at most
// MaxCMSDepth, at most MaxCertificates certificates, exactly one
// SignerInfo. The content type must be SignedData and the eContentType
// id-ct-animaJSONVoucher or id-data; digests must be SHA-256, -384 or -512
// and signatures ECDSA, RSA PKCS #1 v1.5 or Ed25519 (else ErrUnsupported).
// When signed attributes are present they must hold one contentType equal
// to the eContentType and one messageDigest (RFC 5652 §5.3, §11.1).
func ParseCMS(der []byte) (*CMS, error) {
	if len(der) > MaxCMSSize {
		return nil, fmt.Errorf("%w: cms is %d bytes, limit %d", ErrTooLarge, len(der), MaxCMSSize)
	}
	if len(der) == 0 {
		return nil, fmt.Errorf("%w: cms is empty", ErrMalformed)
	}
	// A bounded walk over every element first, so that what follows (and
	// the certificate parser) only ever sees shallow, definite-length DER.
	if err := checkDERShape(der); err != nil {
		return nil, err
	}
	c := &CMS{}

	input := cryptobyte.String(der)
	var ci, explicit, sd cryptobyte.String
	var contentType asn1.ObjectIdentifier
	if !input.ReadASN1(&ci, cbasn1.SEQUENCE) || !input.Empty() ||
		!ci.ReadASN1ObjectIdentifier(&contentType) {
		return nil, fmt.Errorf("%w: cms: not a ContentInfo", ErrMalformed)
	}
	if !contentType.Equal(oidSignedData) {
		return nil, fmt.Errorf("%w: cms: content type %s is not SignedData", ErrUnsupported, contentType)
	}
	if !ci.ReadASN1(&explicit, cbasn1.Tag(0).ContextSpecific().Constructed()) || !ci.Empty() ||
		!explicit.ReadASN1(&sd, cbasn1.SEQUENCE) || !explicit.Empty() {
		return nil, fmt.Errorf("%w: cms: ContentInfo does not hold a SignedData", ErrMalformed)
	}

	var version int64
	if !sd.ReadASN1Integer(&version) {
		return nil, fmt.Errorf("%w: cms: SignedData version", ErrMalformed)
	}
	// RFC 5652 §5.1: 1 for id-data (as the published examples), 3 for other
	// content types or subjectKeyIdentifier signers. 4 and 5 mean attribute
	// or other certificate types, which a voucher never needs.
	if version != 1 && version != 3 {
		return nil, fmt.Errorf("%w: cms: SignedData version %d", ErrUnsupported, version)
	}
	c.Version = int(version)

	var digestSet cryptobyte.String
	if !sd.ReadASN1(&digestSet, cbasn1.SET) {
		return nil, fmt.Errorf("%w: cms: digestAlgorithms", ErrMalformed)
	}
	for !digestSet.Empty() {
		oid, params, err := readAlgorithmIdentifier(&digestSet)
		if err != nil {
			return nil, fmt.Errorf("cms digestAlgorithms: %w", err)
		}
		if _, err := cmsDigest(oid, params); err != nil {
			return nil, err
		}
	}

	var eci, eContentWrap cryptobyte.String
	var eContentPresent bool
	if !sd.ReadASN1(&eci, cbasn1.SEQUENCE) || !eci.ReadASN1ObjectIdentifier(&c.ContentType) ||
		!eci.ReadOptionalASN1(&eContentWrap, &eContentPresent, cbasn1.Tag(0).ContextSpecific().Constructed()) ||
		!eci.Empty() {
		return nil, fmt.Errorf("%w: cms: encapContentInfo", ErrMalformed)
	}
	// RFC 8366 §5.4 (and 8366bis): id-ct-animaJSONVoucher; id-data is what
	// every published example carries (standards digest §2.1).
	if !c.ContentType.Equal(oidAnimaJSONVoucher) && !c.ContentType.Equal(oidData) {
		return nil, fmt.Errorf("%w: cms: eContentType %s is neither id-ct-animaJSONVoucher nor id-data", ErrUnsupported, c.ContentType)
	}
	if !eContentPresent {
		return nil, fmt.Errorf("%w: cms: detached content", ErrUnsupported)
	}
	var content cryptobyte.String
	if !eContentWrap.ReadASN1(&content, cbasn1.OCTET_STRING) || !eContentWrap.Empty() {
		// A constructed OCTET STRING is BER, never DER.
		return nil, fmt.Errorf("%w: cms: eContent is not a primitive OCTET STRING", ErrMalformed)
	}
	c.Content = bytes.Clone(content)

	var certs cryptobyte.String
	var certsPresent bool
	if !sd.ReadOptionalASN1(&certs, &certsPresent, cbasn1.Tag(0).ContextSpecific().Constructed()) {
		return nil, fmt.Errorf("%w: cms: certificates", ErrMalformed)
	}
	var rawCerts [][]byte
	for !certs.Empty() {
		var raw cryptobyte.String
		var tag cbasn1.Tag
		if !certs.ReadAnyASN1Element(&raw, &tag) {
			return nil, fmt.Errorf("%w: cms: certificates", ErrMalformed)
		}
		if tag != cbasn1.SEQUENCE {
			return nil, fmt.Errorf("%w: cms: certificate choice with tag 0x%02x (only X.509 certificates)", ErrUnsupported, uint8(tag))
		}
		if len(rawCerts) == MaxCertificates {
			return nil, fmt.Errorf("%w: cms carries more than %d certificates", ErrTooLarge, MaxCertificates)
		}
		if len(raw) > MaxCertLen {
			return nil, fmt.Errorf("%w: cms: certificate %d is %d bytes, limit %d", ErrTooLarge, len(rawCerts)+1, len(raw), MaxCertLen)
		}
		rawCerts = append(rawCerts, raw)
	}
	// crls [1]: revocation data is not consulted; skipped.
	if !sd.SkipOptionalASN1(cbasn1.Tag(1).ContextSpecific().Constructed()) {
		return nil, fmt.Errorf("%w: cms: crls", ErrMalformed)
	}
	var signerInfos, si cryptobyte.String
	if !sd.ReadASN1(&signerInfos, cbasn1.SET) || !sd.Empty() {
		return nil, fmt.Errorf("%w: cms: signerInfos", ErrMalformed)
	}
	if !signerInfos.ReadASN1(&si, cbasn1.SEQUENCE) {
		return nil, fmt.Errorf("%w: cms has no SignerInfo", ErrMalformed)
	}
	if !signerInfos.Empty() {
		// Attack table A17: exactly one signer.
		return nil, fmt.Errorf("%w: cms has more than one SignerInfo", ErrUnsupported)
	}
	if err := c.parseSignerInfo(si); err != nil {
		return nil, err
	}

	c.Certificates = make([]*x509.Certificate, 0, len(rawCerts))
	for i, raw := range rawCerts {
		cert, err := x509.ParseCertificate(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: cms: certificate %d: %w", ErrMalformed, i+1, err)
		}
		c.Certificates = append(c.Certificates, cert)
	}
	return c, nil
}

// checkDERShape walks every element of der: each must have a definite,
// minimal DER length and a low tag number, constructed elements may nest
// MaxCMSDepth deep, and nothing may follow the outer element.
func checkDERShape(der []byte) error {
	s := cryptobyte.String(der)
	if err := walkDER(&s, 1); err != nil {
		return err
	}
	if !s.Empty() {
		return fmt.Errorf("%w: cms: data after the ContentInfo", ErrMalformed)
	}
	return nil
}

func walkDER(s *cryptobyte.String, depth int) error {
	if depth > MaxCMSDepth {
		return fmt.Errorf("%w: cms nests deeper than %d", ErrTooLarge, MaxCMSDepth)
	}
	for first := true; !s.Empty(); first = false {
		if depth == 1 && !first {
			return nil // trailing data, reported by the caller
		}
		var elem cryptobyte.String
		var tag cbasn1.Tag
		if !s.ReadAnyASN1(&elem, &tag) {
			if len(*s) >= 2 && (*s)[1] == 0x80 {
				return fmt.Errorf("%w: cms uses an indefinite length (BER); DER is required", ErrMalformed)
			}
			return fmt.Errorf("%w: cms is not DER", ErrMalformed)
		}
		if tag&0x20 != 0 {
			if err := walkDER(&elem, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// parseSignerInfo reads the SignerInfo (RFC 5652 §5.3).
func (c *CMS) parseSignerInfo(si cryptobyte.String) error {
	var version int64
	if !si.ReadASN1Integer(&version) {
		return fmt.Errorf("%w: cms: SignerInfo version", ErrMalformed)
	}
	s := &c.signer
	switch {
	case si.PeekASN1Tag(cbasn1.SEQUENCE):
		var ias, name cryptobyte.String
		s.serial = new(big.Int)
		if !si.ReadASN1(&ias, cbasn1.SEQUENCE) || !ias.ReadASN1Element(&name, cbasn1.SEQUENCE) ||
			!ias.ReadASN1Integer(s.serial) || !ias.Empty() {
			return fmt.Errorf("%w: cms: issuerAndSerialNumber", ErrMalformed)
		}
		s.issuer = bytes.Clone(name)
		if version != 1 {
			return fmt.Errorf("%w: cms: SignerInfo version %d with issuerAndSerialNumber, want 1", ErrMalformed, version)
		}
	case si.PeekASN1Tag(cbasn1.Tag(0).ContextSpecific()):
		var ski cryptobyte.String
		if !si.ReadASN1(&ski, cbasn1.Tag(0).ContextSpecific()) || len(ski) == 0 {
			return fmt.Errorf("%w: cms: subjectKeyIdentifier", ErrMalformed)
		}
		s.ski = bytes.Clone(ski)
		if version != 3 {
			return fmt.Errorf("%w: cms: SignerInfo version %d with subjectKeyIdentifier, want 3", ErrMalformed, version)
		}
	default:
		return fmt.Errorf("%w: cms: SignerInfo has no signer identifier", ErrMalformed)
	}

	digestOID, digestParams, err := readAlgorithmIdentifier(&si)
	if err != nil {
		return fmt.Errorf("cms SignerInfo digestAlgorithm: %w", err)
	}
	if c.Digest, err = cmsDigest(digestOID, digestParams); err != nil {
		return err
	}

	signedAttrsTag := cbasn1.Tag(0).ContextSpecific().Constructed()
	if si.PeekASN1Tag(signedAttrsTag) {
		var full cryptobyte.String
		if !si.ReadASN1Element(&full, signedAttrsTag) {
			return fmt.Errorf("%w: cms: signedAttrs", ErrMalformed)
		}
		// RFC 5652 §5.4: the signature covers the DER of the attributes
		// with an EXPLICIT SET OF tag in place of the IMPLICIT [0].
		s.signedAttrs = bytes.Clone(full)
		s.signedAttrs[0] = byte(cbasn1.SET)
		c.SignedAttributes = true
		if err := c.parseSignedAttrs(full); err != nil {
			return err
		}
	}

	sigOID, sigParams, err := readAlgorithmIdentifier(&si)
	if err != nil {
		return fmt.Errorf("cms SignerInfo signatureAlgorithm: %w", err)
	}
	if s.sigAlg, err = cmsSignatureAlgorithm(sigOID, sigParams, c.Digest); err != nil {
		return err
	}
	var sig cryptobyte.String
	if !si.ReadASN1(&sig, cbasn1.OCTET_STRING) || len(sig) == 0 {
		return fmt.Errorf("%w: cms: signature", ErrMalformed)
	}
	s.signature = bytes.Clone(sig)
	// unsignedAttrs [1] are not covered by the signature and not used.
	if !si.SkipOptionalASN1(cbasn1.Tag(1).ContextSpecific().Constructed()) || !si.Empty() {
		return fmt.Errorf("%w: cms: data after the SignerInfo signature", ErrMalformed)
	}
	return nil
}

// parseSignedAttrs reads the signed attributes: each type at most once;
// contentType and messageDigest present, single-valued, and contentType
// equal to the eContentType (RFC 5652 §5.3, §11.1, §11.2).
func (c *CMS) parseSignedAttrs(full cryptobyte.String) error {
	var set cryptobyte.String
	if !full.ReadASN1(&set, cbasn1.Tag(0).ContextSpecific().Constructed()) {
		return fmt.Errorf("%w: cms: signedAttrs", ErrMalformed)
	}
	var seen []asn1.ObjectIdentifier
	var haveContentType bool
	for !set.Empty() {
		var attr, values, value cryptobyte.String
		var typ asn1.ObjectIdentifier
		if !set.ReadASN1(&attr, cbasn1.SEQUENCE) || !attr.ReadASN1ObjectIdentifier(&typ) ||
			!attr.ReadASN1(&values, cbasn1.SET) || !attr.Empty() {
			return fmt.Errorf("%w: cms: signed attribute", ErrMalformed)
		}
		if slices.ContainsFunc(seen, typ.Equal) {
			return fmt.Errorf("%w: cms: signed attribute %s appears twice", ErrInvalid, typ)
		}
		seen = append(seen, typ)
		switch {
		case typ.Equal(oidAttrContentType):
			var ct asn1.ObjectIdentifier
			if !values.ReadASN1ObjectIdentifier(&ct) || !values.Empty() {
				return fmt.Errorf("%w: cms: contentType attribute", ErrMalformed)
			}
			// RFC 5652 §11.1 and attack table A18.
			if !ct.Equal(c.ContentType) {
				return fmt.Errorf("%w: cms: contentType attribute %s differs from eContentType %s", ErrInvalid, ct, c.ContentType)
			}
			haveContentType = true
		case typ.Equal(oidAttrMessageDigest):
			if !values.ReadASN1(&value, cbasn1.OCTET_STRING) || !values.Empty() || len(value) == 0 {
				return fmt.Errorf("%w: cms: messageDigest attribute", ErrMalformed)
			}
			c.signer.messageDigest = bytes.Clone(value)
		case typ.Equal(oidAttrSigningTime):
			var t time.Time
			var ok bool
			switch {
			case values.PeekASN1Tag(cbasn1.UTCTime):
				ok = values.ReadASN1UTCTime(&t)
			case values.PeekASN1Tag(cbasn1.GeneralizedTime):
				ok = values.ReadASN1GeneralizedTime(&t)
			}
			if !ok || !values.Empty() {
				return fmt.Errorf("%w: cms: signingTime attribute", ErrMalformed)
			}
			c.SigningTime = t.UTC()
		}
	}
	if !haveContentType {
		return fmt.Errorf("%w: cms: signed attributes lack contentType", ErrInvalid)
	}
	if c.signer.messageDigest == nil {
		return fmt.Errorf("%w: cms: signed attributes lack messageDigest", ErrInvalid)
	}
	return nil
}

// readAlgorithmIdentifier reads an AlgorithmIdentifier; params is the full
// parameters element, or nil when absent.
func readAlgorithmIdentifier(s *cryptobyte.String) (asn1.ObjectIdentifier, []byte, error) {
	var ai cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !s.ReadASN1(&ai, cbasn1.SEQUENCE) || !ai.ReadASN1ObjectIdentifier(&oid) {
		return nil, nil, fmt.Errorf("%w: AlgorithmIdentifier", ErrMalformed)
	}
	if ai.Empty() {
		return oid, nil, nil
	}
	var params cryptobyte.String
	var tag cbasn1.Tag
	if !ai.ReadAnyASN1Element(&params, &tag) || !ai.Empty() {
		return nil, nil, fmt.Errorf("%w: AlgorithmIdentifier parameters", ErrMalformed)
	}
	return oid, params, nil
}

// absentOrNull reports whether AlgorithmIdentifier parameters are absent
// or NULL, as every accepted algorithm has them.
func absentOrNull(params []byte) bool {
	return params == nil || bytes.Equal(params, []byte{0x05, 0x00})
}

// cmsDigest maps an allowlisted digest algorithm to its hash.
func cmsDigest(oid asn1.ObjectIdentifier, params []byte) (crypto.Hash, error) {
	var h crypto.Hash
	switch {
	case oid.Equal(oidSHA256):
		h = crypto.SHA256
	case oid.Equal(oidSHA384):
		h = crypto.SHA384
	case oid.Equal(oidSHA512):
		h = crypto.SHA512
	default:
		// MD5, SHA-1, SHA-224 and everything else.
		return 0, fmt.Errorf("%w: cms: digest algorithm %s is not SHA-256, SHA-384 or SHA-512", ErrUnsupported, oid)
	}
	if !absentOrNull(params) {
		return 0, fmt.Errorf("%w: cms: digest algorithm %s has parameters", ErrMalformed, oid)
	}
	return h, nil
}

// cmsSignatureAlgorithm maps an allowlisted SignerInfo signatureAlgorithm
// to its family. A hash named by the algorithm must be the SignerInfo's
// digest algorithm.
func cmsSignatureAlgorithm(oid asn1.ObjectIdentifier, params []byte, digest crypto.Hash) (cmsSigAlg, error) {
	var alg cmsSigAlg
	var named crypto.Hash
	switch {
	case oid.Equal(oidECDSAWithSHA256):
		alg, named = cmsSigECDSA, crypto.SHA256
	case oid.Equal(oidECDSAWithSHA384):
		alg, named = cmsSigECDSA, crypto.SHA384
	case oid.Equal(oidECDSAWithSHA512):
		alg, named = cmsSigECDSA, crypto.SHA512
	case oid.Equal(oidECPublicKey):
		alg = cmsSigECDSA
	case oid.Equal(oidSHA256WithRSA):
		alg, named = cmsSigRSAPKCS1, crypto.SHA256
	case oid.Equal(oidSHA384WithRSA):
		alg, named = cmsSigRSAPKCS1, crypto.SHA384
	case oid.Equal(oidSHA512WithRSA):
		alg, named = cmsSigRSAPKCS1, crypto.SHA512
	case oid.Equal(oidRSAEncryption):
		alg = cmsSigRSAPKCS1
	case oid.Equal(oidEd25519):
		alg = cmsSigEd25519
	default:
		// ecdsa-with-SHA1, sha1WithRSAEncryption, md5WithRSAEncryption,
		// RSASSA-PSS, DSA and everything else.
		return 0, fmt.Errorf("%w: cms: signature algorithm %s", ErrUnsupported, oid)
	}
	if !absentOrNull(params) {
		return 0, fmt.Errorf("%w: cms: signature algorithm %s has parameters", ErrMalformed, oid)
	}
	if named != 0 && named != digest {
		return 0, fmt.Errorf("%w: cms: signature algorithm %s does not match digest %s", ErrUnsupported, oid, digest)
	}
	return alg, nil
}

// checkSignature verifies the SignerInfo's signature over the signed
// attributes with pub, returning an error wrapping ErrBadSignature.
func (c *CMS) checkSignature(pub any) error {
	s := &c.signer
	if s.signedAttrs == nil {
		return fmt.Errorf("%w: cms: no signed attributes", ErrBadSignature)
	}
	var ok bool
	switch s.sigAlg {
	case cmsSigECDSA:
		k, isEC := pub.(*ecdsa.PublicKey)
		if !isEC {
			return fmt.Errorf("%w: cms: ECDSA signature, %T key", ErrBadSignature, pub)
		}
		h := c.Digest.New()
		h.Write(s.signedAttrs)
		ok = ecdsa.VerifyASN1(k, h.Sum(nil), s.signature)
	case cmsSigRSAPKCS1:
		k, isRSA := pub.(*rsa.PublicKey)
		if !isRSA {
			return fmt.Errorf("%w: cms: RSA signature, %T key", ErrBadSignature, pub)
		}
		if k.N.BitLen() < minRSABits {
			return fmt.Errorf("%w: cms: RSA key of %d bits, minimum %d", ErrUnsupported, k.N.BitLen(), minRSABits)
		}
		h := c.Digest.New()
		h.Write(s.signedAttrs)
		ok = rsa.VerifyPKCS1v15(k, c.Digest, h.Sum(nil), s.signature) == nil
	case cmsSigEd25519:
		k, isEd := pub.(ed25519.PublicKey)
		if !isEd {
			return fmt.Errorf("%w: cms: Ed25519 signature, %T key", ErrBadSignature, pub)
		}
		ok = len(k) == ed25519.PublicKeySize && ed25519.Verify(k, s.signedAttrs, s.signature)
	}
	if !ok {
		return fmt.Errorf("%w: cms: signature does not verify", ErrBadSignature)
	}
	return nil
}

// matchesSigner reports whether cert is the one the SignerInfo names.
func (c *CMS) matchesSigner(cert *x509.Certificate) bool {
	s := &c.signer
	if s.ski != nil {
		return bytes.Equal(cert.SubjectKeyId, s.ski)
	}
	return cert.SerialNumber != nil && cert.SerialNumber.Cmp(s.serial) == 0 && bytes.Equal(cert.RawIssuer, s.issuer)
}

// VerifyCMS parses a CMS voucher artifact (ParseCMS), verifies its
// signature and builds the signer's chain to opts.Anchors at opts.Time,
// and returns the content. Signed attributes must be present
// (draft-ietf-anima-rfc8366bis) and their messageDigest must match the
// content. The signer certificate is found by the SignerInfo's identifier
// among the embedded certificates, opts.Intermediates and opts.Anchors; an
// artifact that embeds no certificate may instead verify under an anchor's
// own key. The signingTime attribute plays no part (attack table A19).
// Failures wrap ErrBadSignature (signature or digest), ErrUntrusted (no
// chain), ErrExpired or ErrNotYetValid (validity at opts.Time), or the
// parse errors of ParseCMS.
func VerifyCMS(der []byte, opts VerifyOptions) ([]byte, *Verified, error) {
	if err := opts.check(); err != nil {
		return nil, nil, err
	}
	c, err := ParseCMS(der)
	if err != nil {
		return nil, nil, err
	}
	if !c.SignedAttributes {
		// draft-ietf-anima-rfc8366bis §5.4: signed attributes MUST be
		// present and decoders MUST check for them.
		return nil, nil, fmt.Errorf("%w: verify cms: signed attributes are absent", ErrInvalid)
	}
	h := c.Digest.New()
	h.Write(c.Content)
	if subtle.ConstantTimeCompare(h.Sum(nil), c.signer.messageDigest) != 1 {
		return nil, nil, fmt.Errorf("%w: verify cms: messageDigest does not match the content", ErrBadSignature)
	}

	candidates := make([]*x509.Certificate, 0, len(c.Certificates)+len(opts.Intermediates)+len(opts.Anchors))
	candidates = append(candidates, c.Certificates...)
	candidates = append(candidates, opts.Intermediates...)
	candidates = append(candidates, opts.Anchors...)
	var signer *x509.Certificate
	var sigErr error
	for _, cand := range candidates {
		if cand == nil || !c.matchesSigner(cand) {
			continue
		}
		// Several certificates may carry the identifier; the one whose key
		// verifies the signature is the signer.
		if err := c.checkSignature(cand.PublicKey); err != nil {
			sigErr = err
			continue
		}
		signer = cand
		break
	}
	var v *Verified
	switch {
	case signer != nil:
		v, err = chainSigner(signer, withoutAnchors(c.Certificates, opts.Anchors), &opts)
	case sigErr != nil:
		return nil, nil, fmt.Errorf("verify cms signature: %w", sigErr)
	case len(c.Certificates) == 0:
		v, err = verifyWithAnchorKeys(c.checkSignature, &opts)
	default:
		return nil, nil, fmt.Errorf("%w: verify cms: no certificate matches the signer identifier", ErrUntrusted)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("verify cms signer: %w", err)
	}
	return bytes.Clone(c.Content), v, nil
}

var _ crypto.Signer = cmsDeferredSigner{}

// withoutAnchors drops the embedded certificates that are also anchors.
// RFC 8366 §5.4 has the signer embed its chain up to the anchor; offered
// as an intermediate too, the anchor makes x509 build (and check the
// signatures of) the same path twice.
func withoutAnchors(embedded, anchors []*x509.Certificate) []*x509.Certificate {
	out := make([]*x509.Certificate, 0, len(embedded))
	for _, c := range embedded {
		if !slices.ContainsFunc(anchors, func(a *x509.Certificate) bool { return a != nil && bytes.Equal(a.Raw, c.Raw) }) {
			out = append(out, c)
		}
	}
	return out
}
