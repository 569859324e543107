package coap

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/jmhodges/clock"
	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls/server"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/registrar"
)

// Config is the CoAPS listener's configuration. Pure data; the zero value
// is a working default.
type Config struct {
	// HandshakeTimeout bounds a DTLS handshake, including its
	// retransmissions; an unfinished handshake's state is dropped then
	// (reliability F10). Default 10s.
	HandshakeTimeout time.Duration
	// MaxSessions caps concurrent DTLS sessions: a session takes its slot
	// when the client echoes a valid HelloVerifyRequest cookie, so
	// handshakes past the cookie count and cookieless ClientHellos do not
	// (they leave no state at all); a handshake
	// beyond the cap is refused (reliability F08, F09). Default 128.
	MaxSessions int
	// IdleTimeout closes a session with no traffic. Default 2m.
	IdleTimeout time.Duration
	// TransferLifetime is how long an unfinished Block1 transfer, or a
	// response kept for Block2 retrieval, lives. Default 60s.
	TransferLifetime time.Duration
	// PiggybackWait is how long a request waits for its result before the
	// server sends an empty ACK and then the response separately (RFC 7252
	// §5.2.2; RFC 9148 §5.7). Default 1s, under the 2 s ACK_TIMEOUT.
	PiggybackWait time.Duration
}

// WithDefaults returns cfg with every unset field at its default.
func (cfg Config) WithDefaults() Config {
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.MaxSessions == 0 {
		cfg.MaxSessions = 128
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 2 * time.Minute
	}
	if cfg.TransferLifetime == 0 {
		cfg.TransferLifetime = 60 * time.Second
	}
	if cfg.PiggybackWait == 0 {
		cfg.PiggybackWait = time.Second
	}
	return cfg
}

// Validate reports every problem in cfg at once. It is pure.
func (cfg Config) Validate() error {
	var errs []error
	if cfg.HandshakeTimeout <= 0 || cfg.HandshakeTimeout > time.Minute {
		errs = append(errs, fmt.Errorf("handshakeTimeout %s: must be in (0, 1m]", cfg.HandshakeTimeout))
	}
	if cfg.MaxSessions <= 0 || cfg.MaxSessions > 100_000 {
		errs = append(errs, fmt.Errorf("maxSessions %d: must be in [1, 100000]", cfg.MaxSessions))
	}
	if cfg.IdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("idleTimeout %s: must be positive", cfg.IdleTimeout))
	}
	if cfg.TransferLifetime <= 0 {
		errs = append(errs, fmt.Errorf("transferLifetime %s: must be positive", cfg.TransferLifetime))
	}
	if cfg.PiggybackWait <= 0 || cfg.PiggybackWait >= 2*time.Second {
		errs = append(errs, fmt.Errorf("piggybackWait %s: must be in (0, 2s) (ACK_TIMEOUT)", cfg.PiggybackWait))
	}
	return errors.Join(errs...)
}

// Registrar is what the listener needs from registrar.Service: its
// identity, the pledge authentication the TLS listener uses, and the
// voucher and status API.
type Registrar interface {
	Voucher
	Certificate() tls.Certificate
	Throttle(remote string, leaf *x509.Certificate) time.Duration
	ConnContext(ctx context.Context, c net.Conn) context.Context
	// ClassifyPeer verifies a client chain as the HTTPS listener does;
	// SetPeer records the result on a connection (ConnContext).
	ClassifyPeer(ctx context.Context, certs []*x509.Certificate) (*registrar.Peer, error)
	SetPeer(ctx context.Context, p *registrar.Peer)
}

// EST is the EST service the resources map onto (*est.Server).
type EST interface {
	CACertsFor(ctx context.Context, req *est.Request) ([]*x509.Certificate, error)
	CSRAttrsDER(ctx context.Context, req *est.Request) ([]byte, error)
	EnrollDER(ctx context.Context, req *est.Request, der []byte) (*x509.Certificate, error)
	ReenrollDER(ctx context.Context, req *est.Request, der []byte) (*x509.Certificate, error)
	ServerKeyGenDER(ctx context.Context, req *est.Request, der []byte) (*x509.Certificate, crypto.Signer, error)
}

// Deps are the listener's collaborators. All are required.
type Deps struct {
	Logger    *slog.Logger
	Clock     clock.Clock
	Metrics   prometheus.Registerer
	Registrar Registrar
	EST       EST
}

// Server serves EST-coaps and cBRSKI over DTLS.
type Server struct {
	cfg     Config
	log     *slog.Logger
	clk     clock.Clock
	reg     Registrar
	est     EST
	metrics *metrics
	routes  map[string]route
	// handshakePeers hands the handshake's verification to onNewConn.
	handshakePeers *handshakePeers

	mu       sync.Mutex
	sessions map[*udpclient.Conn]*session
	coap     *server.Server
}

