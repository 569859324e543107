package pki

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"time"

	"github.com/jmhodges/clock"
)

// ErrBadCA reports a CA certificate, chain or key that cannot be used to
// issue: not a CA, a key that does not match the certificate, a broken chain.
var ErrBadCA = errors.New("unusable CA")

// MaxCAValidity bounds the lifetime NewRootCA accepts for a CA certificate.
const MaxCAValidity = 30 * 365 * 24 * time.Hour

// CAConfig describes the domain CA that NewRootCA creates. It is pure data.
type CAConfig struct {
	// Subject is the root CA's distinguished name. Required: at least a
	// CommonName.
	Subject pkix.Name
	// Validity is the root's lifetime from NotBefore to NotAfter. Default
	// 10 years; at most MaxCAValidity.
	Validity time.Duration
	// Intermediate, when set, makes NewRootCA also create an issuing
	// intermediate CA under the root with this subject; the returned CA then
	// issues with the intermediate. Default nil: the root issues directly.
	Intermediate *pkix.Name
	// IntermediateValidity is the intermediate's lifetime. Default 5 years,
	// capped at the root's NotAfter.
	IntermediateValidity time.Duration
	// Backdate moves NotBefore into the past to absorb clock skew. Unit:
	// duration. Default 1 minute; at most 1 hour.
	Backdate time.Duration
}

// WithDefaults returns cfg with every unset field at its default.
func (cfg CAConfig) WithDefaults() CAConfig {
	if cfg.Validity == 0 {
		cfg.Validity = 10 * 365 * 24 * time.Hour
	}
	if cfg.IntermediateValidity == 0 {
		cfg.IntermediateValidity = 5 * 365 * 24 * time.Hour
	}
	if cfg.Backdate == 0 {
		cfg.Backdate = DefaultBackdate
	}
	return cfg
}

// Validate reports every problem in cfg at once. It is pure.
func (cfg CAConfig) Validate() error {
	var errs []error
	if cfg.Subject.CommonName == "" {
		errs = append(errs, errors.New("subject: a common name is required"))
	}
	if cfg.Validity <= 0 || cfg.Validity > MaxCAValidity {
		errs = append(errs, fmt.Errorf("validity %s: must be in (0, %s]", cfg.Validity, MaxCAValidity))
	}
	if cfg.Intermediate != nil {
		if cfg.Intermediate.CommonName == "" {
			errs = append(errs, errors.New("intermediate: a common name is required"))
		}
		if cfg.IntermediateValidity <= 0 {
			errs = append(errs, fmt.Errorf("intermediateValidity %s: must be positive", cfg.IntermediateValidity))
		}
	}
	if cfg.Backdate < 0 || cfg.Backdate > MaxBackdate {
		errs = append(errs, fmt.Errorf("backdate %s: must be in [0, %s]", cfg.Backdate, MaxBackdate))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: ca config: %w", ErrProfile, err)
	}
	return nil
}

// CA is a domain CA able to issue: the issuing certificate, its chain up to
// and including the root, and the issuing key as a crypto.Signer (software
// key or HSM handle).
type CA struct {
	// Cert is the issuing CA certificate (the intermediate if there is one).
	Cert *x509.Certificate
	// Chain is Cert followed by its issuers up to the root, in order. For a
	// root-only CA it is just the root.
	Chain []*x509.Certificate
	// Signer is the issuing key; its public key equals Cert's.
	Signer crypto.Signer
}

// Root returns the last certificate of the chain, the trust anchor.
func (ca *CA) Root() *x509.Certificate { return ca.Chain[len(ca.Chain)-1] }

// Pool returns a pool holding the root, for chain verification.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Root())
	return p
}

