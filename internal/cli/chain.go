package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/purserhq/purser/sdk"
)

func payCommand() *command {
	return &command{
		name: "pay", args: "ADDRESS AMOUNT [--asset USDC] [--network CAIP2] [--idempotency-key K]",
		summary: "send USDC on chain from the agent's wallet (rail payout); exit 0 paid, 3 waiting for approval, 4 refused, 5 sent but not yet confirmed",
		kind:    kindAgent,
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.StringVar(&o.asset, "asset", "", "`ASSET` (default USDC)")
			fs.StringVar(&o.network, "network", "", "CAIP-2 `NETWORK` (default: the server's)")
			fs.StringVar(&o.idemKey, "idempotency-key", "", "`KEY` making a retry return the original payout")
			fs.StringVar(&o.memo, "memo", "", "free `TEXT` kept with the spend")
		},
		run: runPay,
	}
}

func runPay(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args, "ADDRESS", "AMOUNT"); err != nil {
		return err
	}
	c, err := e.agentClient(o)
	if err != nil {
		return err
	}
	s, err := e.authorizeAndPrint(ctx, o, c, sdk.AuthorizeRequest{Rail: "payout", Payee: args[0], Amount: args[1],
		Asset: o.asset, Network: o.network, IdempotencyKey: o.idemKey, Memo: o.memo})
	if err != nil {
		return err
	}
	switch s.Status {
	case sdk.StatusCaptured:
		return nil
	case sdk.StatusPendingApproval:
		if !o.json {
			fmt.Fprintf(e.stdio.Err, "after an owner approves: purser spend confirm %s\n", s.SpendID)
		}
		return exitCode(ExitPending)
	case sdk.StatusAuthorized, sdk.StatusUnknown:
		return exitCode(ExitSellerFailed) // sent or signed; the reconciler settles it from the chain
	case sdk.StatusDenied:
		return exitCode(ExitRefused)
	}
	return exitCode(ExitFailure) // released: the transfer could not be made (see reasons)
}

func fundCommand() *command {
	return &command{
		name: "fund", args: "NAME AMOUNT [--asset USDC]",
		summary: "mint test USDC to an agent's wallet on the dev chain",
		kind:    kindOwner,
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.StringVar(&o.asset, "asset", "", "`ASSET` (default USDC)")
		},
		run: func(ctx context.Context, e *env, o *opts, args []string) error {
			if err := wantArgs(o, args, "NAME", "AMOUNT"); err != nil {
				return err
			}
			c, err := e.ownerClient(o)
			if err != nil {
				return err
			}
			f, err := c.Fund(ctx, args[0], args[1], o.asset)
			if err != nil {
				return err
			}
			if o.json {
				return writeJSON(e.stdio.Out, f)
			}
			fmt.Fprintf(e.stdio.Out, "funded %s with %s %s on %s (%s, tx %s)\n", args[0], f.Amount, f.Asset, f.Network, f.Address, f.Tx)
			return nil
		},
	}
}

func balanceCommand() *command {
	return &command{
		name: "balance", summary: "show the agent wallet's on-chain balances",
		kind: kindAgent,
		run: func(ctx context.Context, e *env, o *opts, args []string) error {
			if err := wantArgs(o, args); err != nil {
				return err
			}
			c, err := e.agentClient(o)
			if err != nil {
				return err
			}
			bs, err := sdk.Collect(c.Balances(ctx))
			if err != nil {
				return err
			}
			return printBalances(e, o, bs)
		},
	}
}

func printBalances(e *env, o *opts, bs []sdk.Balance) error {
	if o.json {
		return writeJSON(e.stdio.Out, map[string]any{"balances": bs})
	}
	if len(bs) == 0 {
		fmt.Fprintln(e.stdio.Out, "no chain is connected (serve --rpc or --dev-chain)")
	}
	for _, b := range bs {
		v := b.Balance
		if b.Error != "" {
			v = "? (" + b.Error + ")"
		}
		fmt.Fprintf(e.stdio.Out, "%-14s %-6s %s  %s\n", b.Network, b.Asset, v, b.Address)
	}
	return nil
}
