package voucher

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	_ "crypto/sha256" // go-cose hashes through crypto.Hash: ES256 needs SHA-256 linked in
	_ "crypto/sha512" // and ES384 SHA-384
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
)

// MaxCOSELen bounds a COSE_Sign1 voucher or voucher-request in bytes.
// Longer input is refused with ErrTooLarge before decoding.
const MaxCOSELen = 16 << 10

// COSE header labels this package reads (RFC 9052 §3.1, RFC 9360 §2).
const (
	coseLabelAlg     int64 = 1
	coseLabelCrit    int64 = 2
	coseLabelCtyp    int64 = 3
	coseLabelKID     int64 = 4
	coseLabelX5Bag   int64 = 32
	coseLabelX5Chain int64 = 33
)

// coseTag18 is the one-byte CBOR head of tag 18, COSE_Sign1_Tagged.
const coseTag18 = 0xd2

// coseDecMode decodes COSE structure with the D9 limits; header labels and
// algorithm values decode as int64, as RFC 9052 types them.
var coseDecMode = func() cbor.DecMode {
	o := cborDecOptions()
	o.IntDec = cbor.IntDecConvertSignedOrFail
	return cborMustDecMode(o)
}()

// COSEOptions says what SignCOSE puts in the headers besides the algorithm.
type COSEOptions struct {
	// KID is an optional key identifier (label 4, unprotected).
	KID []byte
	// X5Bag is an unordered certificate bag (RFC 9360 label 32), as a
	// registrar voucher-request and a MASA voucher carry it.
	X5Bag []*x509.Certificate
	// X5Chain is an ordered chain, signer first (RFC 9360 label 33).
	X5Chain []*x509.Certificate
	// ProtectedCerts puts x5bag and x5chain in the protected header instead
	// of the unprotected one, where a registrar cannot strip them.
	ProtectedCerts bool
}

// COSE is the structure of a COSE_Sign1 message as ParseCOSE found it. Its
// contents are not authenticated; VerifyCOSE authenticates them.
type COSE struct {
	// Algorithm is the protected header's alg (ES256 -7, ES384 -35,
	// EdDSA -8, …), or 0 when the protected header has no integer alg.
	Algorithm int64
	// KID is the key identifier (label 4) from either header, if any.
	KID []byte
	// X5Bag and X5Chain are the certificates of labels 32 and 33 from
	// either header (at most MaxCertificates in all).
	X5Bag, X5Chain []*x509.Certificate
	// Payload is the signed content: the CBOR voucher(-request).
	Payload []byte
	// Signature is the raw signature.
	Signature []byte
	// Tagged reports whether the message carried CBOR tag 18.
	Tagged bool
	// UnprotectedCerts reports whether x5bag or x5chain sat in the
	// unprotected header (which StripUnprotectedCerts removes).
	UnprotectedCerts bool

	msg            cose.Sign1Message
	crit           []any
	unprotectedAlg bool
	parts          []cbor.RawMessage // protected, unprotected, payload, signature
}

// SignCOSE signs payload as a COSE_Sign1 message with CBOR tag 18
// (RFC 9052 §4.2). The algorithm follows the key: ES256 for P-256, ES384
// for P-384, EdDSA for Ed25519; any other key is ErrUnsupported. The
// protected header is {1: alg}, plus the certificates when
// opts.ProtectedCerts is set; the unprotected header carries the kid and,
// otherwise, the certificates. A single certificate is encoded as a byte
// string, several as an array (RFC 9360 COSE_X509).
func SignCOSE(payload []byte, key crypto.Signer, opts COSEOptions) ([]byte, error) {
	if len(payload) == 0 {
		return nil, fmt.Errorf("sign cose: %w: empty payload", ErrInvalid)
	}
	if key == nil {
		return nil, fmt.Errorf("sign cose: %w: no key", ErrInvalid)
	}
	alg, err := coseAlgorithmFor(key.Public())
	if err != nil {
		return nil, fmt.Errorf("sign cose: %w", err)
	}
	if n := len(opts.X5Bag) + len(opts.X5Chain); n > MaxCertificates {
		return nil, fmt.Errorf("sign cose: %w: %d certificates, limit %d", ErrTooLarge, n, MaxCertificates)
	}
	signer, err := cose.NewSigner(alg, key)
	if err != nil {
		return nil, fmt.Errorf("sign cose: %w: %w", ErrUnsupported, err)
	}
	prot := cose.ProtectedHeader{coseLabelAlg: alg}
	unprot := cose.UnprotectedHeader{}
	certs := map[any]any(unprot)
	if opts.ProtectedCerts {
		certs = prot
	}
	if v := coseX509(opts.X5Bag); v != nil {
		certs[coseLabelX5Bag] = v
	}
	if v := coseX509(opts.X5Chain); v != nil {
		certs[coseLabelX5Chain] = v
	}
	if opts.KID != nil {
		unprot[coseLabelKID] = opts.KID
	}
	out, err := cose.Sign1(rand.Reader, signer, cose.Headers{Protected: prot, Unprotected: unprot}, payload, nil)
	if err != nil {
		return nil, fmt.Errorf("sign cose: %w", err)
	}
	if len(out) > MaxCOSELen {
		return nil, fmt.Errorf("sign cose: %w: message is %d bytes, limit %d", ErrTooLarge, len(out), MaxCOSELen)
	}
	return out, nil
}

