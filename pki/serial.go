package pki

import (
	"crypto/rand"
	"math/big"
)

// serialPrefix is the fixed first octet of every serial NewSerial returns. It
// is non-zero and below 0x80, so the DER INTEGER needs no leading zero octet
// and is always positive, and the encoding is always exactly 17 octets.
const serialPrefix = 0x7f

// serialRandomBytes is the number of octets from crypto/rand in a serial
// (128 bits; DESIGN.md "State and crash safety", reliability Q4).
const serialRandomBytes = 16

// NewSerial returns a fresh certificate serial number: the fixed non-zero
// prefix octet 0x7f followed by 128 bits from crypto/rand, 17 octets in all.
// The result is always positive, below 2^135 (so well within RFC 5280
// §4.1.2.2's 20-octet limit) and carries 128 CSPRNG bits after sign handling.
// Callers never reuse a serial: each Issuer.Prepare draws a new one.
func NewSerial() *big.Int {
	var b [1 + serialRandomBytes]byte
	b[0] = serialPrefix
	// Since Go 1.24 crypto/rand.Read never returns an error (it crashes the
	// program irrecoverably instead), so there is nothing to handle here.
	_, _ = rand.Read(b[1:])
	return new(big.Int).SetBytes(b[:])
}
