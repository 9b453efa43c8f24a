package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/app"
	"github.com/purserhq/purser/internal/mandate"
	"github.com/purserhq/purser/sdk"
)

// TestAgentRateBeforeWrites: over its request rate an agent gets 429
// too_many_requests and nothing is written for it; another agent is not
// slowed down.
func TestAgentRateBeforeWrites(t *testing.T) {
	t.Parallel()
	n := startApp(t, app.Config{AgentRate: mandate.Rate{Count: 2, Per: time.Minute}}) // bursts of 4
	ctx := context.Background()
	c := n.agentClient(t, n.newAgent(t, "hasty", `{"per_tx_max":"1","daily":"10"}`))
	other := n.agentClient(t, n.newAgent(t, "calm", `{"per_tx_max":"1","daily":"10"}`))
	req := sdk.AuthorizeRequest{Rail: "custom", Payee: payee, Amount: "0.01"}
	for i := range 4 {
		if _, err := c.Authorize(ctx, req); err != nil {
			t.Fatalf("request %d within the burst: %v", i, err)
		}
	}
	before := n.verify(t)
	for i := range 20 {
		_, err := c.Authorize(ctx, req)
		var ae *sdk.Error
		if !errors.As(err, &ae) || ae.Status != 429 || ae.Code != "too_many_requests" {
			t.Fatalf("request %d over the rate: %v; want 429 too_many_requests", i, err)
		}
	}
	if after := n.verify(t); after.HeadSeq != before.HeadSeq {
		t.Fatalf("20 refused requests moved the audit head from %d to %d", before.HeadSeq, after.HeadSeq)
	}
	if _, err := other.Authorize(ctx, req); err != nil {
		t.Fatalf("another agent was limited too: %v", err)
	}
}