// coseX509 encodes certificates as RFC 9360 COSE_X509.
func coseX509(certs []*x509.Certificate) any {
	switch len(certs) {
	case 0:
		return nil
	case 1:
		return certs[0].Raw
	}
	raw := make([][]byte, len(certs))
	for i, c := range certs {
		raw[i] = c.Raw
	}
	return raw
}

// coseAlgorithmFor returns the one algorithm this package signs and
// verifies with a key of pub's type.
func coseAlgorithmFor(pub crypto.PublicKey) (cose.Algorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return cose.AlgorithmES256, nil
		case elliptic.P384():
			return cose.AlgorithmES384, nil
		}
		return 0, fmt.Errorf("%w: ECDSA key on curve %s", ErrUnsupported, k.Curve.Params().Name)
	case ed25519.PublicKey:
		return cose.AlgorithmEdDSA, nil
	}
	return 0, fmt.Errorf("%w: key of type %T", ErrUnsupported, pub)
}

// ParseCOSE decodes the structure of a COSE_Sign1 message, tagged (18) or
// untagged, without verifying it: input of at most MaxCOSELen bytes, the
// CBOR limits of DecodeVoucherCBOR, no tag but the outer 18, header labels
// unique across both headers, an attached payload, and at most
// MaxCertificates parsable certificates. Errors wrap ErrTooLarge or
// ErrMalformed.
func ParseCOSE(b []byte) (*COSE, error) {
	c, err := parseCOSE(b)
	if err != nil {
		return nil, fmt.Errorf("parse cose: %w", err)
	}
	return c, nil
}

func parseCOSE(b []byte) (*COSE, error) {
	if len(b) > MaxCOSELen {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), MaxCOSELen)
	}
	c := &COSE{}
	body := b
	if len(b) > 0 && b[0] == coseTag18 {
		c.Tagged, body = true, b[1:]
	}
	// The strict decoder checks the whole message (limits, no further
	// tags, UTF-8) before go-cose, whose own decoder has no limits, sees it.
	if err := coseDecMode.Unmarshal(body, &c.parts); err != nil {
		return nil, cborError(err)
	}
	if len(c.parts) != 4 {
		return nil, fmt.Errorf("%w: COSE_Sign1 is an array of %d, want 4", ErrMalformed, len(c.parts))
	}
	rawProt, rawUnprot, rawPayload, rawSig := c.parts[0], c.parts[1], c.parts[2], c.parts[3]
	if len(rawPayload) == 1 && rawPayload[0] == 0xf6 {
		return nil, fmt.Errorf("%w: detached payload", ErrMalformed)
	}
	if cborMajor(rawProt) != 2 || cborMajor(rawUnprot) != 5 || cborMajor(rawPayload) != 2 || cborMajor(rawSig) != 2 {
		return nil, fmt.Errorf("%w: COSE_Sign1 wants [bstr, map, bstr, bstr]", ErrMalformed)
	}
	var protBytes []byte
	if err := coseDecMode.Unmarshal(rawProt, &protBytes); err != nil {
		return nil, cborError(err)
	}
	var prot, unprot map[any]any
	if len(protBytes) > 0 {
		if err := coseDecMode.Unmarshal(protBytes, &prot); err != nil {
			return nil, fmt.Errorf("protected header: %w", cborError(err))
		}
		if prot == nil {
			return nil, fmt.Errorf("%w: protected header is not a map", ErrMalformed)
		}
	}
	if err := coseDecMode.Unmarshal(rawUnprot, &unprot); err != nil {
		return nil, fmt.Errorf("unprotected header: %w", cborError(err))
	}
	for k := range unprot {
		if _, ok := prot[k]; ok {
			return nil, fmt.Errorf("%w: header label %v in both the protected and the unprotected header", ErrMalformed, k)
		}
	}
	if err := c.readHeaders(prot, unprot); err != nil {
		return nil, err
	}
	// go-cose re-reads the message into the form its Verify takes and
	// applies its own header checks.
	var err error
	if c.Tagged {
		err = c.msg.UnmarshalCBOR(b)
	} else {
		err = (*cose.UntaggedSign1Message)(&c.msg).UnmarshalCBOR(b)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if c.msg.Payload == nil {
		return nil, fmt.Errorf("%w: detached payload", ErrMalformed)
	}
	c.Payload, c.Signature = c.msg.Payload, c.msg.Signature
	return c, nil
}

