package configs

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-pki/gatehouse/registrar"
)

func TestExamples_Load(t *testing.T) {
	t.Parallel()
	names := ExampleNames()
	if len(names) != 2 {
		t.Fatalf("example configs = %v, want masa and registrar", names)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, err := Example(name)
			if err != nil {
				t.Fatal(err)
			}
			switch name {
			case "registrar":
				c, err := ParseRegistrar(bytes.NewReader(b))
				if err != nil {
					t.Fatalf("example does not load: %v", err)
				}
				if c.Manufacturers[0].Policy != registrar.PolicyApprove || c.LDevID.Validity.D() != 90*24*time.Hour || c.LDevID.RenewalWindow.D() != registrar.DefaultRenewalWindow ||
					c.RateLimits.PerCertificate.Limit() != (registrar.RateLimit{Rate: 10, Burst: 40}) || c.RateLimits.PerIP.Limit() != (registrar.RateLimit{Rate: 1000, Burst: 2000}) {
					t.Fatalf("example decoded wrongly: %+v", c)
				}
			case "masa":
				c, err := ParseMASA(bytes.NewReader(b))
				if err != nil {
					t.Fatalf("example does not load: %v", err)
				}
				if c.NoncelessValidity.D() != 20*time.Minute {
					t.Fatalf("noncelessValidity = %s", c.NoncelessValidity.D())
				}
			default:
				t.Fatalf("no loader for example %q", name)
			}
		})
	}
	if _, err := Example("nope"); err == nil {
		t.Fatal("Example(nope) succeeded")
	}
}

func minimalRegistrar() string {
	return `
tls: {certFile: ra.pem, keyFile: ra-key.pem}
domainCA: {certFile: ca.pem, keyFile: ca-key.pem}
manufacturers:
  - name: m
    idevidAnchors: [a.pem]
    masaAnchors: [b.pem]
    masaURLs: ["https://masa.example/.well-known/brski"]
`
}

