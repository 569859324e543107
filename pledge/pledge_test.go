package pledge_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmhodges/clock"

	"github.com/gatehouse-pki/gatehouse/masa/masatest"
	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/pledge"
	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
	"github.com/gatehouse-pki/gatehouse/store"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

// env is a manufacturer with a real MASA, and a real registrar in front of
// it, all on loopback at the fixed test time.
type env struct {
	clk  clock.FakeClock
	mfg  *pkitest.CA
	masa *masatest.Server
	reg  *registrartest.Registrar
}

func newEnv(t *testing.T, opts registrartest.Options) *env {
	t.Helper()
	fc := pkitest.NewClock()
	mfg := pkitest.NewCA(t, pkitest.Name("Pledge Test Manufacturer"), pkitest.Clock(fc))
	m := masatest.Start(t, masatest.Options{Clock: fc, Manufacturer: mfg})
	opts.Clock, opts.Manufacturer, opts.MASA = fc, mfg, m
	return &env{clk: fc, mfg: mfg, masa: m, reg: registrartest.Start(t, opts)}
}

// client returns a pledge client for serial against registrarURL.
func (e *env) client(t *testing.T, serial, registrarURL string, anchors ...*x509.Certificate) (*pledge.Client, *pkitest.Leaf) {
	t.Helper()
	idevid := pkitest.NewIDevID(t, e.mfg, serial, e.masa.Authority, pkitest.WithNoExpiry())
	if len(anchors) == 0 {
		anchors = []*x509.Certificate{e.masa.Anchor()}
	}
	u, err := url.Parse(registrarURL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pledge.New(pledge.Config{
		Registrar:    u,
		IDevID:       idevid.TLS,
		MASAAnchors:  anchors,
		Clock:        e.clk,
		MaxRetryWait: time.Millisecond,
		MaxWait:      time.Minute,
	})
	if err != nil {
		t.Fatalf("pledge.New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, idevid
}

// voucherStatuses returns the voucher_status bodies the registrar stored
// for the pledge.
func (e *env) voucherStatuses(t *testing.T, idevid *pkitest.Leaf) []map[string]any {
	t.Helper()
	serial, err := pki.SerialNumber(idevid.Cert, "")
	if err != nil {
		t.Fatal(err)
	}
	key := store.DeviceKey{Issuer: hex.EncodeToString(idevid.Cert.AuthorityKeyId), Serial: serial}
	tel, err := e.reg.DB().TelemetryFor(t.Context(), key)
	if err != nil {
		t.Fatalf("telemetry: %v", err)
	}
	var out []map[string]any
	for _, r := range tel {
		if r.Kind != store.TelemetryVoucherStatus {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(r.Raw, &m); err != nil {
			t.Fatalf("stored voucher_status %q: %v", r.Raw, err)
		}
		out = append(out, m)
	}
	return out
}

// countingProxy forwards TCP connections to target and counts them.
func countingProxy(t *testing.T, target string) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			wg.Go(func() {
				defer c.Close()
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				done := make(chan struct{})
				go func() { _, _ = io.Copy(up, c); _ = up.(*net.TCPConn).CloseWrite(); close(done) }()
				_, _ = io.Copy(c, up)
				_ = c.(*net.TCPConn).CloseWrite()
				<-done
			})
		}
	})
	return "https://" + ln.Addr().String(), &n
}

