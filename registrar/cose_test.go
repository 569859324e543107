package registrar_test

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/masa/masatest"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

// masaLog records what the MASA received.
type masaLog struct {
	mu   sync.Mutex
	reqs []masaReq
}

type masaReq struct {
	path, contentType string
	body              []byte
}

func (l *masaLog) observe(path, ct string, body []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, masaReq{path, ct, bytes.Clone(body)})
}

func (l *masaLog) all() []masaReq {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]masaReq(nil), l.reqs...)
}

// coseEnv is an env whose real MASA reports each request to the log, with
// the manufacturer's MASA COSE media type set to masaType ("" default).
func coseEnv(t *testing.T, masaType string) (*env, *masaLog) {
	t.Helper()
	log := &masaLog{}
	fc := pkitest.NewClock()
	mfg := pkitest.NewCA(t, pkitest.Name("COSE Manufacturer IDevID CA"), pkitest.Clock(fc))
	dom := pkitest.NewCA(t, pkitest.Name("COSE Domain CA"), pkitest.Clock(fc))
	e := &env{fc: fc, mfg: mfg, dom: dom}
	e.real = masatest.Start(t, masatest.Options{Clock: fc, Manufacturer: mfg, Observe: log.observe})
	e.reg = registrartest.Start(t, registrartest.Options{Clock: fc, Manufacturer: mfg, DomainCA: dom, MASA: e.real,
		Config: func(c *registrar.Config) { c.Manufacturers[0].MASACOSEMediaType = masaType }})
	return e, log
}

