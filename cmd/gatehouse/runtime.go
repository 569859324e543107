package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"

	"github.com/spf13/cobra"
)

// defaultMemoryLimit is the daemons' soft memory limit (--memory-limit)
// when GOMEMLIMIT is not set: the garbage collector works harder as the
// heap nears it, so the excess of RSS that is collector headroom rather
// than live data stays under it (docs/performance.md: a lab with 1,000
// pledges in flight peaks at 178–189 MiB without a limit, 127 MiB with
// 100 MiB). It is soft: live data above it is kept, not refused.
const defaultMemoryLimit = 100 << 20

// daemonFlags are the runtime flags of the long-running commands (lab,
// registrar, masa).
type daemonFlags struct {
	// memoryLimit is the soft memory limit in MiB; 0 leaves none. An
	// explicit GOMEMLIMIT in the environment wins.
	memoryLimit int64
	// pprof serves net/http/pprof under /debug/pprof/ on the admin
	// listener, with block and mutex profiling on.
	pprof bool
}

func (f *daemonFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.Int64Var(&f.memoryLimit, "memory-limit", defaultMemoryLimit>>20, "soft memory limit of the Go runtime in MiB (0: none); GOMEMLIMIT in the environment takes precedence")
	fl.BoolVar(&f.pprof, "pprof", false, "serve runtime profiles (net/http/pprof) under /debug/pprof/ on the admin listener; loopback admin listeners only")
}

// apply sets the memory limit with set (debug.SetMemoryLimit; nil leaves
// it) and, with --pprof, turns on block and mutex profiling. It logs what
// it chose at debug level.
func (f *daemonFlags) apply(logger *slog.Logger, set func(int64) int64) error {
	if f.memoryLimit < 0 {
		return usageError{fmt.Errorf("--memory-limit %d: must be 0 or more MiB", f.memoryLimit)}
	}
	switch env := os.Getenv("GOMEMLIMIT"); {
	case set == nil:
	case env != "":
		// The runtime read it at start; leave it.
		logger.Debug("memory limit", slog.String("source", "GOMEMLIMIT"), slog.String("limit", env))
	case f.memoryLimit > 0:
		set(f.memoryLimit << 20)
		logger.Debug("memory limit", slog.String("source", "flag"), slog.Int64("limit_mib", f.memoryLimit))
	}
	if f.pprof {
		// Every blocking event and every contended mutex: this is for a
		// profiling session, not for production.
		runtime.SetBlockProfileRate(1)
		runtime.SetMutexProfileFraction(1)
	}
	return nil
}

// withPprof adds net/http/pprof's handlers under /debug/pprof/ to h, the
// handler of the admin listener ln, when on; it refuses when ln is not on
// a loopback address (the admin API's profiles have no authentication).
func withPprof(h http.Handler, on bool, ln net.Listener) (http.Handler, error) {
	if !on {
		return h, nil
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
		return nil, usageError{fmt.Errorf("--pprof: the admin listener %s is not on a loopback address; profiles are served without authentication", ln.Addr())}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/", h)
	return mux, nil
}