func TestClient_RequestVoucher(t *testing.T) {
	t.Parallel()
	e := newEnv(t, registrartest.Options{})
	proxyURL, conns := countingProxy(t, e.reg.Addr)
	c, idevid := e.client(t, "SN-OK-1", proxyURL)

	res, err := c.RequestVoucher(t.Context())
	if err != nil {
		t.Fatalf("RequestVoucher: %v", err)
	}
	v := res.Voucher
	if v.SerialNumber != "SN-OK-1" || c.Serial() != "SN-OK-1" {
		t.Errorf("serial %q / %q", v.SerialNumber, c.Serial())
	}
	if len(v.Nonce) != pledge.NonceLen || v.Assertion != voucher.AssertionProximity {
		t.Errorf("nonce %x, assertion %q", v.Nonce, v.Assertion)
	}
	if !res.PinnedDomainCert.Equal(e.reg.DomainCA.Cert) {
		t.Errorf("pinned %q, want the registrar's domain CA", res.PinnedDomainCert.Subject)
	}
	if !res.RegistrarChain[0].Equal(e.reg.RA.Cert) || res.Attempts != 1 || res.VoucherStatusErr != nil {
		t.Errorf("registrar %q, attempts %d, voucher_status %v", res.RegistrarChain[0].Subject, res.Attempts, res.VoucherStatusErr)
	}
	// The raw bytes are the voucher as sent by the MASA: they verify alone.
	if _, _, err := voucher.VerifyCMS(res.Raw, voucher.VerifyOptions{Anchors: []*x509.Certificate{e.masa.Anchor()}, Time: e.clk.Now()}); err != nil {
		t.Errorf("raw voucher: %v", err)
	}
	// The request was a CMS-signed PVR naming the registrar's certificate.
	_, _, err = voucher.VerifyCMS(res.Request, voucher.VerifyOptions{Anchors: []*x509.Certificate{e.mfg.Root()}, Time: e.clk.Now()})
	if err != nil {
		t.Errorf("request: %v", err)
	}
	// voucher_status {"version":1,"status":true} reached the registrar.
	st := e.voucherStatuses(t, idevid)
	if len(st) != 1 || st[0]["status"] != true || st[0]["version"] != float64(1) {
		t.Errorf("voucher_status stored: %v", st)
	}
	// Telemetry after the voucher goes over the same connection.
	if err := c.EnrollStatus(t.Context(), false, "EST not attempted"); err != nil {
		if _, ok := errors.AsType[*pledge.StatusError](err); !ok {
			t.Errorf("EnrollStatus: %v", err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d TCP connections, want one persistent connection", n)
	}
}

func TestClient_RequestVoucher_Deferred(t *testing.T) {
	t.Parallel()
	// The registrar holds new pledges for an operator (202 + Retry-After).
	// The operator approves while the first 202 is on its way: the request
	// log event is written before the response leaves the handler, so the
	// pledge's identical retry finds the device approved.
	var svc atomic.Pointer[registrar.Service]
	hook := &onStatus{status: http.StatusAccepted, fire: func(ctx context.Context, n int32) error {
		if n != 1 {
			return nil
		}
		return svc.Load().Approve(ctx, "SN-WAIT-1")
	}}
	e := newEnv(t, registrartest.Options{Policy: registrar.PolicyApprove, Logger: slog.New(hook)})
	svc.Store(e.reg.Service)
	c, idevid := e.client(t, "SN-WAIT-1", e.reg.URL)

	res, err := c.RequestVoucher(t.Context())
	if err != nil {
		t.Fatalf("RequestVoucher: %v", err)
	}
	if res.Attempts != 2 || hook.n.Load() != 1 {
		t.Errorf("attempts %d, 202 answers %d; want 2 and 1", res.Attempts, hook.n.Load())
	}
	if st := e.voucherStatuses(t, idevid); len(st) != 1 || st[0]["status"] != true {
		t.Errorf("voucher_status stored: %v", st)
	}
}

func TestClient_RequestVoucher_ContextEndsWhilePending(t *testing.T) {
	t.Parallel()
	// Nobody approves; the caller gives up after the second 202.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	hook := &onStatus{status: http.StatusAccepted, fire: func(_ context.Context, n int32) error {
		if n == 2 {
			cancel()
		}
		return nil
	}}
	e := newEnv(t, registrartest.Options{Policy: registrar.PolicyApprove, Logger: slog.New(hook)})
	c, _ := e.client(t, "SN-NEVER-1", e.reg.URL)
	_, err := c.RequestVoucher(ctx)
	if !errors.Is(err, pledge.ErrPending) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v; want ErrPending wrapping context.Canceled", err)
	}
}

func TestClient_RequestVoucher_WrongMASAAnchor(t *testing.T) {
	t.Parallel()
	e := newEnv(t, registrartest.Options{})
	other := pkitest.NewCA(t, pkitest.Name("Not The MASA"), pkitest.Clock(e.clk))
	c, idevid := e.client(t, "SN-ANCHOR-1", e.reg.URL, other.Root())

	res, err := c.RequestVoucher(t.Context())
	if !errors.Is(err, pledge.ErrMASASignature) || !errors.Is(err, voucher.ErrUntrusted) || res != nil {
		t.Fatalf("RequestVoucher = %v, %v; want ErrMASASignature (untrusted)", res, err)
	}
	st := e.voucherStatuses(t, idevid)
	if len(st) != 1 || st[0]["status"] != false || st[0]["reason"] == "" {
		t.Errorf("voucher_status stored: %v; want one status false with a reason", st)
	}
}

