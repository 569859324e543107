package voucher

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/gatehouse-pki/gatehouse/internal/testvectors"
)

// sidFile is the part of an RFC 9595 .sid file the test reads.
type sidFile struct {
	SIDFile struct {
		ModuleName string `json:"module-name"`
		Item       []struct {
			Namespace  string `json:"namespace"`
			Identifier string `json:"identifier"`
			SID        string `json:"sid"`
		} `json:"item"`
	} `json:"ietf-sid-file:sid-file"`
}

func TestSIDTable_MatchesSIDFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file  string
		table *sidTable
	}{
		{"sid/ietf-voucher@2025-12-18.sid", voucherSIDs},
		{"sid/ietf-voucher-request@2025-12-18.sid", requestSIDs},
	}
	for _, tc := range tests {
		t.Run(tc.table.module, func(t *testing.T) {
			t.Parallel()
			var f sidFile
			if err := json.Unmarshal(testvectors.Read(t, tc.file), &f); err != nil {
				t.Fatalf("parse %s: %v", tc.file, err)
			}
			if got := f.SIDFile.ModuleName; got != tc.table.module {
				t.Fatalf("module-name = %q, want %q", got, tc.table.module)
			}
			containerPath := "/" + tc.table.qualified
			leaves := 0
			for _, it := range f.SIDFile.Item {
				sid, err := strconv.ParseUint(it.SID, 10, 64)
				if err != nil {
					t.Fatalf("item %s: sid %q: %v", it.Identifier, it.SID, err)
				}
				switch {
				case it.Namespace == "module":
					if it.Identifier != tc.table.module || sid != tc.table.moduleSID {
						t.Errorf("module item %s = %d, want %s = %d", it.Identifier, sid, tc.table.module, tc.table.moduleSID)
					}
				case it.Namespace != "data":
					t.Errorf("unexpected namespace %q (%s)", it.Namespace, it.Identifier)
				case it.Identifier == containerPath:
					if sid != tc.table.container {
						t.Errorf("container %s = %d in the file, %d in the table", it.Identifier, sid, tc.table.container)
					}
				default:
					name, ok := strings.CutPrefix(it.Identifier, containerPath+"/")
					if !ok || strings.Contains(name, "/") {
						t.Errorf("data item %s is not a leaf of %s", it.Identifier, containerPath)
						continue
					}
					leaves++
					l, ok := tc.table.byName[name]
					if !ok {
						t.Errorf("leaf %s (SID %d) is missing from the table", name, sid)
						continue
					}
					if got := tc.table.byLeaf[l]; got != sid {
						t.Errorf("leaf %s: table SID %d, file SID %d", name, got, sid)
					}
					if got, ok := tc.table.bySID(sid); !ok || got != l {
						t.Errorf("bySID(%d) = %v, %v; want leaf %s", sid, got, ok, name)
					}
				}
			}
			if leaves != len(tc.table.leaves) {
				t.Errorf("file has %d leaves, table %d", leaves, len(tc.table.leaves))
			}
		})
	}
}

// TestSIDTable_Delta pins the delta keys that standards.md §2.2 lists and
// the decoded cBRSKI examples use.
func TestSIDTable_Delta(t *testing.T) {
	t.Parallel()
	tests := []struct {
		table *sidTable
		name  string
		delta uint64
	}{
		{voucherSIDs, "assertion", 1},
		{voucherSIDs, "created-on", 2},
		{voucherSIDs, "domain-cert-revocation-checks", 3},
		{voucherSIDs, "nonce", 7},
		{voucherSIDs, "pinned-domain-cert", 8},
		{voucherSIDs, "serial-number", 11},
		{voucherSIDs, "extensions", 15}, // not 17 as the 8366bis example prints
		{requestSIDs, "assertion", 1},
		{requestSIDs, "created-on", 2},
		{requestSIDs, "idevid-issuer", 5},
		{requestSIDs, "nonce", 7},
		{requestSIDs, "prior-signed-voucher-request", 9},
		{requestSIDs, "proximity-registrar-pubk", 12},
		{requestSIDs, "serial-number", 13},
		{requestSIDs, "extensions", 21},
		{requestSIDs, "manufacturer-proprietary", 22},
	}
	for _, tc := range tests {
		l, ok := tc.table.byName[tc.name]
		if !ok {
			t.Errorf("%s: no leaf %s", tc.table.module, tc.name)
			continue
		}
		if got := tc.table.delta(l); got != tc.delta {
			t.Errorf("%s %s: delta %d, want %d", tc.table.module, tc.name, got, tc.delta)
		}
		if l2, ok := tc.table.byName[tc.table.module+":"+tc.name]; !ok || l2 != l {
			t.Errorf("%s: qualified name of %s does not resolve", tc.table.module, tc.name)
		}
	}
	// Request-only leaves are absent from the voucher module.
	for _, l := range []sidLeafID{sidPriorSignedVoucherRequest, sidProximityRegistrarCert, sidAgentSignCert} {
		if voucherSIDs.has(l) {
			t.Errorf("voucher table has request-only leaf %s", requestSIDs.name(l))
		}
		if !requestSIDs.has(l) {
			t.Errorf("request table lacks leaf %d", l)
		}
	}
}
