package web

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jmhodges/clock"

	"github.com/gatehouse-pki/gatehouse/internal/problem"
	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
)

func TestStatus_EveryKindMapped(t *testing.T) {
	t.Parallel()
	want := map[problem.Kind]int{
		problem.Internal: 500, problem.BadRequest: 400, problem.Unauthorized: 401,
		problem.Forbidden: 403, problem.NotFound: 404, problem.MethodNotAllowed: 405,
		problem.Conflict: 409, problem.NotAcceptable: 406, problem.UnsupportedMedia: 415,
		problem.TooLarge: 413, problem.Deferred: 202, problem.RateLimited: 429,
		problem.Upstream: 502, problem.Unavailable: 503,
	}
	for k := problem.Internal; k <= problem.Unavailable; k++ {
		w, ok := want[k]
		if !ok {
			t.Fatalf("kind %v has no expected status in this test: add it", k)
		}
		if got := Status(k); got != w {
			t.Errorf("Status(%v) = %d, want %d", k, got, w)
		}
	}
	if got := Status(problem.Kind(99)); got != 500 {
		t.Errorf("unknown kind maps to %d, want 500", got)
	}
}

func TestHandle_ErrorWriters(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		err         error
		write       ErrorWriter
		wantStatus  int
		wantType    string
		wantRetry   string
		wantBody    string
		wantNotBody string
	}{
		{"plain-deferred", &problem.Error{Kind: problem.Deferred, Detail: "waiting for approval", RetryAfter: 1500 * time.Millisecond}, WritePlain, 202, "text/plain; charset=utf-8", "2", "waiting for approval\n", ""},
		{"plain-wrapped-twice", fmt.Errorf("a: %w", fmt.Errorf("b: %w", problem.New(problem.Forbidden, errors.New("secret cause"), "not allowed"))), WritePlain, 403, "text/plain; charset=utf-8", "", "not allowed\n", "secret"},
		{"plain-unknown-error", errors.New("db password is hunter2"), WritePlain, 500, "text/plain; charset=utf-8", "", "internal error\n", "hunter2"},
		{"problem-json", problem.New(problem.NotFound, nil, "no device %q", "SN-1"), WriteProblem, 404, "application/problem+json", "", `"status":404`, ""},
		{"problem-json-control-chars", problem.New(problem.BadRequest, nil, "bad \x01 byte </script>"), WriteProblem, 400, "application/problem+json", "", `"status":400`, "</script>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := Handle(func(http.ResponseWriter, *http.Request) error { return tc.err }, tc.write)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/x", nil))
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tc.wantStatus)
			}
			if got := rec.Header().Get("Content-Type"); got != tc.wantType {
				t.Fatalf("Content-Type %q, want %q", got, tc.wantType)
			}
			if got := rec.Header().Get("Retry-After"); got != tc.wantRetry {
				t.Fatalf("Retry-After %q, want %q", got, tc.wantRetry)
			}
			body := rec.Body.String()
			if !strings.Contains(body, tc.wantBody) || (tc.wantNotBody != "" && strings.Contains(body, tc.wantNotBody)) {
				t.Fatalf("body %q: want %q and not %q", body, tc.wantBody, tc.wantNotBody)
			}
			if tc.wantType == "application/problem+json" && !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("problem document is not JSON: %s", body)
			}
		})
	}
}

