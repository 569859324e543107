package pledge_test

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/pledge"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
)

// TestClient_Enroll runs the whole onboarding against a real registrar and
// MASA: voucher, cacerts, csrattrs, a channel-bound simpleenroll and
// enrollstatus over the LDevID connection, on TLS 1.3 and TLS 1.2; then
// renews the LDevID with Reenroll.
func TestClient_Enroll(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		maxTLS      uint16
		wantBinding string
	}{
		{"tls13", 0, pledge.BindingTLSExporter},
		{"tls12", tls.VersionTLS12, pledge.BindingTLSUnique},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, registrartest.Options{})
			c := e.enrollClient(t, "SN-EST-"+tc.name, e.reg.URL, tc.maxTLS)
			res, err := c.Enroll(t.Context())
			if err != nil {
				t.Fatalf("Enroll: %v", err)
			}
			if res.ChannelBinding != tc.wantBinding {
				t.Errorf("binding %q, want %q", res.ChannelBinding, tc.wantBinding)
			}
			if res.EnrollStatusErr != nil {
				t.Errorf("enrollstatus over the LDevID connection: %v", res.EnrollStatusErr)
			}
			if !res.LDevID.PublicKey.(*ecdsa.PublicKey).Equal(res.Key.Public()) {
				t.Fatal("the LDevID is not for Result.Key")
			}
			if _, err := res.LDevID.Verify(x509.VerifyOptions{
				Roots: e.reg.DomainCA.Pool(), Intermediates: e.reg.DomainCA.Intermediates(),
				CurrentTime: e.clk.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
			}); err != nil {
				t.Fatalf("LDevID does not chain to the domain CA: %v", err)
			}

			u, _ := url.Parse(e.reg.URL)
			again, err := pledge.Reenroll(t.Context(), pledge.ReenrollConfig{
				Registrar:     u,
				LDevID:        res.TLSCertificate(),
				DomainCAs:     []*x509.Certificate{e.reg.DomainCA.Root()},
				Clock:         e.clk,
				MaxTLSVersion: tc.maxTLS,
				MaxRetryWait:  time.Millisecond,
				MaxWait:       time.Minute,
			})
			if err != nil {
				t.Fatalf("Reenroll: %v", err)
			}
			if again.LDevID.Subject.String() != res.LDevID.Subject.String() || again.LDevID.SerialNumber.Cmp(res.LDevID.SerialNumber) == 0 {
				t.Fatalf("renewed %s serial %x, from %s serial %x", again.LDevID.Subject, again.LDevID.SerialNumber, res.LDevID.Subject, res.LDevID.SerialNumber)
			}
		})
	}
}

// TestClient_EnrollEST_NeedsVoucher: EST needs an accepted voucher.
func TestClient_EnrollEST_NeedsVoucher(t *testing.T) {
	t.Parallel()
	e := newEnv(t, registrartest.Options{})
	c := e.enrollClient(t, "SN-EST-NOVOUCHER", e.reg.URL, 0)
	if _, err := c.EnrollEST(t.Context(), nil); !errors.Is(err, pledge.ErrConfig) {
		t.Fatalf("EnrollEST(nil) = %v, want ErrConfig", err)
	}
}

// enrollClient is client with a TLS version cap.
func (e *env) enrollClient(t *testing.T, serial, registrarURL string, maxTLS uint16) *pledge.Client {
	t.Helper()
	idevid := pkitest.NewIDevID(t, e.mfg, serial, e.masa.Authority, pkitest.WithNoExpiry())
	u, err := url.Parse(registrarURL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pledge.New(pledge.Config{
		Registrar:     u,
		IDevID:        idevid.TLS,
		MASAAnchors:   []*x509.Certificate{e.masa.Anchor()},
		Clock:         e.clk,
		MaxRetryWait:  time.Millisecond,
		MaxWait:       time.Minute,
		MaxTLSVersion: maxTLS,
	})
	if err != nil {
		t.Fatalf("pledge.New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
