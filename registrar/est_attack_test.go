package registrar_test

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/dsa" //nolint:staticcheck // a DSA key is the attack (reliability C03)
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/internal/web"
	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
	"github.com/gatehouse-pki/gatehouse/store"
)

// estRow is one row of attack tables C, D and E against the EST routes.
type estRow struct {
	name string
	edit func(*registrartest.Options)
	// setup runs before the state digest is taken; it returns what do
	// needs.
	setup func(t *testing.T, e *env) *estState
	do    func(t *testing.T, e *env, s *estState) outcome
	// wantCode is the status; 0 means a TLS failure.
	wantCode int
	// refused is the number of enroll-refused events the row adds (0 when
	// the EST edge refuses before the registrar is asked).
	refused int
	// noHealthy skips the closing legitimate enrolment (approve policy).
	noHealthy bool
}

// estState is an enrolled (or voucher-only) pledge.
type estState struct {
	p    *registrartest.Pledge
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func voucherOnly(serial string) func(*testing.T, *env) *estState {
	return func(t *testing.T, e *env) *estState {
		p := e.pledge(t, serial)
		e.onboard(t, p)
		return &estState{p: p}
	}
}

func enrolledState(serial string) func(*testing.T, *env) *estState {
	return func(t *testing.T, e *env) *estState {
		p, c, k := e.enrolled(t, serial)
		return &estState{p: p, cert: c, key: k}
	}
}

// enrollCSR posts a CSR built by csr to simpleenroll on the state's
// connection.
func enrollCSR(csr func(t *testing.T, e *env, s *estState) []byte) func(*testing.T, *env, *estState) outcome {
	return func(t *testing.T, e *env, s *estState) outcome {
		_, resp, b, err := s.p.EST(t.Context(), est.OpSimpleEnroll, csr(t, e, s))
		return outcome{resp, b, err}
	}
}

// viaLDevID re-enrolls over a new connection presenting the LDevID.
func viaLDevID(csr func(t *testing.T, e *env, s *estState) []byte) func(*testing.T, *env, *estState) outcome {
	return func(t *testing.T, e *env, s *estState) outcome {
		lp := registrartest.LDevIDPledge(t, e.reg, s.p.Serial, s.cert, s.key)
		_, resp, b, err := lp.EST(t.Context(), est.OpSimpleReenroll, csr(t, e, s))
		return outcome{resp, b, err}
	}
}

func csrFor(edit ...func(*x509.CertificateRequest)) func(*testing.T, *env, *estState) []byte {
	return func(t *testing.T, _ *env, s *estState) []byte {
		return registrartest.NewCSR(t, pkitest.NewKey(t), s.p.Serial, edit...)
	}
}

func csrWithKey(key func(t *testing.T, s *estState) crypto.Signer) func(*testing.T, *env, *estState) []byte {
	return func(t *testing.T, _ *env, s *estState) []byte {
		return registrartest.NewCSR(t, key(t, s), s.p.Serial)
	}
}

// md5CSR is a CSR for the pledge signed md5WithRSA (crypto/x509 refuses
// to write one).
func md5CSR(t *testing.T, _ *env, s *estState) []byte {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pkitest.HandCSR(t, pledgeSubject(t, s), spki, asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 4}, true, func(cri []byte) []byte {
		h := md5.Sum(cri)
		sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.MD5, h[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	})
}

// dsaCSR is a CSR for the pledge with a DSA key, signed dsa-with-sha256
// (crypto/x509 writes neither).
func dsaCSR(t *testing.T, _ *env, s *estState) []byte {
	var k dsa.PrivateKey
	if err := dsa.GenerateParameters(&k.Parameters, rand.Reader, dsa.L1024N160); err != nil {
		t.Fatal(err)
	}
	if err := dsa.GenerateKey(&k, rand.Reader); err != nil {
		t.Fatal(err)
	}
	params, err := asn1.Marshal(struct{ P, Q, G *big.Int }{k.P, k.Q, k.G})
	if err != nil {
		t.Fatal(err)
	}
	y, err := asn1.Marshal(k.Y)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := asn1.Marshal(struct {
		Algorithm pkix.AlgorithmIdentifier
		Key       asn1.BitString
	}{pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 1}, Parameters: asn1.RawValue{FullBytes: params}}, asn1.BitString{Bytes: y, BitLength: 8 * len(y)}})
	if err != nil {
		t.Fatal(err)
	}
	return pkitest.HandCSR(t, pledgeSubject(t, s), spki, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 2}, false, func(cri []byte) []byte {
		h := sha256.Sum256(cri)
		r, ss, err := dsa.Sign(rand.Reader, &k, h[:20]) // FIPS 186-3 §4.6: the hash truncated to N bits
		if err != nil {
			t.Fatal(err)
		}
		sig, err := asn1.Marshal(struct{ R, S *big.Int }{r, ss})
		if err != nil {
			t.Fatal(err)
		}
		return sig
	})
}

