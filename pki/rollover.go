package pki

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/jmhodges/clock"
)

// Root CA key update, "new-signs-old" (RFC 4210 §4.4, rfc4210bis "Root CA
// Key Update"; standards digest §5). A rollover produces three
// certificates besides the old self-signed root (OldWithOld):
//
//	NewWithNew  new key, signed by the new key: the new root
//	NewWithOld  new key, signed by the old key: a verifier holding only the
//	            old root validates what the new key issues
//	OldWithNew  old key, signed by the new key: a verifier holding only the
//	            new root validates what the old key issued
//
// All three are CA certificates (basicConstraints critical CA:TRUE without
// a path length, keyUsage critical keyCertSign|cRLSign) with the subject
// key identifier of their key and, on the two link certificates, the
// authority key identifier of the signing key, so path building needs no
// guesswork even though the names differ only in a generation suffix.

// RolloverConfig describes the new root of a rollover. Pure data; every
// field is optional.
type RolloverConfig struct {
	// Subject is the new root's distinguished name. Default: the old
	// root's, with the common name's generation suffix counted up
	// ("Domain CA" → "Domain CA G2" → "Domain CA G3"). A different name
	// keeps path building unambiguous for verifiers that match names
	// before key identifiers.
	Subject pkix.Name
	// Validity is the new root's lifetime. Default: the old root's
	// lifetime (NotAfter − NotBefore); at most MaxCAValidity.
	Validity time.Duration
	// Backdate moves NotBefore into the past. Default DefaultBackdate; at
	// most MaxBackdate.
	Backdate time.Duration
}

// generationSuffix matches a trailing " G<n>" generation suffix.
var generationSuffix = regexp.MustCompile(` G([0-9]+)$`)

// NextGenerationName returns cn with its " G<n>" suffix counted up, or
// with " G2" appended when it has none.
func NextGenerationName(cn string) string {
	m := generationSuffix.FindStringSubmatchIndex(cn)
	if m == nil {
		return cn + " G2"
	}
	n, err := strconv.Atoi(cn[m[2]:m[3]])
	if err != nil {
		return cn + " G2"
	}
	return cn[:m[0]] + " G" + strconv.Itoa(n+1)
}

// NewWithNew creates the new self-signed root of a rollover from old (the
// OldWithOld root) for newKey, at the clock's time (rollover step 2).
// 4210bis: NewWithNew.notBefore ≤ OldWithOld.notAfter; the old root must
// still be valid.
func NewWithNew(clk clock.Clock, old *x509.Certificate, cfg RolloverConfig, newKey crypto.Signer) (*x509.Certificate, error) {
	if err := checkRoot(old); err != nil {
		return nil, fmt.Errorf("new with new: %w", err)
	}
	if newKey == nil {
		return nil, fmt.Errorf("new with new: %w: no new key", ErrBadCA)
	}
	if samePublicKey(old.PublicKey, newKey.Public()) {
		return nil, fmt.Errorf("new with new: %w: the new key is the old key", ErrBadCA)
	}
	if cfg.Subject.CommonName == "" {
		cfg.Subject = old.Subject
		cfg.Subject.CommonName = NextGenerationName(old.Subject.CommonName)
		cfg.Subject.Names, cfg.Subject.ExtraNames = nil, nil
	}
	if cfg.Validity == 0 {
		cfg.Validity = old.NotAfter.Sub(old.NotBefore)
	}
	if cfg.Backdate == 0 {
		cfg.Backdate = DefaultBackdate
	}
	ccfg := CAConfig{Subject: cfg.Subject, Validity: cfg.Validity, Backdate: cfg.Backdate}
	if err := ccfg.Validate(); err != nil {
		return nil, fmt.Errorf("new with new: %w", err)
	}
	now := clk.Now().UTC().Truncate(time.Second)
	if !now.Before(old.NotAfter) {
		return nil, fmt.Errorf("new with new: %w: the old root expired at %s; a rollover needs it valid to sign NewWithOld", ErrBadCA, old.NotAfter.Format(time.RFC3339))
	}
	notBefore := now.Add(-cfg.Backdate)
	c, err := createCACert(caTemplate(cfg.Subject, notBefore, notBefore.Add(cfg.Validity), -1), nil, newKey.Public(), newKey)
	if err != nil {
		return nil, fmt.Errorf("new with new: %w", err)
	}
	return c, nil
}

// NewWithOld certifies the new root's key and name with the old root's key
// (rollover step 3). 4210bis: same notBefore as NewWithNew, notAfter at the
// latest OldWithOld.notAfter (bounded by the signing key's certificate).
func NewWithOld(old *CA, newWithNew *x509.Certificate) (*x509.Certificate, error) {
	if err := checkLinkInputs(old, newWithNew); err != nil {
		return nil, fmt.Errorf("new with old: %w", err)
	}
	notAfter := newWithNew.NotAfter
	if notAfter.After(old.Cert.NotAfter) {
		notAfter = old.Cert.NotAfter
	}
	c, err := createCACert(caTemplate(newWithNew.Subject, newWithNew.NotBefore, notAfter, -1), old.Cert, newWithNew.PublicKey, old.Signer)
	if err != nil {
		return nil, fmt.Errorf("new with old: %w", err)
	}
	return c, nil
}

