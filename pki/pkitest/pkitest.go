// Package pkitest generates PKI for tests: CAs, IDevIDs, server and
// registrar certificates, TLS servers and clients over loopback, and a lint
// assertion. It is imported only from _test.go files (depguard enforces it).
//
// Everything is ECDSA P-256 (fast) and takes its time from a clock: the
// Clock option, or by default a fake clock pinned to the project's fixed test
// date, TestTime (2030-01-02T03:04:05Z), so validity windows are
// deterministic. TLS servers and clients built here verify certificates at
// that same clock's time.
package pkitest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jmhodges/clock"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pki/lint"
)

// TestTime is the project's fixed test date.
var TestTime = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// NoExpiry is the 802.1AR "no well-defined expiration" notAfter,
// 99991231235959Z (RFC 5280 §4.1.2.5).
var NoExpiry = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// NewClock returns a fake clock set to TestTime.
func NewClock() clock.FakeClock {
	fc := clock.NewFake()
	fc.Set(TestTime)
	return fc
}

// Option configures the constructors of this package. Each option says which
// constructors honour it; the others ignore it.
type Option func(*options)

type options struct {
	name         string
	clk          clock.Clock
	validity     time.Duration
	intermediate bool
	noExpiry     bool
	expired      bool
	noAKI        bool
	noSerial     bool
	key          crypto.Signer
	// nonConforming, when set, is why the certificate is not linted.
	nonConforming string
}

func collect(opts []Option) options {
	var o options
	for _, f := range opts {
		f(&o)
	}
	if o.clk == nil {
		o.clk = NewClock()
	}
	return o
}

// Name sets the CA's common name (NewCA) or the subject CN (NewIDevID,
// NewRACert).
func Name(cn string) Option { return func(o *options) { o.name = cn } }

// Clock sets the clock (all constructors, TLSServer and TLSClient).
func Clock(c clock.Clock) Option { return func(o *options) { o.clk = c } }

// Validity sets the certificate lifetime (NewCA: default 10 years;
// NewIDevID: default 10 years; Issue: default 90 days).
func Validity(d time.Duration) Option { return func(o *options) { o.validity = d } }

// Intermediate makes NewCA create a root and an issuing intermediate.
func Intermediate() Option { return func(o *options) { o.intermediate = true } }

// WithNoExpiry gives an IDevID the 802.1AR notAfter 99991231235959Z.
func WithNoExpiry() Option { return func(o *options) { o.noExpiry = true } }

// Expired makes an IDevID that expired one day before the clock's time.
func Expired() Option { return func(o *options) { o.expired = true } }

// NoAKI leaves the authority key identifier off an IDevID (as the RFC 8995
// example IDevID does).
func NoAKI() Option { return func(o *options) { o.noAKI = true } }

// NoSerialNumber leaves the X.520 serialNumber out of an IDevID subject (the
// serial then appears only as the CN).
func NoSerialNumber() Option { return func(o *options) { o.noSerial = true } }

// Key uses the given key instead of a fresh P-256 key (NewIDevID,
// NewRACert).
func Key(k crypto.Signer) Option { return func(o *options) { o.key = k } }

// NonConforming marks a certificate a test mints on purpose to break the
// profile (an over-long serialNumber for an attack row, say), so NewIDevID
// does not lint it. reason says why; it must not be empty.
func NonConforming(reason string) Option {
	return func(o *options) { o.nonConforming = reason }
}

// CA is a generated CA.
type CA struct {
	// Cert is the issuing certificate (the intermediate, if any).
	Cert *x509.Certificate
	// Signer is the issuing key.
	Signer crypto.Signer
	// Chain is Cert up to the root.
	Chain []*x509.Certificate
	// Clock is the clock the CA issues with.
	Clock clock.Clock

	pki *pki.CA
}

