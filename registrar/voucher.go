package registrar

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/internal/problem"
	"github.com/gatehouse-pki/gatehouse/internal/web"
	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/store"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

// Media types of COSE vouchers and voucher-requests (cBRSKI).
const (
	// MediaTypeVoucherCOSE is a COSE_Sign1-signed YANG-CBOR voucher or
	// voucher-request (cBRSKI; CoAP content format 836).
	MediaTypeVoucherCOSE = voucher.MediaTypeCOSE
	// MediaTypeVoucherCOSELegacy is the name earlier cBRSKI drafts gave
	// it; some MASAs still want it (Manufacturer.MASACOSEMediaType), and a
	// pledge that sends it is answered under it.
	MediaTypeVoucherCOSELegacy = "application/voucher-cose+cbor"
)

// VoucherSkew is how far a voucher's created-on may lead the registrar's
// clock (attack table B04).
const VoucherSkew = 5 * time.Minute

// Voucher-request results, the label values of
// brski_registrar_voucher_requests_total besides the refusal kinds.
const (
	resultIssued  = "issued"
	resultCached  = "cached"
	resultPending = "pending"
)

// VoucherResponse is a voucher to return to a pledge unchanged.
type VoucherResponse struct {
	// MediaType is the voucher's media type.
	MediaType string
	// Body is the voucher exactly as the MASA signed it.
	Body []byte
	// Cached reports an identical retry answered from the store.
	Cached bool
}

// vrTrace is what a voucher-request's refusal is recorded with.
type vrTrace struct {
	format voucher.Format
	serial string
	mfg    string
	key    store.DeviceKey
	masa   bool // the refusal concerns the MASA exchange (masa-refused)
}

// DeviceKeyFor returns the store key of the device an IDevID identifies:
// the hex of the IDevID's authority key identifier (or, without one, of
// the SHA-256 of its issuer name) and the serial number.
func DeviceKeyFor(idevid *x509.Certificate, serial string) store.DeviceKey {
	if len(idevid.AuthorityKeyId) > 0 {
		return store.DeviceKey{Issuer: hex.EncodeToString(idevid.AuthorityKeyId), Serial: serial}
	}
	h := sha256.Sum256(idevid.RawIssuer)
	return store.DeviceKey{Issuer: "name-sha256:" + hex.EncodeToString(h[:]), Serial: serial}
}

// VoucherInput is a pledge voucher-request as a transport received it. The
// HTTPS handler and a CoAP handler fill it the same way and map the
// *problem.Error kinds RequestVoucher returns to their own status codes.
type VoucherInput struct {
	// Body reads the voucher-request. At most MaxBodyBytes are read; a
	// longer body is refused as problem.TooLarge (so is an
	// *http.MaxBytesError from the reader).
	Body io.Reader
	// MediaType is the request's media type: the Content-Type header, or
	// the media type of the CoAP Content-Format. Parameters are allowed.
	MediaType string
	// Accept is what the pledge accepts, as an HTTP Accept value (media
	// ranges separated by commas); "" accepts anything. The voucher is in
	// the request's format (cBRSKI: with no Accept, the response format is
	// the request format), so Accept must allow it or the answer is
	// problem.NotAcceptable.
	Accept string
	// PeerCertificates is the client's chain from the (D)TLS handshake,
	// leaf first, as presented. RequestVoucher classifies it (an HTTPS
	// connection's handshake classification is reused); none is
	// problem.Unauthorized.
	PeerCertificates []*x509.Certificate
	// Served is the certificate this connection presented to the pledge,
	// which the voucher-request's proximity pin must name (RFC 8995 §5.2,
	// cBRSKI). nil means the RA certificate, the only one the registrar
	// serves.
	Served *x509.Certificate
	// Remote is the peer's address, for the audit trail.
	Remote string
}