type metrics struct {
	requests *prometheus.CounterVec
	sessions prometheus.Gauge
	refused  prometheus.Counter
	dropped  *prometheus.CounterVec
	hellos   *prometheus.CounterVec
}

// New validates cfg (after defaults) and deps and returns a Server.
func New(cfg Config, deps Deps) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new coap server: %w", err)
	}
	if deps.Logger == nil || deps.Clock == nil || deps.Metrics == nil || deps.Registrar == nil || deps.EST == nil {
		return nil, errors.New("new coap server: Logger, Clock, Metrics, Registrar and EST are required")
	}
	s := &Server{
		cfg:      cfg,
		log:      deps.Logger.With(slog.String("component", "coap")),
		clk:      deps.Clock,
		reg:      deps.Registrar,
		est:      deps.EST,
		metrics:  newMetrics(deps.Metrics),
		sessions: map[*udpclient.Conn]*session{},
		// Room for every handshake the cap admits, twice over.
		handshakePeers: newHandshakePeers(2 * cfg.MaxSessions),
	}
	s.routes = s.newRoutes()
	return s, nil
}

// newMetrics registers the listener's metrics with r.
func newMetrics(r prometheus.Registerer) *metrics {
	f := promauto.With(r)
	return &metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "brski_coap_requests_total",
			Help: "CoAP requests by resource and response code class.",
		}, []string{"resource", "code"}),
		sessions: f.NewGauge(prometheus.GaugeOpts{
			Name: "brski_coap_sessions",
			Help: "DTLS sessions open, handshakes past the cookie exchange included.",
		}),
		refused: f.NewCounter(prometheus.CounterOpts{
			Name: "brski_coap_sessions_refused_total",
			Help: "DTLS handshakes refused because MaxSessions were open.",
		}),
		hellos: f.NewCounterVec(prometheus.CounterOpts{
			Name: "brski_coap_client_hellos_total",
			Help: "Datagrams from addresses without a session, and new handshakes from addresses with one, by verdict: challenged (a cookieless ClientHello, answered with a stateless HelloVerifyRequest), bad_cookie (a cookie that does not verify, answered the same way), verified (a valid cookie: the handshake goes on in a session slot), dropped (anything else).",
		}, []string{"verdict"}),
		dropped: f.NewCounterVec(prometheus.CounterOpts{
			Name: "brski_coap_datagrams_rejected_total",
			Help: "Request datagrams answered or dropped before the CoAP stack, by verdict (drop, reply).",
		}, []string{"verdict"}),
	}
}

// dtlsOptions are the DTLS 1.2 server options: the RA certificate, no
// cookie round of pion's own (the front has run it), a client
// certificate required and verified by the registrar, the RFC 7925
// mandatory suite and AES-128-GCM, a 1024-byte path MTU (cBRSKI).
func (s *Server) dtlsOptions() []piondtls.ServerOption {
	return []piondtls.ServerOption{
		piondtls.WithCertificates(s.reg.Certificate()),
		piondtls.WithCipherSuites(
			piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
			piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		),
		piondtls.WithClientAuth(piondtls.RequireAnyClientCert),
		piondtls.WithExtendedMasterSecret(piondtls.RequestExtendedMasterSecret),
		piondtls.WithVerifyPeerCertificate(func(raw [][]byte, _ [][]*x509.Certificate) error {
			certs, err := parseChain(raw)
			if err != nil {
				return err
			}
			p, err := s.reg.ClassifyPeer(context.Background(), certs)
			if err != nil {
				return err
			}
			s.handshakePeers.put(raw, p, s.clk.Now())
			return nil
		}),
		piondtls.WithMTU(1024),
		piondtls.WithInsecureSkipVerifyHello(true),
	}
}

func parseChain(raw [][]byte) ([]*x509.Certificate, error) {
	if len(raw) > 8 {
		return nil, fmt.Errorf("client chain of %d certificates", len(raw))
	}
	certs := make([]*x509.Certificate, 0, len(raw))
	for _, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// Listener is a DTLS listener whose sessions pass through the cookie
// front (front.go), the session cap and the request checks
// (CheckRequest).
type Listener struct {
	inner net.Listener
	srv   *Server
}

// Listen opens a UDP socket on addr ("host:port") for DTLS.
func (s *Server) Listen(addr string) (*Listener, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("coap listen: %w", err)
	}
	pc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("coap listen: %w", err)
	}
	fr, err := newFront(pc, s)
	if err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("coap listen: %w", err)
	}
	l, err := piondtls.NewListenerWithOptions(fr, s.dtlsOptions()...)
	if err != nil {
		_ = fr.Close()
		return nil, fmt.Errorf("coap listen: %w", err)
	}
	return &Listener{inner: l, srv: s}, nil
}

