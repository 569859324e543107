// Package store persists the registrar's state behind a domain API: pledge
// devices and their onboarding status, vouchers (so an identical retried
// voucher-request is answered without calling the MASA again, RFC 8995
// §5.6), pledge telemetry (voucher_status and enrollstatus, RFC 8995 §5.7,
// §5.9.4), the hash-chained audit log, issued certificates and their
// revocation, issuance intents, and domain CA generations.
//
// This is the bbolt implementation (go.etcd.io/bbolt), one file on one
// node. A PostgreSQL backend will implement the same methods and pass the
// same contract suite, store/storetest.
//
// # Invariants
//
// Durability. A method that writes returns nil only after its transaction
// is committed and fsynced. bbolt's NoSync and NoGrowSync are never set and
// cannot be: Options has no field for them, and Open refuses a handle that
// has either. Open waits at most Options.Timeout (1 s) for the file lock and
// then fails with ErrLocked, naming the file: a second process never hangs.
//
// Group commit. Writes go to one writer goroutine that commits everything
// queued since its previous commit in one transaction and one fsync (see
// commit.go for why this and not db.Batch). A write function may therefore
// run more than once, when another function in its batch fails and the
// batch is retried without it; every write function is idempotent, reads
// and writes only its transaction, and never reads the clock, signs, calls
// the network or waits on a channel. ctx is checked before a write is
// queued and again before its transaction opens; once queued, a write is
// waited for even if ctx ends, so a caller never believes a committed write
// failed.
//
// One transaction per promise. CompleteIssuance writes the certificate, its
// index entry, the device's new status, the issue-success audit event and
// the closed intent in one transaction (reliability C7); PutVoucher writes
// the voucher, the nonce use and the device's status together. A refused
// write (any error) changes nothing, audit included: "no state change"
// (reliability §2.0) holds for every error the store returns.
//
// No serial reuse. Issuance follows Boulder's cycle (DESIGN.md): (1)
// BeginIssuance records an intent durably and fails with ErrSerialExists if
// the serial appears as any intent or certificate; (2) the caller signs,
// outside any transaction; (3) CompleteIssuance as above, or
// AbandonIssuance; (4) the caller responds. Intents are never deleted:
// abandoned serials stay reserved forever. ResolveIntents, run at start-up
// before the listeners open, closes every intent a crash left open
// (completed if its certificate is stored, abandoned otherwise).
//
// Audit chain. Every audit event stores SHA-256(previous hash || canonical
// JSON of the event without its hash); VerifyAuditChain detects a removed,
// reordered or edited event (reliability Q7), and a removed tail through the
// bucket's sequence counter. Store the AuditHead hash elsewhere to catch a
// rewrite of the whole tail.
//
// Copy-out. Nothing returned aliases bbolt's memory-mapped pages or the
// caller's arguments: records are decoded from JSON into fresh values, and
// byte slices, maps and serials passed in are copied before they are
// queued.
//
// Time. Timestamps come from Options.Clock, in UTC, truncated to the
// second. The store never reads the system clock.
//
// # Schema and migrations
//
// The schema version (SchemaVersion, now 2) is decimal ASCII under
// "schema-version" in the meta bucket. Open creates missing buckets, then
// runs the ordered migrations from the stored version up to SchemaVersion
// in the same transaction that records the new version, so a crash leaves
// the old or the new schema, never a mix. A database with a newer version
// is refused with ErrSchemaTooNew; a bbolt file without the meta bucket is
// refused with ErrNotStore. Shipped migrations are never edited; a new one
// is appended and SchemaVersion raised, and each is tested by opening a
// database built at the previous version.
//
//	1 → 2  builds the nonces, certs-by-device and open-intents indexes
//	       from vouchers, certificates and intents.
//
// # Buckets and records
//
// Every value is JSON with a "v" field naming its record layout (all are
// v1); the store converts between these storage structs and the exported
// domain types at its boundary. Keys:
//
//	meta             "schema-version" → decimal ASCII
//	devices          issuer NUL serial → deviceRecordV1 {v, issuer, serial,
//	                 status, statusReason, masaURL, voucherNonce, voucherAt,
//	                 createdAt, updatedAt}
//	vouchers         issuer NUL serial NUL nonce → voucherRecordV1 {v,
//	                 issuer, serial, nonce, mediaType, signed (base64),
//	                 requestHash (hex SHA-256 of the pledge request),
//	                 createdAt}; nonce empty for a nonceless voucher
//	nonces           nonce → nonceRecordV1 {v, issuer, serial, requestHash}
//	telemetry        issuer NUL serial NUL uint64be(seq) → telemetryRecordV1
//	                 {v, seq, kind, issuer, serial, raw (base64),
//	                 clientCertMatched, time}
//	audit            uint64be(seq) → auditRecordV1 {v, seq, time, type,
//	                 fields, prev, hash}; seq from NextSequence, from 1
//	certificates     serial (big-endian magnitude) → certificateRecordV1
//	                 {v, serial (hex), der (base64), issuer, deviceSerial,
//	                 generation, notAfter, issuedAt, status, revokedAt,
//	                 revocationReason}
//	certs-by-device  issuer NUL serial NUL certificate serial → empty
//	intents          serial → intentRecordV1 {v, serial, issuer,
//	                 deviceSerial, tbsHash, generation, status (open,
//	                 completed, abandoned), reason, createdAt, resolvedAt}
//	open-intents     serial → empty, while the intent is open
//	ca-generations   generation ID → generationRecordV1 {v, id, certificate,
//	                 keyRef, linkCertificates, active, createdAt, previous}
//	ca-rollover      "current" → rolloverRecordV1 {v, from, to, step, keyRef,
//	                 newWithNew, newWithOld, oldWithNew, startedAt,
//	                 updatedAt}: the rollover in progress, one step at a time
//	crls             generation ID → crlRecordV1 {v, generation, number, der,
//	                 thisUpdate, nextUpdate}: each generation's current CRL
//
// A device key's issuer and serial contain no NUL byte, so the composite
// keys above are unambiguous and prefix scans per device are exact.
//
// # Device status
//
// Devices move through new, pending-approval, approved, voucher-issued,
// enrolled, denied and blocked; CanTransition holds the table. PutVoucher
// moves a device to voucher-issued and CompleteIssuance to enrolled, both
// checking the table, so a denied or blocked device gets neither a voucher
// nor a certificate.
//
// # Canonical dump and state digest
//
// Dump writes "gatehouse-store-dump 1", then each bucket in name order as
// "bucket NAME sequence N" followed by "HEXKEY QUOTEDVALUE" lines in key
// order: byte-stable for equal states. StateDigest is the SHA-256 of the
// dump without the audit bucket (reliability §2.0).
package store
