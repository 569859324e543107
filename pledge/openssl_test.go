package pledge_test

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

// TestOpenSSLPledgeRequest is the interop check of a pledge voucher-request
// built and signed by openssl rather than by this project: the registrar
// and the MASA accept it, and openssl verifies the voucher that comes back
// against the MASA anchor.
func TestOpenSSLPledgeRequest(t *testing.T) {
	t.Parallel()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed (make test-deps installs it)")
	}
	e := newEnv(t, registrartest.Options{})
	const serial = "SN-OPENSSL-1"
	idevid := pkitest.NewIDevID(t, e.mfg, serial, e.masa.Authority, pkitest.WithNoExpiry())
	dir := t.TempDir()
	file := func(name string, b []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	idevidPEM := file("idevid.pem", idevid.CertPEM())
	keyPEM := file("key.pem", idevid.KeyPEM(t))
	anchorPEM := file("masa-anchor.pem", pkitest.CertPEM(e.masa.Anchor()))

	// One TLS connection, presenting the IDevID; the registrar's
	// certificate is taken from the handshake (provisional TLS).
	var served *x509.Certificate
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{
			MinVersion:         tls.VersionTLS12,
			Certificates:       []tls.Certificate{idevid.TLS},
			InsecureSkipVerify: true, // provisional TLS, as a pledge does
			VerifyConnection: func(cs tls.ConnectionState) error {
				served = cs.PeerCertificates[0]
				return nil
			},
		},
		MaxConnsPerHost: 1,
	}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	// Open the connection with a request the registrar answers without
	// side effects (GET is not a BRSKI method: 405).
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.reg.URL+"/.well-known/brski/requestvoucher", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if served == nil {
		t.Fatal("no registrar certificate captured")
	}

	// The PVR as plain JSON, written here, signed by openssl.
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	pvr, err := json.Marshal(map[string]any{"ietf-voucher-request:voucher": map[string]string{
		"created-on":               e.clk.Now().UTC().Format(time.RFC3339),
		"nonce":                    base64.StdEncoding.EncodeToString(nonce),
		"assertion":                "proximity",
		"serial-number":            serial,
		"proximity-registrar-cert": base64.StdEncoding.EncodeToString(served.Raw),
	}})
	if err != nil {
		t.Fatal(err)
	}
	pvrFile := file("pvr.json", pvr)
	signedFile := filepath.Join(dir, "pvr.der")
	run := func(args ...string) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), openssl, args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("cms", "-sign", "-binary", "-nodetach", "-outform", "DER",
		"-econtent_type", "1.2.840.113549.1.9.16.1.40",
		"-signer", idevidPEM, "-inkey", keyPEM, "-md", "sha256", "-nosmimecap",
		"-in", pvrFile, "-out", signedFile)
	signed, err := os.ReadFile(signedFile)
	if err != nil {
		t.Fatal(err)
	}

	req, _ = http.NewRequestWithContext(t.Context(), http.MethodPost, e.reg.URL+"/.well-known/brski/requestvoucher", bytes.NewReader(signed))
	req.Header.Set("Content-Type", voucher.MediaTypeCMS)
	req.Header.Set("Accept", voucher.MediaTypeCMS)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("registrar answered %s: %s", resp.Status, body)
	}
	voucherFile := file("voucher.der", body)
	contentFile := filepath.Join(dir, "voucher.json")
	run("cms", "-verify", "-binary", "-inform", "DER", "-in", voucherFile,
		"-CAfile", anchorPEM, "-purpose", "any",
		"-attime", strconv.FormatInt(e.clk.Now().Unix(), 10), "-out", contentFile)
	content, err := os.ReadFile(contentFile)
	if err != nil {
		t.Fatal(err)
	}
	v, err := voucher.DecodeVoucherJSON(content)
	if err != nil {
		t.Fatalf("voucher content: %v\n%s", err, content)
	}
	if v.SerialNumber != serial || !bytes.Equal(v.Nonce, nonce) || v.Assertion != voucher.AssertionProximity {
		t.Fatalf("voucher: serial %q nonce %x assertion %q", v.SerialNumber, v.Nonce, v.Assertion)
	}
	if !bytes.Equal(v.PinnedDomainCert, e.reg.DomainCA.Cert.Raw) {
		t.Fatal("voucher does not pin the registrar's domain CA")
	}
}
