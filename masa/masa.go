package masa

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jmhodges/clock"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/internal/web"
	"github.com/gatehouse-pki/gatehouse/store"
)

// Ownership is the policy that decides which domain may have a voucher for a
// device.
type Ownership string

// The ownership policies.
const (
	// OwnershipRegistry issues vouchers only to the domain a device was
	// registered to (RegisterDevice), as a manufacturer's sales records
	// would. The default.
	OwnershipRegistry Ownership = "registry"
	// OwnershipFirstClaim gives an unknown or unowned device to the first
	// domain that asks (a lab or test MASA). A device owned by another
	// domain is still refused.
	OwnershipFirstClaim Ownership = "first-claim"
)

// IsValid reports whether o is a defined policy.
func (o Ownership) IsValid() bool {
	return o == OwnershipRegistry || o == OwnershipFirstClaim
}

// Defaults.
const (
	// DefaultNoncelessValidity is the lifetime of a nonceless voucher (RFC
	// 8995 §5.6 recommends about 20 minutes).
	DefaultNoncelessValidity = 20 * time.Minute
	// DefaultMaxClockSkew is how far an RVR's created-on may be from the
	// clock.
	DefaultMaxClockSkew = 5 * time.Minute
)

// Config is the MASA's policy. The zero value, with defaults applied, is a
// registry MASA.
type Config struct {
	// Ownership selects the ownership policy. Default OwnershipRegistry.
	Ownership Ownership
	// NoncelessValidity is the expires-on of a nonceless voucher, from its
	// created-on (capped at the registrar certificate's NotAfter). Default
	// DefaultNoncelessValidity (20 min).
	NoncelessValidity time.Duration
	// MaxClockSkew is how far a registrar voucher-request's created-on may
	// lie before or after the clock; a request outside it is stale (RFC 8995
	// §5.6: 403). Default DefaultMaxClockSkew (5 min).
	MaxClockSkew time.Duration
}

// WithDefaults returns cfg with every zero field at its default.
func (cfg Config) WithDefaults() Config {
	if cfg.Ownership == "" {
		cfg.Ownership = OwnershipRegistry
	}
	if cfg.NoncelessValidity == 0 {
		cfg.NoncelessValidity = DefaultNoncelessValidity
	}
	if cfg.MaxClockSkew == 0 {
		cfg.MaxClockSkew = DefaultMaxClockSkew
	}
	return cfg
}

// Validate reports every problem with cfg at once. It does not fill
// defaults.
func (cfg Config) Validate() error {
	var errs []error
	if !cfg.Ownership.IsValid() {
		errs = append(errs, fmt.Errorf("masa config: ownership %q: want %q or %q", cfg.Ownership, OwnershipRegistry, OwnershipFirstClaim))
	}
	if cfg.NoncelessValidity <= 0 {
		errs = append(errs, fmt.Errorf("masa config: nonceless validity %s must be positive", cfg.NoncelessValidity))
	}
	if cfg.MaxClockSkew <= 0 {
		errs = append(errs, fmt.Errorf("masa config: max clock skew %s must be positive", cfg.MaxClockSkew))
	}
	return errors.Join(errs...)
}

// Deps are the MASA's collaborators. All are required.
type Deps struct {
	// Logger receives one event per request.
	Logger *slog.Logger
	// Clock is the only source of time.
	Clock clock.Clock
	// Metrics registers the brski_masa_* metrics.
	Metrics prometheus.Registerer
	// Store is the MASA's own store (never the registrar's file).
	Store *store.DB
	// Audit records audit events. It should write to Store: the
	// masa-voucher-signed event is written by Store in the voucher's own
	// transaction and only mirrored through Audit.
	Audit *audit.Recorder
	// SigningKey signs vouchers; it must match SigningChain[0].
	SigningKey crypto.Signer
	// SigningChain is the voucher-signing certificate first, then its
	// issuers; vouchers embed it.
	SigningChain []*x509.Certificate
	// IDevIDAnchors are the manufacturer's IDevID CAs, which pledge
	// voucher-requests must chain to.
	IDevIDAnchors []*x509.Certificate
}

