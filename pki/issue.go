package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/jmhodges/clock"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Issuance errors.
var (
	// ErrLint reports a certificate that the pre-issuance linter refused; no
	// certificate was signed with the real key.
	ErrLint = errors.New("pre-issuance lint failed")
	// ErrNotDeterministic reports that the certificate signed with the real
	// key differs from the linted one in more than the signature (Boulder's
	// tbsCertIsDeterministic); the certificate is discarded.
	ErrNotDeterministic = errors.New("signed certificate differs from the linted one")
	// ErrAlreadySigned reports a second Sign of the same Prepared: a serial
	// is signed at most once.
	ErrAlreadySigned = errors.New("prepared certificate already signed")
	// ErrSign reports a failure of the issuing key (crypto.Signer) or of
	// certificate assembly.
	ErrSign = errors.New("certificate signing failed")
)

// OIDExtKeyUsageCMCRA is id-kp-cmcRA (RFC 6402), 1.3.6.1.5.5.7.3.28, which
// the MASA requires in the registrar's certificate (RFC 8995 §5.5.4).
var OIDExtKeyUsageCMCRA = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 28}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// Linter checks a to-be-issued certificate before the real key signs it
// (reliability Q1). der is the certificate as it will be issued except for
// the signature value, which comes from a throwaway key. pki/lint provides a
// zlint implementation. Lint returns nil to allow issuance.
type Linter interface {
	Lint(der []byte) error
}

// IssuerConfig is the issuing policy of one Issuer. Pure data; use
// WithDefaults, then Validate.
type IssuerConfig struct {
	// LDevID is the device certificate profile.
	LDevID Profile `yaml:"ldevid"`
	// RAValidity is the lifetime of registrar (RA) certificates. Default 365
	// days (DefaultRAValidity); at most 398 days. RA certificates use the
	// LDevID profile's Backdate.
	RAValidity time.Duration `yaml:"raValidity"`
	// CRLBaseURL, when set, puts a CRL distribution point in every LDevID
	// and RA certificate: CRLURL(CRLBaseURL, issuing CA certificate), the
	// CRL of the issuing generation. Default "": none. An http or https
	// URL.
	CRLBaseURL string `yaml:"crlBaseURL"`
}

// WithDefaults returns cfg with every unset field at its default.
func (cfg IssuerConfig) WithDefaults() IssuerConfig {
	cfg.LDevID = cfg.LDevID.WithDefaults()
	if cfg.RAValidity == 0 {
		cfg.RAValidity = DefaultRAValidity
	}
	return cfg
}

// Validate reports every problem in cfg at once. It is pure.
func (cfg IssuerConfig) Validate() error {
	var errs []error
	if err := cfg.LDevID.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("ldevid: %w", err))
	}
	if cfg.CRLBaseURL != "" {
		if u, err := url.Parse(cfg.CRLBaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%w: crlBaseURL %q: want an http or https URL", ErrProfile, cfg.CRLBaseURL))
		}
	}
	if cfg.RAValidity <= 0 || cfg.RAValidity > MaxLeafValidity {
		errs = append(errs, fmt.Errorf("%w: raValidity %s: must be in (0, %s]", ErrProfile, cfg.RAValidity, MaxLeafValidity))
	}
	return errors.Join(errs...)
}

// IssuerDeps are the collaborators of an Issuer.
type IssuerDeps struct {
	// Clock gives the issuance time. Required.
	Clock clock.Clock
	// CA is the issuing CA (certificate and key handle). Required.
	CA *CA
	// Linter, if set, lints every certificate before the real signature.
	Linter Linter
}

// Issuer issues LDevID and RA certificates from one CA, in two steps so a
// caller can record an intent between them (DESIGN.md "State and crash
// safety"): Prepare builds the final certificate and signs it with a
// throwaway key, lints it, and exposes the serial and the SHA-256 of the
// TBSCertificate; Sign signs it with the CA key and checks that the TBS did
// not change. An Issuer is safe for concurrent use.
type Issuer struct {
	cfg    IssuerConfig
	clk    clock.Clock
	ca     *CA
	linter Linter
	// lintKey and lintParent implement Boulder's lint issuer: a throwaway
	// key of the same algorithm and size as the CA key, and a copy of the
	// real CA certificate whose only change is that public key. Signing a
	// template with them yields a TBSCertificate byte-identical to the real
	// one (same issuer DN, same AKI, same signature AlgorithmIdentifier);
	// only the signature value differs.
	lintKey    crypto.Signer
	lintParent *x509.Certificate
}

