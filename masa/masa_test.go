package masa_test

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jmhodges/clock"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/masa"
	"github.com/gatehouse-pki/gatehouse/masa/masatest"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/store"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

// nonceText is a nonce as the RFC 8995 audit-log example writes it:
// base64url without padding. The MASA must copy it exactly.
const nonceText = "VOUFT-WwrEv0NuAQEHoV7Q"

func nonceBytes(t testing.TB) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(nonceText)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fixture is a MASA with a manufacturer, a domain and its registrar.
type fixture struct {
	fc     clock.FakeClock
	mfg    *pkitest.CA
	domain *pkitest.CA
	ra     *pkitest.Leaf
	srv    *masatest.Server
}

func newFixture(t testing.TB, ownership masa.Ownership) *fixture {
	t.Helper()
	fc := pkitest.NewClock()
	f := &fixture{
		fc:     fc,
		mfg:    pkitest.NewCA(t, pkitest.Name("Example Mfg Root"), pkitest.Clock(fc)),
		domain: pkitest.NewCA(t, pkitest.Name("Example Domain CA"), pkitest.Clock(fc)),
	}
	f.ra = pkitest.NewRACert(t, f.domain, nil)
	f.srv = masatest.Start(t, masatest.Options{Clock: fc, Manufacturer: f.mfg, Ownership: ownership,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	return f
}

// pvrOpts shape a pledge voucher-request.
type pvrOpts struct {
	idevid    *pkitest.Leaf
	nonce     []byte
	nonceText string
	proximity *x509.Certificate
}

func signPVR(t testing.TB, o pvrOpts) []byte {
	t.Helper()
	serial := o.idevid.Cert.Subject.SerialNumber
	r := voucher.Request{
		Fields: voucher.Fields{
			CreatedOn: pkitest.TestTime, Assertion: voucher.AssertionProximity, SerialNumber: serial,
			Nonce: o.nonce, NonceText: o.nonceText,
		},
		ProximityRegistrarCert: o.proximity.Raw,
	}
	payload, err := r.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := voucher.SignCMS(payload, o.idevid.Key, o.idevid.Cert, nil, voucher.CMSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func signRVR(t testing.TB, key crypto.Signer, chain []*x509.Certificate, r voucher.Request) []byte {
	t.Helper()
	payload, err := r.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := voucher.SignCMS(payload, key, chain[0], chain[1:], voucher.CMSOptions{SigningTime: pkitest.TestTime})
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// rvr builds the registrar voucher-request wrapping pvr (nil: nonceless,
// logged) for serial.
func (f *fixture) rvr(t testing.TB, serial string, pvr []byte, nonce []byte, text string) []byte {
	t.Helper()
	return signRVR(t, f.ra.Key, []*x509.Certificate{f.ra.Cert, f.domain.Cert}, voucher.Request{
		Fields: voucher.Fields{
			CreatedOn: f.fc.Now(), Assertion: voucher.AssertionProximity, SerialNumber: serial,
			Nonce: nonce, NonceText: text,
		},
		PriorSignedVoucherRequest: pvr,
	})
}

// proximityRVR is the usual nonced request for a fresh IDevID with serial.
func (f *fixture) proximityRVR(t testing.TB, serial string) []byte {
	t.Helper()
	idevid := pkitest.NewIDevID(t, f.mfg, serial, f.srv.Authority)
	pvr := signPVR(t, pvrOpts{idevid: idevid, nonce: nonceBytes(t), nonceText: nonceText, proximity: f.ra.Cert})
	return f.rvr(t, serial, pvr, nonceBytes(t), nonceText)
}

type post struct {
	path        string
	contentType string
	accept      string
	client      *tls.Certificate
}

// reply is what a test keeps of a response (its body already read and
// closed).
type reply struct {
	StatusCode int
	Header     http.Header
}

func (f *fixture) post(t testing.TB, body []byte, p post) (reply, []byte) {
	t.Helper()
	if p.path == "" {
		p.path = masa.PathRequestVoucher
	}
	if p.contentType == "" {
		p.contentType = masa.MediaVoucherCMS
	}
	cert := p.client
	if cert == nil {
		cert = &f.ra.TLS
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, f.srv.URL+p.path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", p.contentType)
	if p.accept != "" {
		req.Header.Set("Accept", p.accept)
	}
	resp, err := f.srv.Client(t, cert).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{StatusCode: resp.StatusCode, Header: resp.Header}, b
}

// verifyVoucher checks the voucher's signature against the MASA anchor at
// the fake time and decodes it.
func (f *fixture) verifyVoucher(t testing.TB, signed []byte) *voucher.Voucher {
	t.Helper()
	content, _, err := voucher.VerifyCMS(signed, voucher.VerifyOptions{Anchors: []*x509.Certificate{f.srv.Anchor()}, Time: f.fc.Now()})
	if err != nil {
		t.Fatalf("voucher does not verify against the MASA anchor: %v", err)
	}
	v, err := voucher.DecodeVoucherJSON(content)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestService_RequestVoucher_Proximity(t *testing.T) {
	t.Parallel()
	f := newFixture(t, masa.OwnershipFirstClaim)
	body := f.proximityRVR(t, "SN-0001")
	resp, got := f.post(t, body, post{accept: "application/voucher-cms+json"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d: %s", resp.StatusCode, got)
	}
	if ct := resp.Header.Get("Content-Type"); ct != masa.MediaVoucherCMS {
		t.Errorf("Content-Type = %q", ct)
	}
	v := f.verifyVoucher(t, got)
	if v.Assertion != voucher.AssertionProximity || v.SerialNumber != "SN-0001" {
		t.Errorf("assertion %q serial %q", v.Assertion, v.SerialNumber)
	}
	if !bytes.Equal(v.PinnedDomainCert, f.domain.Cert.Raw) {
		t.Error("voucher does not pin the domain CA")
	}
	if v.NonceText != nonceText {
		t.Errorf("nonce text = %q, want %q verbatim", v.NonceText, nonceText)
	}
	if !v.CreatedOn.Equal(pkitest.TestTime) || !v.ExpiresOn.IsZero() {
		t.Errorf("created-on %s expires-on %s", v.CreatedOn, v.ExpiresOn)
	}
	if v.DomainCertRevocationChecks == nil || *v.DomainCertRevocationChecks {
		t.Error("domain-cert-revocation-checks is not false")
	}
	if !bytes.Contains(got, []byte(`"nonce":"`+nonceText+`"`)) {
		t.Error("the signed JSON does not carry the nonce text verbatim")
	}
	opensslVerify(t, got, f.srv.Anchor(), f.fc.Now())

	// An identical retry gets the same voucher and is logged once.
	_, again := f.post(t, body, post{})
	if !bytes.Equal(again, got) {
		t.Error("a retried request got a different voucher")
	}
	c := f.srv.Counters(t)
	if c.VouchersSigned != 1 || c.LogEntries[masatest.LogKey{Serial: "SN-0001", Nonce: nonceText}] != 1 || c.Requests != 2 {
		t.Errorf("counters = %+v", c)
	}
	if n := sumMetric(t, f.srv.Metrics, "brski_masa_requests_total"); n != 2 {
		t.Errorf("requests_total = %v", n)
	}

	// The audit log names this domain and nonce (RFC 8995 §5.8.1).
	resp, logBody := f.post(t, body, post{path: masa.PathRequestAuditLog})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != masa.MediaJSON {
		t.Fatalf("audit log: %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), logBody)
	}
	l, err := voucher.ParseAuditLog(logBody)
	if err != nil {
		t.Fatal(err)
	}
	want := voucher.AuditEvent{Date: pkitest.TestTime, DomainID: base64.StdEncoding.EncodeToString(f.domain.Cert.SubjectKeyId), Nonce: nonceText, Assertion: voucher.AssertionProximity}
	if len(l.Events) != 1 || !l.Events[0].Date.Equal(want.Date) || l.Events[0].DomainID != want.DomainID || l.Events[0].Nonce != want.Nonce || l.Events[0].Assertion != want.Assertion {
		t.Errorf("audit log = %+v, want one %+v", l, want)
	}
	if bytes.Contains(logBody, []byte("truncation")) {
		t.Error("zero truncation is not omitted")
	}
	if _, err := f.srv.Store.VerifyAuditChain(t.Context()); err != nil {
		t.Error(err)
	}
	requireAudit(t, f.srv.Store, audit.MASAVoucherSigning, audit.MASAVoucherSigned)
}

// sumMetric sums a counter family over its labels.
func sumMetric(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, fam := range families {
		if fam.GetName() == name {
			for _, m := range fam.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func requireAudit(t testing.TB, db *store.DB, types ...string) {
	t.Helper()
	events, err := db.Audit(t.Context(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, e := range events {
		have[e.Type] = true
	}
	for _, typ := range types {
		if !have[typ] {
			t.Errorf("no %s audit event among %d", typ, len(events))
		}
	}
}

func opensslVerify(t *testing.T, signed []byte, anchor *x509.Certificate, at time.Time) {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Log("openssl not installed; skipping the openssl cms -verify cross-check")
		return
	}
	dir := t.TempDir()
	in, ca, out := filepath.Join(dir, "voucher.der"), filepath.Join(dir, "ca.pem"), filepath.Join(dir, "content.json")
	if err := os.WriteFile(in, signed, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, pkitest.CertPEM(anchor), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), bin, "cms", "-verify", "-binary", "-inform", "DER", "-in", in,
		"-CAfile", ca, "-purpose", "any", "-attime", strconv.FormatInt(at.Unix(), 10), "-out", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl cms -verify: %v\n%s", err, b)
	}
	content, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := voucher.DecodeVoucherJSON(content); err != nil {
		t.Errorf("openssl's content is not the voucher: %v", err)
	}
}

func TestService_RequestVoucher_Nonceless(t *testing.T) {
	t.Parallel()
	f := newFixture(t, masa.OwnershipFirstClaim)
	body := f.rvr(t, "SN-0002", nil, nil, "")
	resp, got := f.post(t, body, post{path: masa.PathLegacyRequestVoucher, accept: "*/*"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d: %s", resp.StatusCode, got)
	}
	v := f.verifyVoucher(t, got)
	if v.Assertion != voucher.AssertionLogged || v.Nonce != nil {
		t.Errorf("assertion %q nonce %x", v.Assertion, v.Nonce)
	}
	if want := pkitest.TestTime.Add(masa.DefaultNoncelessValidity); !v.ExpiresOn.Equal(want) {
		t.Errorf("expires-on = %s, want %s", v.ExpiresOn, want)
	}
	resp, logBody := f.post(t, body, post{path: masa.PathLegacyAuditLog})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("audit log: %d %s", resp.StatusCode, logBody)
	}
	if !bytes.Contains(logBody, []byte(`"nonce":null`)) || !bytes.Contains(logBody, []byte(`"assertion":"logged"`)) {
		t.Errorf("audit log = %s", logBody)
	}
}

func TestService_RequestVoucher_Registry(t *testing.T) { // subtests share one MASA and compare its state: sequential
	f := newFixture(t, masa.OwnershipRegistry)
	other := pkitest.NewCA(t, pkitest.Name("Other Domain CA"))
	f.srv.RegisterDevice(t, "SN-MINE", f.domain.Cert)
	f.srv.RegisterDevice(t, "SN-THEIRS", other.Cert)
	f.srv.RegisterDevice(t, "SN-UNOWNED", nil)
	tests := []struct {
		serial string
		want   int
	}{
		{"SN-MINE", http.StatusOK},
		{"SN-THEIRS", http.StatusForbidden},
		{"SN-UNOWNED", http.StatusForbidden},
		{"SN-UNKNOWN", http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.serial, func(t *testing.T) {
			resp, b := f.post(t, f.proximityRVR(t, tc.serial), post{})
			if resp.StatusCode != tc.want {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tc.want, b)
			}
			if tc.want != http.StatusOK && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
				t.Errorf("error Content-Type = %q", resp.Header.Get("Content-Type"))
			}
		})
	}
	// A registrar that never owned the device gets 404 for its audit log.
	otherRA := pkitest.NewRACert(t, other, nil)
	idevid := pkitest.NewIDevID(t, f.mfg, "SN-MINE", f.srv.Authority)
	pvr := signPVR(t, pvrOpts{idevid: idevid, nonce: nonceBytes(t), nonceText: nonceText, proximity: otherRA.Cert})
	rvr := signRVR(t, otherRA.Key, []*x509.Certificate{otherRA.Cert, other.Cert}, voucher.Request{
		Fields:                    voucher.Fields{CreatedOn: f.fc.Now(), SerialNumber: "SN-MINE", Nonce: nonceBytes(t), NonceText: nonceText},
		PriorSignedVoucherRequest: pvr,
	})
	if resp, b := f.post(t, rvr, post{path: masa.PathRequestAuditLog, client: &otherRA.TLS}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("foreign audit log request: %d %s", resp.StatusCode, b)
	}
	if resp, b := f.post(t, f.proximityRVR(t, "SN-UNKNOWN"), post{path: masa.PathRequestAuditLog}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown device audit log: %d %s", resp.StatusCode, b)
	}
}

// raWithoutCMCRA is a registrar certificate with clientAuth only.
func raWithoutCMCRA(t testing.TB, domain *pkitest.CA) *pkitest.Leaf {
	t.Helper()
	key := pkitest.NewKey(t)
	cert := domain.Issue(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "Registrar without cmcRA"},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}, key.Public())
	return &pkitest.Leaf{Cert: cert, Key: key, Chain: []*x509.Certificate{cert},
		TLS: tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}}
}

func TestService_RequestVoucher_Refusals(t *testing.T) { // subtests share one MASA and compare its state: sequential
	f := newFixture(t, masa.OwnershipFirstClaim)
	// SN-TAKEN belongs to another domain.
	other := pkitest.NewCA(t, pkitest.Name("Other Domain CA"))
	f.srv.RegisterDevice(t, "SN-TAKEN", other.Cert)

	ok := func(serial string) func(t *testing.T) ([]byte, post) {
		t.Helper()
		return func(t *testing.T) ([]byte, post) {
			t.Helper()
			return f.proximityRVR(t, serial), post{}
		}
	}
	tests := map[string]struct {
		build func(t *testing.T) ([]byte, post)
		want  int
	}{
		"media-type": {build: func(t *testing.T) ([]byte, post) {
			t.Helper()
			b, p := ok("SN-R1")(t)
			p.contentType = "application/json"
			return b, p
		}, want: http.StatusUnsupportedMediaType},
		"too-large": {build: func(*testing.T) ([]byte, post) {
			return bytes.Repeat([]byte{0x30}, masa.MaxRequestBytes+1), post{}
		}, want: http.StatusRequestEntityTooLarge},
		"accept-not-satisfiable": {build: func(t *testing.T) ([]byte, post) {
			t.Helper()
			b, p := ok("SN-R2")(t)
			p.accept = "application/voucher+cose"
			return b, p
		}, want: http.StatusNotAcceptable},
		"garbage": {build: func(*testing.T) ([]byte, post) {
			return []byte("not cms"), post{}
		}, want: http.StatusForbidden},
		"rvr-signed-by-another-key": {build: func(t *testing.T) ([]byte, post) {
			t.Helper()
			b, p := ok("SN-R3")(t)
			ra2 := pkitest.NewRACert(t, f.domain, nil)
			p.client = &ra2.TLS
			return b, p
		}, want: http.StatusForbidden},
		"ra-without-cmcRA": {build: func(t *testing.T) ([]byte, post) {
			t.Helper()
			ra := raWithoutCMCRA(t, f.domain)
			idevid := pkitest.NewIDevID(t, f.mfg, "SN-R4", f.srv.Authority)
			pvr := signPVR(t, pvrOpts{idevid: idevid, nonce: nonceBytes(t), proximity: ra.Cert})
			rvr := signRVR(t, ra.Key, []*x509.Certificate{ra.Cert, f.domain.Cert}, voucher.Request{
				Fields: voucher.Fields{SerialNumber: "SN-R4", Nonce: nonceBytes(t)}, PriorSignedVoucherRequest: pvr,
			})
			return rvr, post{client: &ra.TLS}
		}, want: http.StatusForbidden},
		"nonce-mismatch": {build: func(t *testing.T) ([]byte, post) {
			t.Helper()
			idevid := pkitest.NewIDevID(t, f.mfg, "SN-R5", f.srv.Authority)
			pvr := signPVR(t, pvrOpts{idevid: idevid, nonce: nonceBytes(t), proximity: f.ra.Cert})
			return f.rvr(t, "SN-R5", pvr, []byte("another-nonce-16"), ""), post{}
		}, want: http.StatusForbidden},
		"nonce-text-mismatch": {build: func(t *testing.T) ([]byte, post) {
			t.Helper()
			idevid := pkitest.NewIDevID(t, f.mfg, "SN-R6", f.srv.Authority)
			pvr := signPVR(t, pvrOpts{idevid: idevid, nonce: nonceBytes(t), nonceText: nonceText, proximity: f.ra.Cert})
			// Same bytes, re-encoded: not relayed verbatim.
			return f.rvr(t, "SN-R6", pvr, nonceBytes(t), base64.StdEncoding.EncodeToString(nonceBytes(t))), post{}
		}, want: http.StatusForbidden},
		"pvr-without-nonce-in-rvr": {build: func(t *testing.T) ([]byte, post) {
			t.Helper()
			idevid := pkitest.NewIDevID(t, f.mfg, "SN-R7", f.srv.Authority)
			pvr := signPVR(t, pvrOpts{idevid: idevid, nonce: nonceBytes(t), proximity: f.ra.Cert})
			return f.rvr(t, "SN-R7", pvr, nil, ""), post{}
		}, want: http.StatusForbidden},
		"serial-mismatch": {build: func(t *testing.T) ([]byte, post) {
			t.Helper()
			idevid := pkitest.NewIDevID(t, f.mfg, "SN-R8", f.srv.Authority)
			pvr := signPVR(t, pvrOpts{idevid: idevid, nonce: nonceBytes(t), proximity: f.ra.Cert})
			return f.rvr(t, "SN-R8-OTHER", pvr, nonceBytes(t), ""), post{}
		}, want: http.StatusForbidden},
		"unknown-manufacturer": {build: func(t *testing.T) ([]byte, post) {
			t.Helper()
			rogue := pkitest.NewCA(t, pkitest.Name("Rogue Mfg"), pkitest.Clock(f.fc))
			idevid := pkitest.NewIDevID(t, rogue, "SN-R9", f.srv.Authority)
			pvr := signPVR(t, pvrOpts{idevid: idevid, nonce: nonceBytes(t), proximity: f.ra.Cert})
			return f.rvr(t, "SN-R9", pvr, nonceBytes(t), ""), post{}
		}, want: http.StatusForbidden},
		"proximity-cert-of-another-registrar": {build: func(t *testing.T) ([]byte, post) {
			t.Helper()
			idevid := pkitest.NewIDevID(t, f.mfg, "SN-R10", f.srv.Authority)
			elsewhere := pkitest.NewRACert(t, pkitest.NewCA(t), nil)
			pvr := signPVR(t, pvrOpts{idevid: idevid, nonce: nonceBytes(t), proximity: elsewhere.Cert})
			return f.rvr(t, "SN-R10", pvr, nonceBytes(t), ""), post{}
		}, want: http.StatusForbidden},
		"copied-domain-ca": {build: func(t *testing.T) ([]byte, post) {
			t.Helper()
			// A registrar of another domain embeds our domain CA to have it pinned.
			rogueDomain := pkitest.NewCA(t, pkitest.Name("Example Domain CA"), pkitest.Clock(f.fc))
			ra := pkitest.NewRACert(t, rogueDomain, nil)
			idevid := pkitest.NewIDevID(t, f.mfg, "SN-R11", f.srv.Authority)
			pvr := signPVR(t, pvrOpts{idevid: idevid, nonce: nonceBytes(t), proximity: ra.Cert})
			rvr := signRVR(t, ra.Key, []*x509.Certificate{ra.Cert, f.domain.Cert}, voucher.Request{
				Fields: voucher.Fields{SerialNumber: "SN-R11", Nonce: nonceBytes(t)}, PriorSignedVoucherRequest: pvr,
			})
			return rvr, post{client: &ra.TLS}
		}, want: http.StatusForbidden},
		"stale-created-on": {build: func(t *testing.T) ([]byte, post) {
			t.Helper()
			rvr := signRVR(t, f.ra.Key, []*x509.Certificate{f.ra.Cert, f.domain.Cert}, voucher.Request{
				Fields: voucher.Fields{CreatedOn: f.fc.Now().Add(-time.Hour), SerialNumber: "SN-R12"},
			})
			return rvr, post{}
		}, want: http.StatusForbidden},
		"owned-by-another-domain": {build: ok("SN-TAKEN"), want: http.StatusForbidden},
		"no-serial": {build: func(t *testing.T) ([]byte, post) {
			t.Helper()
			rvr := signRVR(t, f.ra.Key, []*x509.Certificate{f.ra.Cert, f.domain.Cert}, voucher.Request{
				Fields: voucher.Fields{CreatedOn: f.fc.Now(), Nonce: nonceBytes(t)},
			})
			return rvr, post{}
		}, want: http.StatusBadRequest},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			body, p := tc.build(t)
			before, err := f.srv.Store.StateDigest(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			signedBefore := f.srv.Counters(t).VouchersSigned
			resp, b := f.post(t, body, p)
			if resp.StatusCode != tc.want {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tc.want, b)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
				t.Errorf("Content-Type = %q", ct)
			}
			after, err := f.srv.Store.StateDigest(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if after != before {
				t.Error("a refused request changed the MASA's state")
			}
			if n := f.srv.Counters(t).VouchersSigned; n != signedBefore {
				t.Errorf("a refused request signed a voucher (%d → %d)", signedBefore, n)
			}
		})
	}
	requireAudit(t, f.srv.Store, audit.MASAClaimRefused)
}

func TestService_RequestVoucher_FirstClaimThenOther(t *testing.T) {
	t.Parallel()
	f := newFixture(t, masa.OwnershipFirstClaim)
	if resp, b := f.post(t, f.proximityRVR(t, "SN-C1"), post{}); resp.StatusCode != http.StatusOK {
		t.Fatalf("first claim: %d %s", resp.StatusCode, b)
	}
	other := pkitest.NewCA(t, pkitest.Name("Other Domain CA"), pkitest.Clock(f.fc))
	ra := pkitest.NewRACert(t, other, nil)
	idevid := pkitest.NewIDevID(t, f.mfg, "SN-C1", f.srv.Authority)
	pvr := signPVR(t, pvrOpts{idevid: idevid, nonce: []byte("second-nonce-123"), proximity: ra.Cert})
	rvr := signRVR(t, ra.Key, []*x509.Certificate{ra.Cert, other.Cert}, voucher.Request{
		Fields: voucher.Fields{SerialNumber: "SN-C1", Nonce: []byte("second-nonce-123")}, PriorSignedVoucherRequest: pvr,
	})
	before, _ := f.srv.Store.StateDigest(t.Context())
	if resp, b := f.post(t, rvr, post{client: &ra.TLS}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("second domain: %d %s", resp.StatusCode, b)
	}
	if after, _ := f.srv.Store.StateDigest(t.Context()); after != before {
		t.Error("refused claim changed state")
	}
}

func TestService_TLSClientCertificateRequired(t *testing.T) {
	t.Parallel()
	f := newFixture(t, masa.OwnershipFirstClaim)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, f.srv.URL+masa.PathRequestVoucher, strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", masa.MediaVoucherCMS)
	resp, err := f.srv.Client(t, nil).Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("request without a client certificate got %d", resp.StatusCode)
	}
	// In process, without TLS, the handler answers 401.
	r, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, masa.PathRequestVoucher, strings.NewReader("x"))
	r.Header.Set("Content-Type", masa.MediaVoucherCMS)
	w := httptest.NewRecorder()
	f.srv.Service.Handler().ServeHTTP(w, r)
	if w.Code != http.StatusUnauthorized {
		t.Errorf("no TLS: status %d", w.Code)
	}
}

func TestService_Routes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, masa.OwnershipFirstClaim)
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, masa.PathRequestVoucher, http.StatusMethodNotAllowed},
		{http.MethodPost, "/.well-known/brski/voucher_status", http.StatusNotFound},
		{http.MethodPost, "/.well-known/brski/requestvoucherx", http.StatusNotFound},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), tc.method, f.srv.URL+tc.path, nil)
		resp, err := f.srv.Client(t, &f.ra.TLS).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
	}
}

func TestNew_Validation(t *testing.T) {
	t.Parallel()
	if _, err := masa.New(masa.Config{}, masa.Deps{}); err == nil {
		t.Fatal("New accepted empty deps")
	}
	cfg := masa.Config{Ownership: "maybe", NoncelessValidity: -time.Second}
	err := cfg.WithDefaults().Validate()
	if err == nil || !strings.Contains(err.Error(), "ownership") || !strings.Contains(err.Error(), "nonceless") {
		t.Fatalf("Validate = %v", err)
	}
	if err := (masa.Config{}).WithDefaults().Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if (masa.Config{}).WithDefaults().Ownership != masa.OwnershipRegistry {
		t.Error("default ownership is not registry")
	}
}
