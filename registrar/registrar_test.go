package registrar_test

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jmhodges/clock"

	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/internal/problem"
	"github.com/gatehouse-pki/gatehouse/internal/web"
	"github.com/gatehouse-pki/gatehouse/masa/masatest"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
	"github.com/gatehouse-pki/gatehouse/store"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

// env is one registrar with its manufacturer, domain CA and MASA, on a fake
// clock at the project's test date. The MASA is masatest's real MASA (or
// its adversarial stub), or this package's small testMASA when stub is set.
type env struct {
	fc   clock.FakeClock
	mfg  *pkitest.CA
	dom  *pkitest.CA
	real *masatest.Server
	stub *testMASA
	reg  *registrartest.Registrar
}

type envOptions struct {
	adversarial bool
	mode        masatest.Mode
	stub        bool
	edit        func(*registrartest.Options)
}

func newEnv(t testing.TB, edit ...func(*registrartest.Options)) *env {
	t.Helper()
	var o envOptions
	if len(edit) > 0 {
		o.edit = edit[0]
	}
	return newEnvWith(t, o)
}

func newEnvWith(t testing.TB, o envOptions) *env {
	t.Helper()
	fc := pkitest.NewClock()
	mfg := pkitest.NewCA(t, pkitest.Name("Test Manufacturer IDevID CA"), pkitest.Clock(fc))
	dom := pkitest.NewCA(t, pkitest.Name("Test Domain CA"), pkitest.Clock(fc))
	e := &env{fc: fc, mfg: mfg, dom: dom}
	opts := registrartest.Options{Clock: fc, Manufacturer: mfg, DomainCA: dom}
	switch {
	case o.stub:
		e.stub = startTestMASA(t, fc, dom)
		opts.MASAURL, opts.MASAAnchors, opts.MASATLSRoots = e.stub.BaseURL(), e.stub.Anchors(), e.stub.tlsCA.Pool()
	case o.adversarial:
		e.real = masatest.StartAdversarial(t, masatest.Options{Clock: fc, Manufacturer: mfg, Delay: time.Minute}, o.mode)
		opts.MASA = e.real
	default:
		e.real = masatest.Start(t, masatest.Options{Clock: fc, Manufacturer: mfg})
		opts.MASA = e.real
	}
	if o.edit != nil {
		o.edit(&opts)
	}
	e.reg = registrartest.Start(t, opts)
	return e
}

func (e *env) masaAuthority() string {
	if e.stub != nil {
		return e.stub.Authority()
	}
	return e.real.Authority
}

func (e *env) masaAnchors() []*x509.Certificate {
	if e.stub != nil {
		return e.stub.Anchors()
	}
	return []*x509.Certificate{e.real.Anchor()}
}

// masaRequests counts the HTTP requests the MASA received.
func (e *env) masaRequests(t testing.TB) int64 {
	t.Helper()
	if e.stub != nil {
		return e.stub.requests.Load() + e.stub.logs.Load()
	}
	return e.real.Counters(t).Requests
}

// pledge issues an IDevID naming the env's MASA and returns a pledge for it.
func (e *env) pledge(t testing.TB, serial string, opts ...pkitest.Option) *registrartest.Pledge {
	t.Helper()
	id := pkitest.NewIDevID(t, e.mfg, serial, e.masaAuthority(), opts...)
	return registrartest.NewPledge(t, e.reg, serial, id.TLS)
}

// onboard runs a successful voucher exchange and returns the request bytes
// and the voucher.
func (e *env) onboard(t testing.TB, p *registrartest.Pledge) (pvr, vch []byte) {
	t.Helper()
	return e.onboardReq(t, p, p.Request(t))
}

