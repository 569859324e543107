package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/jmhodges/clock"
	"github.com/spf13/cobra"

	"github.com/gatehouse-pki/gatehouse/configs"
	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pki/lint"
	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/store"
)

// Database file names under a daemon's dataDir.
const (
	registrarDBFile = "registrar.db"
	masaDBFile      = "masa.db"
	auditFileName   = "audit.log"
	// caKeyDir holds the domain CA keys a rollover generates.
	caKeyDir = "ca"
)

func (a *app) registrarCmd() *cobra.Command {
	var config string
	var daemon daemonFlags
	cmd := &cobra.Command{
		Use:   "registrar --config FILE",
		Short: "Run the registrar daemon (BRSKI over HTTPS and CoAPS, admin listener)",
		Long: `Runs the registrar from a YAML config (see "gatehouse config example
registrar"): BRSKI over HTTPS on listen.https, and /healthz, /readyz,
/metrics and the /api/v1/ admin API on listen.admin. Key files must be mode
0600. Stops gracefully on SIGINT or SIGTERM.

EST is served on the same listener; other EST clients than BRSKI pledges
only as the est section allows. With listen.coaps set, cBRSKI and EST-coaps
are served over DTLS there too (the coaps section bounds it).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if config == "" {
				return usageError{errors.New("registrar: --config FILE is required (gatehouse config example registrar prints one)")}
			}
			return a.runRegistrar(cmd, config, &daemon)
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "registrar config file, YAML (required)")
	daemon.register(cmd)
	return cmd
}

func (a *app) runRegistrar(cmd *cobra.Command, path string, daemon *daemonFlags) error {
	cfg, err := configs.LoadRegistrar(path)
	if err != nil {
		return err
	}
	if cfg.Listen.Admin != "" && cfg.Listen.AdminTokenFile != "" {
		// TODO(#admin-auth): bearer token authentication of the admin API.
		return errors.New("registrar: listen.adminTokenFile is not supported yet; bind listen.admin to a loopback address and remove it")
	}
	ctx, stop := signalContext(cmd.Context())
	defer stop()
	ra, err := loadKeyPair(ctx, "tls", cfg.TLS.CertFile, cfg.TLS.KeyFile)
	if err != nil {
		return err
	}
	domain, err := readCertificates(cfg.DomainCA.CertFile)
	if err != nil {
		return fmt.Errorf("domainCA certificate %s: %w", cfg.DomainCA.CertFile, err)
	}
	rcfg := registrar.Config{
		MASADialTimeout: cfg.MASAClient.DialTimeout.D(),
		MASATimeout:     cfg.MASAClient.Timeout.D(),
		MASAMaxInFlight: cfg.MASAClient.MaxInFlight,
		RenewalWindow:   cfg.LDevID.RenewalWindow.D(),
		PerIP:           cfg.RateLimits.PerIP.Limit(),
		PerIDevID:       cfg.RateLimits.PerCertificate.Limit(),
	}
	for _, m := range cfg.Manufacturers {
		rm, err := registrarManufacturer(m)
		if err != nil {
			return fmt.Errorf("manufacturer %s: %w", m.Name, err)
		}
		rcfg.Manufacturers = append(rcfg.Manufacturers, rm)
	}
	estCfg := est.Config{RequireChannelBinding: cfg.EST.RequireChannelBinding}
	if rcfg.ESTClientIssuers, err = readCertificateFiles("est.clientIssuers", cfg.EST.ClientIssuers); err != nil {
		return err
	}
	if cfg.EST.BasicPasswordFile != "" {
		if estCfg.Basic, err = readBasicAuth(cfg.EST.BasicPasswordFile); err != nil {
			return err
		}
		rcfg.ESTBasicAuth = true
	}

	logger := newLogger(a.stderr, cfg.Log.Level)
	if err := daemon.apply(logger, a.setMemoryLimit); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("dataDir: %w", err)
	}
	db, err := store.Open(filepath.Join(cfg.DataDir, registrarDBFile), store.Options{Clock: a.clk})
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
	keys, err := openCAKeys(ctx, cfg.DomainCA, cfg.DataDir)
	if err != nil {
		return err
	}
	defer keys.Close()
	issuer, profile, err := newIssuer(ctx, a.clk, cfg.DomainCA, keys, domain, cfg.LDevID)
	if err != nil {
		return err
	}
	rcfg.LDevID = profile
	// DESIGN.md: an intent left open by a crash is resolved before the
	// listeners open.
	resolved, err := db.ResolveIntents(ctx)
	if err != nil {
		return err
	}
	logger.Info("issuance intents resolved", slog.Int("completed", resolved.Completed), slog.Int("abandoned", resolved.Abandoned))
	reg := newMetricsRegistry()
	svc, err := registrar.New(rcfg, registrar.Deps{
		Issuer:   issuer,
		Logger:   logger,
		Clock:    a.clk,
		Metrics:  reg,
		Store:    db,
		Audit:    rec,
		RA:       ra,
		DomainCA: domain,
	})
	if err != nil {
		return err
	}
	if err := svc.LoadGenerations(ctx, keys.keys, keys.ref); err != nil {
		return fmt.Errorf("domain CA generations: %w", err)
	}
	if rcfg.ESTBasicAuth {
		logger.Warn("EST accepts HTTP Basic users from est.basicPasswordFile: a lab setting, not for production", slog.Int("users", len(estCfg.Basic)))
	}
	var ready atomic.Bool
	var eps []endpoint
	httpsLn, err := listen(ctx, "registrar https", cfg.Listen.HTTPS)
	if err != nil {
		return err
	}
	estSrv, err := est.NewServer(estCfg, est.Deps{Logger: logger, Clock: a.clk, Metrics: reg, CA: svc})
	if err != nil {
		_ = httpsLn.Close()
		return err
	}
	srv := newServer(svc.HandlerWith(estSrv, svc.CRLs()), nil, logger)
	svc.ConfigureServer(srv)
	httpsLn = limitListener(reg, "registrar", httpsLn, cfg.Listen.MaxConnsPerIP)
	eps = append(eps, endpoint{name: "registrar", ln: httpsLn, srv: srv, tls: true})
	if cfg.Listen.Admin != "" {
		adminLn, err := listen(ctx, "admin", cfg.Listen.Admin)
		if err != nil {
			_ = httpsLn.Close()
			return err
		}
		admin, err := withPprof(adminHandler(reg, svc.AdminHandler(), &ready), daemon.pprof, adminLn)
		if err != nil {
			_ = httpsLn.Close()
			_ = adminLn.Close()
			return err
		}
		eps = append(eps, endpoint{name: "admin", ln: adminLn, srv: newServer(admin, nil, logger)})
	}
	var coaps *coapsEndpoint
	if cfg.Listen.CoAPS != "" {
		if coaps, err = listenCoAPS(logger, a.clk, reg, svc, estSrv, cfg.Listen.CoAPS, cfg.CoAPS.Config()); err != nil {
			closeListeners(eps)
			return err
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		coaps.serve(logger, cancel)
		defer coaps.stop()
	}
	if err := rec.Record(ctx, audit.New(audit.Startup, "component", "registrar", "config", path, "listen", httpsLn.Addr().String())); err != nil {
		closeListeners(eps)
		return err
	}
	if coaps != nil {
		fmt.Fprintf(cmd.OutOrStdout(), "coaps: %s\n", coaps.URL())
	}
	printEndpoints(cmd.OutOrStdout(), eps)
	serveErr := serveAll(ctx, logger, eps, &ready)
	_ = rec.Record(context.WithoutCancel(ctx), audit.New(audit.Shutdown, "component", "registrar"))
	return serveErr
}

// registrarManufacturer turns a configured manufacturer into the
// registrar's, reading its anchor files.
func registrarManufacturer(m configs.Manufacturer) (registrar.Manufacturer, error) {
	rm := registrar.Manufacturer{
		Name:               m.Name,
		Policy:             m.Policy,
		Allowlist:          m.Allowlist,
		IgnoreIDevIDExpiry: m.IgnoreIDevIDExpiry,
		IDevID:             pki.IDevIDOptions{IssuerEncoding: m.IDevIDIssuerEncoding},
		MASACOSEMediaType:  m.MASACOSEMediaType,
	}
	if m.SerialNumberAttribute != "serialNumber" {
		rm.IDevID.SerialFallback = m.SerialNumberAttribute
	}
	var err error
	if rm.IDevIDRoots, err = readCertificateFiles("idevidAnchors", m.IDevIDAnchors); err != nil {
		return rm, err
	}
	if rm.MASAAnchors, err = readCertificateFiles("masaAnchors", m.MASAAnchors); err != nil {
		return rm, err
	}
	if len(m.MASATLSAnchors) > 0 {
		tlsRoots, err := readCertificateFiles("masaTLSAnchors", m.MASATLSAnchors)
		if err != nil {
			return rm, err
		}
		rm.MASATLSRoots = x509.NewCertPool()
		for _, c := range tlsRoots {
			rm.MASATLSRoots.AddCert(c)
		}
	}
	for _, s := range m.MASAURLs {
		u, err := url.Parse(s)
		if err != nil {
			return rm, fmt.Errorf("masaURLs: %w", err)
		}
		rm.MASAURLs = append(rm.MASAURLs, u)
	}
	if m.MASAURLOverride != "" {
		if rm.MASAURLOverride, err = url.Parse(m.MASAURLOverride); err != nil {
			return rm, fmt.Errorf("masaURLOverride: %w", err)
		}
	}
	return rm, nil
}

// readBasicAuth reads an htpasswd bcrypt file (est.ParseBasicAuth) that
// neither group nor others may read: it holds password hashes.
func readBasicAuth(path string) (est.BasicAuth, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("est.basicPasswordFile: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("est.basicPasswordFile: %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("est.basicPasswordFile: %s has mode %#o; password files must not be accessible by group or others (chmod 600)", path, perm)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("est.basicPasswordFile: %w", err)
	}
	users, err := est.ParseBasicAuth(b)
	if err != nil {
		return nil, fmt.Errorf("est.basicPasswordFile %s: %w", path, err)
	}
	return users, nil
}

// printEndpoints prints "role: URL" lines for the bound listeners.
func printEndpoints(w io.Writer, eps []endpoint) {
	for _, e := range eps {
		fmt.Fprintf(w, "%s: %s\n", e.name, e.URL())
	}
	fmt.Fprintln(w, "ready (Ctrl-C to stop)")
}

func closeListeners(eps []endpoint) {
	for _, e := range eps {
		_ = e.ln.Close()
	}
}

// newIssuer builds the LDevID issuer from the domain CA (certificate chain,
// and its key from keyFile or the PKCS#11 token of keyURI) and the
// configured profile and lint mode.
func newIssuer(ctx context.Context, clk clock.Clock, dc configs.DomainCA, keys caKeys, chain []*x509.Certificate, p configs.LDevIDProfile) (*pki.Issuer, pki.Profile, error) {
	if dc.CRLBaseURL != "" && len(chain) > 1 {
		// CRLs are signed per CA generation, and generations are kept
		// only for a root-only domain CA: the distribution point would
		// name a CRL that is never served.
		return nil, pki.Profile{}, fmt.Errorf("domainCA.crlBaseURL: CRLs are published only for a root-only domain CA; %s holds a chain of %d certificates (an issuing intermediate)", dc.CertFile, len(chain))
	}
	key, err := keys.keys.Load(ctx, keys.ref)
	if err != nil {
		return nil, pki.Profile{}, fmt.Errorf("domainCA key: %w", err)
	}
	ca, err := pki.LoadCA(chain, key)
	if err != nil {
		return nil, pki.Profile{}, fmt.Errorf("domainCA: %w", err)
	}
	profile, err := ldevidProfile(p)
	if err != nil {
		return nil, pki.Profile{}, err
	}
	cfg := pki.IssuerConfig{LDevID: profile, CRLBaseURL: dc.CRLBaseURL}.WithDefaults()
	deps := pki.IssuerDeps{Clock: clk, CA: ca}
	l, err := lint.NewMode(lint.Mode(p.Lint), nil)
	if err != nil {
		return nil, pki.Profile{}, fmt.Errorf("ldevid: %w", err)
	}
	if l != nil {
		deps.Linter = l
	}
	iss, err := pki.NewIssuer(cfg, deps)
	if err != nil {
		return nil, pki.Profile{}, err
	}
	return iss, cfg.LDevID, nil
}

// ldevidProfile converts the configuration's LDevID profile (a DN template
// such as "CN={serial},serialNumber={serial}" and one SAN template per type)
// to a pki.Profile.
func ldevidProfile(p configs.LDevIDProfile) (pki.Profile, error) {
	var out pki.Profile
	for _, rdn := range strings.Split(p.Subject, ",") {
		typ, val, ok := strings.Cut(strings.TrimSpace(rdn), "=")
		if !ok || typ == "" || val == "" {
			return pki.Profile{}, fmt.Errorf("ldevid subject %q: want TYPE=VALUE[,TYPE=VALUE…]", p.Subject)
		}
		out.Subject = append(out.Subject, pki.NameAttribute{Type: typ, Value: val})
	}
	if p.DNS != "" {
		out.DNSNames = []string{p.DNS}
	}
	if p.IP != "" {
		out.IPAddresses = []string{p.IP}
	}
	if p.URI != "" {
		out.URIs = []string{p.URI}
	}
	out.Validity, out.Backdate, out.ServerAuth = p.Validity.D(), p.Backdate.D(), p.ServerAuth
	return out, nil
}
