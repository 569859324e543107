package bench

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"net/url"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmhodges/clock"

	"github.com/gatehouse-pki/gatehouse/pledge"
)

// ErrNoCoAPSRegistrar reports a CoAPS share without a coaps:// registrar
// URL to send those onboardings to.
var ErrNoCoAPSRegistrar = errors.New("bench: a CoAPS share needs the registrar's coaps://host:port")

// Defaults.
const (
	// DefaultConcurrency is the number of pledges in flight.
	DefaultConcurrency = 32
	// DefaultOpTimeout bounds one onboarding.
	DefaultOpTimeout = 30 * time.Second
	// DefaultProgressEvery is the interval of the progress line.
	DefaultProgressEvery = time.Second
	// reenrollPool bounds the LDevIDs kept for re-enrolment.
	reenrollPool = 4096
)

// Config configures Run. It is pure data.
type Config struct {
	// Registrar is the registrar's base URL, https://host:port. Required.
	Registrar *url.URL
	// Identities mints the pledges' IDevIDs. Required.
	Identities *Identities
	// Count is how many operations to run; zero means until Duration ends.
	Count int
	// Duration bounds the run; zero means until Count operations ran. One
	// of Count and Duration is required.
	Duration time.Duration
	// Concurrency is the number of operations in flight: the workers of a
	// closed loop, the cap on in-flight arrivals of an open loop. Default
	// DefaultConcurrency.
	Concurrency int
	// Rate, when positive, is the arrival rate in operations per second
	// (open loop); zero runs a closed loop at Concurrency.
	Rate float64
	// ReenrollShare is the share of operations, 0 to 1, that re-enrol an
	// LDevID issued earlier in the run instead of onboarding a new pledge.
	ReenrollShare float64
	// CoAPSShare is the share of onboardings, 0 to 1, that run as cBRSKI
	// over CoAP/DTLS against CoAPSRegistrar (COSE voucher, EST-coaps)
	// instead of over HTTPS. Re-enrolments stay on HTTPS.
	CoAPSShare float64
	// CoAPSRegistrar is the registrar's coaps://host:port. Required when
	// CoAPSShare is positive.
	CoAPSRegistrar *url.URL
	// HoldConns, when positive, is a number of idle keep-alive connections
	// held open to the registrar for the whole run (each carried a GET
	// /cacerts), for measuring the server's memory with many connections.
	HoldConns int
	// OpTimeout bounds one operation. Default DefaultOpTimeout.
	OpTimeout time.Duration
	// Server, when set, samples the server process's CPU time and RSS.
	Server ServerStats
	// Ledger, when set, receives one JSON line per successful operation.
	Ledger io.Writer
	// Progress, when set, receives a progress line every ProgressEvery.
	Progress io.Writer
	// CPUProfile, when set, receives a CPU profile of this process (the
	// load generator) for the timed part of the run.
	CPUProfile io.Writer
	// ProgressEvery is the progress interval. Default DefaultProgressEvery.
	ProgressEvery time.Duration
	// Clock is the only source of time. Required.
	Clock clock.Clock
}

// WithDefaults returns cfg with unset fields at their defaults.
func (cfg Config) WithDefaults() Config {
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.OpTimeout == 0 {
		cfg.OpTimeout = DefaultOpTimeout
	}
	if cfg.ProgressEvery == 0 {
		cfg.ProgressEvery = DefaultProgressEvery
	}
	return cfg
}