func (e *env) onboardReq(t testing.TB, p *registrartest.Pledge, req *voucher.Request) (pvr, vch []byte) {
	t.Helper()
	pvr = p.Sign(t, req)
	resp, body, err := p.RequestVoucher(t.Context(), pvr)
	if err != nil {
		t.Fatalf("request voucher: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("request voucher: status %d: %s", resp.StatusCode, body)
	}
	return pvr, body
}

func TestRequestVoucher_HappyPath(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.pledge(t, "SN-HAPPY-1")
	requests0 := e.masaRequests(t)
	req := p.Request(t)
	pvr := p.Sign(t, req)

	resp, body, err := p.RequestVoucher(t.Context(), pvr)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != registrar.MediaTypeVoucherCMS {
		t.Errorf("Content-Type = %q", ct)
	}
	// The pledge's view: signed by the MASA anchor at now, its serial, its
	// nonce exactly, pinning the domain CA.
	content, _, err := voucher.VerifyCMS(body, voucher.VerifyOptions{Anchors: e.masaAnchors(), Time: e.fc.Now()})
	if err != nil {
		t.Fatalf("voucher does not verify against the MASA anchor: %v", err)
	}
	v, err := voucher.DecodeVoucherJSON(content)
	if err != nil {
		t.Fatal(err)
	}
	if v.SerialNumber != "SN-HAPPY-1" || !bytes.Equal(v.Nonce, req.Nonce) || !bytes.Equal(v.PinnedDomainCert, e.dom.Root().Raw) {
		t.Errorf("voucher = serial %q nonce %x pin-ok %v", v.SerialNumber, v.Nonce, bytes.Equal(v.PinnedDomainCert, e.dom.Root().Raw))
	}
	e.reg.RequireAudit(t, audit.VoucherDelivered, "SN-HAPPY-1")
	e.reg.RequireAudit(t, audit.RVRSigning, "SN-HAPPY-1")
	e.reg.RequireAudit(t, audit.RVRSigned, "SN-HAPPY-1")
	if got := e.reg.Counter(t, "brski_registrar_voucher_requests_total", map[string]string{"result": "issued"}); got != 1 {
		t.Errorf("issued counter = %v", got)
	}

	// An identical retry: the stored voucher, byte for byte, MASA +0.
	before := e.masaRequests(t)
	resp2, body2, err := p.RequestVoucher(t.Context(), pvr)
	if err != nil {
		t.Fatal(err)
	}
	if resp2.StatusCode != http.StatusOK || !bytes.Equal(body2, body) {
		t.Fatalf("retry: status %d, same bytes %v", resp2.StatusCode, bytes.Equal(body2, body))
	}
	if got := e.masaRequests(t) - before; got != 0 {
		t.Errorf("retry called the MASA %d times", got)
	}
	e.reg.RequireAudit(t, audit.VoucherCached, "SN-HAPPY-1")

	// voucher_status: stored, then the MASA audit log is fetched and passes.
	st := []byte(`{"version":1,"status":true,"reason":"ok","reason-context":{"additional":"JSON"}}`)
	resp3, _, err := p.Post(t.Context(), registrar.PathVoucherStatus, "application/json", st)
	if err != nil || resp3.StatusCode != http.StatusOK {
		t.Fatalf("voucher_status: %v %v", err, resp3)
	}
	key := registrar.DeviceKeyFor(p.IDevID.Leaf, "SN-HAPPY-1")
	tel, err := e.reg.DB().TelemetryFor(t.Context(), key)
	if err != nil || len(tel) != 1 || !bytes.Equal(tel[0].Raw, st) || !tel[0].ClientCertMatched {
		t.Fatalf("telemetry = %+v, %v", tel, err)
	}
	if got := e.masaRequests(t) - requests0; got != 2 {
		t.Errorf("MASA requests = %d, want 2 (voucher, audit log)", got)
	}
	if c := e.real.Counters(t); c.LogEntries[masatest.LogKey{Serial: "SN-HAPPY-1", Nonce: req.NonceText}] != 1 && len(c.LogEntries) != 1 {
		t.Errorf("MASA audit log entries = %v", c.LogEntries)
	}
	e.reg.RequireAudit(t, audit.AuditLogChecked, "SN-HAPPY-1")
	if err := e.reg.Service.EnrollAllowed(t.Context(), key); err != nil {
		t.Errorf("EnrollAllowed: %v", err)
	}
	dev, err := e.reg.DB().Device(t.Context(), key)
	if err != nil || dev.Status != store.DeviceVoucherIssued {
		t.Errorf("device = %+v, %v", dev, err)
	}
}

func TestIDevIDLifetime(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		ignore bool
		opt    pkitest.Option
		wantOK bool
	}{
		{name: "no-expiry-99991231235959Z", opt: pkitest.WithNoExpiry(), wantOK: true},
		{name: "expired-refused", opt: pkitest.Expired(), wantOK: false},
		{name: "expired-ignored-by-manufacturer", ignore: true, opt: pkitest.Expired(), wantOK: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The stub MASA: the real one applies its own IDevID lifetime
			// policy, which is not under test here.
			e := newEnvWith(t, envOptions{stub: true, edit: func(o *registrartest.Options) { o.IgnoreIDevIDExpiry = tc.ignore }})
			p := e.pledge(t, "SN-LIFE", tc.opt)
			if tc.name == "no-expiry-99991231235959Z" && !p.IDevID.Leaf.NotAfter.Equal(pkitest.NoExpiry) {
				t.Fatalf("NotAfter = %v", p.IDevID.Leaf.NotAfter)
			}
			resp, body, err := p.RequestVoucher(t.Context(), p.Sign(t, p.Request(t)))
			if !tc.wantOK {
				if err == nil {
					t.Fatalf("expired IDevID got status %d, want a TLS alert", resp.StatusCode)
				}
				return
			}
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("err %v status %v body %s", err, resp, body)
			}
		})
	}
}

