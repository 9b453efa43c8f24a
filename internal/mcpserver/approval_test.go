package mcpserver_test

import (
	"context"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/purserhq/purser/internal/mcpserver"
	"github.com/purserhq/purser/sdk"
)

// approveWhenAsked approves the first spend waiting for approval, once
// it appears, and returns its id on the channel.
func approveWhenAsked(t *testing.T, p *purser) <-chan string {
	t.Helper()
	done := make(chan string, 1)
	go func() {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			ap, err := sdk.Collect(p.owner.Approvals(context.Background()))
			if err == nil && len(ap) > 0 {
				time.Sleep(300 * time.Millisecond) // let the tool wait a little
				if _, err := p.owner.Approve(context.Background(), ap[0].SpendID); err != nil {
					t.Errorf("approve: %v", err)
				}
				done <- ap[0].SpendID
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		done <- ""
	}()
	return done
}

// TestWaitForApproval: a payment above the auto-approve threshold waits
// for the owner within the call, with progress notifications to a client
// that gave a progress token, and is paid once approved. A client that
// supports URL elicitation is offered the owner's approval page.
func TestWaitForApproval(t *testing.T) {
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
	key, _ := p.newAgent(t, m, "patient", `{"per_tx_auto":"0.10","per_tx_max":"1","daily":"5","rails":["x402","payout"]}`, 2_000_000)
	s := mcpserver.New(agentOf(t, p.url, key), mcpserver.Options{PollInterval: 100 * time.Millisecond,
		ApprovalURL: "https://purser.example/approvals/{spend_id}"})

	t.Run("progress", func(t *testing.T) {
		var progress atomic.Int64
		var lastMsg atomic.Value
		cs := connect(t, s, &mcp.ClientOptions{ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
			progress.Add(1)
			lastMsg.Store(r.Params.Message)
		}})
		approved := approveWhenAsked(t, p)
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "x402_fetch", Meta: mcp.Meta{"progressToken": "tok-1"},
			Arguments: map[string]any{"url": m.sellerURL + "/pricey", "wait_for_approval_seconds": 30, "idempotency_key": "wait-1"}})
		if err != nil {
			t.Fatal(err)
		}
		out := structured(t, cs, "x402_fetch", res)
		if id := <-approved; id == "" || str(out, "spend_id") != id {
			t.Fatalf("approved %q, result %v", id, out)
		}
		if res.IsError || str(out, "status") != "paid" || out["body"].(map[string]any)["content"] != "content of /pricey" {
			t.Fatalf("after approval: %v", out)
		}
		if progress.Load() == 0 {
			t.Fatal("no progress notification while waiting")
		}
		if msg, _ := lastMsg.Load().(string); !strings.Contains(msg, "approve") {
			t.Fatalf("progress message %q", msg)
		}
	})

	t.Run("url elicitation", func(t *testing.T) {
		var mu sync.Mutex
		var asked []*mcp.ElicitParams
		cs := connect(t, s, &mcp.ClientOptions{
			Capabilities: &mcp.ClientCapabilities{Elicitation: &mcp.ElicitationCapabilities{URL: &mcp.URLElicitationCapabilities{}}},
			ElicitationHandler: func(_ context.Context, r *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
				mu.Lock()
				asked = append(asked, r.Params)
				mu.Unlock()
				return &mcp.ElicitResult{Action: "accept"}, nil
			}})
		approved := approveWhenAsked(t, p)
		res, out := call(t, cs, "pay", map[string]any{"address": "0x000000000000000000000000000000000000bEEF", "amount": "0.50",
			"wait_for_approval_seconds": 30, "idempotency_key": "wait-pay-1"})
		id := <-approved
		if res.IsError || str(out, "status") != "paid" || str(out, "spend_id") != id || len(str(out, "transaction")) != 66 {
			t.Fatalf("payout after approval: %v", out)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(asked) != 1 || asked[0].Mode != "url" || asked[0].URL != "https://purser.example/approvals/"+id || asked[0].ElicitationID != id {
			t.Fatalf("elicitations %+v", asked)
		}
		if got := m.balance(t, common.HexToAddress("0x000000000000000000000000000000000000bEEF")); got != 500_000 {
			t.Fatalf("payee received %d", got)
		}
	})

	t.Run("not yet", func(t *testing.T) {
		cs := connect(t, s, nil)
		res, out := call(t, cs, "x402_fetch", map[string]any{"url": m.sellerURL + "/pricey", "wait_for_approval_seconds": 1})
		if res.IsError || str(out, "status") != "pending_approval" || !strings.HasPrefix(str(out, "approval_url"), "https://purser.example/approvals/spd_") {
			t.Fatalf("unapproved: %v", out)
		}
		id := str(out, "spend_id")
		if _, err := p.owner.Deny(ctx, id, "too dear"); err != nil {
			t.Fatal(err)
		}
		res, out = call(t, cs, "confirm", map[string]any{"spend_id": id})
		if !res.IsError || str(out, "status") != "refused" {
			t.Fatalf("confirm after a denial: %v", out)
		}
	})
}
