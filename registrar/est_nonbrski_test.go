package registrar_test

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gsest "github.com/globalsign/est"
	"github.com/jmhodges/clock"
	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
	"github.com/gatehouse-pki/gatehouse/store"
)

// mozillaPKCS7 serialises globalsign est.Client calls: the
// go.mozilla.org/pkcs7 parser it uses writes a package-level variable
// without synchronisation (a race that is not ours).
var mozillaPKCS7 sync.Mutex

// nonBRSKI is a registrar on a fake clock set to the real time (est.Client
// checks the server certificate with the system clock), with a CA for
// third-party EST clients that the edit may list.
type nonBRSKI struct {
	reg     *registrartest.Registrar
	dom     *pkitest.CA
	clients *pkitest.CA
	fc      clock.FakeClock
}

func newNonBRSKI(t *testing.T, edit func(o *registrartest.Options, clients *pkitest.CA)) *nonBRSKI {
	t.Helper()
	fc := clock.NewFake()
	fc.Set(time.Now().UTC().Truncate(time.Second))
	mfg := pkitest.NewCA(t, pkitest.Name("Non-BRSKI Test Manufacturer"), pkitest.Clock(fc))
	n := &nonBRSKI{fc: fc,
		dom:     pkitest.NewCA(t, pkitest.Name("Non-BRSKI Test Domain CA"), pkitest.Clock(fc)),
		clients: pkitest.NewCA(t, pkitest.Name("Third-Party EST Client CA"), pkitest.Clock(fc)),
	}
	masaURL, err := url.Parse("https://masa.invalid/.well-known/brski")
	if err != nil {
		t.Fatal(err)
	}
	opts := registrartest.Options{Clock: fc, Manufacturer: mfg, DomainCA: n.dom, MASAURL: masaURL, MASAAnchors: []*x509.Certificate{mfg.Root()}}
	if edit != nil {
		edit(&opts, n.clients)
	}
	n.reg = registrartest.Start(t, opts)
	return n
}

// listIssuer configures clients as the EST client issuer.
func listIssuer(o *registrartest.Options, clients *pkitest.CA) {
	o.Config = func(c *registrar.Config) { c.ESTClientIssuers = []*x509.Certificate{clients.Root()} }
}

// clientCert issues a TLS client certificate named cn from ca.
func clientCert(t *testing.T, ca *pkitest.CA, cn string) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key := pkitest.NewKey(t)
	c := ca.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: cn}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, key.Public())
	return c, key
}

