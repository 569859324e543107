package lab

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/jmhodges/clock"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/masa"
	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pki/lint"
	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/store"
)

// Default listen addresses (DESIGN.md, `gatehouse lab`).
const (
	DefaultHTTPSAddr = "127.0.0.1:8443"
	DefaultCoAPSAddr = "127.0.0.1:5684"
	DefaultMASAAddr  = "127.0.0.1:9443"
	DefaultAdminAddr = "127.0.0.1:9090"
)

// Files under the data directory besides the lab PKI.
const (
	RegistrarDBFile    = "registrar.db"
	MASADBFile         = "masa.db"
	RegistrarAuditFile = "audit.log"
	MASAAuditFile      = "masa-audit.log"
	// CAKeyDir holds the domain CA keys a rollover generates.
	CAKeyDir = "ca"
)

// Options configure Open.
type Options struct {
	// Dir is the data directory. Default "./data".
	Dir string
	// HTTPSAddr, MASAAddr and AdminAddr are the listen addresses of the
	// registrar (BRSKI over HTTPS), the MASA and the admin listener. Port 0
	// picks a free port. Defaults: DefaultHTTPSAddr, DefaultMASAAddr,
	// DefaultAdminAddr.
	HTTPSAddr, MASAAddr, AdminAddr string
	// Clock is the only source of time. Required.
	Clock clock.Clock
	// Logger receives the services' request logs. Required.
	Logger *slog.Logger
	// Metrics registers both services' metrics. Required; never the
	// global registry.
	Metrics prometheus.Registerer
	// Hostname is added to a newly generated registrar certificate
	// (os.Hostname()). Optional.
	Hostname string
}

// WithDefaults returns o with every unset address and Dir at its default.
func (o Options) WithDefaults() Options {
	if o.Dir == "" {
		o.Dir = "data"
	}
	if o.HTTPSAddr == "" {
		o.HTTPSAddr = DefaultHTTPSAddr
	}
	if o.MASAAddr == "" {
		o.MASAAddr = DefaultMASAAddr
	}
	if o.AdminAddr == "" {
		o.AdminAddr = DefaultAdminAddr
	}
	return o
}

// Lab is an opened lab: its PKI, both services over their own stores, and
// the bound listeners, ready to serve. Close releases what Open opened.
type Lab struct {
	// PKI is the lab PKI.
	PKI *PKI
	// Generated reports that Open generated the PKI (first start).
	Generated bool
	// MASAURL is the MASA base URL the registrar calls.
	MASAURL *url.URL
	// Registrar is the registrar service.
	Registrar *registrar.Service
	// MASA is the MASA service.
	MASA *masa.Service
	// EST is the EST edge, mounted with the BRSKI routes by Handler.
	EST *est.Server
	// Resolved counts the issuance intents closed at start-up, before
	// any listener serves (DESIGN.md "State and crash safety").
	Resolved store.Resolved
	// HTTPS, MASAListener and Admin are the bound listeners (registrar,
	// MASA, admin); serve HTTPS with Registrar.ConfigureServer and
	// MASAListener with MASA.TLSConfig(PKI.MASATLS).
	HTTPS, MASAListener, Admin net.Listener

	closers []io.Closer
	log     *slog.Logger
	regDB   *store.DB
	caMu    sync.Mutex // serialises SyncDomainCA
}

// Open binds the listeners, generates the lab PKI under opts.Dir on first
// start (naming the bound MASA address in the IDevIDs) or loads the
// existing one, opens the MASA's and the registrar's bbolt stores and audit
// files, registers the lab pledges with the MASA, and builds both services.
// On error everything opened so far is closed.
func Open(ctx context.Context, opts Options) (*Lab, error) {
	opts = opts.WithDefaults()
	if opts.Clock == nil || opts.Logger == nil || opts.Metrics == nil {
		return nil, errors.New("lab: clock, logger and metrics registerer are required")
	}
	l := &Lab{log: opts.Logger}
	if err := l.open(ctx, opts); err != nil {
		_ = l.Close()
		return nil, err
	}
	return l, nil
}

