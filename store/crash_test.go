package store_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jmhodges/clock"
	bolt "go.etcd.io/bbolt"

	"github.com/gatehouse-pki/gatehouse/store"
	"github.com/gatehouse-pki/gatehouse/store/storetest"
)

// envCrashDB, when set, makes TestCrashHelperProcess act as the writer
// process of TestDB_CrashKill9 on the database it names.
const envCrashDB = "GATEHOUSE_STORE_CRASH_DB"

const (
	crashCycles  = 20
	crashWriters = 8
	crashMinAcks = 3                      // acknowledgements to see before the kill timer starts
	crashMaxWait = 300 * time.Millisecond // upper bound of the random kill delay
)

// derFor derives the certificate bytes the writer stores for serial, so
// that the parent can check them byte for byte without being told them.
func derFor(serial *big.Int) []byte {
	var der []byte
	for i := range 8 {
		h := sha256.Sum256(fmt.Appendf(nil, "%x/%d", serial, i))
		der = append(der, h[:]...)
	}
	return der
}

// TestCrashHelperProcess is the child of TestDB_CrashKill9: it runs
// crashWriters goroutines doing the full issuance protocol and prints
// "ack <serial>" for each issuance only after CompleteIssuance returned.
// It never ends on its own (except on an error, which the parent reports).
func TestCrashHelperProcess(t *testing.T) {
	path := os.Getenv(envCrashDB)
	if path == "" {
		t.Skip("helper process of TestDB_CrashKill9")
	}
	fail := func(err error) {
		fmt.Fprintf(os.Stdout, "error %v\n", err)
		os.Exit(2)
	}
	db, err := store.Open(path, store.Options{Clock: clock.New()})
	if err != nil {
		fail(err)
	}
	ctx := t.Context()
	// As the registrar does at start-up, before serving.
	if _, err := db.ResolveIntents(ctx); err != nil {
		fail(err)
	}
	var out sync.Mutex
	for w := range crashWriters {
		go func() {
			dev := storetest.Key(fmt.Sprintf("SN-%d", w))
			for i := 0; ; i++ {
				s := storetest.NewSerial()
				hexSerial := s.Text(16)
				in := store.Intent{Serial: s, Device: dev, TBSHash: sha256.Sum256(s.Bytes()), Generation: "g1"}
				if err := db.BeginIssuance(ctx, in, store.Event{Type: "issue-intent", Fields: map[string]string{"cert_serial": hexSerial}}); err != nil {
					fail(err)
				}
				if i%8 == 7 { // a lint or signing failure now and then
					if err := db.AbandonIssuance(ctx, s, "simulated signing failure"); err != nil {
						fail(err)
					}
					continue
				}
				c := store.Completion{Serial: s, DER: derFor(s), Device: dev, NotAfter: storetest.Epoch}
				if err := db.CompleteIssuance(ctx, c, store.Event{Type: "issue-success", Fields: map[string]string{"cert_serial": hexSerial}}); err != nil {
					fail(err)
				}
				out.Lock()
				_, err := os.Stdout.Write([]byte("ack " + hexSerial + "\n")) // one write(2): unbuffered, whole line
				out.Unlock()
				if err != nil {
					fail(err)
				}
				if _, err := db.AppendAudit(ctx, store.Event{Type: "voucher-delivered", Fields: map[string]string{"device": dev.String()}}); err != nil {
					fail(err)
				}
			}
		}()
	}
	time.Sleep(time.Minute) // the parent kills us long before
	fail(errors.New("helper process was not killed within a minute"))
}

// TestDB_CrashKill9 kills a writer process with SIGKILL at a random instant,
// crashCycles times on the same database, and after each kill checks the
// invariants of reliability C1 (a–e) and C7 on the reopened store.
func TestDB_CrashKill9(t *testing.T) {
	if os.Getenv(envCrashDB) != "" {
		t.Skip("inside the helper process")
	}
	t.Parallel()
	path := filepath.Join(t.TempDir(), "crash.db")
	acked := map[string]bool{}      // every serial ever acknowledged
	statuses := map[string]string{} // intent status per serial at the last check
	start := time.Now()
	for cycle := range crashCycles {
		c0 := time.Now()
		newAcks, stderr := runAndKill(t, path, cycle == 0)
		c1 := time.Now()
		for _, s := range newAcks {
			if acked[s] {
				t.Fatalf("cycle %d: serial %s acknowledged twice", cycle, s)
			}
			acked[s] = true
		}
		verifyAfterCrash(t, path, acked, statuses, stderr)
		t.Logf("cycle %d: %d acknowledged (%d in all) run %s verify %s", cycle, len(newAcks), len(acked), c1.Sub(c0), time.Since(c1))
	}
	t.Logf("%d cycles, %d acknowledged issuances, %d serials, %s", crashCycles, len(acked), len(statuses), time.Since(start).Round(time.Millisecond))
}

