package registrar

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"

	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/internal/problem"
	"github.com/gatehouse-pki/gatehouse/internal/web"
	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/store"
)

// EnrollRefused is the audit event of a refused EST request (one per
// refusal, reliability Q7), with the operation, the device and the reason.
const EnrollRefused = "enroll-refused"

// Enrolment operations, the op field of audit events.
const (
	opEnroll       = "simpleenroll"
	opReenroll     = "simplereenroll"
	opServerKeyGen = "serverkeygen"
)

// enrollment is an authorized request to issue an LDevID.
type enrollment struct {
	op  string
	key store.DeviceKey
	dev *pki.DeviceIdentity
	// peerKey is the SubjectPublicKeyInfo of the client certificate (the
	// IDevID on enrolment): the CSR must carry another key (C13).
	peerKey []byte
	// reuse allows answering with a still-valid certificate for the same
	// key (simpleenroll idempotency, reliability L8).
	reuse bool
	// auth names how the client authenticated (authIDevID, …), for the
	// audit trail.
	auth string
}

// authorizeEnroll authorizes simpleenroll and serverkeygen: the peer must
// present an IDevID of a configured manufacturer (RFC 8995 §5.9.1: EST
// continues on the voucher connection), and the voucher phase must have
// succeeded for the device (EnrollAllowed: voucher-issued or enrolled, not
// blocked by an audit-log check, RFC 8995 §5.8.3). A device waiting for
// operator approval is Deferred (202 + Retry-After, RFC 7030 §4.2.3).
func (s *Service) authorizeEnroll(ctx context.Context, peer *Peer, op string) (*enrollment, error) {
	switch peer.Kind {
	case PeerNone:
		// RFC 7030 §3.3.2: no client certificate and no configured
		// alternative is 401 (attack table E04).
		return nil, problem.New(problem.Unauthorized, nil, "a client certificate is required")
	case PeerLDevID:
		return nil, problem.New(problem.Forbidden, nil, "this device already holds an LDevID; use simplereenroll")
	}
	m := &s.mfgs[peer.Manufacturer]
	id, err := pki.ParseIDevID(peer.Leaf, m.IDevID)
	if err != nil {
		return nil, problem.New(problem.Forbidden, err, "the IDevID does not identify a device: %v", err)
	}
	key := DeviceKeyFor(peer.Leaf, id.Serial)
	web.EventFrom(ctx).Add(slog.String("pledge_serial", id.Serial))
	dev, err := s.db.Device(ctx, key)
	if err == nil && (dev.Status == store.DevicePendingApproval || dev.Status == store.DeviceApproved) {
		return nil, &problem.Error{Kind: problem.Deferred, Detail: "waiting for operator approval and the voucher", RetryAfter: s.cfg.PendingRetryAfter}
	}
	// One read of the device serves both decisions.
	if err := enrollAllowed(dev, err); err != nil {
		return nil, err
	}
	return &enrollment{op: op, key: key, dev: id, peerKey: peer.Leaf.RawSubjectPublicKeyInfo, reuse: op == opEnroll, auth: authIDevID}, nil
}

// authorizeReenroll authorizes simplereenroll (RFC 7030 §4.2.2): the peer
// must authenticate with an LDevID this registrar issued, neither revoked
// (403, attack table D02; CVE-2020-25276) nor expired (401, D03: no renewal
// after expiry). An IDevID is 403 (D05). The device must not be blocked or
// denied since.
func (s *Service) authorizeReenroll(ctx context.Context, peer *Peer) (*enrollment, error) {
	switch peer.Kind {
	case PeerNone:
		return nil, problem.New(problem.Unauthorized, nil, "a client certificate is required")
	case PeerIDevID, PeerESTClient:
		return nil, problem.New(problem.Forbidden, nil, "re-enrolment needs the LDevID being renewed, not an IDevID or another CA's certificate")
	}
	web.EventFrom(ctx).Add(slog.String("pledge_serial", peer.Device.Serial))
	if peer.Revoked {
		return nil, problem.New(problem.Forbidden, nil, "the client certificate is revoked")
	}
	if peer.Expired {
		return nil, problem.New(problem.Unauthorized, nil, "the client certificate has expired; enrol again with the IDevID")
	}
	dev, err := s.db.Device(ctx, peer.Device)
	if err != nil {
		return nil, fmt.Errorf("read device: %w", err)
	}
	if dev.Status != store.DeviceEnrolled && dev.Status != store.DeviceVoucherIssued {
		return nil, problem.New(problem.Forbidden, nil, "device is %s", dev.Status)
	}
	id := &pki.DeviceIdentity{Serial: peer.Device.Serial, CommonName: peer.Leaf.Subject.CommonName}
	return &enrollment{op: opReenroll, key: peer.Device, dev: id, peerKey: nil, auth: authLDevID}, nil
}

