package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatehouse-pki/gatehouse/internal/lab"
	"github.com/gatehouse-pki/gatehouse/internal/web"
	"github.com/gatehouse-pki/gatehouse/pki"
)

// drainTimeout bounds the graceful shutdown of all listeners.
const drainTimeout = 10 * time.Second

// endpoint is one listener and the server that serves it.
type endpoint struct {
	// name is the role shown to the operator: registrar, masa, admin.
	name string
	ln   net.Listener
	srv  *http.Server
	// tls serves with srv.TLSConfig (already set).
	tls bool
}

// URL returns the endpoint's base URL with the bound address.
func (e endpoint) URL() string {
	scheme := "http"
	if e.tls {
		scheme = "https"
	}
	return scheme + "://" + e.ln.Addr().String()
}

// signalContext returns a context cancelled on SIGINT or SIGTERM.
func signalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

// serveAll serves every endpoint until ctx ends or one fails, then stops
// accepting, drains in-flight requests for at most drainTimeout, and
// returns. ready reports true while every listener is serving.
func serveAll(ctx context.Context, logger *slog.Logger, eps []endpoint, ready *atomic.Bool) error {
	errc := make(chan error, len(eps))
	var wg sync.WaitGroup
	for _, e := range eps {
		wg.Go(func() {
			var err error
			if e.tls {
				err = e.srv.ServeTLS(e.ln, "", "")
			} else {
				err = e.srv.Serve(e.ln)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s listener %s: %w", e.name, e.ln.Addr(), err)
			}
		})
	}
	// The listeners are bound already, so connections queue from here on.
	ready.Store(true)
	var serveErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down", slog.String("reason", "signal"))
	case serveErr = <-errc:
		logger.Error("shutting down", slog.String("err", serveErr.Error()))
	}
	ready.Store(false)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
	defer cancel()
	shutErrs := make([]error, len(eps))
	var sg sync.WaitGroup
	for i, e := range eps {
		sg.Go(func() {
			start := time.Now()
			if err := e.srv.Shutdown(sctx); err != nil {
				shutErrs[i] = fmt.Errorf("drain %s: %w", e.name, err)
				_ = e.srv.Close()
			}
			logger.Debug("listener stopped", slog.String("listener", e.name), slog.Duration("took", time.Since(start)))
		})
	}
	sg.Wait()
	wg.Wait()
	return errors.Join(append([]error{serveErr}, shutErrs...)...)
}

// newMetricsRegistry returns a non-global registry with the Go runtime and
// process collectors.
func newMetricsRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// adminHandler serves /healthz and /readyz (both 200 once every listener
// is serving and until shutdown begins, 503 otherwise: the issue's "answers
// 200 once everything is ready"), /metrics from reg, and api (when not nil)
// under /api/v1/.
func adminHandler(reg *prometheus.Registry, api http.Handler, ready *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	readiness := func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready: starting or stopping", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	}
	mux.HandleFunc("GET /healthz", readiness)
	mux.HandleFunc("GET /readyz", readiness)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	if api != nil {
		mux.Handle("/api/v1/", api)
	}
	return mux
}

// limitListener caps ln's connections per source IP (web.LimitListener,
// reliability G05) and counts the refused ones in
// brski_listener_connections_refused_total{listener=name} on reg.
func limitListener(reg prometheus.Registerer, name string, ln net.Listener, maxPerIP int) net.Listener {
	refused := promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name: "brski_listener_connections_refused_total",
		Help: "Connections closed at accept because their source IP address held the maximum of open connections.",
	}, []string{"listener"}).WithLabelValues(name)
	return web.LimitListener(ln, web.LimitOptions{MaxConnsPerIP: maxPerIP, OnRefused: refused.Inc})
}

// listen binds addr for the named role, with an error an operator can act on.
func listen(ctx context.Context, role, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen on %s: %w (is another gatehouse running? choose another address with a flag)", role, addr, err)
	}
	return ln, nil
}

// newLogger returns the JSON logger on w at level (debug, info, warn,
// error).
func newLogger(w io.Writer, level string) *slog.Logger {
	var lv slog.LevelVar
	_ = lv.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: &lv}))
}

// newServer builds an http.Server with the project's limits.
func newServer(h http.Handler, tlsConfig *tls.Config, logger *slog.Logger) *http.Server {
	return web.NewServer(h, tlsConfig, logger)
}

// loadKeyPair reads a PEM certificate chain (end-entity first) and its key
// file, and checks they match. pki.LoadSigner refuses a key file accessible
// by group or others (DESIGN.md: key files are 0600), naming the file, its
// mode and the fix.
func loadKeyPair(ctx context.Context, what, certFile, keyFile string) (tls.Certificate, error) {
	chain, err := readCertificates(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s certificate %s: %w", what, certFile, err)
	}
	key, err := pki.LoadSigner(ctx, keyFile, nil)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s key: %w", what, err)
	}
	kc, err := lab.KeyPair(chain, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s: %s and %s: %w", what, certFile, keyFile, err)
	}
	return kc, nil
}

// readCertificateFiles reads every certificate of every file.
func readCertificateFiles(what string, files []string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for _, f := range files {
		cs, err := readCertificates(f)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", what, f, err)
		}
		out = append(out, cs...)
	}
	return out, nil
}
