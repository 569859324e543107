package masa

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/internal/problem"
	"github.com/gatehouse-pki/gatehouse/internal/web"
	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/store"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

// VoucherRequest is one registrar voucher-request as it reached the MASA.
type VoucherRequest struct {
	// Raw is the signed RVR: CMS (application/voucher-cms+json) or COSE
	// (application/voucher+cose, cBRSKI).
	Raw []byte
	// MediaType is Raw's media type without parameters: MediaVoucherCMS
	// ("" means it too), MediaVoucherCOSE or MediaVoucherCOSELegacy. A
	// voucher is answered in the same format and under the same name.
	MediaType string
	// Peer is the TLS client's certificate chain, leaf first.
	Peer []*x509.Certificate
	// Accept is the request's Accept header ("" when absent).
	Accept string
}

// Response is a successful answer: a body and its media type.
type Response struct {
	// MediaType is the body's Content-Type.
	MediaType string
	// Body is the signed voucher or the audit-log JSON.
	Body []byte
}

// claim is an authenticated and checked registrar voucher-request: what
// the MASA needs of it once verified, and no more (claims are cached,
// verified.go, so they hold copies, not the request's buffers).
type claim struct {
	format    voucher.Format
	serial    string
	nonce     string // the nonce's JSON text; "" when nonceless
	rvrNonce  []byte // the RVR's nonce, and its text as sent, copied into the voucher
	nonceText string
	assertion voucher.Assertion
	registrar *x509.Certificate // the RVR signer, equal to the TLS client leaf
	pinned    []byte            // the pinned certificate (DER)
	pinnedNA  time.Time         // and its NotAfter
	createdOn time.Time         // the RVR's created-on, checked again on every use
	domainID  string
	ownerHash [32]byte
}

// RequestVoucher answers a registrar voucher-request (RFC 8995 §5.5, §5.6).
func (s *Service) RequestVoucher(ctx context.Context, req VoucherRequest) (*Response, error) {
	respType := responseType(req.MediaType)
	if !accepts(req.Accept, respType) {
		// RFC 8995 §5.6: 406 when the MASA cannot produce the requested
		// type; the voucher's format is the request's.
		return nil, problem.New(problem.NotAcceptable, nil, "this MASA answers this voucher-request with %s", respType)
	}
	c, err := s.authorize(req.Raw, req.MediaType, req.Peer)
	if err == nil {
		err = s.checkOwner(ctx, c)
	}
	if err != nil {
		return nil, s.refuse(ctx, c, req.Peer, err)
	}
	web.EventFrom(ctx).Add(slog.String("pledge_serial", c.serial), slog.String("voucher_format", string(c.format)),
		slog.String("assertion", string(c.assertion)), slog.String("domain_id", c.domainID))

	// A retried request (same serial, nonce and domain) gets the voucher
	// already issued: each nonce is logged once.
	if c.nonce != "" {
		old, err := s.store.MASAVoucher(ctx, c.serial, c.nonce)
		switch {
		case err == nil && old.DomainID == c.domainID && formatOf(old.Signed) == c.format:
			web.EventFrom(ctx).Add(slog.String("outcome", "repeated"))
			return &Response{MediaType: respType, Body: old.Signed}, nil
		case err == nil:
			return nil, s.refuse(ctx, c, req.Peer, problem.New(problem.Forbidden, store.ErrVoucherExists, "this nonce was already used for another domain"))
		case !errors.Is(err, store.ErrNotFound):
			return nil, fmt.Errorf("look up voucher: %w", err)
		}
	}
	signed, err := s.sign(ctx, c)
	if err != nil {
		return nil, err
	}
	ev := audit.New(audit.MASAVoucherSigned, s.eventFields(c, "outcome", "success")...)
	claimPolicy := store.MASARequireOwner
	if s.cfg.Ownership == OwnershipFirstClaim {
		claimPolicy = store.MASAFirstClaim
	}
	issued, err := s.store.RecordMASAVoucher(ctx, store.MASAIssue{
		Voucher:       store.MASAVoucher{Serial: c.serial, Nonce: c.nonce, DomainID: c.domainID, Assertion: string(c.assertion), Signed: signed},
		OwnerSPKIHash: c.ownerHash[:],
		Claim:         claimPolicy,
	}, ev)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, s.refuse(ctx, c, req.Peer, problem.New(problem.NotFound, err, "device %q is unknown to this MASA", c.serial))
	case errors.Is(err, store.ErrNotOwner), errors.Is(err, store.ErrVoucherExists):
		return nil, s.refuse(ctx, c, req.Peer, problem.New(problem.Forbidden, err, "device %q is not owned by this domain", c.serial))
	case err != nil:
		return nil, fmt.Errorf("record voucher: %w", err)
	}
	// The voucher-signed event reached the audit file through the store's
	// commit hook (audit.Recorder subscribes to it).
	s.metrics.signed.WithLabelValues(string(c.assertion)).Inc()
	web.EventFrom(ctx).Add(slog.String("outcome", "signed"))
	return &Response{MediaType: respType, Body: issued.Voucher.Signed}, nil
}

