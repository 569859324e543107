package est

import (
	"context"
	"crypto"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/jmhodges/clock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-pki/gatehouse/internal/problem"
	"github.com/gatehouse-pki/gatehouse/internal/web"
)

// DefaultRetryAfter is the Retry-After sent with a deferred enrollment when
// neither the back end nor Config.RetryAfter gives one.
const DefaultRetryAfter = 30 * time.Second

// BasicAuth maps user names to bcrypt hashes of their passwords. HTTP Basic
// authentication is for lab setups only and is off unless the map is not
// empty; passwords never reach a log.
type BasicAuth map[string]string

// Config is the EST edge's configuration. Pure data; its zero value is a
// working, closed default (client certificates only, no labels).
type Config struct {
	// RequireChannelBinding refuses (401) a CSR without a challengePassword
	// carrying this connection's channel binding (RFC 7030 §3.5; tls-unique
	// under TLS 1.2, RFC 9266 tls-exporter under TLS 1.3). Default false: a
	// binding is checked when present.
	RequireChannelBinding bool
	// Basic, when not empty, enables HTTP Basic authentication against
	// these users (RFC 7030 §3.2.3). Default: off (reliability E04).
	Basic BasicAuth
	// Labels are the allowed /{label}/ path segments (RFC 7030 §3.2.2); any
	// other label is 404. Default: none.
	Labels []string
	// RetryAfter is sent with a deferred (202) enrollment when the back end
	// gives none. Default DefaultRetryAfter; at most 1 hour.
	RetryAfter time.Duration
}

// WithDefaults returns cfg with every unset field at its default.
func (cfg Config) WithDefaults() Config {
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = DefaultRetryAfter
	}
	return cfg
}

// Validate reports every problem in cfg at once. It is pure.
func (cfg Config) Validate() error {
	var errs []error
	if cfg.RetryAfter <= 0 || cfg.RetryAfter > time.Hour {
		errs = append(errs, fmt.Errorf("retryAfter %s: must be in (0, 1h]", cfg.RetryAfter))
	}
	for user, hash := range cfg.Basic {
		if user == "" {
			errs = append(errs, errors.New("basic: empty user name"))
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			errs = append(errs, fmt.Errorf("basic: user %q: not a bcrypt hash: %w", user, err))
		}
	}
	for _, l := range cfg.Labels {
		if l == "" || !validLabel(l) {
			errs = append(errs, fmt.Errorf("labels: %q is not a path segment of letters, digits, '-', '_' or '.'", l))
		}
		if _, isOp := ops[l]; isOp {
			errs = append(errs, fmt.Errorf("labels: %q is an operation name", l))
		}
	}
	return errors.Join(errs...)
}

func validLabel(l string) bool {
	for i := range len(l) {
		c := l[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return l != "." && l != ".."
}

// Deps are the EST edge's collaborators. All are required.
type Deps struct {
	Logger  *slog.Logger
	Clock   clock.Clock
	Metrics prometheus.Registerer
	CA      CA
}

// Server is the EST edge: it decodes and checks requests, applies the
// RFC 7030 rules that need no CA knowledge, and calls the CA once.
type Server struct {
	cfg     Config
	log     *slog.Logger
	clk     clock.Clock
	ca      CA
	metrics *metrics
	// dummyHash equalises the time of a Basic login for an unknown user.
	dummyHash []byte
}

type metrics struct {
	requests *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
}

// NewServer validates cfg (after defaults) and deps and returns a Server.
func NewServer(cfg Config, deps Deps) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new est server: %w", err)
	}
	if deps.Logger == nil || deps.Clock == nil || deps.Metrics == nil || deps.CA == nil {
		return nil, errors.New("new est server: Logger, Clock, Metrics and CA are required")
	}
	f := promauto.With(deps.Metrics)
	m := &metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "brski_est_requests_total",
			Help: "EST requests by operation and result (ok or the error kind).",
		}, []string{"op", "result"}),
		seconds: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "brski_est_request_seconds",
			Help:    "EST request handling time by operation.",
			Buckets: prometheus.DefBuckets,
		}, []string{"op"}),
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("gatehouse-est-dummy"), bcrypt.MinCost)
	if err != nil {
		return nil, fmt.Errorf("new est server: %w", err)
	}
	cfg.Labels = slices.Clone(cfg.Labels)
	return &Server{cfg: cfg, log: deps.Logger.With(slog.String("component", "est")), clk: deps.Clock, ca: deps.CA, metrics: m, dummyHash: dummy}, nil
}