// pledgeSubject is the DER subject the default profile derives for the
// state's pledge.
func pledgeSubject(t *testing.T, s *estState) []byte {
	t.Helper()
	der, err := asn1.Marshal(pkix.Name{CommonName: s.p.Serial, SerialNumber: s.p.Serial}.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// relayedCSR is a valid CSR for the pledge whose challengePassword is the
// channel binding of another connection of the same pledge (its own TLS
// version): a CSR relayed from another session (reliability C09).
func relayedCSR(t *testing.T, e *env, s *estState) []byte {
	other := registrartest.NewPledge(t, e.reg, s.p.Serial, s.p.IDevID)
	other.Client.Transport.(*http.Transport).TLSClientConfig.MaxVersion = s.p.Client.Transport.(*http.Transport).TLSClientConfig.MaxVersion
	resp, _, err := other.Get(t.Context(), est.PathPrefix+"/"+est.OpCACerts)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("other connection: %v %v", err, resp)
	}
	binding, _, err := est.ChannelBinding(resp.TLS)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := est.CreateCSR(est.CSRRequest{RawSubject: pledgeSubject(t, s), ChallengePassword: binding}, pkitest.NewKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return csr.Raw
}

func rawPost(ctype string, body []byte) func(*testing.T, *env, *estState) outcome {
	return func(t *testing.T, _ *env, s *estState) outcome {
		resp, b, err := s.p.Post(t.Context(), est.PathPrefix+"/"+est.OpSimpleEnroll, ctype, body)
		return outcome{resp, b, err}
	}
}

// reconnect gives the state a new client with the same IDevID whose TLS
// configuration edit changed (the voucher's connection is kept alive).
func reconnect(t *testing.T, e *env, s *estState, edit func(*tls.Config)) {
	t.Helper()
	s.p = registrartest.NewPledge(t, e.reg, s.p.Serial, s.p.IDevID)
	edit(s.p.Client.Transport.(*http.Transport).TLSClientConfig)
}

func tls12(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }

func runESTRows(t *testing.T, rows []estRow) {
	t.Helper()
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(o *registrartest.Options) {
				if row.edit != nil {
					row.edit(o)
				}
			})
			var st *estState
			if row.setup != nil {
				st = row.setup(t, e)
			}
			digest := e.reg.StateDigest(t)
			seq := e.reg.AuditCount(t)
			o := row.do(t, e, st)
			switch {
			case row.wantCode == 0 && o.err == nil:
				t.Fatalf("got %s, want a TLS failure", o)
			case row.wantCode != 0 && (o.err != nil || o.resp.StatusCode != row.wantCode):
				t.Fatalf("got %s, want %d", o, row.wantCode)
			}
			if row.wantCode != http.StatusAccepted && e.reg.StateDigest(t) != digest {
				t.Errorf("state changed")
			}
			refused := 0
			for _, ev := range e.reg.AuditSince(t, seq) {
				if ev.Type == registrar.EnrollRefused {
					refused++
				}
			}
			if refused != row.refused {
				t.Errorf("enroll-refused events = %d, want %d", refused, row.refused)
			}
			if !row.noHealthy {
				// The registrar still enrols a legitimate pledge.
				e.enrolled(t, "SN-HEALTHY")
			}
		})
	}
}

