package voucher

// YANG Schema Item iDentifiers (SIDs, RFC 9595) of the two modules of
// draft-ietf-anima-rfc8366bis, as its normative tables assign them
// (ietf-voucher@2025-12-18: 2450–2499, ietf-voucher-request@2025-12-18:
// 2500–2549). RFC 9254 encodes a leaf inside the container as the delta
// between its SID and the container's.

// Module, container and JSON member names of the two artifacts.
const (
	// ModuleVoucher is the YANG module of a voucher.
	ModuleVoucher = "ietf-voucher"
	// ModuleRequest is the YANG module of a voucher-request.
	ModuleRequest = "ietf-voucher-request"

	// SIDVoucherModule is the SID of module ietf-voucher.
	SIDVoucherModule uint64 = 2450
	// SIDVoucher is the SID of the container /ietf-voucher:voucher, the one
	// key of a CBOR voucher.
	SIDVoucher uint64 = 2451
	// SIDRequestModule is the SID of module ietf-voucher-request.
	SIDRequestModule uint64 = 2500
	// SIDRequest is the SID of the container /ietf-voucher-request:voucher,
	// the one key of a CBOR voucher-request.
	SIDRequest uint64 = 2501
)

// sidLeafID names one leaf of the voucher or voucher-request schema,
// independently of its module and SID.
type sidLeafID uint8

const (
	sidAssertion sidLeafID = iota
	sidCreatedOn
	sidDomainCertRevocationChecks
	sidExpiresOn
	sidIDevIDIssuer
	sidLastRenewalDate
	sidNonce
	sidPinnedDomainCert
	sidPinnedDomainPubk
	sidPinnedDomainPubkSHA256
	sidSerialNumber
	sidAdditionalConfigurationURL
	sidESTDomain
	sidManufacturerProprietary
	sidExtensions
	// Voucher-request only.
	sidPriorSignedVoucherRequest
	sidProximityRegistrarCert
	sidProximityRegistrarPubkSHA256
	sidProximityRegistrarPubk
	sidAgentProvidedProximityRegistrarCert
	sidAgentSignCert
	sidAgentSignedData
	sidNumLeaves
)

// sidRow is one row of a module's SID table.
type sidRow struct {
	sid  uint64
	name string // YANG identifier, as RFC 7951 JSON and CBOR name keys use it
	leaf sidLeafID
}

// sidTable is the SID assignment of one module's voucher container.
type sidTable struct {
	module    string
	moduleSID uint64
	container uint64
	// qualified is the module-qualified container name ("ietf-voucher:voucher").
	qualified string
	leaves    []sidRow // ascending SID
	byLeaf    [sidNumLeaves]uint64
	byName    map[string]sidLeafID
}

// voucherSIDs is the table of ietf-voucher (8366bis §"SID values").
var voucherSIDs = newSIDTable(ModuleVoucher, SIDVoucherModule, SIDVoucher, []sidRow{
	{2452, "assertion", sidAssertion},
	{2453, "created-on", sidCreatedOn},
	{2454, "domain-cert-revocation-checks", sidDomainCertRevocationChecks},
	{2455, "expires-on", sidExpiresOn},
	{2456, "idevid-issuer", sidIDevIDIssuer},
	{2457, "last-renewal-date", sidLastRenewalDate},
	{2458, "nonce", sidNonce},
	{2459, "pinned-domain-cert", sidPinnedDomainCert},
	{2460, "pinned-domain-pubk", sidPinnedDomainPubk},
	{2461, "pinned-domain-pubk-sha256", sidPinnedDomainPubkSHA256},
	{2462, "serial-number", sidSerialNumber},
	{2463, "additional-configuration-url", sidAdditionalConfigurationURL},
	{2464, "est-domain", sidESTDomain},
	{2465, "manufacturer-proprietary", sidManufacturerProprietary},
	{2466, "extensions", sidExtensions},
})

// requestSIDs is the table of ietf-voucher-request. Its order differs from
// ietf-voucher's after pinned-domain-cert: the request-only leaves were
// numbered first.
var requestSIDs = newSIDTable(ModuleRequest, SIDRequestModule, SIDRequest, []sidRow{
	{2502, "assertion", sidAssertion},
	{2503, "created-on", sidCreatedOn},
	{2504, "domain-cert-revocation-checks", sidDomainCertRevocationChecks},
	{2505, "expires-on", sidExpiresOn},
	{2506, "idevid-issuer", sidIDevIDIssuer},
	{2507, "last-renewal-date", sidLastRenewalDate},
	{2508, "nonce", sidNonce},
	{2509, "pinned-domain-cert", sidPinnedDomainCert},
	{2510, "prior-signed-voucher-request", sidPriorSignedVoucherRequest},
	{2511, "proximity-registrar-cert", sidProximityRegistrarCert},
	{2512, "proximity-registrar-pubk-sha256", sidProximityRegistrarPubkSHA256},
	{2513, "proximity-registrar-pubk", sidProximityRegistrarPubk},
	{2514, "serial-number", sidSerialNumber},
	{2515, "agent-provided-proximity-registrar-cert", sidAgentProvidedProximityRegistrarCert},
	{2516, "agent-sign-cert", sidAgentSignCert},
	{2517, "agent-signed-data", sidAgentSignedData},
	{2518, "pinned-domain-pubk", sidPinnedDomainPubk},
	{2519, "pinned-domain-pubk-sha256", sidPinnedDomainPubkSHA256},
	{2520, "additional-configuration-url", sidAdditionalConfigurationURL},
	{2521, "est-domain", sidESTDomain},
	{2522, "extensions", sidExtensions},
	{2523, "manufacturer-proprietary", sidManufacturerProprietary},
})

func newSIDTable(module string, moduleSID, container uint64, leaves []sidRow) *sidTable {
	t := &sidTable{
		module:    module,
		moduleSID: moduleSID,
		container: container,
		qualified: module + ":voucher",
		leaves:    leaves,
		byName:    make(map[string]sidLeafID, 2*len(leaves)),
	}
	for i, l := range leaves {
		if l.sid <= container || (i > 0 && l.sid <= leaves[i-1].sid) || t.byLeaf[l.leaf] != 0 {
			panic("voucher: SID table for " + module + " is not ascending or repeats a leaf")
		}
		t.byLeaf[l.leaf] = l.sid
		t.byName[l.name] = l.leaf
		// RFC 7951 qualifies a member name only across modules, but a
		// qualified name of the same module means the same leaf.
		t.byName[module+":"+l.name] = l.leaf
	}
	return t
}

// has reports whether the module defines l.
func (t *sidTable) has(l sidLeafID) bool { return t.byLeaf[l] != 0 }

// delta returns the RFC 9254 delta key of l under the container.
func (t *sidTable) delta(l sidLeafID) uint64 { return t.byLeaf[l] - t.container }

// bySID returns the leaf with absolute SID sid.
func (t *sidTable) bySID(sid uint64) (sidLeafID, bool) {
	first, last := t.leaves[0].sid, t.leaves[len(t.leaves)-1].sid
	if sid < first || sid > last {
		return 0, false
	}
	// The SIDs are contiguous, but do not rely on it.
	for _, l := range t.leaves {
		if l.sid == sid {
			return l.leaf, true
		}
	}
	return 0, false
}

// name returns the YANG identifier of l in this module.
func (t *sidTable) name(l sidLeafID) string {
	for _, e := range t.leaves {
		if e.leaf == l {
			return e.name
		}
	}
	return "?"
}
