// Package est is the Enrollment over Secure Transport server edge (RFC 7030,
// as updated by RFC 8951 and RFC 9908), reusable without the registrar: it
// decodes and checks requests, applies the RFC rules that need no CA
// knowledge, makes one call to its back end (the CA interface) and encodes
// the answer. The registrar implements CA for BRSKI (RFC 8995 §5.9); any
// other issuer can.
//
// The package is also the one EST wire codec, for clients as for servers
// (as github.com/globalsign/est ships both sides): base64 bodies
// (DecodeBase64Body, EncodeBase64), certs-only PKCS#7 (ParseCertsOnly,
// MarshalCertsOnly), PKCS#10 requests (ParseCSR, and CreateCSR, which writes
// the challengePassword crypto/x509 cannot), CSR attributes (ParseCSRAttrs,
// MarshalBinary, and the client's reading of them: PreferredKeyType,
// ChallengePasswordRequested, RequestedExtensions, a template's Subject),
// key types (GenerateKey, KeyTypeOf) and the TLS channel binding
// (ChannelBinding). Package pledge is its client.
//
// Operations, under /.well-known/est/ and /.well-known/est/{label}/
// (RFC 7030 §3.2.2; a label not in Config.Labels is 404):
//
//	GET  cacerts         anonymous; certs-only PKCS#7, issuing CA first (§4.1)
//	GET  csrattrs        authenticated; application/csrattrs (§4.5, RFC 9908)
//	POST simpleenroll    application/pkcs10 → certs-only PKCS#7 with one certificate (§4.2.1)
//	POST simplereenroll  same; subject and subjectAltName must equal the client certificate's (§4.2.2)
//	POST serverkeygen    multipart/mixed: application/pkcs8 key + certs-only certificate (§4.4)
//	POST fullcmc         501 (§4.3 is optional and not offered)
//
// Anything else under the prefix is 404, or 405 for a known operation with
// another method: the edge fails closed (reliability E07).
//
// Encodings: every body is base64 (RFC 8951 §3). Requests are decoded
// tolerantly: Content-Transfer-Encoding is ignored whether present or not,
// CR, LF, spaces and tabs anywhere are skipped, and missing padding is
// accepted; any other character is a 400. Responses are unwrapped base64
// with a Content-Transfer-Encoding: base64 header for older clients. The
// certs-only response is a degenerate CMS SignedData written here with
// cryptobyte. Errors are short text/plain bodies; a deferred enrollment is
// 202 with Retry-After (§4.2.3).
//
// Checks made here, before the back end is called (so a refusal costs no
// CA call):
//
//   - media type application/pkcs10 (else 415) and a body of at most 64 KiB
//     (else 413);
//   - authentication: a TLS client certificate (verified by the listener)
//     or, only when Config.Basic is set, HTTP Basic (RFC 7030 §3.2.3);
//     otherwise 401 for every operation but cacerts;
//   - one DER PKCS#10 with nothing after it, re-parsed with cryptobyte,
//     signature, signature algorithm, key policy and no request for CA
//     rights (pki.CheckCSR): else 400;
//   - proof-of-possession linking (RFC 7030 §3.5): a challengePassword must
//     equal the base64 channel binding of this connection, tls-unique
//     under TLS 1.2 and the RFC 9266 tls-exporter under TLS 1.3; a mismatch,
//     or a missing binding with Config.RequireChannelBinding, is 401;
//   - re-enrollment needs a client certificate whose subject and
//     subjectAltName equal the CSR's (RFC 7030 §4.2.2), else 401 or 403.
//
// The back end decides everything that needs state or policy: whether this
// caller may enroll at all (voucher completed, not revoked), the CSR against
// the issuing profile, and crash-safe issuance.
//
// Server-side key generation returns the private key unencrypted (RFC 7030
// §4.4.2 application/pkcs8); its confidentiality rests on TLS alone. The
// response carries Cache-Control: no-store.
//
// Invariants: no time.Now (the Clock in Deps), one request-log event per
// request annotated with est_op, cert_serial and channel_bound, metrics
// brski_est_requests_total{op,result} and brski_est_request_seconds{op},
// and no import of registrar, masa or store.
package est
