package est

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"strconv"
)

// ErrUnsupportedKeyType reports a key type GenerateKey or KeyTypeOf does
// not handle.
var ErrUnsupportedKeyType = errors.New("unsupported key type")

// OIDCurveP521 is secp521r1 (RFC 5480).
var OIDCurveP521 = asn1.ObjectIdentifier{1, 3, 132, 0, 35}

// RSA modulus sizes a client generates when asked (Supported).
const (
	minRSABits = 2048
	maxRSAGen  = 8192
)

// KeyType is a key algorithm and its parameter: a named curve for
// id-ecPublicKey, a modulus size for rsaEncryption, nothing for Ed25519
// (template only).
type KeyType struct {
	// Algorithm is the SubjectPublicKeyInfo algorithm OID.
	Algorithm asn1.ObjectIdentifier
	// Curve is the named curve (id-ecPublicKey only; in a Template it may
	// be left out, leaving the curve to the client).
	Curve asn1.ObjectIdentifier
	// RSABits is the modulus size (rsaEncryption only; not expressible in
	// a Template).
	RSABits int
}

// String names the key type: "ec P-256", "rsa 3072", "ed25519", or the
// OIDs of a type this package does not know.
func (k KeyType) String() string {
	switch {
	case k.Algorithm.Equal(OIDPublicKeyEC):
		if c := curveFor(k.Curve); c != nil {
			return "ec " + c.Params().Name
		}
		return "ec " + k.Curve.String()
	case k.Algorithm.Equal(OIDPublicKeyRSA):
		return "rsa " + strconv.Itoa(k.RSABits)
	case k.Algorithm.Equal(OIDPublicKeyEd25519):
		return "ed25519"
	default:
		return k.Algorithm.String()
	}
}

// Supported reports whether GenerateKey makes keys of this type for a
// client that was asked for it: ECDSA on P-256, P-384 or P-521, RSA of
// 2048 to 8192 bits, Ed25519.
func (k KeyType) Supported() bool {
	switch {
	case k.Algorithm.Equal(OIDPublicKeyEC):
		return curveFor(k.Curve) != nil
	case k.Algorithm.Equal(OIDPublicKeyRSA):
		return k.RSABits >= minRSABits && k.RSABits <= maxRSAGen
	default:
		return k.Algorithm.Equal(OIDPublicKeyEd25519)
	}
}

// GenerateKey returns a fresh key of type k from crypto/rand.
func GenerateKey(k KeyType) (crypto.Signer, error) {
	var (
		key crypto.Signer
		err error
	)
	switch {
	case k.Algorithm.Equal(OIDPublicKeyEC) && curveFor(k.Curve) != nil:
		key, err = ecdsa.GenerateKey(curveFor(k.Curve), rand.Reader)
	case k.Algorithm.Equal(OIDPublicKeyRSA):
		key, err = rsa.GenerateKey(rand.Reader, k.RSABits)
	case k.Algorithm.Equal(OIDPublicKeyEd25519):
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("generate key: %w %s", ErrUnsupportedKeyType, k)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", k, err)
	}
	return key, nil
}

// KeyTypeOf returns the type of an existing public key: ECDSA on a curve
// this package names, RSA, Ed25519.
func KeyTypeOf(pub crypto.PublicKey) (KeyType, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if oid := curveOID(k.Curve); oid != nil {
			return KeyType{Algorithm: OIDPublicKeyEC, Curve: oid}, nil
		}
		return KeyType{}, fmt.Errorf("%w: ECDSA on %s", ErrUnsupportedKeyType, k.Curve.Params().Name)
	case *rsa.PublicKey:
		return KeyType{Algorithm: OIDPublicKeyRSA, RSABits: k.N.BitLen()}, nil
	case ed25519.PublicKey:
		return KeyType{Algorithm: OIDPublicKeyEd25519}, nil
	default:
		return KeyType{}, fmt.Errorf("%w %T", ErrUnsupportedKeyType, pub)
	}
}

func curveFor(oid asn1.ObjectIdentifier) elliptic.Curve {
	switch {
	case oid.Equal(OIDCurveP256):
		return elliptic.P256()
	case oid.Equal(OIDCurveP384):
		return elliptic.P384()
	case oid.Equal(OIDCurveP521):
		return elliptic.P521()
	}
	return nil
}

func curveOID(c elliptic.Curve) asn1.ObjectIdentifier {
	switch c {
	case elliptic.P256():
		return OIDCurveP256
	case elliptic.P384():
		return OIDCurveP384
	case elliptic.P521():
		return OIDCurveP521
	}
	return nil
}
