package portal

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/spend/spendtest"
)

// seeded is a portal with a few agents and two weeks of their spending,
// as an owner would find it.
type seeded struct {
	research, travel, ops *spendtest.Agent
	pending               []*spend.Spend
}

// seed fills b with agents, two weeks of paid spends (one day at a time
// on the fake clock) and two payments waiting for approval.
func seed(t testing.TB, b *bundle) *seeded {
	t.Helper()
	e := b.env
	s := &seeded{
		research: e.NewAgent("research-bot", `{"daily":"200","per_tx_auto":"10","per_tx_max":"100"}`),
		travel:   e.NewAgent("travel-agent", `{"daily":"500","per_tx_auto":"60","approve_new_payees":false}`),
		ops:      e.NewAgent("ops-assistant", `{"daily":"50","per_tx_auto":"5"}`),
	}
	frozen := e.NewAgent("data-pipeline", `{"daily":"20"}`)
	ctx := context.Background()
	pay := func(a *spendtest.Agent, amount, host, memo string) {
		r := spendtest.Custom(amount)
		r.Host, r.Memo = host, memo
		sp := a.MustAuthorize(r)
		if sp.Status != spend.StatusAuthorized {
			t.Fatalf("seed spend %s: %s", amount, spendtest.Describe(sp))
		}
		if _, err := e.Svc.Capture(ctx, a.Caller(nil), sp.ID, amount); err != nil {
			t.Fatalf("seed capture: %v", err)
		}
	}
	for d := range 14 {
		pay(s.research, fmt.Sprintf("%d.%02d", 3+d%5, 10*d%100), "api.papers.example", "search result pages")
		if d%2 == 0 {
			pay(s.research, "9.50", "data.market.example", "quarterly filings dataset")
		}
		if d%3 != 1 {
			pay(s.travel, fmt.Sprintf("%d", 20+7*(d%6)), "book.trains.example", "train ticket")
		}
		pay(s.ops, fmt.Sprintf("1.%02d", 5*d), "status.cloud.example", "uptime checks")
		if d < 4 {
			pay(frozen, "2", "etl.example", "nightly load")
		}
		e.Clock.Advance(24 * time.Hour)
	}
	if _, err := e.Svc.Freeze(ctx, frozen.ID); err != nil {
		t.Fatal(err)
	}
	pay(s.research, "4.20", "api.papers.example", "search result pages")
	for _, p := range []struct {
		a            *spendtest.Agent
		amount, host string
		memo         string
	}{
		{s.research, "42", "data.market.example", "Full-text archive of 2025 climate filings for the client report"},
		{s.travel, "185", "book.flights.example", "Return flight Berlin–Lisbon, 14–17 January"},
	} {
		r := spendtest.Custom(p.amount)
		r.Host, r.Memo = p.host, p.memo
		sp := p.a.MustAuthorize(r)
		if sp.Status != spend.StatusPendingApproval {
			t.Fatalf("seed pending: %s", spendtest.Describe(sp))
		}
		s.pending = append(s.pending, sp)
	}
	return s
}
