package pledge

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-pki/gatehouse/voucher"
)

// NonceLen is the length in bytes of the nonce in a pledge voucher-request.
const NonceLen = 16

// voucherSkew is how far a voucher's created-on may lead the pledge's clock.
const voucherSkew = 5 * time.Minute

// VoucherResult is an accepted voucher.
type VoucherResult struct {
	// Raw is the voucher exactly as the registrar sent it (CMS DER, or
	// COSE_Sign1 with Config.VoucherFormat FormatCOSE).
	Raw []byte
	// Voucher is the decoded, verified voucher.
	Voucher *voucher.Voucher
	// PinnedDomainCert is the voucher's pinned-domain-cert, which the
	// registrar's TLS chain was validated against.
	PinnedDomainCert *x509.Certificate
	// MASASigner is the certificate that signed the voucher.
	MASASigner *x509.Certificate
	// RegistrarChain is the TLS chain the registrar presented (end-entity
	// first).
	RegistrarChain []*x509.Certificate
	// Request is the signed pledge voucher-request as sent.
	Request []byte
	// Attempts counts the POSTs of that request (1 + the 202 answers).
	Attempts int
	// VoucherStatusErr is the failure of the voucher_status POST that
	// followed, if any. The voucher stays valid: RFC 8995 §5.7 lets a
	// registrar refuse telemetry.
	VoucherStatusErr error
}

// RequestVoucher runs the voucher phase of RFC 8995 (§5.2 to §5.7): it
// builds and signs the pledge voucher-request, posts it (resending the same
// bytes after each 202), verifies the voucher, validates the registrar's TLS
// chain against the pinned domain certificate, and reports the outcome with
// voucher_status. It returns the voucher only if every check passed; a
// verification failure is also reported to the registrar as voucher_status
// false.
func (c *Client) RequestVoucher(ctx context.Context) (*VoucherResult, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.MaxWait)
	defer cancel()
	rec, err := c.connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("request voucher: %w", err)
	}
	nonce := make([]byte, NonceLen)
	_, _ = rand.Read(nonce) // never fails since Go 1.24
	signed, err := c.signRequest(rec, nonce)
	if err != nil {
		return nil, err
	}
	raw, attempts, err := c.postRequest(ctx, signed)
	if err != nil {
		return nil, err
	}
	res, verr := c.verify(raw, nonce)
	if verr != nil {
		// RFC 8995 §5.6.2, §5.7: tell the registrar why, then drop the
		// voucher.
		if serr := c.VoucherStatus(ctx, false, verr.Error()); serr != nil {
			return nil, fmt.Errorf("%w (voucher_status could not be sent either: %v)", verr, serr) //nolint:errorlint // the status failure is secondary context
		}
		return nil, verr
	}
	res.Request, res.Attempts = signed, attempts
	res.VoucherStatusErr = c.VoucherStatus(ctx, true, "")
	return res, nil
}

// signRequest builds the pledge voucher-request (RFC 8995 §5.2) and signs
// it with the IDevID key: CMS around JSON with the IDevID chain, or
// COSE_Sign1 around YANG-CBOR with no certificate (cBRSKI: the pledge
// SHOULD NOT send x5bag or x5chain; the registrar authenticates it by its
// client certificate).
func (c *Client) signRequest(registrarCert *x509.Certificate, nonce []byte) ([]byte, error) {
	now := c.cfg.Clock.Now().UTC().Truncate(time.Second)
	pvr := &voucher.Request{
		Fields: voucher.Fields{
			CreatedOn:    now,
			Nonce:        nonce,
			Assertion:    voucher.AssertionProximity,
			SerialNumber: c.serial,
		},
		// The end-entity certificate the registrar presented on this
		// connection (RFC 8995 §5.2).
		ProximityRegistrarCert: registrarCert.Raw,
	}
	var (
		payload, signed []byte
		err             error
	)
	if c.cfg.VoucherFormat == voucher.FormatCOSE {
		payload, err = pvr.MarshalCBOR()
	} else {
		payload, err = pvr.MarshalJSON()
	}
	if err != nil {
		return nil, fmt.Errorf("pledge: encode voucher-request: %w", err)
	}
	if c.cfg.VoucherFormat == voucher.FormatCOSE {
		signed, err = voucher.SignCOSE(payload, c.key, voucher.COSEOptions{})
	} else {
		signed, err = voucher.SignCMS(payload, c.key, c.leaf, c.chain, voucher.CMSOptions{SigningTime: now})
	}
	if err != nil {
		return nil, fmt.Errorf("pledge: sign voucher-request: %w", err)
	}
	return signed, nil
}

