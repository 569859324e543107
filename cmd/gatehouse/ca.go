package main

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-pki/gatehouse/configs"
	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/internal/lab"
	"github.com/gatehouse-pki/gatehouse/pki/lint"
	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/store"
)

// caFlags are the flags every `gatehouse ca` command shares.
type caFlags struct {
	config, data, admin string
}

func (a *app) caCmd() *cobra.Command {
	var f caFlags
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Domain CA lifecycle: status, rollover, revocation",
		Long: `Operates the domain CA of a registrar (--config FILE) or a lab (--data DIR,
default ./data). When the registrar or lab is running, its store is locked
and the command goes through its admin API (listen.admin of the config, or
--admin URL; the lab's default is ` + defaultAdminURL + `). When it is stopped,
the command works on the data directory directly. See
docs/operations/rollover.md.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.config, "config", "", "registrar config file, YAML")
	pf.StringVar(&f.data, "data", "", "lab data directory (default ./data when --config is not given)")
	pf.StringVar(&f.admin, "admin", "", "admin API of the running registrar or lab, http://host:port (default: from the config, or the lab's)")
	cmd.AddCommand(a.caStatusCmd(&f), a.caRolloverCmd(&f), a.caRevokeCmd(&f))
	return cmd
}

// caTarget is where a `ca` command acts.
type caTarget struct {
	dataDir, dbPath, auditPath string
	// admin is the running process's admin API; nil when unknown.
	admin *url.URL
	// root and keyRef are the configured domain CA, recorded as the first
	// generation when the store has none (a store the registrar never
	// opened with generations).
	root *x509.Certificate
	// domainCA is the configured domain CA (keyFile or keyURI).
	domainCA configs.DomainCA
	// renewalWindow is the config's ldevid.renewalWindow (the lab's:
	// registrar.DefaultRenewalWindow).
	renewalWindow time.Duration
	// registrarCert is the registrar's RA/TLS certificate file (tls.certFile,
	// or the lab's lab/domain/registrar.pem).
	registrarCert string
}

func resolveCATarget(f *caFlags) (*caTarget, error) {
	if f.config != "" && f.data != "" {
		return nil, usageError{errors.New("ca: give --config FILE or --data DIR, not both")}
	}
	t := &caTarget{renewalWindow: registrar.DefaultRenewalWindow}
	adminAddr := ""
	var certFile string
	if f.config != "" {
		cfg, err := configs.LoadRegistrar(f.config)
		if err != nil {
			return nil, err
		}
		t.dataDir, t.auditPath = cfg.DataDir, cfg.Log.AuditFile
		t.dbPath = filepath.Join(cfg.DataDir, registrarDBFile)
		certFile = cfg.DomainCA.CertFile
		t.domainCA = cfg.DomainCA
		t.renewalWindow = cfg.LDevID.RenewalWindow.D()
		t.registrarCert = cfg.TLS.CertFile
		if cfg.Listen.Admin != "" {
			adminAddr = "http://" + cfg.Listen.Admin
		}
	} else {
		if f.data == "" {
			f.data = "./data"
		}
		t.dataDir = f.data
		t.dbPath = filepath.Join(f.data, lab.RegistrarDBFile)
		p := lab.PathsFor(f.data)
		certFile = p.DomainCA
		t.domainCA = configs.DomainCA{CertFile: p.DomainCA, KeyFile: p.DomainCAKey}
		t.registrarCert = p.Registrar
		adminAddr = defaultAdminURL
	}
	if t.auditPath == "" {
		t.auditPath = filepath.Join(t.dataDir, auditFileName)
	}
	if f.admin != "" {
		adminAddr = f.admin
	}
	if adminAddr != "" {
		u, err := adminBase(adminAddr)
		if err != nil {
			return nil, err
		}
		t.admin = u
	}
	if _, err := os.Stat(t.dbPath); err != nil {
		return nil, fmt.Errorf("ca: no registrar store at %s (%w); start the registrar or lab on this data directory once first", t.dbPath, err)
	}
	if chain, err := readCertificates(certFile); err == nil && len(chain) == 1 {
		t.root = chain[0]
	}
	return t, nil
}

// withCA runs offline on the store when it can be opened, and online
// through the admin API when a running process holds it.
func (a *app) withCA(ctx context.Context, t *caTarget, offline func(*store.DB, *audit.Recorder, registrar.CAKeys) error, online func(base *url.URL) error) error {
	db, err := store.Open(t.dbPath, store.Options{Clock: a.clk})
	if errors.Is(err, store.ErrLocked) {
		if t.admin == nil {
			return fmt.Errorf("ca: %s is locked by a running registrar and no admin listener is known; pass --admin URL, or stop it to work offline", t.dbPath)
		}
		if err := online(t.admin); err != nil {
			return fmt.Errorf("ca: %s is locked by a running process, so the command went to its admin API: %w", t.dbPath, err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	defer db.Close()
	rec, f, err := audit.Open(db, t.auditPath)
	if err != nil {
		return err
	}
	defer f.Close()
	keys, err := openCAKeys(ctx, t.domainCA, t.dataDir)
	if err != nil {
		return err
	}
	defer keys.Close()
	if t.root != nil {
		if err := registrar.RecordFirstGeneration(ctx, db, t.root, keys.ref); err != nil {
			return err
		}
	}
	return offline(db, rec, keys.keys)
}

func (a *app) caStatusCmd(f *caFlags) *cobra.Command {
	var window time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--renewal-window DURATION] [--json]",
		Short: "Show the CA generations, which one issues, the overlap's end, LDevID counts and renewals due",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := resolveCATarget(f)
			if err != nil {
				return err
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			// Offline the window is the config's unless the flag is given;
			// online the running process applies its own config's.
			flagged := cmd.Flags().Changed("renewal-window")
			if flagged && window <= 0 {
				return usageError{fmt.Errorf("ca status: --renewal-window %s is not a positive duration", window)}
			}
			var st *registrar.CAStatus
			err = a.withCA(ctx, t, func(db *store.DB, _ *audit.Recorder, _ registrar.CAKeys) error {
				w := t.renewalWindow
				if flagged {
					w = window
				}
				st, err = registrar.CAStatusOf(ctx, db, a.clk.Now(), w)
				return err
			}, func(base *url.URL) error {
				u := base.JoinPath("api", "v1", "ca")
				if flagged {
					u.RawQuery = url.Values{"renewalWindow": {window.String()}}.Encode()
				}
				body, err := adminCall(ctx, http.MethodGet, u, nil)
				if err != nil {
					return err
				}
				st = &registrar.CAStatus{}
				return json.Unmarshal(body, st)
			})
			if err != nil {
				return err
			}
			if cs, err := readCertificates(t.registrarCert); err == nil {
				for _, w := range registrarCertWarnings(cs[0], st) {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: registrar certificate %s: %s\n", t.registrarCert, w)
				}
			}
			if asJSON {
				out, err := json.MarshalIndent(st, "", "  ")
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(append(out, '\n'))
				return err
			}
			printCAStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
	cmd.Flags().DurationVar(&window, "renewal-window", 0, "list LDevIDs that expire within this window (default: ldevid.renewalWindow of the config, 720h for a lab)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	return cmd
}

// registrarCertWarnings says what is wrong with the registrar's RA/TLS
// certificate ra after a rollover: it was issued by a generation that no
// longer issues (pledges that pinned only the new root then depend on the
// link certificates), or it expires before the overlap ends. The registrar
// does not re-issue its own certificate; docs/operations/rollover.md says
// how to replace it.
func registrarCertWarnings(ra *x509.Certificate, st *registrar.CAStatus) []string {
	var out []string
	issuer := hex.EncodeToString(ra.AuthorityKeyId)
	for _, g := range st.Generations {
		if g.ID == issuer && !g.Active {
			out = append(out, fmt.Sprintf("issued by CA generation %s, which no longer issues (%s does); replace it with one from the issuing generation", g.ID, st.Issuing))
		}
	}
	if !st.OverlapEnd.IsZero() && ra.NotAfter.Before(st.OverlapEnd) {
		out = append(out, fmt.Sprintf("expires %s, before the overlap ends (%s); replace it before then", ra.NotAfter.UTC().Format(time.RFC3339), st.OverlapEnd.UTC().Format(time.RFC3339)))
	}
	return out
}

func printCAStatus(w io.Writer, st *registrar.CAStatus) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GENERATION\tSUBJECT\tNOT AFTER\tISSUES\tLDEVIDS\tREVOKED\tEXPIRED")
	for _, g := range st.Generations {
		issues := "no"
		if g.Active {
			issues = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\n", g.ID, g.Subject, g.NotAfter.UTC().Format(time.RFC3339), issues, g.LDevIDs, g.Revoked, g.Expired)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "issuing: %s\n", st.Issuing)
	if !st.OverlapEnd.IsZero() {
		fmt.Fprintf(w, "overlap ends: %s (until then /cacerts carries the link certificates)\n", st.OverlapEnd.UTC().Format(time.RFC3339))
	}
	if r := st.Rollover; r != nil {
		fmt.Fprintf(w, "rollover in progress: %s → %s, last durable step %s; run gatehouse ca rollover to resume\n", r.From, r.To, r.Step)
	}
	fmt.Fprintf(w, "due for renewal within %s: %d\n", st.RenewalWindow, st.DueTotal)
	for _, d := range st.Due {
		fmt.Fprintf(w, "  %s  %s  %s\n", d.Serial, d.Device, d.NotAfter.UTC().Format(time.RFC3339))
	}
}

func (a *app) caRolloverCmd(f *caFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "rollover",
		Short: "Roll the domain CA key over (new-signs-old), or resume an interrupted rollover",
		Long: `Generates a new domain CA key, signs NewWithNew, NewWithOld and OldWithNew,
records each step durably, then switches issuance to the new key. A running
registrar or lab switches at once; a stopped one issues with the new key from
its next start. Run it again after an interruption: it resumes at the last
durable step.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := resolveCATarget(f)
			if err != nil {
				return err
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			var res registrar.RolloverResult
			mode := "offline"
			err = a.withCA(ctx, t, func(db *store.DB, rec *audit.Recorder, keys registrar.CAKeys) error {
				l, err := lint.NewMode(lint.ModeFast, nil)
				if err != nil {
					return err
				}
				res, err = registrar.Rollover(ctx, registrar.RolloverDeps{
					Store: db, Clock: a.clk, Audit: rec, Linter: l,
					Keys:      keys,
					Failpoint: a.rolloverStepPause(cmd.ErrOrStderr()),
				})
				return err
			}, func(base *url.URL) error {
				mode = "online"
				body, err := adminCall(ctx, http.MethodPost, base.JoinPath("api", "v1", "ca", "rollover"), nil)
				if err != nil {
					return err
				}
				return json.Unmarshal(body, &res)
			})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			verb := "rolled over"
			if res.Resumed {
				verb = "resumed and finished the rollover"
			}
			fmt.Fprintf(w, "%s (%s): %s → %s\n", verb, mode, res.From, res.To)
			if mode == "offline" {
				fmt.Fprintln(w, "the new generation issues from the next start of the registrar or lab")
			} else {
				fmt.Fprintln(w, "the new generation issues now; /cacerts carries the link certificates")
			}
			return nil
		},
	}
}