// NewRootCA creates a self-signed root (and, if cfg.Intermediate is set, an
// issuing intermediate under it) at the clock's current time. rootKey signs
// the root; intermediateKey is the intermediate's key and is required exactly
// when cfg.Intermediate is set. Both must pass CheckPublicKey; the project
// uses P-256 (GenerateKey).
//
// Profile (RFC 5280 §4.2.1, IoT profile "CA certificates"): basicConstraints
// critical CA:TRUE (no pathLenConstraint on the root, so rollover link
// certificates fit under it; pathLen 0 on an intermediate), keyUsage critical
// keyCertSign|cRLSign, SubjectKeyIdentifier by SubjectKeyID, an
// AuthorityKeyIdentifier on the intermediate, no extendedKeyUsage, a
// NewSerial serial, NotBefore backdated by cfg.Backdate.
func NewRootCA(clk clock.Clock, cfg CAConfig, rootKey, intermediateKey crypto.Signer) (*CA, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new root ca: %w", err)
	}
	if rootKey == nil || (cfg.Intermediate != nil) != (intermediateKey != nil) {
		return nil, fmt.Errorf("new root ca: %w: a root key, and an intermediate key exactly when an intermediate is configured, are required", ErrBadCA)
	}
	now := clk.Now().UTC().Truncate(time.Second)
	notBefore := now.Add(-cfg.Backdate)
	root, err := createCACert(caTemplate(cfg.Subject, notBefore, notBefore.Add(cfg.Validity), -1), nil, rootKey.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("new root ca: %w", err)
	}
	if cfg.Intermediate == nil {
		return &CA{Cert: root, Chain: []*x509.Certificate{root}, Signer: rootKey}, nil
	}
	notAfter := notBefore.Add(cfg.IntermediateValidity)
	if notAfter.After(root.NotAfter) {
		notAfter = root.NotAfter
	}
	inter, err := createCACert(caTemplate(*cfg.Intermediate, notBefore, notAfter, 0), root, intermediateKey.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("new intermediate ca: %w", err)
	}
	return &CA{Cert: inter, Chain: []*x509.Certificate{inter, root}, Signer: intermediateKey}, nil
}

func caTemplate(subject pkix.Name, notBefore, notAfter time.Time, maxPathLen int) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          NewSerial(),
		Subject:               subject,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            maxPathLen,
		MaxPathLenZero:        maxPathLen == 0,
	}
}

// createCACert signs tmpl (a CA template) with signer; parent nil means
// self-signed.
func createCACert(tmpl *x509.Certificate, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	if err := CheckPublicKey(pub); err != nil {
		return nil, err
	}
	ski, err := SubjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	tmpl.SubjectKeyId = ski
	if parent == nil {
		parent = tmpl
	} else {
		tmpl.AuthorityKeyId = parent.SubjectKeyId
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("sign ca certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse ca certificate: %w", err)
	}
	return cert, nil
}

// LoadCA assembles a CA from an existing certificate chain (issuing
// certificate first, then its issuers, the self-signed root last; a root CA
// is a chain of one) and the issuing key handle. It
// checks that the issuing certificate is a CA allowed to sign certificates,
// that each certificate is signed by the next, and that signer's public key
// matches the issuing certificate.
func LoadCA(chain []*x509.Certificate, signer crypto.Signer) (*CA, error) {
	if len(chain) == 0 || chain[0] == nil {
		return nil, fmt.Errorf("load ca: %w: no certificate", ErrBadCA)
	}
	if signer == nil {
		return nil, fmt.Errorf("load ca: %w: no signer", ErrBadCA)
	}
	c := chain[0]
	if !c.BasicConstraintsValid || !c.IsCA {
		return nil, fmt.Errorf("load ca: %w: %s is not a CA certificate", ErrBadCA, c.Subject)
	}
	if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("load ca: %w: %s lacks keyCertSign", ErrBadCA, c.Subject)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(c.PublicKey) {
		return nil, fmt.Errorf("load ca: %w: the key does not match the certificate %s", ErrBadCA, c.Subject)
	}
	for i := 0; i+1 < len(chain); i++ {
		if err := chain[i].CheckSignatureFrom(chain[i+1]); err != nil {
			return nil, fmt.Errorf("load ca: %w: %s is not signed by %s: %w", ErrBadCA, chain[i].Subject, chain[i+1].Subject, err)
		}
	}
	last := chain[len(chain)-1]
	if !bytes.Equal(last.RawIssuer, last.RawSubject) {
		return nil, fmt.Errorf("load ca: %w: chain does not end in a self-signed root", ErrBadCA)
	}
	return &CA{Cert: c, Chain: append([]*x509.Certificate(nil), chain...), Signer: signer}, nil
}
