package est

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gatehouse-pki/gatehouse/internal/problem"
	"github.com/gatehouse-pki/gatehouse/pki"
)

// ErrNamesDiffer reports a re-enrollment CSR whose subject or
// subjectAltName is not the renewed certificate's.
var ErrNamesDiffer = errors.New("names differ from the certificate being renewed")

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// checkCSRPolicy applies pki.CheckCSR: the signature verifies with the
// CSR's own key (RFC 7030 §3.4 proof of possession, reliability C02), no
// MD5 or SHA-1 signature (C03), the key policy (C04), no request for CA
// rights (C06). The back end then checks the CSR against its profile.
func checkCSRPolicy(csr *x509.CertificateRequest) error {
	if err := pki.CheckCSR(csr); err != nil {
		switch {
		case errors.Is(err, pki.ErrWeakKey):
			return problem.New(problem.BadRequest, err, "the CSR's public key is refused by the key policy")
		default:
			return problem.New(problem.BadRequest, err, "the CSR is refused: bad signature, weak signature algorithm or a request for CA rights")
		}
	}
	return nil
}

// sameNames compares a CSR's subject and subjectAltName with a
// certificate's (RFC 7030 §4.2.2). Subjects are compared attribute by
// attribute in order, by type and value, so a client that re-encodes a
// PrintableString as UTF8String still matches; subjectAltNames are
// compared as multisets of GeneralNames, whatever their order or
// criticality.
func sameNames(csr *x509.CertificateRequest, cert *x509.Certificate) error {
	a, err := subjectAttrs(csr.RawSubject)
	if err != nil {
		return err
	}
	b, err := subjectAttrs(cert.RawSubject)
	if err != nil {
		return err
	}
	if !slices.EqualFunc(a, b, func(x, y pkix.AttributeTypeAndValue) bool {
		return x.Type.Equal(y.Type) && fmt.Sprint(x.Value) == fmt.Sprint(y.Value)
	}) {
		return fmt.Errorf("%w: subject %q, certificate %q", ErrNamesDiffer, csr.Subject, cert.Subject)
	}
	csrSAN, err := generalNames(csr.Extensions)
	if err != nil {
		return err
	}
	certSAN, err := generalNames(cert.Extensions)
	if err != nil {
		return err
	}
	if !slices.Equal(csrSAN, certSAN) {
		return fmt.Errorf("%w: subjectAltName", ErrNamesDiffer)
	}
	return nil
}

func subjectAttrs(raw []byte) ([]pkix.AttributeTypeAndValue, error) {
	var rdns pkix.RDNSequence
	if rest, err := asn1.Unmarshal(raw, &rdns); err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("%w: subject does not parse", ErrNamesDiffer)
	}
	var out []pkix.AttributeTypeAndValue
	for _, rdn := range rdns {
		out = append(out, rdn...)
	}
	return out, nil
}

// generalNames returns the subjectAltName's GeneralNames, each as its tag
// and contents, sorted; nil when there is no SAN.
func generalNames(exts []pkix.Extension) ([]string, error) {
	var out []string
	for _, e := range exts {
		if !e.Id.Equal(oidSubjectAltName) {
			continue
		}
		in := cryptobyte.String(e.Value)
		var seq cryptobyte.String
		if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
			return nil, fmt.Errorf("%w: malformed subjectAltName", ErrNamesDiffer)
		}
		for !seq.Empty() {
			var gn cryptobyte.String
			var tag cbasn1.Tag
			if !seq.ReadAnyASN1(&gn, &tag) {
				return nil, fmt.Errorf("%w: malformed subjectAltName", ErrNamesDiffer)
			}
			out = append(out, string(append([]byte{byte(tag)}, gn...)))
		}
	}
	slices.SortFunc(out, func(a, b string) int { return bytes.Compare([]byte(a), []byte(b)) })
	return out, nil
}

// maxChallengePassword is PKCS#9 ub-challengePassword (RFC 2985 §5.4.1).
const maxChallengePassword = 255

var (
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSAWithSHA512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
)

// CSRRequest is what CreateCSR puts into a PKCS#10 request.
type CSRRequest struct {
	// RawSubject is the DER subject Name (an empty RDNSequence when nil).
	RawSubject []byte
	// Extensions go into one extensionRequest attribute (RFC 9908: one
	// attribute, no duplicate extnIDs). Every Value must be set.
	Extensions []Extension
	// ChallengePassword, when not empty, is added as the PKCS#9
	// challengePassword attribute (a PrintableString when it fits, else a
	// UTF8String): the channel binding of RFC 7030 §3.5 (ChannelBinding).
	ChallengePassword string
}

// CreateCSR builds and signs a PKCS#10 request (RFC 2986) with key, and
// returns it parsed, its signature checked. The signature is ECDSA with
// the curve's matching SHA-2, RSA PKCS#1 v1.5 with SHA-256, or Ed25519. It
// writes the attributes itself because crypto/x509 cannot encode
// challengePassword.
func CreateCSR(req CSRRequest, key crypto.Signer) (*x509.CertificateRequest, error) {
	csr, err := createCSR(req, key)
	if err != nil {
		return nil, fmt.Errorf("create csr: %w", err)
	}
	return csr, nil
}

func createCSR(req CSRRequest, key crypto.Signer) (*x509.CertificateRequest, error) {
	if len(req.ChallengePassword) > maxChallengePassword {
		return nil, errors.New("challengePassword is too long")
	}
	for i, e := range req.Extensions {
		if e.Value == nil {
			return nil, fmt.Errorf("extension %s has no value", e.ID)
		}
		for _, prev := range req.Extensions[:i] {
			if prev.ID.Equal(e.ID) {
				return nil, fmt.Errorf("duplicate extension %s (RFC 9908)", e.ID)
			}
		}
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
		b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			if req.ChallengePassword != "" {
				addAttribute(b, OIDChallengePassword, func(b *cryptobyte.Builder) {
					tag := cbasn1.PrintableString
					if !pki.IsPrintableString(req.ChallengePassword) {
						tag = cbasn1.UTF8String
					}
					b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes([]byte(req.ChallengePassword)) })
				})
			}
			if len(req.Extensions) > 0 {
				addAttribute(b, OIDExtensionRequest, func(b *cryptobyte.Builder) {
					if err := addExtensions(b, req.Extensions, false); err != nil {
						b.SetError(err)
					}
				})
			}
		})
	})
	tbs, err := tb.Bytes()
	if err != nil {
		return nil, err
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
	der, err := pki.AssembleSigned(tbs, sigAlg, sig)
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
		oid = OIDPublicKeyEd25519
	default:
		return nil, 0, fmt.Errorf("%w %T", ErrUnsupportedKeyType, k)
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
