package configs

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-pki/gatehouse/coap"
	"github.com/gatehouse-pki/gatehouse/internal/web"
	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/registrar"
)

// Registrar is the schema of `gatehouse registrar --config FILE`.
type Registrar struct {
	// DataDir holds the registrar's bbolt database and audit log.
	// Default "/var/lib/gatehouse".
	DataDir string `yaml:"dataDir"`
	// Listen holds the listener addresses.
	Listen RegistrarListen `yaml:"listen"`
	// TLS is the registrar's RA/TLS identity, served to pledges and used as
	// the client certificate toward MASAs. Required.
	TLS KeyPair `yaml:"tls"`
	// DomainCA is the CA that issues LDevIDs. Required.
	DomainCA DomainCA `yaml:"domainCA"`
	// LDevID is the profile of issued device certificates.
	LDevID LDevIDProfile `yaml:"ldevid"`
	// Manufacturers lists the manufacturers whose pledges may onboard. A
	// pledge whose IDevID chains to none of them is refused.
	Manufacturers []Manufacturer `yaml:"manufacturers"`
	// MASAClient bounds outbound calls to MASAs.
	MASAClient MASAClient `yaml:"masaClient"`
	// EST configures the EST endpoints beyond what BRSKI pledges need.
	EST EST `yaml:"est"`
	// CoAPS bounds the DTLS listener of listen.coaps.
	CoAPS CoAPS `yaml:"coaps"`
	// RateLimits are the token buckets every BRSKI and EST request spends
	// from (HTTPS and CoAPS alike); an empty bucket answers 429 (CoAP
	// 5.03) with Retry-After.
	RateLimits RateLimits `yaml:"rateLimits"`
	// Log configures the request log and the audit trail.
	Log Log `yaml:"log"`
}

// RegistrarListen holds the registrar's listen addresses. An empty address
// disables that listener, except HTTPS, which defaults.
type RegistrarListen struct {
	// HTTPS serves BRSKI and EST over TLS. Default "127.0.0.1:8443".
	HTTPS string `yaml:"https"`
	// CoAPS serves cBRSKI and EST-coaps over DTLS. Default: disabled.
	CoAPS string `yaml:"coaps"`
	// Admin serves /metrics, /healthz, /readyz and /api/v1/. Default
	// "127.0.0.1:9090". Bound beyond loopback it requires AdminTokenFile.
	Admin string `yaml:"admin"`
	// AdminTokenFile holds a bearer token required on the admin API when
	// Admin is not a loopback address. Mode must not be group/world readable.
	AdminTokenFile string `yaml:"adminTokenFile"`
	// MaxConnsPerIP caps the open HTTPS connections from one source IP
	// address; further ones are closed at accept and counted in
	// brski_listener_connections_refused_total (reliability G05). A join
	// proxy funnels many pledges through one address: raise it there.
	// Default 256 (web.DefaultMaxConnsPerIP); -1 disables the cap.
	MaxConnsPerIP int `yaml:"maxConnsPerIP"`
}

// KeyPair references a certificate chain and its private key.
type KeyPair struct {
	// CertFile is a PEM file: the end-entity certificate first, then its chain.
	CertFile string `yaml:"certFile"`
	// KeyFile is the PEM private key (mode 0600; refused otherwise).
	KeyFile string `yaml:"keyFile"`
}

// DomainCA configures the domain CA.
type DomainCA struct {
	// CertFile is the PEM CA certificate (and chain, for an intermediate).
	CertFile string `yaml:"certFile"`
	// KeyFile is the CA's PEM private key (mode 0600; refused otherwise).
	// Exactly one of KeyFile and KeyURI is set.
	KeyFile string `yaml:"keyFile"`
	// KeyURI names the CA key in a KMS, for example a PKCS#11 URI.
	KeyURI string `yaml:"keyURI"`
	// CRLBaseURL, when set, puts a CRL distribution point in every LDevID:
	// <crlBaseURL>/<generation>.crl, which the registrar serves on its HTTPS
	// listener under /crl/ (for example https://registrar.example:8443/crl).
	// Default "": LDevIDs carry no distribution point; the CRLs are served
	// all the same. Only for a root-only domain CA (CRLs are kept per CA
	// generation, which an issuing intermediate does not have): with a
	// chain, the registrar refuses to start.
	CRLBaseURL string `yaml:"crlBaseURL"`
}

