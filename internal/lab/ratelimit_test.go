package lab_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jmhodges/clock"

	"github.com/gatehouse-pki/gatehouse/internal/lab"
)

// TestOpen_NoPerIPLimitOnLoopback: on loopback every client shares one
// address, so the lab's registrar does not apply the per-IP limit (1,000/s,
// burst 2,000 by default) that would otherwise cap its own load tests.
// 2,100 requests from one address while the clock stands still (so no
// bucket refills): none is refused with 429.
func TestOpen_NoPerIPLimitOnLoopback(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake()
	clk.Set(time.Now())
	l, _ := startLab(t, t.TempDir(), clk)
	roots := x509.NewCertPool()
	roots.AddCert(l.PKI.DomainCA)
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 8,
	}}
	t.Cleanup(client.CloseIdleConnections)
	url := "https://" + lab.Dialable(l.HTTPS) + "/.well-known/brski/requestvoucher"
	const n = 2100
	statuses := map[int]int{}
	for range n {
		resp, err := client.Post(url, "application/voucher-cms+json", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		statuses[resp.StatusCode]++
	}
	if statuses[http.StatusTooManyRequests] != 0 {
		t.Fatalf("statuses %v: the per-IP limit applied on loopback", statuses)
	}
	t.Logf("statuses for %d requests without a client certificate: %v", n, statuses)
}
