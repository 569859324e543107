// Package registrar is the BRSKI registrar (RFC 8995): the pledge-facing
// voucher endpoints, the ownership policy and operator approval queue, the
// registrar voucher-request, the MASA client, the audit-log check, and the
// pledge telemetry endpoints. EST (RFC 7030) mounts on the same mux and
// asks EnrollAllowed before it serves a device.
//
// Flow (docs/flows/voucher.md has every step with its status code):
//
//  1. TLS: the RA certificate is served whatever the SNI (cBRSKI); a client
//     certificate is requested, not required, and verified in the handshake
//     against the manufacturers' IDevID roots at the clock's time (RFC 8995
//     §5.1, §2.6.2). An unknown or invalid chain ends the handshake.
//  2. POST /.well-known/brski/requestvoucher: the pledge voucher-request is
//     verified with the TLS client certificate pinned, decoded strictly and
//     checked (serial, assertion, nonce, proximity; §5.2, §5.5), policy is
//     applied (§5.3), an identical retry is answered from the store (§5.6).
//  3. The registrar voucher-request is signed with the RA key and posted to
//     the MASA named by the IDevID (on the manufacturer's allowlist). The
//     voucher is verified before it is stored and returned unchanged.
//  4. voucher_status is stored; the MASA audit log is fetched and checked
//     synchronously (§5.7, §5.8); a violation blocks the device.
//
// Invariants:
//   - A refused request changes no state (the store's StateDigest) and adds
//     exactly one refusal event (vr-refused or masa-refused) to the audit
//     log; requests refused by the mux (404/405) or the rate limiter (429)
//     add none.
//   - Nothing reaches the network before the MASA URL passed the
//     manufacturer's allowlist; MASA calls are bounded in time, size and
//     concurrency (reliability D4).
//   - A voucher is returned only after it, the nonce use and the device's
//     new status are durable in one transaction.
//   - Time comes from Deps.Clock only, for TLS, chains and vouchers alike.
package registrar
