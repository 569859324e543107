package pki_test

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
)

// rollover is one rollover of a root-only domain CA, with an LDevID issued
// under each key.
type rollover struct {
	links            pki.Links
	oldCA, newCA     *pki.CA
	oldLeaf, newLeaf *x509.Certificate
}

func newRollover(t *testing.T) rollover {
	t.Helper()
	fc := pkitest.NewClock()
	old := pkitest.NewCA(t, pkitest.Name("Domain CA"), pkitest.Clock(fc))
	oldIss := old.NewIssuer(t, pki.IssuerConfig{}, pkitest.NewLinter(t))
	oldLeaf := issue(t, oldIss, pkitest.NewKey(t).Public(), device("SN-OLD"))

	fc.Add(30 * 24 * time.Hour)
	newKey := pkitest.NewKey(t)
	nwn, err := pki.NewWithNew(fc, old.Root(), pki.RolloverConfig{}, newKey)
	if err != nil {
		t.Fatal(err)
	}
	nwo, err := pki.NewWithOld(old.PKI(), nwn)
	if err != nil {
		t.Fatal(err)
	}
	newCA, err := pki.LoadCA([]*x509.Certificate{nwn}, newKey)
	if err != nil {
		t.Fatal(err)
	}
	own, err := pki.OldWithNew(newCA, old.Root())
	if err != nil {
		t.Fatal(err)
	}
	newIss, err := oldIss.WithCA(newCA)
	if err != nil {
		t.Fatal(err)
	}
	newLeaf := issue(t, newIss, pkitest.NewKey(t).Public(), device("SN-NEW"))
	return rollover{
		links: pki.Links{OldWithOld: old.Root(), NewWithNew: nwn, NewWithOld: nwo, OldWithNew: own},
		oldCA: old.PKI(), newCA: newCA, oldLeaf: oldLeaf, newLeaf: newLeaf,
	}
}

func TestRollover_Profile(t *testing.T) {
	t.Parallel()
	r := newRollover(t)
	l := r.links
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*x509.Certificate{"NewWithNew": l.NewWithNew, "NewWithOld": l.NewWithOld, "OldWithNew": l.OldWithNew} {
		pkitest.Lint(t, c)
		if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != -1 || c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
			t.Errorf("%s: CA %v pathlen %d KU %v", name, c.IsCA, c.MaxPathLen, c.KeyUsage)
		}
	}
	if got, want := l.NewWithNew.Subject.CommonName, "Domain CA G2"; got != want {
		t.Errorf("new CN = %q, want %q", got, want)
	}
	// 4210bis validity rules.
	if !l.NewWithOld.NotBefore.Equal(l.NewWithNew.NotBefore) || l.NewWithOld.NotAfter.After(l.OldWithOld.NotAfter) {
		t.Errorf("NewWithOld validity %s–%s", l.NewWithOld.NotBefore, l.NewWithOld.NotAfter)
	}
	if !l.OldWithNew.NotAfter.Equal(l.OldWithOld.NotAfter) || l.OldWithNew.NotBefore.Before(l.NewWithNew.NotBefore) {
		t.Errorf("OldWithNew validity %s–%s", l.OldWithNew.NotBefore, l.OldWithNew.NotAfter)
	}
	// Key identifiers chain: each link's AKI is its signer's SKI.
	if !bytes.Equal(l.NewWithOld.SubjectKeyId, l.NewWithNew.SubjectKeyId) || !bytes.Equal(l.NewWithOld.AuthorityKeyId, l.OldWithOld.SubjectKeyId) {
		t.Error("NewWithOld key identifiers")
	}
	if !bytes.Equal(l.OldWithNew.SubjectKeyId, l.OldWithOld.SubjectKeyId) || !bytes.Equal(l.OldWithNew.AuthorityKeyId, l.NewWithNew.SubjectKeyId) {
		t.Error("OldWithNew key identifiers")
	}
	if !bytes.Equal(r.newLeaf.AuthorityKeyId, l.NewWithNew.SubjectKeyId) {
		t.Error("new LDevID AKI is not the new key's SKI")
	}
}

