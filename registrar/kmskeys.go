package registrar

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	"go.step.sm/crypto/kms/apiv1"

	"github.com/gatehouse-pki/gatehouse/pki"
)

// KeyCreator is a key management system that creates keys and signers for
// them: the PKCS#11 KMS of go.step.sm/crypto/kms/pkcs11 (an HSM, or
// SoftHSM in tests) satisfies it.
type KeyCreator interface {
	CreateKey(req *apiv1.CreateKeyRequest) (*apiv1.CreateKeyResponse, error)
	CreateSigner(req *apiv1.CreateSignerRequest) (crypto.Signer, error)
}

// KMSKeys generates new CA keys in a KMS (rollover step 1 with an HSM) and
// loads keys by reference: references with Scheme from the KMS, anything
// else (the software keys of earlier generations) with pki.LoadSigner.
type KMSKeys struct {
	// KMS creates the keys. Required.
	KMS KeyCreator
	// Scheme is the URI scheme of the KMS's references, "pkcs11".
	Scheme string
	// Token is what the new key's URI starts with, for example
	// "pkcs11:token=gatehouse"; an id and an object label are appended.
	// The PIN is never part of it: the KMS was opened with it.
	Token string
}

// Generate creates a P-256 key in the KMS, labelled gatehouse-ca-<hex>,
// and returns its URI (without the PIN) as the reference.
func (k KMSKeys) Generate(_ context.Context) (string, crypto.Signer, error) {
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	name := fmt.Sprintf("%s;id=%s;object=gatehouse-ca-%s", strings.TrimSuffix(k.Token, ";"), hex.EncodeToString(id), hex.EncodeToString(id))
	resp, err := k.KMS.CreateKey(&apiv1.CreateKeyRequest{Name: name, SignatureAlgorithm: apiv1.ECDSAWithSHA256})
	if err != nil {
		return "", nil, fmt.Errorf("create ca key in %s: %w", k.Scheme, err)
	}
	s, err := k.KMS.CreateSigner(&resp.CreateSignerRequest)
	if err != nil {
		return "", nil, fmt.Errorf("ca key signer: %w", err)
	}
	return name, s, nil
}

// Load returns the signer for ref.
func (k KMSKeys) Load(ctx context.Context, ref string) (crypto.Signer, error) {
	return pki.LoadSigner(ctx, ref, map[string]pki.KeyManager{k.Scheme: k.KMS})
}
