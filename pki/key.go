package pki

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // RFC 5280 §4.2.1.2 method 1 names SHA-1; not a signature.
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"go.step.sm/crypto/kms/apiv1"
	"go.step.sm/crypto/kms/softkms"
	"go.step.sm/crypto/kms/uri"
	"go.step.sm/crypto/pemutil"
)

// ErrKeyFile reports a key file or key reference that cannot be used: missing,
// unparseable, not a signing key, or readable by group or others.
var ErrKeyFile = errors.New("unusable key file")

// KeyManager is the one thing pki needs from a key management system: a
// crypto.Signer for a key reference. softkms.SoftKMS satisfies it, and so
// does the PKCS#11 KMS of go.step.sm/crypto/kms/pkcs11, so an HSM slots in by
// registering it under its URI scheme in LoadSigner's managers without any
// change to the callers, which only ever see a crypto.Signer.
type KeyManager interface {
	CreateSigner(req *apiv1.CreateSignerRequest) (crypto.Signer, error)
}

// KeyFileMode is the permission every private key file is written with, and
// the most a loaded key file may allow.
const KeyFileMode fs.FileMode = 0o600

// GenerateKey returns a new ECDSA P-256 signing key from crypto/rand, the
// project's key type for CA, RA and MASA keys (DESIGN.md Performance budget).
func GenerateKey() (crypto.Signer, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate p-256 key: %w", err)
	}
	return k, nil
}

// MarshalKeyPEM returns the PKCS#8 PEM encoding of a software private key.
func MarshalKeyPEM(key crypto.Signer) ([]byte, error) {
	block, err := pemutil.Serialize(key, pemutil.WithPKCS8(true))
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(block), nil
}

// WriteKeyFile writes a software private key to path as PKCS#8 PEM with mode
// 0600. It refuses to overwrite an existing file, so a CA key is never
// replaced by accident.
func WriteKeyFile(path string, key crypto.Signer) error {
	b, err := MarshalKeyPEM(key)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, KeyFileMode)
	if err != nil {
		return fmt.Errorf("write key file: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return fmt.Errorf("write key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("sync key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close key file: %w", err)
	}
	return nil
}

// LoadSigner resolves a key reference to a crypto.Signer. A reference is
//
//   - a file path to a PEM private key (PKCS#8, SEC 1 or PKCS#1), or
//   - a softkms URI, "softkms:path=/etc/gatehouse/ca-key.pem" or
//     "softkms:/etc/gatehouse/ca-key.pem", loaded through softkms.New and
//     CreateSigner, or
//   - a URI whose scheme is a key of managers (for example "pkcs11:…" with a
//     PKCS#11 KMS registered as "pkcs11"), handed to that manager verbatim.
//
// File-backed keys (the first two forms) must not be accessible by group or
// others: a mode wider than 0600 is refused with ErrKeyFile before the file
// is read. managers may be nil.
func LoadSigner(ctx context.Context, ref string, managers map[string]KeyManager) (crypto.Signer, error) {
	if ref == "" {
		return nil, fmt.Errorf("load signer: %w: empty key reference", ErrKeyFile)
	}
	if scheme, _, ok := strings.Cut(ref, ":"); ok && scheme != softkms.Scheme && !isWindowsDrive(scheme) {
		km, found := managers[scheme]
		if !found {
			return nil, fmt.Errorf("load signer: %w: no key manager for scheme %q", ErrKeyFile, scheme)
		}
		s, err := km.CreateSigner(&apiv1.CreateSignerRequest{SigningKey: ref})
		if err != nil {
			return nil, fmt.Errorf("load signer from %s: %w", scheme, err)
		}
		return s, nil
	}
	path := ref
	if uri.HasScheme(softkms.Scheme, ref) {
		u, err := uri.ParseWithScheme(softkms.Scheme, ref)
		if err != nil {
			return nil, fmt.Errorf("load signer: %w: %w", ErrKeyFile, err)
		}
		switch {
		case u.Get("path") != "":
			path = u.Get("path")
		case u.Path != "":
			path = u.Path
		default:
			path = u.Opaque
		}
	}
	if err := checkKeyFileMode(path); err != nil {
		return nil, err
	}
	km, err := softkms.New(ctx, apiv1.Options{Type: apiv1.SoftKMS})
	if err != nil {
		return nil, fmt.Errorf("load signer: %w", err)
	}
	s, err := km.CreateSigner(&apiv1.CreateSignerRequest{SigningKey: path})
	if err != nil {
		return nil, fmt.Errorf("load signer: %w: %w", ErrKeyFile, err)
	}
	return s, nil
}

func isWindowsDrive(s string) bool {
	return len(s) == 1 && (s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z')
}

func checkKeyFileMode(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("load signer: %w: %w", ErrKeyFile, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("load signer: %w: %s is not a regular file", ErrKeyFile, path)
	}
	if perm := fi.Mode().Perm(); perm&^KeyFileMode != 0 {
		return fmt.Errorf("load signer: %w: %s has mode %#o; private key files must not be accessible by group or others (chmod 600)", ErrKeyFile, path, perm)
	}
	return nil
}

// SubjectKeyID returns the key identifier Gatehouse puts in the
// SubjectKeyIdentifier of every certificate it issues: the 160-bit SHA-1 hash
// of the BIT STRING subjectPublicKey (excluding tag, length and unused-bits
// octet), method 1 of RFC 5280 §4.2.1.2. The same value is the idevid-issuer
// fallback for an IDevID without an AKI (draft-ietf-anima-rfc8366bis), so
// there is one definition of a key identifier in the code base.
func SubjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	spki, err := marshalPKIX(pub)
	if err != nil {
		return nil, err
	}
	return keyIDFromSPKI(spki)
}

func keyIDFromSPKI(spki []byte) ([]byte, error) {
	var info struct {
		Algorithm asn1.RawValue
		PublicKey asn1.BitString
	}
	rest, err := asn1.Unmarshal(spki, &info)
	if err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%w: malformed subjectPublicKeyInfo", ErrWeakKey)
	}
	sum := sha1.Sum(info.PublicKey.Bytes) //nolint:gosec // RFC 5280 §4.2.1.2 method 1.
	return sum[:], nil
}

func marshalPKIX(pub crypto.PublicKey) ([]byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrWeakKey, err)
	}
	return spki, nil
}