// sign builds and signs the voucher for c, with the audit events around the
// signature.
func (s *Service) sign(ctx context.Context, c *claim) ([]byte, error) {
	now := s.clk.Now().UTC().Truncate(time.Second)
	no := false
	v := voucher.Voucher{Fields: voucher.Fields{
		CreatedOn:                  now,
		Assertion:                  c.assertion,
		SerialNumber:               c.serial,
		PinnedDomainCert:           c.pinned,
		DomainCertRevocationChecks: &no, // RFC 8995 §5.6: MAY be false
	}}
	if c.nonce != "" {
		// RFC 8995 §5.5.6: the nonce is copied verbatim.
		v.Nonce, v.NonceText = c.rvrNonce, c.nonceText
	} else {
		// RFC 8995 §5.6: a nonceless voucher expires, no later than the
		// registrar certificate it was issued for.
		exp := now.Add(s.cfg.NoncelessValidity)
		for _, notAfter := range []time.Time{c.registrar.NotAfter, c.pinnedNA} {
			if na := notAfter.UTC().Truncate(time.Second); na.Before(exp) {
				exp = na
			}
		}
		if !exp.After(now) {
			return nil, problem.New(problem.Forbidden, nil, "the registrar certificate expires before a nonceless voucher could")
		}
		v.ExpiresOn = exp
	}
	var payload []byte
	var err error
	if c.format == voucher.FormatCOSE {
		payload, err = v.MarshalCBOR() // SIDs (cBRSKI)
	} else {
		payload, err = v.MarshalJSON()
	}
	if err != nil {
		return nil, fmt.Errorf("encode voucher: %w", err)
	}
	// Boulder's rule: an audit event before every signature; no signature
	// without it.
	if err := s.audit.Record(ctx, audit.New(audit.MASAVoucherSigning, s.eventFields(c)...)); err != nil {
		return nil, err
	}
	start := s.clk.Now()
	var signed []byte
	if c.format == voucher.FormatCOSE {
		// cBRSKI: the MASA MUST put its full signing chain in an
		// unprotected x5bag (the registrar strips it before forwarding).
		signed, err = voucher.SignCOSE(payload, s.key, voucher.COSEOptions{X5Bag: s.chain})
	} else {
		signed, err = voucher.SignCMS(payload, s.key, s.chain[0], s.chain[1:], voucher.CMSOptions{SigningTime: now})
	}
	s.metrics.signSeconds.Observe(s.clk.Since(start).Seconds())
	if err != nil {
		_ = s.audit.Record(ctx, audit.New(audit.MASAVoucherSigned, s.eventFields(c, "outcome", "failure", "reason", err.Error())...))
		return nil, fmt.Errorf("sign voucher: %w", err)
	}
	return signed, nil
}

// refuse records a masa-claim-refused audit event for a refusal (any
// problem other than Internal) and returns err.
func (s *Service) refuse(ctx context.Context, c *claim, peer []*x509.Certificate, err error) error {
	p, ok := errors.AsType[*problem.Error](err)
	if !ok || p.Kind == problem.Internal {
		return err
	}
	var fields []string
	if c != nil {
		fields = s.eventFields(c)
	} else if len(peer) > 0 {
		fields = []string{"registrar", certID(peer[0])}
	}
	fields = append(fields, "reason", p.Detail, "status", strconv.Itoa(web.Status(p.Kind)))
	if aerr := s.audit.Record(ctx, audit.New(audit.MASAClaimRefused, fields...)); aerr != nil {
		return fmt.Errorf("%w (audit: %w)", err, aerr)
	}
	return err
}

