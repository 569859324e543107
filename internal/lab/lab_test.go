package lab_test

import (
	"bytes"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jmhodges/clock"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-pki/gatehouse/internal/lab"
	"github.com/gatehouse-pki/gatehouse/internal/lab/labtest"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/pledge"
)

func startLab(t *testing.T, dir string, clk clock.Clock) (*lab.Lab, func()) {
	t.Helper()
	return labtest.Start(t, lab.Options{Dir: dir, Clock: clk, Hostname: "lab-test.example"})
}

func enrol(t *testing.T, l *lab.Lab, clk clock.Clock, serial string) *pledge.VoucherResult {
	t.Helper()
	var p *lab.Pledge
	for i := range l.PKI.Pledges {
		if l.PKI.Pledges[i].Serial == serial {
			p = &l.PKI.Pledges[i]
		}
	}
	if p == nil {
		t.Fatalf("no pledge %s", serial)
	}
	u, err := url.Parse("https://" + lab.Dialable(l.HTTPS))
	if err != nil {
		t.Fatal(err)
	}
	c, err := pledge.New(pledge.Config{Registrar: u, IDevID: p.IDevID, MASAAnchors: l.PKI.MASAAnchors, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.RequestVoucher(t.Context())
	if err != nil {
		t.Fatalf("%s: RequestVoucher: %v", serial, err)
	}
	return res
}

func TestOpen_EnrolAndRestart(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	clk := pkitest.NewClock()

	l, stop := startLab(t, dir, clk)
	if !l.Generated {
		t.Fatal("first Open did not generate the lab")
	}
	// The IDevIDs name the MASA this start bound.
	if l.PKI.MASAAuthority != lab.Dialable(l.MASAListener) || l.MASAURL.String() != "https://"+lab.Dialable(l.MASAListener)+"/.well-known/brski" {
		t.Errorf("MASA authority %s, URL %s, listener %s", l.PKI.MASAAuthority, l.MASAURL, l.MASAListener.Addr())
	}
	res := enrol(t, l, clk, "GH-0001")
	if !res.PinnedDomainCert.Equal(l.PKI.DomainCA) || res.Voucher.SerialNumber != "GH-0001" {
		t.Fatalf("voucher pins %q for %q", res.PinnedDomainCert.Subject, res.Voucher.SerialNumber)
	}
	domain := l.PKI.DomainCA.Raw
	stop()

	// Restart on the same directory, on other ports: nothing is
	// regenerated, and the registrar reaches the MASA at its new address.
	l2, _ := startLab(t, dir, clk)
	if l2.Generated || !bytes.Equal(l2.PKI.DomainCA.Raw, domain) {
		t.Fatal("restart regenerated the lab")
	}
	enrol(t, l2, clk, "GH-0002")
	// The first pledge comes back (same domain: the MASA's first-claim
	// owner).
	enrol(t, l2, clk, "GH-0001")
	for _, f := range []string{lab.RegistrarDBFile, lab.MASADBFile, lab.RegistrarAuditFile, lab.MASAAuditFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Errorf("%s: %v", f, err)
		} else if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %#o", f, fi.Mode().Perm())
		}
	}
	audit, err := os.ReadFile(filepath.Join(dir, lab.RegistrarAuditFile))
	if err != nil || !strings.Contains(string(audit), "rvr-signed") {
		t.Errorf("registrar audit file lacks rvr-signed: %v", err)
	}
}

func TestOpen_AddressInUse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clk := pkitest.NewClock()
	l, _ := startLab(t, dir, clk)
	_, err := lab.Open(t.Context(), lab.Options{
		Dir: filepath.Join(t.TempDir(), "other"), HTTPSAddr: l.HTTPS.Addr().String(), MASAAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Clock: clk, Logger: slog.New(slog.DiscardHandler), Metrics: prometheus.NewRegistry(),
	})
	if err == nil || !strings.Contains(err.Error(), "listen on") {
		t.Fatalf("Open on a used address = %v", err)
	}
}

func TestPledgeCommand(t *testing.T) {
	t.Parallel()
	l := &lab.Lab{PKI: &lab.PKI{Paths: lab.PathsFor("my data")}}
	got := l.PledgeCommand("./bin/gatehouse", "https://127.0.0.1:8443", "GH-0001")
	want := "./bin/gatehouse pledge enroll --registrar https://127.0.0.1:8443 --idevid 'my data/lab/pledges/GH-0001/idevid.pem' --key 'my data/lab/pledges/GH-0001/key.pem' --masa-anchor 'my data/lab/manufacturer/masa.pem' --out 'my data/out/GH-0001'"
	if got != want {
		t.Fatalf("PledgeCommand =\n%s\nwant\n%s", got, want)
	}
}