func TestAttackTableC(t *testing.T) {
	t.Parallel()
	rows := []estRow{
		{name: "C01 no voucher flow", wantCode: 403, refused: 1,
			setup: func(t *testing.T, e *env) *estState { return &estState{p: e.pledge(t, "SN-C01")} },
			do:    enrollCSR(csrFor())},
		{name: "C02 CSR signature invalid", wantCode: 400, setup: voucherOnly("SN-C02"),
			do: enrollCSR(func(t *testing.T, e *env, s *estState) []byte { return flipLast(csrFor()(t, e, s)) })},
		{name: "C03 SHA-1 signature", wantCode: 400, setup: voucherOnly("SN-C03"),
			do: enrollCSR(csrFor(func(r *x509.CertificateRequest) { r.SignatureAlgorithm = x509.ECDSAWithSHA1 }))},
		{name: "C03 MD5 signature (RSA)", wantCode: 400, setup: voucherOnly("SN-C03M"), do: enrollCSR(md5CSR)},
		{name: "C03 DSA key", wantCode: 400, setup: voucherOnly("SN-C03D"), do: enrollCSR(dsaCSR)},
		{name: "C04 weak key P-224", wantCode: 400, setup: voucherOnly("SN-C04"),
			do: enrollCSR(csrWithKey(func(t *testing.T, _ *estState) crypto.Signer {
				k, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
				return k
			}))},
		{name: "C05 foreign DNS SAN", wantCode: 400, refused: 1, setup: voucherOnly("SN-C05"),
			do: enrollCSR(csrFor(func(r *x509.CertificateRequest) { r.DNSNames = []string{"evil.example"} }))},
		{name: "C05 foreign URI SAN", wantCode: 400, refused: 1, setup: voucherOnly("SN-C05U"),
			do: enrollCSR(csrFor(func(r *x509.CertificateRequest) { r.EmailAddresses = []string{"a@evil.example"} }))},
		{name: "C06 CA:TRUE requested", wantCode: 400, setup: voucherOnly("SN-C06"),
			do: enrollCSR(csrFor(func(r *x509.CertificateRequest) {
				v, _ := asn1.Marshal(struct{ CA bool }{true})
				r.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: v}}
			}))},
		{name: "C06 serverAuth requested", wantCode: 400, refused: 1, setup: voucherOnly("SN-C06S"),
			do: enrollCSR(csrFor(func(r *x509.CertificateRequest) {
				v, _ := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 1}})
				r.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Value: v}}
			}))},
		{name: "C07 subject names another device", wantCode: 400, refused: 1, setup: voucherOnly("SN-C07"),
			do: enrollCSR(func(t *testing.T, _ *env, _ *estState) []byte {
				return registrartest.NewCSR(t, pkitest.NewKey(t), "SN-OTHER")
			})},
		{name: "C08 TLS 1.2 without channel binding", wantCode: 401, refused: 1,
			setup: func(t *testing.T, e *env) *estState {
				s := voucherOnly("SN-C08")(t, e)
				reconnect(t, e, s, tls12)
				return s
			},
			do: enrollCSR(csrFor())},
		{name: "C09 binding of another TLS 1.3 session", wantCode: 401, setup: voucherOnly("SN-C09"), do: enrollCSR(relayedCSR)},
		{name: "C09 tls-unique of another TLS 1.2 session", wantCode: 401,
			setup: func(t *testing.T, e *env) *estState {
				s := voucherOnly("SN-C09-12")(t, e)
				reconnect(t, e, s, tls12)
				return s
			},
			do: enrollCSR(relayedCSR)},
		{name: "C10 key type not in csrattrs (Ed25519)", wantCode: 400, refused: 1, setup: voucherOnly("SN-C10"),
			do: enrollCSR(csrWithKey(func(t *testing.T, _ *estState) crypto.Signer {
				_, k, err := ed25519.GenerateKey(rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
				return k
			}))},
		{name: "C11 wrong content type", wantCode: 415, setup: voucherOnly("SN-C11"), do: rawPost("text/plain", []byte("MIIB"))},
		{name: "C12 body not base64", wantCode: 400, setup: voucherOnly("SN-C12"), do: rawPost(est.MediaPKCS10, []byte("%%%not base64%%%"))},
		{name: "C12 base64 of garbage", wantCode: 400, setup: voucherOnly("SN-C12G"), do: rawPost(est.MediaPKCS10, []byte(base64.StdEncoding.EncodeToString([]byte("garbage"))))},
		{name: "C12 DER with trailing bytes", wantCode: 400, setup: voucherOnly("SN-C12T"),
			do: func(t *testing.T, e *env, s *estState) outcome {
				der := append(csrFor()(t, e, s), 0x00)
				return rawPost(est.MediaPKCS10, est.EncodeBase64(der))(t, e, s)
			}},
		{name: "C13 CSR key is the IDevID key", wantCode: 400, refused: 1, setup: voucherOnly("SN-C13"),
			do: enrollCSR(csrWithKey(func(_ *testing.T, s *estState) crypto.Signer { return s.p.IDevID.PrivateKey.(crypto.Signer) }))},
		{name: "C13 CSR key certified for another device", wantCode: 400, refused: 1,
			setup: func(t *testing.T, e *env) *estState {
				other := enrolledState("SN-C13-A")(t, e)
				s := voucherOnly("SN-C13-B")(t, e)
				s.key = other.key
				return s
			},
			do: enrollCSR(csrWithKey(func(_ *testing.T, s *estState) crypto.Signer { return s.key }))},
		{name: "C14 blocked device", wantCode: 403, refused: 1,
			setup: func(t *testing.T, e *env) *estState {
				s := voucherOnly("SN-C14")(t, e)
				key := registrar.DeviceKeyFor(s.p.IDevID.Leaf, "SN-C14")
				if _, err := e.reg.DB().TransitionDevice(t.Context(), key, "", store.DeviceBlocked, "test"); err != nil {
					t.Fatal(err)
				}
				return s
			},
			do: enrollCSR(csrFor())},
		{name: "C14 denied device", wantCode: 403, refused: 1,
			setup: func(t *testing.T, e *env) *estState {
				s := voucherOnly("SN-C14D")(t, e)
				key := registrar.DeviceKeyFor(s.p.IDevID.Leaf, "SN-C14D")
				if _, err := e.reg.DB().TransitionDevice(t.Context(), key, "", store.DeviceDenied, "test"); err != nil {
					t.Fatal(err)
				}
				return s
			},
			do: enrollCSR(csrFor())},
		{name: "C15 body over 64 KiB", wantCode: 413, setup: voucherOnly("SN-C15"), do: rawPost(est.MediaPKCS10, bytes.Repeat([]byte("A"), 65<<10))},
		{name: "pending approval is 202", wantCode: 202, refused: 1, noHealthy: true,
			edit: func(o *registrartest.Options) { o.Policy = registrar.PolicyApprove },
			setup: func(t *testing.T, e *env) *estState {
				p := e.pledge(t, "SN-PEND")
				if o := send(t, p, p.Sign(t, p.Request(t))); o.err != nil || o.resp.StatusCode != 202 {
					t.Fatalf("voucher-request: %s", o)
				}
				return &estState{p: p}
			},
			do: enrollCSR(csrFor())},
	}
	runESTRows(t, rows)
}

