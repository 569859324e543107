// Package testvectors locates the public interop vectors that live beside the
// repository (../shared/vectors) for tests. They are never copied into the
// repository; a test that needs them skips with a message when they are
// absent, as in a user's own checkout.
package testvectors

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Dir returns the vectors directory, or skips t when it is absent. The
// environment variable GATEHOUSE_VECTORS overrides the location.
func Dir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("GATEHOUSE_VECTORS"); d != "" {
		return d
	}
	root, err := moduleRoot()
	if err != nil {
		t.Skipf("interop vectors: cannot find the module root: %v", err)
	}
	d := filepath.Join(root, "..", "shared", "vectors")
	if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
		t.Skipf("interop vectors not found at ../shared/vectors beside the repository; skipping")
	}
	return d
}

// Read returns the contents of a file under the vectors directory, named by
// slash-separated path (for example "rfc8995/vendor.crt"), or skips t.
func Read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Dir(t), filepath.FromSlash(name)))
	if err != nil {
		t.Fatalf("read vector %s: %v", name, err)
	}
	return b
}

// ReadHex returns the bytes of a hex vector file (whitespace anywhere is
// ignored), named as for Read, or skips t.
func ReadHex(t testing.TB, name string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(string(Read(t, name))), ""))
	if err != nil {
		t.Fatalf("vector %s: %v", name, err)
	}
	return b
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}