// LDevIDProfile is the certificate profile of issued LDevIDs. Names come from
// these templates, never from what a CSR asks for. Templates may use
// {serial}, the IDevID's X.520 serialNumber.
type LDevIDProfile struct {
	// Subject is the subject DN template. Default
	// "CN={serial},serialNumber={serial}" (pki.Profile's default).
	Subject string `yaml:"subject"`
	// DNS, IP, URI are SAN templates (at most one each). Default: none.
	DNS string `yaml:"dns"`
	// IP is an IP address SAN (no template substitution).
	IP string `yaml:"ip"`
	// URI is a URI SAN template, for example "urn:dev:serial:{serial}".
	URI string `yaml:"uri"`
	// Validity is the certificate lifetime. Default 90 days; at most 398 days.
	Validity Duration `yaml:"validity"`
	// Backdate moves NotBefore into the past for clock skew. Default 1m; at
	// most 1h.
	Backdate Duration `yaml:"backdate"`
	// RenewalWindow is how long before its notAfter an LDevID counts as due
	// for renewal in `gatehouse ca status` and GET /api/v1/ca (a flag or
	// query parameter overrides it). Default a third of the validity (720h
	// for the default 90 days); at most the validity.
	RenewalWindow Duration `yaml:"renewalWindow"`
	// ServerAuth adds id-kp-serverAuth to the default id-kp-clientAuth.
	ServerAuth bool `yaml:"serverAuth"`
	// Lint is the pre-issuance lint (reliability Q1): "full" (every zlint
	// lint, ~12 ms a certificate), "fast" (without two Web-PKI and
	// brute-force lints, ~0.35 ms) or "off". Default "fast".
	Lint string `yaml:"lint"`
}

// Manufacturer is one manufacturer's trust and policy settings.
type Manufacturer struct {
	// Name identifies the manufacturer in logs, metrics and the audit trail.
	Name string `yaml:"name"`
	// IDevIDAnchors are PEM files of the CAs that issue this manufacturer's
	// IDevIDs. At least one.
	IDevIDAnchors []string `yaml:"idevidAnchors"`
	// MASAAnchors are PEM files of the certificates vouchers from this
	// manufacturer's MASA must chain to (a CA, or the MASA's signing
	// certificate pinned). At least one.
	MASAAnchors []string `yaml:"masaAnchors"`
	// MASATLSAnchors are PEM files trusted for the MASA's TLS server
	// certificate. Default: the system roots.
	MASATLSAnchors []string `yaml:"masaTLSAnchors"`
	// MASAURLs is the allowlist of MASA base URLs (https) the registrar may
	// contact for this manufacturer; a URL from an IDevID that is not listed
	// is refused before any connection. At least one.
	MASAURLs []string `yaml:"masaURLs"`
	// MASAURLOverride, when set, is used instead of the IDevID's MASA URL
	// extension (it must also be in MASAURLs).
	MASAURLOverride string `yaml:"masaURLOverride"`
	// Policy is the admission policy. Default "approve".
	Policy registrar.Policy `yaml:"policy"`
	// Allowlist holds the serial numbers admitted under PolicyAllowlist.
	Allowlist []string `yaml:"allowlist"`
	// IgnoreIDevIDExpiry accepts IDevIDs past their NotAfter (RFC 8995
	// §2.6.2), for devices whose certificates were not issued with
	// 99991231235959Z. Default false.
	IgnoreIDevIDExpiry bool `yaml:"ignoreIDevIDExpiry"`
	// SerialNumberAttribute names the subject attribute holding the device
	// serial: "serialNumber" (X.520, default), "CN", or a dotted OID.
	SerialNumberAttribute string `yaml:"serialNumberAttribute"`
	// IDevIDIssuerEncoding is how idevid-issuer is encoded in registrar
	// voucher-requests: "octet-string" (default), "sequence" or "key-id".
	IDevIDIssuerEncoding pki.IssuerEncoding `yaml:"idevidIssuerEncoding"`
	// MASACOSEMediaType is the media type under which COSE (cBRSKI)
	// registrar voucher-requests go to this manufacturer's MASA:
	// "application/voucher+cose" (default) or the legacy
	// "application/voucher-cose+cbor" some MASAs still expect.
	MASACOSEMediaType string `yaml:"masaCOSEMediaType"`
}

