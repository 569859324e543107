package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-pki/gatehouse/pledge"
)

func (a *app) pledgeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pledge",
		Short: "Act as a pledge: onboard with a registrar (BRSKI)",
	}
	cmd.AddCommand(a.pledgeEnrollCmd(), a.pledgeReenrollCmd())
	return cmd
}

// pledgeEnrollFlags are the flags of `pledge enroll`; conn.cert is
// --idevid.
type pledgeEnrollFlags struct {
	conn            pledgeConnFlags
	out, masaAnchor string
}

func (a *app) pledgeEnrollCmd() *cobra.Command {
	var f pledgeEnrollFlags
	cmd := &cobra.Command{
		Use:   "enroll --registrar URL --idevid CERT --key KEY [--out DIR] [--masa-anchor CERT]",
		Short: "Onboard as a pledge: voucher, then an LDevID over EST (BRSKI)",
		Long: `Runs the pledge side of BRSKI (RFC 8995) against a registrar over one TLS
connection, presenting the IDevID as the client certificate: it signs a pledge
voucher-request, waits and resends while the registrar answers 202, verifies
the voucher against the MASA anchor (signature, serial number, nonce,
pinned-domain-cert), validates the registrar's TLS chain against the pinned
domain certificate, and posts voucher_status.

It then enrolls over EST (RFC 7030) on the same connection: cacerts, csrattrs,
a fresh key and a CSR bound to the TLS channel (challengePassword = tls-unique
on TLS 1.2 or the RFC 9266 tls-exporter on TLS 1.3; --no-channel-binding
leaves it out), simpleenroll (waiting after 202), checks that the LDevID is for
the new key and chains to the pinned domain certificate and the cacerts, and
posts enrollstatus over a new connection authenticated with the LDevID.

It writes into --out DIR (default: the current directory): DIR/voucher (the
voucher exactly as received), DIR/voucher.json (its decoded content),
DIR/ldevid.pem (the LDevID and its issuing chain), DIR/ldevid-key.pem (mode
0600) and DIR/cacerts.pem. Without --masa-anchor it uses the lab layout:
../../manufacturer/masa.pem relative to the IDevID.

With a coaps:// registrar the same exchange runs as cBRSKI over CoAP/DTLS
(docs/flows/coap.md): a COSE voucher-request on /rv, CBOR telemetry on /vs
and /es, EST-coaps /crts, /att and /sen; DIR/voucher is then the COSE
voucher, and --masa-anchor must hold the MASA's signing certificate itself
(the lab's masa.pem does).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.pledgeEnroll(cmd, f)
		},
	}
	f.conn.addFlags(cmd, "idevid", "the pledge's IDevID certificate (chain), PEM (required)", "the IDevID's private key, PEM, mode 0600 (required)")
	fl := cmd.Flags()
	fl.StringVar(&f.out, "out", ".", "directory to write voucher, voucher.json, ldevid.pem, ldevid-key.pem and cacerts.pem into")
	fl.StringVar(&f.masaAnchor, "masa-anchor", "", "the MASA trust anchor for vouchers, PEM or DER (default: the lab's manufacturer/masa.pem)")
	return cmd
}

func (a *app) pledgeEnroll(cmd *cobra.Command, f pledgeEnrollFlags) error {
	u, err := f.conn.registrarURL("pledge enroll")
	if err != nil {
		return err
	}
	anchorFile, anchorNote := f.masaAnchor, ""
	if anchorFile == "" {
		anchorFile = filepath.Join(filepath.Dir(f.conn.cert), "..", "..", "manufacturer", "masa.pem")
		if _, err := os.Stat(anchorFile); err != nil {
			return usageError{fmt.Errorf("pledge enroll: --masa-anchor is required (no lab layout next to the IDevID: %w)", err)}
		}
		anchorNote = " (the lab layout next to the IDevID)"
	}
	anchors, err := readCertificates(anchorFile)
	if err != nil {
		return fmt.Errorf("--masa-anchor %s: %w", anchorFile, err)
	}
	ctx, stop := signalContext(cmd.Context())
	defer stop()
	idevid, err := f.conn.keyPair(ctx)
	if err != nil {
		return err
	}
	c, err := pledge.New(pledge.Config{
		Registrar:             u,
		IDevID:                idevid,
		MASAAnchors:           anchors,
		Clock:                 a.clk,
		MaxWait:               f.conn.maxWait,
		DisableChannelBinding: f.conn.noChannelBinding,
	})
	if err != nil {
		return err
	}
	defer c.Close()
	v, err := c.RequestVoucher(ctx)
	if err != nil {
		return err
	}
	// The voucher is written as soon as it is accepted, so it is there to
	// inspect even when the EST phase fails.
	wrote, err := writeVoucher(f.out, v)
	if err != nil {
		return err
	}
	printVoucherSummary(cmd, f.conn.registrar, c.Serial(), anchorFile+anchorNote, v)
	res, err := c.EnrollEST(ctx, v)
	if err != nil {
		return err
	}
	more, err := writeEnrollment(f.out, res, true)
	if err != nil {
		return err
	}
	printEnrollSummary(cmd, res, append(wrote, more...))
	return nil
}

// writeVoucher writes DIR/voucher (as received) and DIR/voucher.json.
func writeVoucher(dir string, res *pledge.VoucherResult) ([]string, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("--out: %w", err)
	}
	content, err := res.Voucher.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encode voucher: %w", err)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, content, "", "  "); err != nil {
		return nil, fmt.Errorf("encode voucher: %w", err)
	}
	pretty.WriteByte('\n')
	files := []struct {
		name string
		b    []byte
	}{{"voucher", res.Raw}, {"voucher.json", pretty.Bytes()}}
	var wrote []string
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, f.b, fs.FileMode(0o644)); err != nil {
			return nil, fmt.Errorf("--out: %w", err)
		}
		wrote = append(wrote, p)
	}
	return wrote, nil
}

func printVoucherSummary(cmd *cobra.Command, registrar, serial, anchor string, res *pledge.VoucherResult) {
	w := cmd.OutOrStdout()
	v := res.Voucher
	pin := sha256.Sum256(res.PinnedDomainCert.Raw)
	attempts := "1 request"
	if res.Attempts > 1 {
		attempts = fmt.Sprintf("%d requests, %d deferred", res.Attempts, res.Attempts-1)
	}
	fmt.Fprintf(w, "voucher accepted: pledge %s, registrar %s (%s)\n", serial, registrar, attempts)
	fmt.Fprintf(w, "  signed by MASA:     %s\n", res.MASASigner.Subject)
	fmt.Fprintf(w, "  MASA anchor:        %s\n", anchor)
	fmt.Fprintf(w, "  assertion:          %s\n", v.Assertion)
	if !v.ExpiresOn.IsZero() {
		fmt.Fprintf(w, "  expires-on:         %s\n", v.ExpiresOn.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(w, "  pinned-domain-cert: %s (sha256 %s)\n", res.PinnedDomainCert.Subject, hex.EncodeToString(pin[:8]))
	fmt.Fprintf(w, "  registrar TLS:      %s chains to the pinned domain certificate\n", res.RegistrarChain[0].Subject)
	if res.VoucherStatusErr != nil {
		fmt.Fprintf(w, "  voucher_status:     not accepted by the registrar: %v\n", res.VoucherStatusErr)
	} else {
		fmt.Fprintf(w, "  voucher_status:     sent (accepted)\n")
	}
}
