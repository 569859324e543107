package pledge_test

import (
	"context"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
)

// rollOnCACerts is a log handler that rolls the domain CA over when the
// registrar logs its first /cacerts request. The request log is written
// before the handler returns, so the pledge receives the old-generation CA
// certificates (no link certificates) and its simpleenroll, on the same
// connection, is answered by the new generation: the window a rollover can
// open between the two (failure injection).
type rollOnCACerts struct {
	slog.Handler
	once *sync.Once
	roll func()
}

func (rollOnCACerts) Enabled(context.Context, slog.Level) bool { return true }

func (h rollOnCACerts) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "path" && a.Value.String() == "/.well-known/est/cacerts" {
			h.once.Do(h.roll)
			return false
		}
		return true
	})
	return nil
}

func (h rollOnCACerts) WithAttrs(as []slog.Attr) slog.Handler {
	return rollOnCACerts{h.Handler.WithAttrs(as), h.once, h.roll}
}

func (h rollOnCACerts) WithGroup(g string) slog.Handler {
	return rollOnCACerts{h.Handler.WithGroup(g), h.once, h.roll}
}

// TestClient_Enroll_RolloverAfterCACerts: the pledge fetched /cacerts just
// before a rollover and gets a new-generation LDevID, which does not chain
// through what it holds; it fetches /cacerts again (RFC 7030 §4.1.3) and
// verifies the LDevID to the root its voucher pinned through NewWithOld.
func TestClient_Enroll_RolloverAfterCACerts(t *testing.T) {
	t.Parallel()
	var (
		svc    *registrar.Service
		rolled = make(chan error, 1)
	)
	h := rollOnCACerts{Handler: slog.DiscardHandler, once: &sync.Once{}, roll: func() {
		_, err := svc.RolloverCA(context.Background(), registrar.RolloverDeps{})
		rolled <- err
	}}
	e := newEnv(t, registrartest.Options{Logger: slog.New(h)})
	svc = e.reg.Service
	keyFile := filepath.Join(t.TempDir(), "domain-ca-key.pem")
	if err := os.WriteFile(keyFile, pkitest.KeyPEM(t, e.reg.DomainCA.Signer), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := svc.LoadGenerations(t.Context(), registrar.KeyFiles{Dir: filepath.Join(t.TempDir(), "ca")}, keyFile); err != nil {
		t.Fatal(err)
	}
	c := e.enrollClient(t, "SN-ROLL-CACERTS", e.reg.URL, 0)
	res, err := c.Enroll(t.Context())
	select {
	case rerr := <-rolled:
		if rerr != nil {
			t.Fatalf("rollover: %v", rerr)
		}
	default:
		t.Fatalf("the rollover did not run on the /cacerts request (Enroll: %v)", err)
	}
	if err != nil {
		t.Fatalf("Enroll across a rollover: %v", err)
	}
	old := e.reg.DomainCA.Root()
	if string(res.LDevID.AuthorityKeyId) == string(old.SubjectKeyId) {
		t.Fatal("the LDevID is from the old generation: the rollover came too late to test anything")
	}
	if len(res.CACerts) < 2 {
		t.Fatalf("the pledge kept %d CA certificates; want the refreshed set with the link certificates", len(res.CACerts))
	}
	inter := x509.NewCertPool()
	for _, c := range res.CACerts {
		inter.AddCert(c)
	}
	roots := x509.NewCertPool()
	roots.AddCert(old)
	if _, err := res.LDevID.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: e.clk.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("new-generation LDevID does not verify to the old root through the refreshed CA certificates: %v", err)
	}
}
