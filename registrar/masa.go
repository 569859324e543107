package registrar

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/internal/problem"
	"github.com/gatehouse-pki/gatehouse/internal/web"
	"github.com/gatehouse-pki/gatehouse/store"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

// MASA call results, the label values of brski_registrar_masa_requests_total.
const (
	masaOK          = "ok"
	masaNotFound    = "not-found"
	masaRefused     = "refused"
	masaInvalid     = "invalid"
	masaUnavailable = "unavailable"
	masaBusy        = "busy"
)

// obtainVoucher signs the registrar voucher-request, asks the MASA, checks
// the voucher and stores it (RFC 8995 §5.5, §5.6). Every refusal here is
// audited as masa-refused.
func (s *Service) obtainVoucher(ctx context.Context, pr *pledgeRequest, base *url.URL, tr *vrTrace) (any, error) {
	rvr, err := s.signRVR(ctx, pr, base)
	if err != nil {
		return nil, err
	}
	tr.masa = true
	mt := pr.mfg.masaMediaType(pr.format)
	body, err := s.callMASA(ctx, pr.mfg, base, "/requestvoucher", rvr, mt)
	if err != nil {
		return nil, err
	}
	body, err = s.checkVoucher(body, pr)
	if err != nil {
		s.metrics.masaRequests.WithLabelValues(masaInvalid).Inc()
		return nil, err
	}
	s.metrics.masaRequests.WithLabelValues(masaOK).Inc()

	v := store.Voucher{Device: pr.key, Nonce: pr.nonce, MediaType: pr.respType, Signed: body, RequestHash: pr.hash}
	if pr.dev == nil {
		// The device record is created only now, with the voucher, so that
		// every refusal (including PutVoucher's own) leaves the store
		// unchanged.
		v.NewDevice = &store.Device{MASAURL: base.String()}
	}
	fields := []string{"pledge_serial", pr.id.Serial, "device", pr.key.String(), "manufacturer", pr.mfg.Name,
		"nonce", pr.nonce, "masa_url", base.String(), "voucher_sha256", sha256Hex(body)}
	// One durable transaction: the device record (first voucher), the
	// voucher, the nonce use, the device's move to voucher-issued and the
	// audit events; only then the answer.
	err = s.db.PutVoucher(ctx, v, audit.New(audit.VRReceived, fields...), audit.New(audit.MASAVoucher, fields...), audit.New(audit.VoucherDelivered, fields...))
	switch {
	case errors.Is(err, store.ErrNonceReused):
		return nil, problem.New(problem.Forbidden, errors.Join(errNonceReuse, err), "this nonce was already used")
	case errors.Is(err, store.ErrConflict):
		return nil, problem.New(problem.Forbidden, err, "the device's state does not allow a voucher")
	case err != nil:
		return nil, fmt.Errorf("store voucher: %w", err)
	}
	s.rememberRVR(pr.key, rvrRecord{rvr: rvr, mediaType: mt, base: base.String(), mfg: pr.peer.Manufacturer})
	return &VoucherResponse{MediaType: pr.respType, Body: body}, nil
}

