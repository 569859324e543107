package pki

import (
	"encoding/asn1"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// ErrProfile reports an invalid profile or CA configuration, or a device
// identity that the profile cannot turn into valid names.
var ErrProfile = errors.New("invalid certificate profile")

const (
	// MaxLeafValidity is the hard cap on the lifetime of an LDevID or RA
	// certificate (reliability Q2); Validate refuses anything longer.
	MaxLeafValidity = 398 * 24 * time.Hour
	// DefaultLDevIDValidity is the default LDevID lifetime.
	DefaultLDevIDValidity = 90 * 24 * time.Hour
	// DefaultRAValidity is the default registrar (RA) certificate lifetime.
	DefaultRAValidity = 365 * 24 * time.Hour
	// DefaultBackdate is the default NotBefore backdate (clock skew).
	DefaultBackdate = time.Minute
	// MaxBackdate bounds the backdate (reliability Q2: ≤ 1 h).
	MaxBackdate = time.Hour
)

// Template placeholders. A profile value is literal text with any of these
// substituted from the device identity (DeviceIdentity), in a single pass:
// substituted text is never expanded again. Any other "{…}" is refused by
// Validate.
const (
	// PlaceholderSerial is the IDevID's serial number (X.520 serialNumber, or
	// the manufacturer's configured fallback attribute).
	PlaceholderSerial = "{serial}"
	// PlaceholderCN is the IDevID subject's first commonName; rendering fails
	// with ErrProfile when the IDevID has none.
	PlaceholderCN = "{cn}"
)

// NameAttribute is one attribute of a subject template.
type NameAttribute struct {
	// Type is the attribute type: one of CN, serialNumber, O, OU, C, L, ST
	// (case-insensitive), or a dotted OID such as "2.5.4.5". Required.
	Type string `yaml:"type"`
	// Value is the attribute value template (placeholders allowed). It must
	// render to a non-empty string of at most 64 characters.
	Value string `yaml:"value"`
}

// OtherNameTemplate is an otherName SAN (RFC 5280 §4.2.1.6) whose value is a
// UTF8String.
type OtherNameTemplate struct {
	// OID is the otherName type-id, dotted (for example "1.3.6.1.5.5.7.8.4"
	// is not a UTF8String type and must not be used here). Required.
	OID string `yaml:"oid"`
	// Value is the UTF8String value template (placeholders allowed).
	Value string `yaml:"value"`
}

// Profile is the LDevID certificate profile: pure data that says what the CA
// puts in a device certificate. The names come only from here and from the
// device's IDevID; nothing is ever copied from a CSR. Use WithDefaults, then
// Validate.
type Profile struct {
	// Subject is the subject DN template, one attribute per RDN, in order.
	// Default: [{CN, "{serial}"}, {serialNumber, "{serial}"}].
	Subject []NameAttribute `yaml:"subject"`
	// DNSNames are dNSName SAN templates. Each must render to a valid
	// hostname (no wildcard). Default none. At most one unless
	// AllowMultipleNames.
	DNSNames []string `yaml:"dnsNames"`
	// IPAddresses are iPAddress SAN templates, rendering to IPv4 or IPv6
	// literals. Default none. At most one unless AllowMultipleNames.
	IPAddresses []string `yaml:"ipAddresses"`
	// URIs are uniformResourceIdentifier SAN templates such as
	// "urn:dev:ops:{serial}" or "bacnet://{serial}". Substituted values are
	// percent-escaped as a URI path segment (url.PathEscape), so any serial
	// yields a valid URI. Each must render to an absolute URI. Default none.
	// At most one unless AllowMultipleNames.
	URIs []string `yaml:"uris"`
	// OtherNames are otherName SANs with UTF8String values. Default none. At
	// most one unless AllowMultipleNames.
	OtherNames []OtherNameTemplate `yaml:"otherNames"`
	// AllowMultipleNames lifts the limit of one SAN per name type. Default
	// false.
	AllowMultipleNames bool `yaml:"allowMultipleNames"`
	// ServerAuth adds id-kp-serverAuth to the extended key usage (clientAuth
	// is always present). Default false.
	ServerAuth bool `yaml:"serverAuth"`
	// KeyEncipherment adds keyEncipherment to the key usage for RSA device
	// keys only (RSA key transport); ignored for EC and Ed25519 keys. It
	// requires ServerAuth: key transport is the TLS server's role, and
	// keyEncipherment with clientAuth alone is inconsistent (RFC 5280
	// §4.2.1.12; zlint e_key_usage_and_extended_key_usage_inconsistent).
	// Default false: digitalSignature only.
	KeyEncipherment bool `yaml:"keyEncipherment"`
	// Validity is the certificate lifetime, NotAfter − NotBefore, exactly
	// (unless capped at the issuer's NotAfter). Default 90 days
	// (DefaultLDevIDValidity); at most 398 days (MaxLeafValidity).
	Validity time.Duration `yaml:"validity"`
	// Backdate moves NotBefore before the issuance time to absorb device
	// clock skew. Default 1 minute (DefaultBackdate); at most 1 hour.
	Backdate time.Duration `yaml:"backdate"`
}

// WithDefaults returns p with every unset field at its default.
func (p Profile) WithDefaults() Profile {
	if len(p.Subject) == 0 {
		p.Subject = []NameAttribute{{Type: "CN", Value: PlaceholderSerial}, {Type: "serialNumber", Value: PlaceholderSerial}}
	}
	if p.Validity == 0 {
		p.Validity = DefaultLDevIDValidity
	}
	if p.Backdate == 0 {
		p.Backdate = DefaultBackdate
	}
	return p
}

// Validate reports every problem in p at once (errors.Join), wrapped in
// ErrProfile. It is pure: it fills in nothing.
func (p Profile) Validate() error {
	var errs []error
	if len(p.Subject) == 0 {
		errs = append(errs, errors.New("subject: at least one attribute is required"))
	}
	for i, a := range p.Subject {
		if _, err := attributeOID(a.Type); err != nil {
			errs = append(errs, fmt.Errorf("subject[%d]: %w", i, err))
		}
		if err := checkTemplate(a.Value); err != nil {
			errs = append(errs, fmt.Errorf("subject[%d]: %w", i, err))
		}
	}
	one := func(field string, n int) {
		if n > 1 && !p.AllowMultipleNames {
			errs = append(errs, fmt.Errorf("%s: %d names, but at most one unless allowMultipleNames", field, n))
		}
	}
	one("dnsNames", len(p.DNSNames))
	one("ipAddresses", len(p.IPAddresses))
	one("uris", len(p.URIs))
	one("otherNames", len(p.OtherNames))
	for i, v := range p.DNSNames {
		if err := checkTemplate(v); err != nil {
			errs = append(errs, fmt.Errorf("dnsNames[%d]: %w", i, err))
		}
		if strings.Contains(v, "*") {
			errs = append(errs, fmt.Errorf("dnsNames[%d]: wildcards are not allowed", i))
		}
	}
	for i, v := range p.IPAddresses {
		if err := checkTemplate(v); err != nil {
			errs = append(errs, fmt.Errorf("ipAddresses[%d]: %w", i, err))
		}
	}
	for i, v := range p.URIs {
		if err := checkTemplate(v); err != nil {
			errs = append(errs, fmt.Errorf("uris[%d]: %w", i, err))
		}
	}
	for i, o := range p.OtherNames {
		if _, err := parseOID(o.OID); err != nil {
			errs = append(errs, fmt.Errorf("otherNames[%d]: %w", i, err))
		}
		if err := checkTemplate(o.Value); err != nil {
			errs = append(errs, fmt.Errorf("otherNames[%d]: %w", i, err))
		}
	}
	if p.KeyEncipherment && !p.ServerAuth {
		errs = append(errs, errors.New("keyEncipherment: requires serverAuth"))
	}
	if p.Validity <= 0 || p.Validity > MaxLeafValidity {
		errs = append(errs, fmt.Errorf("validity %s: must be in (0, %s] (398 days)", p.Validity, MaxLeafValidity))
	}
	if p.Backdate < 0 || p.Backdate > MaxBackdate {
		errs = append(errs, fmt.Errorf("backdate %s: must be in [0, %s]", p.Backdate, MaxBackdate))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrProfile, err)
	}
	return nil
}

