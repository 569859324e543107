package coap

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"hash"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// front owns the UDP socket and hands pion one net.PacketConn per peer
// (pion's own listener would create a connection for any handshake
// record). It runs the cookie exchange of RFC 6347 §4.2.1 itself,
// statelessly, so nothing is kept for an address until it has proven it
// receives what is sent to it (reliability F08):
//
//   - a datagram from an address without a session is looked at only if
//     it is one well-formed ClientHello (parseClientHello); anything else
//     is dropped;
//   - a ClientHello without a cookie, or with one that does not verify, is
//     answered with a HelloVerifyRequest whose cookie is an HMAC of the
//     source address and the hello's parameters under a key of the
//     current cookie period; nothing is kept, and the answer is shorter
//     than the hello (no amplification);
//   - a ClientHello whose cookie verifies (this period's key or the
//     previous one) creates the session's peer, takes a session slot (or,
//     with MaxSessions open, is refused with an alert: reliability F09)
//     and goes to pion, which is told to skip its own cookie round and
//     continues the handshake from message_seq 1, numbering its records
//     after the client's hellos (the patch in third_party/pion-dtls).
//
// A new handshake from the address of a session (RFC 6347 §4.2.8, a
// client restarted on a fixed port) goes through the same stateless
// exchange, and replaces the session only when its cookie verifies, so a
// spoofed ClientHello cannot end a session.
type front struct {
	pc     *net.UDPConn
	srv    *Server
	accept chan *peer
	done   chan struct{}
	// key is the cookie secret; each cookie period's key is an HMAC of
	// the period's number under it.
	key  [32]byte
	macs sync.Pool // of *cookieMAC

	mu sync.Mutex
	// peers are the addresses past the cookie exchange, each holding a
	// session slot.
	peers map[netip.AddrPort]*peer
}

// cookiePeriod is how long a cookie key is current; a cookie verifies
// during its period and the next, so for one to two periods. A client
// echoes its cookie within one round trip.
const cookiePeriod = time.Minute

// cookieLen is the length of a cookie: a truncated HMAC-SHA256.
const cookieLen = 16

// maxPeerQueue bounds what one peer may have queued for pion to read
// (reliability F10: 64 KiB per peer).
const maxPeerQueue = 64 << 10

// maxDatagram is pion's read buffer (inboundBufferSize): a larger datagram
// would be truncated there, so it is dropped here.
const maxDatagram = 8192

func newFront(pc *net.UDPConn, srv *Server) (*front, error) {
	f := &front{
		pc:     pc,
		srv:    srv,
		accept: make(chan *peer, 64),
		done:   make(chan struct{}),
		peers:  map[netip.AddrPort]*peer{},
	}
	if _, err := rand.Read(f.key[:]); err != nil {
		return nil, err
	}
	f.macs.New = func() any { return &cookieMAC{} }
	go f.serve()
	return f, nil
}

// cookieMAC holds the keyed HMACs of two cookie periods (by parity), so
// checking a cookie against this period and the last derives no key.
type cookieMAC struct {
	period [2]int64
	mac    [2]hash.Hash
	sum    [sha256.Size]byte
}

// cookie returns the cookie for a hello from ap in the given period; the
// result is valid until the next call with c.
func (f *front) cookie(c *cookieMAC, period int64, ap netip.AddrPort, h clientHello) []byte {
	i := period & 1
	if c.mac[i] == nil || c.period[i] != period {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(period)) //nolint:gosec // a period number, any bits will do
		pk := hmac.New(sha256.New, f.key[:])
		pk.Write(n[:])
		c.mac[i], c.period[i] = hmac.New(sha256.New, pk.Sum(nil)), period
	}
	m := c.mac[i]
	m.Reset()
	var addr [18]byte
	ip := ap.Addr().As16()
	copy(addr[:], ip[:])
	binary.BigEndian.PutUint16(addr[16:], ap.Port())
	m.Write(addr[:])
	m.Write(h.head)
	m.Write(h.tail)
	return m.Sum(c.sum[:0])[:cookieLen]
}