// signRVR builds and signs the registrar voucher-request (RFC 8995 §5.5,
// draft-ietf-anima-rfc8366bis), with audit events before and after the
// signature.
func (s *Service) signRVR(ctx context.Context, pr *pledgeRequest, base *url.URL) ([]byte, error) {
	now := s.clk.Now().UTC().Truncate(time.Second)
	rvr := &voucher.Request{
		Fields: voucher.Fields{
			CreatedOn: now, // RFC 8995 §5.5: SHOULD be the current time
			// cBRSKI: proximity is propagated.
			Assertion: voucher.AssertionProximity,
			// RFC 8995 §5.5: from the IDevID, never copied from the PVR.
			SerialNumber: pr.id.Serial,
			// 8366bis: idevid-issuer is MUST in the RVR.
			IDevIDIssuer: pr.id.IDevIDIssuer,
			// RFC 8995 §5.5: the nonce is copied verbatim.
			Nonce:     pr.pvr.Nonce,
			NonceText: pr.pvr.NonceText,
		},
		// RFC 8995 §5.5: the entire signed PVR, as received (cBRSKI: the
		// raw COSE bytes).
		PriorSignedVoucherRequest: pr.body,
	}
	var pledgeChain []*x509.Certificate
	if pr.format == voucher.FormatCOSE {
		// cBRSKI: the x5bag carries the pledge's full (D)TLS client chain,
		// IDevID to root, since its COSE request carries no certificate.
		pledgeChain = pr.peer.Chain
		if n := 1 + len(s.domain) + len(pledgeChain); n > voucher.MaxCertificates {
			return nil, &problem.Error{Kind: problem.BadRequest, Detail: fmt.Sprintf(
				"the IDevID chain has %d certificates: with the registrar's %d, more than the %d a registrar voucher-request may carry",
				len(pledgeChain), 1+len(s.domain), voucher.MaxCertificates)}
		}
	}
	return s.signRequest(ctx, rvr, pr.format, pledgeChain, pr.id.Serial, pr.key, base)
}

// signRequest signs rvr with the RA key in the given format: CMS around
// JSON embedding the RA leaf and the domain CA chain (the chain the MASA
// may pin, RFC 8995 §5.5), or COSE_Sign1 around YANG-CBOR with the same
// certificates and pledgeChain in an unprotected x5bag (cBRSKI).
func (s *Service) signRequest(ctx context.Context, rvr *voucher.Request, format voucher.Format, pledgeChain []*x509.Certificate,
	serial string, key store.DeviceKey, base *url.URL,
) ([]byte, error) {
	var payload []byte
	var err error
	if format == voucher.FormatCOSE {
		payload, err = rvr.MarshalCBOR()
	} else {
		payload, err = rvr.MarshalJSON()
	}
	if err != nil {
		return nil, fmt.Errorf("encode registrar voucher-request: %w", err)
	}
	fields := []string{"pledge_serial", serial, "device", key.String(), "masa_url", base.String(), "ra_fingerprint", fingerprint(s.ra.Leaf)}
	if err := s.audit.Record(ctx, audit.New(audit.RVRSigning, fields...)); err != nil {
		return nil, err
	}
	var signed []byte
	var serr error
	if format == voucher.FormatCOSE {
		bag := append(append([]*x509.Certificate{s.ra.Leaf}, s.domain...), pledgeChain...)
		signed, serr = voucher.SignCOSE(payload, s.raKey, voucher.COSEOptions{X5Bag: bag})
	} else {
		signed, serr = voucher.SignCMS(payload, s.raKey, s.ra.Leaf, s.domain, voucher.CMSOptions{SigningTime: s.clk.Now()})
	}
	outcome := "success"
	if serr != nil {
		outcome = "failure: " + serr.Error()
	}
	if err := s.audit.Record(ctx, audit.New(audit.RVRSigned, append(fields, "outcome", outcome, "rvr_sha256", sha256Hex(signed))...)); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, fmt.Errorf("sign registrar voucher-request: %w", serr)
	}
	return signed, nil
}

