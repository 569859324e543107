package lab

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/jmhodges/clock"

	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pki/lint"
)

// Names of the lab.
const (
	// ManufacturerName is the lab manufacturer's name in the registrar's
	// configuration, logs and audit trail.
	ManufacturerName = "gatehouse-lab"
	// PledgeCount is how many pledge identities a lab holds.
	PledgeCount = 10
	// manifestVersion is the version of lab.json.
	manifestVersion = 1
)

// NoExpiry is the IEEE 802.1AR IDevID notAfter, 99991231235959Z (RFC 5280
// §4.1.2.5: no well-defined expiration date).
var NoExpiry = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// Validities of the generated certificates.
const (
	caValidity      = 20 * 365 * 24 * time.Hour
	masaValidity    = 10 * 365 * 24 * time.Hour
	masaTLSValidity = pki.MaxLeafValidity
	raValidity      = pki.MaxLeafValidity
	backdate        = pki.DefaultBackdate
)

// ErrIncomplete reports a lab directory with files missing or unreadable.
var ErrIncomplete = errors.New("lab directory is incomplete")

// SerialName returns the serial number of pledge i (1-based): GH-0001 …
func SerialName(i int) string { return fmt.Sprintf("GH-%04d", i) }

// Paths are the lab's files. The names of IDevIDCA, MASA, DomainCA and the
// pledges' IDevID and Key are a contract (DESIGN.md); the others are stable
// too.
type Paths struct {
	// Dir is the data directory; Lab is Dir/lab.
	Dir, Lab string
	// Manifest is lab/lab.json: the version and the MASA address the
	// IDevIDs name.
	Manifest string
	// IDevIDCA and IDevIDCAKey are the manufacturer's IDevID CA.
	IDevIDCA, IDevIDCAKey string
	// MASA is the MASA's voucher-signing certificate chain (signing
	// certificate first, then its CA): the pledges' voucher anchor.
	// MASAKey is its key.
	MASA, MASAKey string
	// MASATLS is the MASA's HTTPS certificate chain (certificate first, then
	// its CA); MASATLSKey its key.
	MASATLS, MASATLSKey string
	// DomainCA is the current domain CA, the issuing generation's
	// certificate (rewritten by Lab.SyncDomainCA); DomainCAKey is the first
	// generation's key (later ones live under DIR/ca).
	DomainCA, DomainCAKey string
	// Registrar is the registrar's RA/TLS certificate chain (RA certificate,
	// domain CA); RegistrarKey its key.
	Registrar, RegistrarKey string
	// PledgesDir holds one directory per pledge serial.
	PledgesDir string
}

// PathsFor returns the lab's paths under dir.
func PathsFor(dir string) Paths { return layout(dir, filepath.Join(dir, "lab")) }

// layout returns the paths of a lab directory l (normally dir/lab).
func layout(dir, l string) Paths {
	m := filepath.Join(l, "manufacturer")
	d := filepath.Join(l, "domain")
	return Paths{
		Dir:          dir,
		Lab:          l,
		Manifest:     filepath.Join(l, "lab.json"),
		IDevIDCA:     filepath.Join(m, "idevid-ca.pem"),
		IDevIDCAKey:  filepath.Join(m, "idevid-ca-key.pem"),
		MASA:         filepath.Join(m, "masa.pem"),
		MASAKey:      filepath.Join(m, "masa-key.pem"),
		MASATLS:      filepath.Join(m, "masa-tls.pem"),
		MASATLSKey:   filepath.Join(m, "masa-tls-key.pem"),
		DomainCA:     filepath.Join(d, "ca.pem"),
		DomainCAKey:  filepath.Join(d, "ca-key.pem"),
		Registrar:    filepath.Join(d, "registrar.pem"),
		RegistrarKey: filepath.Join(d, "registrar-key.pem"),
		PledgesDir:   filepath.Join(l, "pledges"),
	}
}

// PledgeIDevID returns the path of a pledge's IDevID certificate.
func (p Paths) PledgeIDevID(serial string) string {
	return filepath.Join(p.PledgesDir, serial, "idevid.pem")
}

// PledgeKey returns the path of a pledge's IDevID key.
func (p Paths) PledgeKey(serial string) string {
	return filepath.Join(p.PledgesDir, serial, "key.pem")
}

