package main

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jmhodges/clock"

	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/internal/lab"
	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pledge"
)

// Interop tests: real third-party EST clients (the globalsign estclient,
// curl + openssl) against a `gatehouse lab` process, as DESIGN.md
// "Interop" requires. Each starts its own lab on :0 ports.

// interopLab is a running lab for an interop test.
type interopLab struct {
	work, data string
	registrar  string // https://127.0.0.1:port
	host       string // 127.0.0.1:port
	coaps      string // 127.0.0.1:port of the CoAPS (DTLS) listener
	paths      lab.Paths
}

func startInteropLab(t testing.TB) *interopLab {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the gatehouse lab and third-party clients; skipped with -short")
	}
	bin := buildGatehouse(t)
	work := t.TempDir()
	data := filepath.Join(work, "data")
	p := startProc(t, work, bin, labArgs(data)...)
	kv, _ := p.readUntilReady(t)
	waitHealthy(t, kv["admin"]+"/readyz")
	u, err := url.Parse(kv["registrar"])
	if err != nil {
		t.Fatal(err)
	}
	cu, err := url.Parse(kv["coaps"])
	if err != nil {
		t.Fatal(err)
	}
	l := &interopLab{work: work, data: data, registrar: kv["registrar"], host: u.Host, coaps: cu.Host, paths: lab.PathsFor(data)}
	t.Cleanup(func() { p.stop(t) })
	return l
}