func (s *Service) eventFields(c *claim, extra ...string) []string {
	nonce := c.nonce
	if nonce == "" {
		nonce = "null"
	}
	f := []string{
		"pledge_serial", c.serial,
		"nonce", nonce,
		"assertion", string(c.assertion),
		"domain_id", c.domainID,
		"registrar", certID(c.registrar),
	}
	return append(f, extra...)
}

// certID names a certificate in audit events: serial and SHA-256
// fingerprint.
func certID(c *x509.Certificate) string {
	fp := sha256.Sum256(c.Raw)
	return fmt.Sprintf("serial=%x sha256=%s", c.SerialNumber, hex.EncodeToString(fp[:]))
}

// authorize authenticates the registrar and checks the RVR and the PVR it
// wraps (RFC 8995 §5.5.1–§5.5.6; cBRSKI for the COSE form). Failures are
// problem errors. A byte-identical request from the same TLS client
// certificate that was authenticated before is answered from the cache of
// verified requests (verified.go), with its time-dependent checks applied
// again.
func (s *Service) authorize(raw []byte, mediaType string, peer []*x509.Certificate) (*claim, error) {
	if len(peer) == 0 || peer[0] == nil {
		return nil, problem.New(problem.Unauthorized, nil, "a TLS client certificate is required")
	}
	leaf := peer[0]
	now := s.clk.Now()
	key := newVerifiedKey(mediaType, leaf, raw)
	if c, ok := s.verified.get(key, now); ok {
		if err := s.checkCreatedOn(c.createdOn, now); err != nil {
			return nil, err
		}
		return &c, nil
	}
	if s.onVerify != nil {
		s.onVerify()
	}
	c, window, err := s.verify(raw, mediaType, leaf, now)
	if err != nil {
		return nil, err
	}
	if len(raw) <= verifiedMaxBody {
		s.verified.put(key, *c, window, now)
	}
	return c, nil
}

// verify is authorize without the cache: it verifies the RVR and the PVR
// in full at now, and returns the claim and the window of instants at which
// every certificate it checked is valid.
func (s *Service) verify(raw []byte, mediaType string, leaf *x509.Certificate, now time.Time) (*claim, validity, error) {
	window := everywhere()
	format := voucher.FormatCMS
	if isCOSE(mediaType) {
		format = voucher.FormatCOSE
	}
	rvr, rvrCerts, err := openRVR(raw, format, leaf, now)
	if err != nil {
		return nil, window, err
	}
	window.narrow(leaf, false) // the RVR signer, pinned
	// RFC 8995 §5.5.4: "The MASA MUST verify that the registrar
	// voucher-request is signed by a registrar", shown by id-kp-cmcRA.
	if !hasCMCRA(leaf) {
		return nil, window, problem.New(problem.Forbidden, nil, "the registrar certificate lacks the id-kp-cmcRA extended key usage")
	}
	if rvr.SerialNumber == "" {
		return nil, window, problem.New(problem.BadRequest, nil, "the registrar voucher-request has no serial-number")
	}
	if err := s.checkCreatedOn(rvr.CreatedOn, now); err != nil {
		return nil, window, err
	}
	c := &claim{format: format, serial: rvr.SerialNumber, registrar: leaf, assertion: voucher.AssertionLogged, createdOn: rvr.CreatedOn}
	if len(rvr.Nonce) > 0 {
		c.rvrNonce, c.nonceText = bytes.Clone(rvr.Nonce), rvr.NonceText
		c.nonce = rvr.NonceText
		if c.nonce == "" {
			c.nonce = base64.StdEncoding.EncodeToString(rvr.Nonce)
		}
	}
	if rvr.PriorSignedVoucherRequest != nil {
		chain, err := s.checkPVR(rvr, leaf, rvrCerts, now)
		if err != nil {
			return nil, window, err
		}
		// The IDevID's NotAfter is not checked (checkPVR); its CAs' are.
		window.narrow(chain[0], true)
		for _, ca := range chain[1:] {
			window.narrow(ca, false)
		}
		// RFC 8995 §5.5.5: the checks passed, so the voucher asserts proximity.
		c.assertion = voucher.AssertionProximity
	}
	pinned, err := pinDomain(leaf, rvrCerts, now)
	if err != nil {
		return nil, window, err
	}
	// pinDomain checked the pinned CA at now, and which candidate it picks
	// can depend on the others' validity: narrow by every CA in the set.
	window.narrow(pinned, false)
	for _, rc := range rvrCerts {
		if rc.IsCA {
			window.narrow(rc, false)
		}
	}
	c.pinned, c.pinnedNA = bytes.Clone(pinned.Raw), pinned.NotAfter
	c.domainID = DomainID(pinned)
	c.ownerHash = sha256.Sum256(pinned.RawSubjectPublicKeyInfo)
	return c, window, nil
}

