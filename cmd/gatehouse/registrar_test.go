package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jmhodges/clock"

	"github.com/gatehouse-pki/gatehouse/internal/lab"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
)

// daemonFiles generates a lab PKI to build daemon configs from, valid now:
// the daemons run on the real clock.
func daemonFiles(t *testing.T) lab.Paths {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	if err := lab.Generate(dir, lab.GenerateOptions{Clock: clock.New(), MASAAuthority: "127.0.0.1:9443"}); err != nil {
		t.Fatal(err)
	}
	return lab.PathsFor(dir)
}

// q quotes a path for YAML.
func q(s string) string { return fmt.Sprintf("%q", s) }

func masaConfig(t *testing.T, p lab.Paths) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "masa.yaml")
	cfg := `dataDir: ` + q(filepath.Join(filepath.Dir(path), "masa-data")) + `
listen: "127.0.0.1:0"
admin: "127.0.0.1:0"
tls: {certFile: ` + q(p.MASATLS) + `, keyFile: ` + q(p.MASATLSKey) + `}
signing: {certFile: ` + q(p.MASA) + `, keyFile: ` + q(p.MASAKey) + `}
idevidAnchors: [` + q(p.IDevIDCA) + `]
ownership: {mode: first-claim}
`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func registrarConfig(t *testing.T, p lab.Paths, masaURL string, extra ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "registrar.yaml")
	cfg := `dataDir: ` + q(filepath.Join(filepath.Dir(path), "registrar-data")) + `
listen:
  https: "127.0.0.1:0"
  coaps: "127.0.0.1:0"
  admin: "127.0.0.1:0"
tls: {certFile: ` + q(p.Registrar) + `, keyFile: ` + q(p.RegistrarKey) + `}
domainCA: {certFile: ` + q(p.DomainCA) + `, keyFile: ` + q(p.DomainCAKey) + `}
manufacturers:
  - name: lab
    idevidAnchors: [` + q(p.IDevIDCA) + `]
    masaAnchors: [` + q(p.MASA) + `]
    masaTLSAnchors: [` + q(p.MASATLS) + `]
    masaURLs: [` + q(masaURL) + `]
    masaURLOverride: ` + q(masaURL) + `
    policy: accept-all
` + strings.Join(extra, "")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDaemons_MASAAndRegistrar runs `gatehouse masa` and `gatehouse
// registrar` from configs as processes, enrols a pledge through them, and
// stops both with SIGTERM.
func TestDaemons_MASAAndRegistrar(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the gatehouse binary; skipped with -short")
	}
	t.Parallel()
	bin := buildGatehouse(t)
	p := daemonFiles(t)
	work := t.TempDir()

	m := startProc(t, work, bin, "masa", "--config", masaConfig(t, p))
	mkv, _ := m.readUntilReady(t)
	waitHealthy(t, mkv["admin"]+"/healthz")
	if mkv["masa"] == "" {
		t.Fatalf("masa printed no address: %v", mkv)
	}

	r := startProc(t, work, bin, "registrar", "--config", registrarConfig(t, p, mkv["masa"]+"/.well-known/brski"))
	rkv, _ := r.readUntilReady(t)
	waitHealthy(t, rkv["admin"]+"/healthz")
	waitHealthy(t, rkv["admin"]+"/readyz")
	if !strings.HasPrefix(rkv["coaps"], "coaps://127.0.0.1:") {
		t.Fatalf("registrar printed no CoAPS address: %v", rkv)
	}

	code, out, errOut := runBin(t, work, bin, "pledge", "enroll", "--registrar", rkv["registrar"],
		"--idevid", p.PledgeIDevID("GH-0003"), "--key", p.PledgeKey("GH-0003"), "--out", filepath.Join(work, "out"))
	if code != 0 || !strings.Contains(out, "voucher accepted: pledge GH-0003") || !strings.Contains(out, "enrolled: LDevID") {
		t.Fatalf("pledge enroll: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	opensslVerify(t, p.DomainCA, filepath.Join(work, "out", "ldevid.pem"))
	// Without --masa-anchor, the lab layout next to the IDevID was used.
	if !strings.Contains(out, "(the lab layout next to the IDevID)") {
		t.Errorf("no note about the lab-layout anchor:\n%s", out)
	}
	// G05: the HTTPS listener is capped per IP and counts refusals.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, rkv["admin"]+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || !strings.Contains(string(metrics), `brski_listener_connections_refused_total{listener="registrar"} 0`) {
		t.Errorf("no refused-connections counter for the registrar listener (%v)", err)
	}
	code, out, _ = runBin(t, work, bin, "devices", "list", "--admin", rkv["admin"])
	if code != 0 || !strings.Contains(out, "GH-0003") {
		t.Fatalf("devices list: exit %d\n%s", code, out)
	}
	r.stop(t)
	m.stop(t)
}

// TestDaemons_RateLimitsConfig: rateLimits.perIP from the config file is
// the registrar's: with a burst of 2 and a rate of one request in 1,000
// seconds, the third request from the address is answered 429 with
// Retry-After, and the fourth too.
func TestDaemons_RateLimitsConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the gatehouse binary; skipped with -short")
	}
	t.Parallel()
	bin := buildGatehouse(t)
	p := daemonFiles(t)
	work := t.TempDir()
	r := startProc(t, work, bin, "registrar", "--config", registrarConfig(t, p, "https://127.0.0.1:1/.well-known/brski",
		"rateLimits: {perIP: {rate: 0.001, burst: 2}}\n"))
	rkv, _ := r.readUntilReady(t)
	waitHealthy(t, rkv["admin"]+"/healthz")
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // only the status code is read
	defer hc.CloseIdleConnections()
	var got []string
	for range 4 {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, rkv["registrar"]+"/.well-known/est/cacerts", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		got = append(got, fmt.Sprintf("%d %s", resp.StatusCode, resp.Header.Get("Retry-After")))
	}
	if got[0] != "200 " || got[1] != "200 " || !strings.HasPrefix(got[2], "429 ") || got[2] == "429 " || !strings.HasPrefix(got[3], "429 ") {
		t.Fatalf("answers %q; want 200, 200, then 429 with Retry-After", got)
	}
	r.stop(t)
}

