package est_test

import (
	"bytes"
	"crypto"
	_ "crypto/md5" // the MD5 refusal test signs with MD5
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/digitorus/pkcs7"
	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/internal/problem"
)

const p = est.PathPrefix + "/"

// certsOnly decodes a base64 certs-only body with a third-party parser.
func certsOnly(t *testing.T, r response) []*x509.Certificate {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if got := r.header.Get("Content-Type"); got != est.MediaCertsOnly {
		t.Fatalf("Content-Type %q", got)
	}
	if bytes.ContainsAny(r.body, "\r\n") {
		t.Fatalf("response base64 is wrapped")
	}
	der, err := base64.StdEncoding.Strict().DecodeString(string(r.body))
	if err != nil {
		t.Fatal(err)
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		t.Fatal(err)
	}
	return p7.Certificates
}

func (e *env) verify(t *testing.T, cacerts []*x509.Certificate, cert *x509.Certificate) {
	t.Helper()
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(cacerts[len(cacerts)-1])
	for _, c := range cacerts[:len(cacerts)-1] {
		inter.AddCert(c)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: e.clk.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("issued certificate does not verify against cacerts: %v", err)
	}
}

func TestServer_Operations(t *testing.T) {
	t.Parallel()
	for _, v := range []struct {
		name string
		max  uint16
	}{{"tls12", 0x0303}, {"tls13", 0x0304}} {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			dev := e.idevid(t, "SN-OPS-1")
			c := e.dial(t, &dev.TLS, v.max)

			cacerts := certsOnly(t, c.do(t, http.MethodGet, p+"cacerts", "", nil))
			if !cacerts[0].Equal(e.ca.ca.Cert) || len(cacerts) != 2 {
				t.Fatalf("cacerts: issuing CA first and the chain, got %d", len(cacerts))
			}
			r := c.do(t, http.MethodGet, p+"csrattrs", "", nil)
			if r.status != 200 || r.header.Get("Content-Type") != est.MediaCSRAttrs {
				t.Fatalf("csrattrs: %d %q", r.status, r.header.Get("Content-Type"))
			}
			der, err := base64.StdEncoding.DecodeString(string(r.body))
			if err != nil {
				t.Fatal(err)
			}
			attrs, err := est.ParseCSRAttrs(der)
			if err != nil || attrs.Template == nil || attrs.Template.Subject[0][0].Value != "SN-OPS-1" {
				t.Fatalf("csrattrs: %+v, %v", attrs, err)
			}

			key := newKey(t)
			csr := buildCSR(t, csrSpec{key: key, subject: pkix.Name{CommonName: "SN-OPS-1"}, challenge: c.binding(t)})
			issued := certsOnly(t, c.do(t, http.MethodPost, p+"simpleenroll", est.MediaPKCS10, b64(csr)))
			if len(issued) != 1 {
				t.Fatalf("simpleenroll returned %d certificates, want 1", len(issued))
			}
			e.verify(t, cacerts, issued[0])

			// Re-enroll with the new LDevID as client certificate, same names.
			ld := tlsCert(issued[0], key, e.ca.ca.Chain[:1])
			c2 := e.dial(t, &ld, v.max)
			re := buildCSR(t, csrSpec{rawSubject: issued[0].RawSubject, challenge: c2.binding(t)})
			renewed := certsOnly(t, c2.do(t, http.MethodPost, p+"simplereenroll", est.MediaPKCS10, b64(re)))
			e.verify(t, cacerts, renewed[0])

			// Server-side key generation over the labelled path.
			r = c2.do(t, http.MethodPost, p+"lab/serverkeygen", est.MediaPKCS10, b64(re))
			cert, k := serverKeyGen(t, r)
			e.verify(t, cacerts, cert)
			if !k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(cert.PublicKey) {
				t.Fatal("server-generated key does not match the certificate")
			}
			if got := counterValue(t, e, "simpleenroll", "ok"); got != 1 {
				t.Fatalf("brski_est_requests_total{simpleenroll,ok} = %v", got)
			}
		})
	}
}

// counterValue reads brski_est_requests_total{op,result}.
func counterValue(t *testing.T, e *env, op, result string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "brski_est_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["op"] == op && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func tlsCert(cert *x509.Certificate, key crypto.Signer, chain []*x509.Certificate) tls.Certificate {
	tc := tls.Certificate{PrivateKey: key, Leaf: cert, Certificate: [][]byte{cert.Raw}}
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc
}

