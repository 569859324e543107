package registrar

import (
	"crypto/sha256"
	"crypto/x509"
)

// domainIDsOf returns the domainIDs RFC 8995 §5.8.2 derives from a pinned
// certificate: its SubjectKeyIdentifier, and the SHA-256 of its SPKI (RFC
// 7469 §2.4), accepted whichever the MASA chose.
func domainIDsOf(c *x509.Certificate) [][]byte {
	h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	ids := [][]byte{h[:]}
	if len(c.SubjectKeyId) > 0 {
		ids = append(ids, c.SubjectKeyId)
	}
	return ids
}
