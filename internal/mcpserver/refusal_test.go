package mcpserver_test

import (
	"context"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/purserhq/purser/internal/mcpserver"
)

// TestRefusalExplained: a refusal is a tool error with a typed result: the
// status, the reason codes, the rules behind them, what is left of the
// budgets and when to retry. Dry runs give the same verdict without
// paying; a payout the wallet cannot cover fails with its reason.
func TestRefusalExplained(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	p := startPurser(t, m, m.config(t.TempDir()))
	ctx := context.Background()
	chains, err := p.owner.Chains(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.dev.FundETH(ctx, common.HexToAddress(chains.Relayer), big.NewInt(1e18)); err != nil {
		t.Fatal(err)
	}
	key, _ := p.newAgent(t, m, "thrifty", `{"per_tx_auto":"0.50","per_tx_max":"0.60","daily":"0.70","rails":["x402","payout"]}`, 300_000)
	s := mcpserver.New(agentOf(t, p.url, key), mcpserver.Options{})
	cs := connect(t, s, nil)
	to := "0x000000000000000000000000000000000000bEEF"

	_, out := call(t, cs, "dry_run", map[string]any{"action": "pay", "address": to, "amount": "0.20"})
	if str(out, "status") != "dry_run" || str(out, "decision") != "allow" || out["spend_id"] != nil {
		t.Fatalf("dry run: %v", out)
	}
	_, out = call(t, cs, "dry_run", map[string]any{"action": "x402_fetch", "url": m.sellerURL + "/pricey"})
	if str(out, "status") != "dry_run" || str(out, "decision") != "allow" || str(out, "amount") != "0.5" {
		t.Fatalf("dry run of a fetch: %v", out)
	}
	res, out := call(t, cs, "pay", map[string]any{"address": to, "amount": "0.20", "idempotency_key": "p-1"})
	if res.IsError || str(out, "status") != "paid" {
		t.Fatalf("payout: %v", out)
	}
	// 0.20 used of 0.70: 0.55 does not fit today.
	res, out = call(t, cs, "pay", map[string]any{"address": to, "amount": "0.55"})
	if !res.IsError || str(out, "status") != "refused" || !slices.Contains(out["reasons"].([]any), any("daily_budget_exceeded")) ||
		!slices.Contains(out["rules"].([]any), any("daily")) || out["remaining"].(map[string]any)["daily"] != "0.5" {
		t.Fatalf("refusal: %v", out)
	}
	at, err := time.Parse(time.RFC3339, str(out, "retry_at"))
	if err != nil || !at.After(time.Now()) || time.Until(at) > 25*time.Hour {
		t.Fatalf("retry_at %q: %v", str(out, "retry_at"), err)
	}
	_, out = call(t, cs, "dry_run", map[string]any{"action": "pay", "address": to, "amount": "0.65"})
	if str(out, "decision") != "deny" || !slices.Contains(out["rules"].([]any), any("per_tx_max")) {
		t.Fatalf("dry run refusal: %v", out)
	}
	// The wallet holds 0.10 now: a payout of 0.30 fits the mandate but not
	// the wallet.
	res, out = call(t, cs, "pay", map[string]any{"address": to, "amount": "0.30"})
	if !res.IsError || str(out, "status") != "failed" || !slices.Contains(out["reasons"].([]any), any("insufficient_funds")) {
		t.Fatalf("uncovered payout: %v", out)
	}
	if got := m.balance(t, common.HexToAddress(to)); got != 200_000 {
		t.Fatalf("payee received %d", got)
	}
}
