package pkitest_test

import (
	"crypto/x509"
	"io"
	"net/http"
	"testing"

	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
)

func TestNewCA_Lint(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"root", "intermediate"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var opts []pkitest.Option
			if name == "intermediate" {
				opts = append(opts, pkitest.Intermediate())
			}
			ca := pkitest.NewCA(t, opts...)
			for _, c := range ca.Chain {
				pkitest.Lint(t, c)
			}
			if _, err := ca.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), Intermediates: ca.Intermediates(), CurrentTime: pkitest.TestTime}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestNewIDevID_Options(t *testing.T) {
	t.Parallel()
	mfg := pkitest.NewCA(t, pkitest.Name("Mfg"))
	tests := []struct {
		name       string
		opts       []pkitest.Option
		wantExpiry bool
		wantAKI    bool
	}{
		{name: "default", wantAKI: true},
		{name: "no-expiry", opts: []pkitest.Option{pkitest.WithNoExpiry()}, wantAKI: true},
		{name: "no-aki", opts: []pkitest.Option{pkitest.NoAKI()}},
		{name: "expired", opts: []pkitest.Option{pkitest.Expired()}, wantAKI: true, wantExpiry: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := pkitest.NewIDevID(t, mfg, "SN-1", "masa.example.com:9443", tc.opts...)
			pkitest.LintIDevID(t, l.Cert)
			if got := len(l.Cert.AuthorityKeyId) > 0; got != tc.wantAKI {
				t.Errorf("AKI present = %v, want %v", got, tc.wantAKI)
			}
			_, err := l.Cert.Verify(x509.VerifyOptions{Roots: mfg.Pool(), CurrentTime: pkitest.TestTime, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			if (err != nil) != tc.wantExpiry {
				t.Errorf("verify: %v, want expiry error %v", err, tc.wantExpiry)
			}
			dev, err := pki.ParseIDevID(l.Cert, pki.IDevIDOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if dev.Serial != "SN-1" || dev.MASAURL.String() != "https://masa.example.com:9443/.well-known/brski" {
				t.Errorf("identity = %+v", dev)
			}
		})
	}
}

func TestTLSServer_ClientCert(t *testing.T) {
	t.Parallel()
	mfg := pkitest.NewCA(t, pkitest.Name("Mfg"))
	domain := pkitest.NewCA(t, pkitest.Name("Domain"), pkitest.Intermediate())
	ra := pkitest.NewRACert(t, domain, []string{"registrar.example"})
	pkitest.Lint(t, ra.Cert)
	server := pkitest.NewServerCert(t, domain, "localhost")
	pkitest.Lint(t, server.Cert)
	idevid := pkitest.NewIDevID(t, mfg, "SN-2", "masa.example.com")

	for name, leaf := range map[string]*pkitest.Leaf{"ra": ra, "server": server} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := pkitest.TLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if len(r.TLS.PeerCertificates) == 0 {
					http.Error(w, "no client certificate", http.StatusUnauthorized)
					return
				}
				_, _ = io.WriteString(w, r.TLS.PeerCertificates[0].Subject.SerialNumber)
			}), leaf.TLS, mfg.Pool())
			c := pkitest.TLSClient(t, domain.Pool(), &idevid.TLS)
			resp, err := c.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || string(b) != "SN-2" {
				t.Fatalf("status %d body %q", resp.StatusCode, b)
			}
		})
	}
}