// EST configures the registrar's EST endpoints. BRSKI pledges need none of
// it; non-BRSKI clients are refused unless one of clientIssuers or
// basicPasswordFile is set.
type EST struct {
	// RequireChannelBinding refuses (401) a CSR without the TLS channel
	// binding in challengePassword (RFC 7030 §3.5: tls-unique under TLS 1.2,
	// tls-exporter under TLS 1.3). Default false: required on TLS 1.2 only,
	// checked whenever present.
	RequireChannelBinding bool `yaml:"requireChannelBinding"`
	// ClientIssuers are PEM files of CA certificates: a TLS client
	// certificate chaining to one of them may enrol without BRSKI. They must
	// not be a manufacturer's idevidAnchors or the domain CA. Default: none.
	ClientIssuers []string `yaml:"clientIssuers"`
	// BasicPasswordFile is an htpasswd file of bcrypt hashes
	// ("htpasswd -B"): its users may enrol without BRSKI with HTTP Basic,
	// over TLS only. For lab setups; the registrar logs a warning at start.
	// Mode must not be group/world readable. Default: none.
	BasicPasswordFile string `yaml:"basicPasswordFile"`
}

// CoAPS bounds the CoAPS (DTLS) listener (reliability F09, F10). Zero
// values take the coap package's defaults.
type CoAPS struct {
	// MaxSessions caps concurrent DTLS sessions, handshakes included; a
	// further handshake is refused. Default 128.
	MaxSessions int `yaml:"maxSessions"`
	// HandshakeTimeout bounds one DTLS handshake. Default 10s, at most 1m.
	HandshakeTimeout Duration `yaml:"handshakeTimeout"`
	// IdleTimeout closes a session without traffic. Default 2m.
	IdleTimeout Duration `yaml:"idleTimeout"`
}

// Config returns the coap package's configuration, defaults filled in.
func (c CoAPS) Config() coap.Config {
	return coap.Config{
		MaxSessions:      c.MaxSessions,
		HandshakeTimeout: time.Duration(c.HandshakeTimeout),
		IdleTimeout:      time.Duration(c.IdleTimeout),
	}.WithDefaults()
}

// MASAClient bounds the registrar's outbound MASA calls (reliability D4).
type MASAClient struct {
	// DialTimeout bounds connecting to a MASA. Default 5s.
	DialTimeout Duration `yaml:"dialTimeout"`
	// Timeout bounds a whole MASA call. Default 10s.
	Timeout Duration `yaml:"timeout"`
	// MaxInFlight caps concurrent MASA calls. Default 32.
	MaxInFlight int `yaml:"maxInFlight"`
}

// RateLimits holds the registrar's request rate limits.
type RateLimits struct {
	// PerIP is per client IP address (reliability D7, G06). Default rate
	// 1000/s, burst 2000: generous, because a join proxy funnels many
	// pledges through one address.
	PerIP RateLimit `yaml:"perIP"`
	// PerCertificate is per client certificate (an IDevID, an LDevID or
	// another EST client's). Default rate 10/s, burst 40.
	PerCertificate RateLimit `yaml:"perCertificate"`
}