func (l *Lab) open(ctx context.Context, opts Options) error {
	var err error
	if l.HTTPS, err = listen(ctx, "registrar https", opts.HTTPSAddr); err != nil {
		return err
	}
	l.closers = append(l.closers, l.HTTPS)
	if l.MASAListener, err = listen(ctx, "masa", opts.MASAAddr); err != nil {
		return err
	}
	l.closers = append(l.closers, l.MASAListener)
	if l.Admin, err = listen(ctx, "admin", opts.AdminAddr); err != nil {
		return err
	}
	l.closers = append(l.closers, l.Admin)
	masaAuthority := dialable(l.MASAListener.Addr())

	exists, err := Exists(opts.Dir)
	if err != nil {
		return err
	}
	if !exists {
		if err := Generate(opts.Dir, GenerateOptions{Clock: opts.Clock, MASAAuthority: masaAuthority, Hostname: opts.Hostname}); err != nil {
			return err
		}
		l.Generated = true
	}
	if l.PKI, err = Load(ctx, opts.Dir); err != nil {
		return err
	}
	l.MASAURL = &url.URL{Scheme: "https", Host: masaAuthority, Path: "/.well-known/brski"}

	if err := l.openMASA(ctx, opts); err != nil {
		return err
	}
	return l.openRegistrar(ctx, opts)
}

func (l *Lab) openMASA(ctx context.Context, opts Options) error {
	db, err := store.Open(filepath.Join(opts.Dir, MASADBFile), store.Options{Clock: opts.Clock})
	if err != nil {
		return fmt.Errorf("lab: masa store: %w", err)
	}
	l.closers = append(l.closers, db)
	rec, err := l.recorder(db, filepath.Join(opts.Dir, MASAAuditFile))
	if err != nil {
		return err
	}
	p := l.PKI
	svc, err := masa.New(masa.Config{Ownership: masa.OwnershipFirstClaim}, masa.Deps{
		Logger:        opts.Logger,
		Clock:         opts.Clock,
		Metrics:       opts.Metrics,
		Store:         db,
		Audit:         rec,
		SigningKey:    p.MASASigning.PrivateKey.(crypto.Signer),
		SigningChain:  p.MASAAnchors,
		IDevIDAnchors: []*x509.Certificate{p.IDevIDCA},
	})
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	// Register the lab's pledges as known but unowned: the first domain to
	// claim one owns it (first-claim). A device already known keeps its
	// owner across restarts.
	for _, pl := range p.Pledges {
		_, err := db.MASADevice(ctx, pl.Serial)
		if err == nil {
			continue
		}
		if !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("lab: masa device %s: %w", pl.Serial, err)
		}
		if err := svc.RegisterDevice(ctx, pl.Serial, nil); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
	}
	if err := rec.Record(ctx, audit.New(audit.Startup, "component", "masa", "mode", "lab", "listen", l.MASAListener.Addr().String())); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	l.MASA = svc
	return nil
}