// handleRequestVoucher serves POST /.well-known/brski/requestvoucher (RFC
// 8995 §5.2): the HTTPS adapter of RequestVoucher.
func (s *Service) handleRequestVoucher(w http.ResponseWriter, r *http.Request) error {
	var certs []*x509.Certificate
	if r.TLS != nil {
		certs = r.TLS.PeerCertificates
	}
	res, err := s.RequestVoucher(r.Context(), VoucherInput{
		Body:             http.MaxBytesReader(w, r.Body, MaxBodyBytes),
		MediaType:        r.Header.Get("Content-Type"),
		Accept:           r.Header.Get("Accept"),
		PeerCertificates: certs,
		Served:           s.servedCert(r.Context()),
		Remote:           r.RemoteAddr,
	})
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", res.MediaType)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(res.Body)
	return nil
}

// RequestVoucher runs every check of RFC 8995 §5.2–5.6 on a pledge
// voucher-request, obtains a voucher from the MASA (or the store, for an
// identical retry) and returns it. A refusal is a *problem.Error and is
// audited once (vr-refused or masa-refused); a 202 is a problem.Deferred
// error whose RetryAfter says when to retry.
func (s *Service) RequestVoucher(ctx context.Context, in VoucherInput) (*VoucherResponse, error) {
	var tr vrTrace
	res, err := s.requestVoucher(ctx, &in, &tr)
	ev := web.EventFrom(ctx)
	ev.Add(slog.String("pledge_serial", tr.serial), slog.String("manufacturer", tr.mfg))
	if err != nil {
		p := problem.From(err)
		if p.Kind == problem.Deferred {
			s.metrics.voucherRequests.WithLabelValues(resultPending).Inc()
			return nil, err
		}
		s.metrics.voucherRequests.WithLabelValues(p.Kind.String()).Inc()
		typ := audit.VRRefused
		if tr.masa {
			typ = audit.MASARefused
		}
		aerr := s.audit.Record(ctx, audit.New(typ, "pledge_serial", tr.serial, "device", deviceString(tr.key),
			"manufacturer", tr.mfg, "kind", p.Kind.String(), "reason", p.Detail, "remote", in.Remote,
			"alert", alertOf(err)))
		if aerr != nil {
			return nil, errors.Join(err, aerr)
		}
		return nil, err
	}
	if res.Cached {
		s.metrics.voucherRequests.WithLabelValues(resultCached).Inc()
	} else {
		s.metrics.voucherRequests.WithLabelValues(resultIssued).Inc()
	}
	ev.Add(slog.Bool("voucher_cached", res.Cached), slog.String("voucher_format", string(tr.format)))
	return res, nil
}

// readBody reads at most MaxBodyBytes of r (attack table A21: 413).
func readBody(r io.Reader) ([]byte, error) {
	if r == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r, MaxBodyBytes+1))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, problem.New(problem.TooLarge, err, "request body is over the limit of %d bytes", MaxBodyBytes)
		}
		return nil, problem.New(problem.BadRequest, err, "reading the request body failed")
	}
	if len(b) > MaxBodyBytes {
		return nil, problem.New(problem.TooLarge, nil, "request body is over the limit of %d bytes", MaxBodyBytes)
	}
	return b, nil
}

// mediaTypeIn returns the media type of ct when it is one of allowed (case
// folded), or a problem.UnsupportedMedia error (attack table A11: 415).
func mediaTypeIn(ct string, allowed ...string) (string, error) {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", problem.New(problem.UnsupportedMedia, err, "Content-Type %q is not one of %s", ct, strings.Join(allowed, ", "))
	}
	mt = strings.ToLower(mt)
	if !slices.Contains(allowed, mt) {
		return "", problem.New(problem.UnsupportedMedia, nil, "Content-Type %q is not one of %s", mt, strings.Join(allowed, ", "))
	}
	return mt, nil
}

