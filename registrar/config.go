package registrar

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jmhodges/clock"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/store"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

// Policy is a manufacturer's ownership policy: which of its pledges the
// registrar asks a voucher for (RFC 8995 §5.3).
type Policy string

// The policies.
const (
	// PolicyAcceptAll accepts every pledge whose IDevID chains to the
	// manufacturer (RFC 8995 §7.3 "accept all devices of a type").
	PolicyAcceptAll Policy = "accept-all"
	// PolicyAllowlist accepts the serial numbers in Manufacturer.Allowlist
	// and the devices an operator approved; others get 403.
	PolicyAllowlist Policy = "allowlist"
	// PolicyApprove parks every new pledge in pending-approval (202 +
	// Retry-After) until an operator approves or denies it.
	PolicyApprove Policy = "approve"
)

// IsValid reports whether p is one of the policies.
func (p Policy) IsValid() bool {
	switch p {
	case PolicyAcceptAll, PolicyAllowlist, PolicyApprove:
		return true
	}
	return false
}

// Manufacturer is what the registrar knows about one pledge manufacturer.
type Manufacturer struct {
	// Name identifies the manufacturer in logs, audit events and errors.
	// Required and unique.
	Name string
	// IDevIDRoots are the CAs issuing this manufacturer's IDevIDs (RFC 8995
	// §2.5.3 implicit trust anchors). Required. Intermediates the pledge
	// sends in its TLS chain are used for path building.
	IDevIDRoots []*x509.Certificate
	// MASAAnchors are what a voucher's signature must chain to: the MASA's
	// CA, or its signing certificate pinned. Required.
	MASAAnchors []*x509.Certificate
	// MASATLSRoots are the roots for the MASA's TLS server certificate; nil
	// means the system roots. Distinct from MASAAnchors (RFC 8995 §2.5.3).
	MASATLSRoots *x509.CertPool
	// MASAURLs is the allowlist of MASA base URLs
	// (https://host[:port]/.well-known/brski). A MASA URL from an IDevID
	// that is not on it is refused before any connection (no SSRF).
	// Required.
	MASAURLs []*url.URL
	// MASAURLOverride, when set, is used instead of the IDevID's MASA URL
	// extension (RFC 8995 §5.4). It must be on MASAURLs. When unset and an
	// IDevID has no extension, a single entry of MASAURLs is the fallback
	// (RFC 8995 §2.8).
	MASAURLOverride *url.URL
	// Policy is the ownership policy. Default PolicyAllowlist.
	Policy Policy
	// Allowlist holds the serial numbers PolicyAllowlist accepts.
	Allowlist []string
	// IgnoreIDevIDExpiry accepts IDevIDs past their notAfter (RFC 8995
	// §2.6.2). Their notBefore and every CA's validity are still checked.
	// Default false.
	IgnoreIDevIDExpiry bool
	// IDevID says how to read this manufacturer's IDevIDs: the serial
	// attribute fallback and the idevid-issuer encoding.
	IDevID pki.IDevIDOptions
	// MASACOSEMediaType is the media type under which COSE registrar
	// voucher-requests go to this manufacturer's MASA (Content-Type and
	// Accept): MediaTypeVoucherCOSE (default, "") or the legacy
	// MediaTypeVoucherCOSELegacy that earlier cBRSKI MASAs expect. The
	// pledge is answered under the name it used.
	MASACOSEMediaType string
}

// masaMediaType is the media type of a registrar voucher-request of format
// f sent to m's MASA.
func (m *Manufacturer) masaMediaType(f voucher.Format) string {
	switch {
	case f != voucher.FormatCOSE:
		return MediaTypeVoucherCMS
	case m.MASACOSEMediaType != "":
		return m.MASACOSEMediaType
	}
	return MediaTypeVoucherCOSE
}

// RateLimit is a token bucket: Rate tokens a second, at most Burst saved.
type RateLimit struct {
	// Rate is the sustained rate in requests per second. Zero means the
	// default; negative disables the limit.
	Rate float64
	// Burst is the bucket size. Zero means the default.
	Burst int
}