// checkCreatedOn applies the RVR's freshness rule at now: a created-on (if
// any) more than MaxClockSkew from the clock is stale.
func (s *Service) checkCreatedOn(createdOn, now time.Time) error {
	if createdOn.IsZero() {
		return nil
	}
	if d := createdOn.Sub(now); d > s.cfg.MaxClockSkew || d < -s.cfg.MaxClockSkew {
		// RFC 8995 §5.6: a stale request is answered 403.
		return problem.New(problem.Forbidden, nil, "the registrar voucher-request's created-on %s is more than %s from the MASA's clock",
			createdOn.UTC().Format(time.RFC3339), s.cfg.MaxClockSkew)
	}
	return nil
}

// openRVR verifies a registrar voucher-request of the given format against
// the TLS client certificate leaf and decodes it. It returns the request
// and the certificates it carries (the CMS certificate set, or the COSE
// x5chain and x5bag: cBRSKI has the registrar put its chain and the
// pledge's there).
func openRVR(raw []byte, format voucher.Format, leaf *x509.Certificate, now time.Time) (*voucher.Request, []*x509.Certificate, error) {
	// RFC 8995 §5.5.4: the registrar is authenticated by its TLS client
	// certificate; the RVR must be signed by exactly that certificate.
	opts := voucher.VerifyOptions{Anchors: []*x509.Certificate{leaf}, Time: now}
	var (
		content []byte
		v       *voucher.Verified
		certs   []*x509.Certificate
		err     error
	)
	if format == voucher.FormatCOSE {
		content, v, err = voucher.VerifyCOSE(raw, opts)
		if err == nil {
			msg, perr := voucher.ParseCOSE(raw) // verified above; parsed again for its certificates
			if perr != nil {
				return nil, nil, problem.New(problem.Forbidden, perr, "the registrar voucher-request is badly formed")
			}
			certs = append(append(certs, msg.X5Chain...), msg.X5Bag...)
		}
	} else {
		content, v, err = voucher.VerifyCMS(raw, opts)
		if err == nil {
			env, perr := voucher.ParseCMS(raw) // verified above; parsed again for its certificate set
			if perr != nil {
				return nil, nil, problem.New(problem.Forbidden, perr, "the registrar voucher-request is badly formed")
			}
			certs = env.Certificates
		}
	}
	if err != nil {
		// RFC 8995 §5.6: a badly signed voucher-request is answered 403.
		return nil, nil, problem.New(problem.Forbidden, err, "the registrar voucher-request is not signed by the TLS client certificate")
	}
	if !bytes.Equal(v.Signer.Raw, leaf.Raw) {
		return nil, nil, problem.New(problem.Forbidden, nil, "the registrar voucher-request is not signed by the TLS client certificate")
	}
	rvr, err := decodeRequest(content, format)
	if err != nil {
		return nil, nil, problem.New(problem.BadRequest, err, "the registrar voucher-request does not decode: %s", safeDetail(err))
	}
	return rvr, certs, nil
}

// decodeRequest decodes a verified voucher-request payload: YANG-JSON in
// CMS, YANG-CBOR (SIDs or names) in COSE.
func decodeRequest(content []byte, format voucher.Format) (*voucher.Request, error) {
	if format == voucher.FormatCOSE {
		return voucher.DecodeRequestCBOR(content)
	}
	return voucher.DecodeRequestJSON(content)
}

