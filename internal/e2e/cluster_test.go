package e2e

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // storetest.PostgresDSN opens the database through database/sql

	"github.com/purserhq/purser/internal/store/storetest"
	"github.com/purserhq/purser/sdk"
)

// TestTwoServersSharePostgres runs two purser processes on one data
// directory and one PostgreSQL schema: the budget holds across both, a
// freeze on one is seen at once by the other, and the shared audit chain
// verifies.
func TestTwoServersSharePostgres(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	dir := t.TempDir()
	pa := startServe(t, dir, dsn, "")
	pb := startServe(t, dir, dsn, "")
	a, b := newNode(t, pa.url, dir), newNode(t, pb.url, dir)
	ctx := context.Background()

	key := a.newAgent(t, "shared", `{"per_tx_max":"1","daily":"1.00"}`)
	agents := []*sdk.Agent{a.agentClient(t, key), b.agentClient(t, key)}
	// Both nodes see the agent.
	if _, err := b.owner.Agent(ctx, "shared"); err != nil {
		t.Fatalf("node B does not see the agent created on node A: %v", err)
	}

	const total, fits = 300, 100
	errs := make([]error, total)
	sps := make([]*sdk.Spend, total)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range total {
		wg.Go(func() {
			<-start
			sps[i], errs[i] = agents[i%2].Authorize(ctx, sdk.AuthorizeRequest{Rail: "custom", Payee: payee, Amount: "0.01"})
		})
	}
	close(start)
	wg.Wait()
	allowed := [2]int{}
	for i, err := range errs {
		var ae *sdk.Error
		switch {
		case err == nil && sps[i].Status == sdk.StatusAuthorized:
			allowed[i%2]++
		case errors.As(err, &ae) && ae.Code == "spend_denied" && slices.Contains(ae.Reasons(), "daily_budget_exceeded"):
		default:
			t.Errorf("request %d (node %c): %v %+v; want authorized or spend_denied daily_budget_exceeded", i, 'A'+i%2, err, sps[i])
		}
	}
	if allowed[0]+allowed[1] != fits {
		t.Errorf("allowed %d (A %d, B %d) of %d, want exactly %d", allowed[0]+allowed[1], allowed[0], allowed[1], total, fits)
	}
	for _, n := range []*node{a, b} {
		if l := n.limits(t, "shared"); micro(t, l.Daily.Used) != 1_000_000 {
			t.Errorf("daily used on %s: %s, want 1", n.url, l.Daily.Used)
		}
	}

	// A pending approval on a second agent, made on B before the freeze.
	key2 := a.newAgent(t, "shared2", `{"per_tx_auto":"0.001","per_tx_max":"1","daily":"1"}`)
	pend, err := b.agentClient(t, key2).Authorize(ctx, sdk.AuthorizeRequest{Rail: "custom", Payee: payee, Amount: "0.01"})
	if !isPending(err) || pend.Status != sdk.StatusPendingApproval {
		t.Fatalf("second agent's spend: %+v, %v; want pending_approval", pend, err)
	}

	// Give the first agent budget again, so that only the freeze can
	// refuse its next spend.
	if _, err := a.owner.SetMandate(ctx, "shared", []byte(`{"per_tx_max":"1","daily":"2.00"}`), nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"shared", "shared2"} {
		if _, err := a.owner.Freeze(ctx, name); err != nil {
			t.Fatalf("freeze %s via A: %v", name, err)
		}
	}
	_, err = agents[1].Authorize(ctx, sdk.AuthorizeRequest{Rail: "custom", Payee: payee, Amount: "0.01"})
	var ae *sdk.Error
	if !errors.As(err, &ae) || ae.Code != "spend_denied" || !slices.Contains(ae.Reasons(), "agent_frozen") {
		t.Errorf("authorize via B right after the freeze via A: %v, want spend_denied agent_frozen", err)
	}
	got, err := b.owner.Spend(ctx, pend.SpendID)
	if err != nil || got.Status != sdk.StatusDenied {
		t.Errorf("pending spend after the freeze: %+v, %v; want denied", got, err)
	}
	if apps, err := sdk.Collect(b.owner.Approvals(ctx)); err != nil || len(apps) != 0 {
		t.Errorf("approvals after the freeze: %d, %v; want none", len(apps), err)
	}
	if l := b.limits(t, "shared2"); micro(t, l.Daily.Used) != 0 {
		t.Errorf("second agent's daily used after its approval was cancelled: %s, want 0", l.Daily.Used)
	}

	vb := b.verify(t)
	va := a.verify(t)
	if va.HeadSeq != vb.HeadSeq || va.HeadHash != vb.HeadHash {
		t.Errorf("nodes disagree on the audit head: A %d %s, B %d %s", va.HeadSeq, va.HeadHash, vb.HeadSeq, vb.HeadHash)
	}
}
