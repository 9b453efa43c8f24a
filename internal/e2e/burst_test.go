package e2e

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/purserhq/purser/internal/app"
	"github.com/purserhq/purser/sdk"
)

// TestBurstOneAgentAllAnswered: 500 concurrent authorizations of one agent
// whose daily budget fits 100 of them. Every request is answered, exactly
// 100 are allowed, the rest are refused for the budget, and the books and
// the audit chain agree.
func TestBurstOneAgentAllAnswered(t *testing.T) {
	t.Parallel()
	// The per-agent request rate would refuse most of a burst of 500 at
	// once; this test is about the budget under concurrency.
	n := startApp(t, app.Config{NoAgentRate: true})
	ctx := context.Background()
	c := n.agentClient(t, n.newAgent(t, "burst", `{"per_tx_max":"1","daily":"1"}`))
	before := n.verify(t)

	const total, fits = 500, 100
	type result struct {
		sp  *sdk.Spend
		err error
	}
	results := make([]result, total)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range total {
		wg.Go(func() {
			<-start
			sp, err := c.Authorize(ctx, sdk.AuthorizeRequest{Rail: "custom", Payee: payee, Amount: "0.01"})
			results[i] = result{sp, err}
		})
	}
	close(start)
	wg.Wait()

	allowed, denied := 0, 0
	ids := map[string]bool{}
	for i, r := range results {
		var ae *sdk.Error
		switch {
		case r.err == nil && r.sp.Status == sdk.StatusAuthorized:
			allowed++
		case errors.As(r.err, &ae) && ae.Status == 403 && ae.Code == "spend_denied":
			if !slices.Contains(ae.Reasons(), "daily_budget_exceeded") {
				t.Errorf("request %d: refused for %v, want daily_budget_exceeded", i, ae.Reasons())
			}
			denied++
		case r.err == nil:
			t.Errorf("request %d: answered %s, want authorized or spend_denied", i, r.sp.Status)
			continue
		default:
			t.Errorf("request %d: %v (want an HTTP answer: 201 or 403 spend_denied)", i, r.err)
			continue
		}
		if r.sp == nil || r.sp.SpendID == "" || ids[r.sp.SpendID] {
			t.Errorf("request %d: missing or duplicate spend id %+v", i, r.sp)
		} else {
			ids[r.sp.SpendID] = true
		}
	}
	if allowed != fits || denied != total-fits {
		t.Errorf("allowed %d, denied %d; want %d and %d", allowed, denied, fits, total-fits)
	}
	l := n.limits(t, "burst")
	if l.Daily == nil || micro(t, l.Daily.Used) != 1_000_000 || micro(t, l.Daily.Remaining) != 0 {
		t.Errorf("daily window %+v, want 1 used, 0 remaining", l.Daily)
	}
	after := n.verify(t)
	if after.HeadSeq != before.HeadSeq+total {
		t.Errorf("audit head went from %d to %d, want one event per decision (+%d)", before.HeadSeq, after.HeadSeq, total)
	}
}
