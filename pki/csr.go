package pki

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ErrBadCSR reports a certificate signing request that is refused: a bad
// signature, a weak signature algorithm, or a request for something the
// profile does not grant (CA rights, cmcRA, foreign names …). The key policy
// reports ErrWeakKey instead.
var ErrBadCSR = errors.New("certificate signing request refused")

var (
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidNameConstraints  = asn1.ObjectIdentifier{2, 5, 29, 30}
	oidEKUAny           = asn1.ObjectIdentifier{2, 5, 29, 37, 0}
	oidEKUServerAuth    = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
	oidEKUClientAuth    = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
)

// CheckCSR checks a CSR on its own (reliability C02-C04, C06, Q5, Q6):
//
//   - the signature verifies with the CSR's own key (proof of possession);
//   - the signature algorithm is not MD5- or SHA-1-based (or unknown);
//   - the public key passes CheckPublicKey (ErrWeakKey);
//   - the requested extensions (PKCS#9 extensionRequest) ask for no CA
//     rights: no basicConstraints cA TRUE, no keyCertSign or cRLSign, no
//     name constraints, no id-kp-cmcRA or anyExtendedKeyUsage.
//
// Whatever a CSR requests, an issued certificate's extensions come only from
// the profile; these refusals make a hostile request visible (400) instead of
// silently ignored.
func CheckCSR(csr *x509.CertificateRequest) error {
	if csr == nil {
		return fmt.Errorf("check csr: %w: no request", ErrBadCSR)
	}
	switch csr.SignatureAlgorithm {
	case x509.SHA256WithRSA, x509.SHA384WithRSA, x509.SHA512WithRSA,
		x509.SHA256WithRSAPSS, x509.SHA384WithRSAPSS, x509.SHA512WithRSAPSS,
		x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512,
		x509.PureEd25519:
	default:
		return fmt.Errorf("check csr: %w: signature algorithm %s not allowed", ErrBadCSR, csr.SignatureAlgorithm)
	}
	if err := CheckPublicKey(csr.PublicKey); err != nil {
		return fmt.Errorf("check csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return fmt.Errorf("check csr: %w: signature: %w", ErrBadCSR, err)
	}
	for _, ext := range csr.Extensions {
		if err := checkRequestedExtension(ext.Id, ext.Value); err != nil {
			return fmt.Errorf("check csr: %w", err)
		}
	}
	return nil
}

func checkRequestedExtension(id asn1.ObjectIdentifier, value []byte) error {
	switch {
	case id.Equal(oidBasicConstraints):
		var bc struct {
			IsCA       bool `asn1:"optional"`
			MaxPathLen int  `asn1:"optional,default:-1"`
		}
		if rest, err := asn1.Unmarshal(value, &bc); err != nil || len(rest) != 0 {
			return fmt.Errorf("%w: malformed basicConstraints request", ErrBadCSR)
		}
		if bc.IsCA {
			return fmt.Errorf("%w: requests basicConstraints cA TRUE", ErrBadCSR)
		}
	case id.Equal(oidKeyUsage):
		var ku asn1.BitString
		if rest, err := asn1.Unmarshal(value, &ku); err != nil || len(rest) != 0 {
			return fmt.Errorf("%w: malformed keyUsage request", ErrBadCSR)
		}
		// keyCertSign is bit 5, cRLSign bit 6 (RFC 5280 §4.2.1.3).
		if ku.At(5) == 1 || ku.At(6) == 1 {
			return fmt.Errorf("%w: requests keyCertSign or cRLSign", ErrBadCSR)
		}
	case id.Equal(oidNameConstraints):
		return fmt.Errorf("%w: requests name constraints", ErrBadCSR)
	case id.Equal(oidExtKeyUsage):
		ekus, err := parseEKU(value)
		if err != nil {
			return err
		}
		for _, e := range ekus {
			if e.Equal(OIDExtKeyUsageCMCRA) || e.Equal(oidEKUAny) {
				return fmt.Errorf("%w: requests extended key usage %s", ErrBadCSR, e)
			}
		}
	}
	return nil
}

func parseEKU(value []byte) ([]asn1.ObjectIdentifier, error) {
	var ekus []asn1.ObjectIdentifier
	if rest, err := asn1.Unmarshal(value, &ekus); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%w: malformed extendedKeyUsage request", ErrBadCSR)
	}
	return ekus, nil
}

// CheckCSRAgainstProfile runs CheckCSR and then CheckCSRNames: the whole
// CSR policy, for a caller holding a CSR nobody has checked yet.
func CheckCSRAgainstProfile(csr *x509.CertificateRequest, p Profile, dev *DeviceIdentity) error {
	if err := CheckCSR(csr); err != nil {
		return err
	}
	return CheckCSRNames(csr, p, dev)
}

