package pledge_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmhodges/clock"

	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/pledge"
)

// fakeEST is a minimal EST server (cacerts, simplereenroll) over a test
// CA, strict about what RFC 7030 asks of a re-enrolling client: the TLS
// client certificate is the one renewed, the CSR keeps its subject and
// subjectAltName, and a challengePassword equals this connection's channel
// binding.
type fakeEST struct {
	t   *testing.T
	ca  *pkitest.CA
	url string
	// defer202 is how many requests are answered 202 first.
	defer202 atomic.Int32
	// wrongKey issues the certificate for another key.
	wrongKey bool

	mu       sync.Mutex
	passwds  []string
	versions []uint16
}

func startFakeEST(t *testing.T, ca *pkitest.CA) *fakeEST {
	t.Helper()
	f := &fakeEST{t: t, ca: ca}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/est/cacerts", func(w http.ResponseWriter, _ *http.Request) {
		der, err := est.MarshalCertsOnly(ca.Chain)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		// LF-wrapped at 64 columns: the client must tolerate it.
		b64 := base64.StdEncoding.EncodeToString(der)
		var body bytes.Buffer
		for len(b64) > 64 {
			body.WriteString(b64[:64] + "\n")
			b64 = b64[64:]
		}
		body.WriteString(b64 + "\n")
		w.Header().Set("Content-Type", pledge.MediaTypeCertsOnly)
		_, _ = w.Write(body.Bytes())
	})
	mux.HandleFunc("POST /.well-known/est/simplereenroll", f.reenroll)
	ra := pkitest.NewRACert(t, ca, nil)
	srv := pkitest.TLSServer(t, mux, ra.TLS, ca.Pool(), pkitest.Clock(ca.Clock))
	f.url = srv.URL
	return f
}

func (f *fakeEST) reenroll(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		http.Error(w, "no client certificate", http.StatusUnauthorized)
		return
	}
	peer := r.TLS.PeerCertificates[0]
	body, _ := io.ReadAll(r.Body)
	der, err := est.DecodeBase64Body(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil || csr.CheckSignature() != nil {
		http.Error(w, "bad csr", http.StatusBadRequest)
		return
	}
	if r.Header.Get("Content-Type") != pledge.MediaTypePKCS10 {
		http.Error(w, "content type", http.StatusUnsupportedMediaType)
		return
	}
	// RFC 7030 §4.2.2: same subject and subjectAltName.
	if !bytes.Equal(csr.RawSubject, peer.RawSubject) || len(csr.URIs) != len(peer.URIs) || csr.URIs[0].String() != peer.URIs[0].String() {
		http.Error(w, "names changed", http.StatusBadRequest)
		return
	}
	pw, _ := pkitest.ChallengePassword(f.t, csr)
	f.mu.Lock()
	f.passwds = append(f.passwds, pw)
	f.versions = append(f.versions, r.TLS.Version)
	f.mu.Unlock()
	if pw != "" {
		var want []byte
		if r.TLS.Version == tls.VersionTLS13 {
			want, err = r.TLS.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
		} else {
			want = r.TLS.TLSUnique
		}
		if err != nil || pw != base64.StdEncoding.EncodeToString(want) {
			http.Error(w, "channel binding mismatch", http.StatusUnauthorized)
			return
		}
	}
	if f.defer202.Add(-1) >= 0 {
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusAccepted)
		return
	}
	pub := csr.PublicKey
	if f.wrongKey {
		pub = pkitest.NewKey(f.t).Public()
	}
	cert := f.ca.Issue(f.t, &x509.Certificate{
		RawSubject:  csr.RawSubject,
		URIs:        csr.URIs,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, pub)
	out, err := est.MarshalCertsOnly(append([]*x509.Certificate{cert}, f.ca.Chain[:len(f.ca.Chain)-1]...))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", pledge.MediaTypeCertsOnly)
	_, _ = w.Write(est.EncodeBase64(out))
}

// newLDevID issues an LDevID from ca with a subject and a URI SAN.
func newLDevID(t *testing.T, ca *pkitest.CA) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("urn:dev:ops:GH-0007")
	cert := ca.Issue(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "GH-0007", SerialNumber: "GH-0007"},
		URIs:        []*url.URL{u},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, key.Public())
	tc := tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
	for _, c := range ca.Chain[:len(ca.Chain)-1] {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc
}

