package voucher_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"time"

	"github.com/gatehouse-pki/gatehouse/voucher"
)

// A MASA signs a voucher as CMS; a pledge that pinned the MASA's
// certificate verifies it at its own clock's time and decodes the JSON.
func ExampleSignCMS() {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

	// A self-signed MASA certificate stands in for a real chain.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "Example MASA"},
		NotBefore:    now.AddDate(0, -1, 0),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		panic(err)
	}
	masa, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}

	v := &voucher.Voucher{Fields: voucher.Fields{
		CreatedOn:        now,
		Assertion:        voucher.AssertionLogged,
		SerialNumber:     "00-D0-E5-F2-00-02",
		PinnedDomainCert: []byte{0x30, 0x00},
		Nonce:            []byte{0xfb, 0xf5, 0xc4, 0xf7, 0x32, 0xbd, 0xab, 0xc2},
		NonceText:        "-_XE9zK9q8I", // as the pledge sent it
	}}
	payload, err := v.MarshalJSON()
	if err != nil {
		panic(err)
	}
	signed, err := voucher.SignCMS(payload, key, masa, nil, voucher.CMSOptions{SigningTime: now})
	if err != nil {
		panic(err)
	}

	content, verified, err := voucher.VerifyCMS(signed, voucher.VerifyOptions{
		Anchors: []*x509.Certificate{masa},
		Time:    now,
	})
	if err != nil {
		panic(err)
	}
	got, err := voucher.DecodeVoucherJSON(content)
	if err != nil {
		panic(err)
	}
	parsed, err := voucher.ParseCMS(signed)
	if err != nil {
		panic(err)
	}
	fmt.Println("signer:", verified.Signer.Subject.CommonName)
	fmt.Println("eContentType:", parsed.ContentType, "version:", parsed.Version)
	fmt.Println("nonce:", got.NonceText)
	fmt.Println(string(content))
	// Output:
	// signer: Example MASA
	// eContentType: 1.2.840.113549.1.9.16.1.40 version: 3
	// nonce: -_XE9zK9q8I
	// {"ietf-voucher:voucher":{"created-on":"2030-01-02T03:04:05Z","assertion":"logged","serial-number":"00-D0-E5-F2-00-02","pinned-domain-cert":"MAA=","nonce":"-_XE9zK9q8I"}}
}