// callMASA posts a signed voucher-request of media type mt to base+op and
// returns the body of a 200 answer. It refuses at once with 503 when MASAMaxInFlight calls
// are under way, bounds the exchange by MASATimeout and the body by
// MaxBodyBytes, and maps the MASA's errors as RFC 8995 §5.6 and the attack
// table B08–B10 say: 404 → 404, other 4xx → 406, 5xx or no answer → 503 +
// Retry-After, 202 → 202 + Retry-After, anything else → 502.
func (s *Service) callMASA(ctx context.Context, m *manufacturer, base *url.URL, op string, rvr []byte, mt string) ([]byte, error) {
	select {
	case s.masaSem <- struct{}{}:
	default:
		s.metrics.masaRequests.WithLabelValues(masaBusy).Inc()
		return nil, &problem.Error{Kind: problem.Unavailable, Detail: "too many MASA requests in progress", RetryAfter: s.cfg.PendingRetryAfter}
	}
	defer func() { <-s.masaSem }()
	s.metrics.masaInFlight.Inc()
	defer s.metrics.masaInFlight.Dec()
	start := s.clk.Now()
	defer func() { s.metrics.masaSeconds.Observe(s.clk.Since(start).Seconds()) }()

	ctx, cancel := context.WithTimeout(ctx, s.cfg.MASATimeout)
	defer cancel()
	endpoint := base.JoinPath(op).String()
	// The base URL passed the manufacturer's allowlist (masaBase) or was
	// stored after it did: no SSRF.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(rvr)) // allowlisted MASA URL (no SSRF)
	if err != nil {
		return nil, fmt.Errorf("build MASA request: %w", err)
	}
	req.Header.Set("Content-Type", mt)
	req.Header.Set("Accept", mt)
	resp, err := m.client.Do(req) // allowlisted MASA URL (no SSRF)
	if err != nil {
		s.metrics.masaRequests.WithLabelValues(masaUnavailable).Inc()
		return nil, &problem.Error{Kind: problem.Unavailable, Detail: "the MASA is unreachable", RetryAfter: s.cfg.PendingRetryAfter, Err: err}
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes+1))
	if err != nil {
		s.metrics.masaRequests.WithLabelValues(masaUnavailable).Inc()
		return nil, &problem.Error{Kind: problem.Unavailable, Detail: "the MASA's answer was cut off", RetryAfter: s.cfg.PendingRetryAfter, Err: err}
	}
	web.EventFrom(ctx).Add(slog.Int("masa_status", resp.StatusCode))
	switch code := resp.StatusCode; {
	case code == http.StatusOK:
		if len(body) > MaxBodyBytes {
			s.metrics.masaRequests.WithLabelValues(masaInvalid).Inc()
			return nil, problem.New(problem.Upstream, nil, "the MASA's answer is over %d bytes", MaxBodyBytes)
		}
		return body, nil
	case code == http.StatusAccepted:
		s.metrics.masaRequests.WithLabelValues(masaUnavailable).Inc()
		return nil, &problem.Error{Kind: problem.Deferred, Detail: "the MASA is still working", RetryAfter: retryAfter(resp, s.cfg.PendingRetryAfter)}
	case code == http.StatusNotFound:
		s.metrics.masaRequests.WithLabelValues(masaNotFound).Inc()
		return nil, problem.New(problem.NotFound, masaError(code, body), "the MASA does not know this device")
	case code >= 400 && code < 500:
		s.metrics.masaRequests.WithLabelValues(masaRefused).Inc()
		return nil, problem.New(problem.NotAcceptable, masaError(code, body), "the MASA refused the voucher-request (%d)", code)
	case code >= 500:
		s.metrics.masaRequests.WithLabelValues(masaUnavailable).Inc()
		return nil, &problem.Error{Kind: problem.Unavailable, Detail: "the MASA is unavailable", RetryAfter: retryAfter(resp, s.cfg.PendingRetryAfter), Err: masaError(code, body)}
	default:
		s.metrics.masaRequests.WithLabelValues(masaInvalid).Inc()
		return nil, problem.New(problem.Upstream, masaError(code, body), "the MASA answered %d", code)
	}
}

// masaError keeps the start of a MASA's plain-text error body (RFC 8995
// §5.6) for the request log.
func masaError(code int, body []byte) error {
	const keep = 256
	if len(body) > keep {
		body = body[:keep]
	}
	return fmt.Errorf("MASA answered %d: %q", code, body)
}

// retryAfter returns the MASA's Retry-After in seconds when it is sane, or
// def, capped at MaxRetryAfter.
func retryAfter(resp *http.Response, def time.Duration) time.Duration {
	if n, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && n > 0 {
		return min(time.Duration(n)*time.Second, MaxRetryAfter)
	}
	return min(def, MaxRetryAfter)
}

