package registrar

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/jmhodges/clock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/internal/problem"
	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/store"
)

// Audit events of the domain CA lifecycle (docs/operations/rollover.md).
const (
	// CAGenerationRecorded: the configured domain CA became the first
	// generation in the store.
	CAGenerationRecorded = "ca-generation-recorded"
	// CARolloverStep: one rollover step is durable (field step; signing
	// steps also carry the certificate's serial and DER).
	CARolloverStep = "ca-rollover-step"
	// CARolloverSigning: the named key is about to sign a rollover
	// certificate (before every signature, STYLE §3.8).
	CARolloverSigning = "ca-rollover-signing"
	// CARolloverSwitched: the new generation issues from now on.
	CARolloverSwitched = "ca-rollover-switched"
	// CARolloverFinished: every running registrar serves the new
	// generation; the rollover record is closed.
	CARolloverFinished = "ca-rollover-finished"
)

// Rollover failpoints (reliability R4), in the order they are passed.
const (
	FailAfterNewKey        = "after-newkey-generated"
	FailAfterNewWithNew    = "after-newwithnew-signed"
	FailAfterNewWithOld    = "after-newwithold-signed"
	FailAfterOldWithNew    = "after-oldwithnew-signed"
	FailAfterActiveSwitch  = "after-active-switch"
	FailAfterCACertsPublic = "after-cacerts-published"
)

// CAKeys creates and loads domain CA keys. KeyFiles is the software
// implementation; a PKCS#11 one returns a pkcs11: URI as ref.
type CAKeys interface {
	// Generate creates a new CA key, durably, and returns its reference
	// and a signer for it.
	Generate(ctx context.Context) (ref string, key crypto.Signer, err error)
	// Load returns the signer for a reference Generate returned (or the
	// configured key of the first generation).
	Load(ctx context.Context, ref string) (crypto.Signer, error)
}

// KeyFiles keeps CA keys as PKCS#8 PEM files (mode 0600) in Dir.
type KeyFiles struct {
	// Dir holds the generated keys; created (0700) when missing.
	Dir string
}

