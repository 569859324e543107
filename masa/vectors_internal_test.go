package masa

import (
	"bytes"
	"crypto/x509"
	"testing"
	"time"

	"github.com/gatehouse-pki/gatehouse/internal/testvectors"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

// TestCBRSKIVectors runs the cBRSKI registrar voucher-request example
// through openRVR, the MASA's first step for a COSE request: it is
// authenticated by registrar.der as the TLS client certificate, decodes,
// carries the x5bag certificates and wraps the example PVR verbatim.
func TestCBRSKIVectors(t *testing.T) {
	t.Parallel()
	reg, err := x509.ParseCertificate(testvectors.Read(t, "cbrski/registrar.der"))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2023, 6, 1, 0, 0, 0, 0, time.UTC)
	rvr, certs, err := openRVR(testvectors.ReadHex(t, "cbrski/rvr.hex"), voucher.FormatCOSE, reg, at)
	if err != nil {
		t.Fatalf("openRVR: %v", err)
	}
	if rvr.SerialNumber != "JADA123456789" || rvr.Assertion != voucher.AssertionProximity || len(rvr.IDevIDIssuer) == 0 {
		t.Errorf("RVR %+v", rvr.Fields)
	}
	if !bytes.Equal(rvr.PriorSignedVoucherRequest, testvectors.ReadHex(t, "cbrski/pvr.hex")) {
		t.Error("prior-signed-voucher-request is not the example PVR")
	}
	// The bag holds an earlier certificate for the same registrar key and
	// the domain CA.
	if len(certs) != 2 || !bytes.Equal(certs[0].RawSubjectPublicKeyInfo, reg.RawSubjectPublicKeyInfo) || !certs[1].IsCA {
		t.Errorf("x5bag: %d certificates", len(certs))
	}
	if pinned, err := pinDomain(reg, certs, at); err != nil || !pinned.Equal(certs[1]) {
		t.Errorf("pinDomain: %v", err)
	}
	// Signed by registrar.der, so no other client certificate passes.
	pledge, err := x509.ParseCertificate(testvectors.Read(t, "cbrski/pledge.der"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := openRVR(testvectors.ReadHex(t, "cbrski/rvr.hex"), voucher.FormatCOSE, pledge, at); err == nil {
		t.Error("the RVR is accepted from pledge.der")
	}
}