// Config is the registrar's configuration. The zero value of every field
// is its default.
type Config struct {
	// Manufacturers whose pledges may onboard. At least one.
	Manufacturers []Manufacturer
	// MASADialTimeout bounds connecting to a MASA. Default 5 s (D4).
	MASADialTimeout time.Duration
	// MASATimeout bounds one MASA exchange end to end. Default 10 s (D4).
	MASATimeout time.Duration
	// MASAMaxInFlight caps concurrent MASA calls; beyond it pledges get 503
	// + Retry-After at once. Default 32 (D4).
	MASAMaxInFlight int
	// PendingRetryAfter is the Retry-After sent with 202 (pending approval)
	// and 503 (MASA unavailable). Default 30 s; at most 60 s, the most a
	// pledge waits (RFC 8995 §5.6).
	PendingRetryAfter time.Duration
	// AcceptUnsignedJSON accepts unsigned application/json pledge
	// voucher-requests (RFC 8995 §7.3 reduced security). Default false:
	// they are refused with 415.
	AcceptUnsignedJSON bool
	// PerIP limits BRSKI requests per client IP address (D7, G06). Default
	// 1000/s, burst 2000: generous, since a circuit proxy funnels many
	// pledges through one address.
	PerIP RateLimit
	// PerIDevID limits BRSKI requests per client certificate. Default 10/s,
	// burst 40.
	PerIDevID RateLimit
	// LDevID is the LDevID profile: the one Deps.Issuer was built with.
	// CSRs are checked against it (RFC 8995 §5.9.2). Defaulted with
	// pki.Profile.WithDefaults.
	LDevID pki.Profile
	// RenewalWindow is how long before its notAfter an LDevID counts as due
	// for renewal in CAStatus when the caller gives no window. Default
	// DefaultRenewalWindow.
	RenewalWindow time.Duration
	// ESTClientIssuers are CA certificates whose end-entity certificates
	// may enrol over EST without BRSKI (RFC 7030 §3.3.2: "a certificate
	// issued by a CA the server trusts"): a TLS client certificate that
	// chains to one of them, with clientAuth or no EKU, at the clock's
	// time, may simpleenroll and serverkeygen; the LDevID it gets then
	// re-enrolls as any LDevID does. Kept apart from the manufacturers'
	// IDevID roots and the domain CA (a certificate in both is refused).
	// The identity is the client certificate's subject serialNumber, or
	// its CN (docs/flows/enroll.md). Default: none (reliability E04).
	ESTClientIssuers []*x509.Certificate
	// ESTBasicAuth lets a user the EST edge authenticated with HTTP Basic
	// (est.Config.Basic, RFC 7030 §3.2.3) enrol without BRSKI, with the
	// user name as its identity. For lab setups. Default false: Basic users
	// are refused (401) even when the edge has a password file.
	ESTBasicAuth bool
}

// Defaults.
const (
	DefaultMASADialTimeout   = 5 * time.Second
	DefaultMASATimeout       = 10 * time.Second
	DefaultMASAMaxInFlight   = 32
	DefaultPendingRetryAfter = 30 * time.Second
	// MaxRetryAfter is the longest Retry-After the registrar sends (RFC
	// 8995 §5.6: the pledge waits at most 60 s).
	MaxRetryAfter = 60 * time.Second
)

