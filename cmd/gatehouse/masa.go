package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/spf13/cobra"

	"github.com/gatehouse-pki/gatehouse/configs"
	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/masa"
	"github.com/gatehouse-pki/gatehouse/store"
)

func (a *app) masaCmd() *cobra.Command {
	var config string
	var daemon daemonFlags
	cmd := &cobra.Command{
		Use:   "masa --config FILE",
		Short: "Run the MASA daemon (voucher signing for registrars)",
		Long: `Runs the MASA from a YAML config (see "gatehouse config example masa"):
HTTPS for registrars on listen (requestvoucher, requestauditlog), and
/healthz, /readyz and /metrics on admin. Key files must be mode 0600. When
ownership.registrarCAs is set, registrars must present a TLS client
certificate issued by one of those CAs. Stops gracefully on SIGINT or
SIGTERM.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if config == "" {
				return usageError{errors.New("masa: --config FILE is required (gatehouse config example masa prints one)")}
			}
			return a.runMASA(cmd, config, &daemon)
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "MASA config file, YAML (required)")
	daemon.register(cmd)
	return cmd
}

func (a *app) runMASA(cmd *cobra.Command, path string, daemon *daemonFlags) error {
	cfg, err := configs.LoadMASA(path)
	if err != nil {
		return err
	}
	ctx, stop := signalContext(cmd.Context())
	defer stop()
	signing, err := loadKeyPair(ctx, "signing", cfg.Signing.CertFile, cfg.Signing.KeyFile)
	if err != nil {
		return err
	}
	tlsCert, err := loadKeyPair(ctx, "tls", cfg.TLS.CertFile, cfg.TLS.KeyFile)
	if err != nil {
		return err
	}
	idevidAnchors, err := readCertificateFiles("idevidAnchors", cfg.IDevIDAnchors)
	if err != nil {
		return err
	}
	registrarCAs, err := readCertificateFiles("ownership.registrarCAs", cfg.Ownership.RegistrarCAs)
	if err != nil {
		return err
	}
	var chain []*x509.Certificate
	for _, der := range signing.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return err
		}
		chain = append(chain, c)
	}

	logger := newLogger(a.stderr, cfg.Log.Level)
	if err := daemon.apply(logger, a.setMemoryLimit); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	db, err := store.Open(filepath.Join(cfg.DataDir, masaDBFile), store.Options{Clock: a.clk})
	if err != nil {
		return err
	}
	defer db.Close()
	auditPath := cfg.Log.AuditFile
	if auditPath == "" {
		auditPath = filepath.Join(cfg.DataDir, auditFileName)
	}
	rec, auditFile, err := audit.Open(db, auditPath)
	if err != nil {
		return err
	}
	defer auditFile.Close()
	reg := newMetricsRegistry()
	svc, err := masa.New(masa.Config{
		Ownership:         cfg.Ownership.Mode,
		NoncelessValidity: cfg.NoncelessValidity.D(),
	}, masa.Deps{
		Logger:        logger,
		Clock:         a.clk,
		Metrics:       reg,
		Store:         db,
		Audit:         rec,
		SigningKey:    signing.PrivateKey.(crypto.Signer),
		SigningChain:  chain,
		IDevIDAnchors: idevidAnchors,
	})
	if err != nil {
		return err
	}
	tlsCfg := svc.TLSConfig(tlsCert)
	if len(registrarCAs) > 0 {
		pool := x509.NewCertPool()
		for _, c := range registrarCAs {
			pool.AddCert(c)
		}
		tlsCfg.ClientCAs = pool
		tlsCfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	var ready atomic.Bool
	ln, err := listen(ctx, "masa https", cfg.Listen)
	if err != nil {
		return err
	}
	eps := []endpoint{{name: "masa", ln: ln, srv: newServer(svc.Handler(), tlsCfg, logger), tls: true}}
	if cfg.Admin != "" {
		adminLn, err := listen(ctx, "admin", cfg.Admin)
		if err != nil {
			_ = ln.Close()
			return err
		}
		admin, err := withPprof(adminHandler(reg, nil, &ready), daemon.pprof, adminLn)
		if err != nil {
			_ = ln.Close()
			_ = adminLn.Close()
			return err
		}
		eps = append(eps, endpoint{name: "admin", ln: adminLn, srv: newServer(admin, nil, logger)})
	}
	if err := rec.Record(ctx, audit.New(audit.Startup, "component", "masa", "config", path, "listen", ln.Addr().String())); err != nil {
		closeListeners(eps)
		return err
	}
	printEndpoints(cmd.OutOrStdout(), eps)
	serveErr := serveAll(ctx, logger, eps, &ready)
	_ = rec.Record(context.WithoutCancel(ctx), audit.New(audit.Shutdown, "component", "masa"))
	return serveErr
}
