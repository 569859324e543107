package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-pki/gatehouse/internal/lab"
	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pledge"
)

// Files `pledge enroll` and `pledge reenroll` write (DESIGN.md contract).
const (
	ldevidFile    = "ldevid.pem"
	ldevidKeyFile = "ldevid-key.pem"
	cacertsFile   = "cacerts.pem"
)

// pledgeReenrollFlags are the flags of `pledge reenroll`; conn.cert is
// --cert.
type pledgeReenrollFlags struct {
	conn    pledgeConnFlags
	out, ca string
}

// pledgeConnFlags are the flags `pledge enroll` and `pledge reenroll`
// share: the registrar, the client certificate chain (--idevid or --cert)
// and its key, the wait, and the channel-binding switch.
type pledgeConnFlags struct {
	registrar, cert, key string
	certFlag             string // the certificate flag's name
	maxWait              time.Duration
	noChannelBinding     bool
}

// addFlags registers the shared flags on cmd, the certificate as
// --certFlag; the help texts say whose certificate and key they are.
func (f *pledgeConnFlags) addFlags(cmd *cobra.Command, certFlag, certHelp, keyHelp string) {
	f.certFlag = certFlag
	fl := cmd.Flags()
	fl.StringVar(&f.registrar, "registrar", "", "registrar base URL, https://host:port (required)")
	fl.StringVar(&f.cert, certFlag, "", certHelp)
	fl.StringVar(&f.key, "key", "", keyHelp)
	fl.DurationVar(&f.maxWait, "max-wait", pledge.DefaultMaxWait, "give up when the registrar still defers (202) after this long")
	fl.BoolVar(&f.noChannelBinding, "no-channel-binding", false, "leave the TLS channel binding (challengePassword) out of the CSR")
}

// registrarURL checks that --registrar, the certificate and --key are set
// and parses --registrar.
func (f *pledgeConnFlags) registrarURL(cmdName string) (*url.URL, error) {
	for name, v := range map[string]string{"--registrar": f.registrar, "--" + f.certFlag: f.cert, "--key": f.key} {
		if v == "" {
			return nil, usageError{fmt.Errorf("%s: %s is required", cmdName, name)}
		}
	}
	return parseRegistrarURL(cmdName, f.registrar)
}

// keyPair reads the certificate chain and loads its key into a TLS client
// certificate.
func (f *pledgeConnFlags) keyPair(ctx context.Context) (tls.Certificate, error) {
	chain, err := readCertificates(f.cert)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("--%s %s: %w", f.certFlag, f.cert, err)
	}
	key, err := pki.LoadSigner(ctx, f.key, nil)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("--key: %w", err)
	}
	pair, err := lab.KeyPair(chain, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("--%s %s and --key %s: %w", f.certFlag, f.cert, f.key, err)
	}
	return pair, nil
}