func (l *Lab) openRegistrar(ctx context.Context, opts Options) error {
	db, err := store.Open(filepath.Join(opts.Dir, RegistrarDBFile), store.Options{Clock: opts.Clock})
	if err != nil {
		return fmt.Errorf("lab: registrar store: %w", err)
	}
	l.closers = append(l.closers, db)
	rec, err := l.recorder(db, filepath.Join(opts.Dir, RegistrarAuditFile))
	if err != nil {
		return err
	}
	p := l.PKI
	tlsRoots := x509.NewCertPool()
	for _, c := range p.MASATLSRoots {
		tlsRoots.AddCert(c)
	}
	m := registrar.Manufacturer{
		Name:         ManufacturerName,
		IDevIDRoots:  []*x509.Certificate{p.IDevIDCA},
		MASAAnchors:  p.MASAAnchors,
		MASATLSRoots: tlsRoots,
		MASAURLs:     []*url.URL{l.MASAURL},
		Policy:       registrar.PolicyAcceptAll,
	}
	if p.MASAAuthority != l.MASAURL.Host {
		// The IDevIDs name the MASA address of the first start; this start
		// bound another one.
		m.MASAURLOverride = l.MASAURL
	}
	// An intent left open by a crash is resolved before the listener serves.
	if l.Resolved, err = db.ResolveIntents(ctx); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	linter, err := lint.NewMode(lint.ModeFast, nil)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	ca, err := pki.LoadCA([]*x509.Certificate{p.DomainCA}, p.DomainCAKey)
	if err != nil {
		return fmt.Errorf("lab: domain CA: %w", err)
	}
	// LDevIDs name their generation's CRL on this listener.
	icfg := pki.IssuerConfig{CRLBaseURL: "https://" + dialable(l.HTTPS.Addr()) + "/crl"}.WithDefaults()
	idep := pki.IssuerDeps{Clock: opts.Clock, CA: ca}
	if linter != nil {
		idep.Linter = linter
	}
	issuer, err := pki.NewIssuer(icfg, idep)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	rcfg := registrar.Config{Manufacturers: []registrar.Manufacturer{m}, LDevID: icfg.LDevID}
	if onLoopback(l.HTTPS.Addr()) {
		// On loopback every client shares one address, so a per-IP
		// limit would only cap the lab's own load tests (gatehouse
		// bench, the estserver side-by-side); the per-IDevID limit stays.
		rcfg.PerIP = registrar.RateLimit{Rate: -1}
	}
	svc, err := registrar.New(rcfg, registrar.Deps{
		Issuer:   issuer,
		Logger:   opts.Logger,
		Clock:    opts.Clock,
		Metrics:  opts.Metrics,
		Store:    db,
		Audit:    rec,
		RA:       p.Registrar,
		DomainCA: []*x509.Certificate{p.DomainCA},
	})
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	// The store's CA generations decide which key issues (a rollover
	// replaces the lab's first domain CA); new keys go to DIR/ca.
	keyRef, err := filepath.Abs(p.Paths.DomainCAKey)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if err := svc.LoadGenerations(ctx, registrar.KeyFiles{Dir: filepath.Join(opts.Dir, CAKeyDir)}, keyRef); err != nil {
		return fmt.Errorf("lab: CA generations: %w", err)
	}
	estSrv, err := est.NewServer(est.Config{}, est.Deps{Logger: opts.Logger, Clock: opts.Clock, Metrics: opts.Metrics, CA: svc})
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if err := rec.Record(ctx, audit.New(audit.Startup, "component", "registrar", "mode", "lab", "listen", l.HTTPS.Addr().String(),
		"intents_completed", strconv.Itoa(l.Resolved.Completed), "intents_abandoned", strconv.Itoa(l.Resolved.Abandoned))); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	l.Registrar, l.EST, l.regDB = svc, estSrv, db
	// After an offline rollover, ca.pem still names the generation that
	// issued before it.
	if _, err := l.SyncDomainCA(ctx); err != nil {
		return err
	}
	return nil
}

// Handler returns the registrar's pledge-facing handler: the BRSKI routes
// and the EST routes on one mux (RFC 8995 §5.9: EST continues on the
// voucher connection). Serve it on HTTPS with Registrar.ConfigureServer.
func (l *Lab) Handler() http.Handler { return l.Registrar.HandlerWith(l.EST, l.Registrar.CRLs()) }

// recorder opens the JSON audit file at path and returns a recorder
// writing to db and mirroring to it; the file is closed with the lab.
func (l *Lab) recorder(db *store.DB, path string) (*audit.Recorder, error) {
	rec, f, err := audit.Open(db, path)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	l.closers = append(l.closers, f)
	return rec, nil
}

// Close closes the listeners (if still open), the stores and the audit
// files, in reverse order of opening.
func (l *Lab) Close() error {
	var errs []error
	for i := len(l.closers) - 1; i >= 0; i-- {
		err := l.closers[i].Close()
		if err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	l.closers = nil
	return errors.Join(errs...)
}

// PledgeCommand returns a ready-to-paste `pledge enroll` command for the
// pledge serial against the registrar at registrarURL, run as prog, with
// its output under DIR/out/<serial>.
func (l *Lab) PledgeCommand(prog, registrarURL, serial string) string {
	p := l.PKI.Paths
	args := []string{prog, "pledge", "enroll",
		"--registrar", registrarURL,
		"--idevid", p.PledgeIDevID(serial),
		"--key", p.PledgeKey(serial),
		"--masa-anchor", p.MASA,
		"--out", filepath.Join(p.Dir, "out", serial),
	}
	for i, a := range args {
		args[i] = shellQuote(a)
	}
	return strings.Join(args, " ")
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && !strings.ContainsRune("-_./:=@+,", r)
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// listen binds addr, with an error an operator can act on.
func listen(ctx context.Context, role, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("lab: %s: listen on %s: %w (is another lab running? pick another address with a flag)", role, addr, err)
	}
	return ln, nil
}

// dialable returns host:port for a bound address, replacing an unspecified
// host (0.0.0.0, ::) with the matching loopback address, which the lab
// certificates name.
func dialable(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if ip.To4() != nil {
			host = "127.0.0.1"
		} else {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, port)
}

// Dialable returns the URL-ready host:port of a bound listener (see
// dialable): what the lab prints.
func Dialable(ln net.Listener) string { return dialable(ln.Addr()) }

// onLoopback reports whether a listener is bound to a loopback address.
func onLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
