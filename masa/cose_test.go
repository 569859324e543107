package masa_test

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"testing"

	"github.com/gatehouse-pki/gatehouse/masa"
	"github.com/gatehouse-pki/gatehouse/masa/masatest"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

// coseSign signs r as YANG-CBOR in a COSE_Sign1 with key and opts.
func coseSign(t testing.TB, r *voucher.Request, key crypto.Signer, opts voucher.COSEOptions) []byte {
	t.Helper()
	payload, err := r.MarshalCBOR()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := voucher.SignCOSE(payload, key, opts)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// coseRVR is the cBRSKI exchange's registrar voucher-request for a fresh
// IDevID with serial: a COSE PVR without certificates (nil nonce:
// nonceless, no PVR), wrapped in a COSE RVR whose x5bag carries the RA,
// the domain CA and the pledge's chain.
func (f *fixture) coseRVR(t testing.TB, serial string, nonce []byte) []byte {
	t.Helper()
	idevid := pkitest.NewIDevID(t, f.mfg, serial, f.srv.Authority)
	rvr := &voucher.Request{Fields: voucher.Fields{CreatedOn: f.fc.Now(), Assertion: voucher.AssertionProximity, SerialNumber: serial, Nonce: nonce}}
	if nonce != nil {
		pvr := &voucher.Request{
			Fields:                 voucher.Fields{CreatedOn: f.fc.Now(), Assertion: voucher.AssertionProximity, SerialNumber: serial, Nonce: nonce},
			ProximityRegistrarPubk: f.ra.Cert.RawSubjectPublicKeyInfo,
		}
		rvr.PriorSignedVoucherRequest = coseSign(t, pvr, idevid.Key, voucher.COSEOptions{})
	}
	bag := []*x509.Certificate{f.ra.Cert, f.domain.Cert, idevid.Cert, f.mfg.Cert}
	return coseSign(t, rvr, f.ra.Key, voucher.COSEOptions{X5Bag: bag})
}

// openCOSE checks a COSE voucher as the registrar does: its signer chains
// to the MASA anchor through the unprotected x5bag.
func (f *fixture) openCOSE(t testing.TB, signed []byte) *voucher.Voucher {
	t.Helper()
	msg, err := voucher.ParseCOSE(signed)
	if err != nil {
		t.Fatal(err)
	}
	if !msg.UnprotectedCerts || len(msg.X5Bag) == 0 {
		t.Error("cBRSKI: the MASA must put its chain in an unprotected x5bag")
	}
	content, _, err := voucher.VerifyCOSE(signed, voucher.VerifyOptions{Anchors: []*x509.Certificate{f.srv.Anchor()}, Time: f.fc.Now()})
	if err != nil {
		t.Fatalf("COSE voucher does not verify: %v", err)
	}
	v, err := voucher.DecodeVoucherCBOR(content)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestService_RequestVoucher_COSE: a COSE request gets a COSE voucher, under
// the media type name it was sent with; the PVR inside is verified against
// the IDevID from the RVR's x5bag; a retry gets the same voucher and a
// CMS Accept is refused.
func TestService_RequestVoucher_COSE(t *testing.T) {
	t.Parallel()
	for _, mt := range []string{masa.MediaVoucherCOSE, masa.MediaVoucherCOSELegacy} {
		t.Run(mt, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, masa.OwnershipFirstClaim)
			nonce := nonceBytes(t)
			body := f.coseRVR(t, "SN-C1", nonce)
			resp, got := f.post(t, body, post{contentType: mt, accept: mt})
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != mt {
				t.Fatalf("status = %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), got)
			}
			v := f.openCOSE(t, got)
			if v.SerialNumber != "SN-C1" || v.Assertion != voucher.AssertionProximity || !bytes.Equal(v.Nonce, nonce) ||
				!bytes.Equal(v.PinnedDomainCert, f.domain.Cert.Raw) {
				t.Errorf("voucher %+v", v.Fields)
			}
			_, again := f.post(t, body, post{contentType: mt})
			if !bytes.Equal(again, got) {
				t.Error("a retry got a different voucher")
			}
			if resp, b := f.post(t, body, post{contentType: mt, accept: masa.MediaVoucherCMS}); resp.StatusCode != http.StatusNotAcceptable {
				t.Errorf("Accept CMS for a COSE request: %d %s", resp.StatusCode, b)
			}
			if entries := f.srv.Counters(t).LogEntries; entries[masatest.LogKey{Serial: "SN-C1", Nonce: base64.StdEncoding.EncodeToString(nonce)}] != 1 {
				t.Errorf("audit-log entries %v", entries)
			}
			requireAudit(t, f.srv.Store, "masa-voucher-signing", "masa-voucher-signed")
		})
	}
}

// TestService_RequestVoucher_COSENonceless: a COSE RVR without a nonce and
// PVR gets a logged voucher with expires-on, and the audit log says so.
func TestService_RequestVoucher_COSENonceless(t *testing.T) {
	t.Parallel()
	f := newFixture(t, masa.OwnershipFirstClaim)
	body := f.coseRVR(t, "SN-C2", nil)
	resp, got := f.post(t, body, post{contentType: masa.MediaVoucherCOSE})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d: %s", resp.StatusCode, got)
	}
	v := f.openCOSE(t, got)
	if v.Assertion != voucher.AssertionLogged || v.Nonce != nil || v.ExpiresOn.IsZero() {
		t.Errorf("voucher %+v", v.Fields)
	}
	resp, logBody := f.post(t, body, post{path: masa.PathRequestAuditLog, contentType: masa.MediaVoucherCOSE})
	if resp.StatusCode != http.StatusOK || !bytes.Contains(logBody, []byte(`"nonce":null`)) {
		t.Errorf("audit log: %d %s", resp.StatusCode, logBody)
	}
}

