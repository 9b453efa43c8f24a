package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/purserhq/purser/sdk"
)

// webhookOpts are the flags of the webhook commands.
type webhookOpts struct {
	events       string
	allowPrivate bool
	ed25519      bool
	skip         bool
}

func webhookCommand() *command {
	list := &command{name: "list", summary: "list webhook endpoints", kind: kindOwner, run: ownerRun(nil, runWebhookList)}
	return &command{
		name:    "webhook",
		summary: "webhook endpoints: deliveries of approvals, freezes, budget alerts and payment failures (docs/webhooks.md)",
		sub: []*command{
			{name: "add", args: "URL [--events TYPES] [--allow-private] [--ed25519]", summary: "register a webhook endpoint; prints its secret once",
				kind: kindOwner, flags: func(fs *flag.FlagSet, o *opts) {
					fs.StringVar(&o.webhook.events, "events", "", "comma-separated event `TYPES` to deliver (default: all): approval.requested, approval.resolved, agent.frozen, agent.revoked, budget.threshold, payment.failed, payment.unknown")
					fs.BoolVar(&o.webhook.allowPrivate, "allow-private", false, "allow a private, loopback or link-local target")
					fs.BoolVar(&o.webhook.ed25519, "ed25519", false, "sign with the deployment's Ed25519 key (v1a) instead of a secret for this endpoint (v1)")
				}, run: ownerRun([]string{"URL"}, runWebhookAdd)},
			list,
			{name: "rm", args: "ID", summary: "remove a webhook endpoint and its delivery log", kind: kindOwner, run: ownerRun([]string{"ID"}, runWebhookRm)},
			{name: "deliveries", args: "ID [--n N]", summary: "show an endpoint's delivery attempts, newest first", kind: kindOwner,
				flags: func(fs *flag.FlagSet, o *opts) {
					fs.IntVar(&o.n, "n", 20, "how many attempts (at most 500)")
				}, run: ownerRun([]string{"ID"}, runWebhookDeliveries)},
			{name: "test", args: "ID", summary: "send a ping to an endpoint now", kind: kindOwner, run: ownerRun([]string{"ID"}, runWebhookTest)},
			{name: "resume", args: "ID [--skip]", summary: "resume a paused endpoint at the message it stopped at", kind: kindOwner,
				flags: func(fs *flag.FlagSet, o *opts) {
					fs.BoolVar(&o.webhook.skip, "skip", false, "pass over the message it stopped at")
				}, run: ownerRun([]string{"ID"}, runWebhookResume)},
			{name: "key", summary: "show the Ed25519 key that verifies v1a deliveries", kind: kindOwner, run: ownerRun(nil, runWebhookKey)},
		},
		def: list,
	}
}

func runWebhookAdd(ctx context.Context, e *env, o *opts, c *sdk.Owner, args []string) error {
	req := sdk.CreateWebhookRequest{URL: args[0], AllowPrivate: o.webhook.allowPrivate}
	for _, t := range strings.Split(o.webhook.events, ",") {
		if t = strings.TrimSpace(t); t != "" {
			req.Events = append(req.Events, t)
		}
	}
	if o.webhook.ed25519 {
		req.Signing = "ed25519"
	}
	w, err := c.CreateWebhook(ctx, req)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(e.stdio.Out, w)
	}
	fmt.Fprintf(e.stdio.Out, "webhook %s: %s (events: %s)\n", w.ID, w.URL, eventsText(w.Events))
	if w.Secret != "" {
		fmt.Fprintf(e.stdio.Out, "secret: %s\nkeep it: it is not shown again; verify deliveries with it (docs/webhooks.md)\n", w.Secret)
	} else {
		fmt.Fprintf(e.stdio.Out, "public key: %s\nverify deliveries (v1a) with it (docs/webhooks.md)\n", w.PublicKey)
	}
	return nil
}

func eventsText(ev []string) string {
	if len(ev) == 0 {
		return "all"
	}
	return strings.Join(ev, ",")
}

func runWebhookList(ctx context.Context, e *env, o *opts, c *sdk.Owner, _ []string) error {
	l, err := c.Webhooks(ctx)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(e.stdio.Out, map[string]any{"webhooks": l})
	}
	if len(l) == 0 {
		fmt.Fprintln(e.stdio.Out, "no webhook endpoints")
		return nil
	}
	t := newTable(e.stdio.Out)
	fmt.Fprintln(t, "ID\tURL\tEVENTS\tSIGNING\tSTATUS\tLAST_ERROR")
	for _, w := range l {
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\n", w.ID, w.URL, eventsText(w.Events), w.Signing, w.Status, orDash(w.LastError))
	}
	return t.Flush()
}

func runWebhookRm(ctx context.Context, e *env, o *opts, c *sdk.Owner, args []string) error {
	w, err := c.DeleteWebhook(ctx, args[0])
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(e.stdio.Out, w)
	}
	fmt.Fprintf(e.stdio.Out, "removed webhook %s (%s)\n", w.ID, w.URL)
	return nil
}

func runWebhookDeliveries(ctx context.Context, e *env, o *opts, c *sdk.Owner, args []string) error {
	if o.n < 1 || o.n > 500 {
		return usagef(o.path, "--n must be 1 to 500")
	}
	d, err := c.WebhookDeliveries(ctx, args[0], 0, o.n)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(e.stdio.Out, d)
	}
	if len(d.Deliveries) == 0 {
		fmt.Fprintln(e.stdio.Out, "no deliveries yet")
		return nil
	}
	t := newTable(e.stdio.Out)
	fmt.Fprintln(t, "AT\tMESSAGE\tTYPE\tATTEMPT\tOUTCOME\tSTATUS\tMS\tERROR")
	for _, a := range d.Deliveries {
		code := "-"
		if a.StatusCode != 0 {
			code = fmt.Sprint(a.StatusCode)
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%d\t%s\t%s\t%.1f\t%s\n", a.At.Format("2006-01-02T15:04:05Z07:00"), a.MessageID, a.Type, a.Attempt,
			a.Outcome, code, a.DurationMS, orDash(a.Error))
	}
	return t.Flush()
}

func runWebhookTest(ctx context.Context, e *env, o *opts, c *sdk.Owner, args []string) error {
	a, err := c.TestWebhook(ctx, args[0])
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(e.stdio.Out, a)
	}
	if a.Outcome == "delivered" {
		fmt.Fprintf(e.stdio.Out, "ping delivered: HTTP %d in %.1f ms\n", a.StatusCode, a.DurationMS)
		return nil
	}
	reason := a.Error
	if reason == "" {
		reason = fmt.Sprintf("HTTP %d", a.StatusCode)
	}
	return fmt.Errorf("ping not delivered: %s", reason)
}

func runWebhookResume(ctx context.Context, e *env, o *opts, c *sdk.Owner, args []string) error {
	w, err := c.ResumeWebhook(ctx, args[0], o.webhook.skip)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(e.stdio.Out, w)
	}
	fmt.Fprintf(e.stdio.Out, "webhook %s is %s\n", w.ID, w.Status)
	return nil
}

func runWebhookKey(ctx context.Context, e *env, o *opts, c *sdk.Owner, _ []string) error {
	k, err := c.WebhookSigningKey(ctx)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(e.stdio.Out, k)
	}
	fmt.Fprintln(e.stdio.Out, k.PublicKey)
	return nil
}