func TestClient_RequestVoucher_RegistrarErrors(t *testing.T) {
	t.Parallel()
	// A registrar that refuses the pledge (allowlist without it): 403 with
	// its text.
	e := newEnv(t, registrartest.Options{Policy: registrar.PolicyAllowlist, Allowlist: []string{"SN-SOMEONE-ELSE"}})
	c, _ := e.client(t, "SN-REFUSED-1", e.reg.URL)
	_, err := c.RequestVoucher(t.Context())
	se, ok := errors.AsType[*pledge.StatusError](err)
	if !ok || se.StatusCode != http.StatusForbidden || se.Path != pledge.PathRequestVoucher || se.Text == "" {
		t.Fatalf("err = %v; want a 403 StatusError with the registrar's text", err)
	}
}

func TestNew_Config(t *testing.T) {
	t.Parallel()
	fc := pkitest.NewClock()
	mfg := pkitest.NewCA(t, pkitest.Clock(fc))
	idevid := pkitest.NewIDevID(t, mfg, "SN-CFG", "masa.example:443")
	noSerial := pkitest.NewIDevID(t, mfg, "SN-CFG", "", pkitest.NoSerialNumber())
	otherKey := idevid.TLS
	otherKey.PrivateKey = pkitest.NewKey(t)
	https, _ := url.Parse("https://127.0.0.1:1")
	coaps, _ := url.Parse("coaps://127.0.0.1:5684")
	good := pledge.Config{Registrar: https, IDevID: idevid.TLS, MASAAnchors: []*x509.Certificate{mfg.Root()}, Clock: fc}
	tests := map[string]func(*pledge.Config){
		"no-registrar":    func(c *pledge.Config) { c.Registrar = nil },
		"coaps-cms":       func(c *pledge.Config) { c.Registrar, c.VoucherFormat = coaps, voucher.FormatCMS },
		"no-anchor":       func(c *pledge.Config) { c.MASAAnchors = nil },
		"no-clock":        func(c *pledge.Config) { c.Clock = nil },
		"no-idevid":       func(c *pledge.Config) { c.IDevID.Certificate = nil },
		"key-mismatch":    func(c *pledge.Config) { c.IDevID = otherKey },
		"no-serialnumber": func(c *pledge.Config) { c.IDevID = noSerial.TLS },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := good
			mutate(&cfg)
			if _, err := pledge.New(cfg); !errors.Is(err, pledge.ErrConfig) {
				t.Fatalf("New = %v, want ErrConfig", err)
			}
		})
	}
	if _, err := pledge.New(good); err != nil {
		t.Fatalf("New(good) = %v", err)
	}
}

// A registrar that cannot be reached is ErrConnect.
func TestClient_RequestVoucher_Unreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	fc := pkitest.NewClock()
	mfg := pkitest.NewCA(t, pkitest.Clock(fc))
	idevid := pkitest.NewIDevID(t, mfg, "SN-X", "")
	u, _ := url.Parse("https://" + addr)
	c, err := pledge.New(pledge.Config{Registrar: u, IDevID: idevid.TLS, MASAAnchors: []*x509.Certificate{mfg.Root()}, Clock: fc})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RequestVoucher(t.Context()); !errors.Is(err, pledge.ErrConnect) {
		t.Fatalf("err = %v, want ErrConnect", err)
	}
}

// rogueRegistrar is a registrar that relays to the real MASA correctly but
// serves, on its TLS listener, a certificate that does not chain to the
// domain CA the MASA pins: the same key as its RA certificate (so the MASA's
// proximity check passes), issued by another CA. RFC 8995 §5.6.2 has the
// pledge refuse that voucher.
type rogueRegistrar struct {
	url string
	// replay, when set, is answered instead of the MASA's voucher.
	replay atomic.Pointer[[]byte]
	// vouchers are the MASA's answers, in order.
	mu       sync.Mutex
	vouchers [][]byte
	statuses []map[string]any
}

