package masa_test

import (
	"bytes"
	"crypto/x509"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-pki/gatehouse/internal/problem"
	"github.com/gatehouse-pki/gatehouse/masa"
	"github.com/gatehouse-pki/gatehouse/masa/masatest"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
)

// counted is a fixture whose MASA counts its full verifications.
func counted(t *testing.T, f *fixture) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	masa.CountVerifications(f.srv.Service, &n)
	return &n
}

// wantForbidden checks that err is a Forbidden problem (RFC 8995 §5.6: 403).
func wantForbidden(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("accepted, want forbidden")
	}
	if got := problem.From(err).Kind; got != problem.Forbidden {
		t.Fatalf("kind %s (%v), want forbidden", got, err)
	}
}

// TestService_VerifiedCache: the RVR a registrar sends to requestvoucher
// and then to requestauditlog (and again on a retry) is verified once; a
// body one byte different, another media type or another TLS client
// certificate is verified afresh.
func TestService_VerifiedCache(t *testing.T) {
	t.Parallel()
	f := newFixture(t, masa.OwnershipFirstClaim)
	n := counted(t, f)
	svc := f.srv.Service
	body := f.proximityRVR(t, "SN-CACHE-1")
	req := masa.VoucherRequest{Raw: body, MediaType: masa.MediaVoucherCMS, Peer: []*x509.Certificate{f.ra.Cert}}

	first, err := svc.RequestVoucher(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := n.Load(); got != 1 {
		t.Fatalf("first request: %d verifications, want 1", got)
	}
	if _, err := svc.AuditLog(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	retry, err := svc.RequestVoucher(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := n.Load(); got != 1 {
		t.Errorf("audit log and retry of the same bytes: %d verifications, want 1", got)
	}
	if !bytes.Equal(retry.Body, first.Body) {
		t.Error("the retry got another voucher")
	}
	f.verifyVoucher(t, retry.Body)

	// The last byte is the end of the RVR's signature: no longer valid, and
	// not answered from the cache.
	flipped := bytes.Clone(body)
	flipped[len(flipped)-1] ^= 0x01
	_, err = svc.AuditLog(t.Context(), masa.VoucherRequest{Raw: flipped, MediaType: masa.MediaVoucherCMS, Peer: req.Peer})
	wantForbidden(t, err)
	if got := n.Load(); got != 2 {
		t.Errorf("one byte different: %d verifications, want 2", got)
	}

	// The same bytes from another registrar of the same domain: the RVR is
	// not signed by that client's certificate (RFC 8995 §5.5.4).
	other := pkitest.NewRACert(t, f.domain, nil)
	_, err = svc.AuditLog(t.Context(), masa.VoucherRequest{Raw: body, MediaType: masa.MediaVoucherCMS, Peer: []*x509.Certificate{other.Cert}})
	wantForbidden(t, err)
	if got := n.Load(); got != 3 {
		t.Errorf("another client certificate: %d verifications, want 3", got)
	}

	// The same bytes under the COSE media type are parsed as COSE.
	_, err = svc.AuditLog(t.Context(), masa.VoucherRequest{Raw: body, MediaType: masa.MediaVoucherCOSE, Peer: req.Peer})
	if err == nil {
		t.Error("a CMS body is accepted as COSE")
	}
	if got := n.Load(); got != 4 {
		t.Errorf("another media type: %d verifications, want 4", got)
	}

	// The original is still cached.
	if _, err := svc.AuditLog(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	if got := n.Load(); got != 4 {
		t.Errorf("original again: %d verifications, want 4", got)
	}
}

// TestService_VerifiedCache_Time: a cached verification is not used once a
// certificate it checked has expired, and the created-on window is applied
// again on every use.
func TestService_VerifiedCache_Time(t *testing.T) {
	t.Parallel()
	t.Run("created-on/checked-on-hit", func(t *testing.T) {
		t.Parallel()
		fc := pkitest.NewClock()
		f := &fixture{fc: fc, mfg: pkitest.NewCA(t, pkitest.Clock(fc)), domain: pkitest.NewCA(t, pkitest.Clock(fc))}
		f.ra = pkitest.NewRACert(t, f.domain, nil)
		f.srv = masatest.Start(t, masatest.Options{Clock: fc, Manufacturer: f.mfg, MaxClockSkew: time.Minute})
		n := counted(t, f)
		req := masa.VoucherRequest{Raw: f.proximityRVR(t, "SN-CACHE-2"), MediaType: masa.MediaVoucherCMS, Peer: []*x509.Certificate{f.ra.Cert}}
		if _, err := f.srv.Service.RequestVoucher(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		fc.Add(2 * time.Minute) // past the skew, inside the cache's TTL
		_, err := f.srv.Service.AuditLog(t.Context(), req)
		wantForbidden(t, err)
		if got := n.Load(); got != 1 {
			t.Errorf("%d verifications, want 1 (a hit that applied the created-on check)", got)
		}
	})
	t.Run("domain-ca/expired-after-caching", func(t *testing.T) {
		t.Parallel()
		fc := pkitest.NewClock()
		f := &fixture{fc: fc, mfg: pkitest.NewCA(t, pkitest.Clock(fc)), domain: pkitest.NewCA(t, pkitest.Clock(fc), pkitest.Validity(time.Hour))}
		f.ra = pkitest.NewRACert(t, f.domain, nil)
		f.srv = masatest.Start(t, masatest.Options{Clock: fc, Manufacturer: f.mfg})
		n := counted(t, f)
		// Verify a minute before the domain CA expires; use the cache entry
		// two seconds after.
		fc.Set(f.domain.Cert.NotAfter.Add(-time.Minute))
		req := masa.VoucherRequest{Raw: f.proximityRVR(t, "SN-CACHE-3"), MediaType: masa.MediaVoucherCMS, Peer: []*x509.Certificate{f.ra.Cert}}
		if _, err := f.srv.Service.RequestVoucher(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		if _, err := f.srv.Service.AuditLog(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		fc.Set(f.domain.Cert.NotAfter.Add(2 * time.Second))
		_, err := f.srv.Service.AuditLog(t.Context(), req)
		wantForbidden(t, err)
		if got := n.Load(); got != 2 {
			t.Errorf("%d verifications, want 2 (the expired entry was not used)", got)
		}
	})
}