// cborMajor returns the major type of the CBOR item starting raw.
func cborMajor(raw []byte) byte {
	if len(raw) == 0 {
		return 0xff
	}
	return raw[0] >> 5
}

// readHeaders takes the parameters this package understands from the two
// header maps.
func (c *COSE) readHeaders(prot, unprot map[any]any) error {
	for k := range prot {
		if !coseLabelOK(k) {
			return fmt.Errorf("%w: protected header label of type %T", ErrMalformed, k)
		}
	}
	for k := range unprot {
		if !coseLabelOK(k) {
			return fmt.Errorf("%w: unprotected header label of type %T", ErrMalformed, k)
		}
	}
	if v, ok := prot[coseLabelAlg]; ok {
		if alg, ok := v.(int64); ok {
			c.Algorithm = alg
		}
	}
	_, c.unprotectedAlg = unprot[coseLabelAlg]
	if v, ok := prot[coseLabelCrit]; ok {
		list, ok := v.([]any)
		if !ok || len(list) == 0 {
			return fmt.Errorf("%w: crit is not a non-empty array", ErrMalformed)
		}
		c.crit = list
	}
	if _, ok := unprot[coseLabelCrit]; ok {
		return fmt.Errorf("%w: crit in the unprotected header", ErrMalformed)
	}
	for _, h := range []map[any]any{prot, unprot} {
		if v, ok := h[coseLabelKID]; ok {
			kid, ok := v.([]byte)
			if !ok {
				return fmt.Errorf("%w: kid is not a byte string", ErrMalformed)
			}
			c.KID = kid
		}
	}
	n := 0
	for i, h := range []map[any]any{prot, unprot} {
		for _, label := range []int64{coseLabelX5Bag, coseLabelX5Chain} {
			v, ok := h[label]
			if !ok {
				continue
			}
			certs, err := coseCertificates(v, &n)
			if err != nil {
				return fmt.Errorf("header label %d: %w", label, err)
			}
			if label == coseLabelX5Bag {
				c.X5Bag = certs
			} else {
				c.X5Chain = certs
			}
			if i == 1 {
				c.UnprotectedCerts = true
			}
		}
	}
	return nil
}

func coseLabelOK(k any) bool {
	switch k.(type) {
	case int64, string:
		return true
	}
	return false
}