// files lists every file of a complete lab, keys marked.
func (p Paths) files(serials []string) (certs, keys []string) {
	certs = []string{p.Manifest, p.IDevIDCA, p.MASA, p.MASATLS, p.DomainCA, p.Registrar}
	keys = []string{p.IDevIDCAKey, p.MASAKey, p.MASATLSKey, p.DomainCAKey, p.RegistrarKey}
	for _, s := range serials {
		certs = append(certs, p.PledgeIDevID(s))
		keys = append(keys, p.PledgeKey(s))
	}
	return certs, keys
}

// manifest is lab/lab.json.
type manifest struct {
	Version int `json:"version"`
	// MASAAuthority is the host:port the IDevIDs' MASA URL extension names.
	MASAAuthority string `json:"masaAuthority"`
	// Pledges are the pledge serial numbers.
	Pledges []string `json:"pledges"`
	// Created is when the lab was generated (RFC 3339).
	Created string `json:"created"`
}

// GenerateOptions configure Generate.
type GenerateOptions struct {
	// Clock gives every certificate's validity. Required.
	Clock clock.Clock
	// MASAAuthority is host:port of the lab MASA, written into every
	// IDevID's MASA URL extension. Required.
	MASAAuthority string
	// Hostname is added to the registrar certificate's DNS names when it is
	// a valid host name (the caller passes os.Hostname()). Optional.
	Hostname string
}

// PKI is a loaded lab: every certificate and key.
type PKI struct {
	// Paths are the files it was loaded from.
	Paths Paths
	// MASAAuthority is the host:port the IDevIDs name as their MASA.
	MASAAuthority string
	// IDevIDCA is the manufacturer's IDevID CA certificate.
	IDevIDCA *x509.Certificate
	// MASASigning is the MASA's voucher-signing identity (chain and key).
	MASASigning tls.Certificate
	// MASAAnchors is the content of masa.pem, the pledges' voucher anchors.
	MASAAnchors []*x509.Certificate
	// MASATLS is the MASA's HTTPS identity.
	MASATLS tls.Certificate
	// MASATLSRoots holds the MASA TLS CA, for the registrar's MASA client.
	MASATLSRoots []*x509.Certificate
	// DomainCA is the lab's first domain CA certificate, the one
	// DomainCAKey (ca-key.pem) signs with: ca.pem until a rollover, then
	// that generation's ca-<gen>.pem. The registrar's CA generations
	// decide which generation issues.
	DomainCA    *x509.Certificate
	DomainCAKey crypto.Signer
	// Registrar is the registrar's RA/TLS identity (chain: RA, domain CA).
	Registrar tls.Certificate
	// Pledges are the pledge identities, in serial order.
	Pledges []Pledge
}

// Pledge is one pledge identity of the lab.
type Pledge struct {
	// Serial is the IDevID's X.520 serialNumber.
	Serial string
	// IDevID is the certificate and key.
	IDevID tls.Certificate
	// CertFile and KeyFile are the files.
	CertFile, KeyFile string
}

// Exists reports whether dir already holds a lab (complete or not).
func Exists(dir string) (bool, error) {
	_, err := os.Stat(PathsFor(dir).Lab)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("lab: %w", err)
	}
}

