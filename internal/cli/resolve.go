package cli

import (
	"context"
	"flag"

	"github.com/purserhq/purser/sdk"
)

// resolveOpts are the flags of spend resolve.
type resolveOpts struct {
	captured string
	released bool
}

// spendResolveCommand is the owner's way out of an unknown outcome: the
// spend was paid (in transaction TX) or nothing moved. The server asks the
// chain first where one is connected and refuses what it contradicts.
func spendResolveCommand() *command {
	return &command{name: "resolve", args: "SPEND_ID --captured TX | --released --reason TEXT",
		summary: "settle a spend whose outcome is unknown (the chain is asked first where one is connected)",
		kind:    kindOwner,
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.StringVar(&o.resolve.captured, "captured", "", "it was paid, in transaction `TX`")
			fs.BoolVar(&o.resolve.released, "released", false, "nothing moved and nothing can move any more: release the hold")
			fs.StringVar(&o.reason, "reason", "", "why, for the audit log (required with --released)")
		},
		run: runSpendResolve}
}

func runSpendResolve(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args, "SPEND_ID"); err != nil {
		return err
	}
	switch {
	case (o.resolve.captured != "") == o.resolve.released:
		return usagef(o.path, "give exactly one of --captured TX and --released")
	case o.resolve.released && o.reason == "":
		return usagef(o.path, "--released needs --reason TEXT")
	}
	c, err := e.ownerClient(o)
	if err != nil {
		return err
	}
	s, err := c.Resolve(ctx, args[0], sdk.ResolveRequest{CapturedTx: o.resolve.captured, Released: o.resolve.released, Reason: o.reason})
	if err != nil {
		return err
	}
	return printDecided(e, o, s, "resolved")
}