// signCOSE signs req as the cBRSKI pledge does: YANG-CBOR in a COSE_Sign1
// with the IDevID key and no certificate.
func signCOSE(t *testing.T, p *registrartest.Pledge, req *voucher.Request) []byte {
	t.Helper()
	payload, err := req.MarshalCBOR()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := voucher.SignCOSE(payload, p.IDevID.PrivateKey.(crypto.Signer), voucher.COSEOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// TestRegistrar_COSEVoucher runs the cBRSKI voucher exchange over HTTPS
// against the real MASA: a COSE pledge voucher-request in, a COSE
// registrar voucher-request with x5bag to the MASA under the configured
// media type name, the MASA's COSE voucher checked, stripped of its
// unprotected x5bag and returned; then voucher_status makes the registrar
// fetch the audit log with the same COSE request.
func TestRegistrar_COSEVoucher(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, masaType, pledgeType, wantMASAType string
	}{
		{"default", "", registrar.MediaTypeVoucherCOSE, registrar.MediaTypeVoucherCOSE},
		{"legacy-masa-name", registrar.MediaTypeVoucherCOSELegacy, registrar.MediaTypeVoucherCOSE, registrar.MediaTypeVoucherCOSELegacy},
		{"legacy-pledge-name", "", registrar.MediaTypeVoucherCOSELegacy, registrar.MediaTypeVoucherCOSE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, log := coseEnv(t, tc.masaType)
			p := e.pledge(t, "SN-COSE-1")
			req := p.Request(t)
			pvr := signCOSE(t, p, req)
			resp, body, err := p.Post(t.Context(), registrar.PathRequestVoucher, tc.pledgeType, pvr, "Accept", tc.pledgeType)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("requestvoucher: %v %v %s", err, resp, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != tc.pledgeType {
				t.Errorf("Content-Type = %q, want %q", ct, tc.pledgeType)
			}

			// The voucher: COSE, no certificate left in it, verifying with
			// the MASA signing certificate's key as a cBRSKI pledge holds it.
			msg, err := voucher.ParseCOSE(body)
			if err != nil {
				t.Fatal(err)
			}
			if msg.UnprotectedCerts || len(msg.X5Bag)+len(msg.X5Chain) != 0 {
				t.Errorf("forwarded voucher still carries certificates (x5bag %d, x5chain %d)", len(msg.X5Bag), len(msg.X5Chain))
			}
			content, _, err := voucher.VerifyCOSE(body, voucher.VerifyOptions{Anchors: []*x509.Certificate{e.real.SigningChain[0]}, Time: e.fc.Now()})
			if err != nil {
				t.Fatalf("voucher does not verify with the MASA's key: %v", err)
			}
			v, err := voucher.DecodeVoucherCBOR(content)
			if err != nil {
				t.Fatal(err)
			}
			if v.SerialNumber != "SN-COSE-1" || !bytes.Equal(v.Nonce, req.Nonce) || v.Assertion != voucher.AssertionProximity ||
				!bytes.Equal(v.PinnedDomainCert, e.dom.Cert.Raw) {
				t.Errorf("voucher %+v", v.Fields)
			}

			// The MASA's own voucher had its chain in an unprotected x5bag;
			// stripping kept protected header, payload and signature.
			signed, err := e.real.Store.MASAVoucher(t.Context(), "SN-COSE-1", base64.StdEncoding.EncodeToString(v.Nonce))
			if err != nil {
				t.Fatal(err)
			}
			orig, err := voucher.ParseCOSE(signed.Signed)
			if err != nil {
				t.Fatal(err)
			}
			if !orig.UnprotectedCerts || len(orig.X5Bag) == 0 {
				t.Error("the MASA's voucher has no unprotected x5bag: the strip test proves nothing")
			}
			if !bytes.Equal(orig.Signature, msg.Signature) || !bytes.Equal(orig.Payload, msg.Payload) {
				t.Error("stripping changed the signed parts")
			}

			// The RVR the MASA received: COSE under the configured name,
			// x5bag with the registrar's chain and the pledge's whole chain,
			// the PVR verbatim inside.
			reqs := log.all()
			if len(reqs) != 1 || reqs[0].contentType != tc.wantMASAType {
				t.Fatalf("MASA requests %v, want one %s", reqs, tc.wantMASAType)
			}
			rvrMsg, err := voucher.ParseCOSE(reqs[0].body)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []*x509.Certificate{e.reg.RA.Cert, e.dom.Cert, p.IDevID.Leaf, e.mfg.Cert} {
				if !containsCert(rvrMsg.X5Bag, want) {
					t.Errorf("RVR x5bag lacks %s", want.Subject)
				}
			}
			rvr, err := voucher.DecodeRequestCBOR(rvrMsg.Payload)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(rvr.PriorSignedVoucherRequest, pvr) || len(rvr.IDevIDIssuer) == 0 || rvr.SerialNumber != "SN-COSE-1" {
				t.Errorf("RVR %+v", rvr)
			}

			// An identical retry is answered from the store, stripped too.
			_, again, err := p.Post(t.Context(), registrar.PathRequestVoucher, tc.pledgeType, pvr)
			if err != nil || !bytes.Equal(again, body) {
				t.Fatalf("retry: %v, same bytes %v", err, bytes.Equal(again, body))
			}

			// voucher_status: the audit-log fetch sends the COSE RVR again.
			resp, b, err := p.Post(t.Context(), registrar.PathVoucherStatus, registrar.MediaTypeJSON, []byte(`{"version":1,"status":true}`))
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("voucher_status: %v %v %s", err, resp, b)
			}
			checked := false
			for _, ev := range e.reg.AuditSince(t, 0) {
				if ev.Type == audit.AuditLogChecked && ev.Fields["pledge_serial"] == "SN-COSE-1" {
					checked = ev.Fields["result"] == "ok"
				}
			}
			if !checked {
				t.Error("no successful auditlog-checked event")
			}
			if reqs := log.all(); len(reqs) != 2 || reqs[1].contentType != tc.wantMASAType || !bytes.Equal(reqs[1].body, reqs[0].body) {
				t.Errorf("audit-log request: %d requests", len(reqs))
			}
		})
	}
}

func containsCert(certs []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range certs {
		if x.Equal(c) {
			return true
		}
	}
	return false
}

