package bench

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
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

// Next mints a new IDevID and returns it with its serial number.
func (m *Identities) Next() (tls.Certificate, string, error) {
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
