package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// ServerSample is one reading of the server process.
type ServerSample struct {
	// CPU is the process's user + system CPU time so far.
	CPU time.Duration
	// RSSBytes is its resident set size now.
	RSSBytes int64
}

// ServerStats reads the server process's CPU time and RSS.
type ServerStats interface {
	Sample(ctx context.Context) (ServerSample, error)
}

// userHZ is the unit of the CPU times in /proc/PID/stat (USER_HZ, 100 on
// every Linux architecture Go supports).
const userHZ = 100

// ProcStats reads /proc/PID/stat and /proc/PID/status (Linux): the server
// runs on this machine with a known process ID.
type ProcStats struct {
	// PID is the server's process ID.
	PID int
	// Root is the proc file system. Default "/proc".
	Root string
}

// Sample implements ServerStats.
func (p ProcStats) Sample(_ context.Context) (ServerSample, error) {
	root := p.Root
	if root == "" {
		root = "/proc"
	}
	dir := root + "/" + strconv.Itoa(p.PID)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return ServerSample{}, fmt.Errorf("server process %d: %w", p.PID, err)
	}
	cpu, err := parseStatCPU(stat)
	if err != nil {
		return ServerSample{}, fmt.Errorf("server process %d: %w", p.PID, err)
	}
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return ServerSample{}, fmt.Errorf("server process %d: %w", p.PID, err)
	}
	rss, err := parseStatusKB(status, "VmRSS:")
	if err != nil {
		return ServerSample{}, fmt.Errorf("server process %d: %w", p.PID, err)
	}
	return ServerSample{CPU: cpu, RSSBytes: rss}, nil
}

// maxTicks bounds a CPU time read from /proc (about 29 years in USER_HZ
// ticks), so the sum converts to a Duration without overflow.
const maxTicks = 1 << 37

// parseStatCPU returns utime + stime of a /proc/PID/stat line (fields 14
// and 15; the command name, field 2, may hold spaces and parentheses).
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat %q", b)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed stat %q", b)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed stat %q: %w", b, err)
		}
		if n < 0 || n > maxTicks {
			return 0, fmt.Errorf("malformed stat %q: CPU time %d out of range", b, n)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// parseStatusKB returns the value in bytes of a "Key: N kB" line of
// /proc/PID/status.
func parseStatusKB(b []byte, key string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), key)
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("malformed %s line %q", key, sc.Text())
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed %s line %q: %w", key, sc.Text(), err)
		}
		return n << 10, nil
	}
	return 0, fmt.Errorf("no %s line", key)
}

// MetricsStats reads process_cpu_seconds_total and
// process_resident_memory_bytes from a Prometheus text endpoint (the
// admin listener's /metrics), for a server on another machine or whose
// process ID is not known.
type MetricsStats struct {
	// URL is the /metrics URL.
	URL *url.URL
	// Client does the GET. Default http.DefaultClient.
	Client *http.Client
}

// Sample implements ServerStats.
func (m MetricsStats) Sample(ctx context.Context) (ServerSample, error) {
	hc := m.Client
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.URL.String(), nil)
	if err != nil {
		return ServerSample{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return ServerSample{}, fmt.Errorf("server metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ServerSample{}, fmt.Errorf("server metrics %s: %s", m.URL, resp.Status)
	}
	return parseMetrics(io.LimitReader(resp.Body, 4<<20))
}

// parseMetrics reads the two process series from Prometheus text.
func parseMetrics(r io.Reader) (ServerSample, error) {
	var s ServerSample
	var haveCPU, haveRSS bool
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if name != "process_cpu_seconds_total" && name != "process_resident_memory_bytes" {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return s, fmt.Errorf("server metrics: %s: %w", name, err)
		}
		// Both are non-negative; the bounds keep the conversions exact
		// enough and free of overflow (a billion seconds, a pebibyte).
		if !(f >= 0 && f <= 1e15) {
			return s, fmt.Errorf("server metrics: %s %v out of range", name, f)
		}
		if name == "process_cpu_seconds_total" {
			if f > 1e9 {
				return s, fmt.Errorf("server metrics: %s %v out of range", name, f)
			}
			s.CPU, haveCPU = time.Duration(f*float64(time.Second)), true
		} else {
			s.RSSBytes, haveRSS = int64(f), true
		}
	}
	if err := sc.Err(); err != nil {
		return s, fmt.Errorf("server metrics: %w", err)
	}
	if !haveCPU || !haveRSS {
		return s, fmt.Errorf("server metrics: no process_cpu_seconds_total or process_resident_memory_bytes series")
	}
	return s, nil
}
