package lint

import (
	"fmt"
	"maps"
	"slices"

	zl "github.com/zmap/zlint/v3/lint"
)

// Mode selects how much of zlint runs before each signature.
type Mode string

// Lint modes (configs: ldevid.lint).
const (
	// ModeFull runs every lint New loads (about 9–14 ms per certificate on
	// the reference 2-core machine, most of it in two lints; see
	// expensiveLints). Tests lint every issued certificate this way
	// (pkitest.Lint).
	ModeFull Mode = "full"
	// ModeFast runs the same set without expensiveLints (about 0.15 ms per
	// certificate, zcrypto parsing included). The production default.
	ModeFast Mode = "fast"
	// ModeOff runs no linter.
	ModeOff Mode = "off"
)

// IsValid reports whether m is one of the modes.
func (m Mode) IsValid() bool { return m == ModeFull || m == ModeFast || m == ModeOff }

// expensiveLints are left out in ModeFast, each with its measured cost on a
// P-256 LDevID and why leaving it out loses nothing for the certificates
// Gatehouse issues.
var expensiveLints = map[string]string{
	// ~7.7 ms: compares the issuer with a list of compromised eMudhra Web
	// PKI CAs. Our issuer is our own domain CA.
	"e_cert_issued_by_compromised_emudhra_ca": "Web PKI issuer list; the issuer is the domain CA",
	// ~1.2 ms: brute-forces small ECDSA private keys. The device's key is
	// proven by the CSR signature and checked by pki.CheckPublicKey.
	"e_ecdsa_small_private_key": "brute force; device keys pass pki.CheckPublicKey",
}

// ExpensiveLints returns the lints ModeFast leaves out, with the reason.
func ExpensiveLints() map[string]string {
	return maps.Clone(expensiveLints)
}

// NewMode returns the Linter for mode (nil, nil for ModeOff), with the
// default allowlist plus allow.
func NewMode(mode Mode, allow map[string]string) (*Linter, error) {
	switch mode {
	case ModeOff:
		return nil, nil
	case ModeFull:
		return New(allow)
	case ModeFast:
		l, err := New(allow)
		if err != nil {
			return nil, err
		}
		reg, err := l.registry.Filter(zl.FilterOptions{ExcludeNames: slices.Collect(maps.Keys(expensiveLints))})
		if err != nil {
			return nil, fmt.Errorf("new fast linter: %w", err)
		}
		l.setRegistry(reg)
		return l, nil
	}
	return nil, fmt.Errorf("lint mode %q: want %s, %s or %s", mode, ModeFull, ModeFast, ModeOff)
}
