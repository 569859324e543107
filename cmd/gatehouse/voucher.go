package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

// maxInputBytes caps files read by the voucher commands.
const maxInputBytes = 1 << 20

func (a *app) voucherCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "voucher",
		Short: "Decode and verify vouchers and voucher-requests (CMS/JSON or COSE/CBOR)",
	}
	cmd.AddCommand(a.voucherInspectCmd(), a.voucherVerifyCmd())
	return cmd
}

func (a *app) voucherInspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect FILE",
		Short: "Decode a voucher or voucher-request WITHOUT verifying it, and print it as JSON",
		Long: `Decodes a voucher or voucher-request and prints its envelope (format,
content type, certificates) and content as JSON. The input may be DER, PEM
(-----BEGIN CMS-----), bare base64 or hex text; the format (CMS or COSE) is
detected from the bytes. Nothing is verified: use "voucher verify" for that.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := readInput(args[0])
			if err != nil {
				return err
			}
			art, err := voucher.Parse(b)
			if err != nil {
				return fmt.Errorf("decode %s: %w", args[0], err)
			}
			out, err := inspectJSON(art)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
}

func (a *app) voucherVerifyCmd() *cobra.Command {
	var anchors []string
	var at string
	var ignoreExpiry bool
	cmd := &cobra.Command{
		Use:   "verify FILE --anchor CERT [--anchor CERT…] [--at RFC3339]",
		Short: "Verify a voucher or voucher-request's signature and print its content as JSON",
		Long: `Verifies the signature of a voucher or voucher-request against trust anchors
at a given time, and prints the content as YANG-JSON (RFC 7951) on stdout.

An anchor (DER or PEM, repeatable) is either a CA certificate in the signer's
chain, or the signer's own certificate, pinned. Where the artifact embeds no
certificate (as cBRSKI artifacts may), the anchor's public key is taken as the
signer's key. Exits non-zero, saying why, when verification fails.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(anchors) == 0 {
				return usageError{errors.New("voucher verify: at least one --anchor is required")}
			}
			when := a.clk.Now()
			if at != "" {
				t, err := time.Parse(time.RFC3339, at)
				if err != nil {
					return usageError{fmt.Errorf("--at %q: want RFC 3339, such as 2021-06-01T00:00:00Z", at)}
				}
				when = t
			}
			var certs []*x509.Certificate
			for _, f := range anchors {
				cs, err := readCertificates(f)
				if err != nil {
					return fmt.Errorf("--anchor %s: %w", f, err)
				}
				certs = append(certs, cs...)
			}
			b, err := readInput(args[0])
			if err != nil {
				return err
			}
			art, v, err := voucher.Verify(b, voucher.VerifyOptions{Anchors: certs, Time: when, IgnoreSignerExpiry: ignoreExpiry})
			if err != nil {
				return fmt.Errorf("verify %s at %s: %w", args[0], when.UTC().Format(time.RFC3339), err)
			}
			content, err := art.MarshalJSON()
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			if err := json.Indent(&buf, content, "", "  "); err != nil {
				return err
			}
			buf.WriteByte('\n')
			if _, err := cmd.OutOrStdout().Write(buf.Bytes()); err != nil {
				return err
			}
			anchor := v.Chain[len(v.Chain)-1]
			fmt.Fprintf(cmd.ErrOrStderr(), "verified: %s %s signed by %q, anchored at %q, at %s\n",
				art.Format, art.Kind(), v.Signer.Subject.String(), anchor.Subject.String(), when.UTC().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&anchors, "anchor", nil, "trust anchor certificate, DER or PEM (repeatable)")
	cmd.Flags().StringVar(&at, "at", "", "verification time, RFC 3339 (default now)")
	cmd.Flags().BoolVar(&ignoreExpiry, "ignore-signer-expiry", false, "accept a signer certificate past its NotAfter (RFC 8995 §2.6.2, for IDevIDs)")
	return cmd
}

func readInput(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxInputBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxInputBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxInputBytes)
	}
	return b, nil
}

// readCertificates reads one DER certificate or any number of PEM ones.
func readCertificates(path string) ([]*x509.Certificate, error) {
	b, err := readInput(path)
	if err != nil {
		return nil, err
	}
	return pki.ParseCertificates(b)
}

type certSummary struct {
	Subject   string `json:"subject"`
	Issuer    string `json:"issuer"`
	Serial    string `json:"serial"`
	NotBefore string `json:"notBefore"`
	NotAfter  string `json:"notAfter"`
	SHA256    string `json:"sha256"`
}

func summarize(cs []*x509.Certificate) []certSummary {
	out := make([]certSummary, 0, len(cs))
	for _, c := range cs {
		sum := sha256.Sum256(c.Raw)
		out = append(out, certSummary{
			Subject:   c.Subject.String(),
			Issuer:    c.Issuer.String(),
			Serial:    hex.EncodeToString(c.SerialNumber.Bytes()),
			NotBefore: c.NotBefore.UTC().Format(time.RFC3339),
			NotAfter:  c.NotAfter.UTC().Format(time.RFC3339),
			SHA256:    hex.EncodeToString(sum[:]),
		})
	}
	return out
}

// inspectJSON renders the envelope and content of an artifact.
func inspectJSON(art *voucher.Artifact) ([]byte, error) {
	content, err := art.MarshalJSON()
	if err != nil {
		return nil, err
	}
	out := map[string]any{
		"format":  art.Format,
		"kind":    art.Kind(),
		"content": json.RawMessage(content),
	}
	switch {
	case art.CMS != nil:
		out["mediaType"] = voucher.MediaTypeCMS
		out["eContentType"] = art.CMS.ContentType.String()
		if !art.CMS.SigningTime.IsZero() {
			out["signingTime"] = art.CMS.SigningTime.UTC().Format(time.RFC3339)
		}
		out["certificates"] = summarize(art.CMS.Certificates)
	case art.COSE != nil:
		out["mediaType"] = voucher.MediaTypeCOSE
		out["algorithm"] = art.COSE.Algorithm
		if len(art.COSE.KID) > 0 {
			out["kid"] = hex.EncodeToString(art.COSE.KID)
		}
		out["x5bag"] = summarize(art.COSE.X5Bag)
		out["x5chain"] = summarize(art.COSE.X5Chain)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