// NewIssuer validates cfg and deps and returns an Issuer.
func NewIssuer(cfg IssuerConfig, deps IssuerDeps) (*Issuer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new issuer: %w", err)
	}
	if deps.Clock == nil || deps.CA == nil || deps.CA.Cert == nil || deps.CA.Signer == nil {
		return nil, fmt.Errorf("new issuer: %w: clock, CA certificate and CA signer are required", ErrBadCA)
	}
	lintKey, err := throwawayKey(deps.CA.Signer.Public())
	if err != nil {
		return nil, fmt.Errorf("new issuer: %w", err)
	}
	lintParent := *deps.CA.Cert
	lintParent.PublicKey = lintKey.Public()
	return &Issuer{cfg: cfg, clk: deps.Clock, ca: deps.CA, linter: deps.Linter, lintKey: lintKey, lintParent: &lintParent}, nil
}

// throwawayKey generates a key of the same algorithm and size as pub, so the
// signature AlgorithmIdentifier Go picks is the same.
func throwawayKey(pub crypto.PublicKey) (crypto.Signer, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		s, err := ecdsa.GenerateKey(k.Curve, rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate lint key: %w", err)
		}
		return s, nil
	case *rsa.PublicKey:
		s, err := rsa.GenerateKey(rand.Reader, k.N.BitLen())
		if err != nil {
			return nil, fmt.Errorf("generate lint key: %w", err)
		}
		return s, nil
	case ed25519.PublicKey:
		_, s, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate lint key: %w", err)
		}
		return s, nil
	default:
		return nil, fmt.Errorf("%w: CA key type %T not supported", ErrBadCA, pub)
	}
}

// CA returns the issuing CA.
func (iss *Issuer) CA() *CA { return iss.ca }

// IssueRequest asks for an LDevID.
type IssueRequest struct {
	// PublicKey is the device key, from the (already checked) CSR.
	PublicKey crypto.PublicKey
	// Device is the identity from the device's authenticated IDevID (or, on
	// re-enrolment, the identity recorded for it). Every name in the
	// certificate is derived from it by the profile.
	Device *DeviceIdentity
}

// RARequest asks for a registrar (RA) certificate: EKU cmcRA + serverAuth +
// clientAuth (RFC 8995 §5.5.4, cBRSKI), KU digitalSignature.
type RARequest struct {
	// PublicKey is the registrar's key.
	PublicKey crypto.PublicKey
	// Subject is the registrar's DN. Required: a CommonName at least.
	Subject pkix.Name
	// DNSNames and IPAddresses are the SANs, as the caller gives them (for
	// example localhost, 127.0.0.1, ::1 and the host name). At least one.
	DNSNames    []string
	IPAddresses []net.IP
}

// Prepared is a fully built, linted, not yet signed certificate. Its serial
// is reserved: record it (and TBSHash) durably before calling Sign, and never
// sign another certificate with it.
type Prepared struct {
	issuer  *Issuer
	tmpl    *x509.Certificate
	pub     crypto.PublicKey
	tbs     []byte
	tbsHash [sha256.Size]byte
	linted  []byte
	signed  atomic.Bool
}

// Serial returns the reserved serial number (a copy).
func (p *Prepared) Serial() *big.Int { return new(big.Int).Set(p.tmpl.SerialNumber) }

// TBSHash returns the SHA-256 of the DER TBSCertificate that Sign will sign.
func (p *Prepared) TBSHash() [sha256.Size]byte { return p.tbsHash }

// TBS returns a copy of the DER TBSCertificate that Sign will sign.
func (p *Prepared) TBS() []byte { return bytes.Clone(p.tbs) }

// Precertificate returns the DER certificate signed by the throwaway lint
// key: exactly what was linted. It does not chain to anything.
func (p *Prepared) Precertificate() []byte { return bytes.Clone(p.linted) }

// NotBefore and NotAfter return the validity the certificate will carry.
func (p *Prepared) NotBefore() time.Time { return p.tmpl.NotBefore }

// NotAfter returns the certificate's NotAfter.
func (p *Prepared) NotAfter() time.Time { return p.tmpl.NotAfter }

