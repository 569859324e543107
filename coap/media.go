package coap

// CoAP Content-Format numbers (RFC 9148 §8.1; RFC 8710; RFC 6690;
// draft-ietf-anima-constrained-voucher), and the resource paths.
const (
	// FormatLinkFormat is application/link-format (RFC 6690).
	FormatLinkFormat uint16 = 40
	// FormatJSON is application/json.
	FormatJSON uint16 = 50
	// FormatCBOR is application/cbor.
	FormatCBOR uint16 = 60
	// FormatMultipartCore is application/multipart-core (RFC 8710).
	FormatMultipartCore uint16 = 62
	// FormatCertsOnly is application/pkcs7-mime; smime-type=certs-only.
	FormatCertsOnly uint16 = 281
	// FormatPKCS8 is application/pkcs8 (a clear private key, /skg).
	FormatPKCS8 uint16 = 284
	// FormatCSRAttrs is application/csrattrs.
	FormatCSRAttrs uint16 = 285
	// FormatPKCS10 is application/pkcs10.
	FormatPKCS10 uint16 = 286
	// FormatPKIXCert is application/pkix-cert (one DER certificate).
	FormatPKIXCert uint16 = 287
	// FormatVoucherCOSE is application/voucher+cose (cBRSKI).
	FormatVoucherCOSE uint16 = 836
)

// Resource paths (RFC 9148 §5.1 Table 1; cBRSKI resources table).
const (
	PathCore    = "/.well-known/core"
	PathESTBase = "/.well-known/est"
	PathCrts    = PathESTBase + "/crts"
	PathSen     = PathESTBase + "/sen"
	PathSren    = PathESTBase + "/sren"
	PathAtt     = PathESTBase + "/att"
	PathSkg     = PathESTBase + "/skg"
	PathBRSKI   = "/.well-known/brski"
	PathRV      = PathBRSKI + "/rv"
	PathVS      = PathBRSKI + "/vs"
	PathES      = PathBRSKI + "/es"
)

// Limits (reliability F04–F06).
const (
	// MaxBody caps a reassembled request body (Block1 total or Size1).
	MaxBody = 64 << 10
	// maxTransfers caps unfinished Block1 transfers per DTLS session; the
	// oldest is evicted (4 × 64 KiB = 256 KiB per peer at most).
	maxTransfers = 4
	// defaultSZX is the block size exponent used when the client asks for
	// none: 2^(6+4) = 1024 bytes.
	defaultSZX = 6
)
