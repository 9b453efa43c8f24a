// Package cli is Purser's command line: a small dispatcher over one file
// per subcommand, built on the standard flag package. Every command but
// `serve` and the offline `audit verify FILE` talks to a running server
// through the public Go SDK (package sdk), over the same HTTP API users call.
//
// Flags may come before or after positional arguments, with one or two
// dashes, as --flag=value or --flag value. Exit codes are a contract:
// 0 success, 1 failure, 2 usage error, 3 a spend waits for approval,
// 4 a spend was refused, 5 a payment's seller failed (x402 fetch) or a
// payout is not confirmed yet (pay), 6 a proxied call's upstream
// answered non-2xx (proxy).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/purserhq/purser/sdk"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
	ExitPending = 3 // a spend is waiting for the owner's approval
	ExitRefused = 4 // the mandate refused a spend (or it ended unspent)
)

// Stdio is where a command reads and writes.
type Stdio struct {
	In       io.Reader
	Out, Err io.Writer
}

// Main runs the command line args (without the program name) and returns
// the process exit code.
func Main(ctx context.Context, args []string, stdio Stdio) int {
	e := &env{stdio: stdio, getenv: os.Getenv}
	return e.run(ctx, args)
}

// env is one invocation: its streams, environment and global flags.
type env struct {
	stdio  Stdio
	getenv func(string) string
	g      opts
	// clientOpts are added to every client (tests).
	clientOpts []sdk.Option
}

func (e *env) run(ctx context.Context, args []string) int {
	err := e.dispatch(ctx, args)
	return e.exit(err)
}

// exit prints err the one way errors are printed and maps it to a code.
func (e *env) exit(err error) int {
	if err == nil {
		return ExitOK
	}
	if errors.Is(err, errHelp) {
		return ExitOK
	}
	var xe *exitError
	if errors.As(err, &xe) {
		return xe.code
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(e.stdio.Err, "error: %s\n", ue.msg)
		if ue.cmd != "" {
			fmt.Fprintf(e.stdio.Err, "run 'purser %s --help' for usage\n", ue.cmd)
		} else {
			fmt.Fprintln(e.stdio.Err, "run 'purser help' for usage")
		}
		return ExitUsage
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(e.stdio.Err, "error: interrupted")
		return ExitFailure
	}
	var ae *sdk.Error
	if errors.As(err, &ae) && ae.Code == "spend_denied" {
		// A refusal is an answer, not a failure: exit 4 whichever command
		// met it (confirm after a freeze, a replay, ...).
		fmt.Fprintf(e.stdio.Err, "refused: %s (%s)\n", strings.TrimSpace(ae.Message), strings.Join(ae.Reasons(), ", "))
		return ExitRefused
	}
	fmt.Fprintf(e.stdio.Err, "error: %s\n", errorText(err))
	return ExitFailure
}

// errorText is "<message> (<code>)" for API errors.
func errorText(err error) string {
	var ae *sdk.Error
	if errors.As(err, &ae) {
		return fmt.Sprintf("%s (%s)", strings.TrimSpace(ae.Message), ae.Code)
	}
	var coded interface {
		Code() string
		Message() string
	}
	if errors.As(err, &coded) {
		return fmt.Sprintf("%s (%s)", coded.Message(), coded.Code())
	}
	return err.Error()
}

// usageError is a command line mistake: exit 2.
type usageError struct {
	cmd string // command path for the hint, e.g. "agent create"
	msg string
}

func (e *usageError) Error() string { return e.msg }

func usagef(cmd, format string, args ...any) error {
	return &usageError{cmd: cmd, msg: fmt.Sprintf(format, args...)}
}

// exitError ends the command with code after its output was printed.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func exitCode(code int) error {
	if code == ExitOK {
		return nil
	}
	return &exitError{code: code}
}

// errHelp: usage was printed on request; exit 0.
var errHelp = errors.New("help requested")
