package main

import (
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jmhodges/clock"
	"go.step.sm/crypto/kms/apiv1"
	"go.step.sm/crypto/kms/pkcs11"

	"github.com/gatehouse-pki/gatehouse/configs"
	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/store"
)

// TestCA_PKCS11Config: a registrar config whose domainCA.keyURI names a key
// in a PKCS#11 token (SoftHSM). `ca rollover --config` generates the new key
// in that token, and the store records pkcs11: references without module
// path or PIN.
func TestCA_PKCS11Config(t *testing.T) {
	module := pkitest.SoftHSMToken(t, "gh", "1234")
	dir := t.TempDir()
	keyURI := "pkcs11:module-path=" + module + ";token=gh;id=01;object=domain-ca?pin-value=1234"
	kms, err := pkcs11.New(t.Context(), apiv1.Options{Type: apiv1.PKCS11, URI: keyURI})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := kms.CreateKey(&apiv1.CreateKeyRequest{Name: "pkcs11:token=gh;id=01;object=domain-ca", SignatureAlgorithm: apiv1.ECDSAWithSHA256})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := kms.CreateSigner(&resp.CreateSignerRequest)
	if err != nil {
		t.Fatal(err)
	}
	fc := clock.NewFake()
	fc.Set(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	ca, err := pki.NewRootCA(fc, pki.CAConfig{Subject: pkix.Name{CommonName: "HSM Domain CA"}}, signer, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = kms.Close()
	caFile := filepath.Join(dir, "domain-ca.pem")
	if err := os.WriteFile(caFile, pkitest.CertPEM(ca.Root()), 0o600); err != nil {
		t.Fatal(err)
	}
	// The example config, with the domain CA in the token and a data dir.
	var example strings.Builder
	code, out, errOut := runCLI(t, "config", "example", "registrar")
	if code != 0 {
		t.Fatalf("config example: %s", errOut)
	}
	example.WriteString(out)
	cfgText := strings.Replace(example.String(), "dataDir: /var/lib/gatehouse", "dataDir: "+filepath.Join(dir, "data"), 1)
	cfgText = strings.Replace(cfgText, "  certFile: /etc/gatehouse/domain-ca.pem\n  keyFile: /etc/gatehouse/domain-ca-key.pem\n",
		"  certFile: "+caFile+"\n  keyURI: \""+keyURI+"\"\n", 1)
	cfgFile := filepath.Join(dir, "registrar.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := configs.LoadRegistrar(cfgFile); err != nil {
		t.Fatalf("edited example config: %v", err)
	}
	// A store the registrar created (empty generations).
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(dir, "data", registrarDBFile), store.Options{Clock: fc})
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Close()

	code, out, errOut = runCLI(t, "ca", "rollover", "--config", cfgFile)
	if code != 0 {
		t.Fatalf("ca rollover --config: exit %d\n%s%s", code, out, errOut)
	}
	db, err = store.Open(filepath.Join(dir, "data", registrarDBFile), store.Options{Clock: fc})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	gens, err := db.Generations(t.Context())
	if err != nil || len(gens) != 2 {
		t.Fatalf("generations: %d, %v", len(gens), err)
	}
	for _, g := range gens {
		if g.Previous == "" && g.KeyRef != "pkcs11:token=gh;id=01;object=domain-ca" {
			t.Errorf("first generation's reference %q", g.KeyRef)
		}
		if !strings.HasPrefix(g.KeyRef, "pkcs11:token=gh;") || strings.Contains(g.KeyRef, "pin") || strings.Contains(g.KeyRef, "module") {
			t.Errorf("generation %s reference %q: want a pkcs11: URI without module path or PIN", g.ID, g.KeyRef)
		}
	}
}
