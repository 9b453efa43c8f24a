package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strings"

	"github.com/purserhq/purser/sdk"
)

func approvalsCommand() *command {
	list := &command{name: "list", summary: "list spends waiting for approval", kind: kindOwner, run: runApprovalsList}
	return &command{
		name:    "approvals",
		summary: "spends waiting for the owner's decision",
		sub:     []*command{list},
		def:     list,
	}
}

func approveCommand() *command {
	return &command{name: "approve", args: "SPEND_ID", summary: "approve a pending spend", kind: kindOwner, run: ownerRun([]string{"SPEND_ID"}, runApprove)}
}

func denyCommand() *command {
	return &command{name: "deny", args: "SPEND_ID [--reason TEXT]", summary: "deny a pending spend", kind: kindOwner,
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.StringVar(&o.reason, "reason", "", "why, for the audit log and the agent")
		},
		run: ownerRun([]string{"SPEND_ID"}, runDeny)}
}

func runApprovalsList(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args); err != nil {
		return err
	}
	c, err := e.ownerClient(o)
	if err != nil {
		return err
	}
	l, err := sdk.Collect(c.Approvals(ctx))
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(e.stdio.Out, rawList("approvals", l, func(s *sdk.Spend) json.RawMessage { return s.Raw }))
	}
	if len(l) == 0 {
		fmt.Fprintln(e.stdio.Out, "no spends waiting for approval")
		return nil
	}
	t := newTable(e.stdio.Out)
	fmt.Fprintln(t, "SPEND_ID\tAGENT\tAMOUNT\tPAYEE\tHOST\tREASONS\tEXPIRES")
	for _, s := range l {
		exp := "-"
		if s.ExpiresAt != nil {
			exp = s.ExpiresAt.Format("2006-01-02T15:04:05Z07:00")
		}
		fmt.Fprintf(t, "%s\t%s\t%s %s\t%s\t%s\t%s\t%s\n", s.SpendID, s.AgentID, s.Amount, s.Asset, s.Payee, orDash(s.Host),
			orDash(strings.Join(s.Reasons, ",")), exp)
	}
	return t.Flush()
}

func runApprove(ctx context.Context, e *env, o *opts, c *sdk.Owner, args []string) error {
	s, err := c.Approve(ctx, args[0])
	if err != nil {
		return err
	}
	if s.Status == sdk.StatusDenied {
		// The current mandate (or a freeze) refuses what the owner approved:
		// nothing was authorized, and the owner must be told so.
		if o.json {
			if err := writeRaw(e.stdio.Out, s.Raw); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(e.stdio.Out, "not approved: the current mandate refuses spend %s: %s\n", s.SpendID, orDash(strings.Join(s.Reasons, ", ")))
		}
		return exitCode(ExitRefused)
	}
	return printDecided(e, o, s, "approved")
}

func runDeny(ctx context.Context, e *env, o *opts, c *sdk.Owner, args []string) error {
	s, err := c.Deny(ctx, args[0], o.reason)
	if err != nil {
		return err
	}
	return printDecided(e, o, s, "denied")
}

func printDecided(e *env, o *opts, s *sdk.Spend, verb string) error {
	if o.json {
		return writeRaw(e.stdio.Out, s.Raw)
	}
	fmt.Fprintf(e.stdio.Out, "%s spend %s: status %s\n", verb, s.SpendID, s.Status)
	return nil
}