// NewCA generates a CA (options: Name, Clock, Validity, Intermediate) with
// pki.NewRootCA, so its certificates are exactly what production creates.
func NewCA(t testing.TB, opts ...Option) *CA {
	t.Helper()
	o := collect(opts)
	if o.name == "" {
		o.name = "Gatehouse Test CA"
	}
	cfg := pki.CAConfig{Subject: pkix.Name{CommonName: o.name, Organization: []string{"Gatehouse Test"}}, Validity: o.validity}
	var inter crypto.Signer
	if o.intermediate {
		cfg.Intermediate = &pkix.Name{CommonName: o.name + " Issuing", Organization: []string{"Gatehouse Test"}}
		inter = mustKey(t)
	}
	ca, err := pki.NewRootCA(o.clk, cfg, mustKey(t), inter)
	if err != nil {
		t.Fatalf("pkitest: new ca: %v", err)
	}
	for _, c := range ca.Chain {
		lintMinted(t, c)
	}
	return &CA{Cert: ca.Cert, Signer: ca.Signer, Chain: ca.Chain, Clock: o.clk, pki: ca}
}

// SubCA issues a CA certificate named name under ca and returns that CA,
// for chains deeper than Intermediate makes.
func (ca *CA) SubCA(t testing.TB, name string) *CA {
	t.Helper()
	key := mustKey(t)
	cert := ca.Issue(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Gatehouse Test"}},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		NotAfter:              ca.Cert.NotAfter,
	}, key.Public())
	p, err := pki.LoadCA(append([]*x509.Certificate{cert}, ca.Chain...), key)
	if err != nil {
		t.Fatalf("pkitest: sub ca: %v", err)
	}
	return &CA{Cert: cert, Signer: key, Chain: p.Chain, Clock: ca.Clock, pki: p}
}

// PKI returns the CA as a *pki.CA, for building a pki.Issuer.
func (ca *CA) PKI() *pki.CA { return ca.pki }

// Root returns the root certificate.
func (ca *CA) Root() *x509.Certificate { return ca.Chain[len(ca.Chain)-1] }

// Pool returns a pool with the root.
func (ca *CA) Pool() *x509.CertPool { return ca.pki.Pool() }

// Intermediates returns a pool with the chain's non-root certificates.
func (ca *CA) Intermediates() *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range ca.Chain[:len(ca.Chain)-1] {
		p.AddCert(c)
	}
	return p
}

// CertPEM returns the chain (issuing certificate first) as PEM.
func (ca *CA) CertPEM() []byte { return CertPEM(ca.Chain...) }

// NewIssuer returns a pki.Issuer for this CA with the given configuration
// (defaults applied), the CA's clock and, unless linter is nil, a linter.
func (ca *CA) NewIssuer(t testing.TB, cfg pki.IssuerConfig, linter pki.Linter) *pki.Issuer {
	t.Helper()
	iss, err := pki.NewIssuer(cfg.WithDefaults(), pki.IssuerDeps{Clock: ca.Clock, CA: ca.pki, Linter: linter})
	if err != nil {
		t.Fatalf("pkitest: new issuer: %v", err)
	}
	return iss
}