// TestRegistrar_COSERefusals: a COSE request the registrar must refuse is
// refused before the MASA, with the code of its CMS counterpart, and no
// state change beyond the refusal's audit event. Not parallel: the subtests
// compare the shared store's digest.
func TestRegistrar_COSERefusals(t *testing.T) {
	e, log := coseEnv(t, "")
	other := pkitest.NewServerCert(t, e.dom, "other.example").Cert
	for _, tc := range []struct {
		name      string
		body      func(t *testing.T, p *registrartest.Pledge) []byte
		accept    string
		wantCode  int
		wantClose bool
	}{
		{name: "proximity-cert-not-served", wantCode: http.StatusUnauthorized, wantClose: true, body: func(t *testing.T, p *registrartest.Pledge) []byte {
			req := p.Request(t)
			req.ProximityRegistrarCert = other.Raw
			return signCOSE(t, p, req)
		}},
		{name: "proximity-pubk-not-served", wantCode: http.StatusUnauthorized, wantClose: true, body: func(t *testing.T, p *registrartest.Pledge) []byte {
			req := p.Request(t)
			req.ProximityRegistrarCert, req.ProximityRegistrarPubk = nil, other.RawSubjectPublicKeyInfo
			return signCOSE(t, p, req)
		}},
		{name: "signed-by-another-pledge", wantCode: http.StatusForbidden, body: func(t *testing.T, p *registrartest.Pledge) []byte {
			return signCOSE(t, e.pledge(t, "SN-COSE-OTHER"), p.Request(t))
		}},
		{name: "cms-body-as-cose", wantCode: http.StatusBadRequest, body: func(t *testing.T, p *registrartest.Pledge) []byte {
			return p.Sign(t, p.Request(t))
		}},
		{name: "accept-cms-only", wantCode: http.StatusNotAcceptable, accept: registrar.MediaTypeVoucherCMS, body: func(t *testing.T, p *registrartest.Pledge) []byte {
			return signCOSE(t, p, p.Request(t))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := e.pledge(t, "SN-COSE-"+tc.name)
			body := tc.body(t, p)
			before := e.reg.StateDigest(t)
			var hdr []string
			if tc.accept != "" {
				hdr = []string{"Accept", tc.accept}
			}
			resp, b, err := p.Post(t.Context(), registrar.PathRequestVoucher, registrar.MediaTypeVoucherCOSE, body, hdr...)
			if err != nil || resp.StatusCode != tc.wantCode {
				t.Fatalf("got %v %v %s, want %d", err, resp, b, tc.wantCode)
			}
			if tc.wantClose {
				requireClose(t, e, nil, outcome{resp: resp})
			}
			if e.reg.StateDigest(t) != before {
				t.Error("a refusal changed the store")
			}
			if n := len(log.all()); n != 0 {
				t.Errorf("the MASA was called %d times", n)
			}
		})
	}
}

// TestRegistrar_COSEBadVoucher runs attack rows B01–B06 with COSE: the
// adversarial MASA re-signs a COSE voucher wrongly, the registrar answers
// 502 and forwards nothing, and the device is not moved to voucher-issued.
func TestRegistrar_COSEBadVoucher(t *testing.T) {
	t.Parallel()
	for _, mode := range []masatest.Mode{masatest.ModeForeignKey, masatest.ModeWrongSerial, masatest.ModeWrongNonce,
		masatest.ModeExpired, masatest.ModeWrongPin, masatest.ModeNoPin, masatest.ModeExpiredSigner} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnvWith(t, envOptions{adversarial: true, mode: mode})
			p := e.pledge(t, "SN-COSE-B")
			resp, b, err := p.Post(t.Context(), registrar.PathRequestVoucher, registrar.MediaTypeVoucherCOSE, signCOSE(t, p, p.Request(t)))
			if err != nil || resp.StatusCode != http.StatusBadGateway {
				t.Fatalf("got %v %v %s, want 502", err, resp, b)
			}
			if _, err := e.reg.DB().Device(t.Context(), registrar.DeviceKeyFor(p.IDevID.Leaf, "SN-COSE-B")); err == nil {
				t.Error("a refused voucher created the device record")
			}
			e.reg.RequireAudit(t, audit.MASARefused, "SN-COSE-B")
		})
	}
}

