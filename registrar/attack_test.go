package registrar_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitorus/pkcs7"

	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/masa/masatest"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
	"github.com/gatehouse-pki/gatehouse/store"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

// outcome is what an attack got: a status, or a transport failure.
type outcome struct {
	resp *http.Response
	body []byte
	err  error
}

func (o outcome) String() string {
	if o.err != nil {
		return "transport error: " + o.err.Error()
	}
	return http.StatusText(o.resp.StatusCode) + ": " + string(o.body)
}

// attack is one row of the attack tables (reliability §2.5).
type attack struct {
	name string
	env  envOptions
	// setup runs before the state is recorded.
	setup func(t *testing.T, e *env) any
	// do performs the attack.
	do func(t *testing.T, e *env, state any) outcome
	// wantCode is the status; 0 means a TLS failure.
	wantCode int
	// refused is the number of refusal audit events (vr-refused,
	// masa-refused) the attack adds.
	refused int
	// masaZero marks ✱ rows: no MASA call.
	masaZero bool
	// check runs extra assertions.
	check func(t *testing.T, e *env, state any, o outcome)
}

// post builds and posts a PVR from pledge serial, after mutate.
func post(serial string, mutate func(*voucher.Request), opts ...pkitest.Option) func(*testing.T, *env, any) outcome {
	return func(t *testing.T, e *env, _ any) outcome {
		p := e.pledge(t, serial, opts...)
		req := p.Request(t)
		if mutate != nil {
			mutate(req)
		}
		return send(t, p, p.Sign(t, req))
	}
}

// postSigned posts the bytes sign returns for a fresh pledge.
func postSigned(serial string, sign func(t *testing.T, e *env, p *registrartest.Pledge) []byte) func(*testing.T, *env, any) outcome {
	return func(t *testing.T, e *env, _ any) outcome {
		p := e.pledge(t, serial)
		return send(t, p, sign(t, e, p))
	}
}

func send(t *testing.T, p *registrartest.Pledge, body []byte, ctype ...string) outcome {
	t.Helper()
	ct := registrar.MediaTypeVoucherCMS
	if len(ctype) > 0 {
		ct = ctype[0]
	}
	resp, b, err := p.Post(t.Context(), registrar.PathRequestVoucher, ct, body)
	return outcome{resp, b, err}
}

// withIDevID posts a valid-looking PVR over TLS presenting cert.
func withIDevID(serial string, cert func(t *testing.T, e *env) tls.Certificate) func(*testing.T, *env, any) outcome {
	return func(t *testing.T, e *env, _ any) outcome {
		c := cert(t, e)
		p := registrartest.NewPledge(t, e.reg, serial, c)
		// The handshake fails before any body matters.
		return send(t, p, []byte("x"))
	}
}

// rawIDevID issues an IDevID from tmpl under ca.
func rawIDevID(t *testing.T, ca *pkitest.CA, serial string, edit func(*x509.Certificate)) tls.Certificate {
	t.Helper()
	key := pkitest.NewKey(t)
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: "Pledge " + serial, SerialNumber: serial}, KeyUsage: x509.KeyUsageDigitalSignature}
	if edit != nil {
		edit(tmpl)
	}
	cert := ca.Issue(t, tmpl, key.Public())
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

func flipLast(b []byte) []byte {
	out := bytes.Clone(b)
	out[len(out)-1] ^= 0x01
	return out
}

