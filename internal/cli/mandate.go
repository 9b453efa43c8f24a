package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/purserhq/purser/sdk"
)

// mandateSetAttempts bounds the read-merge-write loop of mandate set when
// another edit lands in between (one try and three retries).
const mandateSetAttempts = 4

func mandateCommand() *command {
	return &command{
		name:    "mandate",
		summary: "show and edit agents' mandates",
		sub: []*command{
			{name: "show", args: "NAME", summary: "show an agent's mandate", kind: kindOwner, run: runMandateShow},
			{name: "set", args: "NAME [mandate flags]", kind: kindOwner,
				summary: "change the named mandate fields, keeping the others",
				flags: func(fs *flag.FlagSet, o *opts) {
					o.mandate = &mandateFlags{}
					o.mandate.register(fs, true)
				},
				run: runMandateSet},
		},
	}
}

func runMandateShow(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args, "NAME"); err != nil {
		return err
	}
	c, err := e.ownerClient(o)
	if err != nil {
		return err
	}
	v, err := c.Mandate(ctx, args[0])
	if err != nil {
		return err
	}
	if o.json {
		return writeRaw(e.stdio.Out, v.Raw)
	}
	fmt.Fprintf(e.stdio.Out, "mandate of %s, version %d:\n", args[0], v.Version)
	if len(v.Mandate) == 0 || string(v.Mandate) == "null" {
		fmt.Fprintln(e.stdio.Out, "(none)")
		return nil
	}
	return writeRaw(e.stdio.Out, v.Mandate)
}

func runMandateSet(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args, "NAME"); err != nil {
		return err
	}
	if o.mandate.empty() {
		return usagef(o.path, "no mandate flag given: nothing to change")
	}
	c, err := e.ownerClient(o)
	if err != nil {
		return err
	}
	v, err := setMandate(ctx, c, args[0], o.mandate)
	if err != nil {
		return err
	}
	if o.json {
		return writeRaw(e.stdio.Out, v.Raw)
	}
	fmt.Fprintf(e.stdio.Out, "mandate of %s is now version %d\n", args[0], v.Version)
	return nil
}

// setMandate reads the mandate, merges the flags into it and writes it
// back based on the version read; if another edit came first
// (mandate_conflict) it starts over, a bounded number of times.
func setMandate(ctx context.Context, c *sdk.Owner, ref string, m *mandateFlags) (*sdk.MandateView, error) {
	var err error
	for range mandateSetAttempts {
		var cur *sdk.MandateView
		cur, err = c.Mandate(ctx, ref)
		if err != nil {
			return nil, err
		}
		merged, merr := m.apply(cur.Mandate)
		if merr != nil {
			return nil, merr
		}
		base := cur.Version
		var v *sdk.MandateView
		v, err = c.SetMandate(ctx, ref, merged, &base)
		if err == nil {
			return v, nil
		}
		if !sdk.IsCode(err, "mandate_conflict") {
			return nil, err
		}
	}
	return nil, errors.Join(fmt.Errorf("the mandate kept changing during the edit; %d attempts", mandateSetAttempts), err)
}
