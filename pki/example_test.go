package pki_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"fmt"
	"time"

	"github.com/jmhodges/clock"

	"github.com/gatehouse-pki/gatehouse/pki"
)

// Example issues an LDevID: create a domain CA, build an Issuer from a
// profile, check the device's CSR key, Prepare (reserve a serial and get the
// TBS hash to record as an intent), then Sign.
func Example() {
	clk := clock.NewFake()
	clk.Set(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))

	rootKey, _ := pki.GenerateKey()
	ca, err := pki.NewRootCA(clk, pki.CAConfig{Subject: pkix.Name{CommonName: "Example Domain CA"}}, rootKey, nil)
	if err != nil {
		panic(err)
	}
	cfg := pki.IssuerConfig{LDevID: pki.Profile{
		URIs:     []string{"urn:dev:ops:{serial}"},
		Validity: 30 * 24 * time.Hour,
	}}.WithDefaults()
	iss, err := pki.NewIssuer(cfg, pki.IssuerDeps{Clock: clk, CA: ca})
	if err != nil {
		panic(err)
	}

	// The device identity comes from the pledge's authenticated IDevID
	// (pki.ParseIDevID); the key from its checked CSR (pki.CheckCSRAgainstProfile).
	dev := &pki.DeviceIdentity{Serial: "00-D0-E5-F2-00-02"}
	deviceKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	p, err := iss.Prepare(pki.IssueRequest{PublicKey: deviceKey.Public(), Device: dev})
	if err != nil {
		panic(err)
	}
	_ = p.TBSHash() // write the intent (serial, TBS hash, device) durably here
	cert, err := iss.Sign(context.Background(), p)
	if err != nil {
		panic(err)
	}
	fmt.Println(cert.Subject)
	fmt.Println(cert.URIs[0])
	fmt.Println(cert.NotBefore.Format(time.RFC3339), cert.NotAfter.Format(time.RFC3339))
	// Output:
	// SERIALNUMBER=00-D0-E5-F2-00-02,CN=00-D0-E5-F2-00-02
	// urn:dev:ops:00-D0-E5-F2-00-02
	// 2030-01-02T03:03:05Z 2030-02-01T03:03:05Z
}
