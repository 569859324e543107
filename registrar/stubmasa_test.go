package registrar_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmhodges/clock"

	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

// adversarial modes of the test MASA (attack table B).
const (
	modeOK              = ""
	modeWrongKey        = "wrong-key"         // B01
	modeWrongSerial     = "wrong-serial"      // B02
	modeWrongNonce      = "wrong-nonce"       // B03
	modeExpired         = "expired"           // B04
	modeFutureCreated   = "future-created"    // B04
	modeWrongPin        = "wrong-pin"         // B05
	modeNoPin           = "no-pin"            // B05
	modeExpiredCert     = "expired-masa-cert" // B06
	modeCOSE            = "cose"              // B07
	modeStatus403       = "403"               // B08
	modeStatus404       = "404"               // B08
	modeStatus406       = "406"               // B08
	modeStatus415       = "415"               // B08
	modeStatus503       = "503"               // B09
	modeSlow            = "slow"              // B09
	modeHuge            = "huge"              // B10
	modeForeignDomainID = "foreign-domain"    // B11
	modeNoncelessEntry  = "nonceless-entry"   // B11
)

// testMASA is a small MASA for the registrar's tests: it verifies the
// registrar voucher-request against the domain CA, signs a voucher pinning
// the domain CA, serves an audit log, counts requests, and misbehaves on
// demand. (masa/masatest is the full MASA; this one exists so the registrar
// suite does not depend on another package's pace.)
type testMASA struct {
	t        testing.TB
	clk      clock.Clock
	srv      *httptest.Server
	ca       *pkitest.CA // MASA signing CA (the anchor)
	signer   *pkitest.Leaf
	tlsCA    *pkitest.CA
	domain   *pkitest.CA
	mode     atomic.Value // string
	requests atomic.Int64
	logs     atomic.Int64
	lastRVR  atomic.Value // []byte
	issued   atomic.Value // *voucher.Voucher
}

func startTestMASA(t testing.TB, clk clock.Clock, domain *pkitest.CA) *testMASA {
	t.Helper()
	m := &testMASA{t: t, clk: clk, domain: domain}
	m.mode.Store(modeOK)
	m.ca = pkitest.NewCA(t, pkitest.Name("Test MASA CA"), pkitest.Clock(clk))
	m.signer = pkitest.NewServerCert(t, m.ca, "masa-signer")
	m.tlsCA = pkitest.NewCA(t, pkitest.Name("Test MASA TLS CA"), pkitest.Clock(clk))
	tlsCert := pkitest.NewServerCert(t, m.tlsCA)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /.well-known/brski/requestvoucher", m.requestVoucher)
	mux.HandleFunc("POST /.well-known/brski/requestauditlog", m.requestAuditLog)
	m.srv = httptest.NewUnstartedServer(mux)
	m.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{tlsCert.TLS}, ClientAuth: tls.RequireAnyClientCert, Time: clk.Now}
	m.srv.StartTLS()
	t.Cleanup(m.srv.Close)
	return m
}

func (m *testMASA) setMode(mode string) { m.mode.Store(mode) }

// Authority is host:port, the form an IDevID's MASA URL extension holds.
func (m *testMASA) Authority() string { return strings.TrimPrefix(m.srv.URL, "https://") }

// BaseURL is https://host:port/.well-known/brski.
func (m *testMASA) BaseURL() *url.URL {
	u, _ := url.Parse(m.srv.URL + "/.well-known/brski")
	return u
}

func (m *testMASA) Anchors() []*x509.Certificate { return []*x509.Certificate{m.ca.Root()} }