// serverKeyGen checks an RFC 7030 §4.4.2 multipart response.
func serverKeyGen(t *testing.T, r response) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("serverkeygen: %d %s", r.status, r.body)
	}
	mt, params, err := mime.ParseMediaType(r.header.Get("Content-Type"))
	if err != nil || mt != est.MediaMultipartMixed {
		t.Fatalf("serverkeygen Content-Type %q", r.header.Get("Content-Type"))
	}
	mr := multipart.NewReader(bytes.NewReader(r.body), params["boundary"])
	var cert *x509.Certificate
	var key crypto.Signer
	for i := 0; ; i++ {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(part)
		if err != nil {
			t.Fatal(err)
		}
		der, err := base64.StdEncoding.DecodeString(string(body))
		if err != nil {
			t.Fatal(err)
		}
		switch ct := part.Header.Get("Content-Type"); {
		case i == 0 && ct == est.MediaPKCS8:
			k, err := x509.ParsePKCS8PrivateKey(der)
			if err != nil {
				t.Fatal(err)
			}
			key = k.(crypto.Signer)
		case i == 1 && ct == est.MediaCertsOnly:
			p7, err := pkcs7.Parse(der)
			if err != nil {
				t.Fatal(err)
			}
			cert = p7.Certificates[0]
		default:
			t.Fatalf("part %d: unexpected Content-Type %q", i, ct)
		}
	}
	if cert == nil || key == nil {
		t.Fatal("serverkeygen: missing part")
	}
	return cert, key
}

// wrap inserts sep every width characters.
func wrap(s string, width int, sep string) string {
	var b strings.Builder
	for i := 0; i < len(s); i += width {
		b.WriteString(s[i:min(i+width, len(s))])
		b.WriteString(sep)
	}
	return b.String()
}

// TestServer_InputTolerance: RFC 8951 bodies as real clients send them.
func TestServer_InputTolerance(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dev := e.idevid(t, "SN-TOL-1")
	csr := buildCSR(t, csrSpec{subject: pkix.Name{CommonName: "SN-TOL-1"}})
	std := base64.StdEncoding.EncodeToString(csr)
	tests := []struct {
		name string
		body string
		hdr  []string
	}{
		{"unwrapped-with-cte", std, []string{"Content-Transfer-Encoding", "base64"}},
		{"unwrapped-no-cte", std, nil},
		{"cte-binary-ignored", std, []string{"Content-Transfer-Encoding", "binary"}},
		{"lf-64", wrap(std, 64, "\n"), nil},
		{"crlf-76", wrap(std, 76, "\r\n"), []string{"Content-Transfer-Encoding", "base64"}},
		{"no-padding", base64.RawStdEncoding.EncodeToString(csr), nil},
		{"connection-close", std, []string{"Connection", "close"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := e.dial(t, &dev.TLS, 0)
			certsOnly(t, c.do(t, http.MethodPost, p+"simpleenroll", est.MediaPKCS10, []byte(tc.body), tc.hdr...))
		})
	}
}