// checkCookie writes to cur the cookie of this cookie period for a hello
// like h from ap (what a HelloVerifyRequest carries), and reports whether
// h carries that cookie or the previous period's. The clock is read once;
// a hello without a cookie costs one HMAC, a forged cookie two.
func (f *front) checkCookie(cur *[cookieLen]byte, ap netip.AddrPort, h clientHello) bool {
	period := f.srv.clk.Now().UnixNano() / int64(cookiePeriod)
	c, _ := f.macs.Get().(*cookieMAC)
	defer f.macs.Put(c)
	copy(cur[:], f.cookie(c, period, ap, h))
	if len(h.cookie) != cookieLen {
		return false
	}
	if subtle.ConstantTimeCompare(cur[:], h.cookie) == 1 {
		return true
	}
	return subtle.ConstantTimeCompare(f.cookie(c, period-1, ap, h), h.cookie) == 1
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
	f.mu.Unlock()
	if p == nil {
		f.hello(d, ap, nil)
		return
	}
	h, ok := parseClientHello(d)
	switch {
	case !ok:
		p.enqueue(d)
	case bytes.Equal(h.random, p.random[:]):
		// This session's hello again: a retransmission for pion to
		// answer if it echoes the cookie, a late copy of the first,
		// cookieless one otherwise.
		if len(h.cookie) != 0 {
			p.enqueue(d)
		}
	default:
		f.hello(d, ap, p)
	}
}

// hello answers a datagram from an address without a session, or a new
// handshake from the address of old: a ClientHello without a valid cookie
// gets a HelloVerifyRequest and leaves nothing behind; one with a valid
// cookie becomes a peer in a session slot, replacing old.
func (f *front) hello(d []byte, ap netip.AddrPort, old *peer) {
	h, ok := parseClientHello(d)
	if !ok {
		f.srv.metrics.hellos.WithLabelValues("dropped").Inc()
		return
	}
	var cookie [cookieLen]byte
	if !f.checkCookie(&cookie, ap, h) {
		// RFC 6347 §4.2.1: a hello with a cookie that does not verify
		// (an old period's, or forged) is treated as one without.
		verdict := "challenged"
		if len(h.cookie) != 0 {
			verdict = "bad_cookie"
		}
		f.srv.metrics.hellos.WithLabelValues(verdict).Inc()
		var buf [recordHeaderLen + handshakeHeaderLen + 3 + cookieLen]byte
		_, _ = f.pc.WriteToUDPAddrPort(helloVerifyRequest(buf[:0], h.recordSeq, cookie[:]), ap)
		return
	}
	if old != nil {
		_ = old.Close()
	}
	p := &peer{f: f, addr: ap, raddr: net.UDPAddrFromAddrPort(ap), wake: make(chan struct{}, 1)}
	copy(p.random[:], h.random)
	f.mu.Lock()
	select {
	case <-f.done:
		f.mu.Unlock()
		return
	default:
	}
	// Only this goroutine (serve) adds peers, so the address has none
	// here; every peer in f.peers holds a session slot.
	if len(f.peers) >= f.srv.cfg.MaxSessions {
		f.mu.Unlock()
		f.srv.metrics.refused.Inc()
		// The address is proven, so say no at once rather than let the
		// client time out: a fatal internal_error alert, in the clear
		// as alerts before the handshake are (RFC 5246 §7.2.2), and
		// smaller than the hello.
		var buf [recordHeaderLen + 2]byte
		_, _ = f.pc.WriteToUDPAddrPort(fatalAlert(buf[:0], h.recordSeq, alertInternalError), ap)
		return
	}
	select {
	case f.accept <- p:
	default:
		f.mu.Unlock()
		f.srv.metrics.hellos.WithLabelValues("dropped").Inc()
		return
	}
	f.peers[ap] = p
	f.mu.Unlock()
	f.srv.metrics.sessions.Inc()
	f.srv.metrics.hellos.WithLabelValues("verified").Inc()
	p.enqueue(d)
}

// release forgets p and frees its session slot.
func (f *front) release(p *peer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.peers[p.addr] == p {
		delete(f.peers, p.addr)
		f.srv.metrics.sessions.Dec()
	}
}

// peer is one remote address past the cookie exchange as pion sees it: a
// net.PacketConn reading the datagrams the front queued for it and
// writing to the socket.
type peer struct {
	f     *front
	addr  netip.AddrPort
	raddr *net.UDPAddr
	wake  chan struct{} // one token: something changed
	// random is the ClientHello's, to tell its retransmissions from a new
	// handshake.
	random [32]byte

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

// WriteTo sends b to the peer.
func (p *peer) WriteTo(b []byte, _ net.Addr) (int, error) {
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
