package sdk_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"

	"github.com/purserhq/purser/sdk"
)

// An agent program loads its identity key and talks to Purser as that
// agent. The key authenticates the agent's requests; it holds no money.
func ExampleNewAgent() {
	server, keyFile := exampleAgent("researcher", `{"per_tx_auto":"0.10","per_tx_max":"1.00","daily":"5.00"}`)

	key, err := sdk.LoadKeyFile(keyFile) // or sdk.KeyFromEnv(): the file PURSER_AGENT_KEY names
	if err != nil {
		log.Fatal(err)
	}
	agent, err := sdk.NewAgent(server, key)
	if err != nil {
		log.Fatal(err)
	}
	limits, err := agent.Limits(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s is %s: %s of %s USD left today\n", limits.Name, limits.Status, limits.Daily.Remaining, limits.Daily.Limit)
	// Output: researcher is active: 5 of 5 USD left today
}

// An http.Client whose Transport is sdk.Transport pays x402 APIs as it
// goes: a 402 is paid through Purser, within the agent's mandate, and the
// request sent again with the payment.
func ExampleTransport() {
	server, keyFile := exampleAgent("forecaster", `{"per_tx_auto":"0.10","per_tx_max":"1.00","daily":"5.00"}`)
	paidAPI := examplePaidAPI()

	key, err := sdk.LoadKeyFile(keyFile)
	if err != nil {
		log.Fatal(err)
	}
	agent, err := sdk.NewAgent(server, key)
	if err != nil {
		log.Fatal(err)
	}
	hc := &http.Client{Transport: sdk.Transport(agent, nil, &sdk.TransportOptions{
		MaxPrice: "0.05", // never more than 0.05 USDC a request
		Memo:     "weather for the trip planner",
		OnPayment: func(req *http.Request, sp *sdk.Spend) {
			fmt.Printf("paid %s %s for %s: %s\n", sp.Amount, sp.Asset, req.URL.Path, sp.Status)
		},
	})}

	resp, err := hc.Get(paidAPI + "/weather")
	if err != nil {
		log.Fatal(err) // a *sdk.RefusedError when the mandate says no: use errors.As
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Status, string(body))
	// Output:
	// paid 0.01 USDC for /weather: captured
	// 200 OK sunny, 21°C
}

// Fetch makes one paid call and says what happened: the offer chosen,
// the spend, the seller's settlement.
func ExampleAgent_Fetch() {
	server, keyFile := exampleAgent("fetcher", `{"per_tx_auto":"0.10","per_tx_max":"1.00","daily":"5.00"}`)
	paidAPI := examplePaidAPI()

	key, err := sdk.LoadKeyFile(keyFile)
	if err != nil {
		log.Fatal(err)
	}
	agent, err := sdk.NewAgent(server, key)
	if err != nil {
		log.Fatal(err)
	}
	res, err := agent.Fetch(context.Background(), sdk.FetchRequest{URL: paidAPI + "/weather", Max: "0.05", Memo: "weather"})
	if err != nil {
		log.Fatal(err)
	}
	switch res.Outcome {
	case sdk.Paid:
		fmt.Printf("paid %s %s (x402 v%d), settled: %v\n", res.Offer.Amount, res.Offer.Asset, res.Offer.Version, res.Settlement.Success)
		fmt.Println(string(res.Body))
	case sdk.Pending:
		fmt.Println("waiting for the owner; finish with ConfirmFetch:", res.Spend.SpendID)
	case sdk.Refused:
		fmt.Println("refused:", res.Reasons)
	default:
		fmt.Println(res.Outcome, res.Reasons, res.Error)
	}
	// Output:
	// paid 0.01 USDC (x402 v2), settled: true
	// sunny, 21°C
}

// Authorize asks the mandate for a spend. It has three outcomes: allowed
// (a spend, err nil), waiting for the owner (*sdk.ApprovalRequiredError)
// and refused (*sdk.RefusedError).
func ExampleAgent_Authorize() {
	server, keyFile := exampleAgent("gpu-renter", `{"per_tx_auto":"0.10","per_tx_max":"1.00","daily":"5.00"}`)
	key, err := sdk.LoadKeyFile(keyFile)
	if err != nil {
		log.Fatal(err)
	}
	agent, err := sdk.NewAgent(server, key)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	for _, amount := range []string{"0.05", "0.50", "2.00"} {
		// The custom rail: Purser decides and holds; the agent pays by its
		// own means and reports the capture.
		sp, err := agent.Authorize(ctx, sdk.AuthorizeRequest{Rail: "custom", Payee: "0x000000000000000000000000000000000000dEaD",
			Amount: amount, Memo: "GPU hours"})
		var pending *sdk.ApprovalRequiredError
		var refused *sdk.RefusedError
		switch {
		case errors.As(err, &pending):
			fmt.Println(amount, "waits for the owner:", pending.Reasons)
		case errors.As(err, &refused):
			fmt.Println(amount, "refused:", refused.Reasons)
		case err != nil:
			log.Fatal(err)
		default:
			fmt.Println(amount, sp.Status)
			if sp, err = agent.Capture(ctx, sp.SpendID, ""); err != nil {
				log.Fatal(err)
			}
			fmt.Println(amount, sp.Status)
		}
	}
	// Output:
	// 0.05 authorized
	// 0.05 captured
	// 0.50 waits for the owner: [above_auto_approve]
	// 2.00 refused: [per_tx_cap_exceeded]
}

// An owner registers an agent: the address of its identity key and the
// mandate it spends under.
func ExampleOwner_CreateAgent() {
	server, ownerToken := exampleServer()
	keyFile := exampleKeyFile() // as sdk.GenerateKey or `purser agent create --key-out` writes it

	owner, err := sdk.NewOwner(server, ownerToken)
	if err != nil {
		log.Fatal(err)
	}
	key, err := sdk.LoadKeyFile(keyFile)
	if err != nil {
		log.Fatal(err)
	}
	ag, err := owner.CreateAgent(context.Background(), sdk.CreateAgentRequest{
		Name:            "analyst",
		IdentityAddress: key.Address(),
		Mandate:         json.RawMessage(`{"per_tx_auto":"0.10","per_tx_max":"1.00","daily":"5.00","rails":["x402"]}`),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ag.Name, ag.Status, "mandate version", ag.MandateVersion)
	fmt.Println("identity matches the key:", ag.IdentityAddress == key.Address())
	// Output:
	// analyst active mandate version 1
	// identity matches the key: true
}

// An owner's program decides the spends waiting for approval.
func ExampleOwner_Approvals() {
	server, ownerToken := exampleServer()
	// An agent asked for more than it may spend without approval.
	exampleAskApproval(server, "nightly-batch", "0.75", "a bigger GPU for tonight's run")

	owner, err := sdk.NewOwner(server, ownerToken)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	batch, err := owner.Agent(ctx, "nightly-batch")
	if err != nil {
		log.Fatal(err)
	}
	for sp, err := range owner.Approvals(ctx) {
		if err != nil {
			log.Fatal(err)
		}
		if sp.AgentID != batch.ID {
			continue // another agent's: not this program's to decide
		}
		fmt.Printf("%s asks %s USD for %q (%v)\n", batch.Name, sp.AmountUSD, sp.Memo, sp.Reasons)
		decided, err := owner.Approve(ctx, sp.SpendID)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("now", decided.Status)
	}
	// Output:
	// nightly-batch asks 0.75 USD for "a bigger GPU for tonight's run" ([above_auto_approve])
	// now authorized
}
