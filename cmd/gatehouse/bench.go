package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-pki/gatehouse/internal/bench"
	"github.com/gatehouse-pki/gatehouse/internal/lab"
	"github.com/gatehouse-pki/gatehouse/store"
)

// benchFlags are the flags of `gatehouse bench`. The names and the --json
// keys are a contract (issue #7).
type benchFlags struct {
	registrar, labDir, admin, ledger string
	coapsRegistrar, cpuProfile       string
	count, concurrency, serverPID    int
	holdConns                        int
	duration                         time.Duration
	rate, coapsShare, reenrollShare  float64
	json, floor                      bool
	floorDuration                    time.Duration
}

// labReadyTimeout bounds the start of a lab child (the first start
// generates the lab PKI).
const labReadyTimeout = time.Minute

func (a *app) benchCmd() *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench --lab DIR [--registrar URL] [--count N | --duration D] [--concurrency C] [--rate R] [--reenroll-share F] [--floor] [--json]",
		Short: "Load a registrar with simulated pledges and report throughput, latency and server cost",
		Long: `Simulates pledges doing the full BRSKI onboarding over HTTPS (voucher,
voucher_status, cacerts, csrattrs, simpleenroll, enrollstatus) against a
registrar. Every pledge has its own IDevID, minted from the lab manufacturer
under --lab DIR; the pledge client verifies every voucher and LDevID.

Load: --concurrency C pledges back to back (closed loop), or --rate R arrivals
a second with at most C in flight (open loop: latency counts from the
scheduled arrival), for --count N operations or for --duration D.
--reenroll-share F makes that share of the operations renew an LDevID issued
earlier in the run (simplereenroll). --coaps-share F runs that share of the
onboardings as cBRSKI over CoAP/DTLS (COSE voucher, EST-coaps) against the
lab child's CoAPS listener or --coaps-registrar URL (default: the
--registrar host, port 5684). --hold-conns N keeps N idle keep-alive connections open
to the registrar during the run (each carried a GET /cacerts), to measure its
memory with many connections.

Without --registrar it starts "gatehouse lab --data DIR" as a child process on
free loopback ports (its log goes to DIR/bench-lab.log), measures it, stops it
at the end and reconciles the ledger against its store. With --registrar it
measures the server given by --server-pid (reading /proc/PID) or by --admin
URL (process_cpu_seconds_total and process_resident_memory_bytes from
URL/metrics); reconcile afterwards with "gatehouse bench reconcile".

Every success is written to the ledger (--ledger, default
DIR/bench-ledger.jsonl): pledge serial, voucher nonce and digest, LDevID
serial and digest.

--floor first runs, in this process, the server's cryptographic and storage
work of one onboarding on all cores (TLS server handshake half, four CMS
verifications, two CMS signatures, CSR check, LDevID issuance, one durable
store write), and reports the throughput as a ratio of that floor.

Reports throughput, latency percentiles, errors by kind, the server's CPU
seconds and peak RSS; --json prints one JSON object instead of text. A
progress line goes to stderr every second. Exits non-zero if a reconciled
record is lost.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runBench(cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.registrar, "registrar", "", "registrar URL, https://host:port (default: start a lab child on DIR)")
	fl.StringVar(&f.labDir, "lab", "", "lab data directory: pledge identities and anchors (required)")
	fl.IntVar(&f.count, "count", 0, "operations to run (default 1000 when no --duration)")
	fl.IntVar(&f.concurrency, "concurrency", bench.DefaultConcurrency, "pledges in flight")
	fl.DurationVar(&f.duration, "duration", 0, "how long to run (for example 30s)")
	fl.Float64Var(&f.rate, "rate", 0, "arrivals a second (open loop); 0 runs a closed loop at --concurrency")
	fl.Float64Var(&f.coapsShare, "coaps-share", 0, "share of onboardings over CoAPS (cBRSKI), 0 to 1")
	fl.StringVar(&f.coapsRegistrar, "coaps-registrar", "", "the registrar's coaps://host:port for --coaps-share (default: the --registrar host, port 5684)")
	fl.Float64Var(&f.reenrollShare, "reenroll-share", 0, "share of operations that re-enrol an earlier LDevID, 0 to 1")
	fl.BoolVar(&f.json, "json", false, "print one JSON object")
	fl.BoolVar(&f.floor, "floor", false, "measure the same-run floor and report the ratio to it")
	fl.DurationVar(&f.floorDuration, "floor-duration", bench.DefaultFloorDuration, "how long the floor runs")
	fl.IntVar(&f.serverPID, "server-pid", 0, "the registrar's process ID, to read its CPU and RSS from /proc")
	fl.StringVar(&f.admin, "admin", "", "the registrar's admin URL, to read its CPU and RSS from /metrics")
	fl.StringVar(&f.ledger, "ledger", "", "ledger file (default DIR/bench-ledger.jsonl)")
	fl.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the load generator itself (the timed part) to this file, for go tool pprof")
	fl.IntVar(&f.holdConns, "hold-conns", 0, "idle keep-alive connections to hold open to the registrar during the run (memory with many connections)")
	cmd.AddCommand(a.benchReconcileCmd(), a.benchSeedCmd())
	return cmd
}

func (a *app) runBench(cmd *cobra.Command, f benchFlags) error {
	if f.labDir == "" {
		return usageError{errors.New("bench: --lab DIR is required (the pledge identities come from its manufacturer)")}
	}
	if f.count == 0 && f.duration == 0 {
		f.count = 1000
	}
	ctx, stop := signalContext(cmd.Context())
	defer stop()
	stderr := cmd.ErrOrStderr()

	var u, coapsURL *url.URL
	var server bench.ServerStats
	var child *labChild
	switch {
	case f.registrar != "":
		var err error
		if u, err = url.Parse(f.registrar); err != nil || u.Scheme != "https" || u.Host == "" {
			return usageError{fmt.Errorf("bench: --registrar %q: want https://host:port", f.registrar)}
		}
		coapsURL = &url.URL{Scheme: "coaps", Host: net.JoinHostPort(u.Hostname(), "5684")}
	default:
		var err error
		started := a.clk.Now()
		if child, err = startLabChild(ctx, f.labDir); err != nil {
			return err
		}
		child.startup = a.clk.Since(started)
		defer child.kill()
		u, coapsURL = child.registrar, child.coaps
		fmt.Fprintf(stderr, "bench: started gatehouse lab (pid %d) at %s\n", child.cmd.Process.Pid, u)
	}
	switch {
	case f.serverPID > 0:
		server = bench.ProcStats{PID: f.serverPID}
	case f.admin != "":
		au, err := url.Parse(strings.TrimSuffix(f.admin, "/") + "/metrics")
		if err != nil || (au.Scheme != "http" && au.Scheme != "https") {
			return usageError{fmt.Errorf("bench: --admin %q: want http://host:port", f.admin)}
		}
		server = bench.MetricsStats{URL: au}
	case child != nil:
		server = bench.ProcStats{PID: child.cmd.Process.Pid}
	}

	if f.coapsRegistrar != "" {
		cu, err := url.Parse(f.coapsRegistrar)
		if err != nil || cu.Scheme != "coaps" || cu.Host == "" {
			return usageError{fmt.Errorf("bench: --coaps-registrar %q: want coaps://host:port", f.coapsRegistrar)}
		}
		coapsURL = cu
	}
	ids, err := bench.LoadIdentities(ctx, f.labDir, a.clk)
	if err != nil {
		return err
	}
	var floor *bench.FloorReport
	if f.floor {
		p, err := lab.Load(ctx, f.labDir)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench: measuring the floor for %s\n", f.floorDuration)
		if floor, err = bench.Floor(ctx, bench.FloorConfig{Lab: p, Identities: ids, Duration: f.floorDuration, Clock: a.clk}); err != nil {
			return err
		}
	}
	ledgerPath := f.ledger
	if ledgerPath == "" {
		ledgerPath = filepath.Join(f.labDir, "bench-ledger.jsonl")
	}
	lf, err := os.OpenFile(ledgerPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("bench: ledger: %w", err)
	}
	defer lf.Close()
	var prof io.Writer
	if f.cpuProfile != "" {
		pf, err := os.Create(f.cpuProfile)
		if err != nil {
			return fmt.Errorf("bench: --cpuprofile: %w", err)
		}
		defer pf.Close()
		prof = pf
	}
	rep, err := bench.Run(ctx, bench.Config{
		CPUProfile:     prof,
		Registrar:      u,
		Identities:     ids,
		Count:          f.count,
		Duration:       f.duration,
		Concurrency:    f.concurrency,
		Rate:           f.rate,
		ReenrollShare:  f.reenrollShare,
		CoAPSShare:     f.coapsShare,
		CoAPSRegistrar: coapsURL,
		HoldConns:      f.holdConns,
		Server:         server,
		Ledger:         lf,
		Progress:       stderr,
		Clock:          a.clk,
	})
	if err != nil {
		return err
	}
	if err := lf.Close(); err != nil {
		return fmt.Errorf("bench: ledger: %w", err)
	}
	if floor != nil {
		rep.SetFloor(floor)
	}
	if child != nil {
		rep.ServerStartupS = child.startup.Seconds()
		if err := child.stop(); err != nil {
			return err
		}
		if rep.Reconciled, err = reconcileLedger(ctx, a, f.labDir, ledgerPath); err != nil {
			return err
		}
	}
	if f.json {
		enc := json.NewEncoder(cmd.OutOrStdout())
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printBenchReport(cmd.OutOrStdout(), rep, ledgerPath)
	}
	if r := rep.Reconciled; r != nil && r.LostRecords > 0 {
		return fmt.Errorf("bench: %d records the registrar promised are not in its store (first: %s)", r.LostRecords, r.Problems[0])
	}
	return nil
}

func (a *app) benchReconcileCmd() *cobra.Command {
	var data, ledger string
	cmd := &cobra.Command{
		Use:   "reconcile --data DIR [--ledger FILE]",
		Short: "Check a bench ledger against a stopped registrar's store: zero lost records",
		Long: `Opens DIR/registrar.db (stop the registrar first: the store is locked while
it runs) and checks every line of the ledger: the voucher the pledge received
is stored under its nonce for that pledge, and every LDevID the pledge
received is stored byte for byte. Exits non-zero if any record is lost.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if data == "" {
				return usageError{errors.New("bench reconcile: --data DIR is required")}
			}
			if ledger == "" {
				ledger = filepath.Join(data, "bench-ledger.jsonl")
			}
			rec, err := reconcileLedger(cmd.Context(), a, data, ledger)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "reconciled %d ledger entries: %d lost\n", rec.Entries, rec.LostRecords)
			for _, p := range rec.Problems {
				fmt.Fprintf(cmd.OutOrStdout(), "  lost: %s\n", p)
			}
			if rec.LostRecords > 0 {
				return fmt.Errorf("bench reconcile: %d records lost", rec.LostRecords)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&data, "data", "", "the registrar's data directory (holding registrar.db)")
	cmd.Flags().StringVar(&ledger, "ledger", "", "ledger file (default DIR/bench-ledger.jsonl)")
	return cmd
}

