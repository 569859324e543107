package pledge

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	piondtls "github.com/pion/dtls/v3"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/gatehouse-pki/gatehouse/est"
)

// EST-coaps resources and content-formats (RFC 9148 §5.1, §8.1).
const (
	coapsCrts = "/.well-known/est/crts"
	coapsSen  = "/.well-known/est/sen"
	coapsSren = "/.well-known/est/sren"

	cfCertsOnly message.MediaType = 281
	cfPKCS10    message.MediaType = 286
)

// CoAPError is a CoAP error response (4.xx, 5.xx) with its diagnostic
// payload and Max-Age (the retry delay of a 5.03, RFC 9148 §5.7).
type CoAPError struct {
	Path       string
	Code       codes.Code
	Diagnostic string
	MaxAge     time.Duration
}

func (e *CoAPError) Error() string {
	return fmt.Sprintf("%s: %d.%02d %s: %s", e.Path, e.Code>>5, e.Code&0x1f, e.Code, e.Diagnostic)
}

// CoAPSession is an EST-coaps session over DTLS 1.2: the client
// certificate (IDevID or LDevID) authenticates every request (RFC 9148
// §4); payloads are binary DER; block-wise transfer both ways.
type CoAPSession struct {
	cc *udpclient.Conn
}

// DialCoAPS opens a DTLS session to addr (host:port) presenting cert; the
// handshake is bounded by DialTimeout.
// verify checks the registrar's chain (leaf first) at the caller's time:
// against the pinned domain certificate, or provisionally accepting it
// before a voucher; it must not be nil.
func DialCoAPS(ctx context.Context, addr string, cert tls.Certificate, verify func([]*x509.Certificate) error) (*CoAPSession, error) {
	if verify == nil {
		return nil, errors.New("coaps: no server verification")
	}
	opts := []piondtls.ClientOption{
		piondtls.WithCertificates(cert),
		piondtls.WithCipherSuites(
			piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
			piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		),
		piondtls.WithExtendedMasterSecret(piondtls.RequireExtendedMasterSecret),
		// pion verifies with the wall clock; verify uses the pledge's
		// clock instead.
		piondtls.WithInsecureSkipVerify(true),
		piondtls.WithVerifyPeerCertificate(func(raw [][]byte, _ [][]*x509.Certificate) error {
			chain := make([]*x509.Certificate, 0, len(raw))
			for _, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				chain = append(chain, c)
			}
			if len(chain) == 0 {
				return errors.New("registrar sent no certificate")
			}
			return verify(chain)
		}),
		piondtls.WithMTU(1024),
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("coaps: %w", err)
	}
	pc, err := (&net.ListenConfig{}).ListenPacket(ctx, "udp", "")
	if err != nil {
		return nil, fmt.Errorf("coaps: %w", err)
	}
	dc, err := piondtls.ClientWithOptions(pc, ua, opts...)
	if err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("coaps: %w", err)
	}
	hctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	if err := dc.HandshakeContext(hctx); err != nil {
		_ = dc.Close()
		return nil, fmt.Errorf("coaps: dtls handshake: %w", err)
	}
	// WithCloseSocket: Close ends the DTLS session (close_notify), which
	// frees the registrar's session slot; without it go-coap only cancels.
	cc := coapdtls.Client(dc, options.WithBlockwise(true, blockwise.SZX1024, time.Minute), options.WithCloseSocket())
	return &CoAPSession{cc: cc}, nil
}

// Close ends the session.
func (s *CoAPSession) Close() error { return s.cc.Close() }

// Conn is the underlying go-coap connection, for requests this type does
// not wrap.
func (s *CoAPSession) Conn() *udpclient.Conn { return s.cc }

// CACerts fetches /crts as certs-only (281).
func (s *CoAPSession) CACerts(ctx context.Context) ([]*x509.Certificate, error) {
	resp, err := s.cc.Get(ctx, coapsCrts, message.Option{ID: message.Accept, Value: []byte{1, 25}})
	if err != nil {
		return nil, fmt.Errorf("coaps %s: %w", coapsCrts, err)
	}
	body, err := answerBody(coapsCrts, resp, codes.Content)
	if err != nil {
		return nil, err
	}
	return est.ParseCertsOnly(body)
}

// Enroll posts a DER CSR to /sen; Reenroll to /sren. Both return the
// certificate from the certs-only (281) response.
func (s *CoAPSession) Enroll(ctx context.Context, csrDER []byte) (*x509.Certificate, error) {
	return s.enroll(ctx, coapsSen, csrDER)
}

