// Package pledge is the BRSKI pledge client: what a new device does to learn
// its owner. It is used by `gatehouse pledge`, by the end-to-end tests and by
// the load generator.
//
// Standards implemented here (RFC 8995, BRSKI):
//
//   - §5.1 provisional TLS: the pledge connects with TLS 1.2 or later,
//     presents its IDevID as the client certificate, sends no SNI (erratum
//     6648, cBRSKI), and accepts the registrar's certificate provisionally,
//     recording the end-entity certificate the connection presented.
//   - §5.2 the pledge voucher-request (PVR): created-on, a fresh 16-byte
//     nonce, assertion "proximity", the pledge's X.520 serialNumber and
//     proximity-registrar-cert (the recorded certificate), CMS-signed with
//     the IDevID key (eContentType id-ct-animaJSONVoucher, RFC 8366 §5.4),
//     posted as application/voucher-cms+json; or, with
//     Config.VoucherFormat FormatCOSE (cBRSKI), YANG-CBOR in a COSE_Sign1
//     without certificates, posted as application/voucher+cose.
//   - §5.6 202 + Retry-After: the pledge waits (at most Config.MaxRetryWait
//     per answer, 60 s by default) and resends the identical bytes; a 503
//     or 429 with Retry-After (a registrar at its MASA in-flight cap or a
//     rate limit) is waited out the same way, at most
//     Config.MaxBusyRetries times in a row; EST requests likewise.
//   - §5.6.1 voucher checks: the MASA signature chains to the built-in
//     anchors at the clock's time, serial-number is the pledge's own, the
//     nonce is the one sent (byte for byte), and pinned-domain-cert is
//     present.
//   - §5.6.2 the registrar's TLS chain is then validated against
//     pinned-domain-cert, which ends the provisional state; a failure is
//     reported with voucher_status false and the voucher is refused.
//   - §5.7 voucher_status and §5.9.4 enrollstatus telemetry.
//
// Invariants:
//
//   - One persistent connection carries the whole exchange (RFC 8995 §5
//     SHOULD). If the registrar closes it (for example during a long 202
//     wait), a new connection must present the very same end-entity
//     certificate while provisional, and must chain to the pinned domain
//     certificate once a voucher was accepted.
//   - Nothing is trusted from the registrar before the voucher: every
//     failure is a typed error (ErrMASASignature, ErrNonceMismatch,
//     ErrSerialMismatch, ErrNoPinnedDomainCert, ErrPinMismatch, *StatusError,
//     …) and no voucher is returned with it.
//   - Time comes only from Config.Clock (certificate and voucher validity,
//     created-on). Waits between retries are real durations, bounded by the
//     caller's context and Config.MaxWait.
//
// EST (RFC 7030 as updated by RFC 8951 and RFC 9908; RFC 8995 §5.9):
//
//   - Client.Enroll continues on the voucher's connection: /cacerts
//     (base64 certs-only PKCS#7, wrapped or not), /csrattrs (a MUST in
//     BRSKI; key type, RFC 9908 template subject and extensions; 204/404
//     mean none; without a template the subject is the IDevID's X.520
//     serialNumber alone), a fresh key (P-256 unless asked otherwise), a
//     PKCS#10 request whose challengePassword is the channel binding (tls-unique on
//     TLS 1.2, the RFC 9266 tls-exporter on TLS 1.3; off with
//     Config.DisableChannelBinding), /simpleenroll with 202 + Retry-After
//     handling, and checks that the certificate is for the new key and
//     chains to the pinned domain certificate and to the cacerts at the
//     clock's time. It then posts enrollstatus over a new connection that
//     presents the LDevID and verifies the registrar against the domain CA
//     (§5.9.4); a failure is reported as enrollstatus false over the old
//     connection.
//   - Reenroll renews an LDevID (RFC 7030 §4.2.2): TLS with the LDevID,
//     the registrar verified against the domain CAs, a new key, the same
//     subject and subjectAltName, /simplereenroll.
//   - After a 202 the same request is resent, except when the registrar
//     answered on a new connection: the channel binding of the old one
//     cannot verify there, so the request is rebuilt (same key and names).
//
// The EST wire formats (base64 bodies, certs-only PKCS#7, CSR attributes,
// the PKCS#10 request with its challengePassword, key types, the channel
// binding) are package est's, shared with the registrar's server side;
// this package decides what to do with them.
package pledge