func (m *testMASA) requestVoucher(w http.ResponseWriter, r *http.Request) {
	m.requests.Add(1)
	mode := m.mode.Load().(string)
	switch mode {
	case modeStatus403, modeStatus404, modeStatus406, modeStatus415, modeStatus503:
		code := map[string]int{modeStatus403: 403, modeStatus404: 404, modeStatus406: 406, modeStatus415: 415, modeStatus503: 503}[mode]
		http.Error(w, "test MASA says no", code)
		return
	case modeSlow:
		<-r.Context().Done() // until the registrar gives up
		return
	case modeHuge:
		w.Header().Set("Content-Type", voucher.MediaTypeCMS)
		_, _ = w.Write(bytes.Repeat([]byte{0x30}, 65<<10))
		return
	case modeCOSE:
		w.Header().Set("Content-Type", voucher.MediaTypeCOSE)
		_, _ = w.Write([]byte{0xd2, 0x84, 0x43, 0xa1, 0x01, 0x00, 0xa0, 0x40, 0x40}) // alg 0 ("none"-like)
		return
	}
	body, _ := io.ReadAll(r.Body)
	m.lastRVR.Store(body)
	content, _, err := voucher.VerifyCMS(body, voucher.VerifyOptions{Anchors: []*x509.Certificate{m.domain.Root()}, Time: m.clk.Now()})
	if err != nil {
		http.Error(w, "bad RVR signature: "+err.Error(), http.StatusForbidden)
		return
	}
	rvr, err := voucher.DecodeRequestJSON(content)
	if err != nil {
		http.Error(w, "bad RVR: "+err.Error(), http.StatusBadRequest)
		return
	}
	now := m.clk.Now().UTC().Truncate(time.Second)
	v := &voucher.Voucher{Fields: voucher.Fields{
		CreatedOn: now, Assertion: voucher.AssertionProximity, SerialNumber: rvr.SerialNumber,
		PinnedDomainCert: m.domain.Root().Raw, Nonce: rvr.Nonce, NonceText: rvr.NonceText,
	}}
	signer := m.signer
	switch mode {
	case modeWrongKey:
		other := pkitest.NewCA(t(m), pkitest.Name("Rogue MASA"), pkitest.Clock(m.clk))
		signer = pkitest.NewServerCert(t(m), other, "rogue")
	case modeWrongSerial:
		v.SerialNumber = "SOMEONE-ELSE"
	case modeWrongNonce:
		v.Nonce, v.NonceText = bytes.Repeat([]byte{7}, 16), ""
	case modeExpired:
		v.CreatedOn, v.ExpiresOn = now.Add(-2*time.Hour), now.Add(-time.Hour)
	case modeFutureCreated:
		v.CreatedOn = now.Add(10 * time.Minute)
	case modeWrongPin:
		v.PinnedDomainCert = m.ca.Root().Raw
	case modeNoPin:
		v.PinnedDomainCert = nil
		v.PinnedDomainPubk = m.domain.Root().RawSubjectPublicKeyInfo
	case modeExpiredCert:
		signer = &pkitest.Leaf{Cert: m.ca.Issue(t(m), &x509.Certificate{
			NotBefore: now.Add(-100 * 24 * time.Hour), NotAfter: now.Add(-24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature,
		}, m.signer.Key.Public()), Key: m.signer.Key}
	}
	payload, err := v.MarshalJSON()
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	signed, err := voucher.SignCMS(payload, signer.Key, signer.Cert, nil, voucher.CMSOptions{SigningTime: now.Add(-48 * time.Hour)})
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	m.issued.Store(v)
	w.Header().Set("Content-Type", voucher.MediaTypeCMS)
	_, _ = w.Write(signed)
}

func t(m *testMASA) testing.TB { return m.t }

func (m *testMASA) requestAuditLog(w http.ResponseWriter, _ *http.Request) {
	m.logs.Add(1)
	v, _ := m.issued.Load().(*voucher.Voucher)
	type event struct {
		Date      string  `json:"date"`
		DomainID  string  `json:"domainID"`
		Nonce     *string `json:"nonce"`
		Assertion string  `json:"assertion"`
	}
	domainID := base64.StdEncoding.EncodeToString(m.domain.Root().SubjectKeyId)
	var events []event
	if v != nil {
		n := v.NonceText
		events = append(events, event{Date: m.clk.Now().UTC().Format(time.RFC3339), DomainID: domainID, Nonce: &n, Assertion: "proximity"})
	}
	switch m.mode.Load().(string) {
	case modeForeignDomainID:
		n := "c29tZW9uZSBlbHNl"
		events = append(events, event{Date: "2029-12-01T00:00:00Z", DomainID: base64.StdEncoding.EncodeToString([]byte("a foreign domain key id")), Nonce: &n, Assertion: "proximity"})
	case modeNoncelessEntry:
		events = append(events, event{Date: "2029-12-01T00:00:00Z", DomainID: domainID, Nonce: nil, Assertion: "logged"})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"version": "1", "events": events})
}
