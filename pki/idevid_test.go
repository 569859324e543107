package pki_test

import (
	"bytes"
	"crypto/sha1" // RFC 5280 §4.2.1.2 method 1, recomputed independently
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-pki/gatehouse/internal/testvectors"
	"github.com/gatehouse-pki/gatehouse/pki"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
)

func readCert(t *testing.T, name string) *x509.Certificate {
	t.Helper()
	b := testvectors.Read(t, name)
	if blk, _ := pem.Decode(b); blk != nil {
		b = blk.Bytes
	}
	c, err := x509.ParseCertificate(b)
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return c
}

// spkiKeyID recomputes RFC 5280 method 1 independently of pki.
func spkiKeyID(t *testing.T, c *x509.Certificate) []byte {
	t.Helper()
	var spki struct {
		Alg asn1.RawValue
		Key asn1.BitString
	}
	if _, err := asn1.Unmarshal(c.RawSubjectPublicKeyInfo, &spki); err != nil {
		t.Fatal(err)
	}
	s := sha1.Sum(spki.Key.Bytes)
	return s[:]
}

func TestParseIDevID_Vectors(t *testing.T) {
	t.Parallel()
	t.Run("rfc8995", func(t *testing.T) {
		t.Parallel()
		c := readCert(t, "rfc8995/idevid_00-D0-E5-F2-00-02.crt")
		dev, err := pki.ParseIDevID(c, pki.IDevIDOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if dev.Serial != "00-D0-E5-F2-00-02" {
			t.Errorf("serial = %q", dev.Serial)
		}
		if got, want := dev.MASAURL.String(), "https://highway-test.example.com:9443/.well-known/brski"; got != want {
			t.Errorf("masa url = %q, want %q", got, want)
		}
		// No AKI: the fallback is built from the IDevID's own key (method 1).
		if len(c.AuthorityKeyId) != 0 {
			t.Fatal("vector unexpectedly has an AKI")
		}
		kid := spkiKeyID(t, c)
		want := append([]byte{0x04, 0x18, 0x30, 0x16, 0x80, 0x14}, kid...)
		if diff := cmp.Diff(want, dev.IDevIDIssuer); diff != "" {
			t.Errorf("idevid-issuer (-want +got):\n%s", diff)
		}
		// The vector's own SKI is method 1 too, so it must match.
		if !bytes.Equal(c.SubjectKeyId, kid) {
			t.Errorf("vector SKI %x != method-1 key id %x", c.SubjectKeyId, kid)
		}
	})
	t.Run("cbrski", func(t *testing.T) {
		t.Parallel()
		c := readCert(t, "cbrski/pledge.der")
		dev, err := pki.ParseIDevID(c, pki.IDevIDOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if dev.Serial != "JADA123456789" {
			t.Errorf("serial = %q", dev.Serial)
		}
		if got, want := dev.MASAURL.String(), "https://masa.stok.nl/.well-known/brski"; got != want {
			t.Errorf("masa url = %q, want %q", got, want)
		}
		// The RVR's idevid-issuer leaf: bstr(26) 04 18 30 16 80 14 <keyid>.
		rvr := testvectors.ReadHex(t, "cbrski/rvr-nonsigned.hex")
		i := bytes.Index(rvr, []byte{0x58, 0x1a, 0x04, 0x18, 0x30, 0x16, 0x80, 0x14})
		if i < 0 {
			t.Fatal("idevid-issuer not found in rvr-nonsigned.hex")
		}
		want := rvr[i+2 : i+2+26]
		if diff := cmp.Diff(want, dev.IDevIDIssuer); diff != "" {
			t.Errorf("idevid-issuer (-rvr +got):\n%s", diff)
		}
		for enc, w := range map[pki.IssuerEncoding][]byte{pki.IssuerEncodingSequence: want[2:], pki.IssuerEncodingKeyID: want[6:]} {
			got, err := pki.IDevIDIssuer(c, enc)
			if err != nil || !bytes.Equal(got, w) {
				t.Errorf("%s: got %x, %v; want %x", enc, got, err, w)
			}
		}
	})
}

func TestIDevIDIssuer_Generated(t *testing.T) {
	t.Parallel()
	mfg := pkitest.NewCA(t, pkitest.Name("Mfg"))
	withAKI := pkitest.NewIDevID(t, mfg, "A-1", "")
	noAKI := pkitest.NewIDevID(t, mfg, "A-2", "", pkitest.NoAKI())
	tests := []struct {
		name string
		cert *x509.Certificate
		enc  pki.IssuerEncoding
		want []byte
	}{
		{"aki/octet-string", withAKI.Cert, pki.IssuerEncodingOctetString, append([]byte{4, 24, 0x30, 22, 0x80, 20}, mfg.Cert.SubjectKeyId...)},
		{"aki/default-is-octet-string", withAKI.Cert, "", append([]byte{4, 24, 0x30, 22, 0x80, 20}, mfg.Cert.SubjectKeyId...)},
		{"aki/sequence", withAKI.Cert, pki.IssuerEncodingSequence, append([]byte{0x30, 22, 0x80, 20}, mfg.Cert.SubjectKeyId...)},
		{"aki/key-id", withAKI.Cert, pki.IssuerEncodingKeyID, mfg.Cert.SubjectKeyId},
		{"no-aki/key-id", noAKI.Cert, pki.IssuerEncodingKeyID, spkiKeyID(t, noAKI.Cert)},
		{"no-aki/sequence", noAKI.Cert, pki.IssuerEncodingSequence, append([]byte{0x30, 22, 0x80, 20}, spkiKeyID(t, noAKI.Cert)...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := pki.IDevIDIssuer(tc.cert, tc.enc)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if _, err := pki.IDevIDIssuer(withAKI.Cert, "bogus"); !errors.Is(err, pki.ErrBadIDevIDIssuer) {
		t.Errorf("bogus encoding: %v", err)
	}
}

func TestSerialNumber_Fallback(t *testing.T) {
	t.Parallel()
	mfg := pkitest.NewCA(t, pkitest.Name("Mfg"))
	long := strings.Repeat("9", 65)
	tests := []struct {
		name     string
		cert     *x509.Certificate
		fallback string
		want     string
		wantErr  error
	}{
		{"serialNumber", pkitest.NewIDevID(t, mfg, "SN-7", "").Cert, "", "SN-7", nil},
		{"serialNumber-wins-over-fallback", pkitest.NewIDevID(t, mfg, "SN-8", "", pkitest.Name("CN-8")).Cert, "CN", "SN-8", nil},
		{"absent", pkitest.NewIDevID(t, mfg, "SN-9", "", pkitest.NoSerialNumber()).Cert, "", "", pki.ErrNoSerialNumber},
		{"fallback-cn", pkitest.NewIDevID(t, mfg, "SN-9", "", pkitest.NoSerialNumber(), pkitest.Name("CN-9")).Cert, "CN", "CN-9", nil},
		{"fallback-oid", pkitest.NewIDevID(t, mfg, "SN-9", "", pkitest.NoSerialNumber(), pkitest.Name("CN-10")).Cert, "2.5.4.3", "CN-10", nil},
		{"fallback-absent", pkitest.NewIDevID(t, mfg, "SN-9", "", pkitest.NoSerialNumber()).Cert, "O", "", pki.ErrNoSerialNumber},
		{"too-long", pkitest.NewIDevID(t, mfg, long, "", pkitest.NonConforming("a serialNumber over 64 characters is the case under test")).Cert, "", "", pki.ErrBadSerial},
		{"control-char", pkitest.NewIDevID(t, mfg, "SN\x01", "", pkitest.NonConforming("a control character in serialNumber is the case under test")).Cert, "", "", pki.ErrBadSerial},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := pki.SerialNumber(tc.cert, tc.fallback)
			if !errors.Is(err, tc.wantErr) || got != tc.want {
				t.Fatalf("SerialNumber = %q, %v; want %q, %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func ia5(s string) []byte {
	b, err := asn1.MarshalWithParams(s, "ia5")
	if err != nil {
		// Not IA5: build the TLV by hand so the parser sees it.
		return append([]byte{0x16, byte(len(s))}, s...)
	}
	return b
}

func TestParseMASAURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ext  []byte
		want string // "" means an error is expected
	}{
		{"authority", ia5("masa.example.com"), "https://masa.example.com/.well-known/brski"},
		{"authority-port", ia5("highway-test.example.com:9443"), "https://highway-test.example.com:9443/.well-known/brski"},
		{"authority-ipv4", ia5("192.0.2.1:443"), "https://192.0.2.1:443/.well-known/brski"},
		{"authority-ipv6", ia5("[2001:db8::1]:8443"), "https://[2001:db8::1]:8443/.well-known/brski"},
		{"uri-https", ia5("https://masa.example.com/.well-known/brski"), "https://masa.example.com/.well-known/brski"},
		{"uri-http-forced-https", ia5("http://masa.example.com:8080/brski"), "https://masa.example.com:8080/brski"},
		{"uri-other-scheme-forced-https", ia5("coaps://masa.example.com/x/"), "https://masa.example.com/x"},
		{"uri-empty-path", ia5("https://masa.example.com"), "https://masa.example.com/.well-known/brski"},
		{"uri-root-path", ia5("https://masa.example.com/"), "https://masa.example.com/.well-known/brski"},
		// Found by FuzzParseMASAURL (testdata/fuzz/FuzzParseMASAURL/c38a82905704e683):
		// one trimmed slash left "/000/", which parsed again to "/000".
		{"fuzz/several-trailing-slashes", ia5("A0000://00000/000//"), "https://00000/000"},
		// Found by FuzzParseMASAURL (testdata/fuzz/FuzzParseMASAURL/814d6127ada29734):
		// "%40" decoded to "@" after the userinfo check.
		{"fuzz/percent-encoded-at", ia5("A0000://00000/%4000"), ""},
		{"percent-encoding", ia5("https://masa.example.com/.well-known/brsk%69"), ""},
		// Found by FuzzParseMASAURL (testdata/fuzz/FuzzParseMASAURL/7bea319e05bf4949):
		// "!" prints as "%21", which would not parse back the same.
		{"fuzz/path-needing-escape", ia5("A0000://0/00000000!"), ""},
		{"empty", ia5(""), ""},
		{"utf8string-tag", append([]byte{0x0c, 4}, "masa"...), ""},
		{"non-ia5", ia5("masä.example"), ""},
		{"trailing-data", append(ia5("masa.example.com"), 0), ""},
		{"truncated", ia5("masa.example.com")[:5], ""},
		{"userinfo", ia5("user:pw@masa.example.com"), ""},
		{"userinfo-uri", ia5("https://user@masa.example.com/"), ""},
		{"fragment", ia5("https://masa.example.com/#x"), ""},
		{"query", ia5("https://masa.example.com/?x=1"), ""},
		{"control", ia5("masa.example.com\n"), ""},
		{"space", ia5("masa example.com"), ""},
		{"bad-port", ia5("masa.example.com:99999"), ""},
		{"empty-port", ia5("masa.example.com:"), ""},
		{"no-host", ia5("https:///path"), ""},
		{"relative", ia5("/just/a/path"), ""},
		{"opaque", ia5("urn:x:/y"), ""},
		{"bad-host", ia5("ma_sa.example.com"), ""},
		{"dot-dot", ia5("https://masa.example.com/a/../b"), ""},
		{"too-long", ia5(strings.Repeat("a", 1025)), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u, err := pki.ParseMASAURL(tc.ext)
			if tc.want == "" {
				if !errors.Is(err, pki.ErrBadMASAURL) {
					t.Fatalf("ParseMASAURL = %v, %v; want ErrBadMASAURL", u, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.String() != tc.want {
				t.Errorf("ParseMASAURL = %q, want %q", u, tc.want)
			}
		})
	}
}

func TestMASAURL_Absent(t *testing.T) {
	t.Parallel()
	mfg := pkitest.NewCA(t)
	l := pkitest.NewIDevID(t, mfg, "SN-1", "")
	if _, err := pki.MASAURL(l.Cert); !errors.Is(err, pki.ErrNoMASAURL) {
		t.Fatalf("MASAURL = %v, want ErrNoMASAURL", err)
	}
	dev, err := pki.ParseIDevID(l.Cert, pki.IDevIDOptions{})
	if err != nil || dev.MASAURL != nil {
		t.Fatalf("ParseIDevID = %+v, %v; want no MASA URL and no error", dev, err)
	}
}

// FuzzParseMASAURL (STYLE 3.13): no panic; any accepted value is an https
// URL with a host and no userinfo, query or fragment, within the length
// cap; and re-encoding the result parses back to the same URL.
func FuzzParseMASAURL(f *testing.F) {
	for _, s := range []string{"masa.example.com", "highway-test.example.com:9443", "masa.stok.nl", "https://m.example/x", "http://[::1]:80/", "a@b", "x/../y"} {
		f.Add(ia5(s))
	}
	f.Add([]byte{0x16, 0x81, 0x01, 'a'})
	f.Fuzz(func(t *testing.T, ext []byte) {
		u, err := pki.ParseMASAURL(ext)
		if err != nil {
			if !errors.Is(err, pki.ErrBadMASAURL) {
				t.Fatalf("error %v does not wrap ErrBadMASAURL", err)
			}
			return
		}
		if u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			t.Fatalf("accepted %q as %#v", ext, u)
		}
		if len(ext) > pki.MaxMASAURLLength+4 {
			t.Fatalf("accepted %d octets", len(ext))
		}
		again, err := pki.ParseMASAURL(ia5(u.String()))
		if err != nil {
			t.Fatalf("re-parse of %q: %v", u, err)
		}
		if again.String() != u.String() {
			t.Fatalf("round trip %q -> %q", u, again)
		}
	})
}

// FuzzIDevIDIdentity (reliability F9): any DER that parses as a certificate
// yields either an error wrapping one of the package's sentinels or a
// serial of 1-64 characters, an https MASA URL or none, and an OCTET STRING
// idevid-issuer; never a panic.
func FuzzIDevIDIdentity(f *testing.F) {
	mfg := pkitest.NewCA(f)
	f.Add(pkitest.NewIDevID(f, mfg, "00-D0-E5-F2-00-02", "highway-test.example.com:9443").Cert.Raw)
	f.Add(pkitest.NewIDevID(f, mfg, "JADA123456789", "masa.stok.nl", pkitest.NoAKI(), pkitest.WithNoExpiry()).Cert.Raw)
	f.Add(pkitest.NewIDevID(f, mfg, "X", "", pkitest.NoSerialNumber()).Cert.Raw)
	f.Add(mfg.Cert.Raw)
	f.Fuzz(func(t *testing.T, der []byte) {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		dev, err := pki.ParseIDevID(c, pki.IDevIDOptions{SerialFallback: "CN"})
		if err != nil {
			for _, s := range []error{pki.ErrNoSerialNumber, pki.ErrBadSerial, pki.ErrBadMASAURL, pki.ErrBadIDevIDIssuer} {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("unexpected error %v", err)
		}
		if n := len([]rune(dev.Serial)); n < 1 || n > pki.MaxSerialLength {
			t.Fatalf("serial %q", dev.Serial)
		}
		if dev.MASAURL != nil && dev.MASAURL.Scheme != "https" {
			t.Fatalf("masa url %v", dev.MASAURL)
		}
		var inner []byte
		if rest, err := asn1.Unmarshal(dev.IDevIDIssuer, &inner); err != nil || len(rest) != 0 {
			t.Fatalf("idevid-issuer %x is not one OCTET STRING", dev.IDevIDIssuer)
		}
	})
}
