package pledge

import (
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
)

func TestClient_retryWait(t *testing.T) {
	t.Parallel()
	fc := pkitest.NewClock()
	c := &Client{cfg: Config{Clock: fc, MaxRetryWait: DefaultMaxRetryWait}}
	tests := []struct {
		header string
		want   time.Duration
	}{
		{"", DefaultRetryWait},
		{"garbage", DefaultRetryWait},
		{"7", 7 * time.Second},
		{" 30 ", 30 * time.Second},
		{"0", MinRetryWait},
		{"3600", DefaultMaxRetryWait}, // RFC 8995 §5.6: capped at 60 s
		{fc.Now().Add(20 * time.Second).UTC().Format(http.TimeFormat), 20 * time.Second},
		{fc.Now().Add(-time.Hour).UTC().Format(http.TimeFormat), MinRetryWait},
	}
	for _, tc := range tests {
		if got := c.retryWait(tc.header); got != tc.want {
			t.Errorf("retryWait(%q) = %s, want %s", tc.header, got, tc.want)
		}
	}
	// A cap below MinRetryWait wins (tests, load generators).
	c.cfg.MaxRetryWait = time.Millisecond
	if got := c.retryWait("30"); got != time.Millisecond {
		t.Errorf("capped retryWait = %s", got)
	}
}

func TestPrintable(t *testing.T) {
	t.Parallel()
	if got := printable([]byte("  not\tallowed:\n device \x00\xff unknown  ")); got != "not allowed: device ?? unknown" {
		t.Errorf("printable = %q", got)
	}
}
