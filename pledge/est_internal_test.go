package pledge

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/gatehouse-pki/gatehouse/est"
)

// TestSubjectFromTemplate: values the template sets are copied as sent
// (whatever their ASN.1 type), values it leaves open come from the
// IDevID's subject, and attributes the IDevID lacks are dropped with their
// RDN when it empties.
func TestSubjectFromTemplate(t *testing.T) {
	t.Parallel()
	var (
		cn     = asn1.ObjectIdentifier{2, 5, 4, 3}
		serial = asn1.ObjectIdentifier{2, 5, 4, 5}
		org    = asn1.ObjectIdentifier{2, 5, 4, 10}
		unit   = asn1.ObjectIdentifier{2, 5, 4, 11}
	)
	idevid, err := asn1.Marshal(pkix.Name{SerialNumber: "SN-1", Organization: []string{"Mfg"}}.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	bmp := []byte{0x1e, 0x04, 0x00, 'd', 0x00, 'v'}
	tmpl := [][]est.NameAttribute{
		{{Type: cn, HasValue: true, Raw: bmp}},
		{{Type: serial}, {Type: org}},
		{{Type: unit}},
	}
	got, err := subjectFromTemplate(tmpl, idevid)
	if err != nil {
		t.Fatal(err)
	}
	// The RDNs and their attributes in the template's order (the RDN of
	// two is not re-sorted into DER SET OF order).
	want, err := hex.DecodeString("302a" +
		"310d" + "300b0603550403" + "1e0400640076" +
		"3119" + "300b0603550405" + "1304534e2d31" + "300a060355040a" + "13034d6667")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("subject = %x, want %x", got, want)
	}
	dev, err := deviceSubject(idevid)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := asn1.Marshal(pkix.Name{SerialNumber: "SN-1"}.ToRDNSequence()); !bytes.Equal(dev, want) {
		t.Fatalf("device subject = %x, want %x", dev, want)
	}
	if _, err := subjectFromTemplate(tmpl, []byte{0x31, 0x00}); !errors.Is(err, ErrESTEncoding) {
		t.Fatalf("malformed IDevID subject: %v, want ErrESTEncoding", err)
	}
}
