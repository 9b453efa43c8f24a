package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/internal/app"
	"github.com/purserhq/purser/sdk"
	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/internal/facilitator"
	"github.com/purserhq/purser/internal/money"
	
	"github.com/purserhq/purser/x402"
	"github.com/purserhq/purser/x402/middleware"
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
			fs.StringVar(&o.demo.listen, "listen", "127.0.0.1:8402", "Purser's listen `ADDR`ess")
			fs.StringVar(&o.demo.sellerListen, "seller-listen", "127.0.0.1:0", "the sample paid API's `ADDR`ess")
			fs.StringVar(&o.demo.facListen, "facilitator-listen", "127.0.0.1:0", "the facilitator's `ADDR`ess")
			fs.BoolVar(&o.demo.exit, "exit", false, "exit after the story instead of running until Ctrl-C")
		},
		run: runDemo,
	}
}

// demoPrices are the sample API's routes: green, yellow and red under the
// demo mandate (auto-approve up to 0.10, hard cap 1.00).
var demoPrices = []struct{ path, amount, desc string }{
	{"/weather", "10000", "today's weather (0.01 USDC)"},
	{"/report", "250000", "a market report (0.25 USDC)"},
	{"/premium", "5000000", "the premium dataset (5.00 USDC)"},
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

	if d.listen == "127.0.0.1:8402" {
		// A server of the user's may hold the default port: take another.
		if ln, err := net.Listen("tcp", d.listen); err != nil {
			d.listen = "127.0.0.1:0"
		} else {
			ln.Close()
		}
	}
	step("starting Purser (SQLite in %s) with an embedded dev chain", d.data)
	srv, err := app.Start(ctx, app.Config{DataDir: d.data, Listen: d.listen, DevChain: true, LogLevel: "warn",
		HoldTTL: 15 * time.Minute, Stdout: io.Discard, Stderr: e.stdio.Err})
	if err != nil {
		return fmt.Errorf("start purser: %w", err)
	}
	defer srv.Shutdown(context.Background())
	dev := srv.DevChain()
	purserURL := "http://" + srv.Addr()
	say("purser     %s", purserURL)
	say("dev chain  %s (%s), USDC at %s", dev.RPCURL(), dev.Network(), dev.Token().Hex())

	// The facilitator settles with its own gas key, funded on the dev chain.
	gasKey, err := crypto.GenerateKey()
	if err != nil {
		return err
	}
	if _, err := dev.FundETH(ctx, crypto.PubkeyToAddress(gasKey.PublicKey), new(big.Int).Mul(big.NewInt(100), big.NewInt(1e18))); err != nil {
		return err
	}
	fac, err := facilitator.New(facilitator.Config{Networks: map[string]facilitator.Network{
		dev.Network(): {Client: dev.Client(), Relayer: evm.NewRelayer(dev.Client(), evm.KeySigner(gasKey))}}})
	if err != nil {
		return err
	}
	facURL, stopFac, err := serveHTTP(d.facListen, fac.Handler())
	if err != nil {
		return err
	}
	defer stopFac()
	say("facilitator %s", facURL)

	sellerKey, err := crypto.GenerateKey()
	if err != nil {
		return err
	}
	seller := crypto.PubkeyToAddress(sellerKey.PublicKey)
	sellerURL, stopSeller, err := demoSeller(d.sellerListen, facURL, dev.Network(), dev.Token().Hex(), seller.Hex())
	if err != nil {
		return err
	}
	defer stopSeller()
	say("paid API   %s (pays to %s)", sellerURL, seller.Hex())

	tok, err := os.ReadFile(filepath.Join(d.data, "owner.token"))
	if err != nil {
		return err
	}
	owner, err := sdk.NewOwner(purserURL, strings.TrimSpace(string(tok)))
	if err != nil {
		return err
	}
	step("creating agent \"demo-agent\": auto-approve up to 0.10, hard cap 1.00, 5.00 a day")
	key, err := agentauth.GenerateKey()
	if err != nil {
		return err
	}
	keyPath := filepath.Join(d.data, "demo-agent.key")
	_ = os.Remove(keyPath)
	if err := agentauth.WriteKeyFile(keyPath, key); err != nil {
		return err
	}
	mandate := json.RawMessage(`{"per_tx_auto":"0.10","per_tx_max":"1.00","daily":"5.00","rails":["x402","payout"]}`)
	agent, err := owner.CreateAgent(ctx, sdk.CreateAgentRequest{Name: "demo-agent", IdentityAddress: agentauth.Address(key).Hex(), Mandate: mandate})
	if err != nil {
		return err
	}
	var wallet string
	for _, w := range agent.Wallets {
		if w.Network == dev.Network() {
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

	signer, err := sdk.NewKey(key)
	if err != nil {
		return err
	}
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
	if bal, err := dev.Client().BalanceOf(ctx, dev.Token(), seller); err == nil {
		say("the seller received %s USDC", money.FormatAmount(bal, 6))
	}
	if err := srv.Checkpoint(ctx); err != nil {
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
	say("purser pay %s 0.50", seller.Hex())
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

// serveHTTP serves h on addr until the returned stop is called.
func serveHTTP(addr string, h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "demo server:", err)
		}
	}()
	return "http://" + ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// demoSeller is the sample paid API, charged with Purser's middleware.
func demoSeller(addr, facURL, network, token, payTo string) (string, func(), error) {
	var routes []middleware.Route
	for _, p := range demoPrices {
		routes = append(routes, middleware.Route{Pattern: "GET " + p.path, Amount: p.amount, Asset: token, Network: network,
			PayTo: payTo, EIP712Name: "USD Coin", EIP712Version: "2", Description: p.desc, MimeType: "application/json"})
	}
	mw, err := middleware.New(middleware.Config{Facilitator: &x402.FacilitatorClient{URL: facURL}, Routes: routes})
	if err != nil {
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /weather", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"city":"Lisbon","forecast":"sunny","high_c":19}`)
	})
	mux.HandleFunc("GET /report", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"report":"stablecoin volumes up 4% week on week"}`)
	})
	mux.HandleFunc("GET /premium", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"dataset":"premium"}`)
	})
	return serveHTTP(addr, mw(mux))
}