// runAndKill starts the helper, waits for a few acknowledgements, kills it
// after a random delay and returns every acknowledged serial it printed.
func runAndKill(t *testing.T, path string, checkLock bool) ([]string, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelperProcess$")
	cmd.Env = append(os.Environ(), envCrashDB+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() }) // after a failed check; a no-op once reaped
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() { // a last line without "\n" is never returned as complete by a killed writer
			lines <- sc.Text()
		}
	}()
	var acks []string
	read := func(line string) {
		s, ok := strings.CutPrefix(line, "ack ")
		if !ok {
			_ = cmd.Process.Kill()
			t.Fatalf("helper: %q (stderr: %s)", line, stderr.String())
		}
		acks = append(acks, s)
	}
	deadline := time.After(20 * time.Second)
	for len(acks) < crashMinAcks {
		select {
		case line, ok := <-lines:
			if !ok {
				_ = cmd.Wait()
				t.Fatalf("helper exited before %d acknowledgements: %v (stderr: %s)", crashMinAcks, cmd.ProcessState, stderr.String())
			}
			read(line)
		case <-deadline:
			_ = cmd.Process.Kill()
			t.Fatalf("no %d acknowledgements within 20 s (stderr: %s)", crashMinAcks, stderr.String())
		}
	}
	if checkLock {
		assertLocked(t, path) // the child holds the file
	}
	n, err := rand.Int(rand.Reader, big.NewInt(int64(crashMaxWait/time.Microsecond)+1))
	if err != nil {
		t.Fatal(err)
	}
	kill := time.After(time.Duration(n.Int64()) * time.Microsecond) // the random instant is the experiment
	for killed := false; ; {
		select {
		case <-kill:
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed, kill = true, nil
		case line, ok := <-lines:
			if !ok {
				_ = cmd.Wait()
				ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
				if !killed || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
					t.Fatalf("helper ended on its own (%v), not by SIGKILL (stderr: %s)", cmd.ProcessState, stderr.String())
				}
				return acks, stderr.String()
			}
			read(line)
		}
	}
}

type rawIntent struct {
	Serial string `json:"serial"`
	Status string `json:"status"`
}

type rawCert struct {
	Serial string `json:"serial"`
	DER    []byte `json:"der"`
}