// Validate reports every problem in cfg at once.
func (cfg Config) Validate() error {
	var errs []error
	if u := cfg.Registrar; u == nil || u.Scheme != "https" || u.Host == "" {
		errs = append(errs, fmt.Errorf("registrar URL %v: want https://host:port", u))
	}
	if cfg.Identities == nil {
		errs = append(errs, errors.New("identities are required (a lab directory)"))
	}
	if cfg.Clock == nil {
		errs = append(errs, errors.New("clock is required"))
	}
	if cfg.Count < 0 || cfg.Duration < 0 {
		errs = append(errs, errors.New("count and duration must not be negative"))
	}
	if cfg.Count == 0 && cfg.Duration == 0 {
		errs = append(errs, errors.New("a count or a duration is required"))
	}
	if cfg.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("concurrency %d: want at least 1", cfg.Concurrency))
	}
	if cfg.Rate < 0 || math.IsNaN(cfg.Rate) || math.IsInf(cfg.Rate, 0) {
		errs = append(errs, fmt.Errorf("rate %v: want a positive number of operations a second, or 0", cfg.Rate))
	}
	if cfg.HoldConns < 0 {
		errs = append(errs, fmt.Errorf("hold conns %d: want 0 or more", cfg.HoldConns))
	}
	if !(cfg.ReenrollShare >= 0 && cfg.ReenrollShare <= 1) {
		errs = append(errs, fmt.Errorf("reenroll share %v: want 0 to 1", cfg.ReenrollShare))
	}
	if !(cfg.CoAPSShare >= 0 && cfg.CoAPSShare <= 1) {
		errs = append(errs, fmt.Errorf("coaps share %v: want 0 to 1", cfg.CoAPSShare))
	} else if u := cfg.CoAPSRegistrar; cfg.CoAPSShare > 0 && (u == nil || u.Scheme != "coaps" || u.Host == "") {
		errs = append(errs, fmt.Errorf("%w (got %v)", ErrNoCoAPSRegistrar, u))
	}
	return errors.Join(errs...)
}

