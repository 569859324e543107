package est_test

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/globalsign/est"
	"github.com/jmhodges/clock"

	gest "github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
)

// interopEnv starts a server whose TLS certificate is valid at the real
// time: est.Client verifies the server with the system clock, which the
// fake clock cannot reach. Client certificates are still verified at the
// fake test time.
func interopEnv(t *testing.T, opts ...envOpt) (*env, *x509.CertPool) {
	t.Helper()
	real := clock.NewFake()
	real.Set(time.Now())
	tlsCA := pkitest.NewCA(t, pkitest.Name("EST Interop TLS CA"), pkitest.Clock(real))
	leaf := pkitest.NewServerCert(t, tlsCA)
	opts = append(opts, func(_ *gest.Config, c *tls.Config) { c.Certificates = []tls.Certificate{leaf.TLS} })
	e := newEnv(t, opts...)
	anchor := x509.NewCertPool()
	anchor.AddCert(tlsCA.Root())
	return e, anchor
}

// mozillaPKCS7 serialises est.Client calls: the go.mozilla.org/pkcs7
// parser it uses increments a package-level variable (encodeIndent in
// ber.go) without synchronisation, a data race between concurrent clients
// that is not ours.
var mozillaPKCS7 sync.Mutex

// TestInterop_GlobalSignClient drives every operation with
// github.com/globalsign/est's Client, a third-party EST client.
func TestInterop_GlobalSignClient(t *testing.T) {
	t.Parallel()
	for _, v := range []struct {
		name string
		opts []envOpt
	}{
		{"tls13", nil},
		// Under TLS 1.2 est.Client puts tls-unique in challengePassword
		// (with SigningKey set); the server requires it.
		{"tls12-channel-binding", []envOpt{
			func(c *gest.Config, tc *tls.Config) { c.RequireChannelBinding = true; tc.MaxVersion = tls.VersionTLS12 },
		}},
	} {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			mozillaPKCS7.Lock()
			defer mozillaPKCS7.Unlock()
			e, anchor := interopEnv(t, v.opts...)
			dev := e.idevid(t, "SN-GS-1")
			ctx := t.Context()
			client := &est.Client{
				Host:           e.ts.Listener.Addr().String(),
				ExplicitAnchor: anchor,
				Certificates:   dev.Chain,
				PrivateKey:     dev.Key,
				SigningKey:     dev.Key,
			}
			cacerts, err := client.CACerts(ctx)
			if err != nil {
				t.Fatalf("CACerts: %v", err)
			}
			if !cacerts[0].Equal(e.ca.ca.Cert) {
				t.Fatal("CACerts: issuing CA is not first")
			}
			attrs, err := client.CSRAttrs(ctx)
			if err != nil {
				t.Fatalf("CSRAttrs: %v", err)
			}
			if len(attrs.OIDs) == 0 || len(attrs.Attributes) == 0 {
				t.Fatalf("CSRAttrs: %+v", attrs)
			}

			key := newKey(t)
			client.SigningKey = key
			csr := goCSR(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "SN-GS-1"}}, key)
			before := e.ca.calls.Load()
			cert, err := client.Enroll(ctx, csr)
			if err != nil {
				t.Fatalf("Enroll: %v", err)
			}
			if e.ca.calls.Load() != before+1 {
				t.Fatal("Enroll: not exactly one CA call")
			}
			e.verify(t, cacerts, cert)
			if v.opts != nil && counterValue(t, e, "simpleenroll", "ok") != 1 {
				t.Fatal("Enroll with channel binding not counted as ok")
			}

			renew := &est.Client{Host: client.Host, ExplicitAnchor: anchor, Certificates: append([]*x509.Certificate{cert}, e.ca.ca.Chain[:1]...), PrivateKey: key, SigningKey: key}
			recsr := goCSR(t, &x509.CertificateRequest{RawSubject: cert.RawSubject}, key)
			renewed, err := renew.Reenroll(ctx, recsr)
			if err != nil {
				t.Fatalf("Reenroll: %v", err)
			}
			e.verify(t, cacerts, renewed)

			skgCert, skgKey, err := renew.ServerKeyGen(ctx, recsr)
			if err != nil {
				t.Fatalf("ServerKeyGen: %v", err)
			}
			e.verify(t, cacerts, skgCert)
			k, err := x509.ParsePKCS8PrivateKey(skgKey)
			if err != nil {
				t.Fatalf("ServerKeyGen key: %v", err)
			}
			if !k.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(skgCert.PublicKey) {
				t.Fatal("ServerKeyGen: key does not match the certificate")
			}

			// A refusal reaches est.Client as an est.Error with the status.
			anon := &est.Client{Host: client.Host, ExplicitAnchor: anchor}
			_, err = anon.Enroll(ctx, csr)
			estErr, ok := errors.AsType[est.Error](err)
			if !ok || estErr.StatusCode() != http.StatusUnauthorized {
				t.Fatalf("anonymous Enroll: %v, want 401", err)
			}
		})
	}
}

func goCSR(t *testing.T, tmpl *x509.CertificateRequest, key any) *x509.CertificateRequest {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}
