package bench

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmhodges/clock"

	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/internal/lab"
	"github.com/gatehouse-pki/gatehouse/internal/web"
	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pki/lint"
	"github.com/gatehouse-pki/gatehouse/store"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

// DefaultFloorDuration is how long Floor runs the work.
const DefaultFloorDuration = 3 * time.Second

// FloorConfig configures Floor.
type FloorConfig struct {
	// Lab is the lab PKI whose keys the work uses: the registrar's TLS
	// identity, the MASA's signing key, the domain CA. Required.
	Lab *lab.PKI
	// Identities mints the pledge whose requests are processed. Required.
	Identities *Identities
	// Duration is how long to run. Default DefaultFloorDuration.
	Duration time.Duration
	// Clock is the only source of time. Required.
	Clock clock.Clock
}

// FloorReport is what Floor measured.
type FloorReport struct {
	// PerS is the floor: onboardings a second if every core did nothing but
	// the server's share of the work (Cores / CPUPerOp).
	PerS float64 `json:"per_s"`
	// CPUPerOpMs is the server-side CPU time of one onboarding's work, ms.
	CPUPerOpMs float64 `json:"cpu_per_op_ms"`
	// Cores is GOMAXPROCS.
	Cores int `json:"cores"`
	// Units is how many onboardings' work ran.
	Units int `json:"units"`
}

// Floor measures the least server work of one HTTPS onboarding and turns
// it into a throughput limit for this machine. One unit is: the server half
// of a TLS 1.3 handshake that verifies the pledge's IDevID, the four CMS
// verifications (the registrar's of the pledge voucher-request and of the
// voucher, the MASA's of the registrar voucher-request and of the pledge's
// request inside it), the two CMS signatures (registrar voucher-request,
// voucher), a CSR parse and check, an LDevID issuance with the lab's lint
// mode, and one durable store write (a first voucher and its device, the
// registrar's group commit). Units run on every core at once for the
// duration, with as many workers as keep the cores busy while writes wait
// for fsync. The process's CPU time is measured with getrusage, minus what
// the client halves of the handshakes spent (each client runs on a locked
// thread, measured with RUSAGE_THREAD), so the client's work is not
// charged to the server.
func Floor(ctx context.Context, cfg FloorConfig) (*FloorReport, error) {
	if cfg.Lab == nil || cfg.Identities == nil || cfg.Clock == nil {
		return nil, errors.New("bench: floor: lab, identities and clock are required")
	}
	if cfg.Duration == 0 {
		cfg.Duration = DefaultFloorDuration
	}
	w, err := newFloorWork(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("bench: floor: %w", err)
	}
	defer w.close()

	workers := 4 * runtime.GOMAXPROCS(0)
	var units atomic.Int64
	var clientCPU atomic.Int64 // nanoseconds
	var firstErr error
	var errOnce sync.Once
	fail := func(err error) { errOnce.Do(func() { firstErr = err }) }

	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	before, err := processCPU()
	if err != nil {
		return nil, fmt.Errorf("bench: floor: %w", err)
	}
	var wg sync.WaitGroup
	var seq atomic.Int64
	for range workers {
		wg.Go(func() {
			for runCtx.Err() == nil {
				cpu, err := w.unit(ctx, seq.Add(1))
				if err != nil {
					fail(err)
					cancel()
					return
				}
				clientCPU.Add(int64(cpu))
				units.Add(1)
			}
		})
	}
	wg.Wait()
	after, err := processCPU()
	if err != nil {
		return nil, fmt.Errorf("bench: floor: %w", err)
	}
	if firstErr != nil {
		return nil, fmt.Errorf("bench: floor: %w", firstErr)
	}
	n := units.Load()
	if n == 0 {
		return nil, errors.New("bench: floor: no unit completed")
	}
	server := after - before - time.Duration(clientCPU.Load())
	perOp := server / time.Duration(n)
	if perOp <= 0 {
		// CPU accounting too coarse for so short a run.
		return nil, fmt.Errorf("bench: floor: no server CPU measured over %d units; run it longer", n)
	}
	cores := runtime.GOMAXPROCS(0)
	return &FloorReport{
		PerS:       float64(cores) / perOp.Seconds(),
		CPUPerOpMs: float64(perOp.Microseconds()) / 1000,
		Cores:      cores,
		Units:      int(n),
	}, nil
}

