package registrar_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
	"github.com/gatehouse-pki/gatehouse/store"
)

// writeKey writes the domain CA key to a 0600 file, as a deployment has it.
func writeKey(t testing.TB, ca *pkitest.CA) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "domain-ca-key.pem")
	if err := os.WriteFile(p, pkitest.KeyPEM(t, ca.Signer), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// generationsEnv is newEnv with the store's CA generations loaded, new
// keys under a temporary directory.
func generationsEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	keys := registrar.KeyFiles{Dir: filepath.Join(t.TempDir(), "ca")}
	if err := e.reg.Service.LoadGenerations(t.Context(), keys, writeKey(t, e.dom)); err != nil {
		t.Fatal(err)
	}
	return e
}

func cacerts(t *testing.T, p *registrartest.Pledge) []*x509.Certificate {
	t.Helper()
	resp, body, err := p.Get(t.Context(), est.PathPrefix+"/"+est.OpCACerts)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("cacerts: %v %v", err, resp)
	}
	cs, err := registrartest.ParseCertsOnly(body)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func verifies(leaf, root *x509.Certificate, inter []*x509.Certificate, at time.Time) error {
	roots, ip := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	for _, c := range inter {
		ip.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: ip, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err
}

// TestService_RolloverCA covers reliability R2, R3, R5 and R6 over real
// TLS: LDevIDs from before and after an online rollover verify with either
// root alone plus /cacerts; a pledge whose voucher pinned the old domain CA
// before the switch enrols after it; an old LDevID re-enrols into the new
// generation, a revoked one is refused.
func TestService_RolloverCA(t *testing.T) {
	t.Parallel()
	e := generationsEnv(t)
	ctx := t.Context()
	_, oldLeaf, oldKey := e.enrolled(t, "SN-ROLL-A")
	_, revokedLeaf, revokedKey := e.enrolled(t, "SN-ROLL-R")
	pinned := e.pledge(t, "SN-ROLL-B")
	e.onboard(t, pinned) // voucher pinned to the old domain CA

	e.fc.Add(24 * time.Hour)
	res, err := e.reg.Service.RolloverCA(ctx, registrar.RolloverDeps{})
	if err != nil {
		t.Fatal(err)
	}
	if res.From != registrar.GenerationID(e.dom.Root()) || res.To == res.From || res.Resumed {
		t.Fatalf("rollover result %+v", res)
	}

	// R3: /cacerts holds the four certificates, each signed as named.
	cs := cacerts(t, pinned)
	if len(cs) != 4 {
		t.Fatalf("cacerts has %d certificates, want 4", len(cs))
	}
	l := pki.Links{NewWithNew: cs[0], OldWithNew: cs[1], NewWithOld: cs[2], OldWithOld: cs[3]}
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
	if !l.OldWithOld.Equal(e.dom.Root()) || registrar.GenerationID(l.NewWithNew) != res.To {
		t.Fatal("cacerts does not hold the old root and the new generation")
	}
	for _, c := range []*x509.Certificate{l.NewWithNew, l.NewWithOld, l.OldWithNew} {
		pkitest.Lint(t, c)
	}

	// R5: the pledge that holds a voucher pinned to the old CA enrols.
	key := pkitest.NewKey(t)
	newLeaf, resp, body, err := pinned.EST(ctx, est.OpSimpleEnroll, registrartest.NewCSR(t, key, "SN-ROLL-B"))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("simpleenroll after the switch: %v %v %s", err, resp, body)
	}
	if !bytes.Equal(newLeaf.AuthorityKeyId, l.NewWithNew.SubjectKeyId) {
		t.Error("a post-rollover LDevID is not issued by the new key")
	}
	pkitest.Lint(t, newLeaf)

	// R6: the old LDevID re-enrols and gets a new-generation LDevID.
	lp := registrartest.LDevIDPledge(t, e.reg, "SN-ROLL-A", oldLeaf, oldKey)
	renewed, resp, body, err := lp.EST(ctx, est.OpSimpleReenroll, registrartest.NewCSR(t, pkitest.NewKey(t), "SN-ROLL-A"))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("reenroll with an old-generation LDevID: %v %v %s", err, resp, body)
	}
	if !bytes.Equal(renewed.AuthorityKeyId, l.NewWithNew.SubjectKeyId) || renewed.NotAfter.After(l.NewWithNew.NotAfter) {
		t.Error("the renewed LDevID is not from the new generation within its validity")
	}
	rec, err := e.reg.DB().Certificate(ctx, renewed.SerialNumber)
	if err != nil || rec.Generation != res.To {
		t.Errorf("stored generation %q (%v), want %s", rec.Generation, err, res.To)
	}

	// R2 both ways, for the LDevIDs in service.
	now := e.fc.Now()
	for name, tc := range map[string]struct {
		leaf  *x509.Certificate
		root  *x509.Certificate
		inter []*x509.Certificate
	}{
		"old/old-root":             {oldLeaf, l.OldWithOld, nil},
		"old/new-root+OldWithNew":  {oldLeaf, l.NewWithNew, []*x509.Certificate{l.OldWithNew}},
		"new/new-root":             {newLeaf, l.NewWithNew, nil},
		"new/old-root+NewWithOld":  {newLeaf, l.OldWithOld, []*x509.Certificate{l.NewWithOld}},
		"renewed/old-root+cacerts": {renewed, l.OldWithOld, cs},
	} {
		if err := verifies(tc.leaf, tc.root, tc.inter, now); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	// D02 across the rollover: a revoked old LDevID is refused.
	if err := e.reg.DB().Revoke(ctx, revokedLeaf.SerialNumber, 1); err != nil {
		t.Fatal(err)
	}
	rp := registrartest.LDevIDPledge(t, e.reg, "SN-ROLL-R", revokedLeaf, revokedKey)
	_, resp, _, err = rp.EST(ctx, est.OpSimpleReenroll, registrartest.NewCSR(t, pkitest.NewKey(t), "SN-ROLL-R"))
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("reenroll with a revoked old LDevID: %v %v, want 403", err, resp)
	}

	// RFC 8995 §5.8.2: the audit-log check knows every domainID the domain
	// has used: both generations' key identifiers and SPKI hashes.
	for _, c := range []*x509.Certificate{l.OldWithOld, l.NewWithNew} {
		spki := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		if !e.reg.Service.KnowsDomainID(c.SubjectKeyId) || !e.reg.Service.KnowsDomainID(spki[:]) {
			t.Errorf("domainID of %s unknown to the audit-log check", c.Subject)
		}
	}
	if e.reg.Service.KnowsDomainID(make([]byte, 20)) {
		t.Error("a foreign domainID is accepted")
	}

	// The audit trail holds every step.
	want := map[string]bool{registrar.CARolloverSwitched: false, registrar.CARolloverFinished: false, registrar.CARolloverSigning: false}
	steps := 0
	for _, ev := range e.reg.AuditSince(t, 0) {
		if _, ok := want[ev.Type]; ok {
			want[ev.Type] = true
		}
		if ev.Type == registrar.CARolloverStep {
			steps++
		}
	}
	if steps != 4 || !want[registrar.CARolloverSwitched] || !want[registrar.CARolloverFinished] || !want[registrar.CARolloverSigning] {
		t.Errorf("audit: %d step events, %v", steps, want)
	}
}