func startRogueRegistrar(t *testing.T, e *env) *rogueRegistrar {
	t.Helper()
	domain := pkitest.NewCA(t, pkitest.Name("Rogue Pinned Domain CA"), pkitest.Clock(e.clk))
	ra := pkitest.NewRACert(t, domain, nil)
	elsewhere := pkitest.NewCA(t, pkitest.Name("Rogue TLS CA"), pkitest.Clock(e.clk))
	served := pkitest.NewRACert(t, elsewhere, nil, pkitest.Key(ra.Key))
	masaClient := e.masa.Client(t, &ra.TLS)
	rr := &rogueRegistrar{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+pledge.PathRequestVoucher, func(w http.ResponseWriter, r *http.Request) {
		if v := rr.replay.Load(); v != nil {
			_, _ = w.Write(*v)
			return
		}
		body, _ := io.ReadAll(r.Body)
		c, err := voucher.ParseCMS(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		pvr, err := voucher.DecodeRequestJSON(c.Content)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		issuer, err := pki.IDevIDIssuer(r.TLS.PeerCertificates[0], pki.IssuerEncodingOctetString)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rvr := &voucher.Request{
			Fields: voucher.Fields{
				CreatedOn: e.clk.Now().UTC().Truncate(time.Second), Nonce: pvr.Nonce, NonceText: pvr.NonceText,
				SerialNumber: pvr.SerialNumber, IDevIDIssuer: issuer, Assertion: voucher.AssertionProximity,
			},
			PriorSignedVoucherRequest: body,
		}
		payload, err := rvr.MarshalJSON()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		signed, err := voucher.SignCMS(payload, ra.Key, ra.Cert, domain.Chain, voucher.CMSOptions{})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, e.masa.URL+pledge.PathRequestVoucher, bytes.NewReader(signed))
		req.Header.Set("Content-Type", voucher.MediaTypeCMS)
		resp, err := masaClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		v, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			http.Error(w, "masa: "+string(v), http.StatusBadGateway)
			return
		}
		rr.mu.Lock()
		rr.vouchers = append(rr.vouchers, v)
		rr.mu.Unlock()
		w.Header().Set("Content-Type", voucher.MediaTypeCMS)
		_, _ = w.Write(v)
	})
	mux.HandleFunc("POST "+pledge.PathVoucherStatus, func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rr.mu.Lock()
		rr.statuses = append(rr.statuses, m)
		rr.mu.Unlock()
	})
	srv := pkitest.TLSServer(t, mux, served.TLS, nil, pkitest.Clock(e.clk))
	rr.url = srv.URL
	return rr
}

func TestClient_RequestVoucher_PinMismatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, registrartest.Options{})
	rogue := startRogueRegistrar(t, e)
	c, _ := e.client(t, "SN-PIN-1", rogue.url)

	res, err := c.RequestVoucher(t.Context())
	if !errors.Is(err, pledge.ErrPinMismatch) || res != nil {
		t.Fatalf("RequestVoucher = %v, %v; want ErrPinMismatch", res, err)
	}
	rogue.mu.Lock()
	defer rogue.mu.Unlock()
	// The MASA did sign (the voucher itself is fine), and the pledge told
	// the registrar it refused it.
	if len(rogue.vouchers) != 1 {
		t.Fatalf("%d vouchers relayed", len(rogue.vouchers))
	}
	if len(rogue.statuses) != 1 || rogue.statuses[0]["status"] != false || rogue.statuses[0]["version"] != float64(1) {
		t.Fatalf("voucher_status received: %v; want one status false", rogue.statuses)
	}
}

func TestClient_RequestVoucher_ReplayedVoucher(t *testing.T) {
	t.Parallel()
	e := newEnv(t, registrartest.Options{})
	rogue := startRogueRegistrar(t, e)
	// A first exchange makes the MASA sign a voucher for this pledge.
	first, idevid := e.client(t, "SN-REPLAY-1", rogue.url)
	if _, err := first.RequestVoucher(t.Context()); !errors.Is(err, pledge.ErrPinMismatch) {
		t.Fatalf("first exchange: %v", err)
	}
	rogue.mu.Lock()
	old := rogue.vouchers[0]
	rogue.mu.Unlock()
	rogue.replay.Store(&old)
	// The same pledge asks again, with a fresh nonce; the old voucher is
	// answered.
	u, _ := url.Parse(rogue.url)
	c, err := pledge.New(pledge.Config{Registrar: u, IDevID: idevid.TLS, MASAAnchors: []*x509.Certificate{e.masa.Anchor()}, Clock: e.clk})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.RequestVoucher(t.Context()); !errors.Is(err, pledge.ErrNonceMismatch) {
		t.Fatalf("replay: err = %v, want ErrNonceMismatch", err)
	}
	// Another pledge given that voucher: wrong serial.
	other, _ := e.client(t, "SN-REPLAY-2", rogue.url)
	if _, err := other.RequestVoucher(t.Context()); !errors.Is(err, pledge.ErrSerialMismatch) {
		t.Fatalf("other pledge: err = %v, want ErrSerialMismatch", err)
	}
}