// verifyAfterCrash checks the killed writer's database.
func verifyAfterCrash(t *testing.T, path string, acked map[string]bool, statuses map[string]string, stderr string) {
	t.Helper()
	ctx := t.Context()

	// (c) bbolt's own consistency check, and the raw buckets, before the
	// store touches the file.
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	intents := map[string]string{}
	certs := map[string][]byte{}
	err = b.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			t.Errorf("bbolt check: %v", err)
		}
		if err := tx.Bucket([]byte("intents")).ForEach(func(k, v []byte) error {
			var r rawIntent
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			if r.Serial != new(big.Int).SetBytes(k).Text(16) {
				return fmt.Errorf("intent under key %x says serial %s", k, r.Serial)
			}
			intents[r.Serial] = r.Status
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket([]byte("certificates")).ForEach(func(k, v []byte) error {
			var r rawCert
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			if r.Serial != new(big.Int).SetBytes(k).Text(16) {
				return fmt.Errorf("certificate under key %x says serial %s", k, r.Serial)
			}
			certs[r.Serial] = r.DER
			return nil
		})
	})
	if cerr := b.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	// (b, e) every certificate has a completed intent and vice versa; at most
	// one intent per writer is open; an intent seen before keeps its serial
	// and only moves from open to closed.
	open := 0
	for s, st := range intents {
		_, hasCert := certs[s]
		switch {
		case st == string(store.IntentCompleted) && !hasCert:
			t.Errorf("intent %s completed without a certificate", s)
		case st != string(store.IntentCompleted) && hasCert:
			t.Errorf("certificate %s has a %s intent", s, st)
		case st == string(store.IntentOpen):
			open++
		}
		if prev, ok := statuses[s]; ok && prev != string(store.IntentOpen) && prev != st {
			t.Errorf("intent %s went from %s to %s", s, prev, st)
		}
	}
	for s := range certs {
		if _, ok := intents[s]; !ok {
			t.Errorf("certificate %s without an intent", s)
		}
	}
	for s := range statuses {
		if _, ok := intents[s]; !ok {
			t.Errorf("intent %s disappeared", s)
		}
	}
	if open > crashWriters {
		t.Errorf("%d open intents after the kill, more than the %d writers", open, crashWriters)
	}

	db, err := store.Open(path, store.Options{Clock: fixedClock()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	}()

	// (a) every acknowledged certificate is present, byte-identical.
	for s := range acked {
		serial := mustSerial(s)
		c, err := db.Certificate(ctx, serial)
		if err != nil {
			t.Fatalf("acknowledged serial %s: %v (helper stderr: %s)", s, err, stderr)
		}
		if !bytes.Equal(c.DER, derFor(serial)) {
			t.Fatalf("acknowledged serial %s: DER differs", s)
		}
	}

	// (d) start-up resolution leaves nothing open.
	res, err := db.ResolveIntents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Abandoned+res.Completed != open {
		t.Errorf("ResolveIntents = %+v, %d were open", res, open)
	}
	if left, err := db.OpenIntents(ctx); err != nil || len(left) != 0 {
		t.Fatalf("open intents after ResolveIntents: %d, %v", len(left), err)
	}

	// C7 and Q7: the chain verifies; each certificate has exactly one
	// issue-success, each intent exactly one issue-intent.
	head, err := db.VerifyAuditChain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	success, intent := map[string]int{}, map[string]int{}
	for from := uint64(1); from <= head.Count; from += 1000 {
		events, err := db.Audit(ctx, from, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			switch e.Type {
			case "issue-success":
				success[e.Fields["cert_serial"]]++
			case "issue-intent":
				intent[e.Fields["cert_serial"]]++
			}
		}
	}
	for s := range intents {
		_, hasCert := certs[s]
		if intent[s] != 1 || (hasCert && success[s] != 1) || (!hasCert && success[s] != 0) {
			t.Errorf("serial %s: %d issue-intent, %d issue-success events; certificate stored: %v", s, intent[s], success[s], hasCert)
		}
	}

	// No reuse after the restart: the serials this kill left open (now
	// abandoned or completed) and a sample of the others are refused; a new
	// one issues. (Checking every serial each cycle would be quadratic.)
	checked := 0
	for s, st := range intents { // map order: a different sample each cycle
		if st != string(store.IntentOpen) && checked >= 16 {
			continue
		}
		checked++
		err := db.BeginIssuance(ctx, store.Intent{Serial: mustSerial(s), Device: storetest.Key("SN-parent"), Generation: "g1"})
		if !errors.Is(err, store.ErrSerialExists) {
			t.Fatalf("BeginIssuance with used serial %s (%s before the restart): %v", s, st, err)
		}
	}
	s := storetest.NewSerial()
	ev := func(typ string) store.Event {
		return store.Event{Type: typ, Fields: map[string]string{"cert_serial": s.Text(16)}}
	}
	if err := db.BeginIssuance(ctx, store.Intent{Serial: s, Device: storetest.Key("SN-parent"), Generation: "g1"}, ev("issue-intent")); err != nil {
		t.Fatal(err)
	}
	if err := db.CompleteIssuance(ctx, store.Completion{Serial: s, DER: derFor(s), Device: storetest.Key("SN-parent")}, ev("issue-success")); err != nil {
		t.Fatal(err)
	}
	acked[s.Text(16)] = true

	for s, st := range intents {
		statuses[s] = st
	}
	statuses[s.Text(16)] = string(store.IntentCompleted)
	// Resolved intents are closed now; remember their final status.
	for s, st := range statuses {
		if st == string(store.IntentOpen) {
			in, err := db.Intent(ctx, mustSerial(s))
			if err != nil {
				t.Fatal(err)
			}
			statuses[s] = string(in.Status)
		}
	}
}

func mustSerial(s string) *big.Int {
	v, ok := new(big.Int).SetString(s, 16)
	if !ok {
		panic("bad serial " + s)
	}
	return v
}