// peerFrom classifies a presented chain; none is problem.Unauthorized
// (attack tables A01, E04).
func (s *Service) peerFrom(ctx context.Context, certs []*x509.Certificate) (*Peer, error) {
	if len(certs) == 0 {
		return nil, problem.New(problem.Unauthorized, nil, "a TLS client certificate is required")
	}
	return s.peerOf(ctx, certs)
}

// errNonceReuse marks a replayed nonce (A15): its refusal event carries an
// alert for a human.
var errNonceReuse = errors.New("nonce reused by a different voucher-request")

func alertOf(err error) string {
	if errors.Is(err, errNonceReuse) {
		return "nonce-reuse"
	}
	return ""
}

func deviceString(k store.DeviceKey) string {
	if k.Serial == "" {
		return ""
	}
	return k.String()
}

// pledgeRequest is a pledge voucher-request that passed every check.
type pledgeRequest struct {
	peer *Peer
	mfg  *manufacturer
	id   *pki.DeviceIdentity
	key  store.DeviceKey
	body []byte
	hash [32]byte
	// format is the request's (CMS or COSE; unsigned JSON is relayed as
	// CMS), respType the media type of the voucher returned for it.
	format   voucher.Format
	respType string
	pvr      *voucher.Request
	nonce    string
	dev      *store.Device // nil for a device the store does not know
}

func (s *Service) requestVoucher(ctx context.Context, in *VoucherInput, tr *vrTrace) (*VoucherResponse, error) {
	pr, err := s.checkPledgeRequest(ctx, in, tr)
	if err != nil {
		return nil, err
	}
	// RFC 8995 §5.3: the registrar's ownership policy.
	if err := s.applyPolicy(ctx, pr); err != nil {
		return nil, err
	}
	// RFC 8995 §5.6: an identical retry is answered from the store, without
	// a MASA call; a different request reusing a nonce is a replay.
	if res, err := s.fromStore(ctx, pr); res != nil || err != nil {
		return res, err
	}
	base, err := s.masaBase(pr)
	if err != nil {
		return nil, err
	}
	web.EventFrom(ctx).Add(slog.String("masa_url", base.String()))
	// Concurrent identical retries share one MASA exchange.
	flightKey := pr.key.String() + "\x00" + pr.nonce + "\x00" + string(pr.hash[:])
	v, err, _ := s.flight.Do(flightKey, func() (any, error) {
		return s.obtainVoucher(context.WithoutCancel(ctx), pr, base, tr)
	})
	if err != nil {
		return nil, err
	}
	return v.(*VoucherResponse), nil
}

