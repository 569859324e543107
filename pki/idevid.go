package pki

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// IDevID parsing errors.
var (
	// ErrNoSerialNumber reports an IDevID whose subject carries neither the
	// X.520 serialNumber nor the configured fallback attribute.
	ErrNoSerialNumber = errors.New("no serial number in the IDevID subject")
	// ErrBadSerial reports a serial number attribute that is present but
	// unusable: empty, longer than 64 characters, not a string, repeated, or
	// holding control characters.
	ErrBadSerial = errors.New("unusable serial number in the IDevID subject")
	// ErrNoMASAURL reports an IDevID without the MASA URL extension.
	ErrNoMASAURL = errors.New("no MASA URL extension in the IDevID")
	// ErrBadMASAURL reports a MASA URL extension that cannot be used.
	ErrBadMASAURL = errors.New("unusable MASA URL extension")
	// ErrBadIDevIDIssuer reports an IDevID from which no idevid-issuer can be
	// built in the requested encoding.
	ErrBadIDevIDIssuer = errors.New("cannot build idevid-issuer")
)

var (
	// OIDMASAURL is id-pe-masa-url (RFC 8995 §2.3.2), 1.3.6.1.5.5.7.1.32.
	OIDMASAURL = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 32}
	// OIDSerialNumber is id-at-serialNumber (X.520), 2.5.4.5.
	OIDSerialNumber = asn1.ObjectIdentifier{2, 5, 4, 5}
	// oidAuthorityKeyID is id-ce-authorityKeyIdentifier, 2.5.29.35.
	oidAuthorityKeyID = asn1.ObjectIdentifier{2, 5, 29, 35}
)

const (
	// MaxSerialLength is the longest serial number accepted, in characters
	// (ub-serial-number, RFC 5280 Appendix A).
	MaxSerialLength = 64
	// MaxMASAURLLength bounds the IA5String in the MASA URL extension, in
	// octets.
	MaxMASAURLLength = 1024
	// WellKnownBRSKI is the path assumed when the MASA URL extension holds
	// only an authority (RFC 8995 §2.3.2).
	WellKnownBRSKI = "/.well-known/brski"
)

// IssuerEncoding is how the idevid-issuer leaf of a registrar voucher-request
// is encoded; implementations differ (standards digest §9 item 3, RFC 8995
// erratum 7263), so it is configured per manufacturer or MASA.
type IssuerEncoding string

const (
	// IssuerEncodingOctetString is the entire AKI extnValue OCTET STRING TLV,
	// 04 18 30 16 80 14 <keyid> for a 20-octet key id: the form of
	// draft-ietf-anima-rfc8366bis and of the cBRSKI example. The default.
	IssuerEncodingOctetString IssuerEncoding = "octet-string"
	// IssuerEncodingSequence is the AuthorityKeyIdentifier SEQUENCE,
	// 30 16 80 14 <keyid>.
	IssuerEncodingSequence IssuerEncoding = "sequence"
	// IssuerEncodingKeyID is the bare keyIdentifier octets.
	IssuerEncodingKeyID IssuerEncoding = "key-id"
)

// IsValid reports whether e is one of the defined encodings.
func (e IssuerEncoding) IsValid() bool {
	switch e {
	case IssuerEncodingOctetString, IssuerEncodingSequence, IssuerEncodingKeyID:
		return true
	}
	return false
}

// IDevIDOptions are the per-manufacturer rules for reading an IDevID. The
// zero value reads the X.520 serialNumber and encodes idevid-issuer as an
// OCTET STRING.
type IDevIDOptions struct {
	// SerialFallback names the subject attribute to read the serial number
	// from when the IDevID has no X.520 serialNumber (RFC 8995 §2.3.1: the
	// registrar SHOULD be configurable per manufacturer). A name accepted by
	// NameAttribute.Type ("CN", "O", …) or a dotted OID. Default "": no
	// fallback.
	SerialFallback string `yaml:"serialFallback"`
	// IssuerEncoding selects the idevid-issuer encoding. Default
	// IssuerEncodingOctetString.
	IssuerEncoding IssuerEncoding `yaml:"issuerEncoding"`
}

// WithDefaults returns o with every unset field at its default.
func (o IDevIDOptions) WithDefaults() IDevIDOptions {
	if o.IssuerEncoding == "" {
		o.IssuerEncoding = IssuerEncodingOctetString
	}
	return o
}