func TestAttackTableA(t *testing.T) {
	t.Parallel()
	rows := []attack{
		{name: "A01 no client certificate", masaZero: true, wantCode: 401, refused: 1,
			do: func(t *testing.T, e *env, _ any) outcome {
				p := registrartest.NewPledge(t, e.reg, "SN-A01", tls.Certificate{})
				return send(t, p, []byte("x"))
			}},
		{name: "A02 IDevID from an unknown CA", masaZero: true, wantCode: 0,
			do: withIDevID("SN-A02", func(t *testing.T, e *env) tls.Certificate {
				return pkitest.NewIDevID(t, pkitest.NewCA(t, pkitest.Name("Rogue Mfg"), pkitest.Clock(e.fc)), "SN-A02", e.masaAuthority()).TLS
			})},
		{name: "A03 not on the allowlist", masaZero: true, wantCode: 403, refused: 1,
			env: envOptions{edit: func(o *registrartest.Options) {
				o.Policy, o.Allowlist = registrar.PolicyAllowlist, []string{"SN-HEALTHY"}
			}},
			do: post("SN-A03", nil)},
		{name: "A04 expired IDevID", masaZero: true, wantCode: 0,
			do: withIDevID("SN-A04", func(t *testing.T, e *env) tls.Certificate {
				return pkitest.NewIDevID(t, e.mfg, "SN-A04", e.masaAuthority(), pkitest.Expired()).TLS
			})},
		{name: "G08 client chain of 50 intermediates", masaZero: true, wantCode: 0,
			do: withIDevID("SN-G08", func(t *testing.T, e *env) tls.Certificate {
				ca := e.mfg
				for i := range 50 {
					ca = ca.SubCA(t, fmt.Sprintf("Deep Sub CA %02d", i+1))
				}
				id := pkitest.NewIDevID(t, ca, "SN-G08", e.masaAuthority())
				if n := len(id.TLS.Certificate); n != 51 {
					t.Fatalf("the pledge presents %d certificates, want 51", n)
				}
				return id.TLS
			})},
		{name: "A05 IDevID not yet valid", masaZero: true, wantCode: 0,
			do: withIDevID("SN-A05", func(t *testing.T, e *env) tls.Certificate {
				return rawIDevID(t, e.mfg, "SN-A05", func(c *x509.Certificate) {
					c.NotBefore, c.NotAfter = e.fc.Now().Add(24*time.Hour), e.fc.Now().Add(48*time.Hour)
				})
			})},
		{name: "A05 IDevID with a tampered signature", masaZero: true, wantCode: 0,
			do: withIDevID("SN-A05T", func(t *testing.T, e *env) tls.Certificate {
				c := pkitest.NewIDevID(t, e.mfg, "SN-A05T", e.masaAuthority()).TLS
				bad := flipLast(c.Certificate[0])
				leaf, err := x509.ParseCertificate(bad)
				if err != nil {
					t.Fatal(err)
				}
				return tls.Certificate{Certificate: [][]byte{bad}, PrivateKey: c.PrivateKey, Leaf: leaf}
			})},
		{name: "A06 IDevID without its private key", masaZero: true, wantCode: 0,
			do: withIDevID("SN-A06", func(t *testing.T, e *env) tls.Certificate {
				c := pkitest.NewIDevID(t, e.mfg, "SN-A06", e.masaAuthority()).TLS
				c.PrivateKey = pkitest.NewKey(t)
				return c
			})},
		{name: "A07 IDevID without serialNumber", masaZero: true, wantCode: 404, refused: 1,
			do: func(t *testing.T, e *env, _ any) outcome {
				id := pkitest.NewIDevID(t, e.mfg, "SN-A07", e.masaAuthority(), pkitest.NoSerialNumber())
				p := registrartest.NewPledge(t, e.reg, "SN-A07", id.TLS)
				return send(t, p, p.Sign(t, p.Request(t)))
			}},
		{name: "A07 serial longer than 64 characters", masaZero: true, wantCode: 400, refused: 1,
			do: post(strings.Repeat("S", 65), nil, pkitest.NonConforming("attack row A07: a serialNumber over 64 characters"))},
		{name: "A08 serial-number differs from the IDevID", masaZero: true, wantCode: 400, refused: 1,
			do: post("SN-A08", func(r *voucher.Request) { r.SerialNumber = "SN-OTHER" })},
		{name: "A09 signed by another device's IDevID", masaZero: true, wantCode: 403, refused: 1,
			do: postSigned("SN-A09", func(t *testing.T, e *env, p *registrartest.Pledge) []byte {
				other := pkitest.NewIDevID(t, e.mfg, "SN-A09", e.masaAuthority())
				payload, err := p.Request(t).MarshalJSON()
				if err != nil {
					t.Fatal(err)
				}
				return registrartest.SignWith(t, payload, other.Key, other.Cert)
			})},
		{name: "A10 bad CMS signature", masaZero: true, wantCode: 400, refused: 1,
			do: postSigned("SN-A10", func(t *testing.T, _ *env, p *registrartest.Pledge) []byte {
				return flipLast(p.Sign(t, p.Request(t)))
			})},
		{name: "A10 messageDigest mismatch", masaZero: true, wantCode: 400, refused: 1,
			do: postSigned("SN-A10D", func(t *testing.T, _ *env, p *registrartest.Pledge) []byte {
				signed := p.Sign(t, p.Request(t))
				return bytes.Replace(signed, []byte(`"proximity"`), []byte(`"proximitx"`), 1)
			})},
		{name: "A11 unsigned JSON", masaZero: true, wantCode: 415, refused: 1,
			do: func(t *testing.T, e *env, _ any) outcome {
				p := e.pledge(t, "SN-A11")
				payload, _ := p.Request(t).MarshalJSON()
				return send(t, p, payload, "application/json")
			}},
		{name: "A11 unknown media type", masaZero: true, wantCode: 415, refused: 1,
			do: func(t *testing.T, e *env, _ any) outcome {
				p := e.pledge(t, "SN-A11U")
				return send(t, p, p.Sign(t, p.Request(t)), "application/x-unknown")
			}},
		{name: "A12 nonce missing", masaZero: true, wantCode: 400, refused: 1,
			do: post("SN-A12", func(r *voucher.Request) { r.Nonce = nil })},
		{name: "A12 nonce too short", masaZero: true, wantCode: 400, refused: 1,
			do: post("SN-A12S", func(r *voucher.Request) { r.Nonce = []byte("1234567") })},
		{name: "A12 nonce too long", masaZero: true, wantCode: 400, refused: 1,
			do: post("SN-A12L", func(r *voucher.Request) { r.Nonce = bytes.Repeat([]byte{1}, 65) })},
		{name: "A13 assertion not proximity", masaZero: true, wantCode: 400, refused: 1,
			do: post("SN-A13", func(r *voucher.Request) { r.Assertion = voucher.AssertionVerified })},
		{name: "A14 proximity-registrar-cert of another registrar", masaZero: true, wantCode: 401, refused: 1,
			do: func(t *testing.T, e *env, _ any) outcome {
				mitm := pkitest.NewRACert(t, pkitest.NewCA(t, pkitest.Clock(e.fc)), nil)
				return post("SN-A14", func(r *voucher.Request) { r.ProximityRegistrarCert = mitm.Cert.Raw })(t, e, nil)
			},
			check: requireClose},
		{name: "A14 proximity-registrar-cert absent", masaZero: true, wantCode: 401, refused: 1,
			do: post("SN-A14A", func(r *voucher.Request) { r.ProximityRegistrarCert = nil }), check: requireClose},
		{name: "A15 a different request reusing a used nonce", wantCode: 403, refused: 1, masaZero: true,
			setup: func(t *testing.T, e *env) any {
				p := e.pledge(t, "SN-A15")
				req := p.Request(t)
				e.onboardReq(t, p, req)
				return [2]any{p, req}
			},
			do: func(t *testing.T, _ *env, st any) outcome {
				p, req := st.([2]any)[0].(*registrartest.Pledge), st.([2]any)[1].(*voucher.Request)
				req.CreatedOn = req.CreatedOn.Add(time.Second)
				return send(t, p, p.Sign(t, req))
			},
			check: func(t *testing.T, e *env, _ any, _ outcome) {
				evs := e.reg.AuditSince(t, 0)
				if last := evs[len(evs)-1]; last.Type != audit.VRRefused || last.Fields["alert"] != "nonce-reuse" {
					t.Errorf("last audit event = %+v, want a nonce-reuse alert", last)
				}
			}},
		{name: "A16 duplicate JSON key", masaZero: true, wantCode: 400, refused: 1,
			do: postSigned("SN-A16", func(t *testing.T, _ *env, p *registrartest.Pledge) []byte {
				return signJSONVariant(t, p, `"serial-number":"SN-A16","serial-number":"SN-A16"`)
			})},
		{name: "A16 case-variant key", masaZero: true, wantCode: 400, refused: 1,
			do: postSigned("SN-A16C", func(t *testing.T, _ *env, p *registrartest.Pledge) []byte {
				return signJSONVariant(t, p, `"Serial-Number":"SN-A16C"`)
			})},
		{name: "A17 CMS with more than 8 certificates", masaZero: true, wantCode: 400, refused: 1,
			do: postSigned("SN-A17", func(t *testing.T, e *env, p *registrartest.Pledge) []byte {
				payload, _ := p.Request(t).MarshalJSON()
				sd, err := pkcs7.NewSignedData(payload)
				if err != nil {
					t.Fatal(err)
				}
				sd.SetContentType(voucher.OIDAnimaJSONVoucher)
				sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
				if err := sd.AddSigner(p.IDevID.Leaf, p.IDevID.PrivateKey, pkcs7.SignerInfoConfig{}); err != nil {
					t.Fatal(err)
				}
				for range 9 {
					sd.AddCertificate(e.dom.Root())
				}
				out, err := sd.Finish()
				if err != nil {
					t.Fatal(err)
				}
				return out
			})},
		{name: "A18 eContentType is not id-ct-animaJSONVoucher", masaZero: true, wantCode: 400, refused: 1,
			do: postSigned("SN-A18", func(t *testing.T, _ *env, p *registrartest.Pledge) []byte {
				payload, _ := p.Request(t).MarshalJSON()
				sd, err := pkcs7.NewSignedData(payload)
				if err != nil {
					t.Fatal(err)
				}
				sd.SetContentType(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 99})
				sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
				if err := sd.AddSigner(p.IDevID.Leaf, p.IDevID.PrivateKey, pkcs7.SignerInfoConfig{}); err != nil {
					t.Fatal(err)
				}
				out, err := sd.Finish()
				if err != nil {
					t.Fatal(err)
				}
				return out
			})},
		{name: "A19 backdated signingTime, signer expired now", masaZero: true, wantCode: 400, refused: 1,
			do: func(t *testing.T, e *env, _ any) outcome {
				key := pkitest.NewKey(t)
				cur := pkitest.NewIDevID(t, e.mfg, "SN-A19", e.masaAuthority(), pkitest.Key(key))
				old := pkitest.NewIDevID(t, e.mfg, "SN-A19", e.masaAuthority(), pkitest.Key(key), pkitest.Expired())
				p := registrartest.NewPledge(t, e.reg, "SN-A19", cur.TLS)
				payload, _ := p.Request(t).MarshalJSON()
				return send(t, p, registrartest.SignWith(t, payload, key, old.Cert, voucher.CMSOptions{SigningTime: old.Cert.NotBefore.Add(time.Hour)}))
			}},
		{name: "A20 MASA URL not allowed (a host we listen on)", masaZero: true, wantCode: 403, refused: 1,
			setup: func(t *testing.T, _ *env) any {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = ln.Close() })
				return ln
			},
			do: func(t *testing.T, e *env, st any) outcome {
				ln := st.(net.Listener)
				id := pkitest.NewIDevID(t, e.mfg, "SN-A20", ln.Addr().String())
				p := registrartest.NewPledge(t, e.reg, "SN-A20", id.TLS)
				return send(t, p, p.Sign(t, p.Request(t)))
			},
			check: func(t *testing.T, _ *env, st any, _ outcome) {
				// A20: no outbound connection reached the listener. Any
				// connection attempt would have completed before the 403, so
				// it would be queued now.
				ln := st.(*net.TCPListener)
				_ = ln.SetDeadline(time.Now().Add(50 * time.Millisecond))
				if c, err := ln.Accept(); err == nil {
					_ = c.Close()
					t.Errorf("the registrar connected to the disallowed MASA host")
				}
			}},
		{name: "A20 MASA URL with a bad port", masaZero: true, wantCode: 403, refused: 1,
			do: func(t *testing.T, e *env, _ any) outcome {
				id := pkitest.NewIDevID(t, e.mfg, "SN-A20P", "127.0.0.1:admin")
				p := registrartest.NewPledge(t, e.reg, "SN-A20P", id.TLS)
				return send(t, p, p.Sign(t, p.Request(t)))
			}},
		{name: "A21 body over 64 KiB", masaZero: true, wantCode: 413, refused: 1,
			do: func(t *testing.T, e *env, _ any) outcome {
				p := e.pledge(t, "SN-A21")
				return send(t, p, bytes.Repeat([]byte{0x30}, 64<<10+1))
			}},
		{name: "A22 device blocked after an audit-log failure", masaZero: true, wantCode: 406, refused: 1,
			setup: func(t *testing.T, e *env) any {
				p := e.pledge(t, "SN-A22")
				_, err := e.reg.DB().PutDevice(t.Context(), store.Device{Key: registrar.DeviceKeyFor(p.IDevID.Leaf, "SN-A22"), Status: store.DeviceBlocked, StatusReason: "audit log"})
				if err != nil {
					t.Fatal(err)
				}
				return p
			},
			do: func(t *testing.T, _ *env, st any) outcome {
				p := st.(*registrartest.Pledge)
				return send(t, p, p.Sign(t, p.Request(t)))
			}},
		{name: "A23 wrong method on a BRSKI URL", masaZero: true, wantCode: 405,
			do: func(t *testing.T, e *env, _ any) outcome {
				p := e.pledge(t, "SN-A23")
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.reg.URL+registrar.PathRequestVoucher, nil)
				return do(p, req)
			}},
		{name: "A23 unknown brski operation", masaZero: true, wantCode: 404,
			do: func(t *testing.T, e *env, _ any) outcome {
				p := e.pledge(t, "SN-A23U")
				resp, b, err := p.Post(t.Context(), "/.well-known/brski/requestvoucherx", registrar.MediaTypeVoucherCMS, []byte("x"))
				return outcome{resp, b, err}
			}},
	}
	runAttacks(t, rows)
}

