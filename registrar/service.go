package registrar

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmhodges/clock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"golang.org/x/sync/singleflight"

	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/internal/web"
	"github.com/gatehouse-pki/gatehouse/store"
)

// Media types of the BRSKI endpoints.
const (
	// MediaTypeVoucherCMS is a CMS-signed JSON voucher or voucher-request
	// (RFC 8366 §8.3).
	MediaTypeVoucherCMS = "application/voucher-cms+json"
	// MediaTypeJSON carries voucher_status, enrollstatus and audit logs.
	MediaTypeJSON = "application/json"
)

// MaxBodyBytes caps every BRSKI request body and every MASA response body
// (attack tables A21, B10).
const MaxBodyBytes = 64 << 10

// maxRVRCache bounds the registrar voucher-requests kept in memory for the
// audit-log fetch that follows voucher_status.
const maxRVRCache = 100_000

// manufacturer is a Manufacturer with what is derived from it once.
type manufacturer struct {
	Manufacturer
	roots     *x509.CertPool
	allowlist map[string]bool
	client    *http.Client
}

// Service is the BRSKI registrar: the pledge-facing voucher endpoints, the
// MASA client, ownership policy and the operator approval queue. It is safe
// for concurrent use.
type Service struct {
	cfg   Config
	log   *slog.Logger
	clk   clock.Clock
	db    *store.DB
	audit *audit.Recorder
	ra    tls.Certificate
	raKey crypto.Signer
	// domain is the configured domain CA chain, which the RA certificate
	// chains to and registrar voucher-requests carry.
	domain []*x509.Certificate
	// caPtr is the domain CA state: generations, issuer (nil leaves EST
	// enrolment refused), /cacerts, LDevID roots, domainIDs (registrar/ca.go).
	caPtr atomic.Pointer[caState]
	// keys loads CA generation keys (set by LoadGenerations); rollMu
	// serializes online rollovers.
	keys   CAKeys
	rollMu sync.Mutex
	// crlMu serializes CRL issuance (registrar/crl.go).
	crlMu     sync.Mutex
	caMetrics *caMetrics
	// estClientRoots holds Config.ESTClientIssuers; nil when none.
	estClientRoots *x509.CertPool
	// enrollFlight merges identical concurrent enrolments (reliability L8).
	enrollFlight singleflight.Group
	mfgs         []manufacturer
	metrics      *metrics
	masaSem      chan struct{}
	flight       singleflight.Group
	limits       *limiter

	rvrMu sync.Mutex
	rvrs  map[store.DeviceKey]rvrRecord
}

// rvrRecord is what the audit-log fetch needs from the voucher exchange.
type rvrRecord struct {
	rvr       []byte
	mediaType string // the RVR's, as sent to the MASA
	base      string
	mfg       int
}

type metrics struct {
	voucherRequests *prometheus.CounterVec
	masaRequests    *prometheus.CounterVec
	masaSeconds     prometheus.Histogram
	masaInFlight    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		voucherRequests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "brski_registrar_voucher_requests_total",
			Help: "Pledge voucher-requests by result (issued, cached, pending, or the refusal kind).",
		}, []string{"result"}),
		masaRequests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "brski_registrar_masa_requests_total",
			Help: "Calls to MASAs by result (ok, not-found, refused, invalid, unavailable, busy).",
		}, []string{"result"}),
		masaSeconds: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "brski_registrar_masa_request_seconds",
			Help:    "Duration of MASA calls.",
			Buckets: prometheus.DefBuckets,
		}),
		masaInFlight: f.NewGauge(prometheus.GaugeOpts{
			Name: "brski_registrar_masa_in_flight",
			Help: "MASA calls in progress.",
		}),
	}
}