// Addr is the listener's UDP address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Close closes the socket.
func (l *Listener) Close() error { return l.inner.Close() }

// AcceptWithContext returns the next session. The session cap is the
// front's: a connection accepted here may still be refused when its
// client echoes the cookie.
func (l *Listener) AcceptWithContext(ctx context.Context) (net.Conn, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c, err := l.inner.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, coapnet.ErrListenerIsClosed
			}
			return nil, err
		}
		dc, ok := c.(*piondtls.Conn)
		if !ok {
			_ = c.Close()
			continue
		}
		return &conn{Conn: dc, srv: l.srv}, nil
	}
}

// conn is one DTLS session: reads pass through CheckSize and
// CheckRequest.
type conn struct {
	*piondtls.Conn
	srv *Server
	buf []byte
}

// maxRecord is the largest DTLS plaintext record (RFC 6347 §4.1: 2^14).
const maxRecord = 1 << 14

// Read returns the next datagram that passes CheckRequest, answering or
// dropping the others. A datagram larger than b (the CoAP stack's read
// buffer, which it would otherwise fail on and end the session) is
// answered 4.13.
func (c *conn) Read(b []byte) (int, error) {
	if c.buf == nil {
		c.buf = make([]byte, maxRecord+1)
	}
	for {
		n, err := c.Conn.Read(c.buf)
		if err != nil {
			return 0, err
		}
		if n > len(b) {
			c.srv.metrics.dropped.WithLabelValues("reply").Inc()
			if reply := CheckSize(c.buf[:n], len(b)); reply != nil {
				if _, err := c.Write(reply); err != nil {
					return 0, err
				}
			}
			continue
		}
		n = copy(b, c.buf[:n])
		v, reply := CheckRequest(b[:n])
		switch v {
		case Pass:
			return n, nil
		case Reply:
			c.srv.metrics.dropped.WithLabelValues("reply").Inc()
			if _, err := c.Write(reply); err != nil {
				return 0, err
			}
		default:
			c.srv.metrics.dropped.WithLabelValues("drop").Inc()
		}
	}
}

// peerChain returns the client chain the handshake verified.
func (c *conn) peerChain() ([]*x509.Certificate, error) {
	st, ok := c.ConnectionState()
	if !ok {
		return nil, errors.New("no DTLS connection state")
	}
	return parseChain(st.PeerCertificates)
}

// Serve serves sessions from l until Stop or l is closed.
func (s *Server) Serve(l *Listener) error {
	srv := server.New(
		options.WithHandlerFunc(s.handle),
		options.WithBlockwise(false, 0, 0),
		options.WithDTLSHandshakeTimeout(s.cfg.HandshakeTimeout),
		options.WithOnNewConn(s.onNewConn),
		options.WithInactivityMonitor(s.cfg.IdleTimeout, func(cc *udpclient.Conn) { _ = cc.Close() }),
		options.WithMaxMessageSize(2048),
		options.WithErrors(func(err error) {
			s.log.Debug("coap session error", slog.String("err", err.Error()))
		}),
	)
	s.mu.Lock()
	s.coap = srv
	s.mu.Unlock()
	return srv.Serve(l)
}

// Stop stops Serve and closes the listener.
func (s *Server) Stop() {
	s.mu.Lock()
	srv := s.coap
	s.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

// onNewConn records a session after its handshake: the registrar's
// per-connection record with the classified peer, so that requests reuse
// the handshake's verification.
func (s *Server) onNewConn(cc *udpclient.Conn) {
	ses := &session{reasm: reassembler{lifetime: s.cfg.TransferLifetime}, responses: map[string]*cached{}}
	if c, ok := cc.NetConn().(*conn); ok {
		chain, err := c.peerChain()
		if err == nil {
			ctx := s.reg.ConnContext(context.Background(), c)
			// The handshake verified this chain moments ago; verify again
			// only when its result is gone.
			p := s.handshakePeers.take(rawChain(chain), s.clk.Now(), s.cfg.HandshakeTimeout)
			if p == nil {
				p, err = s.reg.ClassifyPeer(ctx, chain)
			}
			if err == nil {
				s.reg.SetPeer(ctx, p)
				ses.chain, ses.values = chain, ctx
			}
		}
		if err != nil {
			s.log.Info("coap session refused", slog.String("err", err.Error()))
			_ = cc.Close()
			return
		}
	}
	s.mu.Lock()
	s.sessions[cc] = ses
	s.mu.Unlock()
	cc.AddOnClose(func() {
		s.mu.Lock()
		delete(s.sessions, cc)
		s.mu.Unlock()
	})
}

func (s *Server) session(cc *udpclient.Conn) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[cc]
}
