// Command gatehouse is the Gatehouse BRSKI/EST registrar, its MASA, pledge
// client, lab and tools, in one binary. This package is the only composition
// root: it reads flags and configs, builds the logger, clock, metrics registry
// and stores, wires the services, serves, and shuts down on a signal.
//
// The command names, flags, file names and exit codes are a contract (see
// DESIGN.md): add, never rename. Exit code 0 is success; any failure exits
// non-zero with one line on stderr saying what went wrong.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/jmhodges/clock"
	"github.com/spf13/cobra"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks an error in how the command was called.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// app carries what every command shares: the clock and the output streams.
type app struct {
	clk    clock.Clock
	stdout io.Writer
	stderr io.Writer
	// setMemoryLimit is debug.SetMemoryLimit in the binary; nil (tests
	// that run several daemons in one process) leaves the process's limit
	// alone.
	setMemoryLimit func(int64) int64
}

func main() {
	a := &app{clk: clock.New(), stdout: os.Stdout, stderr: os.Stderr, setMemoryLimit: debug.SetMemoryLimit}
	os.Exit(a.run(os.Args[1:]))
}

// run executes the command line and returns the process exit code.
func (a *app) run(args []string) int {
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(a.stderr, "gatehouse: %v\n", err)
	// cobra reports an unknown command with an untyped error.
	if _, ok := errors.AsType[usageError](err); ok || strings.HasPrefix(err.Error(), "unknown command") {
		return exitUsage
	}
	return exitFailure
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "gatehouse",
		Short: "BRSKI/EST onboarding registrar, MASA, pledge client and lab",
		Long: `Gatehouse onboards devices: it brokers BRSKI voucher requests (RFC 8995)
between pledges and their manufacturer's MASA, and issues LDevID certificates
over EST (RFC 7030) from its domain CA.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(a.versionCmd(), a.configCmd(), a.voucherCmd(), a.labCmd(), a.registrarCmd(), a.masaCmd(), a.pledgeCmd(), a.devicesCmd(), a.caCmd(), a.benchCmd())
	return root
}

// exactArgs is cobra.ExactArgs returning a usageError.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{fmt.Errorf("%s: %w", cmd.CommandPath(), err)}
		}
		return nil
	}
}