// Generate writes a new lab PKI under dir/lab. It fails if dir/lab exists.
// Everything is written to a temporary directory in dir, synced, and renamed
// to dir/lab last.
func Generate(dir string, opts GenerateOptions) error {
	if opts.Clock == nil || opts.MASAAuthority == "" {
		return errors.New("lab: generate: clock and MASA authority are required")
	}
	if _, _, err := net.SplitHostPort(opts.MASAAuthority); err != nil {
		return fmt.Errorf("lab: generate: MASA authority %q: %w", opts.MASAAuthority, err)
	}
	if ok, err := Exists(dir); err != nil {
		return err
	} else if ok {
		return fmt.Errorf("lab: generate: %s already exists; it is never overwritten", PathsFor(dir).Lab)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("lab: generate: %w", err)
	}
	// A crash during an earlier generation leaves only its temporary
	// directory behind, never a partial dir/lab: remove it.
	if stale, err := filepath.Glob(filepath.Join(dir, ".lab-generating-*")); err == nil {
		for _, d := range stale {
			_ = os.RemoveAll(d)
		}
	}
	tmp, err := os.MkdirTemp(dir, ".lab-generating-")
	if err != nil {
		return fmt.Errorf("lab: generate: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	// Generate under tmp as if it were dir/lab.
	if err := generate(layout(dir, tmp), opts); err != nil {
		return fmt.Errorf("lab: generate: %w", err)
	}
	if err := syncDir(tmp); err != nil {
		return fmt.Errorf("lab: generate: %w", err)
	}
	if err := os.Rename(tmp, PathsFor(dir).Lab); err != nil {
		return fmt.Errorf("lab: generate: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("lab: generate: %w", err)
	}
	return nil
}

func generate(p Paths, opts GenerateOptions) error {
	clk := opts.Clock
	for _, d := range []string{filepath.Dir(p.IDevIDCA), filepath.Dir(p.DomainCA), p.PledgesDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	org := []string{"Gatehouse Lab"}
	root := func(cn string) (*pki.CA, error) {
		k, err := pki.GenerateKey()
		if err != nil {
			return nil, err
		}
		return pki.NewRootCA(clk, pki.CAConfig{Subject: pkix.Name{CommonName: cn, Organization: org}, Validity: caValidity}, k, nil)
	}

	// Manufacturer: the IDevID CA, the MASA's signing CA and its TLS CA.
	idevidCA, err := root("Gatehouse Lab Manufacturer IDevID CA")
	if err != nil {
		return err
	}
	masaCA, err := root("Gatehouse Lab Manufacturer MASA CA")
	if err != nil {
		return err
	}
	tlsCA, err := root("Gatehouse Lab Manufacturer TLS CA")
	if err != nil {
		return err
	}
	if err := writeCerts(p.IDevIDCA, idevidCA.Cert); err != nil {
		return err
	}
	if err := pki.WriteKeyFile(p.IDevIDCAKey, idevidCA.Signer); err != nil {
		return err
	}
	masaKey, err := pki.GenerateKey()
	if err != nil {
		return err
	}
	masaCert, err := issue(clk, masaCA, &x509.Certificate{
		Subject:  pkix.Name{CommonName: "Gatehouse Lab MASA", Organization: org},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}, masaKey.Public(), masaValidity)
	if err != nil {
		return fmt.Errorf("masa signing certificate: %w", err)
	}
	if err := writeCerts(p.MASA, masaCert, masaCA.Cert); err != nil {
		return err
	}
	if err := pki.WriteKeyFile(p.MASAKey, masaKey); err != nil {
		return err
	}
	masaTLSKey, err := pki.GenerateKey()
	if err != nil {
		return err
	}
	masaTLS, err := issue(clk, tlsCA, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost", Organization: org},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, masaTLSKey.Public(), masaTLSValidity)
	if err != nil {
		return fmt.Errorf("masa tls certificate: %w", err)
	}
	if err := writeCerts(p.MASATLS, masaTLS, tlsCA.Cert); err != nil {
		return err
	}
	if err := pki.WriteKeyFile(p.MASATLSKey, masaTLSKey); err != nil {
		return err
	}

	// Domain: the CA and the registrar's RA/TLS certificate.
	domain, err := root("Gatehouse Lab Domain CA")
	if err != nil {
		return err
	}
	if err := writeCerts(p.DomainCA, domain.Cert); err != nil {
		return err
	}
	if err := pki.WriteKeyFile(p.DomainCAKey, domain.Signer); err != nil {
		return err
	}
	raKey, err := pki.GenerateKey()
	if err != nil {
		return err
	}
	ra, err := issueRA(clk, domain, raKey.Public(), opts.Hostname)
	if err != nil {
		return err
	}
	if err := writeCerts(p.Registrar, ra, domain.Cert); err != nil {
		return err
	}
	if err := pki.WriteKeyFile(p.RegistrarKey, raKey); err != nil {
		return err
	}

	// Pledges.
	m := manifest{Version: manifestVersion, MASAAuthority: opts.MASAAuthority, Created: clk.Now().UTC().Format(time.RFC3339)}
	for i := 1; i <= PledgeCount; i++ {
		serial := SerialName(i)
		if err := os.MkdirAll(filepath.Join(p.PledgesDir, serial), 0o700); err != nil {
			return err
		}
		key, err := pki.GenerateKey()
		if err != nil {
			return err
		}
		cert, err := NewIDevID(clk, idevidCA, serial, opts.MASAAuthority, key.Public())
		if err != nil {
			return err
		}
		if err := writeCerts(p.PledgeIDevID(serial), cert); err != nil {
			return err
		}
		if err := pki.WriteKeyFile(p.PledgeKey(serial), key); err != nil {
			return err
		}
		m.Pledges = append(m.Pledges, serial)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(p.Manifest, append(b, '\n'), 0o644)
}

// issue signs a leaf template with ca: a fresh serial, SKI and AKI,
// basicConstraints CA:FALSE, NotBefore backdated, NotAfter capped at the
// CA's.
func issue(clk clock.Clock, ca *pki.CA, tmpl *x509.Certificate, pub crypto.PublicKey, validity time.Duration) (*x509.Certificate, error) {
	ski, err := pki.SubjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	now := clk.Now().UTC().Truncate(time.Second)
	tmpl.SerialNumber = pki.NewSerial()
	tmpl.NotBefore = now.Add(-backdate)
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = tmpl.NotBefore.Add(validity)
		if tmpl.NotAfter.After(ca.Cert.NotAfter) {
			tmpl.NotAfter = ca.Cert.NotAfter
		}
	}
	tmpl.SubjectKeyId = ski
	tmpl.AuthorityKeyId = ca.Cert.SubjectKeyId
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = false
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// NewIDevID issues an IEEE 802.1AR IDevID from the manufacturer's CA (the
// profile RFC 8995 §2.3 relays; pki's LDevID profile does not cover it):
// subject CN "Gatehouse Lab Pledge <serial>" and X.520 serialNumber
// <serial> (RFC 8995 §2.3.1), notAfter 99991231235959Z (§2.6.2), keyUsage
// digitalSignature, no extended key usage, SKI and AKI, and the
// non-critical id-pe-masa-url extension (§2.3.2) holding masaAuthority as
// a DER IA5String.
func NewIDevID(clk clock.Clock, ca *pki.CA, serial, masaAuthority string, pub crypto.PublicKey) (*x509.Certificate, error) {
	ext, err := asn1.MarshalWithParams(masaAuthority, "ia5")
	if err != nil {
		return nil, fmt.Errorf("idevid %s: masa url %q: %w", serial, masaAuthority, err)
	}
	tmpl := &x509.Certificate{
		Subject: pkix.Name{
			CommonName:   "Gatehouse Lab Pledge " + serial,
			SerialNumber: serial,
			Organization: []string{"Gatehouse Lab Manufacturer"},
		},
		NotAfter:        NoExpiry,
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtraExtensions: []pkix.Extension{{Id: pki.OIDMASAURL, Value: ext}},
	}
	cert, err := issue(clk, ca, tmpl, pub, 0)
	if err != nil {
		return nil, fmt.Errorf("idevid %s: %w", serial, err)
	}
	return cert, nil
}

// issueRA issues the registrar's RA/TLS certificate through pki.Issuer
// (cmcRA + serverAuth + clientAuth, linted before signing) for localhost,
// 127.0.0.1, ::1 and hostname when that is a valid host name.
func issueRA(clk clock.Clock, domain *pki.CA, pub crypto.PublicKey, hostname string) (*x509.Certificate, error) {
	linter, err := lint.New(nil)
	if err != nil {
		return nil, err
	}
	iss, err := pki.NewIssuer(pki.IssuerConfig{RAValidity: raValidity}.WithDefaults(), pki.IssuerDeps{Clock: clk, CA: domain, Linter: linter})
	if err != nil {
		return nil, err
	}
	req := pki.RARequest{
		PublicKey:   pub,
		Subject:     pkix.Name{CommonName: "Gatehouse Lab Registrar", Organization: []string{"Gatehouse Lab"}},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if hostname != "" && hostname != "localhost" {
		withHost := req
		withHost.DNSNames = append([]string{"localhost"}, hostname)
		if prep, err := iss.PrepareRA(withHost); err == nil {
			return iss.Sign(context.Background(), prep)
		}
		// Not a valid host name for a certificate: leave it out.
	}
	prep, err := iss.PrepareRA(req)
	if err != nil {
		return nil, fmt.Errorf("registrar certificate: %w", err)
	}
	cert, err := iss.Sign(context.Background(), prep)
	if err != nil {
		return nil, fmt.Errorf("registrar certificate: %w", err)
	}
	return cert, nil
}

func writeCerts(path string, certs ...*x509.Certificate) error {
	var b bytes.Buffer
	for _, c := range certs {
		if err := pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}); err != nil {
			return err
		}
	}
	return writeFile(path, b.Bytes(), 0o644)
}

// writeFile creates path (never overwriting) and syncs it.
func writeFile(path string, b []byte, mode fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Load reads a complete lab from dir/lab. Missing files fail with
// ErrIncomplete, naming them; key files wider than 0600 are refused.
func Load(ctx context.Context, dir string) (*PKI, error) {
	p := PathsFor(dir)
	b, err := os.ReadFile(p.Manifest)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w (move %s away to generate a new lab)", ErrIncomplete, p.Manifest, err, p.Lab)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil || m.Version != manifestVersion || len(m.Pledges) == 0 {
		return nil, fmt.Errorf("%w: %s is not a version %d lab manifest (move %s away to generate a new lab)", ErrIncomplete, p.Manifest, manifestVersion, p.Lab)
	}
	certs, keys := p.files(m.Pledges)
	var missing []string
	for _, f := range append(certs, keys...) {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: %d files missing, first %s (restore them, or move %s away to generate a new lab)", ErrIncomplete, len(missing), missing[0], p.Lab)
	}
	out := &PKI{Paths: p, MASAAuthority: m.MASAAuthority}
	one := func(path string) (*x509.Certificate, error) {
		cs, err := ReadCertificates(path)
		if err != nil {
			return nil, err
		}
		return cs[0], nil
	}
	pair := func(certFile, keyFile string) (tls.Certificate, []*x509.Certificate, error) {
		cs, err := ReadCertificates(certFile)
		if err != nil {
			return tls.Certificate{}, nil, err
		}
		k, err := pki.LoadSigner(ctx, keyFile, nil)
		if err != nil {
			return tls.Certificate{}, nil, err
		}
		kc, err := KeyPair(cs, k)
		if err != nil {
			return tls.Certificate{}, nil, fmt.Errorf("%s and %s: %w", certFile, keyFile, err)
		}
		return kc, cs, nil
	}
	if out.IDevIDCA, err = one(p.IDevIDCA); err != nil {
		return nil, err
	}
	if out.MASASigning, out.MASAAnchors, err = pair(p.MASA, p.MASAKey); err != nil {
		return nil, err
	}
	var tlsChain []*x509.Certificate
	if out.MASATLS, tlsChain, err = pair(p.MASATLS, p.MASATLSKey); err != nil {
		return nil, err
	}
	out.MASATLSRoots = tlsChain[len(tlsChain)-1:]
	if out.DomainCAKey, err = pki.LoadSigner(ctx, p.DomainCAKey, nil); err != nil {
		return nil, err
	}
	if out.DomainCA, err = firstDomainCA(p, out.DomainCAKey); err != nil {
		return nil, err
	}
	if out.Registrar, _, err = pair(p.Registrar, p.RegistrarKey); err != nil {
		return nil, err
	}
	for _, s := range m.Pledges {
		kc, _, err := pair(p.PledgeIDevID(s), p.PledgeKey(s))
		if err != nil {
			return nil, err
		}
		out.Pledges = append(out.Pledges, Pledge{Serial: s, IDevID: kc, CertFile: p.PledgeIDevID(s), KeyFile: p.PledgeKey(s)})
	}
	return out, nil
}

// KeyPair assembles a tls.Certificate from a chain (end-entity first) and
// its key, checking that they match.
func KeyPair(chain []*x509.Certificate, key crypto.Signer) (tls.Certificate, error) {
	if len(chain) == 0 {
		return tls.Certificate{}, errors.New("no certificate")
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(chain[0].PublicKey) {
		return tls.Certificate{}, fmt.Errorf("the key does not match the certificate %q", chain[0].Subject)
	}
	kc := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		kc.Certificate = append(kc.Certificate, c.Raw)
	}
	return kc, nil
}

// ReadCertificates reads every CERTIFICATE block of a PEM file (at least
// one), or one DER certificate.
func ReadCertificates(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := pki.ParseCertificates(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}
