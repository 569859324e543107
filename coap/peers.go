package coap

import (
	"crypto/sha256"
	"crypto/x509"
	"sync"
	"time"

	"github.com/gatehouse-pki/gatehouse/registrar"
)

// handshakePeers carries the registrar's classification of a client chain
// from the DTLS handshake's verification callback, which does not know its
// connection, to the session's start (onNewConn), which does, so a chain
// is verified once per session. Entries are keyed by the chain's bytes,
// taken once, trusted for one handshake timeout, and bounded in number.
type handshakePeers struct {
	mu  sync.Mutex
	max int
	m   map[[sha256.Size]byte]handshakePeer
}

type handshakePeer struct {
	p  *registrar.Peer
	at time.Time
}

func newHandshakePeers(max int) *handshakePeers {
	return &handshakePeers{max: max, m: map[[sha256.Size]byte]handshakePeer{}}
}

func chainKey(raw [][]byte) [sha256.Size]byte {
	h := sha256.New()
	for _, r := range raw {
		h.Write(r)
		h.Write([]byte{0}) // no two chains hash alike by moving a boundary
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

func rawChain(certs []*x509.Certificate) [][]byte {
	raw := make([][]byte, len(certs))
	for i, c := range certs {
		raw[i] = c.Raw
	}
	return raw
}

// put records p for raw. When max entries are held (handshakes that
// verified and then failed leave theirs behind), all are dropped: a
// session whose entry is gone verifies its chain again.
func (h *handshakePeers) put(raw [][]byte, p *registrar.Peer, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.m) >= h.max {
		clear(h.m)
	}
	h.m[chainKey(raw)] = handshakePeer{p: p, at: now}
}

// take returns and forgets the classification of raw made within ttl of
// now, or nil.
func (h *handshakePeers) take(raw [][]byte, now time.Time, ttl time.Duration) *registrar.Peer {
	k := chainKey(raw)
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.m[k]
	delete(h.m, k)
	if !ok || now.Sub(e.at) > ttl || e.at.After(now) {
		return nil
	}
	return e.p
}