func TestDaemons_KeyModeRefused(t *testing.T) {
	t.Parallel()
	const masaURL = "https://127.0.0.1:9443/.well-known/brski"
	tests := []struct {
		name, cmd string
		config    func(*testing.T, lab.Paths) string
		key       func(lab.Paths) string
	}{
		{"registrar-tls-key", "registrar", func(t *testing.T, p lab.Paths) string { return registrarConfig(t, p, masaURL) }, func(p lab.Paths) string { return p.RegistrarKey }},
		{"registrar-domain-ca-key", "registrar", func(t *testing.T, p lab.Paths) string { return registrarConfig(t, p, masaURL) }, func(p lab.Paths) string { return p.DomainCAKey }},
		{"masa-signing-key", "masa", masaConfig, func(p lab.Paths) string { return p.MASAKey }},
		{"masa-tls-key", "masa", masaConfig, func(p lab.Paths) string { return p.MASATLSKey }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := daemonFiles(t)
			key := tc.key(p)
			if err := os.Chmod(key, 0o644); err != nil {
				t.Fatal(err)
			}
			code, _, errOut := runCLI(t, tc.cmd, "--config", tc.config(t, p))
			if code != exitFailure {
				t.Fatalf("exit %d, want %d (stderr %q)", code, exitFailure, errOut)
			}
			if strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, key) || !strings.Contains(errOut, "0644") || !strings.Contains(errOut, "chmod 600") {
				t.Fatalf("stderr = %q, want one line naming the key, its mode and the fix", errOut)
			}
		})
	}
}

// TestDaemons_BasicPasswordFile: the registrar refuses a password file
// that group or others can read, and one that is not a bcrypt htpasswd
// file, before it listens.
func TestDaemons_BasicPasswordFile(t *testing.T) {
	t.Parallel()
	p := daemonFiles(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content string
		mode          os.FileMode
		want          []string
	}{
		{"world-readable", "alice:$2y$04$" + strings.Repeat("a", 53) + "\n", 0o644, []string{"0644", "chmod 600"}},
		{"plain-password", "alice:secret\n", 0o600, []string{"line 1", "not a bcrypt hash"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pw := filepath.Join(dir, tc.name+".htpasswd")
			if err := os.WriteFile(pw, []byte(tc.content), tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(pw, tc.mode); err != nil {
				t.Fatal(err)
			}
			cfg := registrarConfig(t, p, "https://127.0.0.1:9443/.well-known/brski")
			f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.WriteString("est: {basicPasswordFile: " + q(pw) + "}\n")
			if cerr := f.Close(); err != nil || cerr != nil {
				t.Fatal(err, cerr)
			}
			code, _, errOut := runCLI(t, "registrar", "--config", cfg)
			if code != exitFailure || strings.Contains(errOut, "secret") {
				t.Fatalf("exit %d, want %d; stderr %q", code, exitFailure, errOut)
			}
			for _, w := range append(tc.want, pw) {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q does not mention %q", errOut, w)
				}
			}
		})
	}
}

func TestDaemons_Usage(t *testing.T) {
	t.Parallel()
	for _, c := range []string{"registrar", "masa"} {
		code, _, errOut := runCLI(t, c)
		if code != exitUsage || !strings.Contains(errOut, "--config FILE is required") {
			t.Errorf("%s without --config: exit %d, stderr %q", c, code, errOut)
		}
		code, _, errOut = runCLI(t, c, "--config", filepath.Join(t.TempDir(), "missing.yaml"))
		if code != exitFailure || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "missing.yaml") {
			t.Errorf("%s with a missing config: exit %d, stderr %q", c, code, errOut)
		}
	}
}

// TestDaemons_CRLBaseURLNeedsRootCA: a domain CA that issues through an
// intermediate keeps no CA generations, so no CRL would ever be served at
// the distribution point crlBaseURL puts in every LDevID; the registrar
// refuses that configuration at start, naming it.
func TestDaemons_CRLBaseURLNeedsRootCA(t *testing.T) {
	t.Parallel()
	p := daemonFiles(t)
	ca := pkitest.NewCA(t, pkitest.Name("Issuing Domain CA"), pkitest.Intermediate())
	if err := os.WriteFile(p.DomainCA, pkitest.CertPEM(ca.Chain...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.DomainCAKey, pkitest.KeyPEM(t, ca.Signer), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := registrarConfig(t, p, "https://127.0.0.1:9443/.well-known/brski")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	withCRL := strings.Replace(string(b), "domainCA: {", `domainCA: {crlBaseURL: "https://registrar.example/crl", `, 1)
	if err := os.WriteFile(cfg, []byte(withCRL), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "registrar", "--config", cfg)
	if code != exitFailure || !strings.Contains(errOut, "domainCA.crlBaseURL") || !strings.Contains(errOut, "intermediate") {
		t.Fatalf("exit %d, stderr %q; want the crlBaseURL refusal", code, errOut)
	}
}
