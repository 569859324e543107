package lab

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
)

func generateLab(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	err := Generate(dir, GenerateOptions{Clock: pkitest.NewClock(), MASAAuthority: "127.0.0.1:9443", Hostname: "lab-host.example"})
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return dir
}

func TestGenerate_FilesAndModes(t *testing.T) {
	t.Parallel()
	dir := generateLab(t)
	// The names DESIGN.md makes a contract, relative to DIR.
	contract := []string{
		"lab/manufacturer/idevid-ca.pem",
		"lab/manufacturer/masa.pem",
		"lab/domain/ca.pem",
	}
	keys := []string{
		"lab/manufacturer/idevid-ca-key.pem",
		"lab/manufacturer/masa-key.pem",
		"lab/manufacturer/masa-tls-key.pem",
		"lab/domain/ca-key.pem",
		"lab/domain/registrar-key.pem",
	}
	for i := 1; i <= PledgeCount; i++ {
		s := SerialName(i)
		contract = append(contract, "lab/pledges/"+s+"/idevid.pem")
		keys = append(keys, "lab/pledges/"+s+"/key.pem")
	}
	for _, f := range append(contract, "lab/manufacturer/masa-tls.pem", "lab/domain/registrar.pem", "lab/lab.json") {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	for _, f := range keys {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %#o, want 0600", f, fi.Mode().Perm())
		}
	}
	if SerialName(1) != "GH-0001" || SerialName(10) != "GH-0010" {
		t.Fatalf("serials %s…%s", SerialName(1), SerialName(10))
	}
	// No temporary directory is left behind.
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".lab-generating-") {
			t.Errorf("temporary directory %s left behind", e.Name())
		}
	}
}

func TestGenerate_RemovesStaleTemporary(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	stale := filepath.Join(dir, ".lab-generating-123")
	if err := os.MkdirAll(filepath.Join(stale, "manufacturer"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Generate(dir, GenerateOptions{Clock: pkitest.NewClock(), MASAAuthority: "127.0.0.1:9443"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stale temporary directory: %v", err)
	}
}

func TestLoad_Certificates(t *testing.T) {
	t.Parallel()
	dir := generateLab(t)
	l, err := Load(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Pledges) != PledgeCount {
		t.Fatalf("%d pledges", len(l.Pledges))
	}
	// Domain CA and RA certificate: lint-clean, and the RA carries cmcRA,
	// serverAuth and clientAuth, chaining to the domain CA.
	pkitest.Lint(t, l.DomainCA)
	ra := l.Registrar.Leaf
	pkitest.Lint(t, ra)
	if !l.DomainCA.IsCA || l.DomainCA.Subject.CommonName != "Gatehouse Lab Domain CA" {
		t.Errorf("domain CA %v IsCA=%v", l.DomainCA.Subject, l.DomainCA.IsCA)
	}
	if !slices.Contains(ra.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(ra.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Errorf("RA EKUs %v", ra.ExtKeyUsage)
	}
	if !slices.ContainsFunc(ra.UnknownExtKeyUsage, func(o asn1.ObjectIdentifier) bool { return o.Equal(pki.OIDExtKeyUsageCMCRA) }) {
		t.Errorf("RA lacks cmcRA: %v", ra.UnknownExtKeyUsage)
	}
	if !slices.Contains(ra.DNSNames, "localhost") || !slices.Contains(ra.DNSNames, "lab-host.example") || len(ra.IPAddresses) != 2 {
		t.Errorf("RA names %v %v", ra.DNSNames, ra.IPAddresses)
	}
	if err := ra.CheckSignatureFrom(l.DomainCA); err != nil {
		t.Errorf("RA not signed by the domain CA: %v", err)
	}
	// MASA: signing chain = masa.pem, TLS names loopback.
	if len(l.MASAAnchors) != 2 || !bytes.Equal(l.MASAAnchors[0].Raw, l.MASASigning.Leaf.Raw) {
		t.Errorf("masa.pem holds %d certificates", len(l.MASAAnchors))
	}
	if err := l.MASATLS.Leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
	// IDevIDs: serial and MASA URL parse, 802.1AR notAfter, lint-clean as
	// IDevIDs, chain to the IDevID CA.
	pool := x509.NewCertPool()
	pool.AddCert(l.IDevIDCA)
	for i, p := range l.Pledges {
		c := p.IDevID.Leaf
		id, err := pki.ParseIDevID(c, pki.IDevIDOptions{})
		if err != nil {
			t.Fatalf("%s: %v", p.Serial, err)
		}
		if id.Serial != SerialName(i+1) || p.Serial != id.Serial {
			t.Errorf("serial %q, want %q", id.Serial, SerialName(i+1))
		}
		if got := id.MASAURL.String(); got != "https://127.0.0.1:9443/.well-known/brski" {
			t.Errorf("%s: MASA URL %s", p.Serial, got)
		}
		if !c.NotAfter.Equal(NoExpiry) {
			t.Errorf("%s: notAfter %s", p.Serial, c.NotAfter)
		}
		if c.KeyUsage != x509.KeyUsageDigitalSignature || len(c.ExtKeyUsage) != 0 {
			t.Errorf("%s: KU %v EKU %v", p.Serial, c.KeyUsage, c.ExtKeyUsage)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: pkitest.TestTime, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s: %v", p.Serial, err)
		}
		pkitest.LintIDevID(t, c)
	}
}

func TestGenerate_RestartReuses(t *testing.T) {
	t.Parallel()
	dir := generateLab(t)
	first, err := Load(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	// A second Generate refuses; Open-style reuse loads the same bytes.
	if err := Generate(dir, GenerateOptions{Clock: pkitest.NewClock(), MASAAuthority: "127.0.0.1:1"}); err == nil {
		t.Fatal("Generate over an existing lab succeeded")
	}
	second, err := Load(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.DomainCA.Raw, second.DomainCA.Raw) || !bytes.Equal(first.Registrar.Leaf.Raw, second.Registrar.Leaf.Raw) ||
		!bytes.Equal(first.Pledges[3].IDevID.Leaf.Raw, second.Pledges[3].IDevID.Leaf.Raw) {
		t.Fatal("reloaded lab differs")
	}
}

func TestLoad_Incomplete(t *testing.T) {
	t.Parallel()
	dir := generateLab(t)
	p := PathsFor(dir)
	if err := os.Remove(p.PledgeKey("GH-0004")); err != nil {
		t.Fatal(err)
	}
	_, err := Load(t.Context(), dir)
	if !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), filepath.Join("GH-0004", "key.pem")) {
		t.Fatalf("err = %v, want ErrIncomplete naming the missing key", err)
	}
}

func TestLoad_KeyModeRefused(t *testing.T) {
	t.Parallel()
	dir := generateLab(t)
	p := PathsFor(dir)
	if err := os.Chmod(p.DomainCAKey, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(t.Context(), dir)
	if !errors.Is(err, pki.ErrKeyFile) {
		t.Fatalf("err = %v, want pki.ErrKeyFile", err)
	}
}

func TestExists(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if ok, err := Exists(dir); ok || err != nil {
		t.Fatalf("Exists(empty) = %v, %v", ok, err)
	}
	if err := os.MkdirAll(PathsFor(dir).Lab, 0o700); err != nil {
		t.Fatal(err)
	}
	if ok, err := Exists(dir); !ok || err != nil {
		t.Fatalf("Exists = %v, %v", ok, err)
	}
	if _, err := Load(t.Context(), dir); !errors.Is(err, ErrIncomplete) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(empty lab) = %v", err)
	}
}