func TestApprovePolicy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *registrartest.Options) { o.Policy = registrar.PolicyApprove })
	p := e.pledge(t, "SN-APPROVE")
	pvr := p.Sign(t, p.Request(t))
	resp, _, err := p.RequestVoucher(t.Context(), pvr)
	if err != nil || resp.StatusCode != http.StatusAccepted || resp.Header.Get("Retry-After") != "30" {
		t.Fatalf("first request: %v %+v", err, resp)
	}
	// The admin API lists it as pending.
	admin := e.reg.Service.AdminHandler()
	rec := serve(admin, http.MethodGet, "/api/v1/devices?status=pending-approval", "")
	var list registrar.DeviceList
	if err := json.Unmarshal(rec.body, &list); err != nil || len(list.Devices) != 1 || list.Devices[0].Serial != "SN-APPROVE" {
		t.Fatalf("pending list: %s (%v)", rec.body, err)
	}
	// Still pending: 202 again, no state change, no MASA call.
	d0 := e.reg.StateDigest(t)
	resp, _, _ = p.RequestVoucher(t.Context(), pvr)
	if resp.StatusCode != http.StatusAccepted || e.reg.StateDigest(t) != d0 || e.masaRequests(t) != 0 {
		t.Fatalf("second request: %d", resp.StatusCode)
	}
	if rec := serve(admin, http.MethodPost, "/api/v1/devices/SN-APPROVE/approve", ""); rec.code != http.StatusNoContent {
		t.Fatalf("approve: %d %s", rec.code, rec.body)
	}
	resp, _, _ = p.RequestVoucher(t.Context(), pvr)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after approval: %d", resp.StatusCode)
	}
	// Admin errors are problem+json; unknown paths and methods fail closed.
	for _, c := range []struct {
		method, path string
		code         int
	}{
		{http.MethodPost, "/api/v1/devices/NOPE/approve", 404},
		{http.MethodGet, "/api/v1/devices/SN-APPROVE/approve", 405},
		{http.MethodDelete, "/api/v1/devices", 405},
		{http.MethodGet, "/api/v1/other", 404},
		{http.MethodPost, "/api/v1/devices/SN-APPROVE/approve", 409}, // voucher-issued cannot become approved
	} {
		rec := serve(admin, c.method, c.path, "")
		if rec.code != c.code || !strings.HasPrefix(rec.ctype, "application/problem+json") {
			t.Errorf("%s %s = %d %q, want %d problem+json", c.method, c.path, rec.code, rec.ctype, c.code)
		}
	}
	// Deny: the next request is refused.
	if rec := serve(admin, http.MethodPost, "/api/v1/devices/SN-APPROVE/deny", `{"reason":"stolen"}`); rec.code != http.StatusNoContent {
		t.Fatalf("deny: %d %s", rec.code, rec.body)
	}
	resp, _, _ = p.RequestVoucher(t.Context(), p.Sign(t, p.Request(t)))
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("after deny: %d", resp.StatusCode)
	}
}

type recorded struct {
	code  int
	ctype string
	body  []byte
}

func serve(h http.Handler, method, path, body string) recorded {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return recorded{code: w.Code, ctype: w.Header().Get("Content-Type"), body: w.Body.Bytes()}
}

