package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds for the child processes of these tests.
const (
	procStartTimeout = 60 * time.Second
	procStopTimeout  = 30 * time.Second
)

// buildGatehouse builds this command into a temporary directory and returns
// the binary's path. The build cache makes every build after the first
// cheap.
func buildGatehouse(t testing.TB) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to build the binary: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "gatehouse")
	cmd := exec.CommandContext(t.Context(), goBin, "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// proc is a gatehouse child process whose stdout is read line by line.
type proc struct {
	cmd   *exec.Cmd
	lines chan string
	done  chan struct{}
	err   error // set when done is closed

	mu     sync.Mutex
	stdout bytes.Buffer
	stderr bytes.Buffer
}

// syncWriter serialises writes to a buffer shared with readers.
type syncWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// startProc starts bin with args in dir. The process is killed at the end
// of the test if still running.
func startProc(t testing.TB, dir, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{lines: make(chan string, 256), done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Stderr = syncWriter{&p.mu, &p.stderr}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.stdout.WriteString(line + "\n")
			p.mu.Unlock()
			select {
			case p.lines <- line:
			default:
			}
		}
		close(p.lines)
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// output returns what the process wrote so far.
func (p *proc) output() (stdout, stderr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.String(), p.stderr.String()
}

// readUntilReady reads stdout lines into a map of "key: value" lines until
// the line starting with "ready", and returns the map and every line.
func (p *proc) readUntilReady(t testing.TB) (map[string]string, []string) {
	t.Helper()
	const last = "ready"
	kv := map[string]string{}
	var all []string
	timeout := time.NewTimer(procStartTimeout)
	defer timeout.Stop()
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				<-p.done
				out, errOut := p.output()
				t.Fatalf("process exited (%v) before printing %q\nstdout:\n%s\nstderr:\n%s", p.err, last, out, errOut)
			}
			all = append(all, line)
			if k, v, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(line, " ") {
				kv[k] = v
			}
			if strings.HasPrefix(line, last) {
				return kv, all
			}
		case <-timeout.C:
			out, errOut := p.output()
			t.Fatalf("no %q line within %s\nstdout:\n%s\nstderr:\n%s", last, procStartTimeout, out, errOut)
		}
	}
}

// stop sends SIGTERM and requires a clean exit (status 0) within the bound.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(procStopTimeout):
		t.Fatalf("no exit within %s of SIGTERM", procStopTimeout)
	}
	if p.err != nil {
		out, errOut := p.output()
		t.Fatalf("exit after SIGTERM: %v\nstdout:\n%s\nstderr:\n%s", p.err, out, errOut)
	}
}

// waitHealthy polls url until it answers 200, within a bounded deadline
// (a child process is not something a test can synchronise with otherwise).
func waitHealthy(t testing.TB, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), procStartTimeout)
	defer cancel()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s not healthy within %s (last: %v)", url, procStartTimeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// runBin runs bin to completion and returns its exit code and output.
func runBin(t *testing.T, dir, bin string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), procStartTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return code, out.String(), errOut.String()
}

// labArgs is the command line of a lab on data with every listener on a
// free loopback port.
func labArgs(data string) []string {
	return []string{"lab", "--data", data, "--https", "127.0.0.1:0", "--coaps", "127.0.0.1:0", "--masa", "127.0.0.1:0", "--admin", "127.0.0.1:0"}
}

