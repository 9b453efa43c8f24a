package webhook_test

import (
	"net/http"
	"testing"

	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/spend/spendtest"
	"github.com/purserhq/purser/internal/webhook"
)

// TestApprovalAndBudgetEvents: a spend above the auto-approve limit makes
// approval.requested with the portal link; the owner's decision makes
// approval.resolved carrying the deciding audit event; crossing 80 % of
// the daily budget makes one budget.threshold, and spends beyond it none.
func TestApprovalAndBudgetEvents(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := newReceiver(t, func(int, delivery) int { return http.StatusOK })
	f.create(webhook.CreateParams{URL: r.URL, AllowPrivate: true})
	a := f.env.NewAgent("shopper", `{"per_tx_auto":"3","per_tx_max":"10","daily":"10"}`)
	s1 := a.MustAuthorize(spendtest.Custom("5")) // needs approval; 50 % held
	if s1.Status != spend.StatusPendingApproval {
		t.Fatalf("spend %s", spendtest.Describe(s1))
	}
	if _, err := f.env.Svc.Approve(ctx, s1.ID); err != nil {
		t.Fatal(err)
	}
	a.MustAuthorize(spendtest.Custom("1"))   // 60 %
	a.MustAuthorize(spendtest.Custom("2.5")) // 85 %: crosses 80 %
	a.MustAuthorize(spendtest.Custom("1"))   // 95 %: no second alert
	s5 := a.MustAuthorize(spendtest.Custom("0.5"))
	if _, err := f.env.Svc.Release(ctx, a.Caller(nil), s5.ID); err != nil { // an agent's own release is not a payment failure
		t.Fatal(err)
	}
	want := []string{webhook.TypeApprovalRequested, webhook.TypeApprovalResolved, webhook.TypeBudgetThreshold}
	f.until("3 deliveries", func() bool { return len(r.accepted()) >= 3 })
	for range 3 {
		f.hooks.Pass(ctx) //nolint:errcheck
	}
	got := r.accepted()
	if len(got) != len(want) {
		for _, d := range got {
			t.Logf("%s", d.body)
		}
		t.Fatalf("%d deliveries; want %v", len(got), want)
	}
	for i, d := range got {
		p := decode(t, d.body)
		if p.Type != want[i] {
			t.Fatalf("delivery %d is %s; want %s", i, p.Type, want[i])
		}
		sp, _ := p.Data["spend"].(map[string]any)
		switch p.Type {
		case webhook.TypeApprovalRequested:
			if p.Data["portal_url"] != "https://purser.example/approvals/"+s1.ID || sp["amount"] != "5" || sp["status"] != "pending_approval" {
				t.Errorf("approval.requested data %v", p.Data)
			}
		case webhook.TypeApprovalResolved:
			ap, _ := p.Data["approval"].(map[string]any)
			det, _ := ap["details"].(map[string]any)
			if p.Data["decision"] != "approved" || ap["action"] != "spend.approve" || det["spend_id"] != s1.ID || ap["hash"] == "" {
				t.Errorf("approval.resolved data %v", p.Data)
			}
		case webhook.TypeBudgetThreshold:
			b, _ := p.Data["budget"].(map[string]any)
			if b["window"] != "daily" || b["limit_usd"] != "10" || b["used_usd"] != "8.5" || b["percent"] != float64(80) {
				t.Errorf("budget.threshold data %v", p.Data)
			}
		}
	}
}

// TestPaymentEventsAndFilter: a rail's failure makes payment.failed, an
// outcome it cannot tell makes payment.unknown; an endpoint that asked
// for agent.revoked only gets that.
func TestPaymentEventsAndFilter(t *testing.T) {
	t.Parallel()
	rail := &spendtest.Rail{Outcome: func(s *spend.Spend) (spend.ExecResult, error) {
		if s.Memo == "fail" {
			return spend.ExecResult{Outcome: spend.OutcomeFailed, Reasons: []string{"insufficient_funds"}}, nil
		}
		return spend.ExecResult{Outcome: spend.OutcomeUnknown}, nil
	}}
	f := newFixture(t, rail)
	all := newReceiver(t, nil)
	only := newReceiver(t, nil)
	f.create(webhook.CreateParams{URL: all.URL, AllowPrivate: true})
	f.create(webhook.CreateParams{URL: only.URL, AllowPrivate: true, Events: []string{webhook.TypeAgentRevoked}})
	a := f.env.NewAgent("payer", `{"per_tx_max":"10"}`)
	req := spendtest.Custom("1")
	req.Rail, req.Memo = "testrail", "fail"
	a.MustAuthorize(req)
	req.Memo = "?"
	a.MustAuthorize(req)
	if _, err := f.env.Svc.Revoke(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	f.until("deliveries", func() bool { return len(all.accepted()) == 3 && len(only.accepted()) == 1 })
	for i, want := range []string{webhook.TypePaymentFailed, webhook.TypePaymentUnknown, webhook.TypeAgentRevoked} {
		if p := decode(t, all.accepted()[i].body); p.Type != want {
			t.Errorf("delivery %d: %s; want %s", i, p.Type, want)
		}
	}
	p := decode(t, all.accepted()[0].body)
	sp, _ := p.Data["spend"].(map[string]any)
	if rs, _ := sp["reasons"].([]any); len(rs) != 1 || rs[0] != "insufficient_funds" || sp["memo"] != "fail" {
		t.Errorf("payment.failed spend %v", sp)
	}
	if p := decode(t, only.accepted()[0].body); p.Type != webhook.TypeAgentRevoked {
		t.Errorf("filtered endpoint got %s", p.Type)
	}
}