// Report is what a run measured. Its JSON keys are a contract (issue #7):
// scripts read them.
type Report struct {
	// Onboardings counts completed, verified onboardings.
	Onboardings int `json:"onboardings"`
	// Reenrollments counts completed, verified re-enrolments.
	Reenrollments int `json:"reenrollments"`
	// CoAPSOnboardings counts the Onboardings that ran over CoAPS.
	CoAPSOnboardings int `json:"coaps_onboardings"`
	// Errors counts failed operations; ErrorsByKind splits them.
	Errors       int            `json:"errors"`
	ErrorsByKind map[string]int `json:"errors_by_kind"`
	// DurationS is the wall time from the first start to the last end.
	DurationS float64 `json:"duration_s"`
	// ThroughputPerS is (onboardings + reenrollments) / duration.
	ThroughputPerS float64 `json:"throughput_per_s"`
	// Latency percentiles and maximum of successful operations, in ms.
	P50Ms float64 `json:"p50_ms"`
	P95Ms float64 `json:"p95_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// HeldConns is how many of the HoldConns connections were open at the
	// end of the run (connections the holder dialed and still has).
	HeldConns int `json:"held_conns,omitempty"`
	// Concurrency and Rate are the load shape (Rate 0: closed loop).
	Concurrency int     `json:"concurrency"`
	Rate        float64 `json:"rate_per_s"`
	// ServerCPUS is the server's CPU time (user + system) during the run,
	// and ServerPeakRSSMiB the largest RSS sampled; both -1 when unknown.
	ServerCPUS       float64 `json:"server_cpu_s"`
	ServerPeakRSSMiB float64 `json:"server_peak_rss_mib"`
	// ClientCPUS is this process's CPU time during the run: what the load
	// generator itself cost the machine (-1 when unknown).
	ClientCPUS float64 `json:"client_cpu_s"`
	// ClientCPUPerOpMs is ClientCPUS per successful operation.
	ClientCPUPerOpMs float64 `json:"client_cpu_per_op_ms,omitempty"`
	// ServerStartupS is how long the server took from exec to ready, when
	// the bench started it.
	ServerStartupS float64 `json:"server_startup_s,omitempty"`
	// ServerCPUPerOpMs is ServerCPUS per successful operation.
	ServerCPUPerOpMs float64 `json:"server_cpu_per_op_ms,omitempty"`
	// FloorPerS and RatioToFloor are set with --floor.
	FloorPerS    float64 `json:"floor_per_s,omitempty"`
	RatioToFloor float64 `json:"ratio_to_floor,omitempty"`
	// ServerCPURatioToFloor is the floor's CPU per onboarding over the
	// server's measured CPU per operation: how close the server's own work
	// comes to the floor, whatever share of the machine other processes
	// (the load generator included) took. Set with --floor when the server
	// was measured.
	ServerCPURatioToFloor float64 `json:"server_cpu_ratio_to_floor,omitempty"`
	// SharedCeilingPerS is what a server doing exactly the floor's work
	// could reach with this load generator on the same cores: cores over
	// (the floor's CPU per onboarding plus the load generator's), and
	// SharedCeilingRatio is that over FloorPerS. With --floor, when the
	// load generator's CPU was measured; meaningful only when it shares
	// the server's machine (a lab child, or a server on loopback).
	SharedCeilingPerS  float64 `json:"shared_ceiling_per_s,omitempty"`
	SharedCeilingRatio float64 `json:"shared_ceiling_ratio_to_floor,omitempty"`
	// Floor details the floor measurement, with --floor.
	Floor *FloorReport `json:"floor,omitempty"`
	// Reconciled reports the ledger check against the store, when run:
	// LostRecords must be zero.
	Reconciled *Reconciliation `json:"reconciled,omitempty"`
}

// SetFloor records a floor measurement and the ratio to it.
func (r *Report) SetFloor(f *FloorReport) {
	r.Floor = f
	r.FloorPerS = f.PerS
	if f.PerS > 0 {
		r.RatioToFloor = r.ThroughputPerS / f.PerS
	}
	// The floor is one HTTPS onboarding; CPU per operation is comparable
	// with it only when every operation was one.
	if r.Reenrollments > 0 || r.CoAPSOnboardings > 0 {
		return
	}
	if r.ServerCPUPerOpMs > 0 {
		r.ServerCPURatioToFloor = f.CPUPerOpMs / r.ServerCPUPerOpMs
	}
	if r.ClientCPUPerOpMs > 0 && f.CPUPerOpMs > 0 && f.Cores > 0 {
		r.SharedCeilingPerS = float64(f.Cores) * 1000 / (f.CPUPerOpMs + r.ClientCPUPerOpMs)
		if f.PerS > 0 {
			r.SharedCeilingRatio = r.SharedCeilingPerS / f.PerS
		}
	}
}

// op is one operation's outcome.
type op struct {
	kind    string // "enroll" or "reenroll"
	coaps   bool
	latency time.Duration
	err     error
	entry   LedgerEntry
}

// runner is one run's shared state.
type runner struct {
	cfg Config

	mu        sync.Mutex
	latencies []time.Duration
	errKinds  map[string]int
	enrolls   int
	reenrolls int
	coaps     int
	serials   map[string]bool
	pool      []*pledge.Result // LDevIDs for re-enrolment
	ledgerErr error
	ledger    *ledgerWriter
	started   atomic.Int64 // operations started
	onboards  atomic.Int64 // onboardings started, for the CoAPS share
	done      atomic.Int64 // operations finished
	failed    atomic.Int64
}

// Run runs the load and returns the report. It stops early, with what it
// measured so far, when ctx ends.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if cfg.Count > 0 {
		// Identities are minted before the clock starts (Identities.Prepare):
		// one per onboarding, plus one per worker for re-enrolments that
		// find no LDevID yet and onboard instead.
		n := min(cfg.Count, cfg.Count-int(math.Floor(float64(cfg.Count)*cfg.ReenrollShare))+cfg.Concurrency)
		if err := cfg.Identities.Prepare(ctx, n); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	r := &runner{cfg: cfg, errKinds: map[string]int{}, serials: map[string]bool{}}
	if cfg.Ledger != nil {
		r.ledger = newLedgerWriter(cfg.Ledger)
	}
	clk := cfg.Clock
	var held *holder
	if cfg.HoldConns > 0 {
		var err error
		if held, err = holdConns(ctx, cfg.Registrar, cfg.Identities.DomainCA, cfg.HoldConns); err != nil {
			return nil, err
		}
		defer held.close()
	}
	var before ServerSample
	if cfg.Server != nil {
		var err error
		if before, err = cfg.Server.Sample(ctx); err != nil {
			return nil, fmt.Errorf("bench: server stats: %w", err)
		}
	}
	peak := before.RSSBytes
	clientBefore, clientErr := processCPU()

	runCtx := ctx
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	if cfg.CPUProfile != nil {
		if err := pprof.StartCPUProfile(cfg.CPUProfile); err != nil {
			return nil, fmt.Errorf("bench: cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	start := clk.Now()
	progressDone := make(chan struct{})
	var progressWG sync.WaitGroup
	progressWG.Go(func() {
		t := time.NewTicker(cfg.ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-progressDone:
				return
			case <-t.C:
				if cfg.Server != nil {
					if s, err := cfg.Server.Sample(ctx); err == nil {
						r.mu.Lock()
						peak = max(peak, s.RSSBytes)
						r.mu.Unlock()
					}
				}
				r.progress(clk.Since(start))
			}
		}
	})
	if cfg.Rate > 0 {
		r.openLoop(runCtx, start)
	} else {
		r.closedLoop(runCtx)
	}
	end := clk.Now()
	close(progressDone)
	progressWG.Wait()

	rep := r.report(end.Sub(start))
	if held != nil {
		rep.HeldConns = int(held.open.Load())
	}
	rep.ClientCPUS = -1
	if clientAfter, err := processCPU(); err == nil && clientErr == nil {
		rep.ClientCPUS = (clientAfter - clientBefore).Seconds()
		if n := rep.Onboardings + rep.Reenrollments; n > 0 {
			rep.ClientCPUPerOpMs = rep.ClientCPUS * 1000 / float64(n)
		}
	}
	rep.ServerCPUS, rep.ServerPeakRSSMiB = -1, -1
	if cfg.Server != nil {
		after, err := cfg.Server.Sample(ctx)
		if err != nil {
			return nil, fmt.Errorf("bench: server stats: %w", err)
		}
		peak = max(peak, after.RSSBytes)
		rep.ServerCPUS = (after.CPU - before.CPU).Seconds()
		rep.ServerPeakRSSMiB = float64(peak) / (1 << 20)
		if n := rep.Onboardings + rep.Reenrollments; n > 0 {
			rep.ServerCPUPerOpMs = rep.ServerCPUS * 1000 / float64(n)
		}
	}
	if r.ledger != nil {
		if err := r.ledger.flush(); err != nil {
			return rep, fmt.Errorf("bench: ledger: %w", err)
		}
	}
	if r.ledgerErr != nil {
		return rep, fmt.Errorf("bench: ledger: %w", r.ledgerErr)
	}
	return rep, nil
}

// next reserves operation number i, or reports that the count is reached.
func (r *runner) next() (int, bool) {
	i := int(r.started.Add(1)) - 1
	if r.cfg.Count > 0 && i >= r.cfg.Count {
		return 0, false
	}
	return i, true
}

// closedLoop runs Concurrency workers back to back until the count or ctx
// ends.
func (r *runner) closedLoop(ctx context.Context) {
	var wg sync.WaitGroup
	for range r.cfg.Concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				i, ok := r.next()
				if !ok {
					return
				}
				r.record(r.run(ctx, i, r.cfg.Clock.Now()))
			}
		})
	}
	wg.Wait()
}

// openLoop starts operation i at start + i/Rate, at most Concurrency in
// flight, until the count or ctx ends.
func (r *runner) openLoop(ctx context.Context, start time.Time) {
	clk := r.cfg.Clock
	sem := make(chan struct{}, r.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		i, ok := r.next()
		if !ok {
			return
		}
		at := start.Add(time.Duration(float64(i) / r.cfg.Rate * float64(time.Second)))
		if d := at.Sub(clk.Now()); d > 0 {
			t := clk.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		select {
		case <-ctx.Done():
			return
		case sem <- struct{}{}:
		}
		wg.Go(func() {
			defer func() { <-sem }()
			r.record(r.run(ctx, i, at))
		})
	}
}

// isReenroll spreads the re-enrolments evenly: operation i re-enrols when
// the running share crosses an integer there.
func (r *runner) isReenroll(i int) bool { return spread(i, r.cfg.ReenrollShare) }

// spread reports whether item i is one of a share f spread evenly: the
// running share crosses an integer at i.
func spread(i int, f float64) bool {
	return f > 0 && math.Floor(float64(i+1)*f) > math.Floor(float64(i)*f)
}

// run performs operation i, timed from at (its start, or its scheduled
// arrival in an open loop).
func (r *runner) run(ctx context.Context, i int, at time.Time) op {
	// The run's end stops new work, not the operation in flight: it gets
	// its own budget, so a run never ends in a burst of cancellations.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.OpTimeout)
	defer cancel()
	if r.isReenroll(i) {
		if prev := r.takeLDevID(); prev != nil {
			return r.reenroll(ctx, prev, at)
		}
	}
	// The CoAPS share is of the onboardings, counted on their own: spread
	// over the operation index it would pick the same operations as the
	// re-enrolment share (both 0.5: none over CoAPS).
	k := int(r.onboards.Add(1)) - 1
	return r.enroll(ctx, at, spread(k, r.cfg.CoAPSShare))
}

// enroll onboards a new pledge, over CoAPS when coaps is set.
func (r *runner) enroll(ctx context.Context, at time.Time, coaps bool) op {
	clk := r.cfg.Clock
	o := op{kind: "enroll", coaps: coaps}
	reg := r.cfg.Registrar
	if coaps {
		reg = r.cfg.CoAPSRegistrar
	}
	id, serial, err := r.cfg.Identities.Next()
	if err != nil {
		o.err = err
		return o
	}
	c, err := pledge.New(pledge.Config{
		Registrar:   reg,
		IDevID:      id,
		MASAAnchors: r.cfg.Identities.MASAAnchors,
		Clock:       clk,
		MaxWait:     r.cfg.OpTimeout,
	})
	if err != nil {
		o.err = err
		return o
	}
	defer c.Close()
	res, err := c.Enroll(ctx)
	o.latency = clk.Since(at)
	if err != nil {
		o.err = err
		return o
	}
	switch {
	case res.Voucher.VoucherStatusErr != nil:
		o.err = &telemetryError{what: "voucher_status", err: res.Voucher.VoucherStatusErr}
	case res.EnrollStatusErr != nil:
		o.err = &telemetryError{what: "enrollstatus", err: res.EnrollStatusErr}
	}
	v := res.Voucher.Voucher
	o.entry = LedgerEntry{
		Kind:          o.kind,
		Transport:     reg.Scheme,
		Pledge:        serial,
		VoucherSerial: v.SerialNumber,
		Nonce:         nonceText(v.Nonce),
		VoucherSHA256: digest(res.Voucher.Raw),
		LDevIDSerial:  serialHex(res.LDevID.SerialNumber),
		LDevIDSHA256:  digest(res.LDevID.Raw),
	}
	if o.err == nil {
		r.keepLDevID(res)
	}
	return o
}

// reenroll renews the LDevID of an earlier onboarding.
func (r *runner) reenroll(ctx context.Context, prev *pledge.Result, at time.Time) op {
	clk := r.cfg.Clock
	o := op{kind: "reenroll"}
	res, err := pledge.Reenroll(ctx, pledge.ReenrollConfig{
		Registrar: r.cfg.Registrar,
		LDevID:    prev.TLSCertificate(),
		DomainCAs: append([]*x509.Certificate{prev.Voucher.PinnedDomainCert}, prev.CACerts...),
		Clock:     clk,
		MaxWait:   r.cfg.OpTimeout,
	})
	o.latency = clk.Since(at)
	if err != nil {
		o.err = err
		r.keepLDevID(prev) // still valid: try it again later
		return o
	}
	res.Voucher = prev.Voucher // the pledge's voucher, for the next renewal
	o.entry = LedgerEntry{
		Kind:          o.kind,
		Transport:     r.cfg.Registrar.Scheme,
		Pledge:        prev.Voucher.Voucher.SerialNumber,
		VoucherSerial: prev.Voucher.Voucher.SerialNumber,
		LDevIDSerial:  serialHex(res.LDevID.SerialNumber),
		LDevIDSHA256:  digest(res.LDevID.Raw),
	}
	r.keepLDevID(res)
	return o
}

// keepLDevID adds an enrolment result to the re-enrolment pool (bounded:
// beyond it, results are dropped).
func (r *runner) keepLDevID(res *pledge.Result) {
	if r.cfg.ReenrollShare == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pool) < reenrollPool {
		r.pool = append(r.pool, res)
	}
}

// takeLDevID removes an LDevID from the pool (nil when empty), so no two
// operations renew one certificate at once.
func (r *runner) takeLDevID() *pledge.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.pool)
	if n == 0 {
		return nil
	}
	res := r.pool[n-1]
	r.pool = r.pool[:n-1]
	return res
}

// record accounts one finished operation.
func (r *runner) record(o op) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if o.err == nil && r.serials[o.entry.LDevIDSerial] {
		o.err = fmt.Errorf("%w: LDevID serial %s issued twice in one run", errDuplicateSerial, o.entry.LDevIDSerial)
	}
	r.done.Add(1)
	if o.err != nil {
		r.failed.Add(1)
		r.errKinds[ErrorKind(o.err)]++
		return
	}
	r.serials[o.entry.LDevIDSerial] = true
	r.latencies = append(r.latencies, o.latency)
	switch {
	case o.kind == "reenroll":
		r.reenrolls++
	case o.coaps:
		r.enrolls++
		r.coaps++
	default:
		r.enrolls++
	}
	if r.ledger != nil && r.ledgerErr == nil {
		r.ledgerErr = r.ledger.write(o.entry)
	}
}

// progress writes the progress line.
func (r *runner) progress(elapsed time.Duration) {
	if r.cfg.Progress == nil {
		return
	}
	done, failed := r.done.Load(), r.failed.Load()
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(done-failed) / s
	}
	_, _ = fmt.Fprintf(r.cfg.Progress, "bench: %5.1fs  %d done  %d errors  %.1f/s\n", elapsed.Seconds(), done, failed, rate)
}

// report summarises the run.
func (r *runner) report(elapsed time.Duration) *Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := &Report{
		Onboardings:      r.enrolls,
		Reenrollments:    r.reenrolls,
		CoAPSOnboardings: r.coaps,
		ErrorsByKind:     r.errKinds,
		DurationS:        elapsed.Seconds(),
		Concurrency:      r.cfg.Concurrency,
		Rate:             r.cfg.Rate,
	}
	for _, n := range r.errKinds {
		rep.Errors += n
	}
	if s := elapsed.Seconds(); s > 0 {
		rep.ThroughputPerS = float64(rep.Onboardings+rep.Reenrollments) / s
	}
	lat := slices.Clone(r.latencies)
	slices.Sort(lat)
	rep.P50Ms, rep.P95Ms, rep.P99Ms = ms(percentile(lat, 50)), ms(percentile(lat, 95)), ms(percentile(lat, 99))
	if len(lat) > 0 {
		rep.MaxMs = ms(lat[len(lat)-1])
	}
	return rep
}

// percentile returns the p-th percentile of sorted (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func serialHex(n *big.Int) string { return n.Text(16) }

// telemetryError is a voucher_status or enrollstatus POST the registrar
// refused after an otherwise complete operation.
type telemetryError struct {
	what string
	err  error
}

func (e *telemetryError) Error() string { return e.what + ": " + e.err.Error() }
func (e *telemetryError) Unwrap() error { return e.err }

var errDuplicateSerial = errors.New("bench: duplicate LDevID serial")

// ErrorKind names the kind of a failed operation, for the report: where
// it failed, not the whole message.
func ErrorKind(err error) string {
	if te, ok := errors.AsType[*telemetryError](err); ok {
		return te.what
	}
	if se, ok := errors.AsType[*pledge.StatusError](err); ok {
		return "http_" + strconv.Itoa(se.StatusCode)
	}
	if ce, ok := errors.AsType[*pledge.CoAPError](err); ok {
		return fmt.Sprintf("coap_%d.%02d", ce.Code>>5, ce.Code&0x1f)
	}
	switch {
	case errors.Is(err, errDuplicateSerial):
		return "duplicate_ldevid_serial"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, pledge.ErrPending), errors.Is(err, pledge.ErrEnrollPending):
		return "timeout"
	case errors.Is(err, pledge.ErrConnect), errors.Is(err, pledge.ErrRegistrarChanged):
		return "connect"
	case errors.Is(err, pledge.ErrMASASignature), errors.Is(err, pledge.ErrBadVoucher), errors.Is(err, pledge.ErrSerialMismatch),
		errors.Is(err, pledge.ErrNonceMismatch), errors.Is(err, pledge.ErrNoPinnedDomainCert), errors.Is(err, pledge.ErrPinMismatch):
		return "voucher_invalid"
	case errors.Is(err, pledge.ErrLDevID):
		return "ldevid_invalid"
	case errors.Is(err, pledge.ErrESTEncoding), errors.Is(err, pledge.ErrChannelBinding):
		return "est"
	case errors.Is(err, errIdentity):
		return "identity"
	}
	return "other"
}
