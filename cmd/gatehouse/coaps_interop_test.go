package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// coapClient finds libcoap's coap-client built with OpenSSL (Debian
// libcoap3-bin; make test-deps installs it), or skips.
func coapClient(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"coap-client-openssl", "coap-client"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("libcoap's coap-client-openssl is not installed (make test-deps installs libcoap3-bin)")
	return ""
}

// runCoAP runs coap-client with the pledge's IDevID as its DTLS client
// certificate and returns stdout.
func (l *interopLab) runCoAP(t *testing.T, client, serial string, args ...string) string {
	t.Helper()
	base := []string{"-c", l.paths.PledgeIDevID(serial), "-j", l.paths.PledgeKey(serial), "-R", l.paths.DomainCA}
	cmd := exec.CommandContext(t.Context(), client, append(base, args...)...)
	cmd.Dir = l.work
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", client, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// TestInterop_LibcoapClient: libcoap's coap-client against a running lab,
// authenticated in DTLS by a lab pledge's IDevID (certificate and key):
// /.well-known/core, /crts as certs-only (Accept 281), and /sen with a DER
// CSR in 64-byte Block1 blocks (libcoap sends a new token on every block,
// with one Request-Tag). The certificate is for the CSR's key (so the
// whole CSR arrived) and verifies with openssl against the lab domain CA.
func TestInterop_LibcoapClient(t *testing.T) {
	t.Parallel()
	client := coapClient(t)
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed (make test-deps installs it)")
	}
	l := startInteropLab(t)
	const serial = "GH-0003"
	base := "coaps://" + l.coaps

	core := l.runCoAP(t, client, serial, "-m", "get", base+"/.well-known/core")
	for _, want := range []string{"</.well-known/est/crts>", `rt="ace.est.sen"`, "</.well-known/brski/rv>"} {
		if !strings.Contains(core, want) {
			t.Fatalf("/.well-known/core lacks %s:\n%s", want, core)
		}
	}

	crts := filepath.Join(l.work, "crts.p7")
	l.runCoAP(t, client, serial, "-m", "get", "-A", "281", "-o", crts, base+"/.well-known/est/crts")
	out, err := exec.CommandContext(t.Context(), openssl, "pkcs7", "-inform", "DER", "-in", crts, "-print_certs", "-noout").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Gatehouse Lab Domain CA") {
		t.Fatalf("crts is not a certs-only PKCS#7 with the domain CA: %v\n%s", err, out)
	}

	// The voucher phase authorizes the IDevID for /sen (the HTTPS rule).
	l.voucher(t, serial)
	key, csr := filepath.Join(l.work, "key.pem"), filepath.Join(l.work, "csr.der")
	for _, args := range [][]string{
		{"ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key},
		{"req", "-new", "-key", key, "-subj", "/serialNumber=" + serial + "/CN=" + serial, "-outform", "DER", "-out", csr},
	} {
		if out, err := exec.CommandContext(t.Context(), openssl, args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	der, err := os.ReadFile(csr)
	if err != nil || len(der) <= 2*64 {
		t.Fatalf("CSR of %d bytes (%v): want more than two 64-byte blocks", len(der), err)
	}
	p7 := filepath.Join(l.work, "ldevid.p7")
	l.runCoAP(t, client, serial, "-m", "post", "-b", "64", "-t", "286", "-A", "281", "-f", csr, "-o", p7, base+"/.well-known/est/sen")
	certPEM := filepath.Join(l.work, "ldevid.pem")
	if out, err := exec.CommandContext(t.Context(), openssl, "pkcs7", "-inform", "DER", "-in", p7, "-print_certs", "-out", certPEM).CombinedOutput(); err != nil {
		t.Fatalf("sen response is not certs-only: %v\n%s", err, out)
	}
	opensslVerify(t, l.paths.DomainCA, certPEM)
	certPub, err := exec.CommandContext(t.Context(), openssl, "x509", "-in", certPEM, "-pubkey", "-noout").Output()
	if err != nil {
		t.Fatal(err)
	}
	keyPub, err := exec.CommandContext(t.Context(), openssl, "pkey", "-in", key, "-pubout").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(certPub, keyPub) {
		t.Fatal("the LDevID is not for the CSR's key: the CSR did not arrive whole")
	}
}

// TestLab_ReenrollOverCoAPS: `gatehouse pledge enroll` over HTTPS, then
// `gatehouse pledge reenroll --registrar coaps://…` renews the LDevID over
// EST-coaps; openssl verifies the renewed certificate.
func TestLab_ReenrollOverCoAPS(t *testing.T) {
	t.Parallel()
	l := startInteropLab(t)
	bin := buildGatehouse(t)
	const serial = "GH-0005"
	out := filepath.Join(l.work, "out")
	code, stdout, stderr := runBin(t, l.work, bin, "pledge", "enroll", "--registrar", l.registrar,
		"--idevid", l.paths.PledgeIDevID(serial), "--key", l.paths.PledgeKey(serial), "--out", out)
	if code != 0 {
		t.Fatalf("pledge enroll: exit %d\n%s\n%s", code, stdout, stderr)
	}
	ldevid := filepath.Join(out, "ldevid.pem")
	before, err := os.ReadFile(ldevid)
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = runBin(t, l.work, bin, "pledge", "reenroll", "--registrar", "coaps://"+l.coaps,
		"--cert", ldevid, "--key", filepath.Join(out, "ldevid-key.pem"))
	if code != 0 || !strings.Contains(stdout, "reenrolled: ") || !strings.Contains(stdout, "registrar DTLS:") {
		t.Fatalf("pledge reenroll over coaps: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	after, err := os.ReadFile(ldevid)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(before, after) {
		t.Fatal("pledge reenroll over coaps left ldevid.pem unchanged")
	}
	opensslVerify(t, l.paths.DomainCA, ldevid)
}

// TestLab_EnrollOverCoAPS: `gatehouse pledge enroll --registrar coaps://…`
// runs the whole constrained flow against a running lab (COSE voucher,
// CBOR telemetry, EST-coaps); the voucher verifies with `gatehouse voucher
// verify` against the lab's MASA certificate and openssl verifies the
// LDevID.
func TestLab_EnrollOverCoAPS(t *testing.T) {
	t.Parallel()
	l := startInteropLab(t)
	bin := buildGatehouse(t)
	const serial = "GH-0006"
	out := filepath.Join(l.work, "out")
	code, stdout, stderr := runBin(t, l.work, bin, "pledge", "enroll", "--registrar", "coaps://"+l.coaps,
		"--idevid", l.paths.PledgeIDevID(serial), "--key", l.paths.PledgeKey(serial), "--out", out)
	if code != 0 || !strings.Contains(stdout, "voucher accepted: pledge "+serial) || !strings.Contains(stdout, "enrolled: LDevID") {
		t.Fatalf("pledge enroll over coaps: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	opensslVerify(t, l.paths.DomainCA, filepath.Join(out, "ldevid.pem"))
	code, stdout, stderr = runBin(t, l.work, bin, "voucher", "verify", filepath.Join(out, "voucher"), "--anchor", l.paths.MASA)
	if code != 0 {
		t.Fatalf("voucher verify of the COSE voucher: exit %d\n%s\n%s", code, stdout, stderr)
	}
}