// checkVoucher inspects the MASA's voucher before it is forwarded (RFC 8995
// §5.6 step 7, attack table B01–B07): the signature chains to the
// manufacturer's MASA anchors at now, and the serial-number, nonce, times
// and pinned-domain-cert are the ones this request needs. It returns the
// voucher to forward: a CMS voucher unchanged, a COSE one without its
// unprotected x5bag and x5chain (cBRSKI: the registrar MUST strip them).
// Any failure is 502: the MASA answered, but with something the registrar
// will not pass on.
func (s *Service) checkVoucher(body []byte, pr *pledgeRequest) ([]byte, error) {
	upstream := func(err error, format string, args ...any) error {
		return problem.New(problem.Upstream, err, "the MASA's voucher is refused: "+format, args...)
	}
	if len(body) == 0 {
		return nil, upstream(nil, "empty")
	}
	now := s.clk.Now()
	v, forward, err := openVoucher(body, pr.format, pr.mfg.MASAAnchors, now)
	if err != nil {
		return nil, upstream(err, "%s", problem.From(err).Detail)
	}
	if v.SerialNumber != pr.id.Serial {
		return nil, upstream(nil, "serial-number %q is not %q", v.SerialNumber, pr.id.Serial) // B02
	}
	if !v.NonceEqual(&pr.pvr.Fields) {
		return nil, upstream(nil, "nonce does not match the voucher-request's") // B03
	}
	if err := v.CheckTimes(now, VoucherSkew); err != nil {
		return nil, upstream(err, "times") // B04
	}
	if !s.pinsUs(v.PinnedDomainCert) {
		return nil, upstream(nil, "pinned-domain-cert is not this domain's") // B05
	}
	return forward, nil
}

// openVoucher verifies a MASA's voucher of the given format against
// anchors at now and decodes it: CMS around JSON, or COSE_Sign1 around
// YANG-CBOR whose signer the x5bag chains to an anchor (or an anchor's own
// key signed it). It returns the voucher and the bytes to forward to the
// pledge: the CMS unchanged, the COSE with its unprotected x5bag and x5chain
// stripped, which leaves the signature intact. Errors are problem errors
// whose Detail names the failing step (signature, malformed).
func openVoucher(body []byte, format voucher.Format, anchors []*x509.Certificate, now time.Time) (*voucher.Voucher, []byte, error) {
	opts := voucher.VerifyOptions{Anchors: anchors, Time: now}
	if format != voucher.FormatCOSE {
		content, _, err := voucher.VerifyCMS(body, opts)
		if err != nil {
			return nil, nil, problem.New(problem.Upstream, err, "signature") // B01, B06, B07, B10
		}
		v, err := voucher.DecodeVoucherJSON(content)
		if err != nil {
			return nil, nil, problem.New(problem.Upstream, err, "malformed")
		}
		return v, body, nil
	}
	content, _, err := voucher.VerifyCOSE(body, opts)
	if err != nil {
		return nil, nil, problem.New(problem.Upstream, err, "signature")
	}
	v, err := voucher.DecodeVoucherCBOR(content)
	if err != nil {
		return nil, nil, problem.New(problem.Upstream, err, "malformed")
	}
	forward, err := voucher.StripUnprotectedCerts(body)
	if err != nil {
		return nil, nil, problem.New(problem.Upstream, err, "malformed")
	}
	return v, forward, nil
}

// pinsUs reports whether der is one of the domain CA certificates or the RA
// leaf (RFC 8995 §5.6.2: the registrar's TLS certificate must chain to it).
func (s *Service) pinsUs(der []byte) bool {
	if len(der) == 0 {
		return false
	}
	if bytes.Equal(der, s.ra.Leaf.Raw) {
		return true
	}
	return slices.ContainsFunc(s.ca().pins, func(p []byte) bool { return bytes.Equal(der, p) })
}

func (s *Service) rememberRVR(key store.DeviceKey, rec rvrRecord) {
	s.rvrMu.Lock()
	defer s.rvrMu.Unlock()
	if _, ok := s.rvrs[key]; !ok && len(s.rvrs) >= maxRVRCache {
		clear(s.rvrs)
	}
	s.rvrs[key] = rec
}

func (s *Service) recalledRVR(key store.DeviceKey) (rvrRecord, bool) {
	s.rvrMu.Lock()
	defer s.rvrMu.Unlock()
	rec, ok := s.rvrs[key]
	return rec, ok
}
