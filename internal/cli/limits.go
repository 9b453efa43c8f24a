package cli

import (
	"context"
	"fmt"

	"github.com/purserhq/purser/sdk"
)

func limitsCommand() *command {
	return &command{name: "limits", summary: "show the agent's limits: per window limit, used, remaining",
		kind: kindAgent, run: runLimits}
}

func runLimits(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args); err != nil {
		return err
	}
	c, err := e.agentClient(o)
	if err != nil {
		return err
	}
	l, err := c.Limits(ctx)
	if err != nil {
		return err
	}
	return writeLimits(e, o, l)
}

// writeLimits prints limits as answered with --json, as a table otherwise.
func writeLimits(e *env, o *opts, l *sdk.Limits) error {
	if o.json {
		return writeRaw(e.stdio.Out, l.Raw)
	}
	printLimits(e, l)
	return nil
}

func printLimits(e *env, l *sdk.Limits) {
	w := e.stdio.Out
	fmt.Fprintf(w, "agent %s (%s), mandate version %d, day %s\n", l.Name, l.Status, l.MandateVersion, orDash(l.Day))
	t := newTable(w)
	fmt.Fprintln(t, "WINDOW\tLIMIT\tUSED\tREMAINING")
	row := func(name string, win *sdk.Window) {
		if win == nil {
			fmt.Fprintf(t, "%s\tnone\t-\t-\n", name)
			return
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\n", name, win.Limit, win.Used, win.Remaining)
	}
	row("daily", l.Daily)
	row("lifetime", l.Lifetime)
	if l.Rate != nil {
		fmt.Fprintf(t, "rate\t%s\t%d\t-\n", l.Rate.Limit, l.Rate.Used)
	}
	t.Flush()
	if l.PerTxAuto != "" || l.PerTxMax != "" {
		fmt.Fprintf(w, "per spend: auto-approved up to %s, at most %s\n", orDash(l.PerTxAuto), orDash(l.PerTxMax))
	}
}
