package pki_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.step.sm/crypto/kms/apiv1"

	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
)

func ecKeyCurve224(t *testing.T) crypto.Signer {
	t.Helper()
	return ecKey(t, elliptic.P224())
}

func TestNewRootCA_Profile(t *testing.T) {
	t.Parallel()
	fc := pkitest.NewClock()
	rootKey, interKey := pkitest.NewKey(t), pkitest.NewKey(t)
	ca, err := pki.NewRootCA(fc, pki.CAConfig{Subject: pkix.Name{CommonName: "Root"}, Intermediate: &pkix.Name{CommonName: "Issuing"}}, rootKey, interKey)
	if err != nil {
		t.Fatal(err)
	}
	root, inter := ca.Root(), ca.Cert
	for _, c := range ca.Chain {
		pkitest.Lint(t, c)
		if !c.IsCA || !c.BasicConstraintsValid || c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign || len(c.ExtKeyUsage) != 0 {
			t.Errorf("%s: CA %v KU %v EKU %v", c.Subject, c.IsCA, c.KeyUsage, c.ExtKeyUsage)
		}
		if !c.NotBefore.Equal(pkitest.TestTime.Add(-time.Minute)) {
			t.Errorf("%s NotBefore %s", c.Subject, c.NotBefore)
		}
	}
	if root.MaxPathLen != -1 || inter.MaxPathLen != 0 || !inter.MaxPathLenZero {
		t.Errorf("pathLen root %d inter %d", root.MaxPathLen, inter.MaxPathLen)
	}
	if ski, _ := pki.SubjectKeyID(rootKey.Public()); string(root.SubjectKeyId) != string(ski) || string(inter.AuthorityKeyId) != string(ski) {
		t.Error("root SKI / intermediate AKI mismatch")
	}
	if len(root.AuthorityKeyId) != 0 {
		t.Error("root carries an AKI")
	}
	if _, err := pki.LoadCA(ca.Chain, interKey); err != nil {
		t.Errorf("LoadCA: %v", err)
	}
	if _, err := pki.LoadCA(ca.Chain, rootKey); !errors.Is(err, pki.ErrBadCA) {
		t.Errorf("LoadCA with the wrong key = %v, want ErrBadCA", err)
	}
	if _, err := pki.LoadCA([]*x509.Certificate{inter}, interKey); !errors.Is(err, pki.ErrBadCA) {
		t.Errorf("LoadCA without the root = %v, want ErrBadCA", err)
	}
	leaf := pkitest.NewIDevID(t, pkitest.NewCA(t), "x", "")
	if _, err := pki.LoadCA([]*x509.Certificate{leaf.Cert}, leaf.Key); !errors.Is(err, pki.ErrBadCA) {
		t.Errorf("LoadCA with a leaf = %v, want ErrBadCA", err)
	}
}

func TestCAConfig_Validate(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]pki.CAConfig{
		"no-cn":         {},
		"too-long":      {Subject: pkix.Name{CommonName: "x"}, Validity: 31 * 365 * 24 * time.Hour},
		"inter-no-cn":   {Subject: pkix.Name{CommonName: "x"}, Intermediate: &pkix.Name{}},
		"huge-backdate": {Subject: pkix.Name{CommonName: "x"}, Backdate: 2 * time.Hour},
	} {
		if err := cfg.WithDefaults().Validate(); !errors.Is(err, pki.ErrProfile) {
			t.Errorf("%s: Validate = %v, want ErrProfile", name, err)
		}
	}
	if _, err := pki.NewRootCA(pkitest.NewClock(), pki.CAConfig{Subject: pkix.Name{CommonName: "x"}}, pkitest.NewKey(t), pkitest.NewKey(t)); !errors.Is(err, pki.ErrBadCA) {
		t.Errorf("intermediate key without intermediate: %v", err)
	}
}

type fakeKMS struct{ s crypto.Signer }

func (f fakeKMS) CreateSigner(req *apiv1.CreateSignerRequest) (crypto.Signer, error) {
	if req.SigningKey != "pkcs11:token=ca;object=key" {
		return nil, errors.New("unknown key")
	}
	return f.s, nil
}

func TestLoadSigner(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := pkitest.NewKey(t)
	path := filepath.Join(dir, "ca-key.pem")
	if err := pki.WriteKeyFile(path, key); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode(), err)
	}
	if err := pki.WriteKeyFile(path, key); err == nil {
		t.Error("WriteKeyFile overwrote an existing key")
	}
	wide := filepath.Join(dir, "wide.pem")
	b, _ := pki.MarshalKeyPEM(key)
	if err := os.WriteFile(wide, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(wide, 0o640); err != nil {
		t.Fatal(err)
	}
	other := pkitest.NewKey(t)
	tests := []struct {
		name    string
		ref     string
		want    crypto.PublicKey
		wantErr bool
	}{
		{name: "path", ref: path, want: key.Public()},
		{name: "softkms-path", ref: "softkms:path=" + path, want: key.Public()},
		{name: "softkms-opaque", ref: "softkms:" + path, want: key.Public()},
		{name: "pkcs11-manager", ref: "pkcs11:token=ca;object=key", want: other.Public()},
		{name: "group-readable", ref: wide, wantErr: true},
		{name: "missing", ref: filepath.Join(dir, "nope.pem"), wantErr: true},
		{name: "unknown-scheme", ref: "tpmkms:name=x", wantErr: true},
		{name: "empty", ref: "", wantErr: true},
	}
	managers := map[string]pki.KeyManager{"pkcs11": fakeKMS{other}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := pki.LoadSigner(context.Background(), tc.ref, managers)
			if tc.wantErr {
				if err == nil {
					t.Fatal("LoadSigner succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !s.Public().(*ecdsa.PublicKey).Equal(tc.want) {
				t.Error("wrong key")
			}
		})
	}
	if _, err := pki.LoadSigner(t.Context(), wide, nil); !errors.Is(err, pki.ErrKeyFile) {
		t.Errorf("group-readable: %v, want ErrKeyFile", err)
	}
}
