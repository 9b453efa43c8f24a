package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strings"

	"github.com/purserhq/purser/sdk"
)

// Owner views of what the API already offers: spends of every agent, an
// agent's limits and balances, and the connected chains (where an operator
// learns the relayer address to fund).

func spendsCommand() *command {
	list := &command{name: "list", args: "[--agent A] [--status S[,S]] [-n N]", summary: "list spends, newest first",
		kind: kindOwner,
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.StringVar(&o.agent, "agent", "", "only the spends of agent `A` (name or id)")
			fs.StringVar(&o.status, "status", "", "only spends in `STATUS` (comma-separated: pending_approval, authorized, captured, released, denied, expired, unknown)")
			fs.IntVar(&o.n, "n", 100, "at most `N` spends (1-1000)")
		},
		run: ownerRun(nil, runSpendsList)}
	return &command{
		name:    "spends",
		summary: "owner: list and show the spends of every agent",
		sub: []*command{list,
			{name: "show", args: "SPEND_ID", summary: "show one spend", kind: kindOwner, run: ownerRun([]string{"SPEND_ID"}, runSpendsShow)}},
		def: list,
	}
}

func runSpendsList(ctx context.Context, e *env, o *opts, c *sdk.Owner, _ []string) error {
	if o.n < 1 || o.n > 1000 {
		return usagef(o.path, "-n must be 1..1000")
	}
	l, err := sdk.Collect(c.Spends(ctx, sdk.SpendFilter{Agent: o.agent, Status: o.status, Limit: o.n}))
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(e.stdio.Out, rawList("spends", l, func(s *sdk.Spend) json.RawMessage { return s.Raw }))
	}
	if len(l) == 0 {
		fmt.Fprintln(e.stdio.Out, "no spends")
		return nil
	}
	t := newTable(e.stdio.Out)
	fmt.Fprintln(t, "SPEND_ID\tAGENT\tSTATUS\tRAIL\tAMOUNT\tPAYEE\tHOST\tREASONS\tCREATED")
	for _, s := range l {
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s %s\t%s\t%s\t%s\t%s\n", s.SpendID, s.AgentID, s.Status, s.Rail, s.Amount, s.Asset,
			s.Payee, orDash(s.Host), orDash(strings.Join(s.Reasons, ",")), s.CreatedAt.UTC().Format("2006-01-02T15:04:05Z"))
	}
	return t.Flush()
}

func runSpendsShow(ctx context.Context, e *env, o *opts, c *sdk.Owner, args []string) error {
	s, err := c.Spend(ctx, args[0])
	if err != nil {
		return err
	}
	if o.json {
		return writeRaw(e.stdio.Out, s.Raw)
	}
	t := newTable(e.stdio.Out)
	row := func(k, v string) { fmt.Fprintf(t, "%s\t%s\n", k, orDash(v)) }
	row("spend", s.SpendID)
	row("agent", s.AgentID)
	row("status", s.Status)
	row("reasons", strings.Join(s.Reasons, ", "))
	row("rail", s.Rail)
	row("amount", s.Amount+" "+s.Asset)
	row("network", s.Network)
	row("payee", s.Payee)
	row("host", s.Host)
	if s.Captured != nil {
		row("captured", *s.Captured+" "+s.Asset)
	}
	row("rail ref", s.RailRef)
	row("memo", s.Memo)
	row("created", s.CreatedAt.UTC().Format("2006-01-02T15:04:05Z"))
	if s.ExpiresAt != nil {
		row("expires", s.ExpiresAt.UTC().Format("2006-01-02T15:04:05Z"))
	}
	return t.Flush()
}

func agentLimitsCommand() *command {
	return &command{name: "limits", args: "NAME", summary: "show an agent's limits: per window limit, used, remaining", kind: kindOwner,
		run: ownerRun([]string{"NAME"}, func(ctx context.Context, e *env, o *opts, c *sdk.Owner, args []string) error {
			l, err := c.Limits(ctx, args[0])
			if err != nil {
				return err
			}
			return writeLimits(e, o, l)
		})}
}

func agentBalancesCommand() *command {
	return &command{name: "balances", args: "NAME", summary: "show an agent wallet's on-chain balances", kind: kindOwner,
		run: ownerRun([]string{"NAME"}, func(ctx context.Context, e *env, o *opts, c *sdk.Owner, args []string) error {
			bs, err := sdk.Collect(c.Balances(ctx, args[0]))
			if err != nil {
				return err
			}
			return printBalances(e, o, bs)
		})}
}

func chainsCommand() *command {
	return &command{name: "chains", summary: "show the connected chains and the relayer address that pays gas (fund it)", kind: kindOwner,
		run: ownerRun(nil, func(ctx context.Context, e *env, o *opts, c *sdk.Owner, _ []string) error {
			ch, err := c.Chains(ctx)
			if err != nil {
				return err
			}
			if o.json {
				return writeJSON(e.stdio.Out, ch)
			}
			if len(ch.Networks) == 0 {
				fmt.Fprintln(e.stdio.Out, "no chain is connected (serve --rpc CAIP2=URL or --dev-chain)")
				return nil
			}
			t := newTable(e.stdio.Out)
			fmt.Fprintf(t, "networks\t%s\n", strings.Join(ch.Networks, ", "))
			fmt.Fprintf(t, "relayer\t%s\n", orDash(ch.Relayer))
			if ch.DevNetwork != "" {
				fmt.Fprintf(t, "dev network\t%s\n", ch.DevNetwork)
			}
			t.Flush()
			if ch.Relayer != "" {
				fmt.Fprintln(e.stdio.Out, "the relayer pays the gas of payouts: keep it funded with the networks' native token")
			}
			return nil
		})}
}
