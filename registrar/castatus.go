package registrar

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/internal/problem"
	"github.com/gatehouse-pki/gatehouse/store"
)

// DefaultRenewalWindow is how long before its notAfter an LDevID counts as
// due for renewal when no window is given: a third of the default 90-day
// LDevID lifetime.
const DefaultRenewalWindow = 30 * 24 * time.Hour

// maxDueListed bounds the certificates CAStatus lists as due.
const maxDueListed = 1000

// GenerationView is one domain CA generation as `gatehouse ca status` and
// GET /api/v1/ca show it.
type GenerationView struct {
	ID        string    `json:"id"`
	Subject   string    `json:"subject"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	Active    bool      `json:"active"`
	Previous  string    `json:"previous,omitempty"`
	// Links is how many link certificates join it to the previous one.
	Links int `json:"links"`
	// LDevIDs counts its certificates that are neither revoked nor expired
	// (superseded ones included: they stay valid until they expire).
	LDevIDs int `json:"ldevids"`
	// Revoked and Expired count the others.
	Revoked int `json:"revoked"`
	Expired int `json:"expired"`
}

// DueView is an LDevID due for renewal.
type DueView struct {
	Serial     string    `json:"serial"`
	Device     string    `json:"device"`
	Generation string    `json:"generation"`
	NotAfter   time.Time `json:"notAfter"`
}

// RolloverView is a rollover in progress.
type RolloverView struct {
	From      string    `json:"from"`
	To        string    `json:"to"`
	Step      string    `json:"step"`
	StartedAt time.Time `json:"startedAt"`
}

// CAStatus is the domain CA lifecycle view.
type CAStatus struct {
	// Generations, oldest first.
	Generations []GenerationView `json:"generations"`
	// Issuing is the active generation's ID.
	Issuing string `json:"issuing"`
	// OverlapEnd is when the last older generation still valid expires:
	// until then /cacerts carries the link certificates. Zero when there is
	// no overlap.
	OverlapEnd time.Time `json:"overlapEnd,omitzero"`
	// Rollover is the rollover in progress, if any.
	Rollover *RolloverView `json:"rollover,omitempty"`
	// RenewalWindow is the window Due was computed with.
	RenewalWindow string `json:"renewalWindow"`
	// Due lists unrevoked LDevIDs that expire within the window (at most
	// 1000; DueTotal counts them all).
	Due      []DueView `json:"due"`
	DueTotal int       `json:"dueTotal"`
}

// CAStatusOf reads the CA lifecycle view from db at now, listing LDevIDs
// that expire within window (DefaultRenewalWindow when zero). It only
// reads, so it serves the online and the offline command alike.
func CAStatusOf(ctx context.Context, db *store.DB, now time.Time, window time.Duration) (*CAStatus, error) {
	if window <= 0 {
		window = DefaultRenewalWindow
	}
	stored, err := db.Generations(ctx)
	if err != nil {
		return nil, err
	}
	out := &CAStatus{Generations: []GenerationView{}, Due: []DueView{}, RenewalWindow: window.String()}
	index := map[string]int{}
	if len(stored) > 0 {
		gens, err := parseGenerations(stored)
		if err != nil {
			return nil, err
		}
		for i, g := range gens {
			index[g.id] = i
			out.Generations = append(out.Generations, GenerationView{
				ID: g.id, Subject: g.cert.Subject.String(), NotBefore: g.cert.NotBefore, NotAfter: g.cert.NotAfter,
				Active: g.active, Previous: stored[i].Previous, Links: len(g.links),
			})
			if g.active {
				out.Issuing = g.id
			} else if now.Before(g.cert.NotAfter) && g.cert.NotAfter.After(out.OverlapEnd) {
				out.OverlapEnd = g.cert.NotAfter
			}
		}
	}
	if r, err := db.CurrentRollover(ctx); err == nil {
		out.Rollover = &RolloverView{From: r.From, To: r.To, Step: string(r.Step), StartedAt: r.StartedAt}
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	err = db.EachCertificate(ctx, func(c store.Certificate) error {
		i, ok := index[c.Generation]
		var g *GenerationView
		if ok {
			g = &out.Generations[i]
		} else {
			g = &GenerationView{}
		}
		switch {
		case c.Status == store.CertRevoked:
			g.Revoked++
		case !now.Before(c.NotAfter):
			g.Expired++
		default:
			g.LDevIDs++
			if c.Status == store.CertIssued && c.NotAfter.Before(now.Add(window)) {
				out.DueTotal++
				if len(out.Due) < maxDueListed {
					out.Due = append(out.Due, DueView{Serial: c.Serial.Text(16), Device: c.Device.String(), Generation: c.Generation, NotAfter: c.NotAfter})
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CAStatus is CAStatusOf on this registrar's store at its clock's time,
// with Config.RenewalWindow when window is zero.
func (s *Service) CAStatus(ctx context.Context, window time.Duration) (*CAStatus, error) {
	if window <= 0 {
		window = s.cfg.RenewalWindow
	}
	return CAStatusOf(ctx, s.db, s.clk.Now(), window)
}

// RevocationReasons are the RFC 5280 §5.3.1 CRLReason names an operator
// may give, with their codes. certificateHold and removeFromCRL are left
// out (a hold is not supported), and so are the CA and attribute
// authority compromise reasons, which do not apply to an LDevID.
var RevocationReasons = map[string]int{
	"unspecified":          0,
	"keyCompromise":        1,
	"affiliationChanged":   3,
	"superseded":           4,
	"cessationOfOperation": 5,
	"privilegeWithdrawn":   9,
}

// ParseRevocationReason returns the code of an RFC 5280 reason name
// (case-insensitive); "" is unspecified.
func ParseRevocationReason(name string) (int, error) {
	if name == "" {
		return 0, nil
	}
	for n, code := range RevocationReasons {
		if strings.EqualFold(n, name) {
			return code, nil
		}
	}
	names := make([]string, 0, len(RevocationReasons))
	for n := range RevocationReasons {
		names = append(names, n)
	}
	slices.Sort(names)
	return 0, fmt.Errorf("revocation reason %q: want one of %s", name, strings.Join(names, ", "))
}

// ParseSerial reads a certificate serial as the admin API and the
// commands print it: hexadecimal, optionally with a 0x prefix or colons.
func ParseSerial(s string) (*big.Int, error) {
	h := strings.ReplaceAll(strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "0x"), ":", "")
	n, ok := new(big.Int).SetString(h, 16)
	if !ok || h == "" || n.Sign() <= 0 {
		return nil, fmt.Errorf("serial %q: want the certificate serial in hexadecimal", s)
	}
	return n, nil
}

// LDevIDRevoked is the audit event of a revocation.
const LDevIDRevoked = "ldevid-revoked"

// Revoke revokes the LDevID with serial for reason (an RFC 5280 CRLReason
// code from RevocationReasons): durably, with its audit event in the same
// transaction. From the next request on the registrar refuses it for
// re-enrolment and every EST operation, including on connections opened
// before (the store is read per request). Unknown serial: NotFound;
// already revoked: Conflict.
func Revoke(ctx context.Context, db *store.DB, serial *big.Int, reason int) (generation string, err error) {
	valid := false
	for _, code := range RevocationReasons {
		valid = valid || code == reason
	}
	if !valid {
		return "", problem.New(problem.BadRequest, nil, "revocation reason code %d is not accepted", reason)
	}
	c, err := db.Certificate(ctx, serial)
	if errors.Is(err, store.ErrNotFound) {
		return "", problem.New(problem.NotFound, err, "no certificate with serial %s", serial.Text(16))
	}
	if err != nil {
		return "", err
	}
	ev := audit.New(LDevIDRevoked, "cert_serial", serial.Text(16), "device", c.Device.String(), "pledge_serial", c.Device.Serial,
		"generation", c.Generation, "reason", reasonName(reason))
	err = db.Revoke(ctx, serial, reason, ev)
	if errors.Is(err, store.ErrConflict) {
		return "", problem.New(problem.Conflict, err, "certificate %s is already revoked", serial.Text(16))
	}
	return c.Generation, err
}

func reasonName(code int) string {
	for n, c := range RevocationReasons {
		if c == code {
			return n
		}
	}
	return fmt.Sprint(code)
}

// Revoke revokes on this registrar's store (Revoke), then issues a new CRL
// for the certificate's generation (RFC 5280 §5: the next CRL lists it;
// here that CRL is published at once).
func (s *Service) Revoke(ctx context.Context, serial *big.Int, reason int) error {
	gen, err := Revoke(ctx, s.db, serial, reason)
	if err != nil {
		return err
	}
	s.caMetrics.revocations.Inc()
	if s.caKeys() == nil {
		return nil
	}
	if _, err := s.reissueCRL(context.WithoutCancel(ctx), gen); err != nil {
		return fmt.Errorf("revoked, but the CRL of generation %s was not reissued (it will be on the next request): %w", gen, err)
	}
	return nil
}
