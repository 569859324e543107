package configs

import (
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse-pki/gatehouse/masa"
)

// MASA is the schema of `gatehouse masa --config FILE`.
type MASA struct {
	// DataDir holds the MASA's bbolt database (devices, owners, vouchers,
	// audit log). Default "/var/lib/gatehouse-masa".
	DataDir string `yaml:"dataDir"`
	// Listen is the HTTPS address registrars call. Default "127.0.0.1:9443".
	Listen string `yaml:"listen"`
	// Admin serves /metrics, /healthz and /readyz. Default "127.0.0.1:9091".
	Admin string `yaml:"admin"`
	// TLS is the MASA's HTTPS server identity. Required.
	TLS KeyPair `yaml:"tls"`
	// Signing is the voucher-signing identity: certificate chain and key
	// (P-256 recommended). Required.
	Signing KeyPair `yaml:"signing"`
	// IDevIDAnchors are PEM files of the manufacturer's IDevID CAs, used to
	// verify prior-signed pledge voucher-requests. At least one.
	IDevIDAnchors []string `yaml:"idevidAnchors"`
	// Ownership decides which registrar may claim which device.
	Ownership Ownership `yaml:"ownership"`
	// NoncelessValidity is the lifetime (expires-on) of a nonceless voucher.
	// Default 20m (RFC 8995 §5.6 recommends about 20 minutes); at most 30 days.
	NoncelessValidity Duration `yaml:"noncelessValidity"`
	// Log configures logging.
	Log Log `yaml:"log"`
}

// Ownership configures the MASA's ownership policy.
type Ownership struct {
	// Mode is "registry" (only owners listed in the device registry may
	// claim a device; default) or "first-claim" (lab mode: the first domain
	// to claim an unowned device becomes its owner, RFC 8995 §7.4 TOFU).
	Mode masa.Ownership `yaml:"mode"`
	// RegistrarCAs are PEM files of domain CAs whose registrars may
	// authenticate to this MASA over TLS. Empty: any client certificate is
	// accepted at the TLS layer and ownership decides.
	RegistrarCAs []string `yaml:"registrarCAs"`
}

// WithDefaults returns c with every unset field at its default.
func (c MASA) WithDefaults() MASA {
	if c.DataDir == "" {
		c.DataDir = "/var/lib/gatehouse-masa"
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:9443"
	}
	if c.Admin == "" {
		c.Admin = "127.0.0.1:9091"
	}
	if c.Ownership.Mode == "" {
		c.Ownership.Mode = masa.OwnershipRegistry
	}
	if c.NoncelessValidity == 0 {
		c.NoncelessValidity = Duration(20 * time.Minute)
	}
	c.Log = c.Log.WithDefaults()
	return c
}

// Validate reports every problem in c at once. It reads no file.
func (c MASA) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := validAddr(c.Listen, false); err != nil {
		add("listen: %w", err)
	}
	if err := validAddr(c.Admin, true); err != nil {
		add("admin: %w", err)
	}
	if c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
		add("tls: certFile and keyFile are required")
	}
	if c.Signing.CertFile == "" || c.Signing.KeyFile == "" {
		add("signing: certFile and keyFile are required")
	}
	if len(c.IDevIDAnchors) == 0 {
		add("idevidAnchors: at least one is required")
	}
	if !c.Ownership.Mode.IsValid() {
		add("ownership.mode %q: want registry or first-claim", c.Ownership.Mode)
	}
	if c.NoncelessValidity <= 0 || c.NoncelessValidity.D() > 30*24*time.Hour {
		add("noncelessValidity %s is outside (0, 720h]", c.NoncelessValidity.D())
	}
	if err := validLevel(c.Log.Level); err != nil {
		add("log.level: %w", err)
	}
	return errors.Join(errs...)
}
