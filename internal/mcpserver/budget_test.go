package mcpserver_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/purserhq/purser/internal/mcpserver"
)

// TestConcurrentFetchBudget: 100 concurrent x402_fetch calls in one MCP
// session against a daily budget for 20 pay exactly 20, on chain; the
// other 80 are refused with daily_budget_exceeded.
func TestConcurrentFetchBudget(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	p := startPurser(t, m, m.config(t.TempDir()))
	key, wallet := p.newAgent(t, m, "crowd", `{"per_tx_auto":"0.10","per_tx_max":"1","daily":"0.20","rails":["x402"]}`, 1_000_000)
	s := mcpserver.New(agentOf(t, p.url, key), mcpserver.Options{})
	cs := connect(t, s, nil)
	const n = 100
	statuses := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "x402_fetch",
				Arguments: map[string]any{"url": m.sellerURL + "/item", "idempotency_key": fmt.Sprintf("crowd-%d", i)}})
			if err != nil {
				statuses[i] = "protocol error: " + err.Error()
				return
			}
			out := structured(t, cs, "x402_fetch", res)
			statuses[i] = str(out, "status")
			if statuses[i] == "refused" {
				if r, _ := out["reasons"].([]any); len(r) == 0 || r[0] != "daily_budget_exceeded" {
					statuses[i] = fmt.Sprintf("refused for %v", out["reasons"])
				}
			}
		}()
	}
	wg.Wait()
	count := map[string]int{}
	for _, s := range statuses {
		count[s]++
	}
	if count["paid"] != 20 || count["refused"] != n-20 {
		t.Fatalf("outcomes %v; want 20 paid and %d refused", count, n-20)
	}
	if got := m.balance(t, m.seller); got != 20*price {
		t.Fatalf("the seller received %d on chain, want exactly %d", got, 20*price)
	}
	if got := m.balance(t, wallet); got != 1_000_000-20*price {
		t.Fatalf("the agent's wallet holds %d, want %d", got, 1_000_000-20*price)
	}
	if l, err := p.owner.Limits(context.Background(), "crowd"); err != nil || l.Daily.Used != "0.2" || l.Daily.Remaining != "0" {
		t.Fatalf("daily window %+v %v", l.Daily, err)
	}
}
