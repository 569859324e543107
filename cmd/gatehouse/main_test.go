package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/jmhodges/clock"

	"github.com/gatehouse-pki/gatehouse/configs"
)

// runCLI runs the command line in-process and returns exit code and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	fc := clock.NewFake()
	fc.Set(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	var out, errb bytes.Buffer
	a := &app{clk: fc, stdout: &out, stderr: &errb}
	code = a.run(args)
	return code, out.String(), errb.String()
}

func TestConfigExample(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"registrar", "masa"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := runCLI(t, "config", "example", name)
			if code != exitOK || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			// What it prints loads through the real loader.
			var err error
			if name == "registrar" {
				_, err = configs.ParseRegistrar(strings.NewReader(out))
			} else {
				_, err = configs.ParseMASA(strings.NewReader(out))
			}
			if err != nil {
				t.Fatalf("printed example does not load: %v", err)
			}
			if !strings.HasPrefix(out, "#") {
				t.Fatalf("example is not commented: %.40q", out)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"unknown-example", []string{"config", "example", "nope"}, exitUsage, "no example config"},
		{"missing-arg", []string{"config", "example"}, exitUsage, "accepts 1 arg"},
		{"unknown-flag", []string{"version", "--frobnicate"}, exitUsage, "unknown flag"},
		{"unknown-command", []string{"frobnicate"}, exitUsage, "unknown command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, _, errOut := runCLI(t, tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tc.wantCode, errOut)
			}
			// One clear line on stderr.
			if !strings.HasPrefix(errOut, "gatehouse: ") || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, tc.wantErr) {
				t.Fatalf("stderr = %q, want one line mentioning %q", errOut, tc.wantErr)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	code, out, _ := runCLI(t, "version")
	if code != exitOK || !strings.HasPrefix(out, "gatehouse devel (go1.") {
		t.Fatalf("exit %d, out %q", code, out)
	}
}
