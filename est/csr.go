package est

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gatehouse-pki/gatehouse/internal/problem"
	"github.com/gatehouse-pki/gatehouse/pki"
)

// ErrNamesDiffer reports a re-enrollment CSR whose subject or
// subjectAltName is not the renewed certificate's.
var ErrNamesDiffer = errors.New("names differ from the certificate being renewed")

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// checkCSRPolicy applies pki.CheckCSR: the signature verifies with the
// CSR's own key (RFC 7030 §3.4 proof of possession, reliability C02), no
// MD5 or SHA-1 signature (C03), the key policy (C04), no request for CA
// rights (C06). The back end then checks the CSR against its profile.
func checkCSRPolicy(csr *x509.CertificateRequest) error {
	if err := pki.CheckCSR(csr); err != nil {
		switch {
		case errors.Is(err, pki.ErrWeakKey):
			return problem.New(problem.BadRequest, err, "the CSR's public key is refused by the key policy")
		default:
			return problem.New(problem.BadRequest, err, "the CSR is refused: bad signature, weak signature algorithm or a request for CA rights")
		}
	}
	return nil
}

// sameNames compares a CSR's subject and subjectAltName with a
// certificate's (RFC 7030 §4.2.2). Subjects are compared attribute by
// attribute in order, by type and value, so a client that re-encodes a
// PrintableString as UTF8String still matches; subjectAltNames are
// compared as multisets of GeneralNames, whatever their order or
// criticality.
func sameNames(csr *x509.CertificateRequest, cert *x509.Certificate) error {
	a, err := subjectAttrs(csr.RawSubject)
	if err != nil {
		return err
	}
	b, err := subjectAttrs(cert.RawSubject)
	if err != nil {
		return err
	}
	if !slices.EqualFunc(a, b, func(x, y pkix.AttributeTypeAndValue) bool {
		return x.Type.Equal(y.Type) && fmt.Sprint(x.Value) == fmt.Sprint(y.Value)
	}) {
		return fmt.Errorf("%w: subject %q, certificate %q", ErrNamesDiffer, csr.Subject, cert.Subject)
	}
	csrSAN, err := generalNames(csr.Extensions)
	if err != nil {
		return err
	}
	certSAN, err := generalNames(cert.Extensions)
	if err != nil {
		return err
	}
	if !slices.Equal(csrSAN, certSAN) {
		return fmt.Errorf("%w: subjectAltName", ErrNamesDiffer)
	}
	return nil
}

func subjectAttrs(raw []byte) ([]pkix.AttributeTypeAndValue, error) {
	var rdns pkix.RDNSequence
	if rest, err := asn1.Unmarshal(raw, &rdns); err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("%w: subject does not parse", ErrNamesDiffer)
	}
	var out []pkix.AttributeTypeAndValue
	for _, rdn := range rdns {
		out = append(out, rdn...)
	}
	return out, nil
}

// generalNames returns the subjectAltName's GeneralNames, each as its tag
// and contents, sorted; nil when there is no SAN.
func generalNames(exts []pkix.Extension) ([]string, error) {
	var out []string
	for _, e := range exts {
		if !e.Id.Equal(oidSubjectAltName) {
			continue
		}
		in := cryptobyte.String(e.Value)
		var seq cryptobyte.String
		if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
			return nil, fmt.Errorf("%w: malformed subjectAltName", ErrNamesDiffer)
		}
		for !seq.Empty() {
			var gn cryptobyte.String
			var tag cbasn1.Tag
			if !seq.ReadAnyASN1(&gn, &tag) {
				return nil, fmt.Errorf("%w: malformed subjectAltName", ErrNamesDiffer)
			}
			out = append(out, string(append([]byte{byte(tag)}, gn...)))
		}
	}
	slices.SortFunc(out, func(a, b string) int { return bytes.Compare([]byte(a), []byte(b)) })
	return out, nil
}