// TestService_RolloverDuringOnboarding is reliability R1 at test scale: an
// online rollover in the middle of concurrent onboardings over real TLS,
// with zero failed enrolments, every LDevID's AKI equal to the SKI of the
// generation the store recorded for it, and no serial twice.
func TestService_RolloverDuringOnboarding(t *testing.T) {
	t.Parallel()
	e := generationsEnv(t)
	const workers, before, after = 4, 8, 8
	type out struct {
		cert *x509.Certificate
		err  error
	}
	var (
		mu        sync.Mutex
		results   []out
		rolled    bool
		afterRoll int
	)
	trigger := make(chan struct{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				serial := fmt.Sprintf("SN-R1-%d-%03d", w, i)
				p := e.pledge(t, serial)
				var o out
				resp, body, err := p.RequestVoucher(t.Context(), p.Sign(t, p.Request(t)))
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("voucher %s: %d %s", serial, resp.StatusCode, body)
				}
				if err == nil {
					var c *x509.Certificate
					c, resp, body, err = p.EST(t.Context(), est.OpSimpleEnroll, registrartest.NewCSR(t, pkitest.NewKey(t), serial))
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("simpleenroll %s: %d %s", serial, resp.StatusCode, body)
					}
					o.cert = c
				}
				o.err = err
				mu.Lock()
				results = append(results, o)
				if len(results) == before {
					close(trigger)
				}
				if rolled {
					afterRoll++
					if afterRoll == after {
						close(stop)
					}
				}
				mu.Unlock()
			}
		})
	}
	<-trigger
	res, err := e.reg.Service.RolloverCA(t.Context(), registrar.RolloverDeps{})
	mu.Lock()
	rolled = true
	mu.Unlock()
	if err != nil {
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	wg.Wait()
	seen := map[string]bool{}
	byGen := map[string]int{}
	for _, r := range results {
		if r.err != nil {
			t.Errorf("failed enrolment: %v", r.err)
			continue
		}
		sn := r.cert.SerialNumber.String()
		if seen[sn] {
			t.Errorf("serial %s issued twice", sn)
		}
		seen[sn] = true
		rec, err := e.reg.DB().Certificate(t.Context(), r.cert.SerialNumber)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Generation != hex.EncodeToString(r.cert.AuthorityKeyId) {
			t.Errorf("certificate %s: AKI %x, recorded generation %s", sn, r.cert.AuthorityKeyId, rec.Generation)
		}
		byGen[rec.Generation]++
	}
	t.Logf("LDevIDs per generation: %v (rollover %s → %s)", byGen, res.From, res.To)
	if byGen[res.From] == 0 || byGen[res.To] == 0 {
		t.Errorf("both generations should have issued: %v", byGen)
	}
}