// checkPledgeRequest authenticates the pledge and checks its voucher-request
// (RFC 8995 §5.2, §5.5), in the order of the attack table.
func (s *Service) checkPledgeRequest(ctx context.Context, in *VoucherInput, tr *vrTrace) (*pledgeRequest, error) {
	peer, err := s.peerFrom(ctx, in.PeerCertificates)
	if err != nil {
		return nil, err // A01: 401
	}
	if peer.Kind != PeerIDevID {
		return nil, problem.New(problem.Forbidden, nil, "a voucher-request needs an IDevID client certificate")
	}
	m := &s.mfgs[peer.Manufacturer]
	tr.mfg = m.Name
	allowed := []string{MediaTypeVoucherCMS, MediaTypeVoucherCOSE, MediaTypeVoucherCOSELegacy}
	if s.cfg.AcceptUnsignedJSON {
		allowed = append(allowed, MediaTypeJSON)
	}
	mt, mtErr := mediaTypeIn(in.MediaType, allowed...)
	format, respType := voucher.FormatCMS, MediaTypeVoucherCMS
	if isCOSE(mt) {
		format, respType = voucher.FormatCOSE, mt
	}
	tr.format = format
	if !accepts(in.Accept, respType) {
		// RFC 8995 §5.6, cBRSKI: the voucher is in the request's format
		// (CMS for a request of any other type).
		return nil, problem.New(problem.NotAcceptable, nil, "Accept does not allow %s", respType)
	}
	// A11 (415), then A21 (413, read through a capped reader).
	if mtErr != nil {
		return nil, mtErr
	}
	body, err := readBody(in.Body)
	if err != nil {
		return nil, err
	}

	// RFC 8995 §2.3.1, §5.5: the serial number comes from the authenticated
	// IDevID, never from the request (A07).
	id, err := pki.ParseIDevID(peer.Leaf, m.IDevID)
	switch {
	case errors.Is(err, pki.ErrNoSerialNumber):
		return nil, problem.New(problem.NotFound, err, "the IDevID carries no serial number")
	case errors.Is(err, pki.ErrBadMASAURL):
		return nil, problem.New(problem.Forbidden, err, "the IDevID's MASA URL is not usable")
	case err != nil:
		return nil, problem.New(problem.BadRequest, err, "the IDevID cannot be used: %v", err)
	}
	tr.serial = id.Serial
	key := DeviceKeyFor(peer.Leaf, id.Serial)
	tr.key = key
	web.EventFrom(ctx).Add(slog.String("idevid_fingerprint", fingerprint(peer.Leaf)))

	pvrFormat := format
	if mt == MediaTypeJSON {
		pvrFormat = voucher.FormatJSON
	}
	pvr, err := openPVR(body, pvrFormat, peer.Leaf, s.clk.Now(), m.IgnoreIDevIDExpiry)
	if err != nil {
		return nil, err
	}
	// RFC 8995 §5.5: the registrar MUST verify that the serial-number
	// matches the IDevID's (A08).
	if pvr.SerialNumber != id.Serial {
		return nil, problem.New(problem.BadRequest, nil, "serial-number %q does not match the IDevID's %q", pvr.SerialNumber, id.Serial)
	}
	// RFC 8995 §5.2: the pledge asserts proximity (A13).
	if pvr.Assertion != voucher.AssertionProximity {
		return nil, problem.New(problem.BadRequest, nil, "assertion is %q, want %q", pvr.Assertion, voucher.AssertionProximity)
	}
	// RFC 8995 §5.2: a nonce is mandatory in the nonced flow; RFC 8366
	// bounds it (A12; the decoder already checked the length).
	if len(pvr.Nonce) < voucher.MinNonceLen || len(pvr.Nonce) > voucher.MaxNonceLen {
		return nil, problem.New(problem.BadRequest, nil, "nonce is missing or not %d to %d bytes", voucher.MinNonceLen, voucher.MaxNonceLen)
	}
	// RFC 8995 §5.2: proximity-registrar-cert must be the certificate this
	// connection served, or an on-path attacker is assumed: 401 and close
	// the connection (A14).
	served := in.Served
	if served == nil {
		served = s.ra.Leaf
	}
	if !proximityMatches(pvr, served) {
		return nil, &problem.Error{Kind: problem.Unauthorized, Detail: "proximity-registrar-cert is not this registrar's certificate", CloseConnection: true}
	}
	nonce := pvr.NonceText
	if nonce == "" {
		nonce = base64.StdEncoding.EncodeToString(pvr.Nonce)
	}
	pr := &pledgeRequest{peer: peer, mfg: m, id: id, key: key, body: body, hash: sha256.Sum256(body),
		format: format, respType: respType, pvr: pvr, nonce: nonce}
	dev, err := s.db.Device(ctx, key)
	switch {
	case err == nil:
		pr.dev = &dev
	case !errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("read device %s: %w", key, err)
	}
	return pr, nil
}

