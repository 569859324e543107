// Package bench is the engine of `gatehouse bench`: a load generator that
// runs many simulated pledges through the full BRSKI onboarding over HTTPS
// (voucher, voucher_status, cacerts, csrattrs, simpleenroll, enrollstatus;
// RFC 8995 §5 and RFC 7030) against a registrar, with the pledge client
// library, and reports what it measured.
//
// What it does:
//
//   - Identities: every onboarding presents a distinct IDevID, minted on
//     the fly from the lab manufacturer's IDevID CA (internal/lab), with a
//     serial number unique to the run. A MASA with first-claim ownership
//     (the lab's) gives such a device to the first domain that claims it.
//   - Load: a fixed concurrency (closed loop: each worker starts the next
//     onboarding when its last one ends) or a fixed arrival rate (open
//     loop: latency is measured from each arrival's scheduled time, so a
//     server that falls behind is charged for the queueing too), for a
//     count or a duration. A share of the operations may be re-enrolments
//     (RFC 7030 §4.2.2) of LDevIDs issued earlier in the run.
//   - Verification: the pledge library verifies every voucher (MASA
//     signature to the lab anchors, serial-number, nonce, pinned-domain-cert
//     and the registrar's chain against it) and every LDevID (its key, and
//     chains to the pinned domain certificate and the cacerts). The engine
//     also refuses an LDevID serial seen twice in the run.
//   - Ledger: one JSON line per success (pledge serial, voucher nonce and
//     digest, LDevID serial and digest), which Reconcile checks against the
//     registrar's store: zero lost records.
//   - Report: throughput, latency percentiles, errors by kind, and the
//     server's CPU seconds and peak RSS, from /proc/PID (Linux) or from the
//     process_* series of its admin /metrics.
//   - Floor: the cryptographic and storage work the server does for one
//     onboarding, run on all cores in this process (see Floor), to which
//     the achieved throughput is compared.
//
// Time comes from the injected clock; the engine never reads the wall
// clock itself.
package bench