// TestRollover_CrashAtEachStep is reliability R4: a rollover stopped at
// each step (failpoint, as a crash would stop it) leaves exactly one
// active generation; running it again completes it with a complete,
// correctly signed set of certificates, and the store then records every
// key that signed anything.
func TestRollover_CrashAtEachStep(t *testing.T) {
	t.Parallel()
	points := []string{
		registrar.FailAfterNewKey, registrar.FailAfterNewWithNew, registrar.FailAfterNewWithOld,
		registrar.FailAfterOldWithNew, registrar.FailAfterActiveSwitch, registrar.FailAfterCACertsPublic,
	}
	for _, fp := range points {
		t.Run(fp, func(t *testing.T) {
			t.Parallel()
			fc := pkitest.NewClock()
			dom := pkitest.NewCA(t, pkitest.Name("Crash Domain CA"), pkitest.Clock(fc))
			path := filepath.Join(t.TempDir(), "registrar.db")
			db, err := store.Open(path, store.Options{Clock: fc})
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			if err := db.PutGeneration(ctx, store.Generation{ID: registrar.GenerationID(dom.Root()), Certificate: dom.Root().Raw, KeyRef: writeKey(t, dom), Active: true}); err != nil {
				t.Fatal(err)
			}
			keys := registrar.KeyFiles{Dir: filepath.Join(t.TempDir(), "ca")}
			crash := errors.New("crash")
			d := registrar.RolloverDeps{Store: db, Clock: fc, Audit: audit.NewRecorder(db, nil), Keys: keys, Linter: pkitest.NewLinter(t),
				Failpoint: func(step string) error {
					if step == fp {
						return crash
					}
					return nil
				}}
			if _, err := registrar.Rollover(ctx, d); !errors.Is(err, crash) {
				t.Fatalf("rollover: %v, want the failpoint", err)
			}
			// "Restart": reopen the store.
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			if db, err = store.Open(path, store.Options{Clock: fc}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = db.Close() })
			requireOneActive(t, db)
			d.Store, d.Audit, d.Failpoint = db, audit.NewRecorder(db, nil), nil
			res, err := registrar.Rollover(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Resumed {
				t.Error("the second run did not resume the interrupted rollover")
			}
			active := requireOneActive(t, db)
			if active.ID != res.To || active.Previous != res.From || len(active.LinkCertificates) != 2 {
				t.Fatalf("active generation %s (previous %s, %d links), want %s", active.ID, active.Previous, len(active.LinkCertificates), res.To)
			}
			if _, err := db.CurrentRollover(ctx); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("rollover record left open: %v", err)
			}
			parse := func(der []byte) *x509.Certificate {
				c, err := x509.ParseCertificate(der)
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			l := pki.Links{OldWithOld: dom.Root(), NewWithNew: parse(active.Certificate), NewWithOld: parse(active.LinkCertificates[0]), OldWithNew: parse(active.LinkCertificates[1])}
			if err := l.Check(); err != nil {
				t.Fatal(err)
			}
			// Exactly one new key was generated: the crash came after it
			// was recorded, and the resumed run reused it.
			files, err := os.ReadDir(keys.Dir)
			if err != nil || len(files) != 1 {
				t.Errorf("key files: %d (%v), want 1", len(files), err)
			}
		})
	}
}

