// Package sdk is the Go client of Purser, the wallet and spending-control
// layer for AI agents. An agent program uses it to pay for what it needs
// within the mandate its owner set; an owner's program uses it to
// provision agents and mandates and to decide approvals.
//
// # Agents
//
// An agent is identified by a secp256k1 identity key. The key only
// authenticates the agent's requests to Purser (each one is signed, with
// a fresh nonce, over the exact method, path and body): it holds no money
// and cannot move any. The wallets are Purser's, and Purser pays only
// what the mandate allows or an owner approved.
//
//	key, err := sdk.KeyFromEnv() // the key file named by PURSER_AGENT_KEY
//	agent, err := sdk.NewAgent("http://127.0.0.1:8402", key)
//	limits, err := agent.Limits(ctx)
//
// A Signer can also keep the key in an OS keychain or an HSM: it is asked
// to sign a 32-byte digest, never to reveal the key.
//
// # Paying x402 APIs
//
// Transport wraps an http.RoundTripper: a request whose seller answers
// 402 Payment Required (x402 v1 or v2) is paid through Purser and sent
// once more, with the same body, and the seller's answer is returned.
// Per-request options ride on the request's context (WithMaxPrice,
// WithIdempotencyKey, WithApprovalWait, WithMemo); TransportOptions sets
// defaults for the price cap, the approval wait and the memo.
//
//	hc := &http.Client{Transport: sdk.Transport(agent, nil, nil)}
//	resp, err := hc.Get("https://api.example.com/report")
//	var refused *sdk.RefusedError
//	if errors.As(err, &refused) { // through the *url.Error http.Client returns
//		log.Printf("the mandate says no: %v", refused.Reasons)
//	}
//
// A request body is sent twice (unpaid, then paid), so it must be
// replayable: http.NewRequest makes bytes, strings and bytes.Buffer
// bodies so; any other body needs Request.GetBody, or the payment fails
// with ErrBodyNotReplayable before anything is signed.
//
// Agent.Fetch does the same for one call and says what happened in more
// detail (the offer, the spend, the settlement).
//
// # Outcomes
//
// Every spend meets the mandate first:
//   - allowed (green): paid, or held for the rail to capture;
//   - needs approval (yellow): held against the budget and waiting for an
//     owner; the SDK returns an *ApprovalRequiredError with the spend id.
//     Wait with Agent.WaitForApproval, then finish with Agent.Confirm or
//     Agent.ConfirmFetch (Transport waits by itself under
//     WithApprovalWait);
//   - refused (red): nothing is held or paid; the SDK returns a
//     *RefusedError with the reason codes (daily_budget_exceeded, ...).
//
// Every other error answer of the server is an *Error with the API's
// stable code, HTTP status and details (docs/api.md lists the codes).
// Errors the SDK raises before anything reaches Purser (a URL that is not
// http, no offer the server can pay, a price above the caller's maximum:
// x402_amount_above_max) are *Error too, with Status 0. A network failure
// is the http.Client's error.
//
// Calls that create a spend (Authorize, Pay, Fetch, Transport) take an
// idempotency key and make one when none is given: a retry with the same
// key answers the original spend and never pays twice.
//
// Amounts are decimal strings in the asset's units ("0.05" USDC) and
// budgets USD decimal strings, never floating point.
//
// # Owners
//
//	owner, err := sdk.NewOwner("http://127.0.0.1:8402", token)
//	ag, err := owner.CreateAgent(ctx, sdk.CreateAgentRequest{Name: "researcher",
//		IdentityAddress: key.Address(), Mandate: json.RawMessage(`{"daily":"5.00"}`)})
//	for s, err := range owner.Approvals(ctx) { ... }
//
// Lists are iterators (iter.Seq2); Collect gathers one into a slice.
//
// The JSON bodies are the types of package api, aliased here (Spend,
// Limits, AgentInfo, ...): the server encodes the same types.
//
// Agent, Owner and the RoundTripper of Transport are safe for concurrent
// use.
//
// # Trying it
//
// `go run ./cmd/purser demo` starts a server with an embedded dev chain
// and a paid API, and prints PURSER_SERVER and PURSER_AGENT_KEY for its
// demo agent. The examples of this package run against such a server, and
// examples/budgeted-agent is a whole agent program: it pays an API
// through Transport until its mandate says no.
package sdk
