package registrar

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jmhodges/clock"

	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/internal/problem"
	"github.com/gatehouse-pki/gatehouse/internal/web"
	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/store"
)

// CRL publication (RFC 5280 §5): one CRL per CA generation, signed by that
// generation's key, listing the generation's revoked LDevIDs. It is issued
// again on every revocation and, when requested, once half of its
// validity has passed, so a published CRL never reaches its nextUpdate.
const (
	// CRLValidity is nextUpdate − thisUpdate.
	CRLValidity = 7 * 24 * time.Hour
	// PathCRL serves the CRLs: GET /crl/<generation>.crl (pki.CRLPath), DER,
	// application/pkix-crl (RFC 5280 §4.2.1.13, RFC 2585).
	PathCRL = "/crl/{file}"
	// MediaTypeCRL is the CRL media type (RFC 2585 §4.2).
	MediaTypeCRL = "application/pkix-crl"
)

// Audit events of CRL issuance, before and after the signature.
const (
	CRLSigning = "crl-signing"
	CRLIssued  = "crl-issued"
)

// CRLDeps are what issuing a CRL needs.
type CRLDeps struct {
	Store *store.DB
	Clock clock.Clock
	Keys  CAKeys
	Audit *audit.Recorder
}

// IssueCRL signs and stores a new CRL for the generation with ID gen: the
// next CRL number, thisUpdate now, nextUpdate now + CRLValidity, every
// revoked certificate of that generation. The generation's key must still
// be available (the old key is kept until OldWithOld expires, standards
// digest §5.3 step 1).
func IssueCRL(ctx context.Context, d CRLDeps, gen string) (store.CRL, error) {
	gens, err := d.Store.Generations(ctx)
	if err != nil {
		return store.CRL{}, err
	}
	var g *store.Generation
	for i := range gens {
		if gens[i].ID == gen {
			g = &gens[i]
		}
	}
	if g == nil {
		return store.CRL{}, fmt.Errorf("issue crl: generation %s: %w", gen, store.ErrNotFound)
	}
	cert, err := x509.ParseCertificate(g.Certificate)
	if err != nil {
		return store.CRL{}, fmt.Errorf("issue crl: generation %s: %w", gen, err)
	}
	key, err := d.Keys.Load(ctx, g.KeyRef)
	if err != nil {
		return store.CRL{}, fmt.Errorf("issue crl: generation %s key: %w", gen, err)
	}
	ca, err := pki.LoadCA([]*x509.Certificate{cert}, key)
	if err != nil {
		return store.CRL{}, fmt.Errorf("issue crl: %w", err)
	}
	var number uint64 = 1
	if prev, err := d.Store.CRL(ctx, gen); err == nil {
		number = prev.Number + 1
	} else if !errors.Is(err, store.ErrNotFound) {
		return store.CRL{}, err
	}
	var entries []x509.RevocationListEntry
	err = d.Store.EachCertificate(ctx, func(c store.Certificate) error {
		if c.Generation == gen && c.Status == store.CertRevoked {
			entries = append(entries, x509.RevocationListEntry{SerialNumber: c.Serial, RevocationTime: c.RevokedAt, ReasonCode: c.RevocationReason})
		}
		return nil
	})
	if err != nil {
		return store.CRL{}, err
	}
	now := d.Clock.Now().UTC().Truncate(time.Second)
	fields := []string{"generation", gen, "crl_number", strconv.FormatUint(number, 10), "entries", strconv.Itoa(len(entries))}
	if err := d.Audit.Record(ctx, audit.New(CRLSigning, fields...)); err != nil {
		return store.CRL{}, err
	}
	crl, err := pki.SignCRL(ca, pki.CRLRequest{Number: new(big.Int).SetUint64(number), ThisUpdate: now, NextUpdate: now.Add(CRLValidity), Revoked: entries})
	if err != nil {
		_ = d.Audit.Record(ctx, audit.New(CRLIssued, append(fields, "outcome", "failure: "+err.Error())...))
		return store.CRL{}, err
	}
	out := store.CRL{Generation: gen, Number: number, DER: crl.Raw, ThisUpdate: crl.ThisUpdate, NextUpdate: crl.NextUpdate}
	ev := audit.New(CRLIssued, append(fields, "outcome", "success", "next_update", crl.NextUpdate.Format(time.RFC3339), "crl_der", hex.EncodeToString(crl.Raw))...)
	if err := d.Store.PutCRL(ctx, out, ev); err != nil {
		return store.CRL{}, err
	}
	return out, nil
}

