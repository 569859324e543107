package main

import (
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-pki/gatehouse/internal/lab"
	"github.com/gatehouse-pki/gatehouse/registrar"
)

// labDomainCA reads lab/domain/ca.pem (one certificate) and returns it
// with its generation ID.
func labDomainCA(t *testing.T, p lab.Paths) (*x509.Certificate, string) {
	t.Helper()
	cs, err := readCertificates(p.DomainCA)
	if err != nil || len(cs) != 1 {
		t.Fatalf("%s: %d certificates, %v", p.DomainCA, len(cs), err)
	}
	return cs[0], registrar.GenerationID(cs[0])
}

// checkGenerationFiles requires lab/domain/ca-<gen>.pem for every
// generation of st, each holding exactly that generation's certificate.
func checkGenerationFiles(t *testing.T, p lab.Paths, st registrar.CAStatus) {
	t.Helper()
	for _, g := range st.Generations {
		cs, err := readCertificates(p.DomainCAGeneration(g.ID))
		if err != nil || len(cs) != 1 || registrar.GenerationID(cs[0]) != g.ID {
			t.Errorf("ca-%s.pem: %d certificates, %v", g.ID, len(cs), err)
		}
	}
}

// TestLab_DomainCAFileFollowsRollover: lab/domain/ca.pem is the issuing
// generation's certificate after an offline rollover (from the next
// start) and after an online one (at once), and every generation's root
// stays in lab/domain/ca-<gen>.pem; the lab keeps loading its first key.
func TestLab_DomainCAFileFollowsRollover(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	p := lab.PathsFor(dir)
	l := openTestLab(t, dir)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	first, firstID := labDomainCA(t, p)
	st := caStatusJSON(t, "--data", dir)
	if st.Issuing != firstID {
		t.Fatalf("ca.pem is generation %s, the store issues with %s", firstID, st.Issuing)
	}
	checkGenerationFiles(t, p, st)

	// Offline: the stopped lab's ca.pem changes at the next start.
	if code, out, errOut := runCLI(t, "ca", "rollover", "--data", dir); code != 0 {
		t.Fatalf("ca rollover: exit %d\n%s%s", code, out, errOut)
	}
	if _, id := labDomainCA(t, p); id != firstID {
		t.Errorf("an offline rollover rewrote ca.pem without a lab running")
	}
	l = openTestLab(t, dir)
	defer l.Close()
	sp, err := l.Registrar.CAStatus(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	st = *sp
	if _, id := labDomainCA(t, p); id != st.Issuing || id == firstID || len(st.Generations) != 2 {
		t.Fatalf("after a restart ca.pem is %s; the store issues with %s (%d generations)", id, st.Issuing, len(st.Generations))
	}
	checkGenerationFiles(t, p, st)
	if !l.PKI.DomainCA.Equal(first) {
		t.Errorf("the lab's first domain CA is %q, want the original root", l.PKI.DomainCA.Subject)
	}

	// Online, through the lab's admin handler: at once.
	var ready atomic.Bool
	ready.Store(true)
	srv := &http.Server{Handler: adminHandler(prometheus.NewRegistry(), l.AdminHandler(), &ready), ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(l.Admin) }()
	t.Cleanup(func() { _ = srv.Close() })
	admin := "http://" + lab.Dialable(l.Admin)
	if code, out, errOut := runCLI(t, "ca", "rollover", "--data", dir, "--admin", admin); code != 0 || !strings.Contains(out, "(online)") {
		t.Fatalf("ca rollover online: exit %d\n%s%s", code, out, errOut)
	}
	st = caStatusJSON(t, "--data", dir, "--admin", admin)
	if _, id := labDomainCA(t, p); id != st.Issuing || len(st.Generations) != 3 {
		t.Fatalf("after an online rollover ca.pem is %s; the lab issues with %s (%d generations)", id, st.Issuing, len(st.Generations))
	}
	checkGenerationFiles(t, p, st)
	if cs := l.Registrar.CACertificates(); registrar.GenerationID(cs[0]) != st.Issuing {
		t.Errorf("/cacerts starts with %x", cs[0].SubjectKeyId)
	}
	// Nothing but the certificates is left in the directory (no
	// temporary files), and the key files are untouched.
	ents, err := os.ReadDir(filepath.Dir(p.DomainCA))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

// TestLab_RolloverEndToEnd runs the lab binary: an online `ca rollover`
// rewrites lab/domain/ca.pem to the new root at once, an LDevID enrolled
// afterwards verifies with openssl against that file alone, the old root
// stays in ca-<gen>.pem, and the lab restarts on the rewritten files.
func TestLab_RolloverEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the gatehouse binary; skipped with -short")
	}
	t.Parallel()
	bin := buildGatehouse(t)
	work := t.TempDir()
	data := filepath.Join(work, "data")
	p := lab.PathsFor(data)
	proc := startProc(t, work, bin, labArgs(data)...)
	kv, lines := proc.readUntilReady(t)
	waitHealthy(t, kv["admin"]+"/readyz")
	_, oldID := labDomainCA(t, p)

	code, out, errOut := runBin(t, work, bin, "ca", "rollover", "--data", data, "--admin", kv["admin"])
	if code != 0 || !strings.Contains(out, "(online)") {
		t.Fatalf("ca rollover: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runBin(t, work, bin, "ca", "status", "--json", "--data", data, "--admin", kv["admin"])
	var st registrar.CAStatus
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("ca status: exit %d\n%s%s", code, out, errOut)
	}
	newRoot, newID := labDomainCA(t, p)
	if newID != st.Issuing || newID == oldID || len(st.Generations) != 2 {
		t.Fatalf("ca.pem is %s after the rollover; the lab issues with %s (was %s)", newID, st.Issuing, oldID)
	}
	checkGenerationFiles(t, p, st)

	var pledgeCmd string
	for _, l := range lines {
		if strings.Contains(l, " pledge enroll ") && pledgeCmd == "" {
			pledgeCmd = strings.TrimSpace(l)
		}
	}
	args := strings.Fields(pledgeCmd)
	if len(args) < 2 {
		t.Fatalf("no pledge command in the banner:\n%s", strings.Join(lines, "\n"))
	}
	code, out, errOut = runBin(t, work, args[0], args[1:]...)
	if code != 0 || !strings.Contains(out, "enrolled: LDevID") {
		t.Fatalf("pledge enroll: exit %d\n%s%s", code, out, errOut)
	}
	ldevid := filepath.Join(data, "out", "GH-0001", "ldevid.pem")
	cs, err := readCertificates(ldevid)
	if err != nil || cs[0].CheckSignatureFrom(newRoot) != nil {
		t.Fatalf("the LDevID enrolled after the rollover is not signed by ca.pem's root: %v", err)
	}
	opensslVerify(t, p.DomainCA, ldevid)

	proc.stop(t)
	proc = startProc(t, work, bin, labArgs(data)...)
	_, lines = proc.readUntilReady(t)
	if !strings.Contains(lines[0], "reusing the lab PKI") {
		t.Fatalf("restart banner: %q", lines[0])
	}
	if _, id := labDomainCA(t, p); id != newID {
		t.Errorf("after a restart ca.pem is %s, want %s", id, newID)
	}
	proc.stop(t)
}