// RateLimit is a token bucket.
type RateLimit struct {
	// Rate is the sustained requests a second; -1 disables the limit.
	// 0: the default.
	Rate float64 `yaml:"rate"`
	// Burst is the bucket size. 0: the default.
	Burst int `yaml:"burst"`
}

// Limit is r as the registrar takes it.
func (r RateLimit) Limit() registrar.RateLimit {
	return registrar.RateLimit{Rate: r.Rate, Burst: r.Burst}
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error. Default "info".
	Level string `yaml:"level"`
	// AuditFile is the append-only JSON audit trail. Default
	// "<dataDir>/audit.log".
	AuditFile string `yaml:"auditFile"`
}

// Limits enforced at config load.
const (
	MaxLDevIDValidity = 398 * 24 * time.Hour
	MaxBackdate       = time.Hour
)

// WithDefaults returns c with every unset field at its default.
func (c Registrar) WithDefaults() Registrar {
	if c.DataDir == "" {
		c.DataDir = "/var/lib/gatehouse"
	}
	if c.Listen.HTTPS == "" {
		c.Listen.HTTPS = "127.0.0.1:8443"
	}
	if c.Listen.Admin == "" {
		c.Listen.Admin = "127.0.0.1:9090"
	}
	if c.Listen.MaxConnsPerIP == 0 {
		c.Listen.MaxConnsPerIP = web.DefaultMaxConnsPerIP
	}
	c.LDevID = c.LDevID.WithDefaults()
	ms := make([]Manufacturer, len(c.Manufacturers))
	for i, m := range c.Manufacturers {
		ms[i] = m.WithDefaults()
	}
	c.Manufacturers = ms
	c.MASAClient = c.MASAClient.WithDefaults()
	c.Log = c.Log.WithDefaults()
	return c
}

// WithDefaults returns p with every unset field at its default.
func (p LDevIDProfile) WithDefaults() LDevIDProfile {
	if p.Subject == "" {
		p.Subject = "CN={serial},serialNumber={serial}"
	}
	if p.Validity == 0 {
		p.Validity = Duration(90 * 24 * time.Hour)
	}
	if p.Backdate == 0 {
		p.Backdate = Duration(time.Minute)
	}
	if p.RenewalWindow == 0 {
		p.RenewalWindow = p.Validity / 3
	}
	if p.Lint == "" {
		p.Lint = "fast"
	}
	return p
}

// WithDefaults returns m with every unset field at its default.
func (m Manufacturer) WithDefaults() Manufacturer {
	if m.Policy == "" {
		m.Policy = registrar.PolicyApprove
	}
	if m.SerialNumberAttribute == "" {
		m.SerialNumberAttribute = "serialNumber"
	}
	if m.IDevIDIssuerEncoding == "" {
		m.IDevIDIssuerEncoding = pki.IssuerEncodingOctetString
	}
	if m.MASACOSEMediaType == "" {
		m.MASACOSEMediaType = registrar.MediaTypeVoucherCOSE
	}
	return m
}

// WithDefaults returns c with every unset field at its default.
func (c MASAClient) WithDefaults() MASAClient {
	if c.DialTimeout == 0 {
		c.DialTimeout = Duration(5 * time.Second)
	}
	if c.Timeout == 0 {
		c.Timeout = Duration(10 * time.Second)
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 32
	}
	return c
}

// WithDefaults returns l with every unset field at its default.
func (l Log) WithDefaults() Log {
	if l.Level == "" {
		l.Level = "info"
	}
	return l
}

