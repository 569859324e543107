// Package lint is the zlint v3 implementation of pki.Linter, kept apart from
// pki so that pki stays light (zlint and zcrypto are large).
//
// It runs every applicable lint from the RFC 5280, RFC 5480, RFC 3279,
// RFC 5891 and RFC 8813 sources and the zlint community lints; browser and
// CA/Browser Forum sources (CABF BR, EV, S/MIME, code signing, Mozilla,
// Apple, Chrome, ETSI, CT) are not loaded because Gatehouse issues private
// device PKI, not Web PKI. Any result of notice, warning, error or fatal
// fails the certificate (Boulder fails even on notices) unless the lint's
// name is on the reviewed allowlist (DefaultAllowlist) or added by the
// caller with a reason.
//
// zlint parses with zcrypto's x509, not crypto/x509; Lint takes DER so both
// parsers see the same bytes.
package lint

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	zx509 "github.com/zmap/zcrypto/x509"
	// The zlint package registers every lint in zl.GlobalRegistry.
	_ "github.com/zmap/zlint/v3"
	zl "github.com/zmap/zlint/v3/lint"

	"github.com/gatehouse-pki/gatehouse/pki"
)

// defaultAllowlist is the reviewed list of lint names that may report a
// finding on a certificate Gatehouse issues, each with the reason. Keep it
// short: every entry is a hole in Q1.
var defaultAllowlist = map[string]string{
	// The lab and loopback registrar certificates name "localhost" (RFC 6761
	// special-use name, DESIGN.md lab defaults), which is on the public
	// suffix list. The notice protects the Web PKI from certificates for a
	// bare public suffix; a private domain CA naming its own loopback
	// registrar is the intended use.
	"n_san_iana_pub_suffix_empty": "localhost in loopback registrar/lab certificates (RFC 6761 special-use name)",
	// The lab (and a registrar configured so) publishes each generation's
	// CRL on the registrar's HTTPS listener, the one address every device
	// already reaches; the lint counts only ldap: and http: URIs. The CRL is
	// signed, so the scheme adds nothing to its integrity; an http base URL
	// (domainCA.crlBaseURL) avoids the warning where a plain listener exists.
	"w_distribution_point_missing_ldap_or_uri": "CRL distribution point on the registrar's HTTPS listener (https: URI)",
}

// DefaultAllowlist returns a copy of the reviewed allowlist: lint name →
// reason it may fire on certificates Gatehouse issues.
func DefaultAllowlist() map[string]string { return maps.Clone(defaultAllowlist) }

// IDevIDAllowlist returns lints that may fire on manufacturer IDevID test
// certificates, which follow IEEE 802.1AR rather than the LDevID profile
// (used by pkitest.LintIDevID; never for certificates Gatehouse issues).
func IDevIDAllowlist() map[string]string { return maps.Clone(idevidAllowlist) }

var idevidAllowlist = map[string]string{
	// The RFC 8995 Appendix C example IDevID has no authority key identifier,
	// and pkitest.NoAKI reproduces that to exercise the idevid-issuer
	// fallback. RFC 5280 §4.2.1.1 requires the AKI, so this is a lint
	// finding on purpose; Gatehouse never issues such a certificate.
	"e_ext_authority_key_identifier_no_key_identifier": "IDevID test certificates without AKI reproduce the RFC 8995 example IDevID",
}

// Finding is one lint result that failed the certificate.
type Finding struct {
	// Lint is the zlint lint name, e.g. "e_sub_cert_aia_missing".
	Lint string
	// Status is the result: notice, warn, error or fatal.
	Status string
	// Details is the lint's explanation, if any.
	Details string
}

// Error is returned by Lint when a certificate has findings.
type Error struct {
	// Findings are the failing results, sorted by lint name.
	Findings []Finding
}

func (e *Error) Error() string {
	parts := make([]string, len(e.Findings))
	for i, f := range e.Findings {
		parts[i] = f.Status + " " + f.Lint
		if f.Details != "" {
			parts[i] += " (" + f.Details + ")"
		}
	}
	return "zlint: " + strings.Join(parts, "; ")
}

// Linter runs zlint over DER certificates. It is safe for concurrent use.
type Linter struct {
	registry zl.Registry
	allow    map[string]string
	// lints and config are the registry's, taken once (setRegistry):
	// zlint.LintCertificateEx asks the registry for its sorted names and
	// lints on every call.
	lints  []*zl.CertificateLint
	config zl.Configuration
}

// setRegistry makes reg the set of lints l runs.
func (l *Linter) setRegistry(reg zl.Registry) {
	l.registry, l.lints, l.config = reg, reg.CertificateLints().Lints(), reg.GetConfiguration()
}

var _ pki.Linter = (*Linter)(nil)

// sources are the lint sources that apply to a private device PKI.
var sources = zl.SourceList{zl.RFC5280, zl.RFC5480, zl.RFC3279, zl.RFC5891, zl.RFC8813, zl.Community}

// New returns a Linter with the default allowlist plus allow (lint name →
// reason; a reason is required). It refuses names zlint does not know, so a
// typo cannot silently allow nothing.
func New(allow map[string]string) (*Linter, error) {
	reg, err := zl.GlobalRegistry().Filter(zl.FilterOptions{IncludeSources: sources})
	if err != nil {
		return nil, fmt.Errorf("new linter: %w", err)
	}
	all := DefaultAllowlist()
	for name, reason := range allow {
		all[name] = reason
	}
	var errs []error
	for name, reason := range all {
		if zl.GlobalRegistry().CertificateLints().ByName(name) == nil {
			errs = append(errs, fmt.Errorf("allowlist: unknown lint %q", name))
		}
		if strings.TrimSpace(reason) == "" {
			errs = append(errs, fmt.Errorf("allowlist: lint %q has no reason", name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("new linter: %w", err)
	}
	l := &Linter{allow: all}
	l.setRegistry(reg)
	return l, nil
}

// Lint parses der with zcrypto and runs the lints. It returns nil, or an
// *Error listing every finding that is not allowlisted.
func (l *Linter) Lint(der []byte) error {
	c, err := zx509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("zlint: parse certificate: %w", err)
	}
	// What zlint.LintCertificateEx does, without its per-call registry
	// look-ups: each lint's Execute (which recovers a panicking lint as
	// Fatal) with the registry's configuration.
	var fs []Finding
	for _, lt := range l.lints {
		r := lt.Execute(c, l.config)
		if r == nil || r.Status < zl.Notice {
			continue
		}
		if _, ok := l.allow[lt.Name]; ok {
			continue
		}
		fs = append(fs, Finding{Lint: lt.Name, Status: r.Status.String(), Details: r.Details})
	}
	if len(fs) == 0 {
		return nil
	}
	slices.SortFunc(fs, func(a, b Finding) int { return strings.Compare(a.Lint, b.Lint) })
	return &Error{Findings: fs}
}
