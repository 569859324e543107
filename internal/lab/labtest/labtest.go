// Package labtest starts an in-process lab for tests: the lab's registrar
// (BRSKI and EST, as "gatehouse lab" serves it) and its MASA, each over TLS
// on a free loopback port. Import it only from _test.go files.
package labtest

import (
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-pki/gatehouse/internal/lab"
	"github.com/gatehouse-pki/gatehouse/internal/web"
)

// Start opens a lab with opts and serves its registrar and MASA until stop
// is called or the test ends; stop is safe to call more than once. Unset
// listen addresses default to free loopback ports, an unset Logger discards
// and unset Metrics is a fresh registry.
func Start(t *testing.T, opts lab.Options) (*lab.Lab, func()) {
	t.Helper()
	if opts.HTTPSAddr == "" {
		opts.HTTPSAddr = "127.0.0.1:0"
	}
	if opts.MASAAddr == "" {
		opts.MASAAddr = "127.0.0.1:0"
	}
	if opts.AdminAddr == "" {
		opts.AdminAddr = "127.0.0.1:0"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = prometheus.NewRegistry()
	}
	l, err := lab.Open(t.Context(), opts)
	if err != nil {
		t.Fatalf("lab.Open: %v", err)
	}
	reg := web.NewServer(l.Handler(), nil, opts.Logger)
	l.Registrar.ConfigureServer(reg)
	masaSrv := web.NewServer(l.MASA.Handler(), l.MASA.TLSConfig(l.PKI.MASATLS), opts.Logger)
	done := make(chan struct{}, 2)
	go func() { _ = reg.ServeTLS(l.HTTPS, "", ""); done <- struct{}{} }()
	go func() { _ = masaSrv.ServeTLS(l.MASAListener, "", ""); done <- struct{}{} }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = reg.Close()
		_ = masaSrv.Close()
		<-done
		<-done
		if err := l.Close(); err != nil {
			t.Errorf("lab Close: %v", err)
		}
	}
	t.Cleanup(stop)
	return l, stop
}