// TestService_RequestVoucher_COSERefusals: the COSE form is refused where
// the CMS one is, without signing or logging anything.
func TestService_RequestVoucher_COSERefusals(t *testing.T) { // subtests share one MASA and compare its state: sequential
	f := newFixture(t, masa.OwnershipRegistry)
	other := pkitest.NewCA(t, pkitest.Name("Other Domain CA"))
	f.srv.RegisterDevice(t, "SN-THEIRS", other.Cert)
	f.srv.RegisterDevice(t, "SN-MINE", f.domain.Cert)
	stranger := pkitest.NewCA(t, pkitest.Name("Unknown Manufacturer"))
	for _, tc := range []struct {
		name string
		body func(t *testing.T) []byte
		ct   string
		want int
	}{
		{"owned-by-another-domain", func(t *testing.T) []byte { return f.coseRVR(t, "SN-THEIRS", nonceBytes(t)) }, masa.MediaVoucherCOSE, http.StatusForbidden},
		{"unknown-device", func(t *testing.T) []byte { return f.coseRVR(t, "SN-NOBODY", nonceBytes(t)) }, masa.MediaVoucherCOSE, http.StatusNotFound},
		{"cose-sent-as-cms", func(t *testing.T) []byte { return f.coseRVR(t, "SN-MINE", nonceBytes(t)) }, masa.MediaVoucherCMS, http.StatusForbidden},
		{"cms-sent-as-cose", func(t *testing.T) []byte { return f.proximityRVR(t, "SN-MINE") }, masa.MediaVoucherCOSE, http.StatusForbidden},
		{"pvr-of-another-manufacturer", func(t *testing.T) []byte {
			idevid := pkitest.NewIDevID(t, stranger, "SN-MINE", f.srv.Authority)
			pvr := coseSign(t, &voucher.Request{Fields: voucher.Fields{Assertion: voucher.AssertionProximity, SerialNumber: "SN-MINE", Nonce: nonceBytes(t)},
				ProximityRegistrarPubk: f.ra.Cert.RawSubjectPublicKeyInfo}, idevid.Key, voucher.COSEOptions{})
			rvr := &voucher.Request{Fields: voucher.Fields{CreatedOn: f.fc.Now(), SerialNumber: "SN-MINE", Nonce: nonceBytes(t)}, PriorSignedVoucherRequest: pvr}
			return coseSign(t, rvr, f.ra.Key, voucher.COSEOptions{X5Bag: []*x509.Certificate{f.ra.Cert, f.domain.Cert, idevid.Cert, stranger.Cert}})
		}, masa.MediaVoucherCOSE, http.StatusForbidden},
		{"pvr-without-the-idevid-in-x5bag", func(t *testing.T) []byte {
			idevid := pkitest.NewIDevID(t, f.mfg, "SN-MINE", f.srv.Authority)
			pvr := coseSign(t, &voucher.Request{Fields: voucher.Fields{Assertion: voucher.AssertionProximity, SerialNumber: "SN-MINE", Nonce: nonceBytes(t)},
				ProximityRegistrarPubk: f.ra.Cert.RawSubjectPublicKeyInfo}, idevid.Key, voucher.COSEOptions{})
			rvr := &voucher.Request{Fields: voucher.Fields{CreatedOn: f.fc.Now(), SerialNumber: "SN-MINE", Nonce: nonceBytes(t)}, PriorSignedVoucherRequest: pvr}
			return coseSign(t, rvr, f.ra.Key, voucher.COSEOptions{X5Bag: []*x509.Certificate{f.ra.Cert, f.domain.Cert}})
		}, masa.MediaVoucherCOSE, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.body(t)
			before := f.srv.Counters(t)
			resp, b := f.post(t, body, post{contentType: tc.ct})
			if resp.StatusCode != tc.want {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tc.want, b)
			}
			after := f.srv.Counters(t)
			if after.VouchersSigned != before.VouchersSigned || len(after.LogEntries) != len(before.LogEntries) {
				t.Error("a refusal signed or logged a voucher")
			}
		})
	}
}
