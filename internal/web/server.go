package web

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"time"
)

// Server limits (reliability D1). Go bounds the TLS handshake by the smallest
// of these timeouts, so a stalled handshake is closed within ReadHeaderTimeout.
const (
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 30 * time.Second
	WriteTimeout      = 30 * time.Second
	IdleTimeout       = 60 * time.Second
	MaxHeaderBytes    = 16 << 10
	// MaxBodyBytes caps every request body unless a handler asks for less.
	MaxBodyBytes = 64 << 10
)

// NewServer builds an http.Server with the project's timeouts and header
// limit, and routes its internal error log to logger.
func NewServer(h http.Handler, tlsConfig *tls.Config, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// ServerTLSConfig returns the TLS settings every Gatehouse listener starts
// from: TLS 1.2 and 1.3 only, and under 1.2 only ECDHE key exchange with AEAD
// ciphers (reliability E01, E02). Session tickets are off so that every
// connection's client certificate is checked afresh (reliability D08).
func ServerTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		SessionTicketsDisabled: true,
	}
}