// checkCSR applies the CSR policy that is the back end's: the profile check
// (RFC 8995 §5.9.2: the registrar MUST validate the CSR against the
// attributes it gave out; names and extended key usages not derived from
// the device are 400, attack rows C05–C07), the key types /csrattrs asks for (C10), and key
// uniqueness: not the IDevID's key, not a key certified for another device
// (C13). The signature and key policy (pki.CheckCSR: C02–C04, C06) were
// checked by the EST edge before it called the back end (est.CA), so they
// are not verified a second time here.
func (s *Service) checkCSR(ctx context.Context, e *enrollment, csr *x509.CertificateRequest) error {
	if err := pki.CheckCSRNames(csr, s.cfg.LDevID, e.dev); err != nil {
		return problem.New(problem.BadRequest, err, "the CSR is refused: %v", err)
	}
	if !advertisedKey(csr.PublicKey) {
		return problem.New(problem.BadRequest, nil, "the CSR key type is not one /csrattrs asks for (EC P-256, P-384 or RSA)")
	}
	spki := csr.RawSubjectPublicKeyInfo
	if e.peerKey != nil && bytes.Equal(spki, e.peerKey) {
		return problem.New(problem.BadRequest, nil, "the CSR reuses the client certificate's key (the IDevID, or another CA's certificate)")
	}
	owner, err := s.db.DeviceForKey(ctx, store.KeyHashOf(spki))
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return fmt.Errorf("key index: %w", err)
	case owner != e.key:
		return problem.New(problem.BadRequest, nil, "the CSR key is certified for another device")
	}
	return nil
}

// advertisedKey reports whether pub is a key type /csrattrs lists.
func advertisedKey(pub crypto.PublicKey) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return k.Curve == elliptic.P256() || k.Curve == elliptic.P384()
	case *rsa.PublicKey:
		return true
	}
	return false
}

// issueFor checks the CSR, then issues. Concurrent identical enrolments of
// one device and key share one issuance, and a retry of a simpleenroll
// whose certificate is still valid gets that certificate again (reliability
// L8: one logical LDevID per device and key; RFC 8995 §5.9: CSRs that
// "look the same" yield one certificate).
func (s *Service) issueFor(ctx context.Context, e *enrollment, csr *x509.CertificateRequest) (*x509.Certificate, error) {
	if err := s.checkCSR(ctx, e, csr); err != nil {
		return nil, err
	}
	return s.issueKey(ctx, e, csr.PublicKey, csr.RawSubjectPublicKeyInfo)
}

func (s *Service) issueKey(ctx context.Context, e *enrollment, pub crypto.PublicKey, spki []byte) (*x509.Certificate, error) {
	kh := store.KeyHashOf(spki)
	flightKey := e.op + "\x00" + e.key.String() + "\x00" + hex.EncodeToString(kh[:])
	v, err, _ := s.enrollFlight.Do(flightKey, func() (any, error) {
		if e.reuse {
			if c, err := s.reusable(ctx, e.key, spki, kh); err != nil || c != nil {
				return c, err
			}
		}
		return s.issue(ctx, e, pub, kh)
	})
	if err != nil {
		return nil, err
	}
	return v.(*x509.Certificate), nil
}