func TestAttackTableD(t *testing.T) {
	t.Parallel()
	sameKeyCSR := func(t *testing.T, _ *env, s *estState) []byte { return registrartest.NewCSR(t, s.key, s.p.Serial) }
	revoke := func(t *testing.T, e *env, s *estState) {
		t.Helper()
		if err := e.reg.DB().Revoke(t.Context(), s.cert.SerialNumber, 1); err != nil {
			t.Fatal(err)
		}
	}
	rows := []estRow{
		{name: "D01 LDevID from a foreign CA", wantCode: 0, setup: voucherOnly("SN-D01"),
			do: func(t *testing.T, e *env, _ *estState) outcome {
				foreign := pkitest.NewCA(t, pkitest.Name("Foreign Domain CA"), pkitest.Clock(e.fc))
				key := pkitest.NewKey(t)
				c := foreign.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "SN-D01", SerialNumber: "SN-D01"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, key.Public())
				lp := registrartest.LDevIDPledge(t, e.reg, "SN-D01", c, key)
				_, resp, b, err := lp.EST(t.Context(), est.OpSimpleReenroll, registrartest.NewCSR(t, key, "SN-D01"))
				return outcome{resp, b, err}
			}},
		{name: "D02 revoked LDevID", wantCode: 403, refused: 1,
			setup: func(t *testing.T, e *env) *estState { s := enrolledState("SN-D02")(t, e); revoke(t, e, s); return s },
			do:    viaLDevID(sameKeyCSR)},
		{name: "D03 expired LDevID", wantCode: 401, refused: 1,
			edit: func(o *registrartest.Options) { o.LDevID = pki.Profile{Validity: time.Hour} },
			setup: func(t *testing.T, e *env) *estState {
				s := enrolledState("SN-D03")(t, e)
				e.fc.Add(2 * time.Hour)
				return s
			},
			do: viaLDevID(sameKeyCSR)},
		{name: "D04 CSR subject differs from the certificate", wantCode: 403, setup: enrolledState("SN-D04"),
			do: viaLDevID(func(t *testing.T, _ *env, s *estState) []byte {
				return registrartest.NewCSR(t, s.key, s.p.Serial, func(r *x509.CertificateRequest) { r.Subject.CommonName = "renamed" })
			})},
		{name: "D05 re-enroll with the IDevID", wantCode: 403, setup: enrolledState("SN-D05"),
			do: func(t *testing.T, _ *env, s *estState) outcome {
				_, resp, b, err := s.p.EST(t.Context(), est.OpSimpleReenroll, registrartest.NewCSR(t, pkitest.NewKey(t), s.p.Serial))
				return outcome{resp, b, err}
			}},
		{name: "D06 authenticated as A, CSR for B", wantCode: 403, setup: enrolledState("SN-D06"),
			do: viaLDevID(func(t *testing.T, _ *env, _ *estState) []byte {
				return registrartest.NewCSR(t, pkitest.NewKey(t), "SN-D06-B")
			})},
		{name: "D07 LDevID without its key", wantCode: 0, setup: enrolledState("SN-D07"),
			do: func(t *testing.T, e *env, s *estState) outcome {
				lp := registrartest.LDevIDPledge(t, e.reg, s.p.Serial, s.cert, pkitest.NewKey(t))
				_, resp, b, err := lp.EST(t.Context(), est.OpSimpleReenroll, sameKeyCSR(t, e, s))
				return outcome{resp, b, err}
			}},
		{name: "D08 revoked after the connection was made", wantCode: 403, refused: 1,
			setup: func(t *testing.T, e *env) *estState {
				s := enrolledState("SN-D08")(t, e)
				lp := registrartest.LDevIDPledge(t, e.reg, s.p.Serial, s.cert, s.key)
				// Open the connection with a valid LDevID (a status report).
				if resp, _, err := lp.Post(t.Context(), registrar.PathEnrollStatus, registrar.MediaTypeJSON, []byte(`{"version":1,"status":true}`)); err != nil || resp.StatusCode != 200 {
					t.Fatalf("enrollstatus: %v %v", err, resp)
				}
				revoke(t, e, s)
				return &estState{p: lp, cert: s.cert, key: s.key}
			},
			do: func(t *testing.T, e *env, s *estState) outcome {
				_, resp, b, err := s.p.EST(t.Context(), est.OpSimpleReenroll, sameKeyCSR(t, e, s))
				return outcome{resp, b, err}
			}},
	}
	runESTRows(t, rows)
}