func TestChain_OneEventPerRequestAndPanicRecovery(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	var panics, observed int
	mux := http.NewServeMux()
	mux.Handle("GET /ok", Handle(func(w http.ResponseWriter, r *http.Request) error {
		EventFrom(r.Context()).Add(slog.String("pledge_serial", "SN-7"))
		_, err := io.WriteString(w, "fine")
		return err
	}, nil))
	mux.HandleFunc("GET /boom", func(http.ResponseWriter, *http.Request) { panic("kaboom") })
	h := Chain(mux, Options{
		Logger:  logger,
		Clock:   clock.NewFake(),
		OnPanic: func(*http.Request, any) { panics++ },
		Observe: func(string, int, time.Duration) { observed++ },
	})

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ok", nil))
	if rec.Code != 200 || rec.Body.String() != "fine" {
		t.Fatalf("/ok: %d %q", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/boom", nil))
	if rec.Code != 500 || panics != 1 {
		t.Fatalf("/boom: status %d, panics %d", rec.Code, panics)
	}
	if observed != 2 {
		t.Fatalf("observed %d requests, want 2", observed)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want exactly one per request:\n%s", len(lines), logs.String())
	}
	var first, second map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	if first["pledge_serial"] != "SN-7" || first["route"] != "GET /ok" || first["status"] != float64(200) || first["request_id"] == "" {
		t.Fatalf("first event lacks annotations: %v", first)
	}
	if second["level"] != "ERROR" || !strings.Contains(fmt.Sprint(second["err"]), "kaboom") {
		t.Fatalf("panic event: %v", second)
	}
}

func TestReadBody(t *testing.T) {
	t.Parallel()
	const mt = "application/voucher-cms+json"
	tests := []struct {
		name      string
		ctype     string
		body      io.Reader
		length    int64 // -1: unknown (chunked)
		wantKind  problem.Kind
		wantError bool
	}{
		{"ok", mt, strings.NewReader("abc"), 3, 0, false},
		{"ok-with-params", mt + "; charset=utf-8", strings.NewReader("abc"), 3, 0, false},
		{"ok-case-insensitive", "Application/Voucher-CMS+JSON", strings.NewReader("abc"), 3, 0, false},
		{"wrong-type", "application/json", strings.NewReader("{}"), 2, problem.UnsupportedMedia, true},
		{"no-type", "", strings.NewReader("{}"), 2, problem.UnsupportedMedia, true},
		{"declared-too-large", mt, strings.NewReader("x"), 100 << 10, problem.TooLarge, true},
		{"chunked-too-large", mt, io.LimitReader(zeros{}, 1<<30), -1, problem.TooLarge, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodPost, "/x", tc.body)
			r.ContentLength = tc.length
			if tc.ctype != "" {
				r.Header.Set("Content-Type", tc.ctype)
			}
			b, err := ReadBody(httptest.NewRecorder(), r, 64<<10, mt)
			if !tc.wantError {
				if err != nil || string(b) != "abc" {
					t.Fatalf("ReadBody = %q, %v", b, err)
				}
				return
			}
			p, ok := errors.AsType[*problem.Error](err)
			if !ok || p.Kind != tc.wantKind {
				t.Fatalf("err = %v, want kind %v", err, tc.wantKind)
			}
		})
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestNewServer_Limits(t *testing.T) {
	t.Parallel()
	s := NewServer(http.NewServeMux(), nil, slog.New(slog.DiscardHandler))
	if s.ReadHeaderTimeout != 10*time.Second || s.ReadTimeout != 30*time.Second ||
		s.WriteTimeout != 30*time.Second || s.IdleTimeout != 60*time.Second || s.MaxHeaderBytes != 16<<10 || s.ErrorLog == nil {
		t.Fatalf("server limits: %+v", s)
	}
}

func TestNewServer_HeaderTooLarge(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.NewServeMux())
	srv.Config = NewServer(http.NewServeMux(), nil, slog.New(slog.DiscardHandler))
	srv.Start()
	defer srv.Close()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Big", strings.Repeat("a", 40<<10))
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
}

func TestServerTLSConfig_RefusesDowngrades(t *testing.T) {
	t.Parallel()
	cert := selfSigned(t)
	cfg := ServerTLSConfig()
	cfg.Certificates = []tls.Certificate{cert}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.TLS = cfg
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()

	tests := []struct {
		name    string
		client  *tls.Config
		wantErr bool
	}{
		{"tls13", &tls.Config{MinVersion: tls.VersionTLS13}, false},
		{"tls12-ecdhe-gcm", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}, false},
		{"tls11", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, true},
		{"tls12-cbc-only", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}, true},
		{"tls12-rsa-kex-only", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.client.InsecureSkipVerify = true // the test checks protocol negotiation, not names
			conn, err := tls.Dial("tcp", addr, tc.client)
			if conn != nil {
				conn.Close()
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("handshake err = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
}

func TestPeerCertificates(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if _, err := PeerCertificates(r); problem.From(err).Kind != problem.Unauthorized {
		t.Fatalf("no TLS: err = %v, want Unauthorized", err)
	}
	c := selfSigned(t)
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c.Leaf}}
	got, err := PeerCertificates(r)
	if err != nil || got[0] != c.Leaf {
		t.Fatalf("PeerCertificates = %v, %v", got, err)
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	ski, err := pki.SubjectKeyID(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SubjectKeyId, tmpl.AuthorityKeyId = ski, ski // self-signed: names its own key
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pkitest.Lint(t, leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// TestToolchainHasKeyUpdateFix: reliability G07 (a TLS 1.3 KeyUpdate
// flood) is handled by crypto/tls from Go 1.26.6 on (GO-2026-6090), and
// the listeners rely on it. This checks that prerequisite only: a build
// with an older Go fails here. The flood itself is not sent (crypto/tls
// offers no way to send KeyUpdate messages).
func TestToolchainHasKeyUpdateFix(t *testing.T) {
	v := strings.TrimPrefix(runtime.Version(), "go")
	var major, minor, patch int
	if n, _ := fmt.Sscanf(v, "%d.%d.%d", &major, &minor, &patch); n < 2 {
		t.Skipf("toolchain %q is not a release; G07 is not checked", runtime.Version())
	}
	if major == 1 && (minor < 26 || (minor == 26 && patch < 6)) {
		t.Fatalf("built with %s: G07 needs Go 1.26.6 or later (GO-2026-6090)", runtime.Version())
	}
}