// OldWithNew certifies the old root's key and name with the new root's key
// (rollover step 4, "new-signs-old"). 4210bis gives it OldWithOld's
// validity; its notBefore is raised to the new root's so it stays within
// its signer's validity, which changes nothing for the old LDevIDs it
// serves: a path is checked at the time of use, when both are valid.
func OldWithNew(newCA *CA, old *x509.Certificate) (*x509.Certificate, error) {
	if err := checkLinkInputs(newCA, old); err != nil {
		return nil, fmt.Errorf("old with new: %w", err)
	}
	notBefore, notAfter := old.NotBefore, old.NotAfter
	if notBefore.Before(newCA.Cert.NotBefore) {
		notBefore = newCA.Cert.NotBefore
	}
	if notAfter.After(newCA.Cert.NotAfter) {
		notAfter = newCA.Cert.NotAfter
	}
	c, err := createCACert(caTemplate(old.Subject, notBefore, notAfter, -1), newCA.Cert, old.PublicKey, newCA.Signer)
	if err != nil {
		return nil, fmt.Errorf("old with new: %w", err)
	}
	return c, nil
}

// Links are the certificates of one rollover.
type Links struct {
	// OldWithOld is the old root, NewWithNew the new one.
	OldWithOld, NewWithNew *x509.Certificate
	// NewWithOld and OldWithNew are the link certificates.
	NewWithOld, OldWithNew *x509.Certificate
}

// Check verifies that each certificate carries the key and name it should
// and is signed by the key its name says (reliability R3): NewWithOld has
// the new root's subject and key and verifies under the old root,
// OldWithNew the old root's under the new one.
func (l Links) Check() error {
	for _, c := range []*x509.Certificate{l.OldWithOld, l.NewWithNew, l.NewWithOld, l.OldWithNew} {
		if c == nil {
			return fmt.Errorf("rollover links: %w: a certificate is missing", ErrBadCA)
		}
	}
	checks := []struct {
		name         string
		cert, key    *x509.Certificate // cert carries key's subject and public key
		signer       *x509.Certificate
		wantSelfSign bool
	}{
		{"OldWithOld", l.OldWithOld, l.OldWithOld, l.OldWithOld, true},
		{"NewWithNew", l.NewWithNew, l.NewWithNew, l.NewWithNew, true},
		{"NewWithOld", l.NewWithOld, l.NewWithNew, l.OldWithOld, false},
		{"OldWithNew", l.OldWithNew, l.OldWithOld, l.NewWithNew, false},
	}
	for _, c := range checks {
		if !bytes.Equal(c.cert.RawSubject, c.key.RawSubject) || !samePublicKey(c.cert.PublicKey, c.key.PublicKey) {
			return fmt.Errorf("rollover links: %w: %s does not carry the subject and key of %s", ErrBadCA, c.name, c.key.Subject)
		}
		if !bytes.Equal(c.cert.RawIssuer, c.signer.RawSubject) {
			return fmt.Errorf("rollover links: %w: %s is not issued by %s", ErrBadCA, c.name, c.signer.Subject)
		}
		if err := c.cert.CheckSignatureFrom(c.signer); err != nil {
			return fmt.Errorf("rollover links: %w: %s signature: %w", ErrBadCA, c.name, err)
		}
		if !c.wantSelfSign && !bytes.Equal(c.cert.AuthorityKeyId, c.signer.SubjectKeyId) {
			return fmt.Errorf("rollover links: %w: %s authority key identifier is not its signer's", ErrBadCA, c.name)
		}
	}
	return nil
}

func checkRoot(c *x509.Certificate) error {
	if c == nil || !c.BasicConstraintsValid || !c.IsCA || !bytes.Equal(c.RawIssuer, c.RawSubject) {
		return fmt.Errorf("%w: a self-signed root CA certificate is required", ErrBadCA)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		return fmt.Errorf("%w: root signature: %w", ErrBadCA, err)
	}
	return nil
}

func checkLinkInputs(signer *CA, subject *x509.Certificate) error {
	if signer == nil || signer.Signer == nil {
		return fmt.Errorf("%w: no signing CA", ErrBadCA)
	}
	if err := checkRoot(signer.Cert); err != nil {
		return err
	}
	if err := checkRoot(subject); err != nil {
		return err
	}
	if !samePublicKey(signer.Cert.PublicKey, signer.Signer.Public()) {
		return fmt.Errorf("%w: the key does not match %s", ErrBadCA, signer.Cert.Subject)
	}
	return nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
