// Package coap is the registrar's CoAP-over-DTLS transport: EST-coaps
// (RFC 9148) and the cBRSKI resources (draft-ietf-anima-constrained-voucher)
// mapped onto the same services as HTTPS. EST operations go through the
// est.Server's DER entry points (the same CSR checks, the same est.CA back
// end, the same issuance intents); pledges are authenticated in the DTLS
// handshake by registrar.Service.ClassifyPeer, the code the TLS listener
// uses, once per session.
//
// Invariants:
//   - DTLS 1.2 only (pion/dtls), cookie exchange (HelloVerifyRequest),
//     a client certificate required, ECDHE-ECDSA with AES-128-CCM-8 (the
//     RFC 9148/7925 mandatory suite) or AES-128-GCM.
//   - The socket is this package's (front.go), and so is the cookie
//     exchange (RFC 6347 §4.2.1): a stateless HMAC cookie, so nothing is
//     kept for an address until it echoes a valid one; then it takes a
//     session slot and pion (patched, third_party/pion-dtls) continues
//     the handshake.
//   - Every request datagram is checked by this package's own parser
//     before go-coap decodes it (CheckRequest): a malformed header is
//     dropped or reset, an unrecognised critical option, a repeated
//     non-repeatable option or an option of illegal length is answered
//     4.02 before any handler runs (RFC 7252 §5.4.1, §5.4.3, §5.4.5).
//   - Block-wise transfer is done here, not by go-coap: Block1 is
//     reassembled per DTLS session by (path, Request-Tag), never by token
//     (libcoap changes the token on every block), at most 64 KiB per
//     transfer and 4 unfinished transfers per session (RFC 7959, RFC 9175).
//   - Errors map to CoAP codes in one table (codeFor).
//
// See docs/flows/coap.md for every resource, content-format and code.
package coap