// New builds the registrar. cfg is defaulted and validated here.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg = cfg.WithDefaults()
	if err := errors.Join(cfg.Validate(), deps.validate()); err != nil {
		return nil, fmt.Errorf("registrar: %w", err)
	}
	key, ok := deps.RA.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("registrar: RA private key is not a crypto.Signer")
	}
	s := &Service{
		cfg:     cfg,
		log:     deps.Logger.With(slog.String("component", "registrar")),
		clk:     deps.Clock,
		db:      deps.Store,
		audit:   deps.Audit,
		ra:      deps.RA,
		raKey:   key,
		domain:  deps.DomainCA,
		metrics: newMetrics(deps.Metrics),
		masaSem: make(chan struct{}, cfg.MASAMaxInFlight),
		limits:  newLimiter(cfg.PerIP, cfg.PerIDevID),
		rvrs:    map[store.DeviceKey]rvrRecord{},
	}
	if len(cfg.ESTClientIssuers) > 0 {
		s.estClientRoots = x509.NewCertPool()
		for _, c := range cfg.ESTClientIssuers {
			if slices.ContainsFunc(deps.DomainCA, c.Equal) {
				return nil, fmt.Errorf("registrar: EST client issuer %s is the domain CA; its certificates are LDevIDs", c.Subject)
			}
			s.estClientRoots.AddCert(c)
		}
	}
	s.caPtr.Store(newCAState(deps.Issuer, deps.DomainCA, deps.RA.Leaf))
	s.caMetrics = newCAMetrics(deps.Metrics, s)
	for _, m := range cfg.Manufacturers {
		mm := manufacturer{Manufacturer: m, roots: x509.NewCertPool(), allowlist: map[string]bool{}}
		for _, r := range m.IDevIDRoots {
			mm.roots.AddCert(r)
		}
		for _, sn := range m.Allowlist {
			mm.allowlist[sn] = true
		}
		mm.client = deps.MASAClient
		if mm.client == nil {
			mm.client = s.newMASAClient(m.MASATLSRoots)
		}
		s.mfgs = append(s.mfgs, mm)
	}
	return s, nil
}

// newMASAClient builds the HTTP client for one manufacturer's MASAs: the RA
// certificate as TLS client certificate (RFC 8995 §5.4), the
// manufacturer's MASA TLS roots, DNS-ID checks and SNI from the URL's host
// (crypto/tls default), certificate times at the clock's time, and the D4
// timeouts.
func (s *Service) newMASAClient(roots *x509.CertPool) *http.Client {
	dialer := &net.Dialer{Timeout: s.cfg.MASADialTimeout}
	tr := &http.Transport{
		DialContext: dialer.DialContext,
		TLSClientConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			RootCAs:      roots,
			Certificates: []tls.Certificate{s.ra},
			Time:         s.clk.Now,
		},
		TLSHandshakeTimeout:    s.cfg.MASADialTimeout,
		ResponseHeaderTimeout:  s.cfg.MASATimeout,
		MaxResponseHeaderBytes: 16 << 10,
		MaxConnsPerHost:        s.cfg.MASAMaxInFlight,
		MaxIdleConnsPerHost:    s.cfg.MASAMaxInFlight,
		IdleConnTimeout:        90 * time.Second,
		ForceAttemptHTTP2:      true,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   s.cfg.MASATimeout,
		// RFC 8995 §5.6 lets a pledge follow one redirect; the registrar
		// does not follow any, so that a MASA cannot steer it off the
		// allowlist.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// BRSKI paths (RFC 8995 §8.3.2), and the aliases other implementations use
// (standards digest §1.2).
const (
	PathRequestVoucher   = "/.well-known/brski/requestvoucher"
	PathVoucherStatus    = "/.well-known/brski/voucher_status"
	PathEnrollStatus     = "/.well-known/brski/enrollstatus"
	pathEnrollStatusAlt  = "/.well-known/brski/enroll_status"
	pathESTRequestVouchr = "/.well-known/est/requestvoucher"
	pathESTVoucherStatus = "/.well-known/est/voucher_status"
)

// Register mounts the BRSKI routes on mux, method-qualified so that any
// other method gets 405 and any other path 404 from the mux itself (attack
// tables A23, E07). EST mounts its routes on the same mux.
func (s *Service) Register(mux *http.ServeMux) {
	rv := s.limited(web.Handle(s.handleRequestVoucher, web.WritePlain))
	vs := s.limited(web.Handle(s.handleVoucherStatus, web.WritePlain))
	es := s.limited(web.Handle(s.handleEnrollStatus, web.WritePlain))
	for _, p := range []string{PathRequestVoucher, pathESTRequestVouchr} {
		mux.Handle("POST "+p, rv)
	}
	for _, p := range []string{PathVoucherStatus, pathESTVoucherStatus} {
		mux.Handle("POST "+p, vs)
	}
	for _, p := range []string{PathEnrollStatus, pathEnrollStatusAlt} {
		mux.Handle("POST "+p, es)
	}
}

// Handler returns the pledge-facing handler: the BRSKI routes inside the
// middleware chain. Every other path and method fails closed (404, 405).
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	s.Register(mux)
	return web.Chain(mux, web.Options{Logger: s.log, Clock: s.clk, Errors: web.WritePlain})
}
