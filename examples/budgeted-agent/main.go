// Command budgeted-agent is an agent that calls a paid (x402) API in a
// loop, paying each call through Purser, until its mandate says no; then
// it prints what is left of its budgets.
//
// It shows the whole of an agent program's side of Purser: the agent
// holds only an identity key (which authenticates its requests and can
// move no money), an ordinary http.Client whose Transport is
// sdk.Transport pays each 402 within the mandate the owner set, and the
// mandate's refusal arrives as an *sdk.RefusedError with reason codes.
//
// Run it against `go run ./cmd/purser demo`, which prints the two
// variables and a paid API (its story ends with the demo agent frozen:
// unfreeze it first, as the demo says):
//
//	export PURSER_SERVER=http://127.0.0.1:8402
//	export PURSER_AGENT_KEY=/path/to/demo-agent.key
//	purser agent unfreeze --data DIR demo-agent
//	go run ./examples/budgeted-agent http://127.0.0.1:PORT/weather
//
// Flags:
//
//	-max 0.05     the most one call may pay, in the asset's units ("" : the mandate decides)
//	-calls 1000   stop after this many calls even if the budget allows more
//
// It exits 0 once the mandate refused a call (the budget did its job),
// 3 when a call waits for the owner's approval, and 1 on any other error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/purserhq/purser/sdk"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("budgeted-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	maxPrice := fs.String("max", "", "the most one call may pay, in the asset's units (\"\": the mandate decides)")
	maxCalls := fs.Int("calls", 1000, "stop after this many calls")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: budgeted-agent [-max AMOUNT] [-calls N] API_URL")
		fmt.Fprintln(stderr, "environment: PURSER_SERVER (Purser's URL), PURSER_AGENT_KEY (the agent's key file)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	apiURL := fs.Arg(0)
	server := os.Getenv("PURSER_SERVER")
	if server == "" {
		fmt.Fprintln(stderr, "budgeted-agent: PURSER_SERVER is not set (Purser's URL, e.g. http://127.0.0.1:8402)")
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	// The agent's identity key: the file PURSER_AGENT_KEY names.
	key, err := sdk.KeyFromEnv()
	if err != nil {
		fmt.Fprintln(stderr, "budgeted-agent:", err)
		return 2
	}
	agent, err := sdk.NewAgent(server, key)
	if err != nil {
		fmt.Fprintln(stderr, "budgeted-agent:", err)
		return 2
	}

	// An ordinary http.Client that pays: each 402 is authorized by Purser
	// within the mandate, signed by Purser's wallet for this agent, and
	// the request is sent once more with the payment.
	var paid int
	hc := &http.Client{
		Timeout: 2 * time.Minute,
		Transport: sdk.Transport(agent, nil, &sdk.TransportOptions{
			MaxPrice: *maxPrice,
			Memo:     "budgeted-agent",
			OnPayment: func(_ *http.Request, sp *sdk.Spend) {
				paid++
				fmt.Fprintf(stdout, "paid %s %s (spend %s, %s)\n", sp.Amount, sp.Asset, sp.SpendID, sp.Status)
			},
		}),
	}

	code := 0
loop:
	for call := 1; call <= *maxCalls; call++ {
		status, n, err := get(ctx, hc, apiURL)
		var refused *sdk.RefusedError
		var pending *sdk.ApprovalRequiredError
		switch {
		case errors.As(err, &refused):
			// The mandate said no: nothing was held or paid for this call.
			fmt.Fprintf(stdout, "call %d refused by the mandate: %s\n", call, strings.Join(refused.Reasons, ", "))
			break loop
		case errors.As(err, &pending):
			fmt.Fprintf(stdout, "call %d waits for the owner's approval (spend %s)\n", call, pending.SpendID)
			code = 3
			break loop
		case err != nil:
			fmt.Fprintf(stderr, "budgeted-agent: call %d: %v\n", call, err)
			code = 1
			break loop
		}
		fmt.Fprintf(stdout, "call %d: HTTP %d, %d bytes\n", call, status, n)
		if status != http.StatusOK {
			code = 1
			break
		}
	}
	fmt.Fprintf(stdout, "%d calls paid\n", paid)

	// What is left: the same numbers the owner sees.
	limits, err := agent.Limits(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "budgeted-agent: limits:", err)
		return 1
	}
	printWindow(stdout, "daily", limits.Daily)
	printWindow(stdout, "lifetime", limits.Lifetime)
	return code
}

// get requests url and reads the answer, returning its status and size.
func get(ctx context.Context, hc *http.Client, url string) (int, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, n, err
}

// printWindow prints one budget window of the agent's limits (USD).
func printWindow(w io.Writer, name string, win *sdk.Window) {
	if win == nil {
		fmt.Fprintf(w, "%s budget: none\n", name)
		return
	}
	fmt.Fprintf(w, "%s budget: %s USD used of %s, %s remaining\n", name, win.Used, win.Limit, win.Remaining)
}