// floorWork holds the fixtures of one floor run.
type floorWork struct {
	clk        clock.Clock
	serverTLS  *tls.Config
	clientTLS  *tls.Config
	pvr        []byte // pledge voucher-request, signed by the IDevID
	payload    []byte // voucher-request JSON, signed as RVR and voucher
	raKey      crypto.Signer
	raLeaf     *x509.Certificate
	raChain    []*x509.Certificate
	masaKey    crypto.Signer
	masaLeaf   *x509.Certificate
	masaChain  []*x509.Certificate
	idevidRoot []*x509.Certificate
	domainRoot []*x509.Certificate
	masaRoots  []*x509.Certificate
	csr        []byte
	device     *pki.DeviceIdentity
	issuer     *pki.Issuer
	db         *store.DB
	dir        string
}

func newFloorWork(ctx context.Context, cfg FloorConfig) (*floorWork, error) {
	p := cfg.Lab
	now := cfg.Clock.Now()
	id, serial, err := cfg.Identities.Next()
	if err != nil {
		return nil, err
	}
	w := &floorWork{
		clk:        cfg.Clock,
		idevidRoot: []*x509.Certificate{p.IDevIDCA},
		domainRoot: []*x509.Certificate{p.DomainCA},
		masaRoots:  p.MASAAnchors[len(p.MASAAnchors)-1:],
	}
	// The registrar's TLS: the project's settings, the RA certificate, the
	// IDevID verified against the manufacturer's root in the handshake.
	roots := x509.NewCertPool()
	roots.AddCert(p.IDevIDCA)
	w.serverTLS = web.ServerTLSConfig()
	w.serverTLS.Certificates = []tls.Certificate{p.Registrar}
	w.serverTLS.ClientAuth = tls.RequireAndVerifyClientCert
	w.serverTLS.ClientCAs = roots
	w.serverTLS.Time = cfg.Clock.Now
	w.clientTLS = &tls.Config{
		Certificates:       []tls.Certificate{id},
		InsecureSkipVerify: true, //nolint:gosec // the pledge's provisional TLS (RFC 8995 §5.1); only the server half is measured
		MinVersion:         tls.VersionTLS12,
	}
	w.raKey, _ = p.Registrar.PrivateKey.(crypto.Signer)
	w.masaKey, _ = p.MASASigning.PrivateKey.(crypto.Signer)
	if w.raKey == nil || w.masaKey == nil || len(p.MASAAnchors) == 0 {
		return nil, errors.New("lab keys are not signing keys")
	}
	w.raLeaf = p.Registrar.Leaf
	w.raChain = []*x509.Certificate{p.DomainCA}
	w.masaLeaf, w.masaChain = p.MASAAnchors[0], p.MASAAnchors[1:]

	pvr := &voucher.Request{
		Fields: voucher.Fields{
			CreatedOn:    now.UTC().Truncate(time.Second),
			Nonce:        []byte("0123456789abcdef"),
			Assertion:    voucher.AssertionProximity,
			SerialNumber: serial,
		},
		ProximityRegistrarCert: p.Registrar.Leaf.Raw,
	}
	if w.payload, err = pvr.MarshalJSON(); err != nil {
		return nil, err
	}
	idKey, _ := id.PrivateKey.(crypto.Signer)
	if w.pvr, err = voucher.SignCMS(w.payload, idKey, id.Leaf, nil, voucher.CMSOptions{}); err != nil {
		return nil, err
	}
	key, err := est.GenerateKey(est.KeyType{Algorithm: est.OIDPublicKeyEC, Curve: est.OIDCurveP256})
	if err != nil {
		return nil, err
	}
	csr, err := est.CreateCSR(est.CSRRequest{RawSubject: id.Leaf.RawSubject}, key)
	if err != nil {
		return nil, err
	}
	w.csr = csr.Raw
	if w.device, err = pki.ParseIDevID(id.Leaf, pki.IDevIDOptions{}); err != nil {
		return nil, err
	}
	linter, err := lint.NewMode(lint.ModeFast, nil)
	if err != nil {
		return nil, err
	}
	ca, err := pki.LoadCA([]*x509.Certificate{p.DomainCA}, p.DomainCAKey)
	if err != nil {
		return nil, err
	}
	deps := pki.IssuerDeps{Clock: cfg.Clock, CA: ca}
	if linter != nil {
		deps.Linter = linter
	}
	if w.issuer, err = pki.NewIssuer(pki.IssuerConfig{}.WithDefaults(), deps); err != nil {
		return nil, err
	}
	if w.dir, err = os.MkdirTemp("", "gatehouse-floor-"); err != nil {
		return nil, err
	}
	if w.db, err = store.Open(filepath.Join(w.dir, "floor.db"), store.Options{Clock: cfg.Clock}); err != nil {
		_ = os.RemoveAll(w.dir)
		return nil, err
	}
	// One unit up front: every step works with these fixtures.
	if _, err := w.unit(ctx, 0); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

func (w *floorWork) close() {
	_ = w.db.Close()
	_ = os.RemoveAll(w.dir)
}

// unit runs one onboarding's server work and returns the CPU time the
// client half of its handshake spent.
func (w *floorWork) unit(ctx context.Context, i int64) (time.Duration, error) {
	clientCPU, err := w.handshake(ctx)
	if err != nil {
		return 0, fmt.Errorf("tls: %w", err)
	}
	now := w.clk.Now()
	verify := func(der []byte, anchors []*x509.Certificate) error {
		_, _, err := voucher.VerifyCMS(der, voucher.VerifyOptions{Anchors: anchors, Time: now})
		return err
	}
	// Registrar: the pledge voucher-request; sign the registrar's.
	if err := verify(w.pvr, w.idevidRoot); err != nil {
		return 0, fmt.Errorf("verify pvr: %w", err)
	}
	rvr, err := voucher.SignCMS(w.payload, w.raKey, w.raLeaf, w.raChain, voucher.CMSOptions{})
	if err != nil {
		return 0, fmt.Errorf("sign rvr: %w", err)
	}
	// MASA: the registrar's request and the pledge's inside it; sign.
	if err := verify(rvr, w.domainRoot); err != nil {
		return 0, fmt.Errorf("verify rvr: %w", err)
	}
	if err := verify(w.pvr, w.idevidRoot); err != nil {
		return 0, fmt.Errorf("verify inner pvr: %w", err)
	}
	v, err := voucher.SignCMS(w.payload, w.masaKey, w.masaLeaf, w.masaChain, voucher.CMSOptions{})
	if err != nil {
		return 0, fmt.Errorf("sign voucher: %w", err)
	}
	// Registrar: the voucher; then EST.
	if err := verify(v, w.masaRoots); err != nil {
		return 0, fmt.Errorf("verify voucher: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(w.csr)
	if err != nil {
		return 0, fmt.Errorf("csr: %w", err)
	}
	if err := pki.CheckCSR(csr); err != nil {
		return 0, fmt.Errorf("csr: %w", err)
	}
	prep, err := w.issuer.Prepare(pki.IssueRequest{PublicKey: csr.PublicKey, Device: w.device})
	if err != nil {
		return 0, fmt.Errorf("issue: %w", err)
	}
	if _, err := w.issuer.Sign(ctx, prep); err != nil {
		return 0, fmt.Errorf("issue: %w", err)
	}
	dev := store.DeviceKey{Issuer: "floor", Serial: "F-" + strconv.FormatInt(i, 10)}
	err = w.db.PutVoucher(ctx, store.Voucher{
		Device:      dev,
		Nonce:       dev.Serial,
		MediaType:   "application/voucher-cms+json",
		Signed:      v,
		RequestHash: sha256.Sum256(w.pvr),
		NewDevice:   &store.Device{Status: store.DeviceNew},
	})
	if err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	return clientCPU, nil
}

// handshake runs one TLS handshake over an in-memory pipe: the server half
// here, the client half on a goroutine locked to its thread, whose CPU time
// is returned.
func (w *floorWork) handshake(ctx context.Context) (time.Duration, error) {
	cc, sc := net.Pipe()
	defer cc.Close()
	defer sc.Close()
	type result struct {
		cpu time.Duration
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		start, err := threadCPU()
		if err != nil {
			done <- result{err: err}
			return
		}
		c := tls.Client(cc, w.clientTLS)
		herr := c.HandshakeContext(ctx)
		end, err := threadCPU()
		if herr != nil {
			err = herr
		}
		_ = cc.Close()
		done <- result{cpu: end - start, err: err}
	}()
	s := tls.Server(sc, w.serverTLS)
	// With a client certificate requested, the server's handshake ends
	// with the client's Finished read and checked.
	serr := s.HandshakeContext(ctx)
	_ = sc.Close()
	r := <-done
	if serr != nil {
		return 0, serr
	}
	return r.cpu, r.err
}