// WithDefaults returns cfg with every unset field at its default.
func (cfg Config) WithDefaults() Config {
	if cfg.MASADialTimeout == 0 {
		cfg.MASADialTimeout = DefaultMASADialTimeout
	}
	if cfg.MASATimeout == 0 {
		cfg.MASATimeout = DefaultMASATimeout
	}
	if cfg.MASAMaxInFlight == 0 {
		cfg.MASAMaxInFlight = DefaultMASAMaxInFlight
	}
	if cfg.PendingRetryAfter == 0 {
		cfg.PendingRetryAfter = DefaultPendingRetryAfter
	}
	if cfg.RenewalWindow == 0 {
		cfg.RenewalWindow = DefaultRenewalWindow
	}
	if cfg.PerIP == (RateLimit{}) {
		cfg.PerIP = RateLimit{Rate: 1000, Burst: 2000}
	}
	if cfg.PerIDevID == (RateLimit{}) {
		cfg.PerIDevID = RateLimit{Rate: 10, Burst: 40}
	}
	cfg.LDevID = cfg.LDevID.WithDefaults()
	ms := make([]Manufacturer, len(cfg.Manufacturers))
	for i, m := range cfg.Manufacturers {
		if m.Policy == "" {
			m.Policy = PolicyAllowlist
		}
		m.IDevID = m.IDevID.WithDefaults()
		ms[i] = m
	}
	cfg.Manufacturers = ms
	return cfg
}

// Validate reports every problem in cfg at once. It is pure.
func (cfg Config) Validate() error {
	var errs []error
	if len(cfg.Manufacturers) == 0 {
		errs = append(errs, errors.New("no manufacturer configured"))
	}
	names := map[string]bool{}
	for i, m := range cfg.Manufacturers {
		if err := m.validate(); err != nil {
			errs = append(errs, fmt.Errorf("manufacturer %d (%q): %w", i, m.Name, err))
		}
		if names[m.Name] {
			errs = append(errs, fmt.Errorf("manufacturer %d: name %q is used twice", i, m.Name))
		}
		names[m.Name] = true
	}
	if cfg.MASADialTimeout <= 0 || cfg.MASATimeout <= 0 {
		errs = append(errs, errors.New("MASA timeouts must be positive"))
	}
	if cfg.MASAMaxInFlight <= 0 {
		errs = append(errs, errors.New("MASAMaxInFlight must be positive"))
	}
	if cfg.PendingRetryAfter <= 0 || cfg.PendingRetryAfter > MaxRetryAfter {
		errs = append(errs, fmt.Errorf("PendingRetryAfter %s is not in (0, %s]", cfg.PendingRetryAfter, MaxRetryAfter))
	}
	if cfg.RenewalWindow < 0 {
		errs = append(errs, fmt.Errorf("RenewalWindow %s is negative", cfg.RenewalWindow))
	}
	if err := cfg.LDevID.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("ldevid: %w", err))
	}
	for i, c := range cfg.ESTClientIssuers {
		switch {
		case c == nil || !c.IsCA || !c.BasicConstraintsValid:
			errs = append(errs, fmt.Errorf("EST client issuer %d: not a CA certificate", i))
		case slices.ContainsFunc(cfg.Manufacturers, func(m Manufacturer) bool { return slices.ContainsFunc(m.IDevIDRoots, c.Equal) }):
			errs = append(errs, fmt.Errorf("EST client issuer %d (%s) is also a manufacturer's IDevID root", i, c.Subject))
		}
	}
	for name, rl := range map[string]RateLimit{"PerIP": cfg.PerIP, "PerIDevID": cfg.PerIDevID} {
		if rl.Rate > 0 && rl.Burst <= 0 {
			errs = append(errs, fmt.Errorf("%s: burst must be positive", name))
		}
	}
	return errors.Join(errs...)
}