// Validate reports every problem in o at once. It is pure.
func (o IDevIDOptions) Validate() error {
	var errs []error
	if o.SerialFallback != "" {
		if _, err := attributeOID(o.SerialFallback); err != nil {
			errs = append(errs, fmt.Errorf("serialFallback: %w", err))
		}
	}
	if !o.IssuerEncoding.IsValid() {
		errs = append(errs, fmt.Errorf("issuerEncoding %q: want %s, %s or %s", o.IssuerEncoding, IssuerEncodingOctetString, IssuerEncodingSequence, IssuerEncodingKeyID))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: idevid options: %w", ErrProfile, err)
	}
	return nil
}

// DeviceIdentity is what the registrar and the CA know about a pledge, taken
// from its authenticated IDevID.
type DeviceIdentity struct {
	// Serial is the device serial number (X.520 serialNumber or the fallback
	// attribute); the RVR serial-number leaf and the {serial} placeholder.
	Serial string
	// CommonName is the IDevID subject's first commonName, or "".
	CommonName string
	// MASAURL is the MASA base URL from the id-pe-masa-url extension, or nil
	// when the IDevID has none (the registrar then uses its configured
	// per-manufacturer URL, RFC 8995 §2.8).
	MASAURL *url.URL
	// IDevIDIssuer is the idevid-issuer value in the configured encoding.
	IDevIDIssuer []byte
}

// ParseIDevID extracts the device identity from an IDevID: serial number,
// MASA URL (nil if the extension is absent; an error if it is present but
// unusable) and idevid-issuer. opts is defaulted and validated here.
func ParseIDevID(cert *x509.Certificate, opts IDevIDOptions) (*DeviceIdentity, error) {
	opts = opts.WithDefaults()
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("parse idevid: %w", err)
	}
	serial, err := SerialNumber(cert, opts.SerialFallback)
	if err != nil {
		return nil, fmt.Errorf("parse idevid: %w", err)
	}
	masa, err := MASAURL(cert)
	if err != nil && !errors.Is(err, ErrNoMASAURL) {
		return nil, fmt.Errorf("parse idevid: %w", err)
	}
	issuer, err := IDevIDIssuer(cert, opts.IssuerEncoding)
	if err != nil {
		return nil, fmt.Errorf("parse idevid: %w", err)
	}
	cn, _ := subjectString(cert, attributeNames["cn"])
	return &DeviceIdentity{Serial: serial, CommonName: cn, MASAURL: masa, IDevIDIssuer: issuer}, nil
}

// SerialNumber returns the device serial number of an IDevID: the subject's
// X.520 serialNumber (2.5.4.5; RFC 8995 §2.3.1: not the certificate serial),
// or, when that attribute is absent and fallback is set, the attribute that
// fallback names ("CN", "O", a dotted OID …). The value must be a non-empty
// string of at most 64 characters without control characters, and the
// attribute must occur once.
func SerialNumber(cert *x509.Certificate, fallback string) (string, error) {
	if cert == nil {
		return "", fmt.Errorf("%w: no certificate", ErrNoSerialNumber)
	}
	v, err := subjectString(cert, OIDSerialNumber)
	if errors.Is(err, ErrNoSerialNumber) && fallback != "" {
		oid, oerr := attributeOID(fallback)
		if oerr != nil {
			return "", fmt.Errorf("%w: %w", ErrProfile, oerr)
		}
		v, err = subjectString(cert, oid)
	}
	if err != nil {
		return "", err
	}
	if err := checkSerial(v); err != nil {
		return "", err
	}
	return v, nil
}

func checkSerial(v string) error {
	if v == "" {
		return fmt.Errorf("%w: empty", ErrBadSerial)
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("%w: not valid UTF-8", ErrBadSerial)
	}
	if n := utf8.RuneCountInString(v); n > MaxSerialLength {
		return fmt.Errorf("%w: %d characters (max %d)", ErrBadSerial, n, MaxSerialLength)
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("%w: control character %U", ErrBadSerial, r)
		}
	}
	return nil
}