// openPVR authenticates a pledge voucher-request by the (D)TLS client
// certificate idevid, pinned as the only anchor, and decodes it: CMS around
// strict JSON (standards digest §1.4 [I]; A09, A10, A16–A19: verified at
// now, signingTime ignored), COSE_Sign1 around YANG-CBOR (cBRSKI: verified
// with the client certificate's key; an x5bag or x5chain the pledge sent
// does not take part), or unsigned JSON (FormatJSON, RFC 8995 §7.3 reduced
// security). Failures are problem errors: 403 for a request the connection's
// IDevID did not sign, 400 for one that is malformed.
func openPVR(body []byte, format voucher.Format, idevid *x509.Certificate, now time.Time, ignoreExpiry bool) (*voucher.Request, error) {
	opts := voucher.VerifyOptions{Anchors: []*x509.Certificate{idevid}, Time: now, IgnoreSignerExpiry: ignoreExpiry}
	var (
		content = body
		v       *voucher.Verified
		err     error
	)
	switch format {
	case voucher.FormatJSON:
	case voucher.FormatCOSE:
		content, v, err = voucher.VerifyCOSE(body, opts)
	default:
		content, v, err = voucher.VerifyCMS(body, opts)
	}
	if err != nil {
		if errors.Is(err, voucher.ErrUntrusted) {
			return nil, problem.New(problem.Forbidden, err, "the voucher-request is not signed by this connection's IDevID")
		}
		return nil, problem.New(problem.BadRequest, err, "the voucher-request signature does not verify: %v", err)
	}
	if v != nil && !bytes.Equal(v.Signer.Raw, idevid.Raw) {
		return nil, problem.New(problem.Forbidden, nil, "the voucher-request is not signed by this connection's IDevID")
	}
	var pvr *voucher.Request
	if format == voucher.FormatCOSE {
		pvr, err = voucher.DecodeRequestCBOR(content)
	} else {
		// Strict JSON: duplicate and case-variant keys, depth (A16, D3).
		pvr, err = voucher.DecodeRequestJSON(content)
	}
	if err != nil {
		return nil, problem.New(problem.BadRequest, err, "the voucher-request is malformed: %v", err)
	}
	return pvr, nil
}

// isCOSE reports whether a media type names the COSE voucher form.
func isCOSE(mt string) bool {
	return mt == MediaTypeVoucherCOSE || mt == MediaTypeVoucherCOSELegacy
}

// accepts reports whether an Accept value allows media type want ("" allows
// anything).
func accepts(accept, want string) bool {
	if strings.TrimSpace(accept) == "" {
		return true
	}
	for part := range strings.SplitSeq(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt = strings.ToLower(mt); mt {
		case want, "application/*", "*/*":
			return true
		}
	}
	return false
}

// proximityMatches reports whether the request pins served: the certificate
// itself, its SPKI, or the SPKI's SHA-256 (8366bis leaves).
func proximityMatches(pvr *voucher.Request, served *x509.Certificate) bool {
	switch {
	case served == nil:
		return false
	case pvr.ProximityRegistrarCert != nil:
		return bytes.Equal(pvr.ProximityRegistrarCert, served.Raw)
	case pvr.ProximityRegistrarPubk != nil:
		return bytes.Equal(pvr.ProximityRegistrarPubk, served.RawSubjectPublicKeyInfo)
	case pvr.ProximityRegistrarPubkSHA256 != nil:
		h := sha256.Sum256(served.RawSubjectPublicKeyInfo)
		return bytes.Equal(pvr.ProximityRegistrarPubkSHA256, h[:])
	}
	return false
}

// applyPolicy decides whether the registrar asks a voucher for this device
// (RFC 8995 §5.3).
func (s *Service) applyPolicy(ctx context.Context, pr *pledgeRequest) error {
	status := store.DeviceStatus("")
	if pr.dev != nil {
		status = pr.dev.Status
	}
	switch status {
	case store.DeviceBlocked:
		// RFC 8995 §5.3/§5.6: 406 for a pledge the registrar finds
		// unacceptable, here after a failed audit-log check (A22).
		return problem.New(problem.NotAcceptable, nil, "device %s is blocked", pr.id.Serial)
	case store.DeviceDenied:
		return problem.New(problem.Forbidden, nil, "device %s was denied by an operator", pr.id.Serial)
	case store.DeviceApproved, store.DeviceVoucherIssued, store.DeviceEnrolled:
		return nil // already accepted once
	}
	switch pr.mfg.Policy {
	case PolicyAcceptAll:
		return nil
	case PolicyAllowlist:
		if pr.mfg.allowlist[pr.id.Serial] {
			return nil
		}
		// RFC 8995 §5.3: 403 where an administrator can fix it (A03).
		return problem.New(problem.Forbidden, nil, "device %s is not on the allowlist", pr.id.Serial)
	case PolicyApprove:
		return s.park(ctx, pr)
	}
	return fmt.Errorf("manufacturer %s: unknown policy %q", pr.mfg.Name, pr.mfg.Policy)
}

