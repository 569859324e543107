package bench

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/jmhodges/clock"

	"github.com/gatehouse-pki/gatehouse/internal/lab"
	"github.com/gatehouse-pki/gatehouse/pki"
)

var errIdentity = errors.New("bench: mint IDevID")

// Identities mints distinct pledge IDevIDs from a lab manufacturer: a new
// key and certificate per call, with serial numbers unique to this
// Identities (a random run prefix and a counter), so runs against one
// registrar never collide.
type Identities struct {
	// MASAAnchors are the lab's voucher anchors (manufacturer/masa.pem).
	MASAAnchors []*x509.Certificate
	// DomainCA is the lab's domain CA certificate.
	DomainCA *x509.Certificate

	ca            *pki.CA
	masaAuthority string
	prefix        string
	clk           clock.Clock
	n             atomic.Int64

	mu       sync.Mutex
	prepared []preparedID
}

type preparedID struct {
	cert   tls.Certificate
	serial string
}

// MaxPrepared caps Prepare: an identity is a few KiB.
const MaxPrepared = 20_000

// Prepare mints n identities (at most MaxPrepared) on all cores before a
// measurement, so that Next hands them out instead of minting while it
// is timed: a device has its IDevID before it onboards, so minting is
// not part of the work measured.
func (m *Identities) Prepare(ctx context.Context, n int) error {
	n = min(n, MaxPrepared)
	out := make([]preparedID, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, runtime.GOMAXPROCS(0))
	for w := range errs {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				cert, serial, err := m.mint()
				if err != nil {
					errs[w] = err
					return
				}
				out[i] = preparedID{cert, serial}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		return err
	}
	m.mu.Lock()
	m.prepared = append(m.prepared, out...)
	m.mu.Unlock()
	return nil
}

// LoadIdentities loads the lab under dir (lab.Load) and its manufacturer's
// IDevID CA key.
func LoadIdentities(ctx context.Context, dir string, clk clock.Clock) (*Identities, error) {
	p, err := lab.Load(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	key, err := pki.LoadSigner(ctx, p.Paths.IDevIDCAKey, nil)
	if err != nil {
		return nil, fmt.Errorf("bench: IDevID CA key: %w", err)
	}
	ca, err := pki.LoadCA([]*x509.Certificate{p.IDevIDCA}, key)
	if err != nil {
		return nil, fmt.Errorf("bench: IDevID CA: %w", err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &Identities{
		MASAAnchors:   p.MASAAnchors,
		DomainCA:      p.DomainCA,
		ca:            ca,
		masaAuthority: p.MASAAuthority,
		prefix:        "BENCH-" + hex.EncodeToString(b[:]) + "-",
		clk:           clk,
	}, nil
}

// Next returns a prepared IDevID, or mints a new one, with its serial
// number.
func (m *Identities) Next() (tls.Certificate, string, error) {
	m.mu.Lock()
	if k := len(m.prepared); k > 0 {
		p := m.prepared[k-1]
		m.prepared[k-1] = preparedID{}
		m.prepared = m.prepared[:k-1]
		m.mu.Unlock()
		return p.cert, p.serial, nil
	}
	m.mu.Unlock()
	return m.mint()
}

// mint makes a new IDevID with the next serial number.
func (m *Identities) mint() (tls.Certificate, string, error) {
	serial := fmt.Sprintf("%s%07d", m.prefix, m.n.Add(1))
	key, err := pki.GenerateKey()
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("%w: %w", errIdentity, err)
	}
	cert, err := lab.NewIDevID(m.clk, m.ca, serial, m.masaAuthority, key.Public())
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("%w: %w", errIdentity, err)
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}, serial, nil
}
