package registrar_test

import (
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"

	"go.step.sm/crypto/kms/apiv1"
	"go.step.sm/crypto/kms/pkcs11"

	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/store"
)

// newSoftHSM opens a fresh SoftHSM token through go.step.sm/crypto's
// PKCS#11 KMS, or skips.
func newSoftHSM(t *testing.T) *pkcs11.PKCS11 {
	t.Helper()
	module := pkitest.SoftHSMToken(t, "gatehouse", "1234")
	k, err := pkcs11.New(t.Context(), apiv1.Options{Type: apiv1.PKCS11, URI: "pkcs11:module-path=" + module + ";token=gatehouse?pin-value=1234"})
	if err != nil {
		t.Fatalf("open SoftHSM: %v", err)
	}
	t.Cleanup(func() { _ = k.Close() })
	return k
}

// TestRollover_PKCS11 rolls a software-key domain CA over to a new key
// generated in an HSM (SoftHSM through PKCS#11): the new generation's
// reference is a pkcs11: URI without the PIN, the link certificates check,
// and the HSM key issues LDevIDs and signs the generation's CRL.
func TestRollover_PKCS11(t *testing.T) {
	hsm := newSoftHSM(t)
	fc := pkitest.NewClock()
	dom := pkitest.NewCA(t, pkitest.Name("HSM Domain CA"), pkitest.Clock(fc))
	db, err := store.Open(filepath.Join(t.TempDir(), "registrar.db"), store.Options{Clock: fc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ctx := t.Context()
	if err := registrar.RecordFirstGeneration(ctx, db, dom.Root(), writeKey(t, dom)); err != nil {
		t.Fatal(err)
	}
	keys := registrar.KMSKeys{KMS: hsm, Scheme: "pkcs11", Token: "pkcs11:token=gatehouse"}
	rec := audit.NewRecorder(db, nil)
	res, err := registrar.Rollover(ctx, registrar.RolloverDeps{Store: db, Clock: fc, Audit: rec, Keys: keys, Linter: pkitest.NewLinter(t)})
	if err != nil {
		t.Fatal(err)
	}
	active, err := db.ActiveGeneration(ctx)
	if err != nil || active.ID != res.To {
		t.Fatalf("active %+v, %v", active, err)
	}
	if !strings.HasPrefix(active.KeyRef, "pkcs11:token=gatehouse;") || strings.Contains(active.KeyRef, "pin") {
		t.Errorf("key reference %q: want a pkcs11: URI without the PIN", active.KeyRef)
	}
	nwn, err := x509.ParseCertificate(active.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	nwo, _ := x509.ParseCertificate(active.LinkCertificates[0])
	own, _ := x509.ParseCertificate(active.LinkCertificates[1])
	if err := (pki.Links{OldWithOld: dom.Root(), NewWithNew: nwn, NewWithOld: nwo, OldWithNew: own}).Check(); err != nil {
		t.Fatal(err)
	}
	signer, err := keys.Load(ctx, active.KeyRef)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadCA([]*x509.Certificate{nwn}, signer)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := pki.NewIssuer(pki.IssuerConfig{}.WithDefaults(), pki.IssuerDeps{Clock: fc, CA: ca, Linter: pkitest.NewLinter(t)})
	if err != nil {
		t.Fatal(err)
	}
	prep, err := iss.Prepare(pki.IssueRequest{PublicKey: pkitest.NewKey(t).Public(), Device: &pki.DeviceIdentity{Serial: "SN-HSM-1"}})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := iss.Sign(ctx, prep)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifies(leaf, dom.Root(), []*x509.Certificate{nwo}, fc.Now()); err != nil {
		t.Errorf("HSM-issued LDevID with the old root + NewWithOld: %v", err)
	}
	crl, err := registrar.IssueCRL(ctx, registrar.CRLDeps{Store: db, Clock: fc, Keys: keys, Audit: rec}, res.To)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := x509.ParseRevocationList(crl.DER)
	if err != nil || parsed.CheckSignatureFrom(nwn) != nil {
		t.Errorf("CRL signed in the HSM: %v", err)
	}
}