// Prepare builds the LDevID for req from the profile: subject and SANs from
// the device identity, the key from req.PublicKey (checked against the key
// policy), a fresh serial, validity from the clock. It then signs the result
// with the throwaway lint key and, when a Linter is configured, lints it
// (Boulder-style pre-issuance linting happens here, in Prepare, so a
// certificate that fails lint never gets a serial recorded as an intent).
func (iss *Issuer) Prepare(req IssueRequest) (*Prepared, error) {
	if err := CheckPublicKey(req.PublicKey); err != nil {
		return nil, fmt.Errorf("prepare ldevid: %w", err)
	}
	n, err := iss.cfg.LDevID.derive(req.Device)
	if err != nil {
		return nil, fmt.Errorf("prepare ldevid: %w", err)
	}
	p := iss.cfg.LDevID
	tmpl, err := iss.leafTemplate(req.PublicKey, p.Validity, p.Backdate)
	if err != nil {
		return nil, fmt.Errorf("prepare ldevid: %w", err)
	}
	if tmpl.RawSubject, err = marshalSubject(n.subject); err != nil {
		return nil, fmt.Errorf("prepare ldevid: %w", err)
	}
	if san, ok, err := marshalSAN(n, len(n.subject) == 0); err != nil {
		return nil, fmt.Errorf("prepare ldevid: %w", err)
	} else if ok {
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, san)
	}
	// RFC 5280 §4.2.1.3: digitalSignature for signing keys; keyEncipherment
	// only for RSA key transport, and only if the profile asks.
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if _, isRSA := req.PublicKey.(*rsa.PublicKey); isRSA && p.KeyEncipherment {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	// IoT profile: an LDevID's EKU MUST include serverAuth and/or clientAuth.
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if p.ServerAuth {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	return iss.prepare(tmpl, req.PublicKey, "ldevid")
}

// PrepareRA builds a registrar (RA) certificate for req, like Prepare.
func (iss *Issuer) PrepareRA(req RARequest) (*Prepared, error) {
	if err := CheckPublicKey(req.PublicKey); err != nil {
		return nil, fmt.Errorf("prepare ra: %w", err)
	}
	if req.Subject.CommonName == "" {
		return nil, fmt.Errorf("prepare ra: %w: a subject common name is required", ErrProfile)
	}
	if len(req.DNSNames)+len(req.IPAddresses) == 0 {
		return nil, fmt.Errorf("prepare ra: %w: at least one DNS name or IP address is required", ErrProfile)
	}
	for _, d := range req.DNSNames {
		if !validHostname(d) {
			return nil, fmt.Errorf("prepare ra: %w: dns name %q is not a valid hostname", ErrProfile, d)
		}
	}
	tmpl, err := iss.leafTemplate(req.PublicKey, iss.cfg.RAValidity, iss.cfg.LDevID.Backdate)
	if err != nil {
		return nil, fmt.Errorf("prepare ra: %w", err)
	}
	tmpl.Subject = req.Subject
	tmpl.DNSNames = append([]string(nil), req.DNSNames...)
	for _, ip := range req.IPAddresses {
		if ip4 := ip.To4(); ip4 != nil {
			ip = ip4
		}
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	tmpl.UnknownExtKeyUsage = []asn1.ObjectIdentifier{OIDExtKeyUsageCMCRA}
	return iss.prepare(tmpl, req.PublicKey, "ra")
}

// leafTemplate fills what every end-entity certificate shares: serial,
// validity, SKI, AKI, basicConstraints CA:FALSE.
func (iss *Issuer) leafTemplate(pub crypto.PublicKey, validity, backdate time.Duration) (*x509.Certificate, error) {
	ski, err := SubjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	// RFC 5280 §4.1.2.5: whole seconds; backdate for clock skew; never past
	// the issuer's NotAfter.
	now := iss.clk.Now().UTC().Truncate(time.Second)
	if now.Before(iss.ca.Cert.NotBefore) || !now.Before(iss.ca.Cert.NotAfter) {
		return nil, fmt.Errorf("%w: the issuing CA certificate is not valid at %s", ErrBadCA, now.Format(time.RFC3339))
	}
	notBefore := now.Add(-backdate)
	notAfter := notBefore.Add(validity)
	if caNotAfter := iss.ca.Cert.NotAfter; notAfter.After(caNotAfter) {
		notAfter = caNotAfter
	}
	return &x509.Certificate{
		SerialNumber:          NewSerial(),
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		SubjectKeyId:          ski,
		AuthorityKeyId:        iss.ca.Cert.SubjectKeyId,
		BasicConstraintsValid: true,
		IsCA:                  false,
		CRLDistributionPoints: crlDP(iss.cfg.CRLBaseURL, iss.ca.Cert),
	}, nil
}

func crlDP(base string, ca *x509.Certificate) []string {
	if u := CRLURL(base, ca); u != "" {
		return []string{u}
	}
	return nil
}

// prepare signs tmpl with the lint key, lints, and records the TBS.
//
// The lint copy is not made with x509.CreateCertificate end to end: that
// function checks every signature it makes against the signer's public key
// (an ECDSA verification, about twice the cost of the signature), which
// guards against a faulty signer. The lint key is an in-process software
// key whose signature nobody verifies (zlint reads the certificate's fields,
// not its signature), so the check buys nothing there. CreateCertificate
// builds the TBSCertificate as it would for the real key (tbsCapture stops
// it before it signs), the lint key signs that TBS, and lintCertificate
// wraps both with the TBS's own signature AlgorithmIdentifier, as
// CreateCertificate would. The real signature (Sign) still goes through
// CreateCertificate and its check, and Sign refuses a certificate whose
// TBS or signature algorithm differs from the linted one.
func (iss *Issuer) prepare(tmpl *x509.Certificate, pub crypto.PublicKey, what string) (*Prepared, error) {
	capture := &tbsCapture{pub: iss.lintKey.Public()}
	_, err := x509.CreateCertificate(rand.Reader, tmpl, iss.lintParent, pub, capture)
	if capture.tbs == nil {
		if err == nil {
			err = errors.New("the TBSCertificate was not captured")
		}
		return nil, fmt.Errorf("prepare %s: %w: %w", what, ErrSign, err)
	}
	tbs := capture.tbs
	sig, err := crypto.SignMessage(iss.lintKey, rand.Reader, tbs, capture.opts)
	if err != nil {
		return nil, fmt.Errorf("prepare %s: %w: lint key: %w", what, ErrSign, err)
	}
	der, err := lintCertificate(tbs, sig)
	if err != nil {
		return nil, fmt.Errorf("prepare %s: %w", what, err)
	}
	if iss.linter != nil {
		if err := iss.linter.Lint(der); err != nil {
			return nil, fmt.Errorf("lint %s: %w: %w", what, ErrLint, err)
		}
	}
	return &Prepared{issuer: iss, tmpl: tmpl, pub: pub, tbs: tbs, tbsHash: sha256.Sum256(tbs), linted: der}, nil
}

// errTBSCaptured stops x509.CreateCertificate once tbsCapture has the TBS.
var errTBSCaptured = errors.New("pki: TBSCertificate captured")

// tbsCapture is the signer the lint copy's TBSCertificate is built with:
// x509.CreateCertificate hands a crypto.MessageSigner the whole
// TBSCertificate (crypto.SignMessage); tbsCapture keeps it and the signer
// options and ends the call with errTBSCaptured, so nothing is signed or
// verified. Its public key is the lint key's, which the lint parent
// certificate carries.
type tbsCapture struct {
	pub  crypto.PublicKey
	tbs  []byte
	opts crypto.SignerOpts
}

func (c *tbsCapture) Public() crypto.PublicKey { return c.pub }

func (c *tbsCapture) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("pki: the TBS capture signs messages, not digests")
}

func (c *tbsCapture) SignMessage(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	c.tbs, c.opts = bytes.Clone(msg), opts
	return nil, errTBSCaptured
}

var _ crypto.MessageSigner = (*tbsCapture)(nil)

// lintCertificate assembles a DER certificate from a TBSCertificate and a
// signature value, with the TBS's signature AlgorithmIdentifier as the
// outer one (RFC 5280 §4.1.1.2: the two MUST be identical), laid out as
// x509.CreateCertificate lays out a certificate.
func lintCertificate(tbs, sig []byte) ([]byte, error) {
	alg, err := tbsSignatureAlgorithm(tbs)
	if err != nil {
		return nil, err
	}
	der, err := AssembleSigned(tbs, alg, sig)
	if err != nil {
		return nil, fmt.Errorf("%w: assemble lint certificate: %w", ErrSign, err)
	}
	return der, nil
}

// tbsSignatureAlgorithm returns the signature AlgorithmIdentifier element of
// a DER TBSCertificate (after the optional version and the serial).
func tbsSignatureAlgorithm(tbs []byte) ([]byte, error) {
	in := cryptobyte.String(tbs)
	var body, alg cryptobyte.String
	if !in.ReadASN1(&body, cbasn1.SEQUENCE) || !in.Empty() ||
		!body.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!body.SkipASN1(cbasn1.INTEGER) ||
		!body.ReadASN1Element(&alg, cbasn1.SEQUENCE) {
		return nil, fmt.Errorf("%w: malformed TBSCertificate", ErrSign)
	}
	return []byte(alg), nil
}

// Sign signs p with the CA key and returns the certificate. It checks that
// the TBSCertificate equals the one Prepare built and linted (reliability
// Q3); on any failure it returns an error and no certificate. A Prepared is
// signed at most once (ErrAlreadySigned), even if the first attempt failed:
// a failed attempt may have produced a signature the caller never saw, so
// the caller resolves the intent and prepares again with a new serial.
func (iss *Issuer) Sign(ctx context.Context, p *Prepared) (*x509.Certificate, error) {
	if p == nil || p.issuer != iss {
		return nil, fmt.Errorf("sign certificate: %w: prepared by another issuer", ErrSign)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	if !p.signed.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("sign certificate %x: %w", p.tmpl.SerialNumber, ErrAlreadySigned)
	}
	der, err := x509.CreateCertificate(rand.Reader, p.tmpl, iss.ca.Cert, p.pub, iss.ca.Signer)
	if err != nil {
		return nil, fmt.Errorf("sign certificate %x: %w: %w", p.tmpl.SerialNumber, ErrSign, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("sign certificate %x: %w: %w", p.tmpl.SerialNumber, ErrSign, err)
	}
	// Boulder's tbsCertIsDeterministic: what we signed is what we linted,
	// TBS and outer signature algorithm; only the signature value differs.
	if !bytes.Equal(cert.RawTBSCertificate, p.tbs) {
		return nil, fmt.Errorf("sign certificate %x: %w", p.tmpl.SerialNumber, ErrNotDeterministic)
	}
	if same, err := lintCertificate(p.tbs, cert.Signature); err != nil || !bytes.Equal(same, der) {
		return nil, fmt.Errorf("sign certificate %x: %w: the certificate is not the linted one with the CA's signature", p.tmpl.SerialNumber, ErrNotDeterministic)
	}
	return cert, nil
}

// marshalSubject encodes the attributes as an RDNSequence, one attribute per
// RDN, in profile order. Values are PrintableString when they fit (and
// always for C and serialNumber, as X.520 requires), UTF8String otherwise.
func marshalSubject(attrs []attribute) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, a := range attrs {
			b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(a.oid)
					tag := cbasn1.UTF8String
					if IsPrintableString(a.value) {
						tag = cbasn1.PrintableString
					} else if a.oid.Equal(OIDSerialNumber) || a.oid.Equal(attributeNames["c"]) {
						b.SetError(fmt.Errorf("%w: %s value %q is not a PrintableString", ErrProfile, a.oid, a.value))
						return
					}
					b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes([]byte(a.value)) })
				})
			})
		}
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, err
	}
	return der, nil
}

