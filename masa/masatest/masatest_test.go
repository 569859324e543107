package masatest_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse-pki/gatehouse/masa"
	"github.com/gatehouse-pki/gatehouse/masa/masatest"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

var testNonce = []byte("0123456789abcdef")

type env struct {
	mfg, domain *pkitest.CA
	ra          *pkitest.Leaf
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{mfg: pkitest.NewCA(t, pkitest.Name("Mfg")), domain: pkitest.NewCA(t, pkitest.Name("Domain CA"))}
	e.ra = pkitest.NewRACert(t, e.domain, nil)
	return e
}

// rvr is a registrar voucher-request for a fresh IDevID with serial.
func (e *env) rvr(t *testing.T, serial string) []byte {
	t.Helper()
	idevid := pkitest.NewIDevID(t, e.mfg, serial, "")
	pvr := sign(t, voucher.Request{
		Fields:                 voucher.Fields{Assertion: voucher.AssertionProximity, SerialNumber: serial, Nonce: testNonce},
		ProximityRegistrarCert: e.ra.Cert.Raw,
	}, idevid, nil)
	return sign(t, voucher.Request{
		Fields:                    voucher.Fields{SerialNumber: serial, Nonce: testNonce},
		PriorSignedVoucherRequest: pvr,
	}, e.ra, []*x509.Certificate{e.domain.Cert})
}

