package pkitest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// softHSMModules are where Debian and others install the SoftHSM module.
var softHSMModules = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

// SoftHSMToken initialises a fresh SoftHSM token with label and user PIN
// pin in a temporary directory (SOFTHSM2_CONF set for the test, so the
// test cannot be parallel) and returns the PKCS#11 module path. It skips
// t when SoftHSM is not installed (Debian softhsm2; scripts/test-deps.sh).
func SoftHSMToken(t *testing.T, label, pin string) string {
	t.Helper()
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		t.Skip("softhsm2-util not installed (Debian softhsm2; scripts/test-deps.sh installs it)")
	}
	module := ""
	for _, m := range softHSMModules {
		if _, err := os.Stat(m); err == nil {
			module = m
			break
		}
	}
	if module == "" {
		t.Skip("SoftHSM module libsofthsm2.so not found")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.MkdirAll(filepath.Join(dir, "tokens"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+filepath.Join(dir, "tokens")+"\nobjectstore.backend = file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	out, err := exec.CommandContext(t.Context(), util, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", pin+"-so").CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	return module
}