// Reenroll posts a DER CSR to /sren (RFC 9148; RFC 7030 §4.2.2).
func (s *CoAPSession) Reenroll(ctx context.Context, csrDER []byte) (*x509.Certificate, error) {
	return s.enroll(ctx, coapsSren, csrDER)
}

func (s *CoAPSession) enroll(ctx context.Context, path string, csrDER []byte) (*x509.Certificate, error) {
	resp, err := s.cc.Post(ctx, path, cfPKCS10, bytes.NewReader(csrDER), message.Option{ID: message.Accept, Value: []byte{1, 25}})
	if err != nil {
		return nil, fmt.Errorf("coaps %s: %w", path, err)
	}
	body, err := answerBody(path, resp, codes.Changed)
	if err != nil {
		return nil, err
	}
	certs, err := est.ParseCertsOnly(body)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// answerBody returns the body of a response with code want, or a
// *CoAPError.
func answerBody(path string, resp *pool.Message, want codes.Code) ([]byte, error) {
	body, err := resp.ReadBody()
	if err != nil {
		return nil, fmt.Errorf("coaps %s: %w", path, err)
	}
	if resp.Code() != want {
		e := &CoAPError{Path: path, Code: resp.Code(), Diagnostic: printable(body)}
		if ma, err := resp.GetOptionUint32(message.MaxAge); err == nil {
			e.MaxAge = time.Duration(ma) * time.Second
		}
		return nil, e
	}
	if cf, err := resp.ContentFormat(); err != nil || cf != cfCertsOnly {
		return nil, fmt.Errorf("coaps %s: content-format %v, want 281", path, cf)
	}
	return body, nil
}

// DefaultCoAPSPort is the CoAPS port when a coaps:// URL names none (RFC
// 7252 §6.2).
const DefaultCoAPSPort = "5684"

// coapsAddr is the host:port of a coaps:// URL.
func coapsAddr(u *url.URL) string {
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), DefaultCoAPSPort)
	}
	return u.Host
}

// reenrollCoAPS is Reenroll over EST-coaps (RFC 9148): a DTLS session
// presenting the LDevID, the registrar verified against the domain CAs
// (as over HTTPS), /crts, a new key of the same type, and /sren with a CSR
// of the same subject and subjectAltName. DTLS gives no tls-unique here,
// so the CSR carries no channel binding. A 5.03 with Max-Age is retried
// with the identical CSR after Max-Age (RFC 9148 §5.7), each wait capped
// by MaxRetryWait.
func reenrollCoAPS(ctx context.Context, cfg ReenrollConfig, leaf *x509.Certificate, kt est.KeyType) (*Result, error) {
	host := cfg.Registrar.Hostname()
	s, err := DialCoAPS(ctx, coapsAddr(cfg.Registrar), cfg.LDevID, func(chain []*x509.Certificate) error {
		return verifyDomainServer(chain, cfg.DomainCAs, host, cfg.Clock.Now())
	})
	if err != nil {
		return nil, fmt.Errorf("reenroll: %w: %w", ErrConnect, err)
	}
	defer func() { _ = s.Close() }()
	res := &Result{}
	if res.CACerts, err = s.CACerts(ctx); err != nil {
		return nil, fmt.Errorf("reenroll: crts: %w", err)
	}
	if res.Key, err = est.GenerateKey(kt); err != nil {
		return nil, fmt.Errorf("pledge: %w", err)
	}
	req := est.CSRRequest{RawSubject: leaf.RawSubject}
	if san, ok := sanExtension(leaf); ok {
		req.Extensions = []est.Extension{san}
	}
	if res.CSR, err = est.CreateCSR(req, res.Key); err != nil {
		return nil, fmt.Errorf("pledge: %w", err)
	}
	for attempt := 1; ; attempt++ {
		res.Attempts = attempt
		res.LDevID, err = s.Reenroll(ctx, res.CSR.Raw)
		var ce *CoAPError
		if !errors.As(err, &ce) || ce.Code != codes.ServiceUnavailable || ce.MaxAge <= 0 {
			break
		}
		wait := min(max(ce.MaxAge, MinRetryWait), cfg.MaxRetryWait)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("reenroll: %w after %d attempts: %w", ErrEnrollPending, attempt, ctx.Err())
		case <-time.After(wait):
		}
	}
	if err != nil {
		return nil, fmt.Errorf("reenroll: %w", err)
	}
	verify := func() error { return res.verifyLDevID(cfg.DomainCAs, cfg.Clock.Now()) }
	if err := res.verifyAfterRollover(ctx, verify, s.CACerts); err != nil {
		return nil, fmt.Errorf("reenroll: %w", err)
	}
	return res, nil
}
