package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmhodges/clock"
	"golang.org/x/sync/errgroup"

	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/internal/bench"
	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pledge"
)

// estPeerParallelism multiplies GOMAXPROCS into the clients in flight.
const estPeerParallelism = 16

// estPeerPledges is how many pledges (minted from the lab manufacturer,
// each after its voucher) enrol: enough that none exceeds the registrar's
// per-IDevID rate limit (10/s, burst 40) at the rates reached here.
const estPeerPledges = 256

// BenchmarkSimpleEnroll_VsESTServer is the side-by-side of issue #7: the
// same EST client (one in this file: base64 PKCS#10 with
// Content-Transfer-Encoding, certs-only response decoded and checked)
// posts simpleenroll to a `gatehouse lab` process and to the globalsign
// estserver v1.0.6 (tools/estserver), with a new TLS connection per request
// and with keep-alive, the two servers alternating. Both run as their own
// processes on loopback with the same CA key (the lab's domain CA), the
// same TLS certificate (the lab registrar's) and the same client CA (the
// lab's IDevID CA); clients present IDevIDs minted from the lab
// manufacturer, each request the next one. Gatehouse persists every
// certificate durably before answering; estserver's mock CA keeps nothing.
// The ratio gatehouse/estserver is reported on the estserver line of each
// pair (gatehouse-ratio) and logged with -v. A lab on loopback applies no
// per-IP rate limit; the per-certificate one is why there are 256 client
// identities. Under -benchtime=1x (make bench-smoke) it is skipped:
// building and starting two servers is not a smoke test.
func BenchmarkSimpleEnroll_VsESTServer(b *testing.B) {
	if f := flag.Lookup("test.benchtime"); f != nil && f.Value.String() == "1x" {
		b.Skip("side-by-side with estserver: skipped under -benchtime=1x (run make bench)")
	}
	gh := startInteropLab(b)
	clients := estPeerClients(b, gh)
	estURL := startESTServer(b, gh)
	roots := x509.NewCertPool()
	ca, err := readCertificates(gh.paths.DomainCA)
	if err != nil {
		b.Fatal(err)
	}
	roots.AddCert(ca[0])

	rates := map[string]float64{}
	for _, conn := range []string{"new-conn", "keepalive"} {
		for _, srv := range []struct{ name, base string }{{"gatehouse", "https://" + gh.host}, {"estserver", estURL}} {
			b.Run(srv.name+"/"+conn, func(b *testing.B) {
				// One HTTP client per identity (its TLS client certificate).
				hcs := make([]*http.Client, len(clients))
				for i, c := range clients {
					tr := &http.Transport{
						TLSClientConfig:   &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{c.idevid}},
						DisableKeepAlives: conn == "new-conn",
					}
					defer tr.CloseIdleConnections()
					hcs[i] = &http.Client{Transport: tr}
				}
				var next, n atomic.Int64
				b.SetParallelism(estPeerParallelism)
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						i := int(next.Add(1)) % len(clients)
						if err := simpleEnroll(b.Context(), hcs[i], srv.base, clients[i]); err != nil {
							b.Error(err)
							return
						}
						n.Add(1)
					}
				})
				rate := float64(n.Load()) / b.Elapsed().Seconds()
				b.ReportMetric(rate, "enrolls/s")
				rates[srv.name+"/"+conn] = rate
				if g := rates["gatehouse/"+conn]; srv.name == "estserver" && rate > 0 {
					// The pair's ratio, on the second line of the pair.
					b.ReportMetric(g/rate, "gatehouse-ratio")
				}
			})
		}
		if g, e := rates["gatehouse/"+conn], rates["estserver/"+conn]; e > 0 {
			b.Logf("simpleenroll %s: gatehouse %.1f/s, estserver %.1f/s, ratio %.2f", conn, g, e, g/e)
		}
	}
}

// estPeerClient is one client identity.
type estPeerClient struct {
	idevid tls.Certificate
	serial string
}