// voucher runs the voucher phase for a lab pledge with the pledge library
// (no EST), which authorizes its IDevID for simpleenroll.
func (l *interopLab) voucher(t testing.TB, serial string) {
	t.Helper()
	u, _ := url.Parse(l.registrar)
	chain, err := readCertificates(l.paths.PledgeIDevID(serial))
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.LoadSigner(t.Context(), l.paths.PledgeKey(serial), nil)
	if err != nil {
		t.Fatal(err)
	}
	idevid, err := lab.KeyPair(chain, key)
	if err != nil {
		t.Fatal(err)
	}
	anchors, err := readCertificates(l.paths.MASA)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pledge.New(pledge.Config{Registrar: u, IDevID: idevid, MASAAnchors: anchors, Clock: clock.New(), MaxWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.RequestVoucher(t.Context()); err != nil {
		t.Fatalf("voucher for %s: %v", serial, err)
	}
}

// file writes b under the test's work directory and returns its path.
func (l *interopLab) file(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(l.work, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// run runs a tool with a bound and returns stdout, failing the test on a
// non-zero exit.
func run(t *testing.T, dir string, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	cmd.Dir = dir
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(name), strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.Bytes()
}

func lookPath(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed (make test-deps installs it)", name)
	}
	return p
}

// certsOnlyToPEM turns a base64 certs-only body into PEM with openssl
// (base64 -d | openssl pkcs7 -inform DER -print_certs).
func certsOnlyToPEM(t *testing.T, openssl string, body []byte) []byte {
	t.Helper()
	der, err := est.DecodeBase64Body(body)
	if err != nil {
		t.Fatalf("response is not base64: %v\n%s", err, body)
	}
	out := run(t, "", der, openssl, "pkcs7", "-inform", "DER", "-print_certs")
	if !bytes.Contains(out, []byte("BEGIN CERTIFICATE")) {
		t.Fatalf("openssl pkcs7 printed no certificate:\n%s", out)
	}
	return out
}

// firstCertPEM keeps the first certificate of a PEM bundle.
func firstCertPEM(t *testing.T, b []byte) []byte {
	t.Helper()
	certs, err := pki.ParseCertificates(b)
	if err != nil || len(certs) == 0 {
		t.Fatalf("no certificate: %v\n%s", err, b)
	}
	return certsPEM(certs[:1])
}

// TestInterop_CurlOpenSSL drives EST with curl and openssl: cacerts,
// simpleenroll with an openssl CSR (with and without
// Content-Transfer-Encoding), simplereenroll with the issued certificate;
// every certificate is checked with openssl verify.
func TestInterop_CurlOpenSSL(t *testing.T) {
	t.Parallel()
	curl, openssl := lookPath(t, "curl"), lookPath(t, "openssl")
	l := startInteropLab(t)
	ca := l.paths.DomainCA
	base := l.registrar + "/.well-known/est/"
	curlArgs := func(cert, key string, extra ...string) []string {
		return append([]string{"-sS", "--fail-with-body", "--cacert", ca, "--cert", cert, "--key", key}, extra...)
	}

	for _, tc := range []struct {
		serial string
		cte    bool
	}{{"GH-0002", true}, {"GH-0003", false}} {
		l.voucher(t, tc.serial)
		idevid, idkey := l.paths.PledgeIDevID(tc.serial), l.paths.PledgeKey(tc.serial)

		// cacerts: base64 -d | openssl pkcs7 -print_certs.
		body := run(t, l.work, nil, curl, curlArgs(idevid, idkey, base+"cacerts")...)
		if !bytes.Contains(certsOnlyToPEM(t, openssl, body), []byte("BEGIN CERTIFICATE")) {
			t.Fatal("no CA certificate")
		}

		// simpleenroll: an openssl CSR for a new P-256 key, as base64.
		key := filepath.Join(l.work, tc.serial+"-key.pem")
		der := run(t, l.work, nil, openssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
			"-keyout", key, "-subj", "/serialNumber="+tc.serial, "-outform", "DER")
		csr := l.file(t, tc.serial+".b64", est.EncodeBase64(der))
		args := curlArgs(idevid, idkey, "-H", "Content-Type: application/pkcs10", "--data-binary", "@"+csr)
		if tc.cte {
			args = append(args, "-H", "Content-Transfer-Encoding: base64")
		}
		body = run(t, l.work, nil, curl, append(args, base+"simpleenroll")...)
		cert := l.file(t, tc.serial+".pem", firstCertPEM(t, certsOnlyToPEM(t, openssl, body)))
		if out := run(t, l.work, nil, openssl, "verify", "-CAfile", ca, cert); !bytes.Contains(out, []byte(": OK")) {
			t.Fatalf("openssl verify: %s", out)
		}

		// simplereenroll with the issued certificate: a new key, the same
		// subject (RFC 7030 §4.2.2).
		newKey := filepath.Join(l.work, tc.serial+"-key2.pem")
		der = run(t, l.work, nil, openssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
			"-keyout", newKey, "-subj", opensslSubject(t, cert), "-outform", "DER")
		csr = l.file(t, tc.serial+"-re.b64", est.EncodeBase64(der))
		body = run(t, l.work, nil, curl, curlArgs(cert, key, "-H", "Content-Type: application/pkcs10", "--data-binary", "@"+csr, base+"simplereenroll")...)
		renewed := l.file(t, tc.serial+"-renewed.pem", firstCertPEM(t, certsOnlyToPEM(t, openssl, body)))
		if out := run(t, l.work, nil, openssl, "verify", "-CAfile", ca, renewed); !bytes.Contains(out, []byte(": OK")) {
			t.Fatalf("openssl verify (renewed): %s", out)
		}
	}
}

// opensslSubject returns the subject of the certificate in file as an
// openssl -subj argument, attribute by attribute in order.
func opensslSubject(t *testing.T, file string) string {
	t.Helper()
	certs, err := readCertificates(file)
	if err != nil {
		t.Fatal(err)
	}
	c := certs[0]
	if len(c.DNSNames)+len(c.IPAddresses)+len(c.URIs)+len(c.EmailAddresses) > 0 {
		t.Fatalf("%s has a subjectAltName; extend this helper to copy it", file)
	}
	short := map[string]string{"2.5.4.3": "CN", "2.5.4.5": "serialNumber", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST"}
	var b strings.Builder
	for _, atv := range c.Subject.Names {
		name, ok := short[atv.Type.String()]
		if !ok {
			t.Fatalf("subject attribute %s: extend this helper", atv.Type)
		}
		fmt.Fprintf(&b, "/%s=%v", name, atv.Value)
	}
	return b.String()
}

// buildESTClient builds the globalsign estclient command pinned in
// tools/estclient/go.mod (v1.0.6) into a temporary directory.
func buildESTClient(t *testing.T) string {
	t.Helper()
	goBin := lookPath(t, "go")
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "estclient")
	cmd := exec.CommandContext(t.Context(), goBin, "build", "-modfile="+filepath.Join(root, "tools", "estclient", "go.mod"), "-o", bin, "github.com/globalsign/est/cmd/estclient")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build estclient: %v\n%s", err, out)
	}
	return bin
}

// TestInterop_ESTClient runs the globalsign estclient against the lab:
// cacerts, csrattrs, enroll and serverkeygen with a pledge's IDevID (after
// its voucher flow), and reenroll with the issued LDevID. Certificates are
// checked with openssl verify.
func TestInterop_ESTClient(t *testing.T) {
	t.Parallel()
	openssl := lookPath(t, "openssl")
	l := startInteropLab(t)
	est := buildESTClient(t)
	ca := l.paths.DomainCA
	common := func(cert, key string) []string {
		return []string{"-server", l.host, "-explicit", ca, "-certs", cert, "-key", key, "-timeout", "30s"}
	}
	verify := func(cert string) {
		t.Helper()
		if out := run(t, l.work, nil, openssl, "verify", "-CAfile", ca, cert); !bytes.Contains(out, []byte(": OK")) {
			t.Fatalf("openssl verify %s: %s", cert, out)
		}
	}

	const serial = "GH-0004"
	l.voucher(t, serial)
	idevid, idkey := l.paths.PledgeIDevID(serial), l.paths.PledgeKey(serial)

	cacerts := filepath.Join(l.work, "cacerts.pem")
	run(t, l.work, nil, est, append([]string{"cacerts"}, append(common(idevid, idkey), "-out", cacerts)...)...)
	if b, err := os.ReadFile(cacerts); err != nil || !bytes.Contains(b, []byte("BEGIN CERTIFICATE")) {
		t.Fatalf("estclient cacerts wrote no certificate: %v", err)
	}
	if out := run(t, l.work, nil, est, append([]string{"csrattrs"}, common(idevid, idkey)...)...); len(bytes.TrimSpace(out)) == 0 {
		t.Fatal("estclient csrattrs printed nothing")
	}

	// enroll: an openssl CSR for a new key (estclient would otherwise sign
	// the CSR with the TLS key, the IDevID's).
	key := filepath.Join(l.work, "ldevid-key.pem")
	csr := filepath.Join(l.work, "req.pem")
	run(t, l.work, nil, openssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", key, "-subj", "/serialNumber="+serial, "-out", csr)
	ldevid := filepath.Join(l.work, "ldevid.pem")
	run(t, l.work, nil, est, append([]string{"enroll"}, append(common(idevid, idkey), "-csr", csr, "-out", ldevid)...)...)
	verify(ldevid)

	// reenroll with the LDevID (estclient copies its subject and SAN).
	renewed := filepath.Join(l.work, "renewed.pem")
	run(t, l.work, nil, est, append([]string{"reenroll"}, append(common(ldevid, key), "-out", renewed)...)...)
	verify(renewed)

	// serverkeygen for another pledge after its voucher flow.
	const serial2 = "GH-0005"
	l.voucher(t, serial2)
	skgCert, skgKey := filepath.Join(l.work, "skg.pem"), filepath.Join(l.work, "skg-key.pem")
	run(t, l.work, nil, est, append([]string{"serverkeygen"}, append(common(l.paths.PledgeIDevID(serial2), l.paths.PledgeKey(serial2)),
		"-sn", serial2, "-out", skgCert, "-keyout", skgKey)...)...)
	verify(skgCert)
	// The returned key is the certificate's.
	pubCert := run(t, l.work, nil, openssl, "x509", "-in", skgCert, "-noout", "-pubkey")
	pubKey := run(t, l.work, nil, openssl, "pkey", "-in", skgKey, "-pubout")
	if !bytes.Equal(pubCert, pubKey) {
		t.Fatalf("serverkeygen key does not match its certificate:\n%s\n%s", pubCert, pubKey)
	}
}
