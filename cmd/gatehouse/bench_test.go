package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBench_LabChild runs `gatehouse bench` as an operator would: it starts
// a lab child on a fresh directory, measures the floor, runs a short load,
// stops the lab and reconciles the ledger against its store, and prints one
// JSON object with the contract's keys.
func TestBench_LabChild(t *testing.T) {
	t.Parallel()
	bin := buildGatehouse(t)
	dir := filepath.Join(t.TempDir(), "data")
	// One at a time, so the mix is exact: operations 1, 3 and 5
	// re-enrol, and of the three onboardings the second runs over CoAPS.
	cmd := exec.CommandContext(t.Context(), bin, "bench", "--lab", dir, "--count", "6", "--concurrency", "1",
		"--reenroll-share", "0.5", "--coaps-share", "0.5", "--floor", "--floor-duration", "300ms", "--json",
		"--cpuprofile", filepath.Join(t.TempDir(), "client.pprof"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, stderr.String())
	}
	var rep map[string]any
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out)
	}
	for _, k := range []string{"onboardings", "errors", "duration_s", "throughput_per_s", "p50_ms", "p95_ms", "p99_ms",
		"server_cpu_s", "server_peak_rss_mib", "floor_per_s", "ratio_to_floor", "client_cpu_per_op_ms"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("no %q in %s", k, out)
		}
	}
	if rep["errors"] != 0.0 || rep["onboardings"].(float64)+rep["reenrollments"].(float64) != 6 {
		t.Errorf("report %s", out)
	}
	// A mixed run is not comparable with the floor's one HTTPS onboarding.
	for _, k := range []string{"server_cpu_ratio_to_floor", "shared_ceiling_per_s"} {
		if _, ok := rep[k]; ok {
			t.Errorf("%q in a run with re-enrolments and CoAPS: %s", k, out)
		}
	}
	if on, n := rep["onboardings"].(float64), rep["coaps_onboardings"].(float64); on != 3 || n != 1 {
		t.Errorf("onboardings %v, coaps_onboardings %v; want 3 and 1 with both shares 0.5", on, n)
	}
	if cpu := rep["server_cpu_s"].(float64); cpu <= 0 {
		t.Errorf("server_cpu_s = %v: the lab child was not measured", cpu)
	}
	rec, _ := rep["reconciled"].(map[string]any)
	if rec["entries"] != 6.0 || rec["lost_records"] != 0.0 {
		t.Errorf("reconciled = %v", rec)
	}
	// --cpuprofile wrote a profile (gzip-compressed protobuf).
	if prof, err := os.ReadFile(cmd.Args[len(cmd.Args)-1]); err != nil || len(prof) < 2 || prof[0] != 0x1f || prof[1] != 0x8b {
		t.Errorf("--cpuprofile: %d bytes, %v", len(prof), err)
	}
	if !strings.Contains(stderr.String(), "started gatehouse lab") {
		t.Errorf("stderr = %q", stderr.String())
	}
	// The ledger reconciles again from the command line.
	code, stdout, errOut := runCLI(t, "bench", "reconcile", "--data", dir)
	if code != exitOK || !strings.Contains(stdout, "reconciled 6 ledger entries: 0 lost") {
		t.Errorf("reconcile: exit %d, %q %q", code, stdout, errOut)
	}
}

func TestBench_UsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no-lab", []string{"bench", "--count", "1"}, "--lab DIR is required"},
		{"coaps-url", []string{"bench", "--lab", "x", "--registrar", "https://127.0.0.1:1", "--coaps-registrar", "https://127.0.0.1:1"}, "want coaps://host:port"},
		{"http-registrar", []string{"bench", "--lab", "x", "--registrar", "http://127.0.0.1:1"}, "want https://host:port"},
		{"reconcile-no-data", []string{"bench", "reconcile"}, "--data DIR is required"},
		{"seed-no-devices", []string{"bench", "seed", "--data", "x"}, "--devices N"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, _, errOut := runCLI(t, tc.args...)
			if code != exitUsage || !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 {
				t.Errorf("exit %d, stderr %q; want usage error with %q", code, errOut, tc.want)
			}
		})
	}
}
