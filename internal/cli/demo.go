package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/purserhq/purser/internal/app"
	"github.com/purserhq/purser/sdk"
)

type demoOpts struct {
	data, listen, sellerListen, facListen string
	exit                                  bool
}

func demoCommand() *command {
	return &command{
		name: "demo", args: "[--data DIR] [--listen ADDR] [--exit]",
		summary: "run Purser with a dev chain, a facilitator and a paid API, and play a short story; keeps running until Ctrl-C",
		kind:    kindNone,
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.StringVar(&o.demo.data, "data", "", "data `DIR` (default: a new temporary directory, removed at exit)")
			fs.StringVar(&o.demo.listen, "listen", app.DemoListen, "Purser's listen `ADDR`ess")
			fs.StringVar(&o.demo.sellerListen, "seller-listen", "127.0.0.1:0", "the sample paid API's `ADDR`ess")
			fs.StringVar(&o.demo.facListen, "facilitator-listen", "127.0.0.1:0", "the facilitator's `ADDR`ess")
			fs.BoolVar(&o.demo.exit, "exit", false, "exit after the story instead of running until Ctrl-C")
		},
		run: runDemo,
	}
}

func runDemo(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args); err != nil {
		return err
	}
	d := o.demo
	out := e.stdio.Out
	if d.data == "" {
		dir, err := os.MkdirTemp("", "purser-demo-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		d.data = dir
	}
	step := func(format string, a ...any) { fmt.Fprintf(out, "\n== "+format+"\n", a...) }
	say := func(format string, a ...any) { fmt.Fprintf(out, "   "+format+"\n", a...) }

	step("starting Purser (SQLite in %s) with an embedded dev chain", d.data)
	demo, err := app.StartDemo(ctx, app.DemoConfig{DataDir: d.data, Listen: d.listen,
		FacilitatorListen: d.facListen, SellerListen: d.sellerListen, Stderr: e.stdio.Err})
	if err != nil {
		return err
	}
	defer demo.Shutdown(context.Background())
	purserURL, sellerURL := demo.PurserURL, demo.SellerURL
	say("purser     %s", purserURL)
	say("dev chain  %s (%s), USDC at %s", demo.RPCURL, demo.Network, demo.Token)
	say("facilitator %s", demo.FacilitatorURL)
	say("paid API   %s (pays to %s)", sellerURL, demo.Seller)

	owner, err := sdk.NewOwner(purserURL, demo.OwnerToken)
	if err != nil {
		return err
	}
	step("creating agent \"demo-agent\": auto-approve up to 0.10, hard cap 1.00, 5.00 a day")
	keyPath := filepath.Join(d.data, "demo-agent.key")
	_ = os.Remove(keyPath)
	signer, err := sdk.GenerateKey(keyPath)
	if err != nil {
		return err
	}
	mandate := json.RawMessage(`{"per_tx_auto":"0.10","per_tx_max":"1.00","daily":"5.00","rails":["x402","payout"]}`)
	agent, err := owner.CreateAgent(ctx, sdk.CreateAgentRequest{Name: "demo-agent", IdentityAddress: signer.Address(), Mandate: mandate})
	if err != nil {
		return err
	}
	var wallet string
	for _, w := range agent.Wallets {
		if w.Network == demo.Network {
			wallet = w.Address
		}
	}
	say("identity %s (key in %s)", agent.IdentityAddress, keyPath)
	say("wallet   %s, held by Purser", wallet)
	f, err := owner.Fund(ctx, "demo-agent", "10", "")
	if err != nil {
		return err
	}
	say("funded with %s USDC on the dev chain (tx %s)", f.Amount, short(f.Tx))

	pay, err := sdk.NewAgent(purserURL, signer)
	if err != nil {
		return err
	}
	fetch := func(path string) (*sdk.FetchResult, error) {
		return pay.Fetch(ctx, sdk.FetchRequest{URL: sellerURL + path})
	}

	step("green: the agent fetches %s/weather (0.01 USDC, under the auto-approve threshold)", sellerURL)
	res, err := fetch("/weather")
	if err != nil {
		return err
	}
	if res.Outcome != sdk.Paid {
		return fmt.Errorf("demo: the green payment ended %s", res.Outcome)
	}
	say("paid at once: spend %s, tx %s", res.Spend.SpendID, short(res.Settlement.Transaction))
	say("the API answered: %s", strings.TrimSpace(string(res.Body)))

	step("yellow: the agent fetches /report (0.25 USDC, above 0.10): it waits for a human")
	res, err = fetch("/report")
	if err != nil {
		return err
	}
	if res.Outcome != sdk.Pending {
		return fmt.Errorf("demo: the yellow payment ended %s", res.Outcome)
	}
	id := res.Spend.SpendID
	say("waiting for approval: spend %s (%s); 0.25 is held against the budget", id, strings.Join(res.Spend.Reasons, ", "))
	if _, err := owner.Approve(ctx, id); err != nil {
		return err
	}
	say("the owner approves it (purser approve %s)", id)
	res, err = pay.ConfirmFetch(ctx, id, sdk.FetchRequest{})
	if err != nil {
		return err
	}
	if res.Outcome != sdk.Paid {
		return fmt.Errorf("demo: the approved payment ended %s", res.Outcome)
	}
	say("the agent confirms (purser x402 confirm %s): paid, tx %s", id, short(res.Settlement.Transaction))

	step("red: the agent fetches /premium (5.00 USDC, above the 1.00 hard cap)")
	res, err = fetch("/premium")
	if err != nil {
		return err
	}
	if res.Outcome != sdk.Refused {
		return fmt.Errorf("demo: the red payment ended %s", res.Outcome)
	}
	say("refused, nothing signed: %s", strings.Join(res.Reasons, ", "))

	step("freeze: the owner freezes demo-agent; its next payment is refused")
	if _, err := owner.Freeze(ctx, "demo-agent"); err != nil {
		return err
	}
	res, err = fetch("/weather")
	if err != nil {
		return err
	}
	if res.Outcome != sdk.Refused {
		return fmt.Errorf("demo: a frozen agent's payment ended %s", res.Outcome)
	}
	say("refused: %s", strings.Join(res.Reasons, ", "))

	step("balances and the audit trail")
	if bs, err := sdk.Collect(owner.Balances(ctx, "demo-agent")); err == nil {
		for _, b := range bs {
			say("demo-agent holds %s %s on %s", b.Balance, b.Asset, b.Network)
		}
	}
	if bal, err := demo.SellerBalance(ctx); err == nil {
		say("the seller received %s USDC", bal)
	}
	if err := demo.Checkpoint(ctx); err != nil {
		return err
	}
	v, err := owner.AuditVerify(ctx)
	if err != nil {
		return fmt.Errorf("demo: audit verify: %w", err)
	}
	say("audit verify: the chain of %d events and %d signed checkpoints checks out", v.Events, v.Checkpoints)

	step("try it yourself (in another terminal; purser is `go run ./cmd/purser`, or build it: go build -o purser ./cmd/purser)")
	say("export PURSER_SERVER=%s PURSER_AGENT_KEY=%s", purserURL, keyPath)
	say("purser --data %s agent unfreeze demo-agent", d.data)
	say("purser x402 fetch %s/weather", sellerURL)
	say("purser x402 fetch %s/report        # then: purser --data %s approvals list", sellerURL, d.data)
	say("purser x402 fetch %s/premium --dry-run", sellerURL)
	say("purser pay %s 0.50", demo.Seller)
	say("purser balance;  purser limits")
	say("purser --data %s fund demo-agent 5", d.data)
	say("purser --data %s audit tail;  purser --data %s audit verify", d.data, d.data)
	if d.exit {
		return nil
	}
	say("")
	say("running until Ctrl-C")
	<-ctx.Done()
	return nil
}

func short(h string) string {
	if len(h) > 18 {
		return h[:10] + "…" + h[len(h)-6:]
	}
	return h
}
