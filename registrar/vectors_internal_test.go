package registrar

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/gatehouse-pki/gatehouse/internal/testvectors"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

// cbrskiTime lies inside every cBRSKI example certificate's validity.
var cbrskiTime = time.Date(2023, 6, 1, 0, 0, 0, 0, time.UTC)

func vectorCert(t *testing.T, name string) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(testvectors.Read(t, name))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return c
}

// TestCBRSKIVectors runs the cBRSKI examples through the functions the
// registrar's voucher exchange uses: the pledge voucher-request is
// authenticated by the pledge certificate (as the DTLS client certificate)
// and its proximity pin names the example registrar; the voucher verifies
// with the MASA CA's key and is forwarded with nothing to strip.
func TestCBRSKIVectors(t *testing.T) {
	t.Parallel()
	pledgeCert := vectorCert(t, "cbrski/pledge.der")
	registrarCert := vectorCert(t, "cbrski/registrar.der")

	pvr, err := openPVR(testvectors.ReadHex(t, "cbrski/pvr.hex"), voucher.FormatCOSE, pledgeCert, cbrskiTime, false)
	if err != nil {
		t.Fatalf("openPVR: %v", err)
	}
	if pvr.SerialNumber != "JADA123456789" || pvr.Assertion != voucher.AssertionProximity || len(pvr.Nonce) != 8 {
		t.Errorf("PVR %+v", pvr.Fields)
	}
	if !proximityMatches(pvr, registrarCert) {
		t.Error("the PVR's proximity pin does not name registrar.der")
	}
	if proximityMatches(pvr, pledgeCert) {
		t.Error("the PVR's proximity pin names the pledge certificate")
	}
	// Another client certificate did not sign it.
	if _, err := openPVR(testvectors.ReadHex(t, "cbrski/pvr.hex"), voucher.FormatCOSE, registrarCert, cbrskiTime, false); err == nil {
		t.Error("the PVR verifies with registrar.der")
	}

	body := testvectors.ReadHex(t, "cbrski/voucher.hex")
	v, forward, err := openVoucher(body, voucher.FormatCOSE, []*x509.Certificate{vectorCert(t, "cbrski/masa_ca.der")}, cbrskiTime)
	if err != nil {
		t.Fatalf("openVoucher: %v", err)
	}
	if v.SerialNumber != "JADA123456789" || v.Assertion != voucher.AssertionProximity || len(v.PinnedDomainCert) == 0 {
		t.Errorf("voucher %+v", v.Fields)
	}
	if string(forward) != string(body) {
		t.Error("a voucher without unprotected certificates was changed")
	}
	if _, _, err := openVoucher(body, voucher.FormatCOSE, []*x509.Certificate{vectorCert(t, "cbrski/masa.der")}, cbrskiTime); err == nil {
		t.Error("the voucher verifies with masa.der, the MASA's TLS certificate")
	}
}
