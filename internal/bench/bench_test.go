package bench

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jmhodges/clock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatehouse-pki/gatehouse/internal/lab"
	"github.com/gatehouse-pki/gatehouse/internal/lab/labtest"
	"github.com/gatehouse-pki/gatehouse/store"
)

// startLab serves an in-process lab in dir (labtest.Start) and returns
// its registrar's URL.
func startLab(t *testing.T, dir string, clk clock.Clock) (*url.URL, func()) {
	t.Helper()
	l, stop := labtest.Start(t, lab.Options{Dir: dir, Clock: clk})
	return &url.URL{Scheme: "https", Host: lab.Dialable(l.HTTPS)}, stop
}

// TestRun_Lab runs a short load with re-enrolments against an in-process
// lab over real TLS, checks the report and its JSON keys, then reconciles
// the ledger against the registrar's store, and shows that a ledger line
// the store does not back is counted as lost.
func TestRun_Lab(t *testing.T) {
	t.Parallel()
	clk := clock.New()
	dir := t.TempDir()
	u, stop := startLab(t, dir, clk)
	ids, err := LoadIdentities(t.Context(), dir, clk)
	if err != nil {
		t.Fatal(err)
	}
	var ledger, progress bytes.Buffer
	const count = 12
	rep, err := Run(t.Context(), Config{
		Registrar:     u,
		Identities:    ids,
		Count:         count,
		Concurrency:   4,
		ReenrollShare: 0.25,
		HoldConns:     20,
		Server:        ProcStats{PID: os.Getpid()},
		Ledger:        &ledger,
		Progress:      &progress,
		ProgressEvery: 10 * time.Millisecond,
		Clock:         clk,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors != 0 {
		t.Fatalf("errors: %v", rep.ErrorsByKind)
	}
	if rep.Onboardings+rep.Reenrollments != count || rep.Reenrollments == 0 || rep.Onboardings < count*3/4 {
		t.Errorf("onboardings %d + reenrollments %d, want %d with about a quarter re-enrolments", rep.Onboardings, rep.Reenrollments, count)
	}
	if !(rep.P50Ms > 0 && rep.P50Ms <= rep.P95Ms && rep.P95Ms <= rep.P99Ms && rep.P99Ms <= rep.MaxMs) {
		t.Errorf("percentiles not ordered: %+v", rep)
	}
	if rep.ThroughputPerS <= 0 || rep.DurationS <= 0 || rep.ServerCPUS <= 0 || rep.ServerPeakRSSMiB <= 0 || rep.ClientCPUS <= 0 {
		t.Errorf("report = %+v", rep)
	}
	if rep.HeldConns != 20 {
		t.Errorf("%d connections open at the end, want the 20 held", rep.HeldConns)
	}
	if !strings.Contains(progress.String(), "done") {
		t.Errorf("no progress line: %q", progress.String())
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]any
	if err := json.Unmarshal(b, &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"onboardings", "errors", "duration_s", "throughput_per_s", "p50_ms", "p95_ms", "p99_ms", "server_cpu_s", "server_peak_rss_mib"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("JSON report has no %q: %s", k, b)
		}
	}

	stop()
	db, err := store.Open(filepath.Join(dir, lab.RegistrarDBFile), store.Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rec, err := Reconcile(t.Context(), db, bytes.NewReader(ledger.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Entries != count || rec.LostRecords != 0 {
		t.Fatalf("reconcile = %+v, want %d entries and none lost", rec, count)
	}
	// A promise the store does not hold: another LDevID serial.
	var e LedgerEntry
	first, _, _ := bytes.Cut(ledger.Bytes(), []byte("\n"))
	if err := json.Unmarshal(first, &e); err != nil {
		t.Fatal(err)
	}
	e.LDevIDSerial = "7fffffffffffffff01"
	forged, _ := json.Marshal(e)
	rec, err = Reconcile(t.Context(), db, bytes.NewReader(append(forged, '\n')))
	if err != nil {
		t.Fatal(err)
	}
	if rec.LostRecords != 1 || len(rec.Problems) != 1 {
		t.Errorf("reconcile of a forged line = %+v, want one lost record", rec)
	}
}

// TestRun_ErrorKinds: pledges from a manufacturer the registrar does not
// know are refused in the TLS handshake; every operation fails, counted
// under one kind, and nothing reaches the ledger.
func TestRun_ErrorKinds(t *testing.T) {
	t.Parallel()
	clk := clock.New()
	u, _ := startLab(t, t.TempDir(), clk)
	other := t.TempDir()
	if err := lab.Generate(other, lab.GenerateOptions{Clock: clk, MASAAuthority: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	ids, err := LoadIdentities(t.Context(), other, clk)
	if err != nil {
		t.Fatal(err)
	}
	var ledger bytes.Buffer
	rep, err := Run(t.Context(), Config{Registrar: u, Identities: ids, Count: 3, Concurrency: 2, Ledger: &ledger, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Onboardings != 0 || rep.Errors != 3 || rep.ErrorsByKind["connect"] != 3 {
		t.Errorf("report = %+v, want 3 connect errors", rep)
	}
	if ledger.Len() != 0 {
		t.Errorf("ledger holds %q", ledger.String())
	}
}

// TestFloor runs the floor briefly: every step of the unit works with the
// lab's keys, and the result is a plausible rate.
func TestFloor(t *testing.T) {
	t.Parallel()
	clk := clock.New()
	dir := t.TempDir()
	if err := lab.Generate(dir, lab.GenerateOptions{Clock: clk, MASAAuthority: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	p, err := lab.Load(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := LoadIdentities(t.Context(), dir, clk)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Floor(t.Context(), FloorConfig{Lab: p, Identities: ids, Duration: time.Second, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if f.Units < 1 || f.CPUPerOpMs <= 0 || f.PerS <= 0 || f.Cores < 1 {
		t.Errorf("floor = %+v", f)
	}
	var rep Report
	rep.ThroughputPerS = f.PerS / 2
	rep.ServerCPUPerOpMs = f.CPUPerOpMs * 4
	rep.SetFloor(f)
	if rep.RatioToFloor != 0.5 || rep.FloorPerS != f.PerS || rep.ServerCPURatioToFloor != 0.25 {
		t.Errorf("SetFloor: ratio %v floor %v cpu ratio %v", rep.RatioToFloor, rep.FloorPerS, rep.ServerCPURatioToFloor)
	}
}

func TestConfig_Validate(t *testing.T) {
	t.Parallel()
	u := &url.URL{Scheme: "https", Host: "127.0.0.1:8443"}
	ok := Config{Registrar: u, Identities: &Identities{}, Count: 1, Clock: clock.NewFake()}.WithDefaults()
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"coaps-share-without-url", func(c *Config) { c.CoAPSShare = 0.5 }, "needs the registrar's coaps://host:port"},
		{"coaps-share-https-url", func(c *Config) { c.CoAPSShare = 0.5; c.CoAPSRegistrar = u }, "needs the registrar's coaps://host:port"},
		{"no-count-or-duration", func(c *Config) { c.Count = 0 }, "a count or a duration is required"},
		{"http-registrar", func(c *Config) { c.Registrar = &url.URL{Scheme: "http", Host: "x"} }, "want https://host:port"},
		{"reenroll-share", func(c *Config) { c.ReenrollShare = 1.5 }, "reenroll share"},
		{"rate", func(c *Config) { c.Rate = -1 }, "rate"},
		{"concurrency", func(c *Config) { c.Concurrency = -2 }, "concurrency"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := ok
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
	c := ok
	c.CoAPSShare = 1
	if err := c.Validate(); !errors.Is(err, ErrNoCoAPSRegistrar) {
		t.Errorf("Validate = %v, want ErrNoCoAPSRegistrar", err)
	}
	c.CoAPSRegistrar = &url.URL{Scheme: "coaps", Host: "127.0.0.1:5684"}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate with a coaps URL = %v", err)
	}
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{50: 50 * time.Millisecond, 95: 95 * time.Millisecond, 99: 99 * time.Millisecond, 100: 100 * time.Millisecond} {
		if got := percentile(d, p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	if got := percentile(nil, 99); got != 0 {
		t.Errorf("p99 of nothing = %v", got)
	}
}

func TestRunner_IsReenroll(t *testing.T) {
	t.Parallel()
	r := &runner{cfg: Config{ReenrollShare: 0.25}}
	n := 0
	for i := range 100 {
		if r.isReenroll(i) {
			n++
		}
	}
	if n != 25 {
		t.Errorf("%d of 100 operations re-enrol, want 25", n)
	}
}

func TestParseStatCPU(t *testing.T) {
	t.Parallel()
	// Field 2 may hold spaces and parentheses; utime 250 and stime 50 ticks.
	line := []byte("4242 (gate house (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 12345 1000000 2500\n")
	got, err := parseStatCPU(line)
	if err != nil || got != 3*time.Second {
		t.Errorf("parseStatCPU = %v, %v; want 3s", got, err)
	}
	if _, err := parseStatCPU([]byte("4242 (x) S 1")); err == nil {
		t.Error("short stat line accepted")
	}
	rss, err := parseStatusKB([]byte("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n"), "VmRSS:")
	if err != nil || rss != 1<<20 {
		t.Errorf("parseStatusKB = %v, %v", rss, err)
	}
}

// TestMetricsStats reads a real Prometheus process collector over HTTP,
// as --admin does with the admin listener's /metrics.
func TestMetricsStats(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	u, _ := url.Parse(srv.URL + "/metrics")
	// The collector counts CPU in clock ticks (10 ms): a test binary that
	// has barely run can read 0. Spend some first.
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
		_ = sha256.Sum256(make([]byte, 4096))
	}
	s, err := MetricsStats{URL: u, Client: srv.Client()}.Sample(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if s.CPU <= 0 || s.RSSBytes <= 0 {
		t.Errorf("sample = %+v", s)
	}
	bad, _ := url.Parse(srv.URL + "/nothing")
	if _, err := (MetricsStats{URL: bad, Client: srv.Client()}).Sample(t.Context()); err == nil {
		t.Error("a URL answering 404 was accepted")
	}
}

func TestParseMetrics(t *testing.T) {
	t.Parallel()
	text := "# HELP process_cpu_seconds_total x\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12.5\nprocess_resident_memory_bytes 3.3554432e+07\ngo_goroutines 9\n"
	s, err := parseMetrics(strings.NewReader(text))
	if err != nil || s.CPU != 12500*time.Millisecond || s.RSSBytes != 32<<20 {
		t.Errorf("parseMetrics = %+v, %v", s, err)
	}
	if _, err := parseMetrics(strings.NewReader("go_goroutines 9\n")); err == nil {
		t.Error("metrics without the process series accepted")
	}
}

// TestSeed seeds a real store, twice (resumable), and reads a record back.
func TestSeed(t *testing.T) {
	t.Parallel()
	db, err := store.Open(filepath.Join(t.TempDir(), "registrar.db"), store.Options{Clock: clock.NewFake()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for range 2 {
		if err := Seed(t.Context(), db, 300, nil); err != nil {
			t.Fatal(err)
		}
	}
	d, err := db.Device(t.Context(), store.DeviceKey{Issuer: SeedIssuer, Serial: "SEED-000000300"})
	if err != nil || d.Status != store.DeviceEnrolled {
		t.Fatalf("seeded device: %+v, %v", d, err)
	}
	page, err := db.ListDevices(t.Context(), store.DeviceFilter{Limit: 1000})
	if err != nil || len(page.Devices) != 300 {
		t.Fatalf("ListDevices: %d devices, %v; want 300", len(page.Devices), err)
	}
}

// TestRun_OpenLoop runs a short open loop (arrivals at a fixed rate)
// against an in-process lab: every arrival completes, the rate is
// reported, and the run lasts at least the arrival schedule.
func TestRun_OpenLoop(t *testing.T) {
	t.Parallel()
	clk := clock.New()
	dir := t.TempDir()
	u, _ := startLab(t, dir, clk)
	ids, err := LoadIdentities(t.Context(), dir, clk)
	if err != nil {
		t.Fatal(err)
	}
	const count, rate = 5, 20.0
	rep, err := Run(t.Context(), Config{Registrar: u, Identities: ids, Count: count, Rate: rate, Concurrency: 3, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Onboardings != count || rep.Errors != 0 || rep.Rate != rate {
		t.Errorf("report = %+v", rep)
	}
	// The last arrival is scheduled (count-1)/rate after the first.
	if sched := float64(count-1) / rate; rep.DurationS < sched {
		t.Errorf("duration %.3f s, shorter than the arrival schedule %.3f s", rep.DurationS, sched)
	}
}

// TestIdentities_Prepare: prepared identities are handed out before any
// is minted, all distinct and each a valid IDevID of the lab
// manufacturer; then Next mints again.
func TestIdentities_Prepare(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake()
	clk.Set(time.Now())
	dir := t.TempDir()
	if err := lab.Generate(dir, lab.GenerateOptions{Clock: clk, MASAAuthority: "127.0.0.1:9443"}); err != nil {
		t.Fatal(err)
	}
	ids, err := LoadIdentities(t.Context(), dir, clk)
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	if err := ids.Prepare(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	if minted := ids.n.Load(); minted != n {
		t.Fatalf("Prepare(%d) minted %d", n, minted)
	}
	seen := map[string]bool{}
	for range n + 1 {
		cert, serial, err := ids.Next()
		if err != nil {
			t.Fatal(err)
		}
		if seen[serial] || cert.Leaf == nil || cert.Leaf.Subject.SerialNumber != serial {
			t.Fatalf("identity %q: repeated, or its certificate says %v", serial, cert.Leaf)
		}
		seen[serial] = true
		if err := cert.Leaf.CheckSignatureFrom(ids.ca.Cert); err != nil {
			t.Fatalf("identity %q: %v", serial, err)
		}
	}
	// n prepared, then one minted by Next.
	if minted := ids.n.Load(); minted != n+1 {
		t.Fatalf("%d minted after %d Next calls, want %d", minted, n+1, n+1)
	}
}

// TestReport_SharedCeiling: the ceiling is cores over the floor's CPU
// per onboarding plus the load generator's.
func TestReport_SharedCeiling(t *testing.T) {
	t.Parallel()
	r := &Report{ThroughputPerS: 100, ServerCPUPerOpMs: 5, ClientCPUPerOpMs: 3}
	r.SetFloor(&FloorReport{PerS: 800, CPUPerOpMs: 2.5, Cores: 2})
	if want := 2000 / 5.5; math.Abs(r.SharedCeilingPerS-want) > 1e-9 {
		t.Fatalf("ceiling %v, want %v", r.SharedCeilingPerS, want)
	}
	if want := 2000 / 5.5 / 800; math.Abs(r.SharedCeilingRatio-want) > 1e-9 {
		t.Fatalf("ceiling ratio %v, want %v", r.SharedCeilingRatio, want)
	}
	if r.ServerCPURatioToFloor != 0.5 || r.RatioToFloor != 0.125 {
		t.Fatalf("ratios %v %v", r.ServerCPURatioToFloor, r.RatioToFloor)
	}
	// With re-enrolments (or CoAPS onboardings) among the operations, CPU
	// per operation is not comparable with the floor's onboarding.
	r3 := &Report{ThroughputPerS: 100, ServerCPUPerOpMs: 5, ClientCPUPerOpMs: 3, Reenrollments: 1}
	r3.SetFloor(&FloorReport{PerS: 800, CPUPerOpMs: 2.5, Cores: 2})
	if r3.ServerCPURatioToFloor != 0 || r3.SharedCeilingPerS != 0 || r3.RatioToFloor != 0.125 {
		t.Fatalf("mixed run: %+v", r3)
	}
	// Without the load generator's CPU there is no ceiling.
	r2 := &Report{ThroughputPerS: 100}
	r2.SetFloor(&FloorReport{PerS: 800, CPUPerOpMs: 2.5, Cores: 2})
	if r2.SharedCeilingPerS != 0 {
		t.Fatalf("ceiling %v without client CPU", r2.SharedCeilingPerS)
	}
}
