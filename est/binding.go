package est

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
)

// ChannelBindingType names a TLS channel binding type (RFC 5929, RFC 9266).
type ChannelBindingType string

// The channel binding types EST uses (RFC 7030 §3.5).
const (
	// BindingTLSUnique is RFC 5929 tls-unique, for TLS 1.2.
	BindingTLSUnique ChannelBindingType = "tls-unique"
	// BindingTLSExporter is RFC 9266 tls-exporter, for TLS 1.3 (which has
	// no tls-unique).
	BindingTLSExporter ChannelBindingType = "tls-exporter"
)

// IsValid reports whether t is one of the binding types above.
func (t ChannelBindingType) IsValid() bool {
	return t == BindingTLSUnique || t == BindingTLSExporter
}

// exporterLabel is the RFC 9266 §2 tls-exporter label; the binding is
// exporterLen bytes with an empty context.
const (
	exporterLabel = "EXPORTER-Channel-Binding"
	exporterLen   = 32
)

// ErrNoChannelBinding reports a connection without a usable channel
// binding: not TLS, or a TLS 1.2 session without tls-unique (a resumed
// session without extended master secret).
var ErrNoChannelBinding = errors.New("no channel binding for this connection")

// ChannelBinding returns the channel binding of a TLS connection as EST
// clients put it, base64-encoded, in a CSR's challengePassword, and its
// type: tls-unique under TLS 1.2 (RFC 7030 §3.5, RFC 5929) and the RFC 9266
// tls-exporter (label "EXPORTER-Channel-Binding", empty context, 32 bytes)
// under TLS 1.3. Servers compare it with the CSR's challengePassword;
// clients put it there. Errors wrap ErrNoChannelBinding.
func ChannelBinding(cs *tls.ConnectionState) (string, ChannelBindingType, error) {
	b, typ, err := channelBinding(cs)
	if err != nil {
		return "", "", err
	}
	return base64.StdEncoding.EncodeToString(b), typ, nil
}

func channelBinding(cs *tls.ConnectionState) ([]byte, ChannelBindingType, error) {
	switch {
	case cs == nil:
		return nil, "", fmt.Errorf("%w: not a TLS connection", ErrNoChannelBinding)
	case cs.Version >= tls.VersionTLS13:
		b, err := cs.ExportKeyingMaterial(exporterLabel, nil, exporterLen)
		if err != nil {
			return nil, "", fmt.Errorf("%w: tls-exporter: %w", ErrNoChannelBinding, err)
		}
		return b, BindingTLSExporter, nil
	case len(cs.TLSUnique) > 0:
		return cs.TLSUnique, BindingTLSUnique, nil
	default:
		return nil, "", fmt.Errorf("%w: %s without tls-unique", ErrNoChannelBinding, tls.VersionName(cs.Version))
	}
}

// decodeBinding reads a base64 binding, with or without padding.
func decodeBinding(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.Strict().DecodeString(s); err == nil {
		return b, nil
	}
	b, err := base64.RawStdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("challengePassword is not base64: %w", err)
	}
	return b, nil
}
