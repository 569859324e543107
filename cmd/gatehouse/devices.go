package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// defaultAdminURL is the admin listener of `gatehouse lab` and of a
// registrar with the default configuration.
const defaultAdminURL = "http://127.0.0.1:9090"

// adminTimeout bounds one admin API call.
const adminTimeout = 10 * time.Second

// maxAdminResponse caps an admin API response body.
const maxAdminResponse = 8 << 20

// maxDevicePages bounds how many pages `devices list` follows.
const maxDevicePages = 1000

func (a *app) devicesCmd() *cobra.Command {
	var admin string
	cmd := &cobra.Command{
		Use:   "devices",
		Short: "Operator view of pledges and the approval queue (registrar admin API)",
	}
	cmd.PersistentFlags().StringVar(&admin, "admin", defaultAdminURL, "the registrar's admin listener, http://host:port")
	cmd.AddCommand(a.devicesListCmd(&admin), a.devicesDecideCmd(&admin, "approve"), a.devicesDecideCmd(&admin, "deny"))
	return cmd
}

// deviceRow is the part of the admin API's device view the table shows.
type deviceRow struct {
	Serial       string    `json:"serial"`
	Status       string    `json:"status"`
	StatusReason string    `json:"statusReason"`
	Manufacturer string    `json:"manufacturer"`
	Issuer       string    `json:"issuer"`
	UpdatedAt    time.Time `json:"updatedAt"`
}

func (a *app) devicesListCmd(admin *string) *cobra.Command {
	var asJSON bool
	var status string
	cmd := &cobra.Command{
		Use:   "list [--json] [--status STATUS]",
		Short: "List devices: serial, status, manufacturer, last update",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			base, err := adminBase(*admin)
			if err != nil {
				return err
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			var raw []json.RawMessage
			var rows []deviceRow
			cursor := ""
			for range maxDevicePages {
				q := url.Values{}
				if status != "" {
					q.Set("status", status)
				}
				if cursor != "" {
					q.Set("cursor", cursor)
				}
				u := base.JoinPath("api", "v1", "devices")
				u.RawQuery = q.Encode()
				body, err := adminCall(ctx, http.MethodGet, u, nil)
				if err != nil {
					return err
				}
				var page struct {
					Devices []json.RawMessage `json:"devices"`
					Next    string            `json:"next"`
				}
				if err := json.Unmarshal(body, &page); err != nil {
					return fmt.Errorf("admin API %s: unexpected answer: %w", u.Redacted(), err)
				}
				for _, d := range page.Devices {
					var r deviceRow
					if err := json.Unmarshal(d, &r); err != nil {
						return fmt.Errorf("admin API %s: unexpected device: %w", u.Redacted(), err)
					}
					raw, rows = append(raw, d), append(rows, r)
				}
				if cursor = page.Next; cursor == "" {
					break
				}
			}
			w := cmd.OutOrStdout()
			if asJSON {
				out, err := json.MarshalIndent(map[string]any{"devices": raw}, "", "  ")
				if err != nil {
					return err
				}
				_, err = w.Write(append(out, '\n'))
				return err
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SERIAL\tSTATUS\tMANUFACTURER\tUPDATED")
			for _, r := range rows {
				mfg := r.Manufacturer
				if mfg == "" {
					mfg = r.Issuer
				}
				updated := "-"
				if !r.UpdatedAt.IsZero() {
					updated = r.UpdatedAt.UTC().Format(time.RFC3339)
				}
				st := r.Status
				if r.StatusReason != "" {
					st += " (" + r.StatusReason + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Serial, st, mfg, updated)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the admin API's JSON instead of a table")
	cmd.Flags().StringVar(&status, "status", "", "list only devices with this status")
	return cmd
}

func (a *app) devicesDecideCmd(admin *string, verb string) *cobra.Command {
	var reason string
	short := "Approve a pledge waiting for an operator (its next voucher-request goes to the MASA)"
	if verb == "deny" {
		short = "Deny a pledge (its voucher-requests are refused until approved)"
	}
	cmd := &cobra.Command{
		Use:   verb + " SERIAL",
		Short: short,
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			base, err := adminBase(*admin)
			if err != nil {
				return err
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			var body []byte
			if reason != "" {
				if body, err = json.Marshal(map[string]string{"reason": reason}); err != nil {
					return err
				}
			}
			u := base.JoinPath("api", "v1", "devices", args[0], verb)
			if _, err := adminCall(ctx, http.MethodPost, u, body); err != nil {
				return err
			}
			past := map[string]string{"approve": "approved", "deny": "denied"}[verb]
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", past, args[0])
			return nil
		},
	}
	if verb == "deny" {
		cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit trail")
	}
	return cmd
}

// adminBase parses the --admin URL.
func adminBase(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageError{fmt.Errorf("--admin %q: want http://host:port", s)}
	}
	return u, nil
}

// adminCall makes one admin API request and returns the body of a 2xx
// answer; any other answer becomes an error carrying the problem detail.
func adminCall(ctx context.Context, method string, u *url.URL, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API %s: %w (is the registrar or lab running, and is --admin right?)", u.Host, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminResponse))
	if err != nil {
		return nil, fmt.Errorf("admin API %s: %w", u.Redacted(), err)
	}
	if resp.StatusCode/100 == 2 {
		return b, nil
	}
	detail := strings.TrimSpace(string(b))
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/problem+json" {
		var p struct {
			Title  string `json:"title"`
			Detail string `json:"detail"`
		}
		if json.Unmarshal(b, &p) == nil {
			detail = p.Detail
			if detail == "" {
				detail = p.Title
			}
		}
	}
	if len(detail) > 300 {
		detail = detail[:300] + "…"
	}
	return nil, fmt.Errorf("admin API %s %s: %s: %s", method, u.Path, resp.Status, detail)
}