var placeholderRE = regexp.MustCompile(`\{[^{}]*\}`)

func checkTemplate(v string) error {
	if v == "" {
		return errors.New("empty template")
	}
	for _, m := range placeholderRE.FindAllString(v, -1) {
		if m != PlaceholderSerial && m != PlaceholderCN {
			return fmt.Errorf("unknown placeholder %s (known: %s, %s)", m, PlaceholderSerial, PlaceholderCN)
		}
	}
	if strings.Count(v, "{") != len(placeholderRE.FindAllString(v, -1)) || strings.Count(v, "}") != strings.Count(v, "{") {
		return fmt.Errorf("unbalanced braces in %q", v)
	}
	return nil
}

// Well-known attribute types accepted by name in NameAttribute.Type.
var attributeNames = map[string]asn1.ObjectIdentifier{
	"cn":           {2, 5, 4, 3},
	"commonname":   {2, 5, 4, 3},
	"serialnumber": {2, 5, 4, 5},
	"c":            {2, 5, 4, 6},
	"l":            {2, 5, 4, 7},
	"st":           {2, 5, 4, 8},
	"o":            {2, 5, 4, 10},
	"ou":           {2, 5, 4, 11},
}

func attributeOID(name string) (asn1.ObjectIdentifier, error) {
	if oid, ok := attributeNames[strings.ToLower(name)]; ok {
		return oid, nil
	}
	oid, err := parseOID(name)
	if err != nil {
		return nil, fmt.Errorf("attribute type %q: not a known name or a dotted OID", name)
	}
	return oid, nil
}

