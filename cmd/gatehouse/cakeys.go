package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"go.step.sm/crypto/kms/apiv1"
	"go.step.sm/crypto/kms/pkcs11"
	"go.step.sm/crypto/kms/uri"

	"github.com/gatehouse-pki/gatehouse/configs"
	"github.com/gatehouse-pki/gatehouse/registrar"
)

// caKeys is how the registrar reaches its domain CA keys: files (keyFile,
// new keys under <dataDir>/ca) or a PKCS#11 token (keyURI, new keys in the
// same token).
type caKeys struct {
	keys registrar.CAKeys
	// ref is the configured key's reference as the store records it: an
	// absolute file path, or a pkcs11: URI without module path or PIN.
	ref    string
	closer io.Closer
}

func (k caKeys) Close() error {
	if k.closer == nil {
		return nil
	}
	return k.closer.Close()
}

// openCAKeys opens the domain CA's key source from the configuration.
func openCAKeys(ctx context.Context, dc configs.DomainCA, dataDir string) (caKeys, error) {
	if dc.KeyURI == "" {
		ref, err := filepath.Abs(dc.KeyFile)
		if err != nil {
			return caKeys{}, err
		}
		return caKeys{keys: registrar.KeyFiles{Dir: filepath.Join(dataDir, caKeyDir)}, ref: ref}, nil
	}
	if !uri.HasScheme("pkcs11", dc.KeyURI) {
		return caKeys{}, errors.New("domainCA.keyURI: only pkcs11: URIs are supported")
	}
	u, err := uri.ParseWithScheme("pkcs11", dc.KeyURI)
	if err != nil {
		return caKeys{}, fmt.Errorf("domainCA.keyURI: %w", err)
	}
	// The token (or slot) names where keys live; id and object name the
	// key. Module path and PIN stay in the configuration, never the store.
	var token, key []string
	for _, a := range []string{"token", "slot-id"} {
		if v := u.Get(a); v != "" {
			token = append(token, a+"="+v)
		}
	}
	for _, a := range []string{"id", "object"} {
		if v := u.Get(a); v != "" {
			key = append(key, a+"="+v)
		}
	}
	if len(token) == 0 || len(key) == 0 {
		return caKeys{}, errors.New("domainCA.keyURI: name the token (token= or slot-id=) and the key (id= or object=)")
	}
	kms, err := pkcs11.New(ctx, apiv1.Options{Type: apiv1.PKCS11, URI: dc.KeyURI})
	if err != nil {
		return caKeys{}, fmt.Errorf("domainCA.keyURI: open the PKCS#11 module: %w", err)
	}
	tok := "pkcs11:" + strings.Join(token, ";")
	return caKeys{
		keys:   registrar.KMSKeys{KMS: kms, Scheme: "pkcs11", Token: tok},
		ref:    tok + ";" + strings.Join(key, ";"),
		closer: kms,
	}, nil
}