// CheckCSRNames refuses a CSR that asks for anything the profile does not
// derive for dev (reliability C05-C07). It does not verify the signature or
// the key (CheckCSR does): a caller whose CSR has passed CheckCSR, such as
// an est.CA back end, calls it alone instead of paying for CheckCSR twice.
// Every subject attribute in the CSR must appear, with the same type and
// value, in the subject the profile derives (an empty subject, or a subset
// such as just CN, is accepted); every requested SAN (DNS, IP, URI, otherName) must be one
// the profile derives, and any other SAN type (email, directoryName, …) is
// refused; an extended key usage other than clientAuth (and serverAuth when
// the profile grants it) is refused. The certificate is built from the
// profile regardless; this check only turns a foreign request into a 400.
func CheckCSRNames(csr *x509.CertificateRequest, p Profile, dev *DeviceIdentity) error {
	n, err := p.derive(dev)
	if err != nil {
		return fmt.Errorf("check csr: %w", err)
	}
	for _, atv := range csr.Subject.Names {
		v, ok := atv.Value.(string)
		if !ok || !slices.ContainsFunc(n.subject, func(a attribute) bool { return a.oid.Equal(atv.Type) && a.value == v }) {
			return fmt.Errorf("check csr: %w: subject attribute %s=%v is not the device's", ErrBadCSR, atv.Type, atv.Value)
		}
	}
	for _, ext := range csr.Extensions {
		switch {
		case ext.Id.Equal(oidSubjectAltName):
			if err := checkRequestedSAN(ext.Value, n); err != nil {
				return fmt.Errorf("check csr: %w", err)
			}
		case ext.Id.Equal(oidExtKeyUsage):
			ekus, err := parseEKU(ext.Value)
			if err != nil {
				return fmt.Errorf("check csr: %w", err)
			}
			for _, e := range ekus {
				if !e.Equal(oidEKUClientAuth) && (!p.ServerAuth || !e.Equal(oidEKUServerAuth)) {
					return fmt.Errorf("check csr: %w: extended key usage %s is not in the profile", ErrBadCSR, e)
				}
			}
		}
	}
	return nil
}

// checkRequestedSAN walks a requested GeneralNames and refuses any name the
// profile does not derive.
func checkRequestedSAN(value []byte, n *names) error {
	in := cryptobyte.String(value)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return fmt.Errorf("%w: malformed subjectAltName request", ErrBadCSR)
	}
	for !seq.Empty() {
		var gn cryptobyte.String
		var tag cbasn1.Tag
		if !seq.ReadAnyASN1(&gn, &tag) {
			return fmt.Errorf("%w: malformed subjectAltName request", ErrBadCSR)
		}
		switch tag {
		case cbasn1.Tag(2).ContextSpecific():
			if !slices.Contains(n.dns, string(gn)) {
				return fmt.Errorf("%w: requested DNS name %q is not the device's", ErrBadCSR, string(gn))
			}
		case cbasn1.Tag(7).ContextSpecific():
			if !slices.ContainsFunc(n.ips, func(ip net.IP) bool { return net.IP(gn).Equal(ip) && (len(gn) == 4) == (ip.To4() != nil) }) {
				return fmt.Errorf("%w: requested IP address %x is not the device's", ErrBadCSR, []byte(gn))
			}
		case cbasn1.Tag(6).ContextSpecific():
			if !slices.ContainsFunc(n.uris, func(u *url.URL) bool { return u.String() == string(gn) }) {
				return fmt.Errorf("%w: requested URI %q is not the device's", ErrBadCSR, string(gn))
			}
		case cbasn1.Tag(0).ContextSpecific().Constructed():
			var oid asn1.ObjectIdentifier
			var explicit, val cryptobyte.String
			if !gn.ReadASN1ObjectIdentifier(&oid) ||
				!gn.ReadASN1(&explicit, cbasn1.Tag(0).ContextSpecific().Constructed()) || !gn.Empty() ||
				!explicit.ReadASN1(&val, cbasn1.UTF8String) || !explicit.Empty() {
				return fmt.Errorf("%w: requested otherName is not a UTF8String otherName", ErrBadCSR)
			}
			if !slices.ContainsFunc(n.otherNames, func(o otherName) bool { return o.oid.Equal(oid) && bytes.Equal([]byte(o.value), val) }) {
				return fmt.Errorf("%w: requested otherName %s is not the device's", ErrBadCSR, oid)
			}
		default:
			return fmt.Errorf("%w: requested subjectAltName of type [%d] is never granted", ErrBadCSR, tag&0x1f)
		}
	}
	return nil
}