// Validate reports every problem in c at once. It reads no file.
func (c Registrar) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := validAddr(c.Listen.HTTPS, false); err != nil {
		add("listen.https: %w", err)
	}
	for name, rl := range map[string]RateLimit{"rateLimits.perIP": c.RateLimits.PerIP, "rateLimits.perCertificate": c.RateLimits.PerCertificate} {
		switch {
		case rl.Rate < 0 && rl.Rate != -1:
			add("%s.rate: %v; want a positive rate, or -1 for no limit", name, rl.Rate)
		case rl.Burst < 0:
			add("%s.burst: %d; want a positive burst", name, rl.Burst)
		case rl.Rate > 0 && rl.Burst == 0:
			add("%s: a rate needs a burst", name)
		case rl.Rate == 0 && rl.Burst != 0:
			add("%s: a burst needs a rate", name)
		}
	}
	if c.Listen.MaxConnsPerIP < -1 {
		add("listen.maxConnsPerIP: %d; want a positive cap, or -1 for none", c.Listen.MaxConnsPerIP)
	}
	if err := validAddr(c.Listen.CoAPS, true); err != nil {
		add("listen.coaps: %w", err)
	}
	if err := validAddr(c.Listen.Admin, true); err != nil {
		add("listen.admin: %w", err)
	} else if c.Listen.Admin != "" && !isLoopback(c.Listen.Admin) && c.Listen.AdminTokenFile == "" {
		add("listen.admin: %q is not a loopback address, so listen.adminTokenFile is required", c.Listen.Admin)
	}
	if c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
		add("tls: certFile and keyFile are required")
	}
	if c.DomainCA.CertFile == "" {
		add("domainCA.certFile is required")
	}
	if (c.DomainCA.KeyFile == "") == (c.DomainCA.KeyURI == "") {
		add("domainCA: set exactly one of keyFile and keyURI")
	}
	if err := c.LDevID.Validate(); err != nil {
		add("ldevid: %w", err)
	}
	if len(c.Manufacturers) == 0 {
		add("manufacturers: at least one is required")
	}
	names := map[string]bool{}
	for i, m := range c.Manufacturers {
		if err := m.Validate(); err != nil {
			add("manufacturers[%d] (%s): %w", i, m.Name, err)
		}
		if names[m.Name] {
			add("manufacturers[%d]: duplicate name %q", i, m.Name)
		}
		names[m.Name] = true
	}
	if c.MASAClient.DialTimeout <= 0 || c.MASAClient.Timeout <= 0 || c.MASAClient.DialTimeout > c.MASAClient.Timeout {
		add("masaClient: need 0 < dialTimeout <= timeout")
	}
	if err := c.CoAPS.Config().Validate(); err != nil {
		add("coaps: %w", err)
	}
	if c.MASAClient.MaxInFlight < 1 || c.MASAClient.MaxInFlight > 4096 {
		add("masaClient.maxInFlight: %d is outside 1..4096", c.MASAClient.MaxInFlight)
	}
	if err := validLevel(c.Log.Level); err != nil {
		add("log.level: %w", err)
	}
	for i, f := range c.EST.ClientIssuers {
		if f == "" {
			add("est.clientIssuers[%d]: empty file name", i)
		}
		for _, m := range c.Manufacturers {
			if slices.Contains(m.IDevIDAnchors, f) {
				add("est.clientIssuers[%d]: %s is also an idevidAnchor of %s; keep EST client issuers apart from manufacturer anchors", i, f, m.Name)
			}
		}
		if f == c.DomainCA.CertFile {
			add("est.clientIssuers[%d]: %s is the domain CA", i, f)
		}
	}
	return errors.Join(errs...)
}

