package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse-pki/gatehouse/masa/masatest"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
	"github.com/gatehouse-pki/gatehouse/store"
)

// TestDevices_ApproveAndDeny runs the operator commands against a real
// registrar whose manufacturer policy is approve (issue 3: unknown pledges
// wait with 202 + Retry-After, appear in `gatehouse devices list`, and
// `gatehouse devices approve SERIAL` releases them).
func TestDevices_ApproveAndDeny(t *testing.T) {
	t.Parallel()
	fc := pkitest.NewClock()
	mfg := pkitest.NewCA(t, pkitest.Clock(fc), pkitest.Name("Devices Test Mfg"))
	m := masatest.Start(t, masatest.Options{Clock: fc, Manufacturer: mfg})
	reg := registrartest.Start(t, registrartest.Options{Clock: fc, Manufacturer: mfg, MASA: m, Policy: registrar.PolicyApprove})
	admin := httptest.NewServer(reg.Service.AdminHandler())
	t.Cleanup(admin.Close)

	// Each pledge sends one voucher-request, parks at 202, and resends the
	// identical bytes after the operator's decision (RFC 8995 §5.6).
	type pledge struct {
		p   *registrartest.Pledge
		pvr []byte
	}
	send := func(t *testing.T, pl pledge) int {
		t.Helper()
		resp, body, err := pl.p.RequestVoucher(t.Context(), pl.pvr)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close() // already read and closed by registrartest; for the linter
		if resp.StatusCode == http.StatusAccepted && resp.Header.Get("Retry-After") == "" {
			t.Fatalf("202 without Retry-After: %s", body)
		}
		return resp.StatusCode
	}
	newPledge := func(serial string) pledge {
		id := pkitest.NewIDevID(t, mfg, serial, m.Authority)
		p := registrartest.NewPledge(t, reg, serial, id.TLS)
		return pledge{p: p, pvr: p.Sign(t, p.Request(t))}
	}
	ok, no := newPledge("SN-APPROVE-ME"), newPledge("SN-DENY-ME")
	for _, pl := range []pledge{ok, no} {
		if got := send(t, pl); got != http.StatusAccepted {
			t.Fatalf("first voucher-request: status %d, want 202 (waiting for an operator)", got)
		}
	}

	code, out, errOut := runCLI(t, "devices", "list", "--admin", admin.URL)
	if code != exitOK || !strings.Contains(out, "SN-APPROVE-ME") || strings.Count(out, string(store.DevicePendingApproval)) != 2 {
		t.Fatalf("devices list: exit %d\n%s%s", code, out, errOut)
	}

	code, out, errOut = runCLI(t, "devices", "approve", "SN-APPROVE-ME", "--admin", admin.URL)
	if code != exitOK || out != "approved SN-APPROVE-ME\n" || errOut != "" {
		t.Fatalf("devices approve: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "devices", "deny", "SN-DENY-ME", "--reason", "not ours", "--admin", admin.URL)
	if code != exitOK || out != "denied SN-DENY-ME\n" || errOut != "" {
		t.Fatalf("devices deny: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	if got := send(t, ok); got != http.StatusOK {
		t.Fatalf("approved pledge's retry: status %d, want 200 with a voucher", got)
	}
	if got := send(t, no); got != http.StatusForbidden {
		t.Fatalf("denied pledge's retry: status %d, want 403", got)
	}

	code, out, errOut = runCLI(t, "devices", "list", "--json", "--status", string(store.DeviceDenied), "--admin", admin.URL)
	if code != exitOK {
		t.Fatalf("devices list --json: exit %d: %s", code, errOut)
	}
	var list registrar.DeviceList
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("devices list --json is not the API's JSON: %v\n%s", err, out)
	}
	if len(list.Devices) != 1 || list.Devices[0].Serial != "SN-DENY-ME" || list.Devices[0].StatusReason != "not ours" {
		t.Fatalf("denied devices = %+v", list.Devices)
	}
}