// Issue signs tmpl for pub. Unset fields are filled in: a pki.NewSerial
// serial, NotBefore = clock − 1 min, NotAfter = NotBefore + 90 days (capped
// at the CA's NotAfter), the SKI (pki.SubjectKeyID) and the AKI. The
// certificate must pass Lint: every certificate a test mints passes zlint.
func (ca *CA) Issue(t testing.TB, tmpl *x509.Certificate, pub crypto.PublicKey) *x509.Certificate {
	t.Helper()
	c := *tmpl
	if c.SerialNumber == nil {
		c.SerialNumber = pki.NewSerial()
	}
	if c.NotBefore.IsZero() {
		c.NotBefore = ca.Clock.Now().UTC().Truncate(time.Second).Add(-pki.DefaultBackdate)
	}
	if c.NotAfter.IsZero() {
		c.NotAfter = c.NotBefore.Add(pki.DefaultLDevIDValidity)
		if c.NotAfter.After(ca.Cert.NotAfter) {
			c.NotAfter = ca.Cert.NotAfter
		}
	}
	if c.SubjectKeyId == nil {
		ski, err := pki.SubjectKeyID(pub)
		if err != nil {
			t.Fatalf("pkitest: issue: %v", err)
		}
		c.SubjectKeyId = ski
	}
	if c.AuthorityKeyId == nil {
		c.AuthorityKeyId = ca.Cert.SubjectKeyId
	}
	der, err := x509.CreateCertificate(rand.Reader, &c, ca.Cert, pub, ca.Signer)
	if err != nil {
		t.Fatalf("pkitest: issue: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("pkitest: issue: parse: %v", err)
	}
	lintMinted(t, cert)
	return cert
}

// Leaf is an end-entity certificate with its key.
type Leaf struct {
	// Cert is the certificate.
	Cert *x509.Certificate
	// Key is its private key.
	Key crypto.Signer
	// Chain is Cert followed by the issuing CA's non-root certificates.
	Chain []*x509.Certificate
	// TLS is the certificate, chain and key for crypto/tls.
	TLS tls.Certificate
}

// CertPEM returns the leaf and its chain as PEM.
func (l *Leaf) CertPEM() []byte { return CertPEM(l.Chain...) }

// KeyPEM returns the leaf's key as PKCS#8 PEM.
func (l *Leaf) KeyPEM(t testing.TB) []byte { t.Helper(); return KeyPEM(t, l.Key) }

func newLeaf(ca *CA, cert *x509.Certificate, key crypto.Signer) *Leaf {
	chain := append([]*x509.Certificate{cert}, ca.Chain[:len(ca.Chain)-1]...)
	tc := tls.Certificate{PrivateKey: key, Leaf: cert}
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return &Leaf{Cert: cert, Key: key, Chain: chain, TLS: tc}
}

// NewIDevID issues an 802.1AR-style IDevID from mfg: subject CN (Name, or
// "Pledge <serial>") and X.520 serialNumber = serial, no EKU, keyUsage
// digitalSignature, and, if masaURL is not empty, the id-pe-masa-url
// extension holding masaURL verbatim as an IA5String (an authority such as
// "masa.example.com:9443" or a full URI). Options: Clock, Validity,
// WithNoExpiry, Expired, NoAKI, NoSerialNumber, Name, Key, NonConforming.
// The IDevID is linted (IDevID allowlist) unless marked NonConforming.
func NewIDevID(t testing.TB, mfg *CA, serial, masaURL string, opts ...Option) *Leaf {
	t.Helper()
	o := collect(append([]Option{Clock(mfg.Clock)}, opts...))
	key := o.key
	if key == nil {
		key = mustKey(t)
	}
	cn := o.name
	if cn == "" {
		cn = "Pledge " + serial
	}
	subject := pkix.Name{CommonName: cn}
	if !o.noSerial {
		subject.SerialNumber = serial
	}
	now := o.clk.Now().UTC().Truncate(time.Second)
	validity := o.validity
	if validity == 0 {
		validity = 10 * 365 * 24 * time.Hour
	}
	notBefore, notAfter := now.Add(-time.Hour), now.Add(validity)
	switch {
	case o.noExpiry:
		notAfter = NoExpiry
	case o.expired:
		notBefore, notAfter = now.Add(-2*365*24*time.Hour), now.Add(-24*time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          pki.NewSerial(),
		Subject:               subject,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	if masaURL != "" {
		v, err := asn1.MarshalWithParams(masaURL, "ia5")
		if err != nil {
			t.Fatalf("pkitest: masa url %q: %v", masaURL, err)
		}
		tmpl.ExtraExtensions = []pkix.Extension{{Id: pki.OIDMASAURL, Value: v}}
	}
	ski, err := pki.SubjectKeyID(key.Public())
	if err != nil {
		t.Fatalf("pkitest: idevid: %v", err)
	}
	tmpl.SubjectKeyId = ski
	parent := *mfg.Cert
	if o.noAKI {
		parent.SubjectKeyId = nil
	} else {
		tmpl.AuthorityKeyId = mfg.Cert.SubjectKeyId
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, &parent, key.Public(), mfg.Signer)
	if err != nil {
		t.Fatalf("pkitest: idevid: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("pkitest: idevid: parse: %v", err)
	}
	if o.nonConforming == "" {
		lintWith(t, cert, fastIDevIDLinter)
	}
	return newLeaf(mfg, cert, key)
}

// NewServerCert issues a TLS server certificate (serverAuth, digitalSignature)
// for dnsNames (default "localhost") plus 127.0.0.1 and ::1, with a fresh
// P-256 key.
func NewServerCert(t testing.TB, ca *CA, dnsNames ...string) *Leaf {
	t.Helper()
	key := mustKey(t)
	if len(dnsNames) == 0 {
		dnsNames = []string{"localhost"}
	}
	cert := ca.Issue(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: dnsNames[0]},
		DNSNames:              dnsNames,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}, key.Public())
	return newLeaf(ca, cert, key)
}

// NewRACert issues a registrar (RA) certificate through pki.Issuer.PrepareRA
// (cmcRA + serverAuth + clientAuth) for localhost, 127.0.0.1, ::1 and
// dnsNames. Options: Name (subject CN, default "Gatehouse Test Registrar"),
// Key.
func NewRACert(t testing.TB, ca *CA, dnsNames []string, opts ...Option) *Leaf {
	t.Helper()
	o := collect(opts)
	key := o.key
	if key == nil {
		key = mustKey(t)
	}
	cn := o.name
	if cn == "" {
		cn = "Gatehouse Test Registrar"
	}
	iss := ca.NewIssuer(t, pki.IssuerConfig{}, nil)
	p, err := iss.PrepareRA(pki.RARequest{
		PublicKey:   key.Public(),
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    append([]string{"localhost"}, dnsNames...),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	})
	if err != nil {
		t.Fatalf("pkitest: ra cert: %v", err)
	}
	cert, err := iss.Sign(t.Context(), p)
	if err != nil {
		t.Fatalf("pkitest: ra cert: %v", err)
	}
	lintMinted(t, cert)
	return newLeaf(ca, cert, key)
}

// TLSServer starts an httptest TLS server for handler with serverCert,
// TLS 1.2 or later, requesting a client certificate (verified against
// clientCAs when given, otherwise any certificate is accepted for the
// handler to inspect, as in BRSKI's provisional TLS), certificate times
// checked at the Clock option's time (default TestTime). It is closed by
// t.Cleanup.
func TLSServer(t testing.TB, handler http.Handler, serverCert tls.Certificate, clientCAs *x509.CertPool, opts ...Option) *httptest.Server {
	t.Helper()
	o := collect(opts)
	srv := httptest.NewUnstartedServer(handler)
	srv.TLS = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequestClientCert,
		Time:         o.clk.Now,
	}
	if clientCAs != nil {
		srv.TLS.ClientAuth = tls.VerifyClientCertIfGiven
		srv.TLS.ClientCAs = clientCAs
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// TLSClient returns an HTTP client that trusts roots, presents clientCert
// (if not nil), uses TLS 1.2 or later and checks certificates at the Clock
// option's time (default TestTime).
func TLSClient(t testing.TB, roots *x509.CertPool, clientCert *tls.Certificate, opts ...Option) *http.Client {
	t.Helper()
	o := collect(opts)
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, Time: o.clk.Now}
	if clientCert != nil {
		cfg.Certificates = []tls.Certificate{*clientCert}
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// Lint fails t if zlint (pki/lint, default allowlist) reports any finding on
// cert.
func Lint(t testing.TB, cert *x509.Certificate) {
	t.Helper()
	lintWith(t, cert, defaultLinter)
}

// LintIDevID is Lint with lint.IDevIDAllowlist added, for 802.1AR IDevID
// test certificates (for example the 99991231235959Z notAfter).
func LintIDevID(t testing.TB, cert *x509.Certificate) {
	t.Helper()
	lintWith(t, cert, idevidLinter)
}

// The linters are built once and shared (Linter is read-only). Every
// certificate pkitest mints is linted as it is minted, with the fast set:
// zlint without lint.ExpensiveLints, two lints that cannot fire on these
// certificates (a Web PKI issuer list; a brute-force search for tiny ECDSA
// keys, where test keys come from crypto/rand) and that would otherwise
// cost the suite about ten times its run time under -race. Lint and
// LintIDevID, which the issuance tests call, run the full set.
var (
	defaultLinter    = sync.OnceValues(func() (*lint.Linter, error) { return lint.New(nil) })
	idevidLinter     = sync.OnceValues(func() (*lint.Linter, error) { return lint.New(lint.IDevIDAllowlist()) })
	fastLinter       = sync.OnceValues(func() (*lint.Linter, error) { return lint.NewMode(lint.ModeFast, nil) })
	fastIDevIDLinter = sync.OnceValues(func() (*lint.Linter, error) {
		return lint.NewMode(lint.ModeFast, lint.IDevIDAllowlist())
	})
)

// lintMinted lints a certificate pkitest has just minted.
func lintMinted(t testing.TB, cert *x509.Certificate) {
	t.Helper()
	lintWith(t, cert, fastLinter)
}

func lintWith(t testing.TB, cert *x509.Certificate, linter func() (*lint.Linter, error)) {
	t.Helper()
	l, err := linter()
	if err != nil {
		t.Fatalf("pkitest: linter: %v", err)
	}
	if err := l.Lint(cert.Raw); err != nil {
		t.Errorf("lint %s: %v", cert.Subject, err)
	}
}

// NewLinter returns the zlint linter with the default allowlist.
func NewLinter(t testing.TB) *lint.Linter {
	t.Helper()
	l, err := lint.New(nil)
	if err != nil {
		t.Fatalf("pkitest: linter: %v", err)
	}
	return l
}

// CertPEM encodes certificates as concatenated PEM blocks.
func CertPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// KeyPEM encodes a private key as PKCS#8 PEM.
func KeyPEM(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	b, err := pki.MarshalKeyPEM(key)
	if err != nil {
		t.Fatalf("pkitest: key pem: %v", err)
	}
	return b
}

// NewKey returns a fresh P-256 key.
func NewKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := pki.GenerateKey()
	if err != nil {
		t.Fatalf("pkitest: key: %v", err)
	}
	return k.(*ecdsa.PrivateKey)
}

func mustKey(t testing.TB) crypto.Signer {
	t.Helper()
	return NewKey(t)
}

// ChallengePassword returns the challengePassword attribute of a CSR
// (crypto/x509 does not expose it) and the ASN.1 tag of its value, or "" and
// 0 when there is none. It reads the request with cryptobyte, independently
// of the est package, so tests can check what est writes and reads.
func ChallengePassword(t testing.TB, csr *x509.CertificateRequest) (string, cbasn1.Tag) {
	t.Helper()
	in := cryptobyte.String(csr.RawTBSCertificateRequest)
	var tbs, attrs cryptobyte.String
	var version int64
	if !in.ReadASN1(&tbs, cbasn1.SEQUENCE) || !tbs.ReadASN1Integer(&version) ||
		!tbs.SkipASN1(cbasn1.SEQUENCE) || !tbs.SkipASN1(cbasn1.SEQUENCE) ||
		!tbs.ReadASN1(&attrs, cbasn1.Tag(0).ContextSpecific().Constructed()) {
		t.Fatal("malformed CertificationRequestInfo")
	}
	for !attrs.Empty() {
		var attr, set, val cryptobyte.String
		var typ asn1.ObjectIdentifier
		var tag cbasn1.Tag
		if !attrs.ReadASN1(&attr, cbasn1.SEQUENCE) || !attr.ReadASN1ObjectIdentifier(&typ) || !attr.ReadASN1(&set, cbasn1.SET) {
			t.Fatal("malformed attribute")
		}
		if typ.Equal(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}) {
			if !set.ReadAnyASN1(&val, &tag) || !set.Empty() {
				t.Fatal("malformed challengePassword")
			}
			return string(val), tag
		}
	}
	return "", 0
}

// HandCSR builds a PKCS#10 request byte by byte, for CSRs crypto/x509
// refuses to write (MD5 signatures, DSA keys): version 0, the DER subject
// rawSubject, the DER SubjectPublicKeyInfo spki, no attributes, then sign's
// signature over the CertificationRequestInfo under sigAlg (with a NULL
// parameter when nullParam, as RSA algorithms have).
func HandCSR(t testing.TB, rawSubject, spki []byte, sigAlg asn1.ObjectIdentifier, nullParam bool, sign func(cri []byte) []byte) []byte {
	t.Helper()
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(0)
		b.AddBytes(rawSubject)
		b.AddBytes(spki)
		b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(*cryptobyte.Builder) {})
	})
	cri, err := b.Bytes()
	if err != nil {
		t.Fatalf("pkitest: csr: %v", err)
	}
	var out cryptobyte.Builder
	out.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(cri)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(sigAlg)
			if nullParam {
				b.AddASN1NULL()
			}
		})
		b.AddASN1BitString(sign(cri))
	})
	der, err := out.Bytes()
	if err != nil {
		t.Fatalf("pkitest: csr: %v", err)
	}
	return der
}
