package pki_test

import (
	"crypto"
	"crypto/dsa" //nolint:staticcheck // DSA keys are built only to check that they are refused.
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-pki/gatehouse/pki"
)

var (
	rsaKeysOnce sync.Once
	rsaKeys     map[int]*rsa.PrivateKey
)

// rsaKey returns a cached RSA key of the given size (generation is slow).
func rsaKey(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	rsaKeysOnce.Do(func() {
		rsaKeys = map[int]*rsa.PrivateKey{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, b := range []int{2048, 3072, 4096} {
			wg.Go(func() {
				k, err := rsa.GenerateKey(rand.Reader, b)
				if err != nil {
					panic(err)
				}
				mu.Lock()
				rsaKeys[b] = k
				mu.Unlock()
			})
		}
		wg.Wait()
	})
	return rsaKeys[bits]
}

func ecKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// oddModulus returns a random odd modulus of exactly bits bits with no small
// factor checks applied; only its size matters to the tests that use it.
func oddModulus(t testing.TB, bits int) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), uint(bits)))
	if err != nil {
		t.Fatal(err)
	}
	n.SetBit(n, bits-1, 1)
	n.SetBit(n, 0, 1)
	return n
}

// fermatWeak returns a modulus p·q with q the next prime after p, which
// Fermat's method factors in one step.
func fermatWeak(t testing.TB) *big.Int {
	t.Helper()
	p, err := rand.Prime(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	q := new(big.Int).Add(p, big.NewInt(2))
	for !q.ProbablyPrime(20) {
		q.Add(q, big.NewInt(2))
	}
	return new(big.Int).Mul(p, q)
}

// rocaWeak returns a 2048-bit modulus p·q with p and q prime and of the
// RSALib form k·M + (65537^a mod M), M the product of the first 38 odd primes
// and 3: the structure the ROCA fingerprint detects.
func rocaWeak(t testing.TB) *big.Int {
	t.Helper()
	primes := []int64{3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167}
	m := big.NewInt(2)
	for _, p := range primes {
		m.Mul(m, big.NewInt(p))
	}
	// k in [¾·2^1024/M, 2^1024/M) puts p in [¾·2^1024, 2^1024), so p·q has
	// exactly 2048 bits.
	hi := new(big.Int).Div(new(big.Int).Lsh(big.NewInt(1), 1024), m)
	lo := new(big.Int).Div(new(big.Int).Mul(hi, big.NewInt(3)), big.NewInt(4))
	span := new(big.Int).Sub(hi, lo)
	prime := func() *big.Int {
		for {
			a, err := rand.Int(rand.Reader, big.NewInt(1<<20))
			if err != nil {
				t.Fatal(err)
			}
			g := new(big.Int).Exp(big.NewInt(65537), a, m)
			k, err := rand.Int(rand.Reader, span)
			if err != nil {
				t.Fatal(err)
			}
			k.Add(k, lo)
			p := new(big.Int).Add(new(big.Int).Mul(k, m), g)
			if p.ProbablyPrime(20) {
				return p
			}
		}
	}
	n := new(big.Int).Mul(prime(), prime())
	if n.BitLen() != 2048 {
		t.Fatalf("roca test modulus has %d bits", n.BitLen())
	}
	return n
}

// TestCheckPublicKey_Matrix is the reliability Q5 key-policy matrix.
func TestCheckPublicKey_Matrix(t *testing.T) {
	t.Parallel()
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var dsaKey dsa.PrivateKey
	if err := dsa.GenerateParameters(&dsaKey.Parameters, rand.Reader, dsa.L1024N160); err != nil {
		t.Fatal(err)
	}
	if err := dsa.GenerateKey(&dsaKey, rand.Reader); err != nil {
		t.Fatal(err)
	}
	p256 := ecKey(t, elliptic.P256())
	tests := []struct {
		name   string
		pub    func(t *testing.T) crypto.PublicKey
		wantOK bool
		wantIn string // a substring the refusal must contain
	}{
		{name: "accept/rsa-2048", pub: func(t *testing.T) crypto.PublicKey { return &rsaKey(t, 2048).PublicKey }, wantOK: true},
		{name: "accept/rsa-3072", pub: func(t *testing.T) crypto.PublicKey { return &rsaKey(t, 3072).PublicKey }, wantOK: true},
		{name: "accept/rsa-4096", pub: func(t *testing.T) crypto.PublicKey { return &rsaKey(t, 4096).PublicKey }, wantOK: true},
		{name: "accept/p-256", pub: func(*testing.T) crypto.PublicKey { return &p256.PublicKey }, wantOK: true},
		{name: "accept/p-384", pub: func(t *testing.T) crypto.PublicKey { return &ecKey(t, elliptic.P384()).PublicKey }, wantOK: true},
		{name: "accept/ed25519", pub: func(*testing.T) crypto.PublicKey { return edPub }, wantOK: true},
		{name: "reject/rsa-1024", pub: func(t *testing.T) crypto.PublicKey { return &rsa.PublicKey{N: oddModulus(t, 1024), E: 65537} }},
		{name: "reject/rsa-2049", pub: func(t *testing.T) crypto.PublicKey { return &rsa.PublicKey{N: oddModulus(t, 2049), E: 65537} }},
		{name: "reject/rsa-2056-not-on-list", pub: func(t *testing.T) crypto.PublicKey { return &rsa.PublicKey{N: oddModulus(t, 2056), E: 65537} }},
		{name: "reject/rsa-e-3", pub: func(t *testing.T) crypto.PublicKey { return &rsa.PublicKey{N: rsaKey(t, 2048).N, E: 3} }},
		{name: "reject/rsa-even-modulus", pub: func(t *testing.T) crypto.PublicKey {
			n := new(big.Int).Set(rsaKey(t, 2048).N)
			return &rsa.PublicKey{N: n.SetBit(n, 0, 0), E: 65537}
		}},
		{name: "reject/rsa-small-factor", wantIn: "divisible by", pub: func(t *testing.T) crypto.PublicKey {
			for {
				n := new(big.Int).Mul(big.NewInt(997), oddModulus(t, 2038))
				if n.BitLen() == 2048 && n.Bit(0) == 1 {
					return &rsa.PublicKey{N: n, E: 65537}
				}
			}
		}},
		{name: "reject/rsa-fermat-close", wantIn: "Fermat", pub: func(t *testing.T) crypto.PublicKey { return &rsa.PublicKey{N: fermatWeak(t), E: 65537} }},
		{name: "reject/rsa-roca", wantIn: "ROCA", pub: func(t *testing.T) crypto.PublicKey { return &rsa.PublicKey{N: rocaWeak(t), E: 65537} }},
		{name: "reject/dsa", pub: func(*testing.T) crypto.PublicKey { return &dsaKey.PublicKey }},
		{name: "reject/p-224", pub: func(t *testing.T) crypto.PublicKey { return &ecKey(t, elliptic.P224()).PublicKey }},
		{name: "reject/p-521", pub: func(t *testing.T) crypto.PublicKey { return &ecKey(t, elliptic.P521()).PublicKey }},
		{name: "reject/p-256-off-curve", pub: func(*testing.T) crypto.PublicKey {
			return &ecdsa.PublicKey{Curve: elliptic.P256(), X: big.NewInt(1), Y: big.NewInt(1)} //nolint:staticcheck // an invalid point on purpose
		}},
		{name: "reject/ed25519-short", pub: func(*testing.T) crypto.PublicKey { return edPub[:31] }},
		{name: "reject/nil", pub: func(*testing.T) crypto.PublicKey { return nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := pki.CheckPublicKey(tc.pub(t))
			if tc.wantOK && err != nil {
				t.Fatalf("CheckPublicKey = %v, want nil", err)
			}
			if !tc.wantOK && !errors.Is(err, pki.ErrWeakKey) {
				t.Fatalf("CheckPublicKey = %v, want ErrWeakKey", err)
			}
			if tc.wantIn != "" && !strings.Contains(err.Error(), tc.wantIn) {
				t.Fatalf("CheckPublicKey = %v, want a refusal mentioning %q", err, tc.wantIn)
			}
		})
	}
}