func TestParseRegistrar(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		yaml    string
		wantErr []string // substrings that must all appear
	}{
		{name: "minimal", yaml: minimalRegistrar()},
		{name: "unknown-key", yaml: minimalRegistrar() + "dataDirr: /x\n", wantErr: []string{"dataDirr"}},
		{name: "misspelt-nested-key", yaml: minimalRegistrar() + "ldevid: {validty: 1h}\n", wantErr: []string{"validty"}},
		{name: "duration-without-unit", yaml: minimalRegistrar() + "ldevid: {validity: 5}\n", wantErr: []string{"line 9", "missing unit"}},
		{name: "validity-over-398-days", yaml: minimalRegistrar() + "ldevid: {validity: 9600h}\n", wantErr: []string{"validity"}},
		{name: "renewal-window", yaml: minimalRegistrar() + "ldevid: {validity: 240h, renewalWindow: 240h}\n"},
		{name: "renewal-window-negative", yaml: minimalRegistrar() + "ldevid: {renewalWindow: -1h}\n", wantErr: []string{"renewalWindow -1h0m0s is outside"}},
		{name: "renewal-window-over-validity", yaml: minimalRegistrar() + "ldevid: {validity: 240h, renewalWindow: 241h}\n", wantErr: []string{"renewalWindow 241h0m0s is outside (0, validity 240h0m0s]"}},
		{name: "renewal-window-misspelt", yaml: minimalRegistrar() + "ldevid: {renewalWindows: 1h}\n", wantErr: []string{"renewalWindows"}},
		{name: "empty", yaml: "", wantErr: []string{"empty"}},
		{name: "two-documents", yaml: minimalRegistrar() + "---\n{}\n", wantErr: []string{"more than one"}},
		{name: "every-problem-at-once", yaml: `
domainCA: {certFile: ca.pem, keyFile: k, keyURI: "pkcs11:x"}
listen: {admin: "0.0.0.0:9090"}
manufacturers:
  - name: m
    policy: yolo
    masaURLs: ["http://masa.example/"]
    masaURLOverride: "https://other.example/"
`, wantErr: []string{"tls:", "exactly one of keyFile and keyURI", "adminTokenFile", "idevidAnchors", "masaAnchors", "policy \"yolo\"", "https URL", "not in masaURLs"}},
		{name: "est-non-brski-clients", yaml: minimalRegistrar() + "est: {requireChannelBinding: true, clientIssuers: [c.pem], basicPasswordFile: users}\n"},
		{name: "max-conns-per-ip-below-minus-one", yaml: minimalRegistrar() + "listen: {maxConnsPerIP: -2}\n", wantErr: []string{"listen.maxConnsPerIP: -2"}},
		{name: "rate-limits", yaml: minimalRegistrar() + "rateLimits: {perIP: {rate: -1}, perCertificate: {rate: 0.5, burst: 2}}\n"},
		{name: "rate-limits-bad", yaml: minimalRegistrar() + "rateLimits: {perIP: {rate: -2}, perCertificate: {rate: 5}}\n",
			wantErr: []string{"rateLimits.perIP.rate: -2", "rateLimits.perCertificate: a rate needs a burst"}},
		{name: "rate-limits-burst-alone", yaml: minimalRegistrar() + "rateLimits: {perIP: {burst: 4}}\n", wantErr: []string{"rateLimits.perIP: a burst needs a rate"}},
		{name: "rate-limits-misspelt", yaml: minimalRegistrar() + "rateLimits: {perIDevID: {rate: 1, burst: 1}}\n", wantErr: []string{"perIDevID"}},
		{name: "est-misspelt-key", yaml: minimalRegistrar() + "est: {basicPasswordFlie: users}\n", wantErr: []string{"basicPasswordFlie"}},
		{name: "est-client-issuer-is-a-manufacturer-anchor", yaml: minimalRegistrar() + "est: {clientIssuers: [a.pem, ca.pem]}\n",
			wantErr: []string{"est.clientIssuers[0]: a.pem is also an idevidAnchor of m", "est.clientIssuers[1]: ca.pem is the domain CA"}},
		{name: "masa-cose-legacy-name", yaml: minimalRegistrar() + "    masaCOSEMediaType: application/voucher-cose+cbor\n"},
		{name: "masa-cose-unknown-name", yaml: minimalRegistrar() + "    masaCOSEMediaType: application/cose\n",
			wantErr: []string{`masaCOSEMediaType "application/cose"`}},
		{name: "duplicate-manufacturer", yaml: minimalRegistrar() + `  - name: m
    idevidAnchors: [a.pem]
    masaAnchors: [b.pem]
    masaURLs: ["https://masa.example/.well-known/brski"]
`, wantErr: []string{"duplicate name"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := ParseRegistrar(strings.NewReader(tc.yaml))
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("ParseRegistrar: %v", err)
				}
				if c.Listen.HTTPS != "127.0.0.1:8443" || c.Manufacturers[0].Policy != registrar.PolicyApprove || c.MASAClient.MaxInFlight != 32 || c.Listen.MaxConnsPerIP != 256 {
					t.Fatalf("defaults not applied: %+v", c)
				}
				return
			}
			if err == nil {
				t.Fatal("ParseRegistrar succeeded, want an error")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestParseMASA(t *testing.T) {
	t.Parallel()
	ok := `
tls: {certFile: t.pem, keyFile: t-key.pem}
signing: {certFile: s.pem, keyFile: s-key.pem}
idevidAnchors: [i.pem]
`
	c, err := ParseMASA(strings.NewReader(ok))
	if err != nil {
		t.Fatal(err)
	}
	if c.Ownership.Mode != "registry" || c.Listen != "127.0.0.1:9443" {
		t.Fatalf("defaults not applied: %+v", c)
	}
	_, err = ParseMASA(strings.NewReader(ok + "ownership: {mode: anyone}\nnoncelessValidity: 2000h\n"))
	if err == nil || !strings.Contains(err.Error(), "anyone") || !strings.Contains(err.Error(), "noncelessValidity") {
		t.Fatalf("err = %v, want both the mode and the validity reported", err)
	}
}

func TestRegistrar_ZeroValueIsSafe(t *testing.T) {
	t.Parallel()
	// The zero config defaults to loopback listeners and the approve policy,
	// and fails validation for want of identities rather than running open.
	c := Registrar{Manufacturers: []Manufacturer{{}}}.WithDefaults()
	if c.Listen.HTTPS != "127.0.0.1:8443" || c.Listen.Admin != "127.0.0.1:9090" {
		t.Fatalf("listeners default beyond loopback: %+v", c.Listen)
	}
	if c.Manufacturers[0].Policy != registrar.PolicyApprove {
		t.Fatalf("policy defaults to %q, want approve", c.Manufacturers[0].Policy)
	}
	// Non-BRSKI EST clients are off unless configured (reliability E04).
	if len(c.EST.ClientIssuers) != 0 || c.EST.BasicPasswordFile != "" {
		t.Fatalf("EST non-BRSKI clients default on: %+v", c.EST)
	}
	if err := c.Validate(); err == nil {
		t.Fatal("zero config validated")
	}
}

func TestLDevIDProfile_RenewalWindowDefault(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		yaml string
		want time.Duration
	}{
		{"", registrar.DefaultRenewalWindow},
		{"ldevid: {validity: 240h}\n", 80 * time.Hour},
		{"ldevid: {validity: 240h, renewalWindow: 12h}\n", 12 * time.Hour},
	} {
		c, err := ParseRegistrar(strings.NewReader(minimalRegistrar() + tc.yaml))
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if got := c.LDevID.RenewalWindow.D(); got != tc.want {
			t.Errorf("%q: renewalWindow %s, want %s", tc.yaml, got, tc.want)
		}
	}
}