func do(p *registrartest.Pledge, req *http.Request) outcome {
	resp, err := p.Client.Do(req)
	if err != nil {
		return outcome{err: err}
	}
	defer func() { _ = resp.Body.Close() }()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return outcome{resp, buf.Bytes(), nil}
}

func requireClose(t *testing.T, _ *env, _ any, o outcome) {
	t.Helper()
	if o.resp != nil && !o.resp.Close && o.resp.Header.Get("Connection") != "close" && o.resp.ProtoMajor < 2 {
		t.Errorf("connection not closed after a failed proximity check")
	}
}

// signJSONVariant signs a hand-written PVR whose members include extra.
func signJSONVariant(t *testing.T, p *registrartest.Pledge, members string) []byte {
	t.Helper()
	payload := `{"ietf-voucher-request:voucher":{"assertion":"proximity","nonce":"AAECAwQFBgcICQoLDA0ODw==",` + members + `}}`
	return registrartest.SignWith(t, []byte(payload), p.IDevID.PrivateKey.(crypto.Signer), p.IDevID.Leaf)
}

func runAttacks(t *testing.T, rows []attack) {
	t.Helper()
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			t.Parallel()
			e := newEnvWith(t, row.env)
			var st any
			if row.setup != nil {
				st = row.setup(t, e)
			}
			digest := e.reg.StateDigest(t)
			seq := e.reg.AuditCount(t)
			masa0 := e.masaRequests(t)

			o := row.do(t, e, st)

			switch {
			case row.wantCode == 0 && o.err == nil:
				t.Fatalf("got %s, want a TLS failure", o)
			case row.wantCode != 0 && (o.err != nil || o.resp.StatusCode != row.wantCode):
				t.Fatalf("got %s, want %d", o, row.wantCode)
			}
			if got := e.reg.StateDigest(t); got != digest {
				t.Errorf("state changed")
			}
			refused := 0
			for _, ev := range e.reg.AuditSince(t, seq) {
				if ev.Type == audit.VRRefused || ev.Type == audit.MASARefused {
					refused++
				}
			}
			if refused != row.refused {
				t.Errorf("refusal audit events = %d, want %d", refused, row.refused)
			}
			if row.masaZero {
				if got := e.masaRequests(t) - masa0; got != 0 {
					t.Errorf("MASA requests = %d, want 0", got)
				}
			}
			if row.check != nil {
				row.check(t, e, st, o)
			}
			if !row.env.adversarial {
				// The registrar still serves a legitimate pledge.
				e.onboard(t, e.pledge(t, "SN-HEALTHY"))
			}
		})
	}
}

