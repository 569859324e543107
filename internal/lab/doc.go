// Package lab is `gatehouse lab`: a complete onboarding lab in one process.
// It generates, on first start, a throwaway PKI under a data directory (a
// manufacturer with an IDevID CA and a MASA, a domain CA with the
// registrar's RA/TLS certificate, and ten pledge identities), and wires a
// MASA and a registrar over it, each with its own bbolt store, ready for
// cmd/gatehouse to serve.
//
// The file layout under DIR is a contract (DESIGN.md "Lab files"); see
// Paths. Every private key file is mode 0600.
//
// Invariants:
//
//   - Generation happens in a fresh temporary directory beside DIR/lab that
//     is renamed into place only when every file is written and synced, so a
//     crash never leaves a half-generated lab. An existing DIR/lab is never
//     regenerated or overwritten; one with files missing is reported, naming
//     them. The one exception is lab/domain/ca.pem, the current domain CA:
//     after a rollover (found at start-up, or done online through
//     AdminHandler) it is replaced atomically (temporary file, rename) by
//     the issuing generation's certificate, and every generation's
//     certificate is kept as lab/domain/ca-<generation>.pem. ca-key.pem
//     stays the first generation's key; later keys live under DIR/ca.
//   - The pledges' IDevIDs follow IEEE 802.1AR as relayed by RFC 8995 §2.3:
//     the X.520 serialNumber names the device, notAfter is
//     99991231235959Z, keyUsage is digitalSignature, there is no extended
//     key usage, and the id-pe-masa-url extension (RFC 8995 §2.3.2) holds
//     the lab MASA's authority.
//   - The MASA's voucher-signing certificate, its TLS certificate and the
//     IDevIDs chain to three different roots, so no key can stand in for
//     another: an IDevID cannot sign a voucher pledges accept, and the MASA
//     TLS key cannot either.
//   - Time comes only from the injected clock.
package lab