func requireOneActive(t *testing.T, db *store.DB) store.Generation {
	t.Helper()
	gens, err := db.Generations(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var active []store.Generation
	for _, g := range gens {
		if g.Active {
			active = append(active, g)
		}
	}
	if len(active) != 1 {
		t.Fatalf("%d active generations, want exactly 1", len(active))
	}
	return active[0]
}

// TestAdmin_CARevoke revokes through the admin API: 204, then the LDevID is
// refused for re-enrolment on the connection it already had open (the
// store is read per request, attack table D08); unknown serial 404, twice
// 409, a bad reason 400; the status counts the revoked certificate.
func TestAdmin_CARevoke(t *testing.T) {
	t.Parallel()
	e := generationsEnv(t)
	ctx := t.Context()
	_, leaf, key := e.enrolled(t, "SN-REVOKE-1")
	lp := registrartest.LDevIDPledge(t, e.reg, "SN-REVOKE-1", leaf, key)
	// The first request opens the connection that the later one reuses.
	if resp, _, err := lp.Post(ctx, registrar.PathEnrollStatus, registrar.MediaTypeJSON, []byte(`{"version":1,"status":true}`)); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("enrollstatus with the LDevID: %v %v", err, resp)
	}
	admin := httptestServer(t, e.reg.Service.AdminHandler())
	post := func(path, body string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, admin+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	sn := leaf.SerialNumber.Text(16)
	for _, tc := range []struct {
		path, body string
		want       int
	}{
		{"/api/v1/ca/revoke/" + sn, `{"reason":"certificateHold"}`, http.StatusBadRequest},
		{"/api/v1/ca/revoke/zz", ``, http.StatusBadRequest},
		{"/api/v1/ca/revoke/0abcdef1", ``, http.StatusNotFound},
		{"/api/v1/ca/revoke/" + sn, `{"reason":"keyCompromise"}`, http.StatusNoContent},
		{"/api/v1/ca/revoke/" + sn, ``, http.StatusConflict},
	} {
		if got := post(tc.path, tc.body); got != tc.want {
			t.Errorf("POST %s %s = %d, want %d", tc.path, tc.body, got, tc.want)
		}
	}
	_, resp, _, err := lp.EST(ctx, est.OpSimpleReenroll, registrartest.NewCSR(t, pkitest.NewKey(t), "SN-REVOKE-1"))
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("reenroll after revocation on the open connection: %v %v, want 403", err, resp)
	}
	rec, err := e.reg.DB().Certificate(ctx, leaf.SerialNumber)
	if err != nil || rec.Status != store.CertRevoked || rec.RevocationReason != 1 {
		t.Errorf("stored: %+v %v", rec, err)
	}
	st, err := e.reg.Service.CAStatus(ctx, 0)
	if err != nil || len(st.Generations) != 1 || st.Generations[0].Revoked != 1 || st.Generations[0].LDevIDs != 0 {
		t.Errorf("status: %+v %v", st, err)
	}
	e.reg.RequireAudit(t, registrar.LDevIDRevoked, "SN-REVOKE-1")
}

func httptestServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestService_LoadGenerationsFinishesSwitch: a registrar that starts after
// a rollover crashed between the switch and its end issues with the new
// generation and closes the rollover; once the old root has expired,
// /cacerts drops it and its links, and the status shows no overlap.
func TestService_LoadGenerationsFinishesSwitch(t *testing.T) {
	t.Parallel()
	e := generationsEnv(t)
	ctx := t.Context()
	keys := registrar.KeyFiles{Dir: filepath.Join(t.TempDir(), "ca")}
	crash := errors.New("crash")
	e.fc.Add(24 * time.Hour) // the new root outlives the old one by a day
	_, err := registrar.Rollover(ctx, registrar.RolloverDeps{Store: e.reg.DB(), Clock: e.fc, Audit: audit.NewRecorder(e.reg.DB(), nil), Keys: keys,
		Failpoint: func(step string) error {
			if step == registrar.FailAfterActiveSwitch {
				return crash
			}
			return nil
		}})
	if !errors.Is(err, crash) {
		t.Fatalf("rollover: %v", err)
	}
	if cs := e.reg.Service.CACertificates(); len(cs) != 1 {
		t.Fatalf("before the restart the registrar serves %d certificates", len(cs))
	}
	// "Restart": load the generations again.
	if err := e.reg.Service.LoadGenerations(ctx, keys, writeKey(t, e.dom)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.DB().CurrentRollover(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("switched rollover not finished at start-up: %v", err)
	}
	cs := e.reg.Service.CACertificates()
	if len(cs) != 4 || cs[3].Equal(cs[0]) {
		t.Fatalf("after the restart /cacerts has %d certificates, want 4", len(cs))
	}
	_, leaf, _ := e.enrolled(t, "SN-RESTART-1")
	if !bytes.Equal(leaf.AuthorityKeyId, cs[0].SubjectKeyId) {
		t.Error("after the restart the old generation still issues")
	}
	st, err := e.reg.Service.CAStatus(ctx, 0)
	if err != nil || st.OverlapEnd.IsZero() || st.Generations[1].LDevIDs != 1 {
		t.Fatalf("status in the overlap: %+v %v", st, err)
	}
	// Past the old root's notAfter the overlap is over.
	e.fc.Set(e.dom.Root().NotAfter.Add(time.Hour))
	if err := e.reg.Service.LoadGenerations(ctx, keys, ""); err != nil {
		t.Fatal(err)
	}
	if cs := e.reg.Service.CACertificates(); len(cs) != 1 || !cs[0].Equal(activeRoot(t, e)) {
		t.Errorf("after the overlap /cacerts has %d certificates, want only the new root", len(cs))
	}
	if st, err := e.reg.Service.CAStatus(ctx, 0); err != nil || !st.OverlapEnd.IsZero() {
		t.Errorf("status after the overlap: overlapEnd %s, %v", st.OverlapEnd, err)
	}
}

func activeRoot(t *testing.T, e *env) *x509.Certificate {
	t.Helper()
	g, err := e.reg.DB().ActiveGeneration(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(g.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