func parseOID(s string) (asn1.ObjectIdentifier, error) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, fmt.Errorf("oid %q: need at least two arcs", s)
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		n := 0
		if p == "" || len(p) > 9 || (len(p) > 1 && p[0] == '0') {
			return nil, fmt.Errorf("oid %q: bad arc %q", s, p)
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				return nil, fmt.Errorf("oid %q: bad arc %q", s, p)
			}
			n = n*10 + int(c-'0')
		}
		oid[i] = n
	}
	if oid[0] > 2 || (oid[0] < 2 && oid[1] > 39) {
		return nil, fmt.Errorf("oid %q: bad first arcs", s)
	}
	return oid, nil
}

// render substitutes the placeholders in tmpl; escape, when non-nil, is
// applied to each substituted value.
func render(tmpl string, dev *DeviceIdentity, escape func(string) string) (string, error) {
	var err error
	out := placeholderRE.ReplaceAllStringFunc(tmpl, func(m string) string {
		var v string
		switch m {
		case PlaceholderSerial:
			v = dev.Serial
		case PlaceholderCN:
			v = dev.CommonName
		}
		if v == "" && err == nil {
			err = fmt.Errorf("%w: placeholder %s is empty for this device", ErrProfile, m)
		}
		if escape != nil {
			v = escape(v)
		}
		return v
	})
	if err != nil {
		return "", err
	}
	return out, nil
}

// names is what a profile derives for one device: the subject and SANs.
type names struct {
	subject    []attribute
	dns        []string
	ips        []net.IP
	uris       []*url.URL
	otherNames []otherName
}

type attribute struct {
	oid   asn1.ObjectIdentifier
	value string
}

type otherName struct {
	oid   asn1.ObjectIdentifier
	value string
}

// maxAttributeLength is the ub-… upper bound RFC 5280 Appendix A gives for
// commonName and serialNumber (64); applied to every rendered attribute.
const maxAttributeLength = 64

// derive renders p (already validated) for dev.
func (p Profile) derive(dev *DeviceIdentity) (*names, error) {
	if dev == nil || dev.Serial == "" {
		return nil, fmt.Errorf("%w: device identity without a serial", ErrNoSerialNumber)
	}
	n := &names{}
	for _, a := range p.Subject {
		oid, err := attributeOID(a.Type)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrProfile, err)
		}
		v, err := render(a.Value, dev, nil)
		if err != nil {
			return nil, err
		}
		if len([]rune(v)) > maxAttributeLength {
			return nil, fmt.Errorf("%w: subject %s renders to %d characters (max %d)", ErrProfile, a.Type, len([]rune(v)), maxAttributeLength)
		}
		if oid.Equal(attributeNames["c"]) && len(v) != 2 {
			return nil, fmt.Errorf("%w: country %q is not two letters", ErrProfile, v)
		}
		n.subject = append(n.subject, attribute{oid: oid, value: v})
	}
	for _, t := range p.DNSNames {
		v, err := render(t, dev, nil)
		if err != nil {
			return nil, err
		}
		if !validHostname(v) {
			return nil, fmt.Errorf("%w: dns name %q is not a valid hostname", ErrProfile, v)
		}
		n.dns = append(n.dns, v)
	}
	for _, t := range p.IPAddresses {
		v, err := render(t, dev, nil)
		if err != nil {
			return nil, err
		}
		ip := net.ParseIP(v)
		if ip == nil {
			return nil, fmt.Errorf("%w: ip address %q is not an IP literal", ErrProfile, v)
		}
		if ip4 := ip.To4(); ip4 != nil {
			ip = ip4
		}
		n.ips = append(n.ips, ip)
	}
	for _, t := range p.URIs {
		v, err := render(t, dev, url.PathEscape)
		if err != nil {
			return nil, err
		}
		if !isASCII(v) {
			return nil, fmt.Errorf("%w: uri %q is not ASCII (IA5String)", ErrProfile, v)
		}
		u, err := url.Parse(v)
		if err != nil || !u.IsAbs() || u.User != nil || u.Fragment != "" {
			return nil, fmt.Errorf("%w: uri %q is not an absolute URI", ErrProfile, v)
		}
		n.uris = append(n.uris, u)
	}
	for _, o := range p.OtherNames {
		oid, err := parseOID(o.OID)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrProfile, err)
		}
		v, err := render(o.Value, dev, nil)
		if err != nil {
			return nil, err
		}
		n.otherNames = append(n.otherNames, otherName{oid: oid, value: v})
	}
	return n, nil
}

// validHostname accepts LDH labels separated by dots (RFC 1034 §3.5 preferred
// name syntax, with RFC 1123 leading digits), up to 253 octets.
func validHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' {
				return false
			}
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