func (d Deps) validate() error {
	var errs []error
	req := func(ok bool, name string) {
		if !ok {
			errs = append(errs, fmt.Errorf("masa deps: %s is required", name))
		}
	}
	req(d.Logger != nil, "Logger")
	req(d.Clock != nil, "Clock")
	req(d.Metrics != nil, "Metrics")
	req(d.Store != nil, "Store")
	req(d.Audit != nil, "Audit")
	req(d.SigningKey != nil, "SigningKey")
	req(len(d.SigningChain) > 0, "SigningChain")
	req(len(d.IDevIDAnchors) > 0, "IDevIDAnchors")
	for i, c := range d.SigningChain {
		if c == nil {
			errs = append(errs, fmt.Errorf("masa deps: SigningChain[%d] is nil", i))
		}
	}
	for i, c := range d.IDevIDAnchors {
		if c == nil {
			errs = append(errs, fmt.Errorf("masa deps: IDevIDAnchors[%d] is nil", i))
		}
	}
	if d.SigningKey != nil && len(d.SigningChain) > 0 && d.SigningChain[0] != nil {
		pub, ok := d.SigningKey.Public().(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !pub.Equal(d.SigningChain[0].PublicKey) {
			errs = append(errs, errors.New("masa deps: SigningKey does not match SigningChain[0]"))
		}
	}
	return errors.Join(errs...)
}

// deviceStore is what the MASA needs of its store.
type deviceStore interface {
	RegisterMASADevice(ctx context.Context, d store.MASADevice) error
	MASADevice(ctx context.Context, serial string) (store.MASADevice, error)
	MASAVoucher(ctx context.Context, serial, nonce string) (store.MASAVoucher, error)
	RecordMASAVoucher(ctx context.Context, iss store.MASAIssue, audit ...store.Event) (store.MASAIssued, error)
	MASAAuditLog(ctx context.Context, serial string) ([]store.MASALogEntry, error)
}

// auditor is what the MASA needs of the audit recorder.
type auditor interface {
	Record(ctx context.Context, e store.Event) error
}

var (
	_ deviceStore = (*store.DB)(nil)
	_ auditor     = (*audit.Recorder)(nil)
)

// Service is the MASA. It is safe for concurrent use.
type Service struct {
	cfg     Config
	log     *slog.Logger
	clk     clock.Clock
	store   deviceStore
	audit   auditor
	key     crypto.Signer
	chain   []*x509.Certificate
	anchors []*x509.Certificate
	metrics *metrics
	// verified caches authenticated voucher-requests (verified.go).
	verified *verifiedCache
	// onVerify, when set (tests only), is called before each full
	// verification of a voucher-request, that is on each cache miss.
	onVerify func()
}

// New validates cfg (after defaults) and deps and returns the service.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg = cfg.WithDefaults()
	if err := errors.Join(cfg.Validate(), deps.validate()); err != nil {
		return nil, fmt.Errorf("new masa: %w", err)
	}
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, fmt.Errorf("new masa: %w", err)
	}
	return &Service{
		cfg:      cfg,
		log:      deps.Logger.With(slog.String("component", "masa")),
		clk:      deps.Clock,
		store:    deps.Store,
		audit:    deps.Audit,
		key:      deps.SigningKey,
		chain:    append([]*x509.Certificate(nil), deps.SigningChain...),
		anchors:  append([]*x509.Certificate(nil), deps.IDevIDAnchors...),
		metrics:  m,
		verified: newVerifiedCache(verifiedEntries, verifiedTTL),
	}, nil
}

// TLSConfig returns the TLS settings of the MASA listener: the project's
// server defaults (web.ServerTLSConfig), serverCert, certificate times from
// the clock, and a client certificate required but not verified here: the
// registrar's identity is decided per request, from the RVR signature
// (RFC 8995 §5.5.4).
func (s *Service) TLSConfig(serverCert tls.Certificate) *tls.Config {
	cfg := web.ServerTLSConfig()
	cfg.Certificates = []tls.Certificate{serverCert}
	cfg.ClientAuth = tls.RequireAnyClientCert
	cfg.Time = s.clk.Now
	return cfg
}

// RegisterDevice records the device serial as owned by the domain of
// ownerDomainCA (nil: known but unowned), replacing any earlier owner. Under
// OwnershipRegistry only registered devices get vouchers, and only for their
// owner.
func (s *Service) RegisterDevice(ctx context.Context, serial string, ownerDomainCA *x509.Certificate) error {
	d := store.MASADevice{Serial: serial}
	if ownerDomainCA != nil {
		h := sha256.Sum256(ownerDomainCA.RawSubjectPublicKeyInfo)
		d.OwnerSPKIHash = h[:]
		d.OwnerDomainID = DomainID(ownerDomainCA)
	}
	if err := s.store.RegisterMASADevice(ctx, d); err != nil {
		return fmt.Errorf("register device %q: %w", serial, err)
	}
	return nil
}

// metrics are the brski_masa_* metrics.
type metrics struct {
	requests    *prometheus.CounterVec
	signed      *prometheus.CounterVec
	signSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "brski_masa_requests_total",
			Help: "MASA requests by endpoint (requestvoucher, requestauditlog) and result (ok or the error kind).",
		}, []string{"endpoint", "result"}),
		signed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "brski_masa_vouchers_signed_total",
			Help: "Vouchers signed by the MASA, by assertion.",
		}, []string{"assertion"}),
		signSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "brski_masa_voucher_sign_seconds",
			Help:    "Time to sign one CMS voucher.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 14),
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.signed, m.signSeconds} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}
