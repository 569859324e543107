package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// holdRefresh is how often held connections carry a request again, well
// inside the registrar's idle timeout (60 s).
const holdRefresh = 20 * time.Second

// holder keeps n idle keep-alive HTTPS connections open to the registrar,
// as many devices that onboarded and stay connected would: each carried
// one GET /cacerts (anonymous, RFC 7030 §4.1.1) and is then idle in the
// pool, refreshed with another GET before the server's idle timeout.
type holder struct {
	n    int
	u    *url.URL
	tr   *http.Transport
	open atomic.Int64 // connections open now
	stop chan struct{}
	wg   sync.WaitGroup
}

// holdConns opens n connections and keeps them until close.
func holdConns(ctx context.Context, u *url.URL, domainCA *x509.Certificate, n int) (*holder, error) {
	roots := x509.NewCertPool()
	roots.AddCert(domainCA)
	h := &holder{n: n, u: u, stop: make(chan struct{})}
	d := &net.Dialer{Timeout: 10 * time.Second}
	h.tr = &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			h.open.Add(1)
			return &heldConn{Conn: c, h: h}, nil
		},
		MaxIdleConnsPerHost: n,
		IdleConnTimeout:     2 * holdRefresh,
	}
	if err := h.round(ctx); err != nil {
		h.tr.CloseIdleConnections()
		return nil, fmt.Errorf("bench: hold %d connections: %w", n, err)
	}
	h.wg.Go(func() {
		t := time.NewTicker(holdRefresh)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
				_ = h.round(ctx)
			}
		}
	})
	return h, nil
}

// round sends n concurrent GETs, which use (or open) n connections.
func (h *holder) round(ctx context.Context) error {
	hc := &http.Client{Transport: h.tr}
	errs := make([]error, h.n)
	var wg sync.WaitGroup
	for i := range h.n {
		wg.Go(func() {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.u.JoinPath("/.well-known/est/cacerts").String(), nil)
			if err != nil {
				errs[i] = err
				return
			}
			resp, err := hc.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errs[i] = fmt.Errorf("cacerts: %s", resp.Status)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// close drops the held connections.
func (h *holder) close() {
	close(h.stop)
	h.wg.Wait()
	h.tr.CloseIdleConnections()
}

// heldConn counts itself out of holder.open when it closes.
type heldConn struct {
	net.Conn
	h    *holder
	once sync.Once
}

func (c *heldConn) Close() error {
	c.once.Do(func() { c.h.open.Add(-1) })
	return c.Conn.Close()
}
