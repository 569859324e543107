package main

import (
	"bufio"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jmhodges/clock"

	"github.com/gatehouse-pki/gatehouse/registrar"
)

// caKillCycles is how many offline rollovers TestCA_RolloverKillNine kills.
const caKillCycles = 12

// TestCA_RolloverKillNine is reliability R4 with real process death: an
// offline `gatehouse ca rollover` is SIGKILLed at a random instant, again
// and again, on one data directory. After every kill the store opens and
// has exactly one active generation whose chain of generations parses;
// a final run completes whatever rollover was left in progress.
func TestCA_RolloverKillNine(t *testing.T) {
	if testing.Short() {
		t.Skip("kills the gatehouse binary; skipped with -short")
	}
	t.Parallel()
	bin := buildGatehouse(t)
	work := t.TempDir()
	data := filepath.Join(work, "data")
	// The child runs on the real clock, so the lab PKI is made with it too.
	l := openLabOn(t, data, clock.New())
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	status := func() registrar.CAStatus {
		t.Helper()
		code, out, errOut := runBin(t, work, bin, "ca", "status", "--json", "--data", data)
		if code != 0 {
			t.Fatalf("ca status after a kill: exit %d: %s", code, errOut)
		}
		var st registrar.CAStatus
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatal(err)
		}
		active := 0
		for _, g := range st.Generations {
			if g.Active {
				active++
			}
		}
		if active != 1 || st.Issuing == "" {
			t.Fatalf("%d active generations after a kill, want exactly 1: %+v", active, st)
		}
		return st
	}
	interrupted := 0
	for range caKillCycles {
		// The command names each durable step on stderr and pauses after
		// it (the test hook rolloverPauseEnv); the kill lands right after
		// the first or second step this run takes, or, for a run that
		// finds less to do, after it has finished.
		cmd := exec.CommandContext(t.Context(), bin, "ca", "rollover", "--data", data, "--admin", "http://127.0.0.1:1")
		cmd.Dir = work
		cmd.Env = append(os.Environ(), rolloverPauseEnv+"=200ms")
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		steps, killAfter := 0, 1+rand.IntN(2)
		sc := bufio.NewScanner(stderr)
		for steps < killAfter && sc.Scan() {
			if strings.HasPrefix(sc.Text(), "rollover step: ") {
				steps++
			}
		}
		_ = cmd.Process.Signal(os.Kill)
		_, _ = io.Copy(io.Discard, stderr)
		_ = cmd.Wait()
		if st := status(); st.Rollover != nil {
			interrupted++
		}
	}
	// A fresh rollover has six steps, so most kills land inside one.
	if interrupted < caKillCycles/3 {
		t.Fatalf("only %d of %d kills interrupted a rollover: the test did not exercise R4", interrupted, caKillCycles)
	}
	code, out, errOut := runBin(t, work, bin, "ca", "rollover", "--data", data)
	if code != 0 {
		t.Fatalf("final rollover: exit %d: %s%s", code, out, errOut)
	}
	st := status()
	if st.Rollover != nil || len(st.Generations) < 2 {
		t.Fatalf("after the final rollover: %+v", st)
	}
	t.Logf("%d kills, %d left a rollover in progress, %d generations in the end", caKillCycles, interrupted, len(st.Generations))
	// The restarted lab issues with the last generation and serves its
	// link certificates.
	l = openLabOn(t, data, clock.New())
	defer l.Close()
	if cs := l.Registrar.CACertificates(); registrar.GenerationID(cs[0]) != st.Issuing {
		t.Errorf("the lab serves %x first, want the issuing generation %s", cs[0].SubjectKeyId, st.Issuing)
	}
}