// Generate writes a new P-256 key to Dir/ca-<first 16 hex digits of its
// SKI>-key.pem, synced with its directory before it returns.
func (k KeyFiles) Generate(_ context.Context) (string, crypto.Signer, error) {
	key, err := pki.GenerateKey()
	if err != nil {
		return "", nil, err
	}
	ski, err := pki.SubjectKeyID(key.Public())
	if err != nil {
		return "", nil, err
	}
	if err := os.MkdirAll(k.Dir, 0o700); err != nil {
		return "", nil, fmt.Errorf("ca key directory: %w", err)
	}
	path, err := filepath.Abs(filepath.Join(k.Dir, "ca-"+hex.EncodeToString(ski[:8])+"-key.pem"))
	if err != nil {
		return "", nil, fmt.Errorf("ca key path: %w", err)
	}
	if err := pki.WriteKeyFile(path, key); err != nil {
		return "", nil, err
	}
	d, err := os.Open(k.Dir)
	if err != nil {
		return "", nil, fmt.Errorf("sync ca key directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return "", nil, fmt.Errorf("sync ca key directory: %w", err)
	}
	return path, key, nil
}

// Load reads a key file or key URI (pki.LoadSigner).
func (k KeyFiles) Load(ctx context.Context, ref string) (crypto.Signer, error) {
	return pki.LoadSigner(ctx, ref, nil)
}

// GenerationID names a CA generation: the hex subject key identifier of
// its certificate, the value issuance intents and certificates record.
func GenerationID(c *x509.Certificate) string { return hex.EncodeToString(c.SubjectKeyId) }

// caGeneration is one parsed generation.
type caGeneration struct {
	id     string
	cert   *x509.Certificate
	links  []*x509.Certificate // NewWithOld, OldWithNew (empty for the first)
	active bool
}

// caState is the domain CA as the registrar uses it at one moment; a
// rollover replaces it as a whole (Service.ca).
type caState struct {
	// issuer issues LDevIDs with the active generation; nil refuses EST.
	issuer *pki.Issuer
	// gens are the generations, oldest first.
	gens []caGeneration
	// cacerts is the /cacerts (and CoAP /crts) content.
	cacerts []*x509.Certificate
	// roots verify LDevIDs: every generation's certificate.
	roots *x509.CertPool
	// inter are the link certificates and any intermediate of the chain.
	inter []*x509.Certificate
	// domainIDs are every audit-log domainID the domain has used (RFC
	// 8995 §5.8.2; standards digest §5.3 step 8), keyed by raw bytes.
	domainIDs map[string]bool
	// pins are the certificates a voucher may pin (DER): every domain CA
	// certificate of every generation and the RA leaf.
	pins [][]byte
}

// newCAState builds the state from the configured chain alone (one
// generation, not yet recorded in the store).
func newCAState(issuer *pki.Issuer, chain []*x509.Certificate, ra *x509.Certificate) *caState {
	st := &caState{issuer: issuer, roots: x509.NewCertPool(), domainIDs: map[string]bool{}}
	st.gens = []caGeneration{{id: GenerationID(chain[0]), cert: chain[0], active: true}}
	st.cacerts = slices.Clone(chain)
	st.roots.AddCert(chain[len(chain)-1])
	st.inter = slices.Clone(chain[:len(chain)-1])
	st.addIDs(ra)
	for _, c := range chain {
		st.addIDs(c)
	}
	return st
}

func (st *caState) addIDs(c *x509.Certificate) {
	for _, id := range domainIDsOf(c) {
		st.domainIDs[string(id)] = true
	}
	st.pins = append(st.pins, c.Raw)
}

// ca returns the current domain CA state.
func (s *Service) ca() *caState { return s.caPtr.Load() }

// CACertificates returns the /cacerts content (RFC 7030 §4.1.3): the
// issuing generation's certificate first, then, for each older generation
// whose certificate is still valid (the overlap), the link certificates
// that join it to the next (OldWithNew, NewWithOld) and its own root
// (OldWithOld). A pledge holding only one generation's root can thus verify
// every LDevID in service (reliability R2, R3). It is the single source for
// the EST /cacerts handler and the CoAP /crts resource.
func (s *Service) CACertificates() []*x509.Certificate { return slices.Clone(s.ca().cacerts) }

// LoadGenerations makes the store the source of truth for the domain CA:
// on first use it records the configured domain CA (Deps.DomainCA, its key
// at keyRef) as the first generation; then it builds the registrar's CA
// state from every stored generation, issuing with the active one, whose
// key keys loads. A rollover found switched but unfinished (a crash after
// the switch) is finished here; one stopped before the switch is left as
// is — the old generation still issues — until `gatehouse ca rollover`
// resumes it. A configured chain with an intermediate keeps the single
// configured generation (rollover covers root-only domain CAs).
func (s *Service) LoadGenerations(ctx context.Context, keys CAKeys, keyRef string) error {
	s.rollMu.Lock()
	defer s.rollMu.Unlock()
	cur := s.ca()
	if len(s.domain) != 1 {
		s.log.Warn("domain CA has an intermediate; CA generations and rollover are not used", slog.Int("chain", len(s.domain)))
		return nil
	}
	if err := RecordFirstGeneration(ctx, s.db, s.domain[0], keyRef); err != nil {
		return err
	}
	st, err := buildCAState(ctx, s.db, keys, cur.issuer, s.ra.Leaf, s.clk)
	if err != nil {
		return err
	}
	s.caPtr.Store(st)
	s.keys = keys
	return s.finishSwitched(ctx)
}

// RecordFirstGeneration records root (a self-signed domain CA whose key is
// at keyRef) as the first, active CA generation when the store has none
// yet; otherwise it does nothing.
func RecordFirstGeneration(ctx context.Context, db *store.DB, root *x509.Certificate, keyRef string) error {
	gens, err := db.Generations(ctx)
	if err != nil || len(gens) > 0 {
		return err
	}
	g := store.Generation{ID: GenerationID(root), Certificate: root.Raw, KeyRef: keyRef, Active: true}
	ev := audit.New(CAGenerationRecorded, "generation", g.ID, "subject", root.Subject.String(), "not_after", root.NotAfter.UTC().Format(time.RFC3339), "key_ref", keyRef)
	return db.PutGeneration(ctx, g, ev)
}

// finishSwitched closes a rollover that reached the switch: this registrar
// serves the new generation now.
func (s *Service) finishSwitched(ctx context.Context) error {
	r, err := s.db.CurrentRollover(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return err
	case r.Step != store.RolloverSwitched:
		s.log.Warn("a CA rollover is in progress; resume it with gatehouse ca rollover", slog.String("step", string(r.Step)), slog.String("to", r.To))
		return nil
	}
	return s.db.FinishRollover(ctx, audit.New(CARolloverFinished, "from", r.From, "to", r.To))
}

// buildCAState reads every generation and builds the state; the active
// generation's key is loaded and an issuer derived from template (nil:
// no issuer).
func buildCAState(ctx context.Context, db *store.DB, keys CAKeys, template *pki.Issuer, ra *x509.Certificate, clk clock.Clock) (*caState, error) {
	stored, err := db.Generations(ctx)
	if err != nil {
		return nil, err
	}
	gens, err := parseGenerations(stored)
	if err != nil {
		return nil, err
	}
	st := &caState{roots: x509.NewCertPool(), domainIDs: map[string]bool{}, gens: gens}
	st.addIDs(ra)
	now := clk.Now()
	var activeRef string
	for i := len(gens) - 1; i >= 0; i-- {
		g := gens[i]
		st.roots.AddCert(g.cert)
		st.addIDs(g.cert)
		for _, l := range g.links {
			st.inter = append(st.inter, l)
			st.addIDs(l)
		}
		if g.active {
			activeRef = stored[i].KeyRef
		}
	}
	// /cacerts: newest first; an older generation (and the links into it)
	// only while its certificate is valid.
	for i := len(gens) - 1; i >= 0; i-- {
		g := gens[i]
		if i < len(gens)-1 && !now.Before(g.cert.NotAfter) {
			break
		}
		if i < len(gens)-1 {
			next := gens[i+1]
			// OldWithNew, then NewWithOld (stored as NewWithOld, OldWithNew).
			st.cacerts = append(st.cacerts, next.links[1], next.links[0])
		}
		st.cacerts = append(st.cacerts, g.cert)
	}
	if template != nil {
		key, err := keys.Load(ctx, activeRef)
		if err != nil {
			return nil, fmt.Errorf("active CA generation key: %w", err)
		}
		active := gens[activeIndex(gens)]
		ca, err := pki.LoadCA([]*x509.Certificate{active.cert}, key)
		if err != nil {
			return nil, fmt.Errorf("active CA generation %s: %w", active.id, err)
		}
		if st.issuer, err = template.WithCA(ca); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// parseGenerations orders the stored generations by their Previous links
// (oldest first) and parses them; exactly one must be active, and the
// newest generation must be it.
func parseGenerations(stored []store.Generation) ([]caGeneration, error) {
	if len(stored) == 0 {
		return nil, errors.New("no CA generation stored")
	}
	byPrev := map[string]int{}
	first := -1
	for i, g := range stored {
		if g.Previous == "" {
			if first >= 0 {
				return nil, fmt.Errorf("CA generations %s and %s both claim to be the first", stored[first].ID, g.ID)
			}
			first = i
			continue
		}
		byPrev[g.Previous] = i
	}
	if first < 0 {
		return nil, errors.New("no first CA generation")
	}
	var out []caGeneration
	ordered := make([]store.Generation, 0, len(stored))
	for i := first; ; {
		g := stored[i]
		ordered = append(ordered, g)
		cert, err := x509.ParseCertificate(g.Certificate)
		if err != nil {
			return nil, fmt.Errorf("CA generation %s: %w", g.ID, err)
		}
		cg := caGeneration{id: g.ID, cert: cert, active: g.Active}
		for _, der := range g.LinkCertificates {
			l, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, fmt.Errorf("CA generation %s link: %w", g.ID, err)
			}
			cg.links = append(cg.links, l)
		}
		if g.Previous != "" && len(cg.links) != 2 {
			return nil, fmt.Errorf("CA generation %s: %d link certificates, want 2", g.ID, len(cg.links))
		}
		out = append(out, cg)
		next, ok := byPrev[g.ID]
		if !ok {
			break
		}
		i = next
	}
	if len(out) != len(stored) {
		return nil, fmt.Errorf("CA generations do not form one chain (%d of %d reachable)", len(out), len(stored))
	}
	copy(stored, ordered)
	if n := countActive(out); n != 1 || !out[len(out)-1].active {
		return nil, fmt.Errorf("CA generations: %d active, and the newest must be the active one", n)
	}
	return out, nil
}

func countActive(gens []caGeneration) int {
	n := 0
	for _, g := range gens {
		if g.active {
			n++
		}
	}
	return n
}

func activeIndex(gens []caGeneration) int {
	for i, g := range gens {
		if g.active {
			return i
		}
	}
	return -1
}

// RolloverDeps are what a rollover needs, online (Service.RolloverCA) or
// offline (Rollover on a stopped data directory).
type RolloverDeps struct {
	// Store holds the generations and the rollover record. Required.
	Store *store.DB
	// Clock dates the new certificates. Required.
	Clock clock.Clock
	// Audit records every step. Required.
	Audit *audit.Recorder
	// Keys generates the new key and loads the old one. Required.
	Keys CAKeys
	// Linter, when set, lints each new certificate before it is recorded.
	Linter pki.Linter
	// Config shapes the new root (default: the old name with the next
	// generation suffix, the old lifetime).
	Config pki.RolloverConfig
	// Failpoint, when set, is called after each step with its name
	// (Fail… constants); an error stops the rollover there, as a crash
	// would (tests only).
	Failpoint func(step string) error
	// publish, when set, makes a running registrar serve the switched
	// generation.
	publish func(ctx context.Context) error
}

// RolloverResult says where a rollover ended.
type RolloverResult struct {
	// From and To are the generation IDs.
	From, To string
	// Resumed reports that an interrupted rollover was continued.
	Resumed bool
}

// ErrRolloverUnsupported reports a domain CA that cannot be rolled over
// here (an issuing intermediate).
var ErrRolloverUnsupported = errors.New("rollover not supported for this domain CA")

// Rollover rolls the domain CA's key over, "new-signs-old" (RFC 4210 §4.4;
// standards digest §5.3), or resumes the rollover in progress: generate
// and record the new key; sign and record NewWithNew, NewWithOld (old key)
// and OldWithNew (new key), each durable before the next; then switch the
// active generation in one transaction, last. A crash at any step leaves
// the old generation issuing and the record at the last step; running
// Rollover again rolls forward from there. Offline callers must hold the
// store exclusively (no registrar running on it).
func Rollover(ctx context.Context, d RolloverDeps) (RolloverResult, error) {
	if d.Store == nil || d.Clock == nil || d.Audit == nil || d.Keys == nil {
		return RolloverResult{}, errors.New("rollover: store, clock, audit and keys are required")
	}
	fail := func(step string) error {
		if d.Failpoint == nil {
			return nil
		}
		return d.Failpoint(step)
	}
	db := d.Store
	r, err := db.CurrentRollover(ctx)
	res := RolloverResult{Resumed: err == nil}
	if errors.Is(err, store.ErrNotFound) {
		if r, err = startRollover(ctx, d); err != nil {
			return res, err
		}
		if err := fail(FailAfterNewKey); err != nil {
			return res, err
		}
	} else if err != nil {
		return res, err
	}
	res.From, res.To = r.From, r.To
	if r.Step.IsValid() && r.Step != store.RolloverSwitched {
		if err := signLinks(ctx, d, &r, fail); err != nil {
			return res, err
		}
		ev := audit.New(CARolloverSwitched, "from", r.From, "to", r.To)
		if _, err := db.SwitchGeneration(ctx, ev); err != nil {
			return res, err
		}
		if err := fail(FailAfterActiveSwitch); err != nil {
			return res, err
		}
	}
	if d.publish != nil {
		if err := d.publish(ctx); err != nil {
			return res, err
		}
	}
	if err := fail(FailAfterCACertsPublic); err != nil {
		return res, err
	}
	if err := db.FinishRollover(ctx, audit.New(CARolloverFinished, "from", r.From, "to", r.To)); err != nil {
		return res, err
	}
	return res, nil
}

// startRollover generates the new key and records the first step.
func startRollover(ctx context.Context, d RolloverDeps) (store.Rollover, error) {
	active, err := d.Store.ActiveGeneration(ctx)
	if err != nil {
		return store.Rollover{}, fmt.Errorf("rollover: %w", err)
	}
	old, err := x509.ParseCertificate(active.Certificate)
	if err != nil {
		return store.Rollover{}, fmt.Errorf("rollover: active generation %s: %w", active.ID, err)
	}
	if !bytes.Equal(old.RawIssuer, old.RawSubject) {
		return store.Rollover{}, fmt.Errorf("rollover: %w: generation %s is not a self-signed root", ErrRolloverUnsupported, active.ID)
	}
	ref, key, err := d.Keys.Generate(ctx)
	if err != nil {
		return store.Rollover{}, fmt.Errorf("rollover: generate key: %w", err)
	}
	ski, err := pki.SubjectKeyID(key.Public())
	if err != nil {
		return store.Rollover{}, fmt.Errorf("rollover: %w", err)
	}
	r := store.Rollover{From: active.ID, To: hex.EncodeToString(ski), Step: store.RolloverKeyGenerated, KeyRef: ref}
	ev := audit.New(CARolloverStep, "step", string(r.Step), "from", r.From, "to", r.To, "key_ref", ref)
	if err := d.Store.RecordRollover(ctx, r, ev); err != nil {
		return store.Rollover{}, fmt.Errorf("rollover: %w", err)
	}
	return r, nil
}

// signLinks runs the signing steps r has not reached yet, recording each.
func signLinks(ctx context.Context, d RolloverDeps, r *store.Rollover, fail func(string) error) error {
	db := d.Store
	gens, err := db.Generations(ctx)
	if err != nil {
		return err
	}
	var from store.Generation
	for _, g := range gens {
		if g.ID == r.From {
			from = g
		}
	}
	if from.ID == "" {
		return fmt.Errorf("rollover: generation %s not found", r.From)
	}
	old, err := x509.ParseCertificate(from.Certificate)
	if err != nil {
		return fmt.Errorf("rollover: %w", err)
	}
	newKey, err := d.Keys.Load(ctx, r.KeyRef)
	if err != nil {
		return fmt.Errorf("rollover: new key: %w", err)
	}
	oldKey, err := d.Keys.Load(ctx, from.KeyRef)
	if err != nil {
		return fmt.Errorf("rollover: old key: %w", err)
	}
	oldCA, err := pki.LoadCA([]*x509.Certificate{old}, oldKey)
	if err != nil {
		return fmt.Errorf("rollover: old generation: %w", err)
	}
	var nwn *x509.Certificate
	if len(r.NewWithNew) > 0 {
		if nwn, err = x509.ParseCertificate(r.NewWithNew); err != nil {
			return fmt.Errorf("rollover: recorded NewWithNew: %w", err)
		}
	}
	steps := []struct {
		step store.RolloverStep
		name string
		fp   string
		sign func() (*x509.Certificate, error)
		set  func(der []byte)
	}{
		{store.RolloverNewWithNewSigned, "NewWithNew", FailAfterNewWithNew, func() (*x509.Certificate, error) {
			return pki.NewWithNew(d.Clock, old, d.Config, newKey)
		}, func(der []byte) { r.NewWithNew = der }},
		{store.RolloverNewWithOldSigned, "NewWithOld", FailAfterNewWithOld, func() (*x509.Certificate, error) {
			return pki.NewWithOld(oldCA, nwn)
		}, func(der []byte) { r.NewWithOld = der }},
		{store.RolloverOldWithNewSigned, "OldWithNew", FailAfterOldWithNew, func() (*x509.Certificate, error) {
			newCA, err := pki.LoadCA([]*x509.Certificate{nwn}, newKey)
			if err != nil {
				return nil, err
			}
			return pki.OldWithNew(newCA, old)
		}, func(der []byte) { r.OldWithNew = der }},
	}
	for _, st := range steps {
		if r.Step.IsValid() && stepIndex(r.Step) >= stepIndex(st.step) {
			continue
		}
		signer := r.From
		if st.name != "NewWithOld" {
			signer = r.To
		}
		if err := d.Audit.Record(ctx, audit.New(CARolloverSigning, "certificate", st.name, "signer", signer, "to", r.To)); err != nil {
			return err
		}
		c, err := st.sign()
		if err != nil {
			return fmt.Errorf("rollover: sign %s: %w", st.name, err)
		}
		if d.Linter != nil {
			if err := d.Linter.Lint(c.Raw); err != nil {
				return fmt.Errorf("rollover: lint %s: %w", st.name, err)
			}
		}
		st.set(c.Raw)
		if st.name == "NewWithNew" {
			nwn = c
		}
		r.Step = st.step
		ev := audit.New(CARolloverStep, "step", string(st.step), "from", r.From, "to", r.To,
			"cert_serial", hex.EncodeToString(c.SerialNumber.Bytes()), "cert_der", hex.EncodeToString(c.Raw))
		if err := db.RecordRollover(ctx, *r, ev); err != nil {
			return fmt.Errorf("rollover: %w", err)
		}
		if err := fail(st.fp); err != nil {
			return err
		}
	}
	return nil
}

func stepIndex(s store.RolloverStep) int {
	return slices.Index([]store.RolloverStep{store.RolloverKeyGenerated, store.RolloverNewWithNewSigned, store.RolloverNewWithOldSigned, store.RolloverOldWithNewSigned, store.RolloverSwitched}, s)
}

// RolloverCA runs Rollover online: against this registrar's store, and
// once the switch is durable, this registrar issues with the new
// generation and serves the new /cacerts before the rollover record is
// closed. Concurrent enrolments are not paused: an issuance that started
// with the old generation completes with it.
func (s *Service) RolloverCA(ctx context.Context, d RolloverDeps) (RolloverResult, error) {
	if len(s.domain) != 1 {
		return RolloverResult{}, problem.New(problem.Conflict, ErrRolloverUnsupported, "the domain CA has an intermediate; rollover covers root-only domain CAs")
	}
	s.rollMu.Lock()
	defer s.rollMu.Unlock()
	d.Store, d.Clock, d.Audit = s.db, s.clk, s.audit
	if d.Keys == nil {
		d.Keys = s.keys
	}
	if d.Keys == nil {
		return RolloverResult{}, problem.New(problem.Conflict, nil, "CA generations are not loaded; rollover is unavailable")
	}
	if iss := s.ca().issuer; d.Linter == nil && iss != nil {
		d.Linter = iss.Linter()
	}
	d.publish = func(ctx context.Context) error {
		st, err := buildCAState(ctx, s.db, d.Keys, s.ca().issuer, s.ra.Leaf, s.clk)
		if err != nil {
			return err
		}
		s.caPtr.Store(st)
		return nil
	}
	res, err := Rollover(ctx, d)
	if err != nil {
		s.caMetrics.rollovers.WithLabelValues("failed").Inc()
		return res, problem.New(problem.Internal, err, "rollover failed at a durable step; run it again to resume")
	}
	s.caMetrics.rollovers.WithLabelValues("ok").Inc()
	return res, nil
}

// caMetrics are the domain CA lifecycle metrics (docs/metrics.md).
type caMetrics struct {
	rollovers   *prometheus.CounterVec
	revocations prometheus.Counter
	crls        prometheus.Counter
}

func newCAMetrics(reg prometheus.Registerer, s *Service) *caMetrics {
	f := promauto.With(reg)
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "brski_registrar_ca_not_after_seconds",
		Help: "NotAfter of the issuing domain CA generation, Unix seconds.",
	}, func() float64 {
		if iss := s.ca().issuer; iss != nil {
			return float64(iss.CA().Cert.NotAfter.Unix())
		}
		return 0
	})
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "brski_registrar_ca_generations",
		Help: "Domain CA generations the registrar serves (more than 1 during a rollover overlap).",
	}, func() float64 { return float64(len(s.ca().gens)) })
	return &caMetrics{
		rollovers: f.NewCounterVec(prometheus.CounterOpts{
			Name: "brski_registrar_ca_rollovers_total",
			Help: "Online domain CA rollovers by result (ok, failed).",
		}, []string{"result"}),
		revocations: f.NewCounter(prometheus.CounterOpts{
			Name: "brski_registrar_ldevid_revocations_total",
			Help: "LDevIDs revoked through this registrar.",
		}),
		crls: f.NewCounter(prometheus.CounterOpts{
			Name: "brski_registrar_crls_issued_total",
			Help: "CRLs signed by this registrar.",
		}),
	}
}