// checkPVR verifies the pledge voucher-request inside the RVR (RFC 8995
// §5.5.5, §5.5.6) and returns the IDevID's verified chain, signer first.
func (s *Service) checkPVR(rvr *voucher.Request, registrar *x509.Certificate, rvrCerts []*x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	// The IDevID may be past its NotAfter (RFC 8995 §2.6.2: 802.1AR
	// certificates are long-lived); it must still chain to a manufacturer CA.
	opts := voucher.VerifyOptions{Anchors: s.anchors, Time: now, IgnoreSignerExpiry: true}
	format := formatOf(rvr.PriorSignedVoucherRequest)
	var (
		content []byte
		v       *voucher.Verified
		err     error
	)
	switch format {
	case voucher.FormatCOSE:
		// cBRSKI: the pledge's COSE request carries no certificate; the
		// registrar put the pledge's IDevID chain in its x5bag.
		opts.Signers = rvrCerts
		content, v, err = voucher.VerifyCOSE(rvr.PriorSignedVoucherRequest, opts)
	case voucher.FormatCMS:
		content, v, err = voucher.VerifyCMS(rvr.PriorSignedVoucherRequest, opts)
	default:
		err = fmt.Errorf("%w: prior-signed-voucher-request is neither CMS nor COSE", voucher.ErrUnsupported)
	}
	if err != nil {
		return nil, problem.New(problem.Forbidden, err, "the pledge voucher-request is not signed by an IDevID of this manufacturer")
	}
	pvr, err := decodeRequest(content, format)
	if err != nil {
		return nil, problem.New(problem.Forbidden, err, "the pledge voucher-request does not decode: %s", safeDetail(err))
	}
	// RFC 8995 §5.5.5: "the MASA MUST verify that the serial-number field
	// of the registrar voucher-request matches the serial number of the
	// pledge's IDevID" (X.520 serialNumber, §2.3.1).
	serial, err := pki.SerialNumber(v.Signer, "")
	if err != nil {
		return nil, problem.New(problem.Forbidden, err, "the pledge's IDevID carries no usable serialNumber")
	}
	if serial != rvr.SerialNumber || (pvr.SerialNumber != "" && pvr.SerialNumber != rvr.SerialNumber) {
		return nil, problem.New(problem.Forbidden, nil, "the serial-number %q does not match the pledge's IDevID %q", rvr.SerialNumber, serial)
	}
	// RFC 8995 §5.5.6: the RVR's nonce must be the pledge's, byte for byte.
	if !rvr.NonceEqual(&pvr.Fields) {
		return nil, problem.New(problem.Forbidden, nil, "the registrar voucher-request's nonce differs from the pledge's")
	}
	// RFC 8995 §5.5.5: the pledge's proximity-registrar-cert must be the
	// registrar's (its key in the RVR signer or chain).
	if !proximityMatches(pvr, registrar, rvrCerts) {
		return nil, problem.New(problem.Forbidden, nil, "the pledge's proximity-registrar-cert is not the registrar that signed this request")
	}
	if len(rvr.IDevIDIssuer) > 0 && !issuerMatches(rvr.IDevIDIssuer, v.Signer) {
		return nil, problem.New(problem.Forbidden, nil, "the idevid-issuer does not name the pledge IDevID's issuer")
	}
	return v.Chain, nil
}

// proximityMatches reports whether the PVR's proximity pin names the key of
// the registrar or of a certificate in the RVR's chain.
func proximityMatches(pvr *voucher.Request, registrar *x509.Certificate, rvrCerts []*x509.Certificate) bool {
	var spki []byte
	switch {
	case pvr.ProximityRegistrarCert != nil:
		cert, err := x509.ParseCertificate(pvr.ProximityRegistrarCert)
		if err != nil {
			return false
		}
		spki = cert.RawSubjectPublicKeyInfo
	case pvr.ProximityRegistrarPubk != nil:
		spki = pvr.ProximityRegistrarPubk
	}
	for _, c := range append([]*x509.Certificate{registrar}, rvrCerts...) {
		if spki != nil && bytes.Equal(c.RawSubjectPublicKeyInfo, spki) {
			return true
		}
		if h := sha256.Sum256(c.RawSubjectPublicKeyInfo); pvr.ProximityRegistrarPubkSHA256 != nil && bytes.Equal(h[:], pvr.ProximityRegistrarPubkSHA256) {
			return true
		}
	}
	return false
}

// issuerMatches reports whether idevidIssuer is the IDevID's issuer key
// identifier in any of the encodings implementations use (standards digest
// §9, RFC 8995 erratum 7263).
func issuerMatches(idevidIssuer []byte, idevid *x509.Certificate) bool {
	for _, enc := range []pki.IssuerEncoding{pki.IssuerEncodingOctetString, pki.IssuerEncodingSequence, pki.IssuerEncodingKeyID} {
		if b, err := pki.IDevIDIssuer(idevid, enc); err == nil && bytes.Equal(b, idevidIssuer) {
			return true
		}
	}
	return false
}

