package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/purserhq/purser/sdk"
)

func spendCommand() *command {
	subs := []*command{
		{name: "status", args: "SPEND_ID", summary: "show a spend; exit 0 authorized/captured, 3 pending, 4 denied/expired/released, 5 unknown",
			kind: kindAgent, run: runSpendStatus},
		{name: "confirm", args: "SPEND_ID", summary: "execute an authorized spend on a rail Purser executes; exit as status, 4 when refused (e.g. the agent was frozen)",
			kind: kindAgent, run: runSpendConfirm},
		{name: "capture", args: "SPEND_ID [--amount A]", summary: "capture an authorized spend (the rest of the hold is released)",
			kind: kindAgent,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&o.amount, "amount", "", "capture this `AMOUNT` (default: all that was authorized)")
			},
			run: runSpendCapture},
		{name: "release", args: "SPEND_ID", summary: "release an authorized spend's hold unspent",
			kind: kindAgent, run: spendAction((*sdk.Agent).Release)},
		spendResolveCommand(),
	}
	c := &command{
		name:    "spend",
		args:    "--amount A --payee P [--host H] [--rail custom] [...]",
		summary: "ask to spend; exit 0 allowed, 3 waiting for approval, 4 refused by the mandate",
		kind:    kindAgent,
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.StringVar(&o.amount, "amount", "", "`AMOUNT` in the asset's units, e.g. 0.05 (required)")
			fs.StringVar(&o.payee, "payee", "", "who is paid: a 0x `ADDRESS` or the rail's payee (required)")
			fs.StringVar(&o.host, "host", "", "the `HOST` the spend is for")
			fs.StringVar(&o.rail, "rail", "custom", "`RAIL`: custom, x402, payout, ...")
			fs.StringVar(&o.asset, "asset", "", "`ASSET` (default: the server's, USDC)")
			fs.StringVar(&o.network, "network", "", "CAIP-2 `NETWORK` (default: the server's)")
			fs.StringVar(&o.idemKey, "idempotency-key", "", "`KEY` making a retry return the original spend")
			fs.StringVar(&o.memo, "memo", "", "free `TEXT` kept with the spend")
		},
		run: runSpend,
		sub: subs,
	}
	c.route = func(args []string) (*command, []string) {
		if len(args) > 0 {
			if sub := findCommand(subs, args[0]); sub != nil {
				return sub, args[1:]
			}
		}
		return nil, args
	}
	return c
}

// statusExit maps a spend's status to the exit code of the contract.
func statusExit(status string) int {
	switch status {
	case sdk.StatusAuthorized, sdk.StatusCaptured:
		return ExitOK
	case sdk.StatusPendingApproval:
		return ExitPending
	case sdk.StatusDenied, sdk.StatusExpired, sdk.StatusReleased:
		return ExitRefused
	case sdk.StatusUnknown:
		return ExitSellerFailed // money may have moved; the reconciler settles it from the chain
	}
	return ExitFailure
}

func runSpend(ctx context.Context, e *env, o *opts, args []string) error {
	if len(args) > 0 {
		return usagef(o.path, "unexpected argument %q (subcommands: status, confirm, capture, release, resolve)", args[0])
	}
	if o.amount == "" || o.payee == "" {
		return usagef(o.path, "--amount and --payee are required")
	}
	c, err := e.agentClient(o)
	if err != nil {
		return err
	}
	s, err := e.authorizeAndPrint(ctx, o, c, sdk.AuthorizeRequest{
		Rail: o.rail, Payee: o.payee, Amount: o.amount, Host: o.host, Asset: o.asset, Network: o.network,
		IdempotencyKey: o.idemKey, Memo: o.memo,
	})
	if err != nil {
		return err
	}
	return exitCode(statusExit(s.Status))
}

// authorizeAndPrint asks for an authorization and prints the answer. A
// refusal by the mandate is printed too and ends with exit 4.
func (e *env) authorizeAndPrint(ctx context.Context, o *opts, c *sdk.Agent, req sdk.AuthorizeRequest) (*sdk.Spend, error) {
	s, err := c.Authorize(ctx, req)
	var re *sdk.RefusedError
	if errors.As(err, &re) {
		if err := printSpend(e, o, re.Spend); err != nil {
			return nil, err
		}
		return nil, exitCode(ExitRefused)
	}
	var ar *sdk.ApprovalRequiredError
	if err != nil && !errors.As(err, &ar) {
		return nil, err
	}
	return s, printSpend(e, o, s)
}

// printSpend prints the outcome of a spend: the object as answered with
// --json, one line otherwise.
func printSpend(e *env, o *opts, s *sdk.Spend) error {
	if o.json {
		if len(s.Raw) > 0 {
			return writeRaw(e.stdio.Out, s.Raw)
		}
		return writeJSON(e.stdio.Out, s)
	}
	w := e.stdio.Out
	what := strings.TrimSpace(fmt.Sprintf("%s %s to %s", s.Amount, s.Asset, s.Payee))
	reasons := strings.Join(s.Reasons, ", ")
	switch s.Status {
	case sdk.StatusAuthorized, sdk.StatusCaptured:
		fmt.Fprintf(w, "%s %s: %s\n", s.Status, s.SpendID, what)
	case sdk.StatusPendingApproval:
		fmt.Fprintf(w, "waiting for approval: %s (%s)\n", s.SpendID, orDash(reasons))
	case sdk.StatusDenied:
		fmt.Fprintf(w, "refused by the mandate: %s (spend %s)\n", orDash(reasons), s.SpendID)
	default:
		if reasons != "" {
			fmt.Fprintf(w, "%s %s: %s (%s)\n", s.Status, s.SpendID, what, reasons)
		} else {
			fmt.Fprintf(w, "%s %s: %s\n", s.Status, s.SpendID, what)
		}
	}
	return nil
}

func runSpendStatus(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args, "SPEND_ID"); err != nil {
		return err
	}
	c, err := e.agentClient(o)
	if err != nil {
		return err
	}
	s, err := c.Spend(ctx, args[0])
	if err != nil {
		return err
	}
	if err := printSpend(e, o, s); err != nil {
		return err
	}
	return exitCode(statusExit(s.Status))
}

func spendAction(call func(*sdk.Agent, context.Context, string) (*sdk.Spend, error)) func(context.Context, *env, *opts, []string) error {
	return func(ctx context.Context, e *env, o *opts, args []string) error {
		if err := wantArgs(o, args, "SPEND_ID"); err != nil {
			return err
		}
		c, err := e.agentClient(o)
		if err != nil {
			return err
		}
		s, err := call(c, ctx, args[0])
		if err != nil {
			return err
		}
		return printSpend(e, o, s)
	}
}

func runSpendCapture(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args, "SPEND_ID"); err != nil {
		return err
	}
	c, err := e.agentClient(o)
	if err != nil {
		return err
	}
	s, err := c.Capture(ctx, args[0], o.amount)
	if err != nil {
		return err
	}
	return printSpend(e, o, s)
}

// runSpendConfirm carries out an approved spend; its exit code says how
// it ended, as spend status does.
func runSpendConfirm(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args, "SPEND_ID"); err != nil {
		return err
	}
	c, err := e.agentClient(o)
	if err != nil {
		return err
	}
	s, err := c.Confirm(ctx, args[0])
	if err != nil {
		return err
	}
	if err := printSpend(e, o, s); err != nil {
		return err
	}
	return exitCode(statusExit(s.Status))
}
