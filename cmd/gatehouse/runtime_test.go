package main

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"strings"
	"testing"
)

// TestDaemonFlags_MemoryLimit: the flag sets the runtime's soft limit, an
// explicit GOMEMLIMIT wins over it, and 0 leaves the limit alone. Not
// parallel: the limit is process-wide (and t.Setenv forbids it).
func TestDaemonFlags_MemoryLimit(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	logger := slog.New(slog.DiscardHandler)
	const sentinel = 1 << 40

	tests := []struct {
		name  string
		env   string
		limit int64
		want  int64
	}{
		{name: "flag", limit: 64, want: 64 << 20},
		{name: "default", limit: defaultMemoryLimit >> 20, want: defaultMemoryLimit},
		{name: "GOMEMLIMIT wins", env: "80MiB", limit: 64, want: sentinel},
		{name: "zero leaves it", limit: 0, want: sentinel},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOMEMLIMIT", tc.env)
			debug.SetMemoryLimit(sentinel)
			f := daemonFlags{memoryLimit: tc.limit}
			if err := f.apply(logger, debug.SetMemoryLimit); err != nil {
				t.Fatal(err)
			}
			if got := debug.SetMemoryLimit(-1); got != tc.want {
				t.Errorf("memory limit = %d, want %d", got, tc.want)
			}
		})
	}
	debug.SetMemoryLimit(sentinel)
	if err := (&daemonFlags{memoryLimit: 64}).apply(logger, nil); err != nil || debug.SetMemoryLimit(-1) != sentinel {
		t.Errorf("without a setter: %v, limit changed", err)
	}
	if err := (&daemonFlags{memoryLimit: -1}).apply(logger, debug.SetMemoryLimit); err == nil {
		t.Error("--memory-limit -1 accepted")
	}
}

// TestWithPprof: /debug/pprof/ is served only when asked for, and the
// wrapped handler still serves everything else.
func TestWithPprof(t *testing.T) {
	t.Parallel()
	inner := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "inner") })
	for _, on := range []bool{false, true} {
		srv := httptest.NewUnstartedServer(nil)
		h, err := withPprof(inner, on, srv.Listener)
		if err != nil {
			t.Fatal(err)
		}
		srv.Config.Handler = h
		srv.Start()
		get := func(path string) (int, string) {
			t.Helper()
			resp, err := srv.Client().Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		if code, body := get("/metrics"); code != http.StatusOK || body != "inner" {
			t.Errorf("pprof %v: /metrics = %d %q, want the wrapped handler", on, code, body)
		}
		code, body := get("/debug/pprof/goroutine?debug=1")
		if served := code == http.StatusOK && body != "inner"; served != on {
			t.Errorf("pprof %v: /debug/pprof/goroutine = %d (served %v)", on, code, served)
		}
		srv.Close()
	}
}

// TestWithPprof_LoopbackOnly: --pprof is refused for an admin listener
// that is not on a loopback address.
func TestWithPprof_LoopbackOnly(t *testing.T) {
	t.Parallel()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "0.0.0.0:0")
	if err != nil {
		t.Skipf("cannot listen on all addresses: %v", err)
	}
	defer ln.Close()
	if _, err := withPprof(http.NotFoundHandler(), true, ln); err == nil || !strings.Contains(err.Error(), "not on a loopback address") {
		t.Fatalf("--pprof on %s: %v, want a refusal", ln.Addr(), err)
	}
	if _, err := withPprof(http.NotFoundHandler(), false, ln); err != nil {
		t.Fatalf("without --pprof: %v", err)
	}
}
