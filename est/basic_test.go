package est_test

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-pki/gatehouse/est"
)

func bcryptHash(t testing.TB, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestParseBasicAuth(t *testing.T) {
	t.Parallel()
	h := bcryptHash(t, "secret")
	// htpasswd -B writes $2y$; Go's bcrypt reads it.
	hy := "$2y$" + strings.TrimPrefix(h, "$2a$")
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr string
	}{
		{name: "one user", in: "alice:" + h + "\n", want: []string{"alice"}},
		{name: "htpasswd 2y, comments, blank, CRLF", in: "# lab users\r\n\r\nalice:" + hy + "\r\nbob:" + h, want: []string{"alice", "bob"}},
		{name: "no colon", in: "alice\n", wantErr: "line 1: want user:bcrypt-hash"},
		{name: "empty user", in: ":" + h, wantErr: "line 1: user name"},
		{name: "user too long", in: strings.Repeat("u", 65) + ":" + h, wantErr: "line 1: user name"},
		{name: "control character", in: "a\x01b:" + h, wantErr: "line 1: user name"},
		{name: "plain password", in: "alice:secret", wantErr: `line 1: user "alice": not a bcrypt hash`},
		{name: "twice", in: "alice:" + h + "\nalice:" + h, wantErr: `line 2: user "alice" is listed twice`},
		{name: "empty file", in: "# nobody\n", wantErr: "lists no user"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := est.ParseBasicAuth([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Fatalf("error %q shows the line's content", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if users := slices.Sorted(maps.Keys(got)); !slices.Equal(users, tc.want) {
				t.Fatalf("users = %v, want %v", users, tc.want)
			}
			if err := (est.Config{Basic: got}).WithDefaults().Validate(); err != nil {
				t.Fatalf("the parsed users are not a valid est.Config.Basic: %v", err)
			}
		})
	}
}

// FuzzParseBasicAuth: no panic; what parses is a valid est.Config.Basic
// and survives a write/parse round trip unchanged.
func FuzzParseBasicAuth(f *testing.F) {
	h := bcryptHash(f, "pw")
	for _, s := range []string{"alice:" + h, "# c\n\nbob:" + h + "\r\n", "a:b:c", ":", "x:$2y$04$", "\xff:" + h} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		users, err := est.ParseBasicAuth(b)
		if err != nil {
			return
		}
		if err := (est.Config{Basic: users}).WithDefaults().Validate(); err != nil {
			t.Fatalf("parsed users are not a valid config: %v", err)
		}
		var sb strings.Builder
		for u, hash := range users {
			sb.WriteString(u + ":" + hash + "\n")
		}
		again, err := est.ParseBasicAuth([]byte(sb.String()))
		if err != nil || !maps.Equal(again, users) {
			t.Fatalf("round trip: %v, %v != %v", err, again, users)
		}
	})
}