func TestAttackTableE_EST(t *testing.T) {
	t.Parallel()
	withTLS := func(edit func(*tls.Config)) func(*testing.T, *env, *estState) outcome {
		return func(t *testing.T, e *env, s *estState) outcome {
			reconnect(t, e, s, edit)
			_, resp, b, err := s.p.EST(t.Context(), est.OpSimpleEnroll, registrartest.NewCSR(t, pkitest.NewKey(t), s.p.Serial))
			return outcome{resp, b, err}
		}
	}
	rows := []estRow{
		{name: "E01 TLS 1.1", wantCode: 0, setup: voucherOnly("SN-E01"),
			do: withTLS(func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 })},
		{name: "E02 TLS 1.2 CBC-only suites", wantCode: 0, setup: voucherOnly("SN-E02"),
			do: withTLS(func(c *tls.Config) {
				c.MaxVersion = tls.VersionTLS12
				c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_128_CBC_SHA}
			})},
		{name: "E03 plain HTTP to the TLS port", wantCode: 400, setup: voucherOnly("SN-E03"),
			do: func(t *testing.T, e *env, _ *estState) outcome {
				conn, err := (&net.Dialer{}).DialContext(t.Context(), "tcp", e.reg.Addr)
				if err != nil {
					t.Fatal(err)
				}
				defer func() { _ = conn.Close() }()
				if _, err := conn.Write([]byte("POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					return outcome{err: err}
				}
				defer func() { _ = resp.Body.Close() }()
				return outcome{resp: resp}
			}},
		{name: "E04 HTTP Basic instead of a certificate", wantCode: 401,
			setup: func(t *testing.T, e *env) *estState {
				return &estState{p: registrartest.NewPledge(t, e.reg, "SN-E04", tls.Certificate{})}
			},
			do: func(t *testing.T, _ *env, s *estState) outcome {
				body := base64.StdEncoding.EncodeToString(registrartest.NewCSR(t, pkitest.NewKey(t), "SN-E04"))
				resp, b, err := s.p.Post(t.Context(), est.PathPrefix+"/"+est.OpSimpleEnroll, est.MediaPKCS10, []byte(body), "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("admin:admin")))
				return outcome{resp, b, err}
			}},
	}
	runESTRows(t, rows)
}

