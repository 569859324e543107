package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"

	"github.com/spf13/cobra"

	"github.com/gatehouse-pki/gatehouse/coap"
	"github.com/gatehouse-pki/gatehouse/internal/lab"
)

// labFlags are the flags of `gatehouse lab`.
type labFlags struct {
	data, https, coaps, masa, admin, logLevel string
	daemon                                    daemonFlags
}

func (a *app) labCmd() *cobra.Command {
	var f labFlags
	cmd := &cobra.Command{
		Use:   "lab [--data DIR] [--https ADDR] [--coaps ADDR] [--masa ADDR] [--admin ADDR]",
		Short: "Run a registrar, a MASA and a domain CA on loopback, with a generated lab PKI",
		Long: `Runs a complete onboarding lab in one process: a BRSKI registrar (HTTPS), a
MASA (first-claim ownership) and the admin listener (/healthz, /readyz,
/metrics, /api/v1/). On first start it generates a lab PKI under DIR/lab: a
manufacturer (IDevID CA, MASA signing and TLS certificates), a domain CA with
the registrar's RA/TLS certificate, and ten pledges GH-0001 … GH-0010.
Restarting on the same DIR reuses everything. State: DIR/registrar.db,
DIR/masa.db; audit trails: DIR/audit.log, DIR/masa-audit.log.

It prints the bound addresses (port 0 picks a free port) and a ready-to-paste
pledge command, then serves until SIGINT or SIGTERM.

The registrar also serves cBRSKI and EST-coaps over DTLS on --coaps
(docs/flows/coap.md).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runLab(cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.data, "data", "./data", "data directory (lab PKI, stores, audit files)")
	fl.StringVar(&f.https, "https", lab.DefaultHTTPSAddr, "registrar HTTPS (BRSKI) listen address")
	fl.StringVar(&f.coaps, "coaps", lab.DefaultCoAPSAddr, "registrar CoAPS (DTLS) listen address")
	fl.StringVar(&f.masa, "masa", lab.DefaultMASAAddr, "MASA HTTPS listen address")
	fl.StringVar(&f.admin, "admin", lab.DefaultAdminAddr, "admin listen address: /healthz, /readyz, /metrics, /api/v1/")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level on stderr: debug, info, warn or error")
	f.daemon.register(cmd)
	return cmd
}

func (a *app) runLab(cmd *cobra.Command, f labFlags) error {
	logger := newLogger(a.stderr, f.logLevel)
	if err := f.daemon.apply(logger, a.setMemoryLimit); err != nil {
		return err
	}
	ctx, stop := signalContext(cmd.Context())
	defer stop()
	host, _ := os.Hostname()
	reg := newMetricsRegistry()
	l, err := lab.Open(ctx, lab.Options{
		Dir:       f.data,
		HTTPSAddr: f.https,
		MASAAddr:  f.masa,
		AdminAddr: f.admin,
		Clock:     a.clk,
		Logger:    logger,
		Metrics:   reg,
		Hostname:  host,
	})
	if err != nil {
		return err
	}
	defer l.Close()

	logger.Info("issuance intents resolved", slog.Int("completed", l.Resolved.Completed), slog.Int("abandoned", l.Resolved.Abandoned))
	regSrv := newServer(l.Handler(), nil, logger)
	l.Registrar.ConfigureServer(regSrv)
	var ready atomic.Bool
	admin, err := withPprof(adminHandler(reg, l.AdminHandler(), &ready), f.daemon.pprof, l.Admin)
	if err != nil {
		return err
	}
	eps := []endpoint{
		{name: "registrar", ln: l.HTTPS, srv: regSrv, tls: true},
		{name: "masa", ln: l.MASAListener, srv: newServer(l.MASA.Handler(), l.MASA.TLSConfig(l.PKI.MASATLS), logger), tls: true},
		{name: "admin", ln: l.Admin, srv: newServer(admin, nil, logger)},
	}
	coaps, err := listenCoAPS(logger, a.clk, reg, l.Registrar, l.EST, f.coaps, coap.Config{})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	coaps.serve(logger, cancel)
	registrarURL := "https://" + lab.Dialable(l.HTTPS)
	a.printLabBanner(cmd, l, coaps.URL(), registrarURL)
	logger.Info("lab serving",
		slog.String("registrar", registrarURL),
		slog.String("masa", l.MASAURL.String()),
		slog.String("admin", "http://"+lab.Dialable(l.Admin)))
	serveErr := serveAll(ctx, logger, eps, &ready)
	coaps.stop()
	closeErr := l.Close()
	logger.Debug("stores closed")
	if err := errors.Join(serveErr, closeErr); err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), "lab stopped")
	return nil
}

// printLabBanner prints the lab's addresses, one "role: value" per line so
// scripts can read them, and the pledge command.
func (a *app) printLabBanner(cmd *cobra.Command, l *lab.Lab, coapsURL, registrarURL string) {
	w := cmd.OutOrStdout()
	state := "reusing the lab PKI in"
	if l.Generated {
		state = "generated a new lab PKI in"
	}
	p := l.PKI
	fmt.Fprintf(w, "gatehouse lab: %s %s\n", state, p.Paths.Lab)
	fmt.Fprintf(w, "registrar: %s\n", registrarURL)
	fmt.Fprintf(w, "masa: %s\n", l.MASAURL)
	fmt.Fprintf(w, "admin: http://%s\n", lab.Dialable(l.Admin))
	fmt.Fprintf(w, "coaps: %s\n", coapsURL)
	fmt.Fprintf(w, "masa-anchor: %s\n", p.Paths.MASA)
	fmt.Fprintf(w, "domain-ca: %s\n", p.Paths.DomainCA)
	fmt.Fprintf(w, "pledges: %s … %s in %s\n", p.Pledges[0].Serial, p.Pledges[len(p.Pledges)-1].Serial, p.Paths.PledgesDir)
	fmt.Fprintf(w, "\nEnrol a pledge from a second terminal:\n\n")
	fmt.Fprintf(w, "    %s\n\n", l.PledgeCommand(programName(), registrarURL, p.Pledges[0].Serial))
	fmt.Fprintf(w, "or over CoAP/DTLS (cBRSKI, EST-coaps):\n\n")
	fmt.Fprintf(w, "    %s\n\n", l.PledgeCommand(programName(), coapsURL, p.Pledges[1].Serial))
	fmt.Fprintf(w, "See the devices with:\n\n    %s devices list --admin http://%s\n\n", programName(), lab.Dialable(l.Admin))
	fmt.Fprintln(w, "ready (Ctrl-C to stop)")
}

// programName is how this binary was invoked, for commands it prints.
func programName() string {
	if len(os.Args) > 0 && os.Args[0] != "" {
		return os.Args[0]
	}
	return "gatehouse"
}
