package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/jmhodges/clock"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-pki/gatehouse/coap"
	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/registrar"
)

// coapsEndpoint is a bound CoAPS (DTLS) listener and its server.
type coapsEndpoint struct {
	srv *coap.Server
	ln  *coap.Listener
	wg  sync.WaitGroup
}

// listenCoAPS builds the CoAPS server on the registrar's services and binds
// addr (UDP).
func listenCoAPS(logger *slog.Logger, clk clock.Clock, reg prometheus.Registerer, svc *registrar.Service, estSrv *est.Server, addr string, cfg coap.Config) (*coapsEndpoint, error) {
	srv, err := coap.New(cfg, coap.Deps{Logger: logger, Clock: clk, Metrics: reg, Registrar: svc, EST: estSrv})
	if err != nil {
		return nil, err
	}
	ln, err := srv.Listen(addr)
	if err != nil {
		return nil, fmt.Errorf("registrar coaps: listen on %s: %w (is another gatehouse running? choose another address)", addr, err)
	}
	return &coapsEndpoint{srv: srv, ln: ln}, nil
}

// URL is the endpoint's coaps:// URL.
func (c *coapsEndpoint) URL() string { return "coaps://" + c.ln.Addr().String() }

// serve runs the server until stop; a failure cancels cancel (so the
// other listeners stop too) and is logged.
func (c *coapsEndpoint) serve(logger *slog.Logger, cancel context.CancelFunc) {
	c.wg.Go(func() {
		if err := c.srv.Serve(c.ln); err != nil {
			logger.Error("coaps listener failed", slog.String("err", err.Error()))
			cancel()
		}
	})
}

// stop stops the server and waits for it.
func (c *coapsEndpoint) stop() {
	c.srv.Stop()
	c.wg.Wait()
}