// coseCertificates parses RFC 9360 COSE_X509 (one byte string or an array
// of them), counting certificates in n against MaxCertificates.
func coseCertificates(v any, n *int) ([]*x509.Certificate, error) {
	var raws []any
	switch v := v.(type) {
	case []byte:
		raws = []any{v}
	case []any:
		raws = v
	default:
		return nil, fmt.Errorf("%w: certificates are not a byte string or an array", ErrMalformed)
	}
	if len(raws) == 0 {
		return nil, fmt.Errorf("%w: empty certificate array", ErrMalformed)
	}
	*n += len(raws)
	if *n > MaxCertificates {
		return nil, fmt.Errorf("%w: more than %d certificates", ErrTooLarge, MaxCertificates)
	}
	certs := make([]*x509.Certificate, 0, len(raws))
	for _, r := range raws {
		der, ok := r.([]byte)
		if !ok {
			return nil, fmt.Errorf("%w: certificate is not a byte string", ErrMalformed)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		certs = append(certs, cert)
	}
	return certs, nil
}

// coseUnderstood are the header labels this package acts on or may ignore
// safely, which a sender may therefore list in crit.
var coseUnderstood = map[any]bool{
	coseLabelAlg:     true,
	coseLabelCtyp:    true,
	coseLabelKID:     true,
	coseLabelX5Bag:   true,
	coseLabelX5Chain: true,
}

// coseAllowed is the algorithm allowlist (reliability F4).
func coseAllowed(alg int64) bool {
	switch cose.Algorithm(alg) {
	case cose.AlgorithmES256, cose.AlgorithmES384, cose.AlgorithmEdDSA:
		return true
	}
	return false
}

// VerifyCOSE verifies a COSE_Sign1 message and returns its payload and
// signer. The algorithm comes from the protected header only and must be
// ES256, ES384 or EdDSA, matching the signer's key type; a crit label this
// package does not understand is ErrUnsupported.
//
// The signer is found in two ways, in order. First each anchor's own key is
// tried (verifyWithAnchorKeys): the cBRSKI examples embed no usable chain,
// and a registrar authenticates a pledge by its DTLS certificate, ignoring
// any x5bag the pledge sent. Otherwise the certificate among x5chain (leaf
// first), x5bag and opts.Signers whose key verifies the signature must
// chain to an anchor at opts.Time. Errors wrap ErrTooLarge, ErrMalformed,
// ErrUnsupported, ErrBadSignature, ErrUntrusted, ErrExpired or
// ErrNotYetValid.
func VerifyCOSE(b []byte, opts VerifyOptions) ([]byte, *Verified, error) {
	c, err := parseCOSE(b)
	if err != nil {
		return nil, nil, fmt.Errorf("verify cose: %w", err)
	}
	v, err := c.verify(&opts)
	if err != nil {
		return nil, nil, fmt.Errorf("verify cose: %w", err)
	}
	return c.Payload, v, nil
}

func (c *COSE) verify(opts *VerifyOptions) (*Verified, error) {
	if c.Algorithm == 0 {
		if c.unprotectedAlg {
			return nil, fmt.Errorf("%w: alg only in the unprotected header", ErrUnsupported)
		}
		return nil, fmt.Errorf("%w: no integer alg in the protected header", ErrUnsupported)
	}
	if !coseAllowed(c.Algorithm) {
		return nil, fmt.Errorf("%w: algorithm %s", ErrUnsupported, cose.Algorithm(c.Algorithm))
	}
	for _, label := range c.crit {
		if !coseUnderstood[label] {
			return nil, fmt.Errorf("%w: critical header label %v", ErrUnsupported, label)
		}
	}
	if err := opts.check(); err != nil {
		return nil, err
	}
	v, anchorErr := verifyWithAnchorKeys(c.checkKey, opts)
	if anchorErr == nil {
		return v, nil
	}
	if errors.Is(anchorErr, ErrExpired) || errors.Is(anchorErr, ErrNotYetValid) {
		return nil, anchorErr // an anchor's key signed, but the anchor is not valid now
	}
	embedded := make([]*x509.Certificate, 0, len(c.X5Chain)+len(c.X5Bag)+len(opts.Signers))
	embedded = append(embedded, c.X5Chain...)
	embedded = append(embedded, c.X5Bag...)
	embedded = append(embedded, opts.Signers...)
	var chainErr error
	for _, cert := range embedded {
		if c.checkKey(cert.PublicKey) != nil {
			continue
		}
		// Several certificates may carry the signing key (a renewed
		// certificate beside the old one): the first that chains wins.
		v, err := chainSigner(cert, embedded, opts)
		if err == nil {
			return v, nil
		}
		if chainErr == nil {
			chainErr = err
		}
	}
	if chainErr != nil {
		return nil, chainErr
	}
	if len(embedded) == 0 {
		return nil, anchorErr
	}
	return nil, fmt.Errorf("%w: nor does any embedded certificate's key: %w", anchorErr, ErrBadSignature)
}

// checkKey verifies the signature under pub, which must be of the type the
// algorithm names. It returns ErrBadSignature (wrapped) on any mismatch.
func (c *COSE) checkKey(pub any) error {
	want, err := coseAlgorithmFor(pub)
	if err != nil || int64(want) != c.Algorithm {
		return fmt.Errorf("%w: key of type %T does not fit algorithm %s", ErrBadSignature, pub, cose.Algorithm(c.Algorithm))
	}
	verifier, err := cose.NewVerifier(want, pub)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	if err := c.msg.Verify(nil, verifier); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	return nil
}

// StripUnprotectedCerts returns the COSE_Sign1 message b without the
// unprotected x5bag (32) and x5chain (33) parameters, as a cBRSKI registrar
// must forward a voucher to the pledge. The protected header, payload and
// signature are kept byte for byte, so the signature still verifies, and
// so is the tag (present or not). Certificates in the protected header
// stay, as they are signed. Other unprotected parameters are re-encoded in
// deterministic order.
func StripUnprotectedCerts(b []byte) ([]byte, error) {
	c, err := parseCOSE(b)
	if err != nil {
		return nil, fmt.Errorf("strip cose certificates: %w", err)
	}
	if !c.UnprotectedCerts {
		return bytes.Clone(b), nil
	}
	var unprot map[any]cbor.RawMessage
	if err := coseDecMode.Unmarshal(c.parts[1], &unprot); err != nil {
		return nil, fmt.Errorf("strip cose certificates: %w", cborError(err))
	}
	delete(unprot, coseLabelX5Bag)
	delete(unprot, coseLabelX5Chain)
	rawUnprot, err := cborEncMode.Marshal(unprot)
	if err != nil {
		return nil, fmt.Errorf("strip cose certificates: %w", err)
	}
	body, err := cborEncMode.Marshal([]cbor.RawMessage{c.parts[0], rawUnprot, c.parts[2], c.parts[3]})
	if err != nil {
		return nil, fmt.Errorf("strip cose certificates: %w", err)
	}
	if !c.Tagged {
		return body, nil
	}
	return append([]byte{coseTag18}, body...), nil
}