// pinDomain chooses the certificate the voucher pins: the CA in the RVR's
// certificate set that issued the registrar certificate (the lowest CA:
// cBRSKI MASA pinning policy for nonced vouchers; RFC 8995 §5.5.2 lets the
// MASA pick any), verified by signature at now, or the registrar
// certificate itself when the set holds no CA for it.
func pinDomain(registrar *x509.Certificate, rvrCerts []*x509.Certificate, now time.Time) (*x509.Certificate, error) {
	var candidates int
	for _, c := range rvrCerts {
		if !c.IsCA || !bytes.Equal(c.RawSubject, registrar.RawIssuer) || bytes.Equal(c.Raw, registrar.Raw) {
			continue
		}
		candidates++
		roots := x509.NewCertPool()
		roots.AddCert(c)
		_, err := registrar.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err == nil {
			return c, nil
		}
	}
	if candidates > 0 {
		// A CA that did not issue the registrar certificate must not be
		// pinned: anyone can copy a domain CA certificate into a request.
		return nil, problem.New(problem.Forbidden, nil, "the CA certificate in the registrar voucher-request did not issue the registrar certificate")
	}
	return registrar, nil
}

// checkOwner applies the ownership policy before anything is signed (the
// store applies it again, atomically, when the voucher is recorded).
func (s *Service) checkOwner(ctx context.Context, c *claim) error {
	dev, err := s.store.MASADevice(ctx, c.serial)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if s.cfg.Ownership == OwnershipFirstClaim {
			return nil
		}
		// RFC 8995 §5.6: 404 for a device unknown to the MASA.
		return problem.New(problem.NotFound, err, "device %q is unknown to this MASA", c.serial)
	case err != nil:
		return fmt.Errorf("look up device: %w", err)
	case bytes.Equal(dev.OwnerSPKIHash, c.ownerHash[:]):
		return nil
	case !dev.Owned() && s.cfg.Ownership == OwnershipFirstClaim:
		return nil
	}
	// RFC 8995 §5.6: 403 for an authorization refusal an administrator can
	// resolve (the sales record names another owner, or none).
	return problem.New(problem.Forbidden, store.ErrNotOwner, "device %q is not owned by this domain", c.serial)
}

// DomainID is the RFC 8995 §5.8.2 domainID of a pinned certificate: its
// SubjectKeyIdentifier in base64, or when it has none, the base64 SHA-256 of
// its SubjectPublicKeyInfo (RFC 7469 §2.4).
func DomainID(c *x509.Certificate) string {
	if len(c.SubjectKeyId) > 0 {
		return base64.StdEncoding.EncodeToString(c.SubjectKeyId)
	}
	h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(h[:])
}

// hasCMCRA reports whether c's extended key usages include id-kp-cmcRA.
func hasCMCRA(c *x509.Certificate) bool {
	for _, oid := range c.UnknownExtKeyUsage {
		if oid.Equal(pki.OIDExtKeyUsageCMCRA) {
			return true
		}
	}
	return false
}

// isCOSE reports whether a request media type names the COSE form.
func isCOSE(mediaType string) bool {
	return mediaType == MediaVoucherCOSE || mediaType == MediaVoucherCOSELegacy
}

// responseType is the voucher media type that answers a request of
// mediaType: the same format, under the name the registrar used.
func responseType(mediaType string) string {
	if isCOSE(mediaType) {
		return mediaType
	}
	return MediaVoucherCMS
}

// formatOf tells a signed CMS artifact from a COSE one by its first bytes.
func formatOf(b []byte) voucher.Format {
	f, err := voucher.DetectFormat(b)
	if err != nil {
		return ""
	}
	return f
}

// accepts reports whether an Accept header allows media type want. An
// absent header accepts anything.
func accepts(accept, want string) bool {
	if strings.TrimSpace(accept) == "" {
		return true
	}
	for part := range strings.SplitSeq(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if q, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(q, 64); err != nil || f <= 0 {
				continue
			}
		}
		if mt == "*/*" || mt == "application/*" || strings.EqualFold(mt, want) {
			return true
		}
	}
	return false
}

// safeDetail is the client-safe part of a voucher decoding error: the
// package's messages name leaves and limits, never secrets.
func safeDetail(err error) string {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return msg
}
