package bench

import (
	"bytes"
	"testing"
)

// FuzzParseMetrics: the admin endpoint's /metrics text is read from
// another process (possibly another machine): never a panic, and a
// successful parse has found both series, with non-negative values.
func FuzzParseMetrics(f *testing.F) {
	f.Add([]byte("process_cpu_seconds_total 12.5\nprocess_resident_memory_bytes 3.3554432e+07\n"))
	f.Add([]byte("# HELP x\nprocess_cpu_seconds_total NaN\nprocess_resident_memory_bytes -1\n"))
	f.Add([]byte("process_cpu_seconds_total 1e400\nprocess_resident_memory_bytes 0x10\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseMetrics(bytes.NewReader(b))
		if err != nil {
			return
		}
		if s.CPU < 0 || s.RSSBytes < 0 || !bytes.Contains(b, []byte("process_cpu_seconds_total ")) || !bytes.Contains(b, []byte("process_resident_memory_bytes ")) {
			t.Fatalf("parsed %+v from input without both series", s)
		}
	})
}

// FuzzParseStatCPU: /proc/PID/stat of another process; the command name
// field may hold anything. Never a panic, never a negative time.
func FuzzParseStatCPU(f *testing.F) {
	f.Add([]byte("4242 (gate house (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 12345 1000000 2500\n"))
	f.Add([]byte("1 ()) R 0 0 0 0 0 0 0 0 0 0 -5 3"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseStatCPU(b)
		if err == nil && d < 0 {
			t.Fatalf("negative CPU time %v from %q", d, b)
		}
	})
}
