package masatest

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-pki/gatehouse/masa"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

// Mode is the bad answer an adversarial MASA gives (reliability table B).
type Mode int

// The adversarial modes. Unless a mode says otherwise, the stub runs the
// real MASA first (so the request is checked, the voucher signed and logged
// as usual) and then replaces the answer.
const (
	// ModeHonest passes the real MASA's answers through.
	ModeHonest Mode = iota
	// ModeForeignKey re-signs the voucher with a key and chain that do not
	// lead to the MASA's anchor (B01).
	ModeForeignKey
	// ModeWrongSerial re-signs the voucher for another serial-number (B02).
	ModeWrongSerial
	// ModeWrongNonce re-signs the voucher with another nonce (B03).
	ModeWrongNonce
	// ModeExpired re-signs the voucher with expires-on an hour ago (B04).
	ModeExpired
	// ModeCreatedInFuture re-signs the voucher with created-on an hour
	// ahead (B04).
	ModeCreatedInFuture
	// ModeWrongPin re-signs the voucher pinning a foreign CA (B05).
	ModeWrongPin
	// ModeNoPin re-signs the voucher without pinned-domain-cert (B05); a
	// COSE voucher pins a random pinned-domain-pubk-sha256 instead.
	ModeNoPin
	// ModeExpiredSigner re-signs the voucher with a MASA certificate that
	// expired 30 days ago and a signingTime inside its validity (B06).
	ModeExpiredSigner
	// ModeForbidden answers 403 without calling the real MASA (B08).
	ModeForbidden
	// ModeNotFound answers 404 (B08).
	ModeNotFound
	// ModeNotAcceptable answers 406 (B08).
	ModeNotAcceptable
	// ModeUnsupportedMedia answers 415 (B08).
	ModeUnsupportedMedia
	// ModeSlow waits Options.Delay (default 30 s), or until the request's
	// context ends, before answering honestly (B09).
	ModeSlow
	// ModeUnavailable answers 503 with Retry-After: 30 (B09).
	ModeUnavailable
	// ModeOversized answers 200 with a 128 KiB voucher-cms+json body (B10).
	ModeOversized
	// ModeAuditForeignDomain adds an event for a foreign domainID to every
	// audit log; vouchers are honest (B11).
	ModeAuditForeignDomain
	// ModeAuditNonceless adds an unexpected nonceless event to every audit
	// log; vouchers are honest (B11).
	ModeAuditNonceless
)

var modeNames = [...]string{
	ModeHonest: "honest", ModeForeignKey: "foreign-key", ModeWrongSerial: "wrong-serial",
	ModeWrongNonce: "wrong-nonce", ModeExpired: "expired", ModeCreatedInFuture: "created-in-future",
	ModeWrongPin: "wrong-pin", ModeNoPin: "no-pin", ModeExpiredSigner: "expired-signer",
	ModeForbidden: "status-403", ModeNotFound: "status-404", ModeNotAcceptable: "status-406",
	ModeUnsupportedMedia: "status-415", ModeSlow: "slow", ModeUnavailable: "status-503",
	ModeOversized: "oversized", ModeAuditForeignDomain: "auditlog-foreign-domain",
	ModeAuditNonceless: "auditlog-nonceless",
}