// Handler returns the EST routes inside the middleware chain, for serving
// EST on its own; embedders call Register on their own mux instead.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.Register(mux)
	return web.Chain(mux, web.Options{Logger: s.log, Clock: s.clk, Errors: web.WritePlain})
}

// newRequest builds the back-end request: the label (404 unless allowed)
// and the caller's credentials. With authRequired, a caller with neither a
// TLS client certificate nor valid Basic credentials is refused (401).
func (s *Server) newRequest(r *http.Request, authRequired bool) (*Request, error) {
	req := &Request{Label: r.PathValue("label"), TLS: r.TLS}
	// RFC 7030 §3.2.2: the label selects a CA; unknown labels do not exist.
	if req.Label != "" && !slices.Contains(s.cfg.Labels, req.Label) {
		return nil, problem.New(problem.NotFound, nil, "unknown EST label")
	}
	if r.TLS != nil {
		req.PeerChain = r.TLS.PeerCertificates
	}
	if user, pass, ok := r.BasicAuth(); ok && len(s.cfg.Basic) > 0 {
		// RFC 7030 §3.2.3: HTTP Basic authentication, only when configured,
		// and only inside TLS (§3.2.3: "MUST NOT" be sent in the clear; a
		// password seen in the clear is refused, not checked).
		if r.TLS == nil {
			return nil, problem.New(problem.Unauthorized, nil, "HTTP Basic credentials are accepted only over TLS")
		}
		if !s.checkBasic(user, pass) {
			return nil, problem.New(problem.Unauthorized, nil, "HTTP Basic credentials refused")
		}
		req.BasicUser = user
	}
	// RFC 7030 §3.3.2: the client authenticates with a certificate or, if
	// configured, HTTP authentication; reliability E04: no fallback.
	if authRequired && len(req.PeerChain) == 0 && req.BasicUser == "" {
		return nil, problem.New(problem.Unauthorized, nil, "a TLS client certificate is required")
	}
	return req, nil
}

func (s *Server) checkBasic(user, pass string) bool {
	hash, known := s.cfg.Basic[user]
	if !known {
		_ = bcrypt.CompareHashAndPassword(s.dummyHash, []byte(pass))
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pass)) == nil
}

// checkCSR decodes and checks an enrollment body and records the CSR on
// req: base64 (RFC 8951), one DER PKCS#10, signature and key policy
// (pki.CheckCSR), and the channel binding. pop is false for serverkeygen:
// the CSR's key is not the one being certified, so there is no proof of
// possession to link and Config.RequireChannelBinding does not apply (a
// binding that is present is still checked).
func (s *Server) checkCSR(req *Request, body []byte, pop bool) (*x509.CertificateRequest, error) {
	der, err := DecodeBase64Body(body)
	if err != nil {
		return nil, problem.New(problem.BadRequest, err, "request body is not base64 (RFC 8951)")
	}
	return s.checkCSRDER(req, der, pop)
}

// checkCSRDER is checkCSR after the base64 layer: one DER PKCS#10, its
// policy, the channel binding; it records the CSR on req.
func (s *Server) checkCSRDER(req *Request, der []byte, pop bool) (*x509.CertificateRequest, error) {
	csr, info, err := parseCSR(der)
	if err != nil {
		return nil, problem.New(problem.BadRequest, err, "request body is not one DER PKCS#10 certification request")
	}
	if err := checkCSRPolicy(csr); err != nil {
		return nil, err
	}
	req.RawCSR = der
	if err := s.checkBinding(req, info, pop && s.cfg.RequireChannelBinding); err != nil {
		return nil, err
	}
	return csr, nil
}