// IsPrintableString reports whether s fits the PrintableString alphabet
// (X.680 §41.4): letters, digits, space and '()+,-./:=?.
func IsPrintableString(s string) bool {
	for i := 0; i < len(s); i++ {
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

// marshalSAN encodes the subjectAltName extension from the derived names. Go
// cannot emit otherName, so the extension is built here for all name types.
// It is critical when the subject is empty (RFC 5280 §4.2.1.6).
func marshalSAN(n *names, critical bool) (pkix.Extension, bool, error) {
	if len(n.dns)+len(n.ips)+len(n.uris)+len(n.otherNames) == 0 {
		return pkix.Extension{}, false, nil
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, o := range n.otherNames {
			// otherName [0] { type-id OID, value [0] EXPLICIT UTF8String }
			b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(o.oid)
				b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(o.value)) })
				})
			})
		}
		for _, d := range n.dns {
			b.AddASN1(cbasn1.Tag(2).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(d)) })
		}
		for _, u := range n.uris {
			b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(u.String())) })
		}
		for _, ip := range n.ips {
			b.AddASN1(cbasn1.Tag(7).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(ip) })
		}
	})
	der, err := b.Bytes()
	if err != nil {
		return pkix.Extension{}, false, fmt.Errorf("%w: encode subjectAltName: %w", ErrProfile, err)
	}
	return pkix.Extension{Id: oidSubjectAltName, Critical: critical, Value: der}, true, nil
}

// WithCA returns an Issuer with iss's configuration and linter that issues
// from ca: the issuer of the next CA generation after a rollover.
func (iss *Issuer) WithCA(ca *CA) (*Issuer, error) {
	return NewIssuer(iss.cfg, IssuerDeps{Clock: iss.clk, CA: ca, Linter: iss.linter})
}

// Linter returns the pre-issuance linter (nil when none), so certificates
// the CA signs outside Prepare (rollover links) are linted the same way.
func (iss *Issuer) Linter() Linter { return iss.linter }

// AssembleSigned returns the DER SEQUENCE { tbs, signatureAlgorithm,
// signature BIT STRING } that certificates (RFC 5280 §4.1) and
// certification requests (RFC 2986 §4.2) share; tbs and alg are complete
// DER elements.
func AssembleSigned(tbs, alg, sig []byte) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(alg)
		b.AddASN1BitString(sig)
	})
	return b.Bytes()
}