// String names the mode (for subtest names).
func (m Mode) String() string {
	if int(m) >= 0 && int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// ForeignDomainID is the domainID ModeAuditForeignDomain adds.
const ForeignDomainID = "Zm9yZWlnbi1kb21haW4taWQ="

// OversizedBytes is the body size of ModeOversized.
const OversizedBytes = 128 << 10

// StartAdversarial runs a stub MASA in the given mode over TLS on loopback
// until the test ends. It has the same fields as Start's server (its
// Counters count every request, including refused ones).
func StartAdversarial(t testing.TB, opts Options, mode Mode) *Server {
	t.Helper()
	s := build(t, opts)
	a := &adversary{t: t, srv: s, mode: mode, real: s.Service.Handler(), delay: opts.Delay}
	if a.delay == 0 {
		a.delay = 30 * time.Second
	}
	switch mode {
	case ModeForeignKey:
		ca := pkitest.NewCA(t, pkitest.Name("Foreign MASA CA"), pkitest.Clock(s.clock))
		a.foreignKey = pkitest.NewKey(t)
		a.foreign = []*x509.Certificate{ca.Issue(t, &x509.Certificate{
			Subject: pkix.Name{CommonName: "Foreign MASA"}, KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true,
		}, a.foreignKey.Public())}
	case ModeExpiredSigner:
		now := s.clock.Now().UTC().Truncate(time.Second)
		a.foreignKey = pkitest.NewKey(t)
		a.foreign = []*x509.Certificate{s.SigningCA.Issue(t, &x509.Certificate{
			Subject: pkix.Name{CommonName: "Gatehouse Test MASA (expired)"}, KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true,
			NotBefore: now.Add(-60 * 24 * time.Hour), NotAfter: now.Add(-30 * 24 * time.Hour),
		}, a.foreignKey.Public())}
		a.signingTime = now.Add(-45 * 24 * time.Hour)
	case ModeWrongPin:
		a.wrongPin = pkitest.NewCA(t, pkitest.Name("Some Other Domain CA"), pkitest.Clock(s.clock)).Cert
	}
	s.serve(t, a)
	return s
}

type adversary struct {
	t     testing.TB
	srv   *Server
	mode  Mode
	real  http.Handler
	delay time.Duration

	foreignKey  crypto.Signer
	foreign     []*x509.Certificate
	signingTime time.Time
	wrongPin    *x509.Certificate
}

func plain(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}

func (a *adversary) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch a.mode {
	case ModeForbidden:
		plain(w, http.StatusForbidden, "adversarial MASA: forbidden")
		return
	case ModeNotFound:
		plain(w, http.StatusNotFound, "adversarial MASA: device unknown")
		return
	case ModeNotAcceptable:
		plain(w, http.StatusNotAcceptable, "adversarial MASA: not acceptable")
		return
	case ModeUnsupportedMedia:
		plain(w, http.StatusUnsupportedMediaType, "adversarial MASA: unsupported media type")
		return
	case ModeUnavailable:
		w.Header().Set("Retry-After", "30")
		plain(w, http.StatusServiceUnavailable, "adversarial MASA: unavailable")
		return
	case ModeOversized:
		w.Header().Set("Content-Type", masa.MediaVoucherCMS)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(bytes.Repeat([]byte{0x30}, OversizedBytes))
		return
	case ModeSlow:
		// Read the body first: net/http notices a client that went away
		// (and cancels r.Context) only once the body has been consumed.
		body, err := io.ReadAll(io.LimitReader(r.Body, masa.MaxRequestBytes+1))
		if err != nil {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		timer := time.NewTimer(a.delay)
		defer timer.Stop()
		select {
		case <-r.Context().Done():
			return
		case <-timer.C:
		}
	}
	rec := httptest.NewRecorder()
	a.real.ServeHTTP(rec, r)
	res := rec.Result()
	body := rec.Body.Bytes()
	if res.StatusCode == http.StatusOK {
		var err error
		if strings.HasSuffix(r.URL.Path, "requestauditlog") {
			body, err = a.tamperAuditLog(body)
		} else {
			body, err = a.tamperVoucher(body)
		}
		if err != nil {
			plain(w, http.StatusInternalServerError, "adversarial MASA: "+err.Error())
			return
		}
	}
	for k, v := range res.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(res.StatusCode)
	_, _ = w.Write(body)
}

// tamperVoucher rewrites a genuine voucher (CMS or COSE) as the mode says
// and re-signs it in the same format.
func (a *adversary) tamperVoucher(signed []byte) ([]byte, error) {
	if a.mode < ModeForeignKey || a.mode > ModeExpiredSigner {
		return signed, nil
	}
	format, err := voucher.DetectFormat(signed)
	if err != nil {
		return nil, err
	}
	var v *voucher.Voucher
	if format == voucher.FormatCOSE {
		msg, err := voucher.ParseCOSE(signed)
		if err != nil {
			return nil, err
		}
		if v, err = voucher.DecodeVoucherCBOR(msg.Payload); err != nil {
			return nil, err
		}
	} else {
		env, err := voucher.ParseCMS(signed)
		if err != nil {
			return nil, err
		}
		if v, err = voucher.DecodeVoucherJSON(env.Content); err != nil {
			return nil, err
		}
	}
	now := a.srv.clock.Now().UTC().Truncate(time.Second)
	switch a.mode {
	case ModeWrongSerial:
		v.SerialNumber += "-OTHER"
	case ModeWrongNonce:
		n := make([]byte, 16)
		_, _ = rand.Read(n)
		v.Nonce, v.NonceText = n, base64.StdEncoding.EncodeToString(n)
	case ModeExpired:
		v.CreatedOn, v.ExpiresOn = now.Add(-2*time.Hour), now.Add(-time.Hour)
	case ModeCreatedInFuture:
		v.CreatedOn = now.Add(time.Hour)
		if !v.ExpiresOn.IsZero() {
			v.ExpiresOn = now.Add(2 * time.Hour)
		}
	case ModeWrongPin:
		v.PinnedDomainCert = a.wrongPin.Raw
	case ModeNoPin:
		v.PinnedDomainCert = nil
		if format == voucher.FormatCOSE {
			// The CBOR encoder refuses a voucher that pins nothing: pin a
			// hash of no key of the domain instead of its certificate.
			v.PinnedDomainPubkSHA256 = make([]byte, 32)
			_, _ = rand.Read(v.PinnedDomainPubkSHA256)
		}
	}
	key, chain := a.srv.SigningKey, a.srv.SigningChain
	if a.foreign != nil {
		key, chain = a.foreignKey, a.foreign
	}
	if format == voucher.FormatCOSE {
		payload, err := v.MarshalCBOR()
		if err != nil {
			return nil, err
		}
		return voucher.SignCOSE(payload, key, voucher.COSEOptions{X5Bag: chain})
	}
	payload, err := v.MarshalJSON()
	if err != nil {
		return nil, err
	}
	return voucher.SignCMS(payload, key, chain[0], chain[1:], voucher.CMSOptions{SigningTime: a.signingTime})
}

// tamperAuditLog adds the mode's unexpected event to a genuine audit log.
func (a *adversary) tamperAuditLog(body []byte) ([]byte, error) {
	if a.mode != ModeAuditForeignDomain && a.mode != ModeAuditNonceless {
		return body, nil
	}
	l, err := voucher.ParseAuditLog(body)
	if err != nil {
		return nil, err
	}
	now := a.srv.clock.Now().UTC().Truncate(time.Second)
	switch a.mode {
	case ModeAuditForeignDomain:
		l.Events = append(l.Events, voucher.AuditEvent{Date: now.Add(-time.Hour), DomainID: ForeignDomainID, Nonce: "Zm9yZWlnbi1ub25jZQ==", Assertion: voucher.AssertionProximity})
	case ModeAuditNonceless:
		domain := ForeignDomainID
		if len(l.Events) > 0 {
			domain = l.Events[0].DomainID
		}
		l.Events = append(l.Events, voucher.AuditEvent{Date: now.Add(-time.Hour), DomainID: domain, Assertion: voucher.AssertionLogged})
	}
	return l.MarshalJSON()
}