func TestLab_EndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the gatehouse binary; skipped with -short")
	}
	t.Parallel()
	bin := buildGatehouse(t)
	work := t.TempDir()
	data := filepath.Join(work, "data")
	lab := startProc(t, work, bin, labArgs(data)...)
	kv, lines := lab.readUntilReady(t)
	for _, k := range []string{"registrar", "masa", "admin", "coaps", "masa-anchor"} {
		if kv[k] == "" {
			t.Fatalf("no %q line in the banner:\n%s", k, strings.Join(lines, "\n"))
		}
	}
	if strings.HasSuffix(kv["registrar"], ":0") || strings.HasSuffix(kv["admin"], ":0") {
		t.Fatalf("printed addresses are not the bound ones: %v", kv)
	}
	var pledgeCmd string
	for _, l := range lines {
		// The first one is the HTTPS command; the CoAPS one follows.
		if strings.Contains(l, " pledge enroll ") && pledgeCmd == "" {
			pledgeCmd = strings.TrimSpace(l)
		}
	}
	if pledgeCmd == "" || strings.ContainsAny(pledgeCmd, `'"`) {
		t.Fatalf("no plain pledge command in the banner:\n%s", strings.Join(lines, "\n"))
	}
	waitHealthy(t, kv["admin"]+"/healthz")
	waitHealthy(t, kv["admin"]+"/readyz")

	// The printed command, run as printed.
	args := strings.Fields(pledgeCmd)
	if args[0] != bin {
		t.Fatalf("pledge command runs %q, want this binary %q", args[0], bin)
	}
	code, out, errOut := runBin(t, work, args[0], args[1:]...)
	if code != 0 || !strings.Contains(out, "voucher accepted: pledge GH-0001") || !strings.Contains(out, "enrolled: LDevID") {
		t.Fatalf("pledge enroll: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	outDir := filepath.Join(data, "out", "GH-0001")
	checkLDevID(t, work, bin, kv["registrar"], data, outDir)
	voucherFile := filepath.Join(outDir, "voucher")
	code, out, errOut = runBin(t, work, bin, "voucher", "verify", voucherFile, "--anchor", filepath.Join(data, "lab", "manufacturer", "masa.pem"))
	if code != 0 || !strings.Contains(out, `"serial-number": "GH-0001"`) {
		t.Fatalf("voucher verify: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(data, "out", "GH-0001", "voucher.json")); err != nil {
		t.Fatal(err)
	}

	// The operator's view.
	code, out, errOut = runBin(t, work, bin, "devices", "list", "--admin", kv["admin"])
	if code != 0 || !strings.Contains(out, "SERIAL") || !strings.Contains(out, "GH-0001") || !strings.Contains(out, "enrolled") {
		t.Fatalf("devices list: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	code, out, _ = runBin(t, work, bin, "devices", "list", "--json", "--admin", kv["admin"])
	if code != 0 || !strings.Contains(out, `"serial": "GH-0001"`) {
		t.Fatalf("devices list --json: exit %d\n%s", code, out)
	}
	code, _, errOut = runBin(t, work, bin, "devices", "approve", "GH-0009", "--admin", kv["admin"])
	if code != exitFailure || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "404") {
		t.Fatalf("devices approve of an unknown pledge: exit %d, stderr %q; want one line with 404", code, errOut)
	}

	lab.stop(t)
	if out, _ := lab.output(); !strings.Contains(out, "lab stopped") {
		t.Fatalf("no clean stop message:\n%s", out)
	}

	// A restart reuses the lab.
	lab2 := startProc(t, work, bin, labArgs(data)...)
	_, lines = lab2.readUntilReady(t)
	if !strings.Contains(lines[0], "reusing the lab PKI") {
		t.Fatalf("restart banner: %q", lines[0])
	}
	lab2.stop(t)
}

// checkLDevID checks what `pledge enroll` wrote into outDir (an LDevID
// that openssl verifies against the lab's domain CA, a 0600 key, cacerts),
// then renews it with `pledge reenroll` and checks the renewed one.
func checkLDevID(t *testing.T, work, bin, registrar, data, outDir string) {
	t.Helper()
	caFile := filepath.Join(data, "lab", "domain", "ca.pem")
	ldevid, key := filepath.Join(outDir, "ldevid.pem"), filepath.Join(outDir, "ldevid-key.pem")
	fi, err := os.Stat(key)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ldevid-key.pem: %v, mode %v; want mode 0600", err, fi)
	}
	if _, err := os.Stat(filepath.Join(outDir, "cacerts.pem")); err != nil {
		t.Fatal(err)
	}
	opensslVerify(t, caFile, ldevid)
	before, err := os.ReadFile(ldevid)
	if err != nil {
		t.Fatal(err)
	}
	// Renewal in place: --out defaults to the directory of --cert, and the
	// domain CA to DIR/cacerts.pem.
	code, out, errOut := runBin(t, work, bin, "pledge", "reenroll", "--registrar", registrar, "--cert", ldevid, "--key", key)
	if code != 0 || !strings.Contains(out, "reenrolled: ") || !strings.Contains(out, "cacerts.pem (the cacerts pledge enroll wrote)") {
		t.Fatalf("pledge reenroll: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	after, err := os.ReadFile(ldevid)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(before, after) {
		t.Fatal("pledge reenroll left ldevid.pem unchanged")
	}
	opensslVerify(t, caFile, ldevid)
}

// opensslVerify runs `openssl verify -CAfile ca cert` and requires "OK".
func opensslVerify(t *testing.T, ca, cert string) {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Log("openssl is not installed (make test-deps installs it): not verifying with openssl")
		return
	}
	out, err := exec.CommandContext(t.Context(), openssl, "verify", "-CAfile", ca, cert).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": OK") {
		t.Fatalf("openssl verify -CAfile %s %s: %v\n%s", ca, cert, err, out)
	}
}