// estPeerClients mints estPeerPledges IDevIDs from the lab manufacturer
// and runs the voucher phase for each (which authorizes simpleenroll on the
// lab), 32 at a time.
func estPeerClients(b *testing.B, gh *interopLab) []estPeerClient {
	b.Helper()
	clk := clock.New()
	ids, err := bench.LoadIdentities(b.Context(), gh.data, clk)
	if err != nil {
		b.Fatal(err)
	}
	u, err := url.Parse(gh.registrar)
	if err != nil {
		b.Fatal(err)
	}
	out := make([]estPeerClient, estPeerPledges)
	var g errgroup.Group
	g.SetLimit(32)
	for i := range out {
		g.Go(func() error {
			idevid, serial, err := ids.Next()
			if err != nil {
				return err
			}
			c, err := pledge.New(pledge.Config{Registrar: u, IDevID: idevid, MASAAnchors: ids.MASAAnchors, Clock: clk, MaxWait: time.Minute})
			if err != nil {
				return err
			}
			defer c.Close()
			if _, err := c.RequestVoucher(b.Context()); err != nil {
				return fmt.Errorf("voucher for %s: %w", serial, err)
			}
			out[i] = estPeerClient{idevid: idevid, serial: serial}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	return out
}

// simpleEnroll posts a CSR for a new key (subject: the IDevID's
// serialNumber, as a BRSKI pledge asks; a new key, so that every request
// is an issuance, not an idempotent retry) and checks that the answer is a
// certificate for that key.
func simpleEnroll(ctx context.Context, hc *http.Client, base string, c estPeerClient) error {
	key, err := pki.GenerateKey()
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{SerialNumber: c.serial}}, key)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/.well-known/est/simpleenroll", bytes.NewReader(est.EncodeBase64(csr)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/pkcs10")
	req.Header.Set("Content-Transfer-Encoding", "base64") // estserver requires it; Gatehouse accepts it
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %.200s", base, resp.Status, body)
	}
	der, err := est.DecodeBase64Body(body)
	if err != nil {
		return err
	}
	certs, err := est.ParseCertsOnly(der)
	if err != nil {
		return err
	}
	pub, _ := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if len(certs) == 0 || !pub.Equal(certs[0].PublicKey) {
		return fmt.Errorf("%s: no certificate for the client's key", base)
	}
	return nil
}

// startESTServer builds tools/estserver and runs it on a free loopback port
// with the lab's domain CA as its mock CA, the lab registrar's TLS
// certificate and the lab IDevID CA as client CA. It returns its base URL.
func startESTServer(b *testing.B, gh *interopLab) string {
	b.Helper()
	goBin := lookPath(b, "go")
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(b.TempDir(), "estserver")
	build := exec.CommandContext(b.Context(), goBin, "build", "-modfile="+filepath.Join(root, "tools", "estserver", "go.mod"), "-o", bin, "github.com/globalsign/est/cmd/estserver")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build estserver: %v\n%s", err, out)
	}
	// A free port: estserver binds its own listener from the config.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	p := gh.paths
	cfg := map[string]any{
		"mock_ca": map[string]string{"certificates": p.DomainCA, "private_key": p.DomainCAKey},
		"tls": map[string]any{
			"listen_address": addr, "certificates": p.Registrar, "private_key": p.RegistrarKey,
			"client_cas": []string{p.IDevIDCA},
		},
		"healthcheck_password": "unused",
		"timeout":              30,
		"log_file":             filepath.Join(gh.work, "estserver.log"),
	}
	cb, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(gh.work, "estserver.json")
	if err := os.WriteFile(cfgFile, cb, 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", cfgFile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// Wait until it accepts connections (it prints nothing to wait for).
	deadline := time.Now().Add(procStartTimeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return "https://" + addr
		}
		if time.Now().After(deadline) {
			b.Fatalf("estserver not listening on %s: %v\n%s", addr, err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
