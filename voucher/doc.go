// Package voucher models the voucher and voucher-request artifacts of
// RFC 8366 (with the additions of draft-ietf-anima-rfc8366bis) and signs and
// verifies them in the wire formats BRSKI uses:
//
//   - JSON (RFC 7951 naming) inside CMS SignedData, application/voucher-cms+json
//     (RFC 8366 §5.4, RFC 8995 §3);
//   - YANG-CBOR with SID keys (RFC 9254 delta encoding) inside COSE_Sign1,
//     application/voucher+cose (draft-ietf-anima-constrained-voucher).
//
// It also holds the MASA audit log (RFC 8995 §5.8.1), the record of the
// vouchers issued for a device, which the MASA writes and the registrar
// reads (AuditLog, ParseAuditLog).
//
// Invariants:
//   - The package does no network or disk I/O and does not log; it parses,
//     builds, signs and verifies, and returns only the sentinel errors declared
//     here (wrapped with context), so that callers decide what a failure means.
//   - Verification always builds the signer's chain to caller-given trust
//     anchors at a caller-given time (VerifyOptions); there is no path that
//     trusts whatever certificate an artifact carries.
//   - Binary leaves (nonce, certificates) are kept byte-exact: a nonce is never
//     re-encoded between what a pledge sent and what a voucher carries.
//   - Every parser bounds its input size and structure before doing work.
package voucher
