// Package pki is Gatehouse's domain CA and its IDevID reader: key handles,
// the domain CA (root and optional issuing intermediate), the LDevID and
// registrar (RA) certificate profiles, random serials, the crash-safe
// two-step issuance (Prepare, then Sign) with Boulder-style pre-issuance
// linting, CSR and key policy, and the parsing of a pledge's IDevID.
//
// Standards implemented here:
//
//   - RFC 5280: certificate profile (§4.1.2.2 serials ≤ 20 octets,
//     §4.1.2.5 validity, §4.2.1.1/§4.2.1.2 AKI and SKI, method 1 key
//     identifiers, §4.2.1.3 key usage, §4.2.1.6 SANs including otherName,
//     §4.2.1.9 basic constraints, §4.2.1.12 extended key usage).
//   - RFC 8995 (BRSKI) §2.3.1 serial number from the X520SerialNumber,
//     §2.3.2 the id-pe-masa-url extension, §5.5 the registrar certificate
//     with id-kp-cmcRA (plus serverAuth and clientAuth, per cBRSKI).
//   - draft-ietf-anima-rfc8366bis: the idevid-issuer value, in three
//     configurable encodings (IssuerEncoding).
//   - IEEE 802.1AR (as relayed by RFC 8995 §2.3) and the IoT certificate
//     profile: LDevID with critical digitalSignature key usage and clientAuth
//     (and optionally serverAuth).
//   - RFC 7030 §4.2 / RFC 2986: CSR checks before enrolment.
//
// Invariants:
//
//   - No network or disk I/O beyond key handles (LoadSigner, WriteKeyFile),
//     no logging, no metrics. Failures are returned as the sentinel errors
//     declared in this package (ErrWeakKey, ErrBadCSR, ErrNoSerialNumber,
//     ErrBadSerial, ErrBadMASAURL, ErrProfile, ErrLint, …), wrapped with
//     context; callers decide what they mean.
//   - Time comes only from the clock.Clock callers inject.
//   - Every signing key is a crypto.Signer; the package never needs the
//     private key material.
//   - Every serial comes from NewSerial (crypto/rand, 128 random bits behind a
//     fixed prefix octet) and is signed at most once.
//   - An issued certificate's names and extensions come only from the profile
//     and the device identity, never from a CSR. An LDevID never carries
//     CA:TRUE, keyCertSign or cmcRA.
//   - The TBSCertificate signed by the CA key is byte-identical to the one
//     that was linted and whose hash Prepare exposed.
//
// Sub-packages: pki/lint (zlint v3 Linter) and pki/pkitest (generated PKI
// for tests, imported only from _test.go files).
package pki