func (a *app) benchSeedCmd() *cobra.Command {
	var data string
	var devices int
	cmd := &cobra.Command{
		Use:   "seed --data DIR --devices N",
		Short: "Add N enrolled device records to a stopped registrar's store, to measure with a large store",
		Long: `Opens DIR/registrar.db (stop the registrar first) and adds device records
SEED-000000001 … SEED-<N> (issuer "bench-seed", status enrolled), many writers
sharing each group commit. Devices already there are kept, so a second run
resumes. Then measure start-up and throughput with "gatehouse bench --lab DIR".`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if data == "" || devices <= 0 {
				return usageError{errors.New("bench seed: --data DIR and --devices N (N > 0) are required")}
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			db, err := store.Open(filepath.Join(data, lab.RegistrarDBFile), store.Options{Clock: a.clk})
			if err != nil {
				return fmt.Errorf("bench seed: %w (is the registrar still running?)", err)
			}
			defer db.Close()
			start := a.clk.Now()
			err = bench.Seed(ctx, db, devices, func(done int) {
				fmt.Fprintf(cmd.ErrOrStderr(), "bench seed: %d devices\n", done)
			})
			if err != nil {
				return err
			}
			if err := db.Close(); err != nil {
				return fmt.Errorf("bench seed: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "seeded %d devices into %s in %.1f s\n", devices, filepath.Join(data, lab.RegistrarDBFile), a.clk.Since(start).Seconds())
			return nil
		},
	}
	cmd.Flags().StringVar(&data, "data", "", "the registrar's data directory (holding registrar.db)")
	cmd.Flags().IntVar(&devices, "devices", 0, "how many device records to add")
	return cmd
}

// reconcileLedger opens the registrar store under dir and checks the
// ledger against it.
func reconcileLedger(ctx context.Context, a *app, dir, ledgerPath string) (*bench.Reconciliation, error) {
	db, err := store.Open(filepath.Join(dir, lab.RegistrarDBFile), store.Options{Clock: a.clk})
	if err != nil {
		return nil, fmt.Errorf("bench reconcile: %w (is the registrar still running?)", err)
	}
	defer db.Close()
	lf, err := os.Open(ledgerPath)
	if err != nil {
		return nil, fmt.Errorf("bench reconcile: %w", err)
	}
	defer lf.Close()
	return bench.Reconcile(ctx, db, lf)
}

func printBenchReport(w io.Writer, r *bench.Report, ledger string) {
	fmt.Fprintf(w, "gatehouse bench: %d onboardings (%d over CoAPS), %d reenrollments, %d errors in %.2f s (concurrency %d", r.Onboardings, r.CoAPSOnboardings, r.Reenrollments, r.Errors, r.DurationS, r.Concurrency)
	if r.Rate > 0 {
		fmt.Fprintf(w, ", rate %.1f/s", r.Rate)
	}
	if r.HeldConns > 0 {
		fmt.Fprintf(w, ", %d connections held", r.HeldConns)
	}
	fmt.Fprintln(w, ")")
	fmt.Fprintf(w, "  throughput:  %.1f/s", r.ThroughputPerS)
	if r.ClientCPUS >= 0 {
		fmt.Fprintf(w, " (load generator: %.2f s CPU)", r.ClientCPUS)
	}
	fmt.Fprintln(w)
	if r.Floor != nil {
		fmt.Fprintf(w, "  floor:       %.1f/s on %d cores (%.3f ms server CPU per onboarding); ratio %.2f", r.FloorPerS, r.Floor.Cores, r.Floor.CPUPerOpMs, r.RatioToFloor)
		if r.ServerCPURatioToFloor > 0 {
			fmt.Fprintf(w, ", server CPU ratio %.2f", r.ServerCPURatioToFloor)
		}
		fmt.Fprintln(w)
		if r.SharedCeilingPerS > 0 {
			fmt.Fprintf(w, "  ceiling:     %.1f/s (ratio %.2f) for a server at the floor sharing these cores with this load generator (%.3f ms CPU per operation)\n",
				r.SharedCeilingPerS, r.SharedCeilingRatio, r.ClientCPUPerOpMs)
		}
	}
	fmt.Fprintf(w, "  latency ms:  p50 %.1f  p95 %.1f  p99 %.1f  max %.1f\n", r.P50Ms, r.P95Ms, r.P99Ms, r.MaxMs)
	if r.ServerCPUS >= 0 {
		fmt.Fprintf(w, "  server:      %.2f s CPU (%.3f ms per operation), peak RSS %.1f MiB", r.ServerCPUS, r.ServerCPUPerOpMs, r.ServerPeakRSSMiB)
		if r.ServerStartupS > 0 {
			fmt.Fprintf(w, ", started in %.2f s", r.ServerStartupS)
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintln(w, "  server:      not measured (give --server-pid or --admin)")
	}
	if r.Errors > 0 {
		kinds := make([]string, 0, len(r.ErrorsByKind))
		for k, n := range r.ErrorsByKind {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		}
		slices.Sort(kinds)
		fmt.Fprintf(w, "  errors:      %s\n", strings.Join(kinds, ", "))
	}
	fmt.Fprintf(w, "  ledger:      %s", ledger)
	if c := r.Reconciled; c != nil {
		fmt.Fprintf(w, " (reconciled against the store: %d entries, %d lost)", c.Entries, c.LostRecords)
	}
	fmt.Fprintln(w)
}

// labChild is a `gatehouse lab` child process started by the bench.
type labChild struct {
	cmd       *exec.Cmd
	registrar *url.URL
	coaps     *url.URL
	log       *os.File
	// startup is the time from exec to the ready line.
	startup time.Duration
	// exited is closed once the process was waited for, with waitErr set.
	exited  chan struct{}
	waitErr error
}

// startLabChild starts this binary as `gatehouse lab --data dir` on free
// loopback ports and waits until it prints "ready".
func startLabChild(ctx context.Context, dir string) (*labChild, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: start lab: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("bench: start lab: %w", err)
	}
	logPath := filepath.Join(dir, "bench-lab.log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("bench: start lab: %w", err)
	}
	// The child outlives ctx's cancellation only until stop or kill.
	cmd := exec.CommandContext(context.WithoutCancel(ctx), exe, "lab", "--data", dir,
		"--https", "127.0.0.1:0", "--coaps", "127.0.0.1:0", "--masa", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--log-level", "warn")
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("bench: start lab: %w", err)
	}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("bench: start lab: %w", err)
	}
	c := &labChild{cmd: cmd, log: logf, exited: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "registrar: "); ok && c.registrar == nil {
				c.registrar, _ = url.Parse(strings.TrimSpace(v))
			}
			if v, ok := strings.CutPrefix(line, "coaps: "); ok && c.coaps == nil {
				c.coaps, _ = url.Parse(strings.TrimSpace(v))
			}
			if line == "ready (Ctrl-C to stop)" && !signalled {
				signalled = true
				ready <- nil
			}
		}
		_, _ = io.Copy(io.Discard, out)
		c.waitErr = cmd.Wait()
		_ = logf.Close()
		close(c.exited)
		if !signalled {
			ready <- fmt.Errorf("bench: gatehouse lab exited before it was ready; see %s", logPath)
		}
	}()
	t := time.NewTimer(labReadyTimeout)
	defer t.Stop()
	select {
	case err := <-ready:
		if err == nil && c.registrar == nil {
			err = errors.New("bench: gatehouse lab printed no registrar URL")
		}
		if err != nil {
			c.kill()
			return nil, err
		}
		return c, nil
	case <-t.C:
		c.kill()
		return nil, fmt.Errorf("bench: gatehouse lab not ready after %s; see %s", labReadyTimeout, logPath)
	case <-ctx.Done():
		c.kill()
		return nil, ctx.Err()
	}
}

// stop ends the lab with SIGTERM (a graceful shutdown that closes its
// stores) and waits for it.
func (c *labChild) stop() error {
	select {
	case <-c.exited:
		if c.waitErr != nil {
			return fmt.Errorf("bench: gatehouse lab exited during the run: %w", c.waitErr)
		}
		return errors.New("bench: gatehouse lab exited during the run")
	default:
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("bench: stop lab: %w", err)
	}
	<-c.exited
	if c.waitErr != nil {
		return fmt.Errorf("bench: stop lab: %w", c.waitErr)
	}
	return nil
}

// kill ends the lab if it still runs.
func (c *labChild) kill() {
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Kill()
	<-c.exited
}
