package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"math/big"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jmhodges/clock"

	"github.com/gatehouse-pki/gatehouse/internal/lab"
	"github.com/gatehouse-pki/gatehouse/pledge"
	"github.com/gatehouse-pki/gatehouse/store"
)

// killCycles and killPledges size TestLab_KillNine (reliability C1, GATE
// scaled to the unit-test budget).
const (
	killCycles  = 5
	killPledges = 8
)

// TestLab_KillNine runs `gatehouse lab` as a child process, enrols
// killPledges pledges concurrently (voucher + simpleenroll + enrollstatus,
// each in a loop), SIGKILLs the process at a random instant, restarts it on
// the same data directory, and repeats. Then (reliability C1): every
// certificate a client received is in the store byte for byte; no serial
// is used twice; no intent is left open after the restart; every stored
// certificate has its completed intent; bbolt's consistency check passes.
func TestLab_KillNine(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts the gatehouse binary; skipped with -short")
	}
	t.Parallel()
	bin := buildGatehouse(t)
	work := t.TempDir()
	data := filepath.Join(work, "data")
	var (
		mu     sync.Mutex
		ledger []*x509.Certificate
	)
	start := func() (*proc, map[string]string) {
		p := startProc(t, work, bin, labArgs(data)...)
		kv, _ := p.readUntilReady(t)
		return p, kv
	}
	for cycle := range killCycles {
		p, kv := start()
		pk, err := lab.Load(t.Context(), data)
		if err != nil {
			t.Fatal(err)
		}
		reg, err := url.Parse(kv["registrar"])
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		for i := range killPledges {
			pl := pk.Pledges[i%len(pk.Pledges)]
			wg.Go(func() {
				for ctx.Err() == nil {
					c, err := pledge.New(pledge.Config{Registrar: reg, IDevID: pl.IDevID, MASAAnchors: pk.MASAAnchors, Clock: clock.New(), MaxWait: 3 * time.Second})
					if err != nil {
						t.Error(err)
						return
					}
					res, err := c.Enroll(ctx)
					_ = c.Close()
					if err == nil && res.LDevID != nil {
						mu.Lock()
						ledger = append(ledger, res.LDevID)
						mu.Unlock()
					}
				}
			})
		}
		// SIGKILL at a uniform random instant in [200 ms, 1.7 s).
		n, _ := rand.Int(rand.Reader, big.NewInt(1500))
		time.Sleep(200*time.Millisecond + time.Duration(n.Int64())*time.Millisecond)
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-p.done
		cancel()
		wg.Wait()
		mu.Lock()
		t.Logf("cycle %d: killed; %d certificates acknowledged so far", cycle, len(ledger))
		mu.Unlock()
	}
	// Restart once more: intents are resolved before the listeners open.
	p, _ := start()
	p.stop(t)

	db, err := store.Open(filepath.Join(data, lab.RegistrarDBFile), store.Options{Clock: clock.New()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	ctx := t.Context()
	if err := db.Check(ctx); err != nil {
		t.Errorf("bbolt check: %v", err)
	}
	if open, err := db.OpenIntents(ctx); err != nil || len(open) != 0 {
		t.Errorf("open intents after restart = %d (%v)", len(open), err)
	}
	if len(ledger) == 0 {
		t.Fatal("no certificate was acknowledged in any cycle")
	}
	seen := map[string]bool{}
	for _, c := range ledger {
		sn := hex.EncodeToString(c.SerialNumber.Bytes())
		if seen[sn] {
			t.Errorf("serial %s acknowledged twice", sn)
		}
		seen[sn] = true
		rec, err := db.Certificate(ctx, c.SerialNumber)
		if err != nil || !bytes.Equal(rec.DER, c.Raw) {
			t.Errorf("acknowledged certificate %s: not in the store byte for byte (%v)", sn, err)
			continue
		}
		in, err := db.Intent(ctx, c.SerialNumber)
		if err != nil || in.Status != store.IntentCompleted {
			t.Errorf("certificate %s: intent %+v (%v), want completed", sn, in, err)
		}
	}
	t.Logf("%d cycles, %d acknowledged certificates, all present", killCycles, len(ledger))
}