// reusable returns the device's unrevoked, unexpired certificate for the
// key spki (whose hash is kh), or nil.
func (s *Service) reusable(ctx context.Context, key store.DeviceKey, spki []byte, kh store.KeyHash) (*x509.Certificate, error) {
	// Every stored certificate's key is in the key index (CompleteIssuance
	// writes both in one transaction), so a key it does not hold for this
	// device was never certified for it: nothing to read. Only a retry pays
	// for reading and parsing the device's certificates, which otherwise
	// grows with every enrolment of the device.
	switch owner, err := s.db.DeviceForKey(ctx, kh); {
	case errors.Is(err, store.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("key index: %w", err)
	case owner != key:
		return nil, nil
	}
	certs, err := s.db.CertificatesFor(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read certificates: %w", err)
	}
	now := s.clk.Now()
	for i := len(certs) - 1; i >= 0; i-- {
		c := certs[i]
		if c.Status != store.CertIssued || !now.Before(c.NotAfter) {
			continue
		}
		cert, err := x509.ParseCertificate(c.DER)
		if err != nil {
			return nil, fmt.Errorf("stored certificate %x: %w", c.Serial, err)
		}
		if bytes.Equal(cert.RawSubjectPublicKeyInfo, spki) {
			web.EventFrom(ctx).Add(slog.String("cert_serial", hex.EncodeToString(cert.SerialNumber.Bytes())), slog.Bool("reused", true))
			return cert, nil
		}
	}
	return nil, nil
}

// issue runs the issuance protocol (DESIGN.md "State and crash safety"):
// Prepare (serial, TBS hash, pre-issuance lint) → BeginIssuance (durable
// intent + issue-intent event) → Sign, outside any transaction →
// CompleteIssuance (certificate, device enrolled, key index, on
// re-enrolment the device's other certificates superseded, and the
// issue-success event with the DER, one transaction) → return. Nothing is
// returned to the client before CompleteIssuance commits; a failure after
// the intent abandons it with an issue-failure event. A crash in between
// leaves an open intent that ResolveIntents closes at the next start.
func (s *Service) issue(ctx context.Context, e *enrollment, pub crypto.PublicKey, kh store.KeyHash) (*x509.Certificate, error) {
	// One CA state for the whole issuance: a rollover meanwhile does not
	// mix generations (reliability R1: AKI = SKI of the key that signed).
	issuer := s.ca().issuer
	if issuer == nil {
		return nil, problem.New(problem.Internal, errors.New("no issuer configured"), "enrolment is not available")
	}
	prep, err := issuer.Prepare(pki.IssueRequest{PublicKey: pub, Device: e.dev})
	switch {
	case errors.Is(err, pki.ErrWeakKey), errors.Is(err, pki.ErrProfile):
		return nil, problem.New(problem.BadRequest, err, "the request cannot be issued: %v", err)
	case err != nil:
		// A lint failure is our bug, not the client's.
		return nil, problem.New(problem.Internal, err, "issuance failed")
	}
	serial := prep.Serial()
	sh := hex.EncodeToString(serial.Bytes())
	tbs := prep.TBSHash()
	fields := []string{"op", e.op, "device", e.key.String(), "pledge_serial", e.key.Serial, "cert_serial", sh, "client_auth", e.auth}
	web.EventFrom(ctx).Add(slog.String("cert_serial", sh))
	intent := store.Intent{Serial: serial, Device: e.key, TBSHash: tbs, Generation: GenerationID(issuer.CA().Cert)}
	ev := audit.New(audit.IssueIntent, append(fields, "tbs_sha256", hex.EncodeToString(tbs[:]))...)
	if err := s.db.BeginIssuance(ctx, intent, ev); err != nil {
		if errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrSerialExists) {
			return nil, problem.New(problem.Forbidden, err, "the device cannot be enrolled now")
		}
		return nil, fmt.Errorf("record issuance intent: %w", err)
	}
	// From here on the intent must be closed even if the client goes away.
	ctx = context.WithoutCancel(ctx)
	cert, err := issuer.Sign(ctx, prep)
	if err != nil {
		return nil, s.abandon(ctx, serial, fields, "sign: "+err.Error(), err)
	}
	ok := audit.New(audit.IssueSuccess, append(fields, "not_after", cert.NotAfter.UTC().Format("2006-01-02T15:04:05Z"), "cert_der", hex.EncodeToString(cert.Raw))...)
	err = s.db.CompleteIssuance(ctx, store.Completion{Serial: serial, DER: cert.Raw, Device: e.key, NotAfter: cert.NotAfter, KeyHash: kh, Supersede: e.op == opReenroll}, ok)
	if err != nil {
		aerr := s.abandon(ctx, serial, fields, "store: "+err.Error(), err)
		if errors.Is(err, store.ErrConflict) {
			// The key was certified for another device meanwhile (C13).
			return nil, problem.New(problem.BadRequest, aerr, "the CSR key is certified for another device")
		}
		return nil, aerr
	}
	return cert, nil
}

// abandon closes an open intent after a failure, with an issue-failure
// event, and returns the Internal error to answer.
func (s *Service) abandon(ctx context.Context, serial *big.Int, fields []string, reason string, cause error) error {
	if err := s.db.AbandonIssuance(ctx, serial, reason); err != nil {
		// Still open: ResolveIntents closes it at the next start.
		cause = errors.Join(cause, err)
	}
	if err := s.audit.Record(ctx, audit.New(audit.IssueFailure, append(fields, "reason", truncate(reason, 256))...)); err != nil {
		cause = errors.Join(cause, err)
	}
	return problem.New(problem.Internal, cause, "issuance failed")
}
