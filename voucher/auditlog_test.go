package voucher_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-pki/gatehouse/internal/testvectors"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

func TestParseAuditLog_RFCExample(t *testing.T) {
	t.Parallel()
	l, err := voucher.ParseAuditLog(testvectors.Read(t, "rfc8995/example-auditlog.json"))
	if err != nil {
		t.Fatal(err)
	}
	edt := time.FixedZone("", -4*3600)
	want := &voucher.AuditLog{
		Version: 1,
		Events: []voucher.AuditEvent{
			{Date: time.Date(2019, 5, 15, 17, 25, 55, 644e6, edt), DomainID: "BduJhdHPpfhQLyponf48JzXSGZ8=", Nonce: "VOUFT-WwrEv0NuAQEHoV7Q", Assertion: voucher.AssertionProximity},
			{Date: time.Date(2017, 5, 15, 17, 25, 55, 644e6, edt), DomainID: "BduJhdHPpfhQLyponf48JzXSGZ8=", Nonce: "f4G6Vi1t8nKo/FieCVgpBg==", Assertion: voucher.AssertionProximity},
		},
		Truncation: voucher.AuditTruncation{NoncelessDuplicates: 1, Arbitrary: 2},
	}
	if d := cmp.Diff(want, l); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestParseAuditLog(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    *voucher.AuditLog
		wantErr bool
	}{
		{name: "rfc-shape", in: `{"version":1,"events":[{"date":"2030-01-02T03:04:05Z","domainID":"AAA=","nonce":null,"assertion":"logged"}]}`,
			want: &voucher.AuditLog{Version: 1, Events: []voucher.AuditEvent{{Date: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), DomainID: "AAA=", Assertion: voucher.AssertionLogged}}}},
		{name: "highway/registrarID-no-assertion", in: `{"version":"1","events":[{"date":"2030-01-02T03:04:05Z","registrarID":"AAA=","nonce":"abc"}]}`,
			want: &voucher.AuditLog{Version: 1, Events: []voucher.AuditEvent{{Date: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), DomainID: "AAA=", Nonce: "abc"}}}},
		{name: "missing-nonce-is-null", in: `{"version":1,"events":[{"date":"2030-01-02T03:04:05Z","domainID":"AAA="}]}`,
			want: &voucher.AuditLog{Version: 1, Events: []voucher.AuditEvent{{Date: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), DomainID: "AAA="}}}},
		{name: "unknown-members-ignored", in: `{"version":2,"x":{"y":[1,2]},"events":[]}`, want: &voucher.AuditLog{Version: 2, Events: []voucher.AuditEvent{}}},
		{name: "both-ids-agree", in: `{"version":1,"events":[{"date":"2030-01-02T03:04:05Z","domainID":"A","registrarID":"A"}]}`,
			want: &voucher.AuditLog{Version: 1, Events: []voucher.AuditEvent{{Date: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), DomainID: "A"}}}},
		{name: "both-ids-differ", in: `{"version":1,"events":[{"date":"2030-01-02T03:04:05Z","domainID":"A","registrarID":"B"}]}`, wantErr: true},
		{name: "duplicate-top-key", in: `{"version":1,"version":2,"events":[]}`, wantErr: true},
		{name: "duplicate-event-key", in: `{"version":1,"events":[{"date":"2030-01-02T03:04:05Z","domainID":"A","domainID":"B"}]}`, wantErr: true},
		{name: "duplicate-key-in-unknown-member", in: `{"version":1,"events":[],"x":{"a":1,"a":2}}`, wantErr: true},
		{name: "missing-version", in: `{"events":[]}`, wantErr: true},
		{name: "version-zero", in: `{"version":0,"events":[]}`, wantErr: true},
		{name: "version-negative-string", in: `{"version":"-1","events":[]}`, wantErr: true},
		{name: "version-float", in: `{"version":1.5,"events":[]}`, wantErr: true},
		{name: "missing-events", in: `{"version":1}`, wantErr: true},
		{name: "events-null", in: `{"version":1,"events":null}`, wantErr: true},
		{name: "bad-date", in: `{"version":1,"events":[{"date":"yesterday","domainID":"A"}]}`, wantErr: true},
		{name: "no-domain", in: `{"version":1,"events":[{"date":"2030-01-02T03:04:05Z"}]}`, wantErr: true},
		{name: "bad-assertion", in: `{"version":1,"events":[{"date":"2030-01-02T03:04:05Z","domainID":"A","assertion":"trust-me"}]}`, wantErr: true},
		{name: "nonce-number", in: `{"version":1,"events":[{"date":"2030-01-02T03:04:05Z","domainID":"A","nonce":5}]}`, wantErr: true},
		{name: "trailing-data", in: `{"version":1,"events":[]} {}`, wantErr: true},
		{name: "too-deep", in: `{"version":1,"events":[],"x":[[[[[[[[[[1]]]]]]]]]]}`, wantErr: true},
		{name: "not-object", in: `[1]`, wantErr: true},
		{name: "too-large", in: `{"version":1,"events":[],"x":"` + strings.Repeat("a", voucher.MaxAuditLogBytes) + `"}`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := voucher.ParseAuditLog([]byte(tc.in))
			if tc.wantErr {
				if !errors.Is(err, voucher.ErrBadAuditLog) {
					t.Fatalf("err = %v, want ErrBadAuditLog", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestAuditLog_MarshalJSON(t *testing.T) {
	t.Parallel()
	l := &voucher.AuditLog{Version: 1, Events: []voucher.AuditEvent{
		{Date: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), DomainID: "AAA=", Nonce: "bm9uY2U", Assertion: voucher.AssertionProximity},
		{Date: time.Date(2030, 1, 2, 3, 4, 6, 0, time.UTC), DomainID: "AAA=", Assertion: voucher.AssertionLogged, Truncated: 3},
	}}
	got, err := l.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"version":1,"events":[{"date":"2030-01-02T03:04:05Z","domainID":"AAA=","nonce":"bm9uY2U","assertion":"proximity"},` +
		`{"date":"2030-01-02T03:04:06Z","domainID":"AAA=","nonce":null,"assertion":"logged","truncated":3}]}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	l.Truncation.Arbitrary = 2
	got, _ = l.MarshalJSON()
	if !bytes.HasSuffix(got, []byte(`"truncation":{"arbitrary":2}}`)) {
		t.Errorf("truncation: %s", got)
	}
}

// FuzzParseAuditLog checks that the parser never panics, honours its size
// limit, and that whatever it accepts re-encodes to a document that parses
// to the same value and re-encodes to the same bytes.
func FuzzParseAuditLog(f *testing.F) {
	f.Add(testvectors.Read(f, "rfc8995/example-auditlog.json"))
	f.Add([]byte(`{"version":1,"events":[{"date":"2030-01-02T03:04:05Z","domainID":"AAA=","nonce":null,"assertion":"logged"}]}`))
	f.Add([]byte(`{"version":"1","events":[{"date":"2030-01-02T03:04:05Z","registrarID":"AAA=","nonce":"abc"}]}`))
	f.Add([]byte(`{"version":1,"events":[],"truncation":{"nonced duplicates":"0","arbitrary":7}}`))
	f.Add([]byte(`{"version":1,"events":[{"date":"2030-01-02T03:04:05Z","domainID":"A","domainID":"B"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := voucher.ParseAuditLog(b)
		if err != nil {
			return
		}
		if len(b) > voucher.MaxAuditLogBytes {
			t.Fatalf("accepted %d bytes", len(b))
		}
		enc, err := l.MarshalJSON()
		if err != nil {
			t.Fatalf("marshal accepted log: %v", err)
		}
		l2, err := voucher.ParseAuditLog(enc)
		if err != nil {
			t.Fatalf("re-parse %s: %v", enc, err)
		}
		if d := cmp.Diff(l, l2); d != "" {
			t.Fatalf("round trip changed the log (-first +second):\n%s", d)
		}
		enc2, err := l2.MarshalJSON()
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not canonical:\n%s\n%s", enc, enc2)
		}
	})
}