// TestRegistrar_COSEProximityForms: cBRSKI lets the pledge pin the
// registrar by its SPKI or the SPKI's SHA-256 instead of the certificate;
// both are accepted when they name the served certificate. The pledge then
// reports voucher_status in CBOR over the same HTTPS connection.
func TestRegistrar_COSEProximityForms(t *testing.T) {
	t.Parallel()
	e, _ := coseEnv(t, "")
	spki := e.reg.RA.Cert.RawSubjectPublicKeyInfo
	sum := sha256.Sum256(spki)
	for _, tc := range []struct {
		name string
		pin  func(*voucher.Request)
	}{
		{"pubk", func(r *voucher.Request) { r.ProximityRegistrarCert, r.ProximityRegistrarPubk = nil, spki }},
		{"pubk-sha256", func(r *voucher.Request) { r.ProximityRegistrarCert, r.ProximityRegistrarPubkSHA256 = nil, sum[:] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			serial := "SN-COSE-PIN-" + tc.name
			p := e.pledge(t, serial)
			req := p.Request(t)
			tc.pin(req)
			resp, body, err := p.Post(t.Context(), registrar.PathRequestVoucher, registrar.MediaTypeVoucherCOSE, signCOSE(t, p, req))
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("requestvoucher: %v %v %s", err, resp, body)
			}
			report := []byte{0xa2, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x01, 0x66, 's', 't', 'a', 't', 'u', 's', 0xf5}
			resp, b, err := p.Post(t.Context(), registrar.PathVoucherStatus, registrar.MediaTypeCBOR, report)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("voucher_status: %v %v %s", err, resp, b)
			}
			got, err := e.reg.DB().TelemetryFor(t.Context(), registrar.DeviceKeyFor(p.IDevID.Leaf, serial))
			if err != nil || len(got) != 1 || !bytes.Equal(got[0].Raw, report) {
				t.Errorf("telemetry %+v, %v", got, err)
			}
		})
	}
}

// TestRegistrar_COSEPledgeChainTooLong: a cBRSKI pledge whose IDevID
// chain (leaf, five intermediates, root) would not fit, with the
// registrar's own two certificates, in the x5bag of a registrar
// voucher-request (voucher.MaxCertificates) gets a 400 that says so, and
// the MASA is not called; with four intermediates (eight certificates in
// all) the exchange goes through.
func TestRegistrar_COSEPledgeChainTooLong(t *testing.T) {
	t.Parallel()
	e, log := coseEnv(t, "")
	ca := e.mfg
	for i := range 5 {
		ca = ca.SubCA(t, fmt.Sprintf("COSE Manufacturer Sub CA %d", i+1))
		if i < 3 {
			continue
		}
		serial := fmt.Sprintf("SN-COSE-DEEP-%d", i+1)
		id := pkitest.NewIDevID(t, ca, serial, e.real.Authority)
		p := registrartest.NewPledge(t, e.reg, serial, id.TLS)
		calls := len(log.all())
		resp, body, err := p.Post(t.Context(), registrar.PathRequestVoucher, registrar.MediaTypeVoucherCOSE,
			signCOSE(t, p, p.Request(t)), "Accept", registrar.MediaTypeVoucherCOSE)
		if err != nil {
			t.Fatal(err)
		}
		if i == 3 {
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("four intermediates: %d %s; want 200", resp.StatusCode, body)
			}
			continue
		}
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "the IDevID chain has 7 certificates") {
			t.Fatalf("five intermediates: %d %s; want 400 naming the chain length", resp.StatusCode, body)
		}
		if n := len(log.all()) - calls; n != 0 {
			t.Fatalf("five intermediates: the MASA was called %d times", n)
		}
	}
}