// park puts a device in pending-approval and answers 202 + Retry-After
// (RFC 8995 §5.6: the pledge retries the identical request).
func (s *Service) park(ctx context.Context, pr *pledgeRequest) error {
	deferred := &problem.Error{Kind: problem.Deferred, Detail: "waiting for operator approval", RetryAfter: s.cfg.PendingRetryAfter}
	ev := audit.New(audit.DevicePending, "pledge_serial", pr.id.Serial, "device", pr.key.String(), "manufacturer", pr.mfg.Name)
	switch {
	case pr.dev == nil:
		if _, err := s.db.PutDevice(ctx, store.Device{Key: pr.key, Status: store.DevicePendingApproval, StatusReason: "policy: approve"}, ev); err != nil {
			return fmt.Errorf("park device: %w", err)
		}
	case pr.dev.Status == store.DeviceNew:
		if _, err := s.db.TransitionDevice(ctx, pr.key, store.DeviceNew, store.DevicePendingApproval, "policy: approve", ev); err != nil {
			return fmt.Errorf("park device: %w", err)
		}
	}
	return deferred
}

// fromStore answers an identical retry from the store, or refuses a
// different request that reuses a nonce (A15). Both nil: go to the MASA.
func (s *Service) fromStore(ctx context.Context, pr *pledgeRequest) (*VoucherResponse, error) {
	v, err := s.db.Voucher(ctx, pr.key, pr.nonce)
	switch {
	case err == nil:
		if v.RequestHash != pr.hash {
			return nil, problem.New(problem.Forbidden, errNonceReuse, "this nonce was used by a different voucher-request")
		}
		if err := s.audit.Record(ctx, audit.New(audit.VoucherCached, "pledge_serial", pr.id.Serial, "device", pr.key.String(), "nonce", pr.nonce)); err != nil {
			return nil, err
		}
		return &VoucherResponse{MediaType: v.MediaType, Body: v.Signed, Cached: true}, nil
	case !errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("read voucher: %w", err)
	}
	_, err = s.db.NonceUse(ctx, pr.nonce)
	switch {
	case err == nil:
		return nil, problem.New(problem.Forbidden, errNonceReuse, "this nonce was already used")
	case !errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("read nonce use: %w", err)
	}
	return nil, nil
}

// masaBase returns the MASA base URL for the device: the manufacturer's
// override, the IDevID's extension (RFC 8995 §2.3.2), or the manufacturer's
// only allowed URL (§2.8). It must be on the allowlist, checked before any
// connection (A20: no SSRF).
func (s *Service) masaBase(pr *pledgeRequest) (*url.URL, error) {
	m := pr.mfg
	u := m.MASAURLOverride
	if u == nil {
		u = pr.id.MASAURL
	}
	if u == nil && len(m.MASAURLs) == 1 {
		u = m.MASAURLs[0]
	}
	if u == nil {
		return nil, problem.New(problem.Forbidden, nil, "no MASA URL for this device")
	}
	if !m.masaAllowed(u) {
		return nil, problem.New(problem.Forbidden, nil, "MASA URL %s is not allowed for manufacturer %s", u, m.Name)
	}
	return u, nil
}

func fingerprint(c *x509.Certificate) string {
	h := sha256.Sum256(c.Raw)
	return hex.EncodeToString(h[:])
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