// TestRollover_CrossVerify is reliability R2 with crypto/x509 and, when
// installed, openssl verify: old LDevIDs verify with the old root alone and
// with the new root + OldWithNew; new ones with the new root alone and with
// the old root + NewWithOld.
func TestRollover_CrossVerify(t *testing.T) {
	t.Parallel()
	r := newRollover(t)
	l := r.links
	at := r.newLeaf.NotBefore.Add(time.Hour)
	cases := []struct {
		name  string
		leaf  *x509.Certificate
		root  *x509.Certificate
		inter []*x509.Certificate
	}{
		{"old-ldevid/old-root", r.oldLeaf, l.OldWithOld, nil},
		{"old-ldevid/new-root+OldWithNew", r.oldLeaf, l.NewWithNew, []*x509.Certificate{l.OldWithNew}},
		{"new-ldevid/new-root", r.newLeaf, l.NewWithNew, nil},
		{"new-ldevid/old-root+NewWithOld", r.newLeaf, l.OldWithOld, []*x509.Certificate{l.NewWithOld}},
		// Both links offered, as /cacerts does: path building picks.
		{"old-ldevid/new-root+all", r.oldLeaf, l.NewWithNew, []*x509.Certificate{l.NewWithOld, l.OldWithNew, l.OldWithOld}},
		{"new-ldevid/old-root+all", r.newLeaf, l.OldWithOld, []*x509.Certificate{l.NewWithOld, l.OldWithNew, l.NewWithNew}},
	}
	openssl, _ := exec.LookPath("openssl")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			roots, inter := x509.NewCertPool(), x509.NewCertPool()
			roots.AddCert(tc.root)
			for _, c := range tc.inter {
				inter.AddCert(c)
			}
			opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
			if _, err := tc.leaf.Verify(opts); err != nil {
				t.Fatalf("crypto/x509: %v", err)
			}
			if openssl == "" {
				t.Log("openssl not installed; crypto/x509 only")
				return
			}
			dir := t.TempDir()
			write := func(name string, certs ...*x509.Certificate) string {
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, pkitest.CertPEM(certs...), 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			}
			args := []string{"verify", "-x509_strict", "-attime", strconv.FormatInt(at.Unix(), 10), "-CAfile", write("root.pem", tc.root)}
			if len(tc.inter) > 0 {
				args = append(args, "-untrusted", write("inter.pem", tc.inter...))
			}
			args = append(args, write("leaf.pem", tc.leaf))
			out, err := exec.CommandContext(t.Context(), openssl, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("openssl %v: %v\n%s", args, err, out)
			}
		})
	}
	// And the negative: without the link, the other root does not verify.
	roots := x509.NewCertPool()
	roots.AddCert(l.NewWithNew)
	if _, err := r.oldLeaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		t.Error("old LDevID verified with the new root and no link certificate")
	}
}

func TestRollover_Refusals(t *testing.T) {
	t.Parallel()
	fc := pkitest.NewClock()
	old := pkitest.NewCA(t, pkitest.Name("Domain CA"), pkitest.Clock(fc))
	if _, err := pki.NewWithNew(fc, old.Root(), pki.RolloverConfig{}, old.Signer); !errors.Is(err, pki.ErrBadCA) {
		t.Errorf("same key: %v, want ErrBadCA", err)
	}
	inter := pkitest.NewCA(t, pkitest.Intermediate(), pkitest.Clock(fc))
	if _, err := pki.NewWithNew(fc, inter.Cert, pki.RolloverConfig{}, pkitest.NewKey(t)); !errors.Is(err, pki.ErrBadCA) {
		t.Errorf("intermediate as old root: %v, want ErrBadCA", err)
	}
	fc.Add(11 * 365 * 24 * time.Hour)
	if _, err := pki.NewWithNew(fc, old.Root(), pki.RolloverConfig{}, pkitest.NewKey(t)); !errors.Is(err, pki.ErrBadCA) {
		t.Errorf("expired old root: %v, want ErrBadCA", err)
	}
	// A swapped link fails Check.
	r := newRollover(t)
	bad := r.links
	bad.NewWithOld, bad.OldWithNew = bad.OldWithNew, bad.NewWithOld
	if err := bad.Check(); !errors.Is(err, pki.ErrBadCA) {
		t.Errorf("swapped links: %v, want ErrBadCA", err)
	}
	if _, err := pki.NewWithNew(fc, old.Root(), pki.RolloverConfig{Subject: pkix.Name{CommonName: "x"}, Validity: pki.MaxCAValidity + time.Hour}, pkitest.NewKey(t)); err == nil {
		t.Error("validity beyond MaxCAValidity accepted")
	}
}

func TestNextGenerationName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"Domain CA": "Domain CA G2", "Domain CA G2": "Domain CA G3", "CA G9": "CA G10", "G2": "G2 G2"} {
		if got := pki.NextGenerationName(in); got != want {
			t.Errorf("NextGenerationName(%q) = %q, want %q", in, got, want)
		}
	}
}