func sign(t *testing.T, r voucher.Request, by *pkitest.Leaf, chain []*x509.Certificate) []byte {
	t.Helper()
	payload, err := r.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := voucher.SignCMS(payload, by.Key, by.Cert, chain, voucher.CMSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

type reply struct {
	StatusCode int
	Header     http.Header
}

func do(ctx context.Context, t *testing.T, s *masatest.Server, e *env, path string, body []byte) (reply, []byte, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", masa.MediaVoucherCMS)
	resp, err := s.Client(t, &e.ra.TLS).Do(req)
	if err != nil {
		return reply{}, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{StatusCode: resp.StatusCode, Header: resp.Header}, b, err
}

func TestStart_Counters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := masatest.Start(t, masatest.Options{Manufacturer: e.mfg})
	body := e.rvr(t, "SN-1")
	for range 2 {
		resp, b, err := do(t.Context(), t, s, e, masa.PathRequestVoucher, body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%v %v %s", err, resp, b)
		}
	}
	c := s.Counters(t)
	if c.Requests != 2 || c.VouchersSigned != 1 || c.LogEntries[masatest.LogKey{Serial: "SN-1", Nonce: "MDEyMzQ1Njc4OWFiY2RlZg=="}] != 1 {
		t.Errorf("counters = %+v", c)
	}
}

func TestStartAdversarial(t *testing.T) {
	t.Parallel()
	now := pkitest.TestTime
	verify := func(s *masatest.Server, b []byte) (*voucher.Voucher, error) {
		content, _, err := voucher.VerifyCMS(b, voucher.VerifyOptions{Anchors: []*x509.Certificate{s.Anchor()}, Time: now})
		if err != nil {
			return nil, err
		}
		return voucher.DecodeVoucherJSON(content)
	}
	type check func(t *testing.T, s *masatest.Server, e *env, status int, h http.Header, b []byte)
	wantStatus := func(code int) check {
		return func(t *testing.T, _ *masatest.Server, _ *env, status int, _ http.Header, b []byte) {
			t.Helper()
			if status != code {
				t.Fatalf("status %d, want %d: %s", status, code, b)
			}
		}
	}
	verifyErr := func(want error) check {
		return func(t *testing.T, s *masatest.Server, _ *env, status int, _ http.Header, b []byte) {
			t.Helper()
			if _, err := verify(s, b); status != http.StatusOK || !errors.Is(err, want) {
				t.Fatalf("status %d, verify err %v, want %v", status, err, want)
			}
		}
	}
	voucherCheck := func(bad func(*voucher.Voucher, *env) bool) check {
		return func(t *testing.T, s *masatest.Server, e *env, status int, _ http.Header, b []byte) {
			t.Helper()
			v, err := verify(s, b)
			if status != http.StatusOK || err != nil || !bad(v, e) {
				t.Fatalf("status %d err %v voucher %+v", status, err, v)
			}
		}
	}
	tests := map[masatest.Mode]check{
		masatest.ModeHonest:      voucherCheck(func(v *voucher.Voucher, e *env) bool { return bytes.Equal(v.PinnedDomainCert, e.domain.Cert.Raw) }),
		masatest.ModeForeignKey:  verifyErr(voucher.ErrUntrusted),
		masatest.ModeWrongSerial: voucherCheck(func(v *voucher.Voucher, _ *env) bool { return v.SerialNumber != "SN-A" }),
		masatest.ModeWrongNonce:  voucherCheck(func(v *voucher.Voucher, _ *env) bool { return !bytes.Equal(v.Nonce, testNonce) }),
		masatest.ModeExpired: voucherCheck(func(v *voucher.Voucher, _ *env) bool {
			return errors.Is(v.CheckTimes(now, 5*time.Minute), voucher.ErrExpired)
		}),
		masatest.ModeCreatedInFuture: voucherCheck(func(v *voucher.Voucher, _ *env) bool {
			return errors.Is(v.CheckTimes(now, 5*time.Minute), voucher.ErrNotYetValid)
		}),
		masatest.ModeWrongPin:         voucherCheck(func(v *voucher.Voucher, e *env) bool { return !bytes.Equal(v.PinnedDomainCert, e.domain.Cert.Raw) }),
		masatest.ModeNoPin:            verifyErr(voucher.ErrInvalid),
		masatest.ModeExpiredSigner:    verifyErr(voucher.ErrExpired),
		masatest.ModeForbidden:        wantStatus(http.StatusForbidden),
		masatest.ModeNotFound:         wantStatus(http.StatusNotFound),
		masatest.ModeNotAcceptable:    wantStatus(http.StatusNotAcceptable),
		masatest.ModeUnsupportedMedia: wantStatus(http.StatusUnsupportedMediaType),
		masatest.ModeUnavailable: func(t *testing.T, _ *masatest.Server, _ *env, status int, h http.Header, _ []byte) {
			t.Helper()
			if status != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
				t.Fatalf("status %d Retry-After %q", status, h.Get("Retry-After"))
			}
		},
		masatest.ModeOversized: func(t *testing.T, _ *masatest.Server, _ *env, status int, _ http.Header, b []byte) {
			t.Helper()
			if status != http.StatusOK || len(b) != masatest.OversizedBytes {
				t.Fatalf("status %d, %d bytes", status, len(b))
			}
		},
		masatest.ModeAuditForeignDomain: voucherCheck(func(*voucher.Voucher, *env) bool { return true }),
		masatest.ModeAuditNonceless:     voucherCheck(func(*voucher.Voucher, *env) bool { return true }),
	}
	for mode, check := range tests {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			s := masatest.StartAdversarial(t, masatest.Options{Manufacturer: e.mfg}, mode)
			body := e.rvr(t, "SN-A")
			resp, b, err := do(t.Context(), t, s, e, masa.PathRequestVoucher, body)
			if err != nil {
				t.Fatal(err)
			}
			check(t, s, e, resp.StatusCode, resp.Header, b)
			if got := s.Counters(t).Requests; got != 1 {
				t.Errorf("requests = %d", got)
			}
			if mode != masatest.ModeAuditForeignDomain && mode != masatest.ModeAuditNonceless {
				return
			}
			resp, b, err = do(t.Context(), t, s, e, masa.PathRequestAuditLog, body)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("audit log: %v %v", err, resp)
			}
			l, err := voucher.ParseAuditLog(b)
			if err != nil || len(l.Events) != 2 {
				t.Fatalf("audit log %s: %v", b, err)
			}
			extra := l.Events[1]
			if mode == masatest.ModeAuditForeignDomain && extra.DomainID != masatest.ForeignDomainID {
				t.Errorf("extra event %+v", extra)
			}
			if mode == masatest.ModeAuditNonceless && (extra.Nonce != "" || extra.DomainID != l.Events[0].DomainID) {
				t.Errorf("extra event %+v", extra)
			}
		})
	}
}

func TestStartAdversarial_SlowRespectsContext(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := masatest.StartAdversarial(t, masatest.Options{Manufacturer: e.mfg, Delay: time.Minute}, masatest.ModeSlow)
	rvr := e.rvr(t, "SN-S") // signed before the deadline starts
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := do(ctx, t, s, e, masa.PathRequestVoucher, rvr)
	// Under load the deadline can strike in the TLS handshake, where the
	// error need not wrap context.DeadlineExceeded; what matters is that
	// the call failed and it was the deadline that ended it.
	if err == nil || !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("err = %v (context: %v), want a failure at the deadline", err, ctx.Err())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s", d)
	}
	// The server's cleanup (httptest Close) must not hang on the handler.
}

func TestStartAdversarial_SlowAnswers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := masatest.StartAdversarial(t, masatest.Options{Manufacturer: e.mfg, Delay: 50 * time.Millisecond}, masatest.ModeSlow)
	resp, b, err := do(t.Context(), t, s, e, masa.PathRequestVoucher, e.rvr(t, "SN-S"))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%v %v %s", err, resp, b)
	}
}