func (m Manufacturer) validate() error {
	var errs []error
	if m.Name == "" {
		errs = append(errs, errors.New("name is empty"))
	}
	if len(m.IDevIDRoots) == 0 {
		errs = append(errs, errors.New("no IDevID root"))
	}
	if len(m.MASAAnchors) == 0 {
		errs = append(errs, errors.New("no MASA anchor"))
	}
	if len(m.MASAURLs) == 0 {
		errs = append(errs, errors.New("no allowed MASA URL"))
	}
	for _, u := range m.MASAURLs {
		if err := checkMASABase(u); err != nil {
			errs = append(errs, err)
		}
	}
	if m.MASAURLOverride != nil && !m.masaAllowed(m.MASAURLOverride) {
		errs = append(errs, fmt.Errorf("MASA URL override %s is not on the allowlist", m.MASAURLOverride))
	}
	if !m.Policy.IsValid() {
		errs = append(errs, fmt.Errorf("policy %q: want %s, %s or %s", m.Policy, PolicyAcceptAll, PolicyAllowlist, PolicyApprove))
	}
	if err := m.IDevID.Validate(); err != nil {
		errs = append(errs, err)
	}
	if t := m.MASACOSEMediaType; t != "" && t != MediaTypeVoucherCOSE && t != MediaTypeVoucherCOSELegacy {
		errs = append(errs, fmt.Errorf("MASA COSE media type %q: want %s or %s", t, MediaTypeVoucherCOSE, MediaTypeVoucherCOSELegacy))
	}
	return errors.Join(errs...)
}

func checkMASABase(u *url.URL) error {
	if u == nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("MASA URL %v: want https://host[:port]/path", u)
	}
	return nil
}

// canonicalBase is the comparable form of a MASA base URL: scheme, lower-case
// host, explicit port, path without a trailing slash.
func canonicalBase(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "443"
	}
	return "https://" + strings.ToLower(u.Hostname()) + ":" + port + strings.TrimSuffix(u.EscapedPath(), "/")
}

// masaAllowed reports whether u is on the manufacturer's MASA allowlist.
func (m Manufacturer) masaAllowed(u *url.URL) bool {
	if u == nil || u.Scheme != "https" {
		return false
	}
	c := canonicalBase(u)
	for _, a := range m.MASAURLs {
		if a != nil && canonicalBase(a) == c {
			return true
		}
	}
	return false
}

// Deps are the registrar's collaborators.
type Deps struct {
	// Logger receives one event per request. Required.
	Logger *slog.Logger
	// Clock is the only source of time. Required.
	Clock clock.Clock
	// Metrics registers the registrar's metrics. Required; never the
	// global registry.
	Metrics prometheus.Registerer
	// Store persists devices, vouchers, telemetry and audit. Required.
	Store *store.DB
	// Audit writes the audit trail. Required.
	Audit *audit.Recorder
	// RA is the registrar certificate: served to pledges on the BRSKI
	// listener, presented to MASAs as the TLS client certificate, and the
	// key that signs registrar voucher-requests. Certificate holds the
	// chain (leaf first), PrivateKey a crypto.Signer, Leaf the parsed leaf.
	// Required.
	RA tls.Certificate
	// DomainCA is the domain CA chain (issuing CA first) that vouchers must
	// pin: a voucher's pinned-domain-cert must equal one of these or the RA
	// leaf. Required.
	DomainCA []*x509.Certificate
	// MASAClient, when set, is used for every MASA call instead of the
	// per-manufacturer clients built from Config (tests).
	MASAClient *http.Client
	// Issuer signs LDevIDs from the domain CA with the LDevID profile
	// (Config.LDevID must be the profile it was built with). Optional: a
	// registrar without one serves the voucher phase only and refuses EST
	// enrolment with 500.
	Issuer *pki.Issuer
}

func (d Deps) validate() error {
	var errs []error
	if d.Logger == nil {
		errs = append(errs, errors.New("no logger"))
	}
	if d.Clock == nil {
		errs = append(errs, errors.New("no clock"))
	}
	if d.Metrics == nil {
		errs = append(errs, errors.New("no metrics registerer"))
	}
	if d.Store == nil {
		errs = append(errs, errors.New("no store"))
	}
	if d.Audit == nil {
		errs = append(errs, errors.New("no audit recorder"))
	}
	if d.RA.Leaf == nil || len(d.RA.Certificate) == 0 || d.RA.PrivateKey == nil {
		errs = append(errs, errors.New("RA certificate: Leaf, Certificate and PrivateKey are required"))
	}
	if len(d.DomainCA) == 0 {
		errs = append(errs, errors.New("no domain CA certificate"))
	}
	return errors.Join(errs...)
}