// TestAttackTableG_EST: G04 and G06 on the EST routes (G01–G03 in
// TestServerTimeouts; G08 in TestAttackTableA; G05 in internal/web, web.LimitListener and
// NewServer's IdleTimeout).
func TestAttackTableG_EST(t *testing.T) {
	t.Parallel()
	get := func(t *testing.T, p *registrartest.Pledge, op string) outcome {
		resp, b, err := p.Get(t.Context(), est.PathPrefix+"/"+op)
		return outcome{resp, b, err}
	}
	retryAfter := func(do func(*testing.T, *env, *estState) outcome) func(*testing.T, *env, *estState) outcome {
		return func(t *testing.T, e *env, s *estState) outcome {
			o := do(t, e, s)
			if o.err == nil && o.resp.Header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
			return o
		}
	}
	rows := []estRow{
		{name: "G04 header section over 16 KiB", wantCode: 431, setup: voucherOnly("SN-G04E"),
			do: func(t *testing.T, e *env, s *estState) outcome {
				// HTTP/1.1, so the limit is the server's MaxHeaderBytes.
				reconnect(t, e, s, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
				s.p.Client.Transport.(*http.Transport).ForceAttemptHTTP2 = false
				body := est.EncodeBase64(registrartest.NewCSR(t, pkitest.NewKey(t), s.p.Serial))
				resp, b, err := s.p.Post(t.Context(), est.PathPrefix+"/"+est.OpSimpleEnroll, est.MediaPKCS10, body, "X-Big", strings.Repeat("a", 32<<10))
				return outcome{resp, b, err}
			}},
		{name: "G06 per-IDevID limit on simpleenroll", wantCode: 429,
			edit: func(o *registrartest.Options) {
				o.Config = func(c *registrar.Config) { c.PerIDevID = registrar.RateLimit{Rate: 0.001, Burst: 2} }
			},
			setup: func(t *testing.T, e *env) *estState {
				s := voucherOnly("SN-G06E")(t, e)
				if o := get(t, s.p, est.OpCACerts); o.err != nil || o.resp.StatusCode != http.StatusOK {
					t.Fatalf("cacerts: %s", o)
				}
				return s
			},
			do: retryAfter(enrollCSR(csrFor()))},
		{name: "G06 per-IP limit on anonymous cacerts", wantCode: 429, noHealthy: true,
			edit: func(o *registrartest.Options) {
				o.Config = func(c *registrar.Config) { c.PerIP = registrar.RateLimit{Rate: 0.001, Burst: 1} }
			},
			setup: func(t *testing.T, e *env) *estState {
				p := registrartest.NewPledge(t, e.reg, "anonymous", tls.Certificate{})
				if o := get(t, p, est.OpCACerts); o.err != nil || o.resp.StatusCode != http.StatusOK {
					t.Fatalf("first cacerts: %s", o)
				}
				return &estState{p: p}
			},
			do: retryAfter(func(t *testing.T, _ *env, s *estState) outcome { return get(t, s.p, est.OpCACerts) })},
	}
	runESTRows(t, rows)
}

// TestAttackE07_ESTMatrix: every EST path × method; only the documented
// pairs reach a handler, the rest fail closed (405 or 404).
func TestAttackE07_ESTMatrix(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.pledge(t, "SN-E07")
	e.onboard(t, p)
	allowed := map[string]string{
		est.OpCACerts: http.MethodGet, est.OpCSRAttrs: http.MethodGet, est.OpSimpleEnroll: http.MethodPost,
		est.OpSimpleReenroll: http.MethodPost, est.OpServerKeyGen: http.MethodPost, est.OpFullCMC: http.MethodPost,
	}
	digest := e.reg.StateDigest(t)
	for op, method := range allowed {
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
			if m == method {
				continue
			}
			req, err := http.NewRequestWithContext(t.Context(), m, e.reg.URL+est.PathPrefix+"/"+op, strings.NewReader("x"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := p.Client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("%s %s = %d, want 405", m, op, resp.StatusCode)
			}
		}
	}
	for _, path := range []string{"/bogus", "/a/b/simpleenroll", "/unknownlabel/simpleenroll"} {
		resp, _, err := p.Post(t.Context(), est.PathPrefix+path, est.MediaPKCS10, []byte("MIIB"))
		if err != nil || resp.StatusCode != http.StatusNotFound {
			t.Errorf("POST %s = %v %v, want 404", path, resp, err)
		}
	}
	if e.reg.StateDigest(t) != digest {
		t.Error("state changed")
	}
}

// TestServerTimeouts covers G01–G03: the registrar's listener is built by
// web.NewServer with the D1 timeouts, which also bound the TLS handshake;
// a stalled handshake on a server built the same way with a short timeout
// is closed within it.
func TestServerTimeouts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	srv := e.reg.Server
	if srv.ReadHeaderTimeout <= 0 || srv.ReadHeaderTimeout > 10*time.Second || srv.ReadTimeout <= 0 || srv.ReadTimeout > 30*time.Second ||
		srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 || srv.IdleTimeout > 60*time.Second {
		t.Errorf("timeouts = %s/%s/%s/%s, want ≤ 10 s/30 s/…/60 s", srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout)
	}
	short := web.NewServer(e.reg.Service.HandlerWith(e.reg.EST), nil, slog.New(slog.DiscardHandler))
	e.reg.Service.ConfigureServer(short)
	short.ReadHeaderTimeout, short.ReadTimeout = 300*time.Millisecond, 300*time.Millisecond
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = short.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = short.Close() })
	for _, name := range []string{"G03 stalled handshake", "G01 slowloris headers", "G02 slow body"} {
		conn, err := (&net.Dialer{}).DialContext(t.Context(), "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if name == "G01 slowloris headers" {
			// A TLS handshake, then one header byte and silence.
			tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
			if err := tc.HandshakeContext(t.Context()); err != nil {
				t.Fatal(err)
			}
			_, _ = tc.Write([]byte("P"))
			conn = tc
		}
		if name == "G02 slow body" {
			// Whole headers announcing a body, one byte of it, silence.
			tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
			if err := tc.HandshakeContext(t.Context()); err != nil {
				t.Fatal(err)
			}
			_, _ = tc.Write([]byte("POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/pkcs10\r\nContent-Length: 4000\r\n\r\nM"))
			conn = tc
		}
		start := time.Now()
		_ = conn.SetReadDeadline(start.Add(5 * time.Second))
		// The server may answer (408/400) before it closes; read to the end.
		_, err = io.Copy(io.Discard, conn)
		if time.Since(start) > 3*time.Second {
			t.Errorf("%s: connection not closed within the timeout (%v after %s)", name, err, time.Since(start))
		}
		_ = conn.Close()
	}
}
