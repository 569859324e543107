package masa

import "github.com/gatehouse-pki/gatehouse/voucher"

// Paths the MASA serves (RFC 8995 §8.3.2), and the pre-RFC aliases that
// deployed registrars still use (standards digest §1.2).
const (
	PathRequestVoucher       = "/.well-known/brski/requestvoucher"
	PathRequestAuditLog      = "/.well-known/brski/requestauditlog"
	PathLegacyRequestVoucher = "/.well-known/est/requestvoucher"
	PathLegacyAuditLog       = "/.well-known/est/requestauditlog"
)

// Media types.
const (
	// MediaVoucherCMS is the CMS-signed JSON voucher and voucher-request
	// (RFC 8366 §8.3).
	MediaVoucherCMS = voucher.MediaTypeCMS
	// MediaVoucherCOSE is the COSE-signed CBOR voucher and voucher-request
	// (cBRSKI, draft-ietf-anima-constrained-voucher).
	MediaVoucherCOSE = voucher.MediaTypeCOSE
	// MediaVoucherCOSELegacy is the name earlier cBRSKI drafts (and
	// deployed registrars) give the COSE form; the MASA takes it as
	// MediaVoucherCOSE and answers in the name it was asked in.
	MediaVoucherCOSELegacy = "application/voucher-cose+cbor"
	// MediaJSON is the audit-log response (RFC 8995 §5.8.1).
	MediaJSON = "application/json"
)

// MaxRequestBytes caps a registrar voucher-request body (reliability A21).
const MaxRequestBytes = 64 << 10