// subjectString returns the single string value of attribute oid in the
// subject; ErrNoSerialNumber if absent, ErrBadSerial if repeated or not a
// string.
func subjectString(cert *x509.Certificate, oid asn1.ObjectIdentifier) (string, error) {
	var found []any
	for _, atv := range cert.Subject.Names {
		if atv.Type.Equal(oid) {
			found = append(found, atv.Value)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w: attribute %s absent", ErrNoSerialNumber, oid)
	case 1:
	default:
		return "", fmt.Errorf("%w: attribute %s occurs %d times", ErrBadSerial, oid, len(found))
	}
	s, ok := found[0].(string)
	if !ok {
		return "", fmt.Errorf("%w: attribute %s is not a string", ErrBadSerial, oid)
	}
	return s, nil
}

// MASAURL returns the MASA base URL from cert's id-pe-masa-url extension
// (see ParseMASAURL), or ErrNoMASAURL when the extension is absent. A
// repeated extension is refused (RFC 5280 §4.2; Go's parser already refuses
// that).
func MASAURL(cert *x509.Certificate) (*url.URL, error) {
	if cert == nil {
		return nil, ErrNoMASAURL
	}
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(OIDMASAURL) {
			return ParseMASAURL(ext.Value)
		}
	}
	return nil, ErrNoMASAURL
}

// ParseMASAURL parses the extnValue of an id-pe-masa-url extension: the DER
// TLV of an IA5String (MASAURLSyntax, RFC 8995 §2.3.2). The result is always
// an https URL with a host, no userinfo, no query and no fragment:
//
//   - A value without "/" is an authority, host[:port] (a DNS name, an IPv4
//     literal or a bracketed IPv6 literal), and yields
//     https://<authority>/.well-known/brski.
//   - A value with "/" must be an absolute URI scheme://authority[/path].
//     Whatever the scheme, it is replaced by https: RFC 8995 §2.3.2 has the
//     registrar use HTTPS regardless. An empty path or "/" becomes
//     /.well-known/brski; any other path is kept as given, without a trailing
//     "/", and is the base to which the caller appends "/requestvoucher".
//
// Refused with ErrBadMASAURL: anything but a single DER IA5String, trailing
// data, an empty value, more than MaxMASAURLLength octets, octets outside
// printable ASCII (controls, DEL, space, non-IA5), userinfo, a query, a
// fragment, a missing or malformed host, a port outside 1-65535.
func ParseMASAURL(ext []byte) (*url.URL, error) {
	in := cryptobyte.String(ext)
	var raw cryptobyte.String
	if !in.ReadASN1(&raw, cbasn1.IA5String) || !in.Empty() {
		return nil, fmt.Errorf("%w: not a single DER IA5String", ErrBadMASAURL)
	}
	s := string(raw)
	if s == "" {
		return nil, fmt.Errorf("%w: empty", ErrBadMASAURL)
	}
	if len(s) > MaxMASAURLLength {
		return nil, fmt.Errorf("%w: %d octets (max %d)", ErrBadMASAURL, len(s), MaxMASAURLLength)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c >= 0x7f {
			return nil, fmt.Errorf("%w: octet %#02x at %d is not printable ASCII", ErrBadMASAURL, c, i)
		}
	}
	if strings.ContainsAny(s, "@#?\\") {
		return nil, fmt.Errorf("%w: userinfo, query, fragment or backslash in %q", ErrBadMASAURL, s)
	}
	// A MASA URL needs no percent-encoding, and decoding it could smuggle
	// the characters refused above ("%40" is "@") past this check.
	if strings.Contains(s, "%") {
		return nil, fmt.Errorf("%w: percent-encoding in %q", ErrBadMASAURL, s)
	}
	var u *url.URL
	if !strings.Contains(s, "/") {
		u = &url.URL{Scheme: "https", Host: s, Path: WellKnownBRSKI}
	} else {
		var err error
		u, err = url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadMASAURL, err)
		}
		if u.Scheme == "" || u.Opaque != "" || u.Host == "" {
			return nil, fmt.Errorf("%w: %q is neither an authority nor an absolute URI with a host", ErrBadMASAURL, s)
		}
		// RFC 8995 §2.3.2: the registrar uses HTTPS whatever the scheme.
		u.Scheme = "https"
		u.RawPath = ""
		// Trailing slashes are dropped (all of them, so that parsing the
		// result again gives the same URL).
		switch p := strings.TrimRight(u.Path, "/"); p {
		case "":
			u.Path = WellKnownBRSKI
		default:
			u.Path = p
		}
		for i := 0; i < len(u.Path); i++ {
			if c := u.Path[i]; c <= 0x20 || c >= 0x7f {
				return nil, fmt.Errorf("%w: path holds octet %#02x once decoded", ErrBadMASAURL, c)
			}
		}
		// Only paths that need no escaping: the URL then prints exactly as
		// it was given, and parsing that text again yields the same URL.
		if (&url.URL{Path: u.Path}).EscapedPath() != u.Path {
			return nil, fmt.Errorf("%w: path %q holds characters that need escaping", ErrBadMASAURL, u.Path)
		}
		if strings.Contains(u.Path, "//") || strings.Contains(u.Path, "/../") || strings.HasSuffix(u.Path, "/..") || strings.Contains(u.Path, "/./") || strings.HasSuffix(u.Path, "/.") {
			return nil, fmt.Errorf("%w: path %q is not normalised", ErrBadMASAURL, u.Path)
		}
	}
	if err := checkAuthority(u); err != nil {
		return nil, err
	}
	u.ForceQuery = false
	u.RawQuery = ""
	u.Fragment = ""
	return u, nil
}

