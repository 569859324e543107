package coap

import (
	"bytes"
	"container/list"
	"crypto/subtle"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// front owns the UDP socket and hands pion one net.PacketConn per peer
// (pion's own listener would create a connection for any handshake
// record). It decides what may create state and what may take a session
// slot:
//
//   - a datagram from an unknown address creates a peer only if it is a
//     well-formed cookieless ClientHello (parseClientHello); anything else,
//     including a ClientHello carrying a cookie for which nothing is held,
//     is dropped without state;
//   - a peer is pending until it echoes the cookie of the
//     HelloVerifyRequest pion sent it (RFC 6347 §4.2.1: the address is
//     then proven). Until then only ClientHellos pass, a wrong cookie is
//     dropped, and the peer holds no session slot. Pending peers are
//     capped (maxPending); the oldest is dropped to admit a new one;
//   - echoing the cookie takes a session slot, or, with MaxSessions open,
//     the peer is dropped (new handshakes refused, reliability F09).
//
// A pending peer still costs pion's per-connection state. pion v3.1.15
// cannot take over a ClientHello whose cookie it did not issue itself
// (docs/flows/coap.md), so the HelloVerifyRequest is pion's.
type front struct {
	pc         *net.UDPConn
	srv        *Server
	maxPending int
	accept     chan *peer
	done       chan struct{}

	mu      sync.Mutex
	peers   map[netip.AddrPort]*peer
	pending list.List // of *peer, oldest first
	active  int
}

// maxPeerQueue bounds what one peer may have queued for pion to read
// (reliability F10: 64 KiB per peer).
const maxPeerQueue = 64 << 10

// maxDatagram is pion's read buffer (inboundBufferSize): a larger datagram
// would be truncated there, so it is dropped here.
const maxDatagram = 8192

func newFront(pc *net.UDPConn, srv *Server) *front {
	f := &front{
		pc:         pc,
		srv:        srv,
		maxPending: max(256, srv.cfg.MaxSessions),
		accept:     make(chan *peer, 64),
		done:       make(chan struct{}),
		peers:      map[netip.AddrPort]*peer{},
	}
	go f.serve()
	return f
}

// Accept returns the next new peer (dtlsnet.PacketListener).
func (f *front) Accept() (net.PacketConn, net.Addr, error) {
	select {
	case p := <-f.accept:
		return p, p.raddr, nil
	case <-f.done:
		return nil, nil, net.ErrClosed
	}
}

// Close closes the socket; peers already accepted see it on their next
// write.
func (f *front) Close() error {
	f.mu.Lock()
	select {
	case <-f.done:
	default:
		close(f.done)
	}
	f.mu.Unlock()
	return f.pc.Close()
}

// Addr is the socket's address.
func (f *front) Addr() net.Addr { return f.pc.LocalAddr() }

func (f *front) serve() {
	buf := make([]byte, 64<<10)
	for {
		n, ap, err := f.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				_ = f.Close()
				return
			}
			continue
		}
		if n > maxDatagram {
			f.srv.metrics.hellos.WithLabelValues("dropped").Inc()
			continue
		}
		f.handle(buf[:n], netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
}

// handle routes one datagram; d is only valid during the call.
func (f *front) handle(d []byte, ap netip.AddrPort) {
	f.mu.Lock()
	p := f.peers[ap]
	if p == nil {
		f.mu.Unlock()
		f.admit(d, ap, nil)
		return
	}
	if p.verified {
		f.routeVerified(p, d, ap)
		return
	}
	h, ok := parseClientHello(d)
	switch {
	case !ok:
		f.mu.Unlock()
		f.srv.metrics.hellos.WithLabelValues("dropped").Inc()
		return
	case len(h.cookie) == 0 && !bytes.Equal(h.random, p.random[:]):
		// A new handshake from the same address (a client that
		// restarted): pion would not answer it, so start afresh.
		f.mu.Unlock()
		_ = p.Close()
		f.admit(d, ap, nil)
		return
	case len(h.cookie) == 0:
		// A retransmitted first ClientHello: pion answers again.
	case p.cookie == nil || subtle.ConstantTimeCompare(h.cookie, p.cookie) != 1:
		f.mu.Unlock()
		f.srv.metrics.hellos.WithLabelValues("bad_cookie").Inc()
		return
	case f.active >= f.srv.cfg.MaxSessions:
		f.mu.Unlock()
		f.srv.metrics.refused.Inc()
		_ = p.Close()
		return
	default:
		f.active++
		p.verified = true
		f.pending.Remove(p.elem)
		p.elem = nil
		f.srv.metrics.sessions.Inc()
		f.srv.metrics.hellos.WithLabelValues("verified").Inc()
	}
	f.mu.Unlock()
	p.enqueue(d)
}

// routeVerified routes a datagram from a peer past its cookie; f.mu is
// held and is released. RFC 6347 §4.2.8: a new cookieless ClientHello on
// the address of a session (a client that restarted on a fixed port)
// starts a successor peer with its own cookie exchange, and the session
// gives way only when the successor's cookie comes back, so a spoofed
// ClientHello cannot end a session.
func (f *front) routeVerified(p *peer, d []byte, ap netip.AddrPort) {
	h, ok := parseClientHello(d)
	if ok {
		s := p.successor
		switch {
		case len(h.cookie) == 0 && bytes.Equal(h.random, p.random[:]):
			// A late copy of this session's first ClientHello.
			f.mu.Unlock()
			f.srv.metrics.hellos.WithLabelValues("dropped").Inc()
			return
		case len(h.cookie) == 0 && s != nil && bytes.Equal(h.random, s.random[:]):
			f.mu.Unlock()
			s.enqueue(d)
			return
		case len(h.cookie) == 0:
			f.mu.Unlock()
			if s != nil {
				_ = s.Close()
			}
			f.admit(d, ap, p)
			return
		case s != nil && s.cookie != nil && subtle.ConstantTimeCompare(h.cookie, s.cookie) == 1:
			p.successor, s.owner = nil, nil
			f.peers[ap] = s
			f.mu.Unlock()
			_ = p.Close()
			f.handle(d, ap)
			return
		}
	}
	f.mu.Unlock()
	p.enqueue(d)
}

// admit creates a pending peer for a cookieless ClientHello from an
// unknown address, or from the address of owner, a session (as its
// successor), dropping the oldest pending peer when maxPending are.
func (f *front) admit(d []byte, ap netip.AddrPort, owner *peer) {
	h, ok := parseClientHello(d)
	if !ok || len(h.cookie) != 0 {
		f.srv.metrics.hellos.WithLabelValues("dropped").Inc()
		return
	}
	p := &peer{f: f, addr: ap, raddr: net.UDPAddrFromAddrPort(ap), wake: make(chan struct{}, 1)}
	copy(p.random[:], h.random)
	var evict *peer
	f.mu.Lock()
	select {
	case <-f.done:
		f.mu.Unlock()
		return
	default:
	}
	if f.pending.Len() >= f.maxPending {
		evict, _ = f.pending.Front().Value.(*peer)
	}
	select {
	case f.accept <- p:
	default:
		f.mu.Unlock()
		f.srv.metrics.hellos.WithLabelValues("dropped").Inc()
		return
	}
	switch cur := f.peers[ap]; {
	case owner != nil && cur == owner:
		owner.successor, p.owner = p, owner
	case cur == nil:
		f.peers[ap] = p
	default:
		// The address changed hands meanwhile; pion drops p when its
		// handshake times out, and nothing routes to it.
	}
	p.elem = f.pending.PushBack(p)
	f.mu.Unlock()
	f.srv.metrics.hellos.WithLabelValues("pending").Inc()
	if evict != nil {
		f.srv.metrics.hellos.WithLabelValues("evicted").Inc()
		_ = evict.Close()
	}
	p.enqueue(d)
}

// release forgets p, and frees its session slot if it held one.
func (f *front) release(p *peer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.peers[p.addr] == p {
		if s := p.successor; s != nil {
			f.peers[p.addr], s.owner, p.successor = s, nil, nil
		} else {
			delete(f.peers, p.addr)
		}
	}
	if o := p.owner; o != nil {
		if o.successor == p {
			o.successor = nil
		}
		p.owner = nil
	}
	if p.verified {
		p.verified = false
		f.active--
		f.srv.metrics.sessions.Dec()
	}
	if p.elem != nil {
		f.pending.Remove(p.elem)
		p.elem = nil
	}
}

// peer is one remote address as pion sees it: a net.PacketConn reading
// the datagrams the front queued for it and writing to the socket.
type peer struct {
	f     *front
	addr  netip.AddrPort
	raddr *net.UDPAddr
	wake  chan struct{} // one token: something changed
	// random is the first ClientHello's, to tell its retransmissions
	// from a new handshake.
	random [32]byte

	// Guarded by f.mu.
	verified bool
	cookie   []byte
	elem     *list.Element
	// successor is a pending peer for a new handshake from this
	// session's address; owner is the session a successor would replace.
	successor, owner *peer

	mu       sync.Mutex
	queue    [][]byte
	queued   int
	deadline time.Time
	closed   bool
}

func (p *peer) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// enqueue copies d onto p's queue, dropping it when the queue is full.
func (p *peer) enqueue(d []byte) {
	p.mu.Lock()
	if p.closed || p.queued+len(d) > maxPeerQueue {
		p.mu.Unlock()
		return
	}
	p.queue = append(p.queue, append([]byte(nil), d...))
	p.queued += len(d)
	p.mu.Unlock()
	p.signal()
}

// ReadFrom returns the next queued datagram.
func (p *peer) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		p.mu.Lock()
		if len(p.queue) > 0 {
			d := p.queue[0]
			p.queue[0] = nil
			p.queue = p.queue[1:]
			p.queued -= len(d)
			p.mu.Unlock()
			return copy(b, d), p.raddr, nil
		}
		closed, deadline := p.closed, p.deadline
		p.mu.Unlock()
		if closed {
			return 0, nil, net.ErrClosed
		}
		var expired <-chan time.Time
		var timer *time.Timer
		if !deadline.IsZero() {
			// A net.Conn deadline is wall-clock time.
			wait := time.Until(deadline) //nolint:forbidigo // net.PacketConn deadlines are wall-clock, set by pion
			if wait <= 0 {
				return 0, nil, os.ErrDeadlineExceeded
			}
			timer = time.NewTimer(wait)
			expired = timer.C
		}
		select {
		case <-p.wake:
		case <-expired:
			return 0, nil, os.ErrDeadlineExceeded
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// WriteTo sends b to the peer, noting the cookie of the
// HelloVerifyRequest pion sends a pending peer.
func (p *peer) WriteTo(b []byte, _ net.Addr) (int, error) {
	if c, ok := parseHelloVerifyRequest(b); ok {
		p.f.mu.Lock()
		if !p.verified {
			p.cookie = append(p.cookie[:0], c...)
		}
		p.f.mu.Unlock()
	}
	return p.f.pc.WriteToUDPAddrPort(b, p.addr)
}

// Close forgets the peer; pion's connection sees net.ErrClosed.
func (p *peer) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.queue, p.queued = nil, 0
	p.mu.Unlock()
	p.signal()
	p.f.release(p)
	return nil
}

// LocalAddr is the socket's address.
func (p *peer) LocalAddr() net.Addr { return p.f.pc.LocalAddr() }

// SetDeadline sets the read deadline; writes do not block.
func (p *peer) SetDeadline(t time.Time) error { return p.SetReadDeadline(t) }

// SetReadDeadline bounds ReadFrom.
func (p *peer) SetReadDeadline(t time.Time) error {
	p.mu.Lock()
	p.deadline = t
	p.mu.Unlock()
	p.signal()
	return nil
}

// SetWriteDeadline is a no-op: a UDP write does not wait for the peer.
func (p *peer) SetWriteDeadline(time.Time) error { return nil }