// Validate reports every problem in p at once.
func (p LDevIDProfile) Validate() error {
	var errs []error
	if !strings.Contains(p.Subject, "=") {
		errs = append(errs, fmt.Errorf("subject %q is not a DN template such as CN={serial}", p.Subject))
	}
	if p.Validity <= 0 || p.Validity.D() > MaxLDevIDValidity {
		errs = append(errs, fmt.Errorf("validity %s is outside (0, %s]", p.Validity.D(), MaxLDevIDValidity))
	}
	if p.Lint != "full" && p.Lint != "fast" && p.Lint != "off" {
		errs = append(errs, fmt.Errorf("lint %q: want full, fast or off", p.Lint))
	}
	if p.RenewalWindow <= 0 || p.RenewalWindow > p.Validity {
		errs = append(errs, fmt.Errorf("renewalWindow %s is outside (0, validity %s]", p.RenewalWindow.D(), p.Validity.D()))
	}
	if p.Backdate < 0 || p.Backdate.D() > MaxBackdate {
		errs = append(errs, fmt.Errorf("backdate %s is outside [0, %s]", p.Backdate.D(), MaxBackdate))
	}
	if p.IP != "" && net.ParseIP(p.IP) == nil {
		errs = append(errs, fmt.Errorf("ip %q is not an IP address", p.IP))
	}
	if p.URI != "" {
		if _, err := url.Parse(strings.ReplaceAll(p.URI, "{serial}", "x")); err != nil {
			errs = append(errs, fmt.Errorf("uri: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Validate reports every problem in m at once.
func (m Manufacturer) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if m.Name == "" {
		add("name is required")
	}
	if len(m.IDevIDAnchors) == 0 {
		add("idevidAnchors: at least one is required")
	}
	if len(m.MASAAnchors) == 0 {
		add("masaAnchors: at least one is required")
	}
	if len(m.MASAURLs) == 0 {
		add("masaURLs: at least one allowed MASA URL is required")
	}
	allowed := map[string]bool{}
	for _, u := range m.MASAURLs {
		if err := validMASAURL(u); err != nil {
			add("masaURLs: %w", err)
		}
		allowed[strings.TrimSuffix(u, "/")] = true
	}
	if m.MASAURLOverride != "" {
		if err := validMASAURL(m.MASAURLOverride); err != nil {
			add("masaURLOverride: %w", err)
		} else if !allowed[strings.TrimSuffix(m.MASAURLOverride, "/")] {
			add("masaURLOverride %q is not in masaURLs", m.MASAURLOverride)
		}
	}
	if !m.Policy.IsValid() {
		add("policy %q: want accept-all, allowlist or approve", m.Policy)
	}
	if m.Policy != registrar.PolicyAllowlist && len(m.Allowlist) > 0 {
		add("allowlist is set but policy is %q", m.Policy)
	}
	if !m.IDevIDIssuerEncoding.IsValid() {
		add("idevidIssuerEncoding %q: want octet-string, sequence or key-id", m.IDevIDIssuerEncoding)
	}
	if t := m.MASACOSEMediaType; t != registrar.MediaTypeVoucherCOSE && t != registrar.MediaTypeVoucherCOSELegacy {
		add("masaCOSEMediaType %q: want %s or %s", t, registrar.MediaTypeVoucherCOSE, registrar.MediaTypeVoucherCOSELegacy)
	}
	if m.SerialNumberAttribute != "serialNumber" && m.SerialNumberAttribute != "CN" && !isDottedOID(m.SerialNumberAttribute) {
		add("serialNumberAttribute %q: want serialNumber, CN or a dotted OID", m.SerialNumberAttribute)
	}
	return errors.Join(errs...)
}

func validMASAURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%q: want an https URL with a host", s)
	}
	if u.User != nil || u.Fragment != "" || u.RawQuery != "" {
		return fmt.Errorf("%q: no user info, query or fragment allowed", s)
	}
	return nil
}

func validAddr(a string, optional bool) error {
	if a == "" {
		if optional {
			return nil
		}
		return errors.New("address is required")
	}
	if _, _, err := net.SplitHostPort(a); err != nil {
		return err
	}
	return nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func validLevel(l string) error {
	switch l {
	case "debug", "info", "warn", "error":
		return nil
	}
	return fmt.Errorf("%q: want debug, info, warn or error", l)
}

func isDottedOID(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return false
	}
	for _, p := range parts {
		if p == "" {
			return false
		}
		for _, r := range p {
			if r < '0' || r > '9' {
				return false
			}
		}
	}
	return true
}
