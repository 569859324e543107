package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-pki/gatehouse/internal/lab"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
)

func TestPledgeEnroll_Usage(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	if err := lab.Generate(dir, lab.GenerateOptions{Clock: pkitest.NewClock(), MASAAuthority: "127.0.0.1:9443"}); err != nil {
		t.Fatal(err)
	}
	p := lab.PathsFor(dir)
	// An IDevID outside any lab layout.
	loose := filepath.Join(t.TempDir(), "idevid.pem")
	if err := copyFile(p.PledgeIDevID("GH-0001"), loose); err != nil {
		t.Fatal(err)
	}
	id, key := p.PledgeIDevID("GH-0001"), p.PledgeKey("GH-0001")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"no-flags", []string{"pledge", "enroll"}, exitUsage, "is required"},
		{"no-key", []string{"pledge", "enroll", "--registrar", "https://127.0.0.1:1", "--idevid", id}, exitUsage, "--key is required"},
		{"not-a-url", []string{"pledge", "enroll", "--registrar", "127.0.0.1:8443", "--idevid", id, "--key", key}, exitUsage, "want https://host:port"},
		{"no-anchor", []string{"pledge", "enroll", "--registrar", "https://127.0.0.1:1", "--idevid", loose, "--key", key}, exitUsage, "--masa-anchor is required"},
		{"key-mismatch", []string{"pledge", "enroll", "--registrar", "https://127.0.0.1:1", "--idevid", id, "--key", p.PledgeKey("GH-0002")}, exitFailure, "does not match"},
		{"reenroll-no-flags", []string{"pledge", "reenroll"}, exitUsage, "is required"},
		{"reenroll-no-ca", []string{"pledge", "reenroll", "--registrar", "https://127.0.0.1:1", "--cert", loose, "--key", key}, exitUsage, "--ca is required"},
		{"reenroll-unreachable", []string{"pledge", "reenroll", "--registrar", "https://127.0.0.1:1", "--cert", id, "--key", key, "--ca", p.DomainCA}, exitFailure, "cannot connect to the registrar"},
		{"bad-admin", []string{"devices", "list", "--admin", "127.0.0.1:9090"}, exitUsage, "want http://host:port"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, _, errOut := runCLI(t, tc.args...)
			if code != tc.wantCode || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, tc.wantErr) {
				t.Fatalf("exit %d, stderr %q; want exit %d and one line with %q", code, errOut, tc.wantCode, tc.wantErr)
			}
		})
	}
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o600)
}