// CRL returns the current CRL of generation gen (DER), issuing a new one
// first when there is none yet or half of its validity has passed.
func (s *Service) CRL(ctx context.Context, gen string) ([]byte, error) {
	if der, fresh, err := s.freshCRL(ctx, gen); fresh || err != nil {
		return der, err
	}
	s.crlMu.Lock()
	defer s.crlMu.Unlock()
	// Again under the lock: concurrent requests for a stale CRL wait for
	// the first one's reissue and serve it, instead of each signing one.
	if der, fresh, err := s.freshCRL(ctx, gen); fresh || err != nil {
		return der, err
	}
	return s.issueCRLLocked(ctx, gen)
}

// freshCRL returns the stored CRL of gen when it is within the first half
// of its validity.
func (s *Service) freshCRL(ctx context.Context, gen string) ([]byte, bool, error) {
	c, err := s.db.CRL(ctx, gen)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return c.DER, s.clk.Now().Before(c.ThisUpdate.Add(CRLValidity / 2)), nil
}

// reissueCRL signs a new CRL for gen (after a revocation).
func (s *Service) reissueCRL(ctx context.Context, gen string) ([]byte, error) {
	s.crlMu.Lock()
	defer s.crlMu.Unlock()
	return s.issueCRLLocked(ctx, gen)
}

// issueCRLLocked signs and stores a new CRL for gen; crlMu is held.
func (s *Service) issueCRLLocked(ctx context.Context, gen string) ([]byte, error) {
	keys := s.caKeys()
	if keys == nil {
		return nil, problem.New(problem.NotFound, nil, "no CRL is published: CA generations are not loaded")
	}
	c, err := IssueCRL(ctx, CRLDeps{Store: s.db, Clock: s.clk, Keys: keys, Audit: s.audit}, gen)
	if errors.Is(err, store.ErrNotFound) {
		return nil, problem.New(problem.NotFound, err, "no CA generation %s", gen)
	}
	if err != nil {
		return nil, err
	}
	s.caMetrics.crls.Inc()
	return c.DER, nil
}

func (s *Service) caKeys() CAKeys {
	s.rollMu.Lock()
	defer s.rollMu.Unlock()
	return s.keys
}

// CRLs is the Router that serves every generation's CRL on the
// pledge-facing listener (the LDevIDs' CRL distribution point, with
// pki.IssuerConfig.CRLBaseURL = https://<listener>/crl). Mount it with
// HandlerWith.
func (s *Service) CRLs() Router { return crlRouter{s} }

type crlRouter struct{ s *Service }

// Register mounts GET /crl/{file}.
func (c crlRouter) Register(mux *http.ServeMux) {
	mux.Handle("GET "+PathCRL, web.Handle(c.s.handleCRL, web.WritePlain))
}

func (s *Service) handleCRL(w http.ResponseWriter, r *http.Request) error {
	gen, ok := strings.CutSuffix(r.PathValue("file"), ".crl")
	if _, err := hex.DecodeString(gen); !ok || err != nil || gen == "" {
		return problem.New(problem.NotFound, nil, "not found")
	}
	der, err := s.CRL(r.Context(), gen)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", MediaTypeCRL)
	w.Header().Set("Cache-Control", "max-age="+strconv.Itoa(int(CRLValidity/2/time.Second)))
	_, err = w.Write(der) //nolint:gosec // G705: a CRL this registrar signed, served as application/pkix-crl, not HTML
	return err
}