func (a *app) caRevokeCmd(f *caFlags) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "revoke SERIAL [--reason REASON]",
		Short: "Revoke an LDevID (serial in hex, as devices list and ca status print it)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			serial, err := registrar.ParseSerial(args[0])
			if err != nil {
				return usageError{err}
			}
			code, err := registrar.ParseRevocationReason(reason)
			if err != nil {
				return usageError{err}
			}
			t, err := resolveCATarget(f)
			if err != nil {
				return err
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			err = a.withCA(ctx, t, func(db *store.DB, rec *audit.Recorder, keys registrar.CAKeys) error {
				gen, err := registrar.Revoke(ctx, db, serial, code)
				if err != nil {
					return err
				}
				_, err = registrar.IssueCRL(ctx, registrar.CRLDeps{Store: db, Clock: a.clk, Keys: keys, Audit: rec}, gen)
				return err
			}, func(base *url.URL) error {
				body, err := json.Marshal(map[string]string{"reason": reason})
				if err != nil {
					return err
				}
				_, err = adminCall(ctx, http.MethodPost, base.JoinPath("api", "v1", "ca", "revoke", serial.Text(16)), body)
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s\n", serial.Text(16))
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "unspecified", "RFC 5280 reason: unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn")
	return cmd
}

// rolloverPauseEnv names a test hook of the offline rollover: with a
// duration in it, the command writes "rollover step: NAME" to stderr
// after each durable step and waits that long, so a test can kill it
// between two steps (reliability R4, TestCA_RolloverKillNine). Unset, it
// does nothing.
const rolloverPauseEnv = "GATEHOUSE_TEST_ROLLOVER_PAUSE"

func (a *app) rolloverStepPause(w io.Writer) func(step string) error {
	d, err := time.ParseDuration(os.Getenv(rolloverPauseEnv))
	if err != nil || d <= 0 {
		return nil
	}
	return func(step string) error {
		fmt.Fprintf(w, "rollover step: %s\n", step)
		a.clk.Sleep(d)
		return nil
	}
}
