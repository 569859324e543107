// Package masa is the Manufacturer Authorized Signing Authority of BRSKI
// (RFC 8995 §5.5–§5.8): it authenticates a registrar, checks the registrar
// voucher-request (RVR) and the pledge voucher-request it wraps, decides
// ownership, signs a voucher and keeps each device's audit log (RFC 8995
// §5.8.1). A CMS request (RFC 8366 §5.4) gets a CMS voucher; a COSE request
// (cBRSKI, application/voucher+cose or the legacy
// application/voucher-cose+cbor) gets a COSE_Sign1 voucher in YANG-CBOR with
// the MASA's chain in an unprotected x5bag, under the name it was asked in.
//
// # Endpoints
//
//	POST /.well-known/brski/requestvoucher   application/voucher-cms+json → 200 voucher
//	                                          application/voucher+cose     → 200 voucher
//	POST /.well-known/brski/requestauditlog  either of the above          → 200 application/json
//
// The pre-RFC spellings under /.well-known/est/ are accepted as aliases
// (standards digest §1.2) and answer exactly the same. Errors are short
// UTF-8 plain-text bodies (RFC 8995 §5.6) with the status codes of the
// standards digest §1.9.
//
// # Invariants
//
// Registrar authentication. The registrar presents a TLS client certificate
// (the TLS listener requires one but verifies nothing: which registrars are
// acceptable is decided per request). The RVR must be signed (CMS or COSE)
// by exactly that certificate, which must carry id-kp-cmcRA (RFC 8995 §5.5.4). Nonceless
// vouchers are therefore only ever issued to an authenticated registrar.
//
// Proximity. When the RVR carries a prior-signed-voucher-request, the pledge's
// request must chain to a configured IDevID anchor, name the RVR's
// serial-number in its signer's X.520 serialNumber, carry the RVR's nonce
// byte for byte, and pin (proximity-registrar-cert, -pubk or -pubk-sha256) a
// key that appears in the RVR's chain (RFC 8995 §5.5.5); the voucher then
// asserts "proximity". A COSE pledge request carries no certificate: its
// signer is the IDevID in the RVR's x5bag (cBRSKI).
// Without one, it asserts "logged".
//
// Pinning. A voucher pins the lowest CA of the RVR's chain: the certificate
// in the RVR's certificates (CMS set, or COSE x5bag) that issued the
// registrar certificate, checked by
// signature at the clock's time (cBRSKI MASA pinning policy). An RVR that
// embeds no CA pins the registrar certificate itself. The domainID (RFC 8995
// §5.8.2) is the base64 SubjectKeyIdentifier of the pinned certificate, or of
// SHA-256 over its SubjectPublicKeyInfo when it has none. Ownership compares
// SHA-256 of the pinned certificate's SubjectPublicKeyInfo.
//
// One promise, one transaction. The voucher, the device's audit-log entry
// and the masa-voucher-signed audit event are written in one durable store
// transaction (store.DB.RecordMASAVoucher) before the 200 is sent; an audit
// event is recorded before every signature, and a refusal records
// masa-claim-refused with its reason. A refused request changes no state
// other than the append-only audit trail. A retried request (same serial,
// nonce and domain) is answered with the voucher already issued, so each
// nonce appears in a device's log once.
//
// Time comes only from the injected clock, including TLS certificate checks.
package masa
