package est

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
)

// Limits of a Basic password file.
const (
	// MaxBasicUsers caps the users of one password file.
	MaxBasicUsers = 10_000
	// MaxBasicUserLen caps a user name in bytes: it becomes the CN of the
	// user's certificate, which RFC 5280 bounds at 64 characters.
	MaxBasicUserLen = 64
)

// ParseBasicAuth reads a password file in the htpasswd bcrypt format
// ("htpasswd -B"): one "user:hash" line per user, the hash a bcrypt hash
// ($2a$, $2b$ or $2y$). Blank lines and lines starting with '#' are
// skipped. A user name is 1 to MaxBasicUserLen bytes of printable UTF-8
// without ':'; a user listed twice, a line that is not user:hash, and a
// hash that is not bcrypt are errors naming the line (never its content,
// which may be a password pasted by mistake).
func ParseBasicAuth(b []byte) (BasicAuth, error) {
	users := BasicAuth{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 4096)
	var errs []error
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("line %d: want user:bcrypt-hash", n))
		case !validBasicUser(user):
			errs = append(errs, fmt.Errorf("line %d: user name must be 1 to %d printable characters", n, MaxBasicUserLen))
		case users[user] != "":
			errs = append(errs, fmt.Errorf("line %d: user %q is listed twice", n, user))
		default:
			if _, err := bcrypt.Cost([]byte(hash)); err != nil {
				errs = append(errs, fmt.Errorf("line %d: user %q: not a bcrypt hash (htpasswd -B)", n, user))
				continue
			}
			users[user] = hash
		}
		if len(users) > MaxBasicUsers {
			return nil, fmt.Errorf("more than %d users", MaxBasicUsers)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("password file: %w", err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(users) == 0 {
		return nil, errors.New("password file lists no user")
	}
	return users, nil
}

func validBasicUser(u string) bool {
	if u == "" || len(u) > MaxBasicUserLen || !utf8.ValidString(u) {
		return false
	}
	for _, r := range u {
		if r < 0x20 || r == 0x7f || r == ':' {
			return false
		}
	}
	return true
}