func TestReenroll(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		maxTLS      uint16
		noBinding   bool
		defer202    int32
		wrongKey    bool
		otherDomain bool
		wantBinding string
		wantErr     error
		wantPOSTs   int
	}{
		{name: "tls13-exporter", wantBinding: pledge.BindingTLSExporter, wantPOSTs: 1},
		{name: "tls12-unique", maxTLS: tls.VersionTLS12, wantBinding: pledge.BindingTLSUnique, wantPOSTs: 1},
		{name: "no-binding", noBinding: true, wantPOSTs: 1},
		{name: "deferred-twice", defer202: 2, wantBinding: pledge.BindingTLSExporter, wantPOSTs: 3},
		{name: "certificate-for-another-key", wrongKey: true, wantErr: pledge.ErrLDevID},
		{name: "server-not-in-the-domain", otherDomain: true, wantErr: pledge.ErrRegistrarChanged},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fc := pkitest.NewClock()
			ca := pkitest.NewCA(t, pkitest.Name("Reenroll Domain CA"), pkitest.Clock(fc), pkitest.Intermediate())
			srv := startFakeEST(t, ca)
			srv.defer202.Store(tc.defer202)
			srv.wrongKey = tc.wrongKey
			old := newLDevID(t, ca)
			anchors := []*x509.Certificate{ca.Root()}
			if tc.otherDomain {
				anchors = []*x509.Certificate{pkitest.NewCA(t, pkitest.Clock(fc)).Root()}
			}
			u, _ := url.Parse(srv.url)
			res, err := pledge.Reenroll(t.Context(), pledge.ReenrollConfig{
				Registrar:             u,
				LDevID:                old,
				DomainCAs:             anchors,
				Clock:                 fc,
				DisableChannelBinding: tc.noBinding,
				MaxTLSVersion:         tc.maxTLS,
				MaxRetryWait:          time.Millisecond,
				MaxWait:               time.Minute,
			})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.ChannelBinding != tc.wantBinding || res.Attempts != tc.wantPOSTs {
				t.Fatalf("binding %q after %d POSTs, want %q after %d", res.ChannelBinding, res.Attempts, tc.wantBinding, tc.wantPOSTs)
			}
			if !bytes.Equal(res.LDevID.RawSubject, old.Leaf.RawSubject) {
				t.Fatalf("subject %s, want %s", res.LDevID.Subject, old.Leaf.Subject)
			}
			if res.LDevID.PublicKey.(*ecdsa.PublicKey).Equal(old.Leaf.PublicKey) {
				t.Fatal("the renewed certificate reuses the old key")
			}
			if !res.LDevID.PublicKey.(*ecdsa.PublicKey).Equal(res.Key.Public()) {
				t.Fatal("the renewed certificate is not for Result.Key")
			}
			if len(res.CACerts) != len(ca.Chain) {
				t.Fatalf("%d cacerts, want %d", len(res.CACerts), len(ca.Chain))
			}
			srv.mu.Lock()
			defer srv.mu.Unlock()
			for i, pw := range srv.passwds {
				if (pw == "") != tc.noBinding {
					t.Fatalf("POST %d: challengePassword %q with binding disabled=%v", i+1, pw, tc.noBinding)
				}
			}
			if tc.maxTLS == tls.VersionTLS12 && srv.versions[0] != tls.VersionTLS12 {
				t.Fatalf("TLS version %x, want 1.2", srv.versions[0])
			}
			// The renewed certificate works as a client certificate.
			if _, err := res.TLSCertificate().Leaf.Verify(x509.VerifyOptions{
				Roots: ca.Pool(), Intermediates: ca.Intermediates(), CurrentTime: fc.Now(),
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestReenrollConfig_Validate(t *testing.T) {
	t.Parallel()
	u, _ := url.Parse("https://127.0.0.1:1")
	ca := pkitest.NewCA(t)
	good := pledge.ReenrollConfig{Registrar: u, LDevID: newLDevID(t, ca), DomainCAs: []*x509.Certificate{ca.Root()}, Clock: clock.NewFake()}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*pledge.ReenrollConfig){
		"no-registrar": func(c *pledge.ReenrollConfig) { c.Registrar = nil },
		"http":         func(c *pledge.ReenrollConfig) { c.Registrar = &url.URL{Scheme: "http", Host: "x"} },
		"no-cert":      func(c *pledge.ReenrollConfig) { c.LDevID = tls.Certificate{} },
		"no-ca":        func(c *pledge.ReenrollConfig) { c.DomainCAs = nil },
		"no-clock":     func(c *pledge.ReenrollConfig) { c.Clock = nil },
		"tls11":        func(c *pledge.ReenrollConfig) { c.MaxTLSVersion = tls.VersionTLS11 },
	} {
		c := good
		mut(&c)
		if err := c.Validate(); !errors.Is(err, pledge.ErrConfig) {
			t.Errorf("%s: Validate = %v, want ErrConfig", name, err)
		}
	}
}
