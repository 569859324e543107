package voucher

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// MaxCertificates caps the certificates an artifact may carry (attack table
// A17): more is refused before any chain building.
const MaxCertificates = 8

// VerifyOptions says what a signature must chain to and when.
type VerifyOptions struct {
	// Anchors are the trust anchors. Each is either a CA certificate that
	// must appear in the signer's chain, or the signer's own certificate,
	// pinned. Where an artifact embeds no certificate (cBRSKI), the anchor's
	// own public key is taken as the signer's key. At least one is required.
	Anchors []*x509.Certificate
	// Intermediates are extra certificates offered for chain building, in
	// addition to those the artifact embeds.
	Intermediates []*x509.Certificate
	// Signers are candidate signer certificates delivered beside a COSE
	// artifact rather than in it, each of which must chain to an anchor as
	// an embedded one would (cBRSKI: a pledge voucher-request carries no
	// certificate, and the MASA takes the pledge's IDevID from the
	// registrar voucher-request's x5bag). VerifyCMS ignores it: a CMS
	// signer is found by its identifier, Intermediates included.
	Signers []*x509.Certificate
	// Time is the verification instant. It is required: the caller's clock,
	// never the wall clock read here.
	Time time.Time
	// KeyUsages restricts the signer's extended key usages; empty accepts
	// any.
	KeyUsages []x509.ExtKeyUsage
	// IgnoreSignerExpiry accepts a signer certificate past its NotAfter
	// (RFC 8995 §2.6.2, for IDevIDs whose manufacturer is configured so). The
	// signer must still be past its NotBefore, and every CA must be valid.
	IgnoreSignerExpiry bool
}

func (o *VerifyOptions) check() error {
	if len(o.Anchors) == 0 {
		return fmt.Errorf("%w: no trust anchor given", ErrUntrusted)
	}
	if o.Time.IsZero() {
		return errors.New("voucher: verification time is not set")
	}
	return nil
}

// Verified is the outcome of a successful verification.
type Verified struct {
	// Signer is the certificate whose key made the signature.
	Signer *x509.Certificate
	// Chain runs from Signer to the anchor that accepted it (inclusive).
	Chain []*x509.Certificate
}

// checkValidity reports whether c is valid at t, naming it in the error.
func checkValidity(c *x509.Certificate, t time.Time, role string, ignoreExpiry bool) error {
	if t.Before(c.NotBefore) {
		return fmt.Errorf("%w: %s certificate %q is valid from %s, verification time is %s",
			ErrNotYetValid, role, c.Subject.String(), c.NotBefore.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339))
	}
	if t.After(c.NotAfter) && !ignoreExpiry {
		return fmt.Errorf("%w: %s certificate %q expired at %s, verification time is %s",
			ErrExpired, role, c.Subject.String(), c.NotAfter.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339))
	}
	return nil
}

// chainSigner builds signer's chain to one of the anchors at opts.Time.
// embedded are the certificates the artifact carried (capped by the caller).
func chainSigner(signer *x509.Certificate, embedded []*x509.Certificate, opts *VerifyOptions) (*Verified, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	// A pinned signer: the anchor is the signer's own certificate.
	for _, a := range opts.Anchors {
		if bytes.Equal(a.Raw, signer.Raw) {
			if err := checkValidity(signer, opts.Time, "signer", opts.IgnoreSignerExpiry); err != nil {
				return nil, err
			}
			if err := checkEKU(signer, opts.KeyUsages); err != nil {
				return nil, err
			}
			return &Verified{Signer: signer, Chain: []*x509.Certificate{signer}}, nil
		}
	}
	// Check the signer's own validity first so the error names it, rather
	// than x509's generic "expired or not yet valid".
	if err := checkValidity(signer, opts.Time, "signer", opts.IgnoreSignerExpiry); err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	for _, a := range opts.Anchors {
		roots.AddCert(a)
	}
	inter := x509.NewCertPool()
	for _, c := range embedded {
		if !bytes.Equal(c.Raw, signer.Raw) {
			inter.AddCert(c)
		}
	}
	for _, c := range opts.Intermediates {
		inter.AddCert(c)
	}
	eku := opts.KeyUsages
	if len(eku) == 0 {
		eku = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	}
	at := opts.Time
	if opts.IgnoreSignerExpiry && at.After(signer.NotAfter) {
		// Verify the CAs at the requested time but the signer inside its
		// own validity: x509 checks every certificate at one instant, so
		// verify at the signer's NotAfter and check the CAs separately.
		at = signer.NotAfter
	}
	chains, err := signer.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   at,
		KeyUsages:     eku,
	})
	if err != nil {
		return nil, classifyChainError(err)
	}
	chain := chains[0]
	for _, c := range chain[1:] {
		if err := checkValidity(c, opts.Time, "CA", false); err != nil {
			return nil, err
		}
	}
	return &Verified{Signer: signer, Chain: chain}, nil
}

func classifyChainError(err error) error {
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) {
		switch inv.Reason {
		case x509.Expired:
			return fmt.Errorf("%w: %w", ErrExpired, err)
		case x509.IncompatibleUsage:
			return fmt.Errorf("%w: %w", ErrUntrusted, err)
		}
	}
	return fmt.Errorf("%w: %w", ErrUntrusted, err)
}

func checkEKU(c *x509.Certificate, want []x509.ExtKeyUsage) error {
	if len(want) == 0 || len(c.ExtKeyUsage) == 0 {
		return nil
	}
	for _, w := range want {
		for _, have := range c.ExtKeyUsage {
			if have == w || have == x509.ExtKeyUsageAny {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: signer certificate %q lacks the required extended key usage", ErrUntrusted, c.Subject.String())
}

// verifyWithAnchorKeys handles artifacts that embed no certificate (the
// cBRSKI examples): the signature must verify under an anchor's own public
// key, and that anchor must be valid at opts.Time. check verifies the
// signature with one public key and returns ErrBadSignature (wrapped) when it
// does not match.
func verifyWithAnchorKeys(check func(pub any) error, opts *VerifyOptions) (*Verified, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	var lastErr error
	for _, a := range opts.Anchors {
		if err := check(a.PublicKey); err != nil {
			lastErr = err
			continue
		}
		if err := checkValidity(a, opts.Time, "signer", opts.IgnoreSignerExpiry); err != nil {
			return nil, err
		}
		return &Verified{Signer: a, Chain: []*x509.Certificate{a}}, nil
	}
	if lastErr == nil {
		lastErr = ErrBadSignature
	}
	return nil, fmt.Errorf("%w: no trust anchor's key verifies the signature: %w", ErrUntrusted, lastErr)
}