func checkAuthority(u *url.URL) error {
	if u.User != nil {
		return fmt.Errorf("%w: userinfo is not allowed", ErrBadMASAURL)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("%w: no host in %q", ErrBadMASAURL, u.Host)
	}
	if port := u.Port(); port != "" || strings.HasSuffix(u.Host, ":") {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || (len(port) > 1 && port[0] == '0') {
			return fmt.Errorf("%w: bad port in %q", ErrBadMASAURL, u.Host)
		}
	}
	switch {
	case strings.HasPrefix(u.Host, "["):
		ip := net.ParseIP(host)
		if ip == nil || ip.To4() != nil && !strings.Contains(host, ":") {
			return fmt.Errorf("%w: bad IPv6 literal in %q", ErrBadMASAURL, u.Host)
		}
	case net.ParseIP(host) != nil:
		if strings.Contains(host, ":") {
			return fmt.Errorf("%w: IPv6 literal must be bracketed in %q", ErrBadMASAURL, u.Host)
		}
	case !validHostname(host):
		return fmt.Errorf("%w: host %q is not a valid hostname", ErrBadMASAURL, host)
	}
	return nil
}

// IDevIDIssuer returns the idevid-issuer value for an IDevID
// (draft-ietf-anima-rfc8366bis, which makes it MUST in the registrar
// voucher-request):
//
//   - If the IDevID has an AuthorityKeyIdentifier extension, its extnValue:
//     the OCTET STRING TLV wrapping the AKI SEQUENCE (octet-string), the
//     SEQUENCE itself (sequence), or the keyIdentifier octets (key-id; an
//     AKI without a keyIdentifier is refused in this encoding).
//   - Otherwise the same format built from a 20-octet key identifier that is
//     the SHA-1 hash of the IDevID's own subjectPublicKey bits (RFC 5280
//     §4.2.1.2 method 1). The draft says so in those words; it names the
//     pledge's key, not the issuer's, which the issuer's key would be more
//     natural for, but we follow the text: the MASA can only reproduce what
//     the text says. The RFC 8995 example IDevID takes this path.
func IDevIDIssuer(cert *x509.Certificate, enc IssuerEncoding) ([]byte, error) {
	if cert == nil {
		return nil, fmt.Errorf("%w: no certificate", ErrBadIDevIDIssuer)
	}
	if enc == "" {
		enc = IssuerEncodingOctetString
	}
	if !enc.IsValid() {
		return nil, fmt.Errorf("%w: unknown encoding %q", ErrBadIDevIDIssuer, enc)
	}
	var seq []byte
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(oidAuthorityKeyID) {
			seq = ext.Value
			break
		}
	}
	var keyID []byte
	if seq == nil {
		var err error
		keyID, err = keyIDFromSPKI(cert.RawSubjectPublicKeyInfo)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadIDevIDIssuer, err)
		}
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(keyID) })
		})
		seq = b.BytesOrPanic()
	} else {
		keyID = cert.AuthorityKeyId
	}
	switch enc {
	case IssuerEncodingKeyID:
		if len(keyID) == 0 {
			return nil, fmt.Errorf("%w: the authority key identifier has no keyIdentifier", ErrBadIDevIDIssuer)
		}
		return append([]byte(nil), keyID...), nil
	case IssuerEncodingSequence:
		return append([]byte(nil), seq...), nil
	default:
		var b cryptobyte.Builder
		b.AddASN1OctetString(seq)
		return b.BytesOrPanic(), nil
	}
}
