package web

import (
	"net"
	"net/netip"
	"sync"
)

// DefaultMaxConnsPerIP is the per-source-address connection cap of
// LimitListener when none is configured (reliability G05). It is generous:
// a join proxy (RFC 8995 §4) funnels many pledges through one address.
const DefaultMaxConnsPerIP = 256

// LimitOptions configure LimitListener.
type LimitOptions struct {
	// MaxConnsPerIP caps the open connections from one source IP address
	// (IPv4-mapped IPv6 counts as IPv4). Zero means DefaultMaxConnsPerIP;
	// negative means no cap.
	MaxConnsPerIP int
	// OnRefused, when set, is called once for every connection closed at
	// accept because its address is at the cap (for a metrics counter).
	OnRefused func()
}

// LimitListener wraps ln so that a source address holding MaxConnsPerIP
// open connections has any further connection closed as soon as it is
// accepted, before a TLS handshake or a byte is read (reliability G05).
// A connection counts until it is closed; idle keep-alive connections are
// closed by the server's IdleTimeout (NewServer), which frees their slot.
func LimitListener(ln net.Listener, o LimitOptions) net.Listener {
	if o.MaxConnsPerIP == 0 {
		o.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if o.MaxConnsPerIP < 0 {
		return ln
	}
	return &limitListener{Listener: ln, max: o.MaxConnsPerIP, refused: o.OnRefused, open: map[netip.Addr]int{}}
}

type limitListener struct {
	net.Listener
	max     int
	refused func()

	mu   sync.Mutex
	open map[netip.Addr]int
}

// Accept returns the next connection whose address is under the cap,
// closing the others.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip, ok := sourceIP(c.RemoteAddr())
		if !ok {
			// Not an IP transport (a unix socket in tests): no address
			// to count by.
			return c, nil
		}
		if l.acquire(ip) {
			return &limitConn{Conn: c, release: sync.OnceFunc(func() { l.release(ip) })}, nil
		}
		_ = c.Close()
		if l.refused != nil {
			l.refused()
		}
	}
}

func (l *limitListener) acquire(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[ip] >= l.max {
		return false
	}
	l.open[ip]++
	return true
}

func (l *limitListener) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[ip]--; l.open[ip] <= 0 {
		delete(l.open, ip)
	}
}

func sourceIP(a net.Addr) (netip.Addr, bool) {
	var ap netip.AddrPort
	switch t := a.(type) {
	case *net.TCPAddr:
		ap = t.AddrPort()
	default:
		var err error
		if ap, err = netip.ParseAddrPort(a.String()); err != nil {
			return netip.Addr{}, false
		}
	}
	return ap.Addr().Unmap(), ap.Addr().IsValid()
}

// limitConn frees its address's slot when closed, once.
type limitConn struct {
	net.Conn
	release func()
}

// Close frees the slot, then closes the connection: by the time the peer
// sees the close, a new connection from its address is accepted.
func (c *limitConn) Close() error {
	c.release()
	return c.Conn.Close()
}