func TestAttackTableB(t *testing.T) {
	t.Parallel()
	adv := func(m masatest.Mode) envOptions { return envOptions{adversarial: true, mode: m} }
	fast := func(o *registrartest.Options) {
		o.Config = func(c *registrar.Config) { c.MASATimeout = 300 * time.Millisecond }
	}
	// notIssued checks the device was not moved to voucher-issued.
	notIssued := func(t *testing.T, e *env, _ any, _ outcome) {
		page, err := e.reg.DB().ListDevices(t.Context(), store.DeviceFilter{Status: store.DeviceVoucherIssued})
		if err != nil || len(page.Devices) != 0 {
			t.Errorf("voucher-issued devices = %v (%v)", page.Devices, err)
		}
	}
	retryAfter := func(t *testing.T, e *env, st any, o outcome) {
		notIssued(t, e, st, o)
		if ra := o.resp.Header.Get("Retry-After"); ra == "" || len(ra) > 2 {
			t.Errorf("Retry-After = %q, want 1..60 s", ra)
		}
	}
	rows := []attack{
		{name: "B01 voucher signed by a foreign key", env: adv(masatest.ModeForeignKey), wantCode: 502, refused: 1, do: post("SN-B01", nil), check: notIssued},
		{name: "B02 voucher for another serial", env: adv(masatest.ModeWrongSerial), wantCode: 502, refused: 1, do: post("SN-B02", nil), check: notIssued},
		{name: "B03 voucher nonce differs", env: adv(masatest.ModeWrongNonce), wantCode: 502, refused: 1, do: post("SN-B03", nil), check: notIssued},
		{name: "B04 voucher expired", env: adv(masatest.ModeExpired), wantCode: 502, refused: 1, do: post("SN-B04", nil), check: notIssued},
		{name: "B04 voucher created in the future", env: adv(masatest.ModeCreatedInFuture), wantCode: 502, refused: 1, do: post("SN-B04F", nil), check: notIssued},
		{name: "B05 pinned-domain-cert not ours", env: adv(masatest.ModeWrongPin), wantCode: 502, refused: 1, do: post("SN-B05", nil), check: notIssued},
		{name: "B05 pinned-domain-cert missing", env: adv(masatest.ModeNoPin), wantCode: 502, refused: 1, do: post("SN-B05M", nil), check: notIssued},
		{name: "B06 expired MASA signer, backdated signingTime", env: adv(masatest.ModeExpiredSigner), wantCode: 502, refused: 1, do: post("SN-B06", nil), check: notIssued},
		{name: "B07 COSE voucher with an unusable algorithm", env: envOptions{stub: true, adversarial: true}, wantCode: 502, refused: 1,
			setup: func(_ *testing.T, e *env) any { e.stub.setMode(modeCOSE); return nil }, do: post("SN-B07", nil), check: notIssued},
		{name: "B08 MASA 403", env: adv(masatest.ModeForbidden), wantCode: 406, refused: 1, do: post("SN-B08", nil), check: notIssued},
		{name: "B08 MASA 404", env: adv(masatest.ModeNotFound), wantCode: 404, refused: 1, do: post("SN-B08N", nil), check: notIssued},
		{name: "B08 MASA 406", env: adv(masatest.ModeNotAcceptable), wantCode: 406, refused: 1, do: post("SN-B08A", nil), check: notIssued},
		{name: "B08 MASA 415", env: adv(masatest.ModeUnsupportedMedia), wantCode: 406, refused: 1, do: post("SN-B08M", nil), check: notIssued},
		{name: "B09 MASA 503", env: adv(masatest.ModeUnavailable), wantCode: 503, refused: 1, do: post("SN-B09", nil), check: retryAfter},
		{name: "B09 MASA slower than the timeout", env: envOptions{adversarial: true, mode: masatest.ModeSlow, edit: fast}, wantCode: 503, refused: 1, do: post("SN-B09S", nil), check: retryAfter},
		{name: "B09 MASA unreachable", env: envOptions{adversarial: true, edit: func(o *registrartest.Options) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				panic(err)
			}
			addr := ln.Addr().String()
			_ = ln.Close() // nothing listens there any more
			o.MASAURL = mustURL("https://" + addr + "/.well-known/brski")
			o.Config = func(c *registrar.Config) { c.Manufacturers[0].MASAURLOverride = o.MASAURL }
		}}, wantCode: 503, refused: 1, do: post("SN-B09U", nil), check: retryAfter},
		{name: "B10 MASA response over 64 KiB", env: adv(masatest.ModeOversized), wantCode: 502, refused: 1, do: post("SN-B10", nil), check: notIssued},
	}
	runAttacks(t, rows)
}

