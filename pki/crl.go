package pki

import (
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// CRLPath returns the path, under a CRL base URL, of the CRL of the CA
// generation whose certificate is ca: "<hex SKI>.crl". Every LDevID that
// generation issues carries base + "/" + CRLPath in its CRL distribution
// point (IssuerConfig.CRLBaseURL).
func CRLPath(ca *x509.Certificate) string {
	return fmt.Sprintf("%x.crl", ca.SubjectKeyId)
}

// CRLURL joins a CRL base URL and the CRL path of ca; "" when base is.
func CRLURL(base string, ca *x509.Certificate) string {
	if base == "" {
		return ""
	}
	return strings.TrimSuffix(base, "/") + "/" + CRLPath(ca)
}

// CRLRequest is one CRL to sign.
type CRLRequest struct {
	// Number is the cRLNumber (RFC 5280 §5.2.3): positive, larger than any
	// earlier CRL of the same CA.
	Number *big.Int
	// ThisUpdate and NextUpdate bound the CRL's validity (RFC 5280
	// §5.1.2.4–5); truncated to the second.
	ThisUpdate, NextUpdate time.Time
	// Revoked are the entries (serial, revocation time, reason code).
	Revoked []x509.RevocationListEntry
}

// SignCRL signs a version 2 CRL with ca's key: the issuer name and the
// authority key identifier are ca's (RFC 5280 §5.2.1), the CRL number
// req.Number, and each entry carries its reasonCode unless unspecified
// (RFC 5280 §5.3.1: absent rather than unspecified).
func SignCRL(ca *CA, req CRLRequest) (*x509.RevocationList, error) {
	if ca == nil || ca.Cert == nil || ca.Signer == nil {
		return nil, fmt.Errorf("sign crl: %w: no CA", ErrBadCA)
	}
	if ca.Cert.KeyUsage != 0 && ca.Cert.KeyUsage&x509.KeyUsageCRLSign == 0 {
		return nil, fmt.Errorf("sign crl: %w: %s lacks cRLSign", ErrBadCA, ca.Cert.Subject)
	}
	if req.Number == nil || req.Number.Sign() <= 0 || !req.NextUpdate.After(req.ThisUpdate) {
		return nil, fmt.Errorf("sign crl: %w: a positive number and nextUpdate after thisUpdate are required", ErrProfile)
	}
	tmpl := &x509.RevocationList{
		Number:                    req.Number,
		ThisUpdate:                req.ThisUpdate.UTC().Truncate(time.Second),
		NextUpdate:                req.NextUpdate.UTC().Truncate(time.Second),
		RevokedCertificateEntries: req.Revoked,
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Signer)
	if err != nil {
		return nil, fmt.Errorf("sign crl: %w: %w", ErrSign, err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("sign crl: %w: %w", ErrSign, err)
	}
	return crl, nil
}