func (a *app) pledgeReenrollCmd() *cobra.Command {
	var f pledgeReenrollFlags
	cmd := &cobra.Command{
		Use:   "reenroll --registrar URL --cert LDEVID --key KEY [--out DIR] [--ca CERT]",
		Short: "Renew an LDevID over EST (simplereenroll)",
		Long: `Renews an LDevID (RFC 7030 §4.2.2): it connects to the registrar presenting
the current LDevID, verifies the registrar's certificate against the domain CA
(no provisional trust), gets cacerts, generates a new key and posts a CSR with
the same subject and subjectAltName, bound to the TLS channel, to
simplereenroll (waiting after 202). The renewed certificate must be for the new
key and chain to the domain CA.

It writes DIR/ldevid.pem and DIR/ldevid-key.pem (mode 0600), replacing the
files there; --out defaults to the directory of --cert, so a renewal of
DIR/ldevid.pem happens in place.

The domain CA comes from --ca, else from DIR/cacerts.pem (what pledge enroll
wrote), else from the lab layout (../../lab/domain/ca.pem relative to DIR, for
DIR = <data>/out/<serial>). The summary says which one was used.

With a coaps:// registrar the renewal runs over EST-coaps (DTLS with the
LDevID, /crts, /sren; RFC 9148).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.pledgeReenroll(cmd, f)
		},
	}
	f.conn.addFlags(cmd, "cert", "the current LDevID certificate (chain), PEM (required)", "the LDevID's private key, PEM, mode 0600 (required)")
	fl := cmd.Flags()
	fl.StringVar(&f.out, "out", "", "directory to write ldevid.pem and ldevid-key.pem into (default: the directory of --cert)")
	fl.StringVar(&f.ca, "ca", "", "the domain CA that verifies the registrar, PEM or DER (default: DIR/cacerts.pem, else the lab's domain/ca.pem)")
	return cmd
}

func (a *app) pledgeReenroll(cmd *cobra.Command, f pledgeReenrollFlags) error {
	u, err := f.conn.registrarURL("pledge reenroll")
	if err != nil {
		return err
	}
	out := f.out
	if out == "" {
		out = filepath.Dir(f.conn.cert)
	}
	caFile, caNote, err := domainCAFile(f.ca, out)
	if err != nil {
		return err
	}
	cas, err := readCertificates(caFile)
	if err != nil {
		return fmt.Errorf("--ca %s: %w", caFile, err)
	}
	ctx, stop := signalContext(cmd.Context())
	defer stop()
	ldevid, err := f.conn.keyPair(ctx)
	if err != nil {
		return err
	}
	res, err := pledge.Reenroll(ctx, pledge.ReenrollConfig{
		Registrar:             u,
		LDevID:                ldevid,
		DomainCAs:             cas,
		Clock:                 a.clk,
		DisableChannelBinding: f.conn.noChannelBinding,
		MaxWait:               f.conn.maxWait,
	})
	if err != nil {
		return err
	}
	wrote, err := writeEnrollment(out, res, false)
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "reenrolled: %s, registrar %s (%s)\n", res.LDevID.Subject, f.conn.registrar, attemptsText(res.Attempts))
	transport := "TLS: "
	if u.Scheme == "coaps" {
		transport = "DTLS:"
	}
	fmt.Fprintf(w, "  registrar %s     verified against %s%s\n", transport, caFile, caNote)
	printLDevID(cmd, res, wrote)
	return nil
}

// parseRegistrarURL checks a --registrar value: https://host:port or
// coaps://host:port.
func parseRegistrarURL(cmdName, s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return nil, usageError{fmt.Errorf("%s: --registrar %q: want https://host:port or coaps://host:port", cmdName, s)}
	}
	switch u.Scheme {
	case "https", "coaps":
		return u, nil
	default:
		return nil, usageError{fmt.Errorf("%s: --registrar %q: want https://host:port or coaps://host:port", cmdName, s)}
	}
}

// domainCAFile picks the domain CA file for reenroll: the flag, else
// DIR/cacerts.pem, else the lab layout, and says which.
func domainCAFile(flag, dir string) (string, string, error) {
	if flag != "" {
		return flag, "", nil
	}
	if p := filepath.Join(dir, cacertsFile); fileExists(p) {
		return p, " (the cacerts pledge enroll wrote)", nil
	}
	if p := filepath.Join(dir, "..", "..", "lab", "domain", "ca.pem"); fileExists(p) {
		return filepath.Clean(p), " (the lab layout)", nil
	}
	return "", "", usageError{fmt.Errorf("pledge reenroll: --ca is required (no %s in %s and no lab layout)", cacertsFile, dir)}
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// writeEnrollment writes DIR/ldevid.pem (the LDevID, then the issuing chain
// as sent), DIR/ldevid-key.pem (0600) and, with cacerts, DIR/cacerts.pem.
// Each file is written to a temporary name and renamed into place, so a
// reader never sees a half-written file; the key goes first.
func writeEnrollment(dir string, res *pledge.Result, cacerts bool) ([]string, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("--out: %w", err)
	}
	keyPEM, err := pki.MarshalKeyPEM(res.Key)
	if err != nil {
		return nil, err
	}
	files := []struct {
		name string
		b    []byte
		mode fs.FileMode
	}{
		{ldevidKeyFile, keyPEM, pki.KeyFileMode},
		{ldevidFile, certsPEM(append([]*x509.Certificate{res.LDevID}, res.Chain...)), 0o644},
	}
	if cacerts {
		files = append(files, struct {
			name string
			b    []byte
			mode fs.FileMode
		}{cacertsFile, certsPEM(res.CACerts), 0o644})
	}
	var wrote []string
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := writeFileAtomic(p, f.b, f.mode); err != nil {
			return nil, fmt.Errorf("--out: %w", err)
		}
		wrote = append(wrote, p)
	}
	return wrote, nil
}

// writeFileAtomic writes b to a temporary file beside path with mode, syncs
// it and renames it over path.
func writeFileAtomic(path string, b []byte, mode fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	done = true
	if err := os.Rename(tmp.Name(), path); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return nil
}

func certsPEM(certs []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

func attemptsText(n int) string {
	if n <= 1 {
		return "1 request"
	}
	return fmt.Sprintf("%d requests", n)
}

// printEnrollSummary prints the EST half of `pledge enroll`.
func printEnrollSummary(cmd *cobra.Command, res *pledge.Result, wrote []string) {
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "enrolled: LDevID %s (%s)\n", res.LDevID.Subject, attemptsText(res.Attempts))
	fmt.Fprintf(w, "  cacerts:            %d certificate(s), %s\n", len(res.CACerts), res.CACerts[0].Subject)
	attrs := "none"
	if a := res.CSRAttrs; a != nil && len(a.Raw) > 0 {
		var parts []string
		if kt, ok := a.PreferredKeyType(); ok {
			parts = append(parts, "key "+kt.String())
		}
		if a.Template != nil {
			parts = append(parts, "template")
		}
		if a.ChallengePasswordRequested() {
			parts = append(parts, "challengePassword")
		}
		if exts := a.RequestedExtensions(); len(exts) > 0 {
			parts = append(parts, fmt.Sprintf("%d extension(s)", len(exts)))
		}
		attrs = strings.Join(parts, ", ")
		if attrs == "" {
			attrs = "no specific requirements"
		}
	}
	fmt.Fprintf(w, "  csrattrs:           %s\n", attrs)
	printLDevID(cmd, res, nil)
	if res.EnrollStatusErr != nil {
		fmt.Fprintf(w, "  enrollstatus:       not accepted over the LDevID connection: %v\n", res.EnrollStatusErr)
	} else {
		fmt.Fprintf(w, "  enrollstatus:       sent over a new connection authenticated with the LDevID (accepted)\n")
	}
	if len(wrote) > 0 {
		fmt.Fprintf(w, "  wrote:              %s\n", strings.Join(wrote, ", "))
	}
}

// printLDevID prints the issued certificate's lines.
func printLDevID(cmd *cobra.Command, res *pledge.Result, wrote []string) {
	w := cmd.OutOrStdout()
	binding := res.ChannelBinding
	if binding == "" {
		binding = "none (disabled)"
	}
	fmt.Fprintf(w, "  channel binding:    %s\n", binding)
	fmt.Fprintf(w, "  LDevID:             serial %s, issued by %s\n", res.LDevID.SerialNumber.Text(16), res.LDevID.Issuer)
	fmt.Fprintf(w, "  valid:              %s to %s\n", res.LDevID.NotBefore.UTC().Format(time.RFC3339), res.LDevID.NotAfter.UTC().Format(time.RFC3339))
	if len(wrote) > 0 {
		fmt.Fprintf(w, "  wrote:              %s\n", strings.Join(wrote, ", "))
	}
}
