package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"math/big"
)

// ErrWeakKey reports a public key that the key policy refuses: a type, size,
// curve or exponent not on the allowlist, or an RSA modulus with a known
// weakness (small factors, Fermat-close factors, the ROCA fingerprint).
var ErrWeakKey = errors.New("weak or unsupported public key")

// Key policy (reliability Q5). The allowlist:
//
//   - RSA with a modulus of exactly 2048, 3072 or 4096 bits (hence a multiple
//     of 8) and public exponent 65537. Other sizes are refused, as Boulder's
//     goodkey does: they are legal but unusual enough to hint at a broken
//     generator, and 2049 bits is the classic off-by-one of one.
//   - ECDSA on P-256 or P-384, with the point on the curve.
//   - Ed25519 (RFC 8410): accepted. cBRSKI pledges may use Ed25519 for DTLS
//     (draft-ietf-anima-constrained-voucher), Go's TLS stack and x509 support
//     it fully, and it has no parameter choices to get wrong.
//
// Refused: RSA of any other size or exponent, DSA, P-224 (112-bit security),
// and P-521. P-521 is refused on purpose: no constrained pledge profile we
// target needs it, it is not on the reliability Q5 accept list, several TLS
// stacks (and Boulder) do not accept it, and P-384 already covers the higher
// security level. Adding it later is a one-line change here.
//
// RSA moduli are also refused when they are even, divisible by a prime below
// 1000, have factors close enough for a few Fermat iterations to find them
// (Boulder's goodkey uses the same idea), or match the ROCA fingerprint
// (CVE-2017-15361, Infineon RSALib).
const (
	rsaExponent      = 65537
	fermatIterations = 100
)

// CheckPublicKey applies the key policy to pub and returns nil or an error
// wrapping ErrWeakKey that says why the key is refused.
func CheckPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return checkRSA(k)
	case *ecdsa.PublicKey:
		return checkECDSA(k)
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: ed25519 public key of %d bytes", ErrWeakKey, len(k))
		}
		return nil
	case nil:
		return fmt.Errorf("%w: no public key", ErrWeakKey)
	default:
		return fmt.Errorf("%w: key type %T not allowed", ErrWeakKey, pub)
	}
}

func checkECDSA(k *ecdsa.PublicKey) error {
	if k.Curve == nil {
		return fmt.Errorf("%w: ecdsa key without a curve", ErrWeakKey)
	}
	switch k.Curve {
	case elliptic.P256(), elliptic.P384():
	default:
		return fmt.Errorf("%w: ecdsa curve %s not allowed (P-256 and P-384 only)", ErrWeakKey, k.Curve.Params().Name)
	}
	// ECDH performs the full point validation (on the curve, not the point
	// at infinity) through crypto/ecdh.
	if _, err := k.ECDH(); err != nil {
		return fmt.Errorf("%w: ecdsa point not valid: %w", ErrWeakKey, err)
	}
	return nil
}

func checkRSA(k *rsa.PublicKey) error {
	if k.N == nil || k.N.Sign() <= 0 {
		return fmt.Errorf("%w: rsa key without a modulus", ErrWeakKey)
	}
	bits := k.N.BitLen()
	switch bits {
	case 2048, 3072, 4096:
	default:
		return fmt.Errorf("%w: rsa modulus of %d bits (2048, 3072 or 4096 only)", ErrWeakKey, bits)
	}
	if k.E != rsaExponent {
		return fmt.Errorf("%w: rsa public exponent %d (65537 only)", ErrWeakKey, k.E)
	}
	if k.N.Bit(0) == 0 {
		return fmt.Errorf("%w: rsa modulus is even", ErrWeakKey)
	}
	if p := smallFactor(k.N); p != 0 {
		return fmt.Errorf("%w: rsa modulus divisible by %d", ErrWeakKey, p)
	}
	if fermatFactorable(k.N, fermatIterations) {
		return fmt.Errorf("%w: rsa modulus has factors close enough for Fermat's method", ErrWeakKey)
	}
	if rocaFingerprint(k.N) {
		return fmt.Errorf("%w: rsa modulus matches the ROCA fingerprint (CVE-2017-15361)", ErrWeakKey)
	}
	return nil
}

// smallPrimes are the odd primes below 1000, built once.
var smallPrimes = func() []uint64 {
	var ps []uint64
	for n := uint64(3); n < 1000; n += 2 {
		prime := true
		for _, p := range ps {
			if p*p > n {
				break
			}
			if n%p == 0 {
				prime = false
				break
			}
		}
		if prime {
			ps = append(ps, n)
		}
	}
	return ps
}()

// smallFactorProduct is the product of smallPrimes, so one GCD finds any of
// them.
var smallFactorProduct = func() *big.Int {
	prod := big.NewInt(1)
	for _, p := range smallPrimes {
		prod.Mul(prod, new(big.Int).SetUint64(p))
	}
	return prod
}()

// smallFactor returns a prime below 1000 that divides n, or 0.
func smallFactor(n *big.Int) uint64 {
	g := new(big.Int).GCD(nil, nil, n, smallFactorProduct)
	if g.Cmp(big.NewInt(1)) == 0 {
		return 0
	}
	m := new(big.Int)
	for _, p := range smallPrimes {
		if m.Mod(n, new(big.Int).SetUint64(p)).Sign() == 0 {
			return p
		}
	}
	return 0
}

// fermatFactorable runs the given number of iterations of Fermat's
// factorisation method: starting from a = ceil(sqrt(n)) it tests whether
// a² − n is a perfect square. It finds n = p·q when |p − q| is tiny compared
// with sqrt(n), which is what a broken key generator that draws q near p
// produces.
func fermatFactorable(n *big.Int, iterations int) bool {
	a := new(big.Int).Sqrt(n)
	if new(big.Int).Mul(a, a).Cmp(n) == 0 {
		return true // a perfect square: p == q
	}
	a.Add(a, big.NewInt(1))
	b2 := new(big.Int)
	b := new(big.Int)
	sq := new(big.Int)
	for range iterations {
		b2.Mul(a, a)
		b2.Sub(b2, n)
		b.Sqrt(b2)
		if sq.Mul(b, b).Cmp(b2) == 0 {
			return true
		}
		a.Add(a, big.NewInt(1))
	}
	return false
}

// rocaPrimes are the small primes of the published ROCA fingerprint test
// (Nemec et al., "The Return of Coppersmith's Attack", CCS 2017). Infineon's
// RSALib generated primes of the form k·M + (65537^a mod M), with M a
// primorial, so for every such prime r the modulus N mod r lies in the
// multiplicative subgroup generated by 65537 modulo r. A random modulus does
// so for all these primes with negligible probability.
var rocaPrimes = []uint64{
	3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71,
	73, 79, 83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149,
	151, 157, 163, 167,
}

// rocaSubgroups[i][x] is true when x is in the subgroup generated by 65537
// modulo rocaPrimes[i]. Built once, from the definition above.
var rocaSubgroups = func() [][]bool {
	sets := make([][]bool, len(rocaPrimes))
	for i, r := range rocaPrimes {
		set := make([]bool, r)
		g := uint64(rsaExponent) % r
		x := uint64(1)
		for !set[x] {
			set[x] = true
			x = x * g % r
		}
		sets[i] = set
	}
	return sets
}()

// rocaFingerprint reports whether n has the ROCA fingerprint.
func rocaFingerprint(n *big.Int) bool {
	m := new(big.Int)
	for i, r := range rocaPrimes {
		res := m.Mod(n, new(big.Int).SetUint64(r)).Uint64()
		if !rocaSubgroups[i][res] {
			return false
		}
	}
	return true
}
