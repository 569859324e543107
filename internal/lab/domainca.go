package lab

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// DomainCAGeneration returns the path of one domain CA generation's
// certificate, lab/domain/ca-<generation>.pem, where <generation> is
// registrar.GenerationID (the hex subject key identifier). Every
// generation the store knows has one, so the roots of earlier generations
// stay at hand after a rollover.
func (p Paths) DomainCAGeneration(id string) string {
	return filepath.Join(filepath.Dir(p.DomainCA), "ca-"+id+".pem")
}

// SyncDomainCA makes lab/domain/ca.pem the issuing generation's certificate
// (DESIGN.md: the current domain CA) and writes lab/domain/ca-<gen>.pem for
// every generation in the registrar's store. Each file is replaced
// atomically (a temporary file renamed over it) and only when its content
// changes. Open runs it at start-up (after an offline rollover) and the
// lab's admin handler after an online rollover; it reports whether ca.pem
// changed.
func (l *Lab) SyncDomainCA(ctx context.Context) (bool, error) {
	l.caMu.Lock()
	defer l.caMu.Unlock()
	gens, err := l.regDB.Generations(ctx)
	if err != nil {
		return false, fmt.Errorf("lab: CA generations: %w", err)
	}
	p := l.PKI.Paths
	changed := false
	for _, g := range gens {
		b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: g.Certificate})
		if _, err := replaceFile(p.DomainCAGeneration(g.ID), b); err != nil {
			return false, fmt.Errorf("lab: %w", err)
		}
		if g.Active {
			if changed, err = replaceFile(p.DomainCA, b); err != nil {
				return false, fmt.Errorf("lab: %w", err)
			}
		}
	}
	return changed, nil
}

// AdminHandler is the registrar's admin API, which after a rollover
// request (POST /api/v1/ca/rollover) rewrites lab/domain/ca.pem to the
// generation now issuing (SyncDomainCA).
func (l *Lab) AdminHandler() http.Handler {
	api := l.Registrar.AdminHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api.ServeHTTP(w, r)
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/ca/rollover") {
			return
		}
		// The rollover's answer is written; a failure here leaves ca.pem
		// as it was until the next rollover or start.
		if _, err := l.SyncDomainCA(context.WithoutCancel(r.Context())); err != nil {
			l.log.Error("rewrite the lab's domain CA file", slog.Any("err", err))
		}
	})
}

// replaceFile makes path hold b, atomically: b goes to a temporary file in
// the same directory, synced, then renamed over path, and the directory is
// synced. It does nothing when path already holds b, and reports whether
// it wrote.
func replaceFile(path string, b []byte) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return false, nil
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return false, err
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }() // gone after the rename
	if err := f.Chmod(0o644); err != nil {
		_ = f.Close()
		return false, err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return false, err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return false, err
	}
	if err := f.Close(); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return false, err
	}
	return true, syncDir(dir)
}

// firstDomainCA returns the domain CA certificate whose key is key: ca.pem
// before the first rollover, afterwards the first generation's
// ca-<gen>.pem (ca.pem then holds the issuing generation, whose key lives
// under DIR/ca).
func firstDomainCA(p Paths, key crypto.Signer) (*x509.Certificate, error) {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return nil, fmt.Errorf("%s: unsupported key type", p.DomainCAKey)
	}
	gens, err := filepath.Glob(filepath.Join(filepath.Dir(p.DomainCA), "ca-[0-9a-f]*.pem"))
	if err != nil {
		return nil, err
	}
	for _, f := range append([]string{p.DomainCA}, gens...) {
		cs, err := ReadCertificates(f)
		if err != nil {
			return nil, err
		}
		if pub.Equal(cs[0].PublicKey) {
			return cs[0], nil
		}
	}
	return nil, fmt.Errorf("no domain CA certificate in %s or its ca-<generation>.pem files matches %s", p.DomainCA, p.DomainCAKey)
}