// TestRegistrarVoucherRequest_Fields inspects the registrar voucher-request
// the MASA receives (RFC 8995 §5.5, 8366bis).
func TestRegistrarVoucherRequest_Fields(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOptions{stub: true})
	p := e.pledge(t, "SN-HAPPY-1")
	req := p.Request(t)
	pvr := p.Sign(t, req)
	if resp, body, err := p.RequestVoucher(t.Context(), pvr); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%v %v %s", err, resp, body)
	}
	// The RVR the MASA saw: signed by the RA, serial from the IDevID,
	// nonce verbatim, the PVR bytes as received.
	rvrSigned, _ := e.stub.lastRVR.Load().([]byte)
	rvrContent, verified, err := voucher.VerifyCMS(rvrSigned, voucher.VerifyOptions{Anchors: []*x509.Certificate{e.dom.Root()}, Time: e.fc.Now()})
	if err != nil {
		t.Fatalf("RVR: %v", err)
	}
	if !verified.Signer.Equal(e.reg.RA.Cert) {
		t.Errorf("RVR signer is not the RA")
	}
	rvr, err := voucher.DecodeRequestJSON(rvrContent)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rvr.PriorSignedVoucherRequest, pvr) || rvr.SerialNumber != "SN-HAPPY-1" || !rvr.NonceEqual(&req.Fields) ||
		len(rvr.IDevIDIssuer) == 0 || rvr.ProximityRegistrarCert != nil || !rvr.CreatedOn.Equal(e.fc.Now()) {
		t.Errorf("RVR fields wrong: %+v", rvr)
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// errorsAsProblem returns the HTTP status of a problem error.
func errorsAsProblem(err error) (int, bool) {
	p, ok := errors.AsType[*problem.Error](err)
	if !ok {
		return 0, false
	}
	return web.Status(p.Kind), true
}

// TestService_VoucherStatus_RecordedWithAuditLogCheck: a voucher_status
// report is stored after the MASA audit log was fetched, in the same
// transaction as the auditlog-checked event (one durable commit, not two):
// the report and both events bear the instant after the fetch, and the
// events are consecutive in the chain, the report's first.
func TestService_VoucherStatus_RecordedWithAuditLogCheck(t *testing.T) {
	t.Parallel()
	fc := pkitest.NewClock()
	mfg := pkitest.NewCA(t, pkitest.Name("Test Manufacturer IDevID CA"), pkitest.Clock(fc))
	dom := pkitest.NewCA(t, pkitest.Name("Test Domain CA"), pkitest.Clock(fc))
	m := masatest.Start(t, masatest.Options{Clock: fc, Manufacturer: mfg, Observe: func(path, _ string, _ []byte) {
		if strings.HasSuffix(path, "/requestauditlog") {
			fc.Add(time.Second) // the fetch takes a second
		}
	}})
	e := &env{fc: fc, mfg: mfg, dom: dom, real: m}
	e.reg = registrartest.Start(t, registrartest.Options{Clock: fc, Manufacturer: mfg, DomainCA: dom, MASA: m})
	p := e.pledge(t, "SN-VS-1")
	e.onboard(t, p)
	before := fc.Now()

	resp, _, err := p.Post(t.Context(), registrar.PathVoucherStatus, "application/json", []byte(`{"version":1,"status":true}`))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("voucher_status: %v %v", err, resp)
	}
	after := before.Add(time.Second)
	tel, err := e.reg.DB().TelemetryFor(t.Context(), registrar.DeviceKeyFor(p.IDevID.Leaf, "SN-VS-1"))
	if err != nil || len(tel) != 1 {
		t.Fatalf("telemetry = %+v, %v", tel, err)
	}
	if !tel[0].Time.Equal(after) {
		t.Errorf("report stored at %s, want %s (after the audit-log fetch)", tel[0].Time, after)
	}
	var status, checked *store.Event
	for _, ev := range e.reg.AuditSince(t, 0) {
		switch {
		case ev.Type == audit.VoucherStatus && ev.Fields["pledge_serial"] == "SN-VS-1":
			status = &ev
		case ev.Type == audit.AuditLogChecked && ev.Fields["pledge_serial"] == "SN-VS-1":
			checked = &ev
		}
	}
	if status == nil || checked == nil {
		t.Fatalf("events: voucher-status %v, auditlog-checked %v", status, checked)
	}
	if checked.Fields["result"] != "ok" || checked.Seq != status.Seq+1 || !status.Time.Equal(after) || !checked.Time.Equal(after) {
		t.Errorf("voucher-status seq %d at %s, auditlog-checked seq %d at %s (%s); want consecutive at %s",
			status.Seq, status.Time, checked.Seq, checked.Time, checked.Fields["result"], after)
	}
}