// postRequest posts the signed request until the registrar answers other
// than 202 or a busy answer (503 or 429) with Retry-After (at most
// Config.MaxBusyRetries of those in a row), and returns the 200 body and
// the number of POSTs.
func (c *Client) postRequest(ctx context.Context, signed []byte) ([]byte, int, error) {
	busy := 0
	// gaveUp is the error for a context that ends while waiting: the last
	// 202 or 503 is what the pledge had.
	var gaveUp error
	for attempt := 1; ; attempt++ {
		mt := c.voucherMediaType()
		ans, err := c.post(ctx, PathRequestVoucher, mt, mt, signed)
		if err != nil {
			if ctx.Err() != nil && attempt > 1 {
				return nil, attempt, fmt.Errorf("%w after %d attempts: %w", gaveUp, attempt-1, ctx.Err())
			}
			return nil, attempt, fmt.Errorf("request voucher: %w", err)
		}
		switch {
		case ans.status == http.StatusOK:
			return ans.body, attempt, nil
		case ans.status == http.StatusAccepted:
			busy = 0
			gaveUp = ErrPending
		case isBusy(ans) && busy < c.cfg.MaxBusyRetries:
			// The registrar is busy (its MASA in-flight cap, a MASA that
			// is down, or a rate limit) and says when to come back: wait
			// like after a 202, a bounded number of times in a row.
			busy++
			gaveUp = fmt.Errorf("request voucher: %w", statusError(PathRequestVoucher, ans))
		default:
			return nil, attempt, fmt.Errorf("request voucher: %w", statusError(PathRequestVoucher, ans))
		}
		// RFC 8995 §5.6: wait as told (capped), then resend the identical
		// request: same nonce, no new signature.
		wait := c.retryWait(ans.header.Get("Retry-After"))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, attempt, fmt.Errorf("%w after %d attempts: %w", gaveUp, attempt, ctx.Err())
		case <-t.C:
		}
	}
}

// voucherMediaType is the media type of the pledge's voucher-request and
// of the voucher it accepts.
func (c *Client) voucherMediaType() string {
	if c.cfg.VoucherFormat == voucher.FormatCOSE {
		return voucher.MediaTypeCOSE
	}
	return voucher.MediaTypeCMS
}

// retryWait turns a Retry-After value (delay-seconds or an HTTP date) into a
// wait between MinRetryWait and Config.MaxRetryWait (the cap wins).
func (c *Client) retryWait(h string) time.Duration {
	return retryDelay(h, c.cfg.Clock.Now(), c.cfg.MaxRetryWait)
}

// retryDelay turns a Retry-After value into a wait between MinRetryWait and
// maxWait (the cap wins).
func retryDelay(h string, now time.Time, maxWait time.Duration) time.Duration {
	wait := DefaultRetryWait
	h = strings.TrimSpace(h)
	if n, err := strconv.ParseUint(h, 10, 32); err == nil {
		wait = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		wait = t.Sub(now)
	}
	wait = max(wait, MinRetryWait)
	return min(wait, maxWait)
}

// verify applies the pledge's voucher checks (RFC 8995 §5.6.1) and then
// validates the registrar's chain against the pinned domain certificate
// (§5.6.2), which ends the provisional state.
func (c *Client) verify(raw, nonce []byte) (*VoucherResult, error) {
	now := c.cfg.Clock.Now()
	opts := voucher.VerifyOptions{Anchors: c.cfg.MASAAnchors, Time: now}
	var (
		content []byte
		ver     *voucher.Verified
		err     error
	)
	cose := c.cfg.VoucherFormat == voucher.FormatCOSE
	if cose {
		content, ver, err = voucher.VerifyCOSE(raw, opts)
	} else {
		content, ver, err = voucher.VerifyCMS(raw, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMASASignature, err)
	}
	var v *voucher.Voucher
	if cose {
		v, err = voucher.DecodeVoucherCBOR(content)
	} else {
		v, err = voucher.DecodeVoucherJSON(content)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadVoucher, err)
	}
	if err := v.CheckTimes(now, voucherSkew); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadVoucher, err)
	}
	if v.SerialNumber != c.serial {
		return nil, fmt.Errorf("%w: voucher is for %q, this pledge is %q", ErrSerialMismatch, v.SerialNumber, c.serial)
	}
	if !bytes.Equal(v.Nonce, nonce) {
		return nil, fmt.Errorf("%w: voucher nonce %x, sent %x", ErrNonceMismatch, v.Nonce, nonce)
	}
	if len(v.PinnedDomainCert) == 0 {
		return nil, ErrNoPinnedDomainCert
	}
	pinned, err := x509.ParseCertificate(v.PinnedDomainCert)
	if err != nil {
		return nil, fmt.Errorf("%w: pinned-domain-cert: %w", ErrBadVoucher, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	chain := c.serverChain
	if len(chain) == 0 {
		return nil, errors.New("pledge: no registrar certificate recorded")
	}
	if err := verifyAgainstPin(chain, pinned, now); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPinMismatch, err)
	}
	c.pinned = pinned
	return &VoucherResult{
		Raw:              raw,
		Voucher:          v,
		PinnedDomainCert: pinned,
		MASASigner:       ver.Signer,
		RegistrarChain:   append([]*x509.Certificate(nil), chain...),
	}, nil
}