func cnCSR(t *testing.T, cn string, key crypto.Signer) *x509.CertificateRequest {
	t.Helper()
	csr, err := x509.ParseCertificateRequest(registrartest.NewCSR(t, key, cn, func(r *x509.CertificateRequest) { r.Subject = pkix.Name{CommonName: cn} }))
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// requireIssueEvent fails t unless an issue-success event records cert
// issued to device with client_auth auth.
func (n *nonBRSKI) requireIssueEvent(t *testing.T, cert *x509.Certificate, device, auth string) {
	t.Helper()
	rec, err := n.reg.DB().Certificate(t.Context(), cert.SerialNumber)
	if err != nil || !bytes.Equal(rec.DER, cert.Raw) || rec.Device.String() != device {
		t.Fatalf("stored certificate: %+v, %v; want device %s", rec.Device, err, device)
	}
	for _, ev := range n.reg.AuditSince(t, 0) {
		if ev.Type == audit.IssueSuccess && ev.Fields["device"] == device && ev.Fields["client_auth"] == auth {
			return
		}
	}
	t.Fatalf("no issue-success event for %s with client_auth=%s", device, auth)
}

// refusedWith posts a CSR with the client and checks the status, that the
// store is unchanged, and the number of enroll-refused events.
func (n *nonBRSKI) refusedWith(t *testing.T, c *http.Client, csr []byte, wantCode, wantRefused int, header ...string) *http.Response {
	t.Helper()
	digest, seq := n.reg.StateDigest(t), n.reg.AuditCount(t)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, n.reg.URL+est.PathPrefix+"/"+est.OpSimpleEnroll, bytes.NewReader(est.EncodeBase64(csr)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", est.MediaPKCS10)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	switch {
	case wantCode == 0 && err == nil:
		_ = resp.Body.Close()
		t.Fatalf("status %d, want a TLS failure", resp.StatusCode)
	case wantCode != 0 && err != nil:
		t.Fatalf("%v, want %d", err, wantCode)
	case wantCode != 0:
		_ = resp.Body.Close()
		if resp.StatusCode != wantCode {
			t.Fatalf("status %d, want %d", resp.StatusCode, wantCode)
		}
	}
	if n.reg.StateDigest(t) != digest {
		t.Error("state changed")
	}
	refused := 0
	for _, ev := range n.reg.AuditSince(t, seq) {
		if ev.Type == registrar.EnrollRefused {
			refused++
		}
	}
	if refused != wantRefused {
		t.Errorf("enroll-refused events = %d, want %d", refused, wantRefused)
	}
	return resp
}

func (n *nonBRSKI) client(t *testing.T, cert *x509.Certificate, key crypto.Signer) *http.Client {
	t.Helper()
	var tc *tls.Certificate
	if cert != nil {
		tc = &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
	}
	return pkitest.TLSClient(t, n.dom.Pool(), tc, pkitest.Clock(n.fc))
}

func basicAuth(user, pw string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

func bcryptHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// TestESTNonBRSKI_DefaultRefuses: without configuration, a certificate
// from a third-party CA ends the handshake and HTTP Basic is 401, with no
// state change (reliability E04). A password file at the edge alone is not
// enough: the registrar must be told to issue to Basic users.
func TestESTNonBRSKI_DefaultRefuses(t *testing.T) {
	t.Parallel()
	n := newNonBRSKI(t, nil)
	cert, key := clientCert(t, n.clients, "est-client-0")
	n.refusedWith(t, n.client(t, cert, key), cnCSR(t, "est-client-0", pkitest.NewKey(t)).Raw, 0, 0)
	n.refusedWith(t, n.client(t, nil, nil), cnCSR(t, "alice", pkitest.NewKey(t)).Raw, http.StatusUnauthorized, 0,
		"Authorization", basicAuth("alice", "pw"))

	edgeOnly := newNonBRSKI(t, func(o *registrartest.Options, _ *pkitest.CA) {
		o.EST.Basic = est.BasicAuth{"alice": bcryptHash(t, "pw")}
	})
	resp := edgeOnly.refusedWith(t, edgeOnly.client(t, nil, nil), cnCSR(t, "alice", pkitest.NewKey(t)).Raw, http.StatusUnauthorized, 1,
		"Authorization", basicAuth("alice", "pw"))
	if resp.Header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
}

// TestESTNonBRSKI_ClientIssuer: a client certificate from a listed issuer
// enrolls with the globalsign est.Client and with curl; the LDevID is named
// from the certificate (CN → CN and serialNumber under the default
// profile) and re-enrolls as any LDevID. A certificate from an unlisted CA,
// and a CSR for the client certificate's own key, are refused with no
// state change.
func TestESTNonBRSKI_ClientIssuer(t *testing.T) {
	t.Parallel()
	n := newNonBRSKI(t, listIssuer)
	cert, key := clientCert(t, n.clients, "est-client-1")
	device := "est-client:" + registrar.DeviceKeyFor(cert, "est-client-1").Issuer + "/est-client-1"

	// globalsign-est-client
	func() {
		mozillaPKCS7.Lock()
		defer mozillaPKCS7.Unlock()
		ldevKey := pkitest.NewKey(t)
		c := &gsest.Client{Host: n.reg.Addr, ExplicitAnchor: n.dom.Pool(), Certificates: []*x509.Certificate{cert}, PrivateKey: key, SigningKey: ldevKey}
		if _, err := c.CSRAttrs(t.Context()); err != nil {
			t.Fatalf("CSRAttrs: %v", err)
		}
		ldevid, err := c.Enroll(t.Context(), cnCSR(t, "est-client-1", ldevKey))
		if err != nil {
			t.Fatalf("Enroll: %v", err)
		}
		if ldevid.Subject.CommonName != "est-client-1" || ldevid.Subject.SerialNumber != "est-client-1" {
			t.Fatalf("LDevID subject = %s", ldevid.Subject)
		}
		if _, err := ldevid.Verify(x509.VerifyOptions{Roots: n.dom.Pool(), CurrentTime: n.fc.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Fatalf("LDevID does not verify: %v", err)
		}
		n.requireIssueEvent(t, ldevid, device, "est-client-cert")

		// Re-enrolment with the LDevID (RFC 7030 §4.2.2: same subject).
		newKey := pkitest.NewKey(t)
		renew := &gsest.Client{Host: n.reg.Addr, ExplicitAnchor: n.dom.Pool(), Certificates: []*x509.Certificate{ldevid}, PrivateKey: ldevKey, SigningKey: newKey}
		recsr, err := x509.ParseCertificateRequest(registrartest.NewCSR(t, newKey, "", func(r *x509.CertificateRequest) { r.Subject = pkix.Name{}; r.RawSubject = ldevid.RawSubject }))
		if err != nil {
			t.Fatal(err)
		}
		renewed, err := renew.Reenroll(t.Context(), recsr)
		if err != nil {
			t.Fatalf("Reenroll: %v", err)
		}
		n.requireIssueEvent(t, renewed, device, "ldevid")
		// The client certificate itself cannot re-enrol: it is not ours.
		again := &gsest.Client{Host: n.reg.Addr, ExplicitAnchor: n.dom.Pool(), Certificates: []*x509.Certificate{cert}, PrivateKey: key}
		_, err = again.Reenroll(t.Context(), cnCSR(t, "est-client-1", pkitest.NewKey(t)))
		if e, ok := errors.AsType[gsest.Error](err); !ok || e.StatusCode() != http.StatusForbidden {
			t.Fatalf("reenroll with the third-party certificate: %v, want 403", err)
		}
	}()

	// unlisted-issuer
	func() {
		other := pkitest.NewCA(t, pkitest.Name("Unlisted EST Client CA"), pkitest.Clock(n.fc))
		c3, k3 := clientCert(t, other, "est-client-3")
		n.refusedWith(t, n.client(t, c3, k3), cnCSR(t, "est-client-3", pkitest.NewKey(t)).Raw, 0, 0)
	}()

	// csr-reuses-client-key
	func() {
		c4, k4 := clientCert(t, n.clients, "est-client-4")
		n.refusedWith(t, n.client(t, c4, k4), cnCSR(t, "est-client-4", k4).Raw, http.StatusBadRequest, 1)
	}()

	// csr-names-another-client
	func() {
		c5, k5 := clientCert(t, n.clients, "est-client-5")
		n.refusedWith(t, n.client(t, c5, k5), cnCSR(t, "est-client-1", pkitest.NewKey(t)).Raw, http.StatusBadRequest, 1)
	}()
	// curl, last: it skips the rest of the test when curl is missing.
	func() {
		curl := lookPath(t, "curl")
		c2, k2 := clientCert(t, n.clients, "est-client-2")
		dir := t.TempDir()
		files := map[string][]byte{
			"ca.pem":  n.dom.CertPEM(),
			"c.pem":   pkitest.CertPEM(c2),
			"k.pem":   pkitest.KeyPEM(t, k2),
			"csr.b64": est.EncodeBase64(cnCSR(t, "est-client-2", pkitest.NewKey(t)).Raw),
		}
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		out := runTool(t, dir, curl, "-sS", "--fail-with-body", "--cacert", "ca.pem", "--cert", "c.pem", "--key", "k.pem",
			"-H", "Content-Type: application/pkcs10", "--data-binary", "@csr.b64", n.reg.URL+est.PathPrefix+"/"+est.OpSimpleEnroll)
		certs, err := registrartest.ParseCertsOnly(out)
		if err != nil || len(certs) != 1 || certs[0].Subject.CommonName != "est-client-2" {
			t.Fatalf("curl simpleenroll: %v %d certificates\n%s", err, len(certs), out)
		}
		n.requireIssueEvent(t, certs[0], "est-client:"+registrar.DeviceKeyFor(c2, "est-client-2").Issuer+"/est-client-2", "est-client-cert")
	}()
}

// TestESTNonBRSKI_Basic: with a password file at the edge and
// ESTBasicAuth, the user enrolls with est.Client and with curl and gets
// CN=user; a wrong password or an unknown user is 401 with
// WWW-Authenticate and no state change.
func TestESTNonBRSKI_Basic(t *testing.T) {
	t.Parallel()
	n := newNonBRSKI(t, func(o *registrartest.Options, _ *pkitest.CA) {
		o.EST.Basic = est.BasicAuth{"alice": bcryptHash(t, "alice-pw"), "bob": bcryptHash(t, "bob-pw")}
		o.Config = func(c *registrar.Config) { c.ESTBasicAuth = true }
	})

	for _, tc := range []struct{ name, user, pw string }{
		{"wrong-password", "alice", "bob-pw"},
		{"unknown-user", "mallory", "alice-pw"},
	} {
		resp := n.refusedWith(t, n.client(t, nil, nil), cnCSR(t, tc.user, pkitest.NewKey(t)).Raw, http.StatusUnauthorized, 0,
			"Authorization", basicAuth(tc.user, tc.pw))
		if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("%s: WWW-Authenticate = %q", tc.name, resp.Header.Get("WWW-Authenticate"))
		}
	}

	func() {
		mozillaPKCS7.Lock()
		defer mozillaPKCS7.Unlock()
		key := pkitest.NewKey(t)
		c := &gsest.Client{Host: n.reg.Addr, ExplicitAnchor: n.dom.Pool(), Username: "alice", Password: "alice-pw", SigningKey: key}
		cert, err := c.Enroll(t.Context(), cnCSR(t, "alice", key))
		if err != nil {
			t.Fatalf("Enroll: %v", err)
		}
		if cert.Subject.CommonName != "alice" {
			t.Fatalf("subject = %s, want CN=alice", cert.Subject)
		}
		n.requireIssueEvent(t, cert, store.DeviceKey{Issuer: "est-basic", Serial: "alice"}.String(), "http-basic")
		// A user cannot ask for another user's name.
		_, err = c.Enroll(t.Context(), cnCSR(t, "bob", key))
		if e, ok := errors.AsType[gsest.Error](err); !ok || e.StatusCode() != http.StatusBadRequest {
			t.Fatalf("alice asking for CN=bob: %v, want 400", err)
		}
	}()

	curl := lookPath(t, "curl")
	dir := t.TempDir()
	for name, b := range map[string][]byte{"ca.pem": n.dom.CertPEM(), "csr.b64": est.EncodeBase64(cnCSR(t, "bob", pkitest.NewKey(t)).Raw)} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out := runTool(t, dir, curl, "-sS", "--fail-with-body", "--cacert", "ca.pem", "-u", "bob:bob-pw",
		"-H", "Content-Type: application/pkcs10", "--data-binary", "@csr.b64", n.reg.URL+est.PathPrefix+"/"+est.OpSimpleEnroll)
	certs, err := registrartest.ParseCertsOnly(out)
	if err != nil || len(certs) != 1 || certs[0].Subject.CommonName != "bob" {
		t.Fatalf("curl -u simpleenroll: %v\n%s", err, out)
	}
}

func lookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed (make test-deps installs it)", name)
	}
	return p
}