// checkBinding implements RFC 7030 §3.5: a challengePassword in the CSR
// must equal the base64 channel binding of this TLS connection
// (tls-unique, RFC 5929, under TLS 1.2; tls-exporter, RFC 9266, under
// TLS 1.3, which has no tls-unique). A mismatch is a CSR relayed from
// another connection (reliability C09).
func (s *Server) checkBinding(req *Request, info *csrInfo, required bool) error {
	if !info.hasChallenge {
		if required {
			return problem.New(problem.Unauthorized, nil, "the CSR must carry the channel binding in challengePassword (RFC 7030 §3.5)")
		}
		return nil
	}
	want, _, err := channelBinding(req.TLS)
	if err != nil {
		return problem.New(problem.Unauthorized, err, "this connection has no channel binding to compare the challengePassword with")
	}
	got, err := decodeBinding(info.challengePassword)
	if err != nil || subtle.ConstantTimeCompare(got, want) != 1 {
		return problem.New(problem.Unauthorized, err, "challengePassword does not match this connection's channel binding")
	}
	req.ChannelBound = true
	return nil
}

// deferred fills in Retry-After on a back end's Deferred error (RFC 7030
// §4.2.3: 202 with Retry-After).
func (s *Server) deferred(err error) error {
	if p, ok := errors.AsType[*problem.Error](err); ok && p.Kind == problem.Deferred && p.RetryAfter <= 0 {
		p.RetryAfter = s.cfg.RetryAfter
	}
	return err
}

// enroll is the simpleenroll service call.
func (s *Server) enroll(ctx context.Context, req *Request, csr *x509.CertificateRequest) (*x509.Certificate, error) {
	cert, err := s.ca.Enroll(ctx, req, csr)
	if err != nil {
		return nil, s.deferred(err)
	}
	return cert, nil
}

// reenroll is the simplereenroll service call with the RFC 7030 §4.2.2
// rules the edge can check by itself.
func (s *Server) reenroll(ctx context.Context, req *Request, csr *x509.CertificateRequest) (*x509.Certificate, error) {
	// RFC 7030 §4.2.2: the certificate being renewed is the TLS client
	// certificate; without one there is nothing to renew.
	if len(req.PeerChain) == 0 {
		return nil, problem.New(problem.Unauthorized, nil, "re-enrollment requires the certificate being renewed as the TLS client certificate")
	}
	// RFC 7030 §4.2.2: "the Subject and SubjectAltName fields in the
	// certificate request MUST be identical to the corresponding fields in
	// the certificate being renewed or rekeyed" (reliability D04).
	if err := sameNames(csr, req.PeerChain[0]); err != nil {
		return nil, problem.New(problem.Forbidden, err, "the CSR's subject and subjectAltName must equal the certificate being renewed (RFC 7030 §4.2.2)")
	}
	cert, err := s.ca.Reenroll(ctx, req, csr)
	if err != nil {
		return nil, s.deferred(err)
	}
	return cert, nil
}

// serverKeyGen is the serverkeygen service call.
func (s *Server) serverKeyGen(ctx context.Context, req *Request, csr *x509.CertificateRequest) (*x509.Certificate, crypto.Signer, error) {
	cert, key, err := s.ca.ServerKeyGen(ctx, req, csr)
	if err != nil {
		return nil, nil, s.deferred(err)
	}
	if cert == nil || key == nil {
		return nil, nil, errors.New("server key generation: back end returned no certificate or key")
	}
	return cert, key, nil
}

// csrAttrs is the csrattrs service call. RFC 7030 §3.5: a server that
// requires the channel binding lists challengePassword.
func (s *Server) csrAttrs(ctx context.Context, req *Request) ([]byte, error) {
	a, err := s.ca.CSRAttrs(ctx, req)
	if err != nil {
		return nil, err
	}
	if a == nil {
		a = &CSRAttrs{}
	}
	if s.cfg.RequireChannelBinding && !slices.ContainsFunc(a.OIDs, OIDChallengePassword.Equal) {
		c := *a
		c.OIDs = append([]asn1.ObjectIdentifier{OIDChallengePassword}, a.OIDs...)
		a = &c
	}
	return a.MarshalBinary()
}