// TestServer_Refusals: every refusal is answered before the CA is called.
func TestServer_Refusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withConfig(func(c *est.Config) { c.Labels = []string{"lab"} }))
	dev := e.idevid(t, "SN-REF-1")
	good := buildCSR(t, csrSpec{subject: pkix.Name{CommonName: "SN-REF-1"}})
	badSig := bytes.Clone(good)
	badSig[len(badSig)-3] ^= 0x01
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	caCSR := buildCSR(t, csrSpec{extensions: []pkix.Extension{{Id: []int{2, 5, 29, 19}, Critical: true, Value: []byte{0x30, 0x03, 0x01, 0x01, 0xff}}}})
	otherConn := e.dial(t, &dev.TLS, 0)
	relayed := buildCSR(t, csrSpec{challenge: otherConn.binding(t)})
	tests := []struct {
		name    string
		method  string
		path    string
		ctype   string
		body    []byte
		noCert  bool
		hdr     []string
		want    int
		envOpts []envOpt
	}{
		{name: "wrong-content-type", ctype: "application/octet-stream", body: b64(good), want: 415},
		{name: "no-content-type", ctype: "", body: b64(good), want: 415},
		{name: "too-large", body: bytes.Repeat([]byte("A"), 64<<10+4), want: 413},
		{name: "not-base64", body: []byte("MIIB$$$"), want: 400},
		{name: "base64url-chars", body: []byte(strings.ReplaceAll(string(b64(good)), "/", "_") + "-_"), want: 400},
		{name: "base64-of-garbage", body: b64([]byte("hello, not a CSR")), want: 400},
		{name: "der-trailing-bytes", body: b64(append(bytes.Clone(good), 0x00)), want: 400},
		{name: "bad-signature", body: b64(badSig), want: 400},
		{name: "sha1-signature", body: b64(buildCSR(t, csrSpec{sigOID: oidECDSAWithSHA1, hash: crypto.SHA1})), want: 400},
		{name: "md5-signature", body: b64(buildCSR(t, csrSpec{key: rsa2048, sigOID: oidMD5WithRSA, hash: crypto.MD5})), want: 400},
		{name: "weak-key-rsa1024", body: b64(buildCSR(t, csrSpec{key: rsa1024, sigOID: []int{1, 2, 840, 113549, 1, 1, 11}, hash: crypto.SHA256})), want: 400},
		{name: "requests-ca", body: b64(caCSR), want: 400},
		{name: "binding-mismatch", body: b64(relayed), want: 401},
		{name: "binding-not-base64", body: b64(buildCSR(t, csrSpec{challenge: "not base64!"})), want: 401},
		{name: "binding-required-missing", body: b64(good), want: 401, envOpts: []envOpt{withConfig(func(c *est.Config) { c.RequireChannelBinding = true })}},
		{name: "no-client-auth", body: b64(good), noCert: true, want: 401},
		{name: "basic-not-configured", body: b64(good), noCert: true, hdr: []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("u:p"))}, want: 401},
		{name: "csrattrs-no-client-auth", method: http.MethodGet, path: "csrattrs", noCert: true, want: 401},
		{name: "unknown-label", path: "nosuch/simpleenroll", body: b64(good), want: 404},
		{name: "unknown-op", path: "enroll", body: b64(good), want: 404},
		{name: "too-deep", path: "a/b/simpleenroll", body: b64(good), want: 404},
		{name: "wrong-method-get-enroll", method: http.MethodGet, path: "simpleenroll", want: 405},
		{name: "wrong-method-post-cacerts", path: "cacerts", body: b64(good), want: 405},
		{name: "wrong-method-put-label", method: http.MethodPut, path: "lab/simplereenroll", body: b64(good), want: 405},
		{name: "fullcmc", path: "fullcmc", ctype: "application/pkcs7-mime; smime-type=CMC-request", body: b64(good), want: 501},
		{name: "reenroll-names-differ", path: "simplereenroll", body: b64(buildCSR(t, csrSpec{subject: pkix.Name{CommonName: "SN-OTHER"}})), want: 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := e
			if tc.envOpts != nil {
				env = newEnv(t, tc.envOpts...)
			}
			if tc.method == "" {
				tc.method = http.MethodPost
			}
			if tc.path == "" {
				tc.path = "simpleenroll"
			}
			if tc.ctype == "" && tc.name != "no-content-type" && tc.method == http.MethodPost {
				tc.ctype = est.MediaPKCS10
			}
			var c *estConn
			if tc.noCert {
				c = env.dial(t, nil, 0)
			} else {
				c = env.dial(t, &env.idevid(t, "SN-REF-1").TLS, 0)
			}
			before := env.ca.calls.Load()
			r := c.do(t, tc.method, p+tc.path, tc.ctype, tc.body, tc.hdr...)
			if r.status != tc.want {
				t.Fatalf("status %d, want %d: %s", r.status, tc.want, r.body)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Fatalf("error Content-Type %q, want text/plain", ct)
			}
			// The shared env's count is checked once, after all subtests.
			if tc.envOpts != nil && env.ca.calls.Load() != before {
				t.Fatalf("CA called %d times on a refused request", env.ca.calls.Load())
			}
		})
	}
	t.Cleanup(func() {
		if n := e.ca.calls.Load(); n != 0 {
			t.Errorf("CA called %d times across refused requests, want 0", n)
		}
	})
}

// TestServer_Deferred: a back end's Deferred becomes 202 + Retry-After.
func TestServer_Deferred(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withConfig(func(c *est.Config) { c.RetryAfter = 42e9 }))
	e.ca.fail = &problem.Error{Kind: problem.Deferred, Detail: "waiting for operator approval"}
	dev := e.idevid(t, "SN-DEF-1")
	c := e.dial(t, &dev.TLS, 0)
	r := c.do(t, http.MethodPost, p+"simpleenroll", est.MediaPKCS10, b64(buildCSR(t, csrSpec{})))
	if r.status != http.StatusAccepted || r.header.Get("Retry-After") != "42" {
		t.Fatalf("status %d Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
}

// TestServer_ChannelBinding: a CSR bound to its connection passes under
// TLS 1.2 (tls-unique) and TLS 1.3 (tls-exporter); replayed on a second
// connection it is refused (reliability C08, C09).
func TestServer_ChannelBinding(t *testing.T) {
	t.Parallel()
	for _, v := range []struct {
		name string
		max  uint16
	}{{"tls12-unique", 0x0303}, {"tls13-exporter", 0x0304}} {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, withConfig(func(c *est.Config) { c.RequireChannelBinding = true }))
			dev := e.idevid(t, "SN-CB-1")
			c1 := e.dial(t, &dev.TLS, v.max)
			if got := c1.conn.ConnectionState().Version; got != v.max {
				t.Fatalf("negotiated %x, want %x", got, v.max)
			}
			csr := b64(buildCSR(t, csrSpec{challenge: c1.binding(t)}))
			certsOnly(t, c1.do(t, http.MethodPost, p+"simpleenroll", est.MediaPKCS10, csr))
			c2 := e.dial(t, &dev.TLS, v.max)
			before := e.ca.calls.Load()
			if r := c2.do(t, http.MethodPost, p+"simpleenroll", est.MediaPKCS10, csr); r.status != http.StatusUnauthorized {
				t.Fatalf("replayed CSR: status %d, want 401", r.status)
			}
			if e.ca.calls.Load() != before {
				t.Fatal("CA called for a replayed CSR")
			}
			// csrattrs advertises challengePassword when the binding is required.
			r := c2.do(t, http.MethodGet, p+"csrattrs", "", nil)
			der, _ := base64.StdEncoding.DecodeString(string(r.body))
			a, err := est.ParseCSRAttrs(der)
			if err != nil || !a.OIDs[0].Equal(est.OIDChallengePassword) {
				t.Fatalf("csrattrs does not ask for challengePassword: %+v %v", a, err)
			}
		})
	}
}

