package est

// Well-known paths, operation names and media types (RFC 7030 §3.2.2,
// §4; RFC 8951). One place, so the handlers and tests agree.
const (
	// PathPrefix is the EST base path (RFC 7030 §3.2.2).
	PathPrefix = "/.well-known/est"

	// OpCACerts and the other Op constants are the operation path segments
	// of RFC 7030 §3.2.2, also used as the metrics "op" label.
	OpCACerts        = "cacerts"
	OpSimpleEnroll   = "simpleenroll"
	OpSimpleReenroll = "simplereenroll"
	OpFullCMC        = "fullcmc"
	OpServerKeyGen   = "serverkeygen"
	OpCSRAttrs       = "csrattrs"

	// MediaPKCS10 is the request type of the enroll operations (RFC 7030
	// §4.2.1).
	MediaPKCS10 = "application/pkcs10"
	// MediaCertsOnly is the certs-only CMC Simple PKI Response (RFC 7030
	// §4.1.3, §4.2.3).
	MediaCertsOnly = "application/pkcs7-mime; smime-type=certs-only"
	// MediaCSRAttrs is the CSR attributes response (RFC 7030 §4.5.2).
	MediaCSRAttrs = "application/csrattrs"
	// MediaPKCS8 is the unencrypted server-generated key part (RFC 7030
	// §4.4.2).
	MediaPKCS8 = "application/pkcs8"
	// MediaMultipartMixed is the server-side key generation response
	// (RFC 7030 §4.4.2).
	MediaMultipartMixed = "multipart/mixed"

	headerCTE        = "Content-Transfer-Encoding"
	headerRetryAfter = "Retry-After"
	cteBase64        = "base64"

	// maxRequestBytes caps every EST request body (reliability D1, C15).
	maxRequestBytes = 64 << 10
)

// ops lists every operation this server knows, for the fail-closed
// catch-all (405 for a known operation with the wrong method).
var ops = map[string]string{
	OpCACerts:        "GET, HEAD",
	OpCSRAttrs:       "GET, HEAD",
	OpSimpleEnroll:   "POST",
	OpSimpleReenroll: "POST",
	OpServerKeyGen:   "POST",
	OpFullCMC:        "POST",
}
