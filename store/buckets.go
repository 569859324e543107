package store

// Bucket names. Every bucket is top level; there are no nested buckets.
// doc.go describes the key and value of each.
const (
	// bucketMeta holds the schema version under metaSchemaVersion.
	bucketMeta = "meta"
	// bucketDevices: deviceKey (issuer NUL serial) → deviceRecordV1.
	bucketDevices = "devices"
	// bucketVouchers: deviceKey NUL nonce → voucherRecordV1.
	bucketVouchers = "vouchers"
	// bucketNonces: nonce → nonceRecordV1 (which device and request used it). Schema 2.
	bucketNonces = "nonces"
	// bucketTelemetry: deviceKey NUL big-endian uint64 sequence → telemetryRecordV1.
	bucketTelemetry = "telemetry"
	// bucketAudit: big-endian uint64 sequence → auditRecordV1 (hash-chained).
	bucketAudit = "audit"
	// bucketCertificates: serial (big-endian magnitude) → certificateRecordV1.
	bucketCertificates = "certificates"
	// bucketCertsByDevice: deviceKey NUL serial → empty. Index. Schema 2.
	bucketCertsByDevice = "certs-by-device"
	// bucketIntents: serial → intentRecordV1. Kept forever, whatever the status,
	// so that a serial is never reused.
	bucketIntents = "intents"
	// bucketOpenIntents: serial → empty, for intents still open. Index. Schema 2.
	bucketOpenIntents = "open-intents"
	// bucketGenerations: generation ID → generationRecordV1.
	bucketGenerations = "ca-generations"
	// bucketLDevIDKeys: SHA-256 of an issued certificate's
	// SubjectPublicKeyInfo → deviceKey. Index, written by CompleteIssuance
	// (store/est.go). Added without a schema change: no LDevID was issued
	// before it existed.
	bucketLDevIDKeys = "ldevid-keys"
	// bucketRollover: "current" → rolloverRecordV1, the domain CA rollover
	// in progress (store/rollover.go). Added without a schema change: an
	// absent bucket means no rollover ever started.
	bucketRollover = "ca-rollover"
	// bucketCRLs: generation ID → crlRecordV1, the current CRL of each CA
	// generation (store/crl.go). Added without a schema change.
	bucketCRLs = "crls"
)

// metaSchemaVersion is the key, in bucketMeta, of the schema version
// (decimal ASCII).
const metaSchemaVersion = "schema-version"

// allBuckets lists every bucket of the current schema. Open creates the
// missing ones.
var allBuckets = []string{
	bucketMeta,
	bucketDevices,
	bucketVouchers,
	bucketNonces,
	bucketTelemetry,
	bucketAudit,
	bucketCertificates,
	bucketCertsByDevice,
	bucketIntents,
	bucketOpenIntents,
	bucketGenerations,
	bucketLDevIDKeys,
	bucketRollover,
	bucketCRLs,
}

// digestExcluded lists the buckets that StateDigest leaves out: append-only
// records that grow on refused requests too (reliability §2.0).
var digestExcluded = map[string]bool{
	bucketAudit: true,
}
