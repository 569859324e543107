package main

import (
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmhodges/clock"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-pki/gatehouse/internal/lab"
	"github.com/gatehouse-pki/gatehouse/registrar"
)

// openTestLab opens the lab in dir on free loopback ports, on a fake clock
// at the fixed test date.
func openTestLab(t *testing.T, dir string) *lab.Lab {
	t.Helper()
	fc := clock.NewFake()
	fc.Set(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	return openLabOn(t, dir, fc)
}

// openLabOn opens the lab in dir on free loopback ports, on clk.
func openLabOn(t *testing.T, dir string, clk clock.Clock) *lab.Lab {
	t.Helper()
	l, err := lab.Open(t.Context(), lab.Options{
		Dir: dir, HTTPSAddr: "127.0.0.1:0", MASAAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Clock: clk, Logger: slog.New(slog.DiscardHandler), Metrics: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func caStatusJSON(t *testing.T, args ...string) registrar.CAStatus {
	t.Helper()
	code, out, errOut := runCLI(t, append([]string{"ca", "status", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("ca status: exit %d: %s", code, errOut)
	}
	var st registrar.CAStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("ca status --json: %v\n%s", err, out)
	}
	return st
}

// TestCA_Offline runs status and rollover on a stopped lab's data
// directory; the next start issues with the new generation and serves the
// four rollover certificates on /cacerts.
func TestCA_Offline(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	l := openTestLab(t, dir)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	st := caStatusJSON(t, "--data", dir)
	if len(st.Generations) != 1 || !st.Generations[0].Active || st.Issuing != st.Generations[0].ID {
		t.Fatalf("status before: %+v", st)
	}
	code, out, errOut := runCLI(t, "ca", "rollover", "--data", dir)
	if code != 0 || !strings.Contains(out, "rolled over (offline)") {
		t.Fatalf("ca rollover: exit %d\n%s%s", code, out, errOut)
	}
	st = caStatusJSON(t, "--data", dir)
	if len(st.Generations) != 2 || st.Issuing != st.Generations[1].ID || st.Generations[1].Previous != st.Generations[0].ID || st.OverlapEnd.IsZero() || st.Rollover != nil {
		t.Fatalf("status after: %+v", st)
	}
	code, out, _ = runCLI(t, "ca", "status", "--data", dir)
	if code != 0 || !strings.Contains(out, "issuing: "+st.Issuing) || !strings.Contains(out, "overlap ends:") {
		t.Errorf("ca status text:\n%s", out)
	}
	l = openTestLab(t, dir)
	defer l.Close()
	if cs := l.Registrar.CACertificates(); len(cs) != 4 || registrar.GenerationID(cs[0]) != st.Issuing {
		t.Errorf("after restart /cacerts has %d certificates, first %x", len(cs), cs[0].SubjectKeyId)
	}
}

// TestCA_Online: with the lab running (its store locked) the commands go
// through its admin API; without a reachable admin API they refuse to
// touch the locked store.
func TestCA_Online(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	l := openTestLab(t, dir)
	defer l.Close()
	var ready atomic.Bool
	ready.Store(true)
	srv := &http.Server{Handler: adminHandler(prometheus.NewRegistry(), l.Registrar.AdminHandler(), &ready), ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(l.Admin) }()
	t.Cleanup(func() { _ = srv.Close() })
	admin := "http://" + lab.Dialable(l.Admin)

	code, out, errOut := runCLI(t, "ca", "rollover", "--data", dir, "--admin", admin)
	if code != 0 || !strings.Contains(out, "rolled over (online)") {
		t.Fatalf("ca rollover online: exit %d\n%s%s", code, out, errOut)
	}
	if cs := l.Registrar.CACertificates(); len(cs) != 4 {
		t.Errorf("the running lab serves %d CA certificates after an online rollover, want 4", len(cs))
	}
	st := caStatusJSON(t, "--data", dir, "--admin", admin)
	if len(st.Generations) != 2 || !st.Generations[1].Active {
		t.Errorf("online status: %+v", st)
	}
	// Revoke: unknown serial is a clear failure; a bad reason a usage error.
	if code, _, errOut := runCLI(t, "ca", "revoke", "abcdef", "--data", dir, "--admin", admin); code != exitFailure || !strings.Contains(errOut, "no certificate") {
		t.Errorf("revoke unknown serial: exit %d: %s", code, errOut)
	}
	if code, _, _ := runCLI(t, "ca", "revoke", "abcdef", "--reason", "certificateHold", "--data", dir); code != exitUsage {
		t.Errorf("revoke with certificateHold: exit %d, want %d", code, exitUsage)
	}
	// Locked store and nothing answering on the admin address.
	code, _, errOut = runCLI(t, "ca", "rollover", "--data", dir, "--admin", "http://127.0.0.1:1")
	if code == 0 || !strings.Contains(errOut, "locked by a running process") {
		t.Errorf("rollover with the store locked and no admin API: exit %d: %s", code, errOut)
	}
}

// TestCA_StatusRenewalWindowFromConfig: offline `ca status --config` lists
// renewals within the config's ldevid.renewalWindow; --renewal-window
// overrides it.
func TestCA_StatusRenewalWindowFromConfig(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	l := openTestLab(t, dir)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	code, example, errOut := runCLI(t, "config", "example", "registrar")
	if code != 0 {
		t.Fatalf("config example: %s", errOut)
	}
	p := lab.PathsFor(dir)
	cfgText := strings.Replace(example, "dataDir: /var/lib/gatehouse", "dataDir: "+dir, 1)
	cfgText = strings.Replace(cfgText, "  certFile: /etc/gatehouse/domain-ca.pem\n  keyFile: /etc/gatehouse/domain-ca-key.pem\n",
		"  certFile: "+p.DomainCA+"\n  keyFile: "+p.DomainCAKey+"\n", 1)
	cfgText = strings.Replace(cfgText, "  renewalWindow: 720h", "  renewalWindow: 240h", 1)
	if !strings.Contains(cfgText, "renewalWindow: 240h") || !strings.Contains(cfgText, "dataDir: "+dir) {
		t.Fatalf("the example config changed shape:\n%s", cfgText)
	}
	cfgFile := filepath.Join(t.TempDir(), "registrar.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	if st := caStatusJSON(t, "--config", cfgFile); st.RenewalWindow != "240h0m0s" {
		t.Errorf("renewal window %q, want the config's 240h0m0s", st.RenewalWindow)
	}
	if st := caStatusJSON(t, "--config", cfgFile, "--renewal-window", "48h"); st.RenewalWindow != "48h0m0s" {
		t.Errorf("renewal window %q, want the flag's 48h0m0s", st.RenewalWindow)
	}
	if st := caStatusJSON(t, "--data", dir); st.RenewalWindow != registrar.DefaultRenewalWindow.String() {
		t.Errorf("lab renewal window %q, want the default", st.RenewalWindow)
	}
	if code, _, errOut := runCLI(t, "ca", "status", "--config", cfgFile, "--renewal-window", "-1h"); code != exitUsage {
		t.Errorf("negative --renewal-window: exit %d: %s", code, errOut)
	}
}

// TestCA_StatusWarnsAboutRegistrarCert: after a rollover `ca status` warns
// that the registrar's own certificate comes from the generation that no
// longer issues, and when it expires before the overlap ends.
func TestCA_StatusWarnsAboutRegistrarCert(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	l := openTestLab(t, dir)
	ra := l.PKI.Registrar.Leaf
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "ca", "status", "--data", dir)
	if code != 0 || strings.Contains(errOut, "warning") {
		t.Fatalf("before a rollover: exit %d, stderr %q", code, errOut)
	}
	old := caStatusJSON(t, "--data", dir).Issuing
	if code, out, errOut := runCLI(t, "ca", "rollover", "--data", dir); code != 0 {
		t.Fatalf("ca rollover: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := runCLI(t, "ca", "status", "--data", dir)
	if code != 0 || !strings.Contains(errOut, "warning: registrar certificate "+lab.PathsFor(dir).Registrar+": issued by CA generation "+old+", which no longer issues") {
		t.Errorf("after a rollover: exit %d, stderr %q", code, errOut)
	}
	if strings.Contains(out, "warning") {
		t.Errorf("warnings on stdout:\n%s", out)
	}
	st := caStatusJSON(t, "--data", dir)
	ws := registrarCertWarnings(ra, &st)
	if expiresFirst := ra.NotAfter.Before(st.OverlapEnd); len(ws) != 1+btoi(expiresFirst) || expiresFirst != strings.Contains(errOut, "before the overlap ends") {
		t.Errorf("registrar certificate until %s, overlap until %s: warnings %q", ra.NotAfter, st.OverlapEnd, ws)
	}
	// A certificate of the issuing generation that outlives the overlap is
	// fine; one that does not is not.
	current := *ra
	current.AuthorityKeyId, _ = hex.DecodeString(st.Issuing)
	current.NotAfter = st.OverlapEnd.Add(time.Hour)
	if ws := registrarCertWarnings(&current, &st); len(ws) != 0 {
		t.Errorf("warnings for a current certificate: %q", ws)
	}
	current.NotAfter = st.OverlapEnd.Add(-time.Hour)
	if ws := registrarCertWarnings(&current, &st); len(ws) != 1 || !strings.Contains(ws[0], "before the overlap ends") {
		t.Errorf("warnings for a certificate that expires in the overlap: %q", ws)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
