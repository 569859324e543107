package registrar_test

import (
	"bytes"
	"crypto/x509"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
)

const testCRLBase = "https://registrar.example:8443/crl"

// getCRL fetches a generation's CRL over the pledge-facing TLS listener.
func getCRL(t *testing.T, p *registrartest.Pledge, path string) *x509.RevocationList {
	t.Helper()
	resp, body, err := p.Get(t.Context(), path)
	if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != registrar.MediaTypeCRL {
		t.Fatalf("GET %s: %v %v %s", path, err, resp, body)
	}
	crl, err := x509.ParseRevocationList(body)
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

func listed(crl *x509.RevocationList, serial *big.Int) bool {
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(serial) == 0 {
			return true
		}
	}
	return false
}

// opensslCRL runs openssl crl -verify against the issuing generation's
// certificate and returns its text, or "" without openssl.
func opensslCRL(t *testing.T, issuer *x509.Certificate, crl *x509.RevocationList) string {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Log("openssl not installed; crypto/x509 only")
		return ""
	}
	dir := t.TempDir()
	ca, in := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "crl.der")
	if err := os.WriteFile(ca, pkitest.CertPEM(issuer), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in, crl.Raw, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), openssl, "crl", "-verify", "-CAfile", ca, "-in", in, "-inform", "DER", "-noout", "-text").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "verify OK") {
		t.Fatalf("openssl crl -verify: %v\n%s", err, out)
	}
	return string(out)
}

// TestService_CRL: LDevIDs carry their generation's CRL distribution
// point; the CRL there verifies with openssl crl -verify against that
// generation; a revocation through the admin API issues a new CRL (higher
// number) listing the serial; after a rollover each generation's CRL is
// signed by its own key and lists only its own revocations.
func TestService_CRL(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *registrartest.Options) { o.CRLBaseURL = testCRLBase })
	if err := e.reg.Service.LoadGenerations(t.Context(), registrar.KeyFiles{Dir: filepath.Join(t.TempDir(), "ca")}, writeKey(t, e.dom)); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	p, leaf, _ := e.enrolled(t, "SN-CRL-1")
	wantDP := testCRLBase + "/" + pki.CRLPath(e.dom.Root())
	if len(leaf.CRLDistributionPoints) != 1 || leaf.CRLDistributionPoints[0] != wantDP {
		t.Fatalf("CRL distribution points %v, want %s", leaf.CRLDistributionPoints, wantDP)
	}
	path := "/crl/" + pki.CRLPath(e.dom.Root())
	first := getCRL(t, p, path)
	if err := first.CheckSignatureFrom(e.dom.Root()); err != nil || len(first.RevokedCertificateEntries) != 0 {
		t.Fatalf("first CRL: %v, %d entries", err, len(first.RevokedCertificateEntries))
	}
	opensslCRL(t, e.dom.Root(), first)

	admin := httptestServer(t, e.reg.Service.AdminHandler())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, admin+"/api/v1/ca/revoke/"+leaf.SerialNumber.Text(16), strings.NewReader(`{"reason":"keyCompromise"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke: %v %v", err, resp)
	}
	resp.Body.Close()
	second := getCRL(t, p, path)
	if second.Number.Cmp(first.Number) <= 0 || !listed(second, leaf.SerialNumber) {
		t.Fatalf("CRL after revocation: number %v (before %v), lists the serial %v", second.Number, first.Number, listed(second, leaf.SerialNumber))
	}
	if second.RevokedCertificateEntries[0].ReasonCode != 1 || !second.NextUpdate.After(e.fc.Now()) {
		t.Errorf("entry reason %d, nextUpdate %s", second.RevokedCertificateEntries[0].ReasonCode, second.NextUpdate)
	}
	text := opensslCRL(t, e.dom.Root(), second)
	if text != "" && !strings.Contains(strings.ToUpper(text), strings.ToUpper(leaf.SerialNumber.Text(16))) {
		t.Errorf("openssl does not list serial %x:\n%s", leaf.SerialNumber, text)
	}

	// Before nextUpdate: past half its validity, a request gets a new one;
	// eight concurrent requests get the same new one.
	e.fc.Add(registrar.CRLValidity/2 + time.Minute)
	var wg sync.WaitGroup
	ders := make([][]byte, 8)
	for i := range ders {
		wg.Go(func() {
			der, err := e.reg.Service.CRL(ctx, registrar.GenerationID(e.dom.Root()))
			if err != nil {
				t.Error(err)
			}
			ders[i] = der
		})
	}
	wg.Wait()
	for _, der := range ders[1:] {
		if !bytes.Equal(der, ders[0]) {
			t.Fatal("concurrent requests for a stale CRL got different CRLs: each signed its own")
		}
	}
	third := getCRL(t, p, path)
	if third.Number.Cmp(second.Number) <= 0 || !listed(third, leaf.SerialNumber) || !third.ThisUpdate.After(second.ThisUpdate) {
		t.Errorf("refreshed CRL: number %v, thisUpdate %s", third.Number, third.ThisUpdate)
	}
	if want := new(big.Int).Add(second.Number, big.NewInt(1)); third.Number.Cmp(want) != 0 {
		t.Errorf("refreshed CRL number %v, want %v (one reissue)", third.Number, want)
	}

	// After a rollover: the new generation's LDevIDs point to its own CRL,
	// signed by the new key; the old CRL is still served by the old key.
	res, err := e.reg.Service.RolloverCA(ctx, registrar.RolloverDeps{})
	if err != nil {
		t.Fatal(err)
	}
	p2, leaf2, _ := e.enrolled(t, "SN-CRL-2")
	if got := leaf2.CRLDistributionPoints; len(got) != 1 || !strings.HasSuffix(got[0], "/"+res.To+".crl") {
		t.Fatalf("new-generation CRL DP %v", got)
	}
	cs := e.reg.Service.CACertificates()
	newCRL := getCRL(t, p2, "/crl/"+res.To+".crl")
	if err := newCRL.CheckSignatureFrom(cs[0]); err != nil || listed(newCRL, leaf.SerialNumber) {
		t.Errorf("new generation CRL: %v, lists the old serial %v", err, listed(newCRL, leaf.SerialNumber))
	}
	opensslCRL(t, cs[0], newCRL)
	if old := getCRL(t, p2, path); old.CheckSignatureFrom(e.dom.Root()) != nil || !listed(old, leaf.SerialNumber) {
		t.Error("the old generation's CRL is no longer served, signed by the old key")
	}
	resp, _, err = p2.Get(ctx, "/crl/not-hex.crl")
	if err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown CRL: %v %v, want 404", err, resp)
	}
}