// TestServer_BasicAuth: configured Basic authenticates; a wrong password
// does not (RFC 7030 §3.2.3).
func TestServer_BasicAuth(t *testing.T) {
	t.Parallel()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, withConfig(func(c *est.Config) { c.Basic = est.BasicAuth{"SN-BASIC-1": string(hash)} }))
	c := e.dial(t, nil, 0)
	csr := b64(buildCSR(t, csrSpec{}))
	auth := func(u, pw string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+pw)) }
	if r := c.do(t, http.MethodPost, p+"simpleenroll", est.MediaPKCS10, csr, "Authorization", auth("SN-BASIC-1", "wrong")); r.status != 401 || r.header.Get("WWW-Authenticate") == "" {
		t.Fatalf("wrong password: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
	certsOnly(t, c.do(t, http.MethodPost, p+"simpleenroll", est.MediaPKCS10, csr, "Authorization", auth("SN-BASIC-1", "s3cret")))

	// RFC 7030 §3.2.3: never in the clear. The right password over plain
	// HTTP is refused without being checked, and the CA is not called.
	plain := httptest.NewServer(e.srv.Handler())
	t.Cleanup(plain.Close)
	before := e.ca.calls.Load()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, plain.URL+p+"simpleenroll", bytes.NewReader(csr))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", est.MediaPKCS10)
	req.Header.Set("Authorization", auth("SN-BASIC-1", "s3cret"))
	resp, err := plain.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" || e.ca.calls.Load() != before {
		t.Fatalf("Basic over plain HTTP: %d %q, CA calls +%d", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), e.ca.calls.Load()-before)
	}
}

// TestServer_FailClosedMatrix (reliability E07): every operation × method ×
// content type; only the documented combinations answer 2xx.
func TestServer_FailClosedMatrix(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dev := e.idevid(t, "SN-MAT-1")
	csr := b64(buildCSR(t, csrSpec{}))
	methods := []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions}
	ctypes := []string{"", est.MediaPKCS10, "application/pkcs7-mime", "text/plain", "application/json", "application/pkcs10; charset=x"}
	paths := []string{"cacerts", "csrattrs", "simpleenroll", "simplereenroll", "serverkeygen", "fullcmc", "lab/cacerts", "nosuch/cacerts", "requestvoucher", "", "x/y/z"}
	allowed := map[string]bool{
		"GET cacerts": true, "HEAD cacerts": true, "GET csrattrs": true, "HEAD csrattrs": true,
		"GET lab/cacerts": true, "HEAD lab/cacerts": true,
		"POST simpleenroll " + est.MediaPKCS10: true, "POST serverkeygen " + est.MediaPKCS10: true,
		"POST simpleenroll application/pkcs10; charset=x": true, "POST serverkeygen application/pkcs10; charset=x": true,
	}
	c := e.dial(t, &dev.TLS, 0)
	for _, path := range paths {
		for _, m := range methods {
			for _, ct := range ctypes {
				r := c.do(t, m, p+path, ct, csr)
				key := m + " " + path
				ok := allowed[key] || allowed[key+" "+ct]
				if (r.status >= 200 && r.status < 300) != ok {
					t.Errorf("%s %s (%q): status %d, 2xx allowed %v", m, path, ct, r.status, ok)
				}
				if r.status == 200 && strings.HasPrefix(path, "simplereenroll") {
					t.Errorf("reenroll with an IDevID whose names differ succeeded")
				}
			}
		}
	}
}