// TestAttackB11_AuditLog: a foreign domainID or a nonceless entry in the
// MASA audit log blocks the device: EST is refused (403) and so is its next
// voucher-request (406), with an auditlog-alert event.
func TestAttackB11_AuditLog(t *testing.T) {
	t.Parallel()
	for _, mode := range []masatest.Mode{masatest.ModeAuditForeignDomain, masatest.ModeAuditNonceless} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnvWith(t, envOptions{adversarial: true, mode: mode})
			p := e.pledge(t, "SN-B11")
			e.onboard(t, p)
			resp, _, err := p.Post(t.Context(), registrar.PathVoucherStatus, "application/json", []byte(`{"version":1,"status":true}`))
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("voucher_status: %v %v", err, resp)
			}
			e.reg.RequireAudit(t, audit.AuditLogAlert, "SN-B11")
			key := registrar.DeviceKeyFor(p.IDevID.Leaf, "SN-B11")
			err = e.reg.Service.EnrollAllowed(t.Context(), key)
			if p, ok := errorsAsProblem(err); !ok || p != 403 {
				t.Errorf("EnrollAllowed = %v, want 403", err)
			}
			o := send(t, p, p.Sign(t, p.Request(t)))
			if o.err != nil || o.resp.StatusCode != http.StatusNotAcceptable {
				t.Errorf("voucher-request after the block: %s, want 406", o)
			}
		})
	}
}

