package pledge_test

import (
	"bytes"
	"crypto/x509"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/pledge"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

// coseClient is a pledge client sending COSE voucher-requests to the env's
// registrar, trusting anchors for the voucher.
func (e *env) coseClient(t *testing.T, serial string, anchors ...*x509.Certificate) (*pledge.Client, *pkitest.Leaf, error) {
	t.Helper()
	idevid := pkitest.NewIDevID(t, e.mfg, serial, e.masa.Authority, pkitest.WithNoExpiry())
	u, err := url.Parse(e.reg.URL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pledge.New(pledge.Config{
		Registrar: u, IDevID: idevid.TLS, MASAAnchors: anchors, Clock: e.clk,
		MaxRetryWait: time.Millisecond, MaxWait: time.Minute, VoucherFormat: voucher.FormatCOSE,
	})
	if err == nil {
		t.Cleanup(func() { _ = c.Close() })
	}
	return c, idevid, err
}

// TestClient_RequestVoucher_COSE runs the cBRSKI voucher exchange over
// HTTPS: a COSE request without certificates, a COSE voucher stripped of
// the MASA's chain, verified with the MASA signing certificate's key.
func TestClient_RequestVoucher_COSE(t *testing.T) {
	t.Parallel()
	e := newEnv(t, registrartest.Options{})
	c, idevid, err := e.coseClient(t, "SN-COSE-P1", e.masa.SigningChain[0])
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.RequestVoucher(t.Context())
	if err != nil {
		t.Fatalf("RequestVoucher: %v", err)
	}
	if res.Voucher.SerialNumber != "SN-COSE-P1" || !res.PinnedDomainCert.Equal(e.reg.DomainCA.Cert) || res.VoucherStatusErr != nil {
		t.Errorf("voucher %+v, voucher_status %v", res.Voucher.Fields, res.VoucherStatusErr)
	}
	msg, err := voucher.ParseCOSE(res.Raw)
	if err != nil || len(msg.X5Bag)+len(msg.X5Chain) != 0 {
		t.Errorf("raw voucher: %v, %d certificates", err, len(msg.X5Bag)+len(msg.X5Chain))
	}
	req, err := voucher.ParseCOSE(res.Request)
	if err != nil || len(req.X5Bag)+len(req.X5Chain) != 0 {
		t.Fatalf("request: %v (cBRSKI: no certificates in a pledge request)", err)
	}
	content, _, err := voucher.VerifyCOSE(res.Request, voucher.VerifyOptions{Anchors: []*x509.Certificate{idevid.Cert}, Time: e.clk.Now()})
	if err != nil {
		t.Fatalf("request does not verify with the IDevID: %v", err)
	}
	pvr, err := voucher.DecodeRequestCBOR(content)
	if err != nil || !bytes.Equal(pvr.ProximityRegistrarCert, e.reg.RA.Cert.Raw) {
		t.Errorf("request %+v: %v", pvr, err)
	}
	if st := e.voucherStatuses(t, idevid); len(st) != 1 || st[0]["status"] != true {
		t.Errorf("voucher_status stored: %v", st)
	}
}

// TestClient_RequestVoucher_COSEAnchors: the registrar strips the MASA's
// chain, so a COSE pledge that holds only the MASA's CA cannot verify the
// voucher (and says so); an unknown format is a configuration error.
func TestClient_RequestVoucher_COSEAnchors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, registrartest.Options{})
	c, _, err := e.coseClient(t, "SN-COSE-P2", e.masa.Anchor())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RequestVoucher(t.Context()); !errors.Is(err, pledge.ErrMASASignature) {
		t.Fatalf("RequestVoucher = %v, want ErrMASASignature", err)
	}
	u, _ := url.Parse(e.reg.URL)
	idevid := pkitest.NewIDevID(t, e.mfg, "SN-COSE-P3", e.masa.Authority)
	_, err = pledge.New(pledge.Config{Registrar: u, IDevID: idevid.TLS, MASAAnchors: []*x509.Certificate{e.masa.Anchor()}, Clock: e.clk, VoucherFormat: voucher.FormatJSON})
	if !errors.Is(err, pledge.ErrConfig) {
		t.Fatalf("New with format json = %v, want ErrConfig", err)
	}
}