// runTool runs a tool in dir and returns its stdout, failing t on a
// non-zero exit.
func runTool(t *testing.T, dir, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	cmd.Dir = dir
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s\n%s", filepath.Base(name), err, out.String(), errOut.String())
	}
	return out.Bytes()
}

// TestConfig_ESTClientIssuers: EST client issuers must be CAs, apart from
// the manufacturers' IDevID roots and from the domain CA.
func TestConfig_ESTClientIssuers(t *testing.T) {
	t.Parallel()
	n := newNonBRSKI(t, nil)
	leaf, _ := clientCert(t, n.clients, "not-a-ca")
	base := registrar.Config{Manufacturers: []registrar.Manufacturer{{
		Name: "m", IDevIDRoots: []*x509.Certificate{n.clients.Root()}, MASAAnchors: []*x509.Certificate{n.clients.Root()},
		MASAURLs: []*url.URL{{Scheme: "https", Host: "masa.example", Path: "/.well-known/brski"}},
	}}}.WithDefaults()
	for _, tc := range []struct {
		name    string
		issuers []*x509.Certificate
		want    string
	}{
		{"leaf", []*x509.Certificate{leaf}, "not a CA certificate"},
		{"manufacturer-root", []*x509.Certificate{n.clients.Root()}, "is also a manufacturer's IDevID root"},
	} {
		cfg := base
		cfg.ESTClientIssuers = tc.issuers
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v, want %q", tc.name, err, tc.want)
		}
	}
	cfg := base
	cfg.ESTClientIssuers = []*x509.Certificate{n.dom.Root()}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a distinct CA: %v", err)
	}
}