// hugeRSA is a crypto.Signer for an RSA public key too large to have a
// private key generated in a test: its signatures are zeros of the
// modulus' length, so the handshake would fail on them too; the test
// below therefore checks why it failed.
type hugeRSA struct{ pub *rsa.PublicKey }

func (h hugeRSA) Public() crypto.PublicKey { return h.pub }

func (h hugeRSA) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return make([]byte, h.pub.Size()), nil
}

// logLines is a slog.Handler keeping every record's message and attributes
// as text.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (l *logLines) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logLines) WithGroup(string) slog.Handler            { return l }
func (l *logLines) Handle(_ context.Context, r slog.Record) error {
	line := r.Message
	r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
	return nil
}

func (l *logLines) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.lines, func(line string) bool { return strings.Contains(line, s) })
}

// TestAttackG08_HugeRSAKey: reliability G08: a client certificate with a
// 16,384-bit RSA key is refused in the handshake on its size, when the
// certificate is read and before any signature with it is checked (the
// server's handshake error names the limit), so it costs no big-number
// arithmetic.
func TestAttackG08_HugeRSAKey(t *testing.T) {
	t.Parallel()
	logs := &logLines{}
	e := newEnv(t, func(o *registrartest.Options) { o.Logger = slog.New(logs) })
	// Any odd 16384-bit modulus will do: the key is refused on its size.
	n := new(big.Int).Lsh(big.NewInt(1), 16383)
	n.Or(n, big.NewInt(0x10001*2+1))
	key := hugeRSA{pub: &rsa.PublicKey{N: n, E: 65537}}
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: "Pledge SN-G08R", SerialNumber: "SN-G08R"}, KeyUsage: x509.KeyUsageDigitalSignature}
	cert := e.mfg.Issue(t, tmpl, key.pub)
	p := registrartest.NewPledge(t, e.reg, "SN-G08R", tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert})
	if o := send(t, p, []byte("x")); o.err == nil {
		t.Fatalf("a 16,384-bit RSA client key was answered %d", o.resp.StatusCode)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !logs.contains("RSA key larger than 8192 bits") {
		if time.Now().After(deadline) {
			logs.mu.Lock()
			defer logs.mu.Unlock()
			t.Fatalf("the handshake failed, but not on the key's size: %q", logs.lines)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
