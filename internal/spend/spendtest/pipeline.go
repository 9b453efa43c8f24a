package spendtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/store/storetest"
)

// RunPipeline runs the spend pipeline's behaviour tests against stores
// made by newStore: what must hold whatever the engine.
func RunPipeline(t *testing.T, newStore storetest.NewStore) {
	tests := map[string]func(t *testing.T, e *Env){
		"ConcurrentBudgetIsExact": testConcurrentBudget,
		"ApprovalFlow":            testApprovalFlow,
		"FreezeIsInstant":         testFreeze,
		"Idempotency":             testIdempotency,
		"Authentication":          testAuthentication,
		"CaptureAndRelease":       testCaptureRelease,
		"HoldsExpire":             testExpiry,
		"AgentSeesOnlyOwnSpends":  testIsolation,
		"ExecutorRailPaysOnce":    testExecutorOnce,
		"BadInputChangesNothing":  testBadInput,
		"AuditChainVerifies":      testAuditVerifies,
		"SignerRailSignsOnce":     testSignOnce,
		"SignedSpendsReconcile":   testSignedReconcile,
		"DryRunChangesNothing":    testDryRun,
		"PinnedPayees":            testPinnedPayees,
		"RefusalsAggregated":      testRefusalsAggregated,
		"SigningRechecks":         testSignRechecks,
		"RequestRateBeforeWrites": testRequestRate,
	}
	storetest.RunParallel(t, tests, func(t *testing.T) *Env {
		sr := &SignRail{}
		e := NewEnv(t, newStore(t), &Rail{}, sr)
		sr.Clock = e.Clock
		return e
	})
}

var bg = context.Background()

func usedToday(t *testing.T, e *Env, ref string) string {
	t.Helper()
	l, err := e.Svc.OwnerLimits(bg, ref)
	if err != nil {
		t.Fatal(err)
	}
	return usd(l.DailyUsedUSD.String())
}

// usd turns micro-USD digits into a decimal for messages.
func usd(micro string) string { return micro + "µ$" }

func mustVerify(t *testing.T, e *Env) {
	t.Helper()
	if _, err := e.Svc.VerifyAudit(bg); err != nil {
		t.Fatalf("audit chain: %v", err)
	}
}

// testConcurrentBudget: 500 concurrent authorizations against a budget
// that fits 100 of them yield exactly 100 holds.
func testConcurrentBudget(t *testing.T, e *Env) {
	a := e.NewAgent("burst", `{"per_tx_max":"1","daily":"1.00"}`)
	const n = 500
	var wg sync.WaitGroup
	var mu sync.Mutex
	counts := map[spend.Status]int{}
	var errs []error
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := a.Authorize(Custom("0.01"))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			counts[out.Spend.Status]++
			if out.Spend.Status == spend.StatusDenied && !slices.Equal(out.Spend.Reasons, []string{"daily_budget_exceeded"}) {
				errs = append(errs, fmt.Errorf("denied with %v", out.Spend.Reasons))
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d requests failed, first: %v", len(errs), errs[0])
	}
	if counts[spend.StatusAuthorized] != 100 || counts[spend.StatusDenied] != 400 {
		t.Fatalf("500 concurrent 0.01 spends against 1.00: %v, want 100 authorized and 400 denied", counts)
	}
	if got := usedToday(t, e, "burst"); got != usd("1000000") {
		t.Fatalf("daily used = %s, want 1.00", got)
	}
	mustVerify(t, e)
}

func testApprovalFlow(t *testing.T, e *Env) {
	a := e.NewAgent("yellow", `{"per_tx_auto":"0.05","per_tx_max":"0.50","daily":"1.00"}`)
	sp := a.MustAuthorize(Custom("0.20"))
	if sp.Status != spend.StatusPendingApproval || !slices.Equal(sp.Reasons, []string{"above_auto_approve"}) {
		t.Fatalf("0.20 above auto 0.05: %s", Describe(sp))
	}
	if got := usedToday(t, e, "yellow"); got != usd("200000") {
		t.Fatalf("a pending spend must hold its amount: used %s", got)
	}
	pending, err := e.Svc.ListSpends(bg, "", []spend.Status{spend.StatusPendingApproval}, 10)
	if err != nil || len(pending) != 1 || pending[0].ID != sp.ID {
		t.Fatalf("pending list = %v, %v", pending, err)
	}
	got, err := e.Svc.Approve(bg, sp.ID)
	if err != nil || got.Status != spend.StatusAuthorized {
		t.Fatalf("approve: %s, %v", Describe(got), err)
	}
	if _, err := e.Svc.Approve(bg, sp.ID); spend.CodeOf(err) != spend.CodeInvalidState {
		t.Fatalf("approving twice: %v, want invalid_state", err)
	}
	polled, err := e.Svc.AgentGetSpend(bg, a.Caller(nil), sp.ID)
	if err != nil || polled.Status != spend.StatusAuthorized {
		t.Fatalf("poll after approval: %s, %v", Describe(polled), err)
	}
	sp2 := a.MustAuthorize(Custom("0.30"))
	denied, err := e.Svc.Deny(bg, sp2.ID, "not today")
	if err != nil || denied.Status != spend.StatusDenied || !slices.Equal(denied.Reasons, []string{"owner_denied"}) {
		t.Fatalf("deny: %s, %v", Describe(denied), err)
	}
	if got := usedToday(t, e, "yellow"); got != usd("200000") {
		t.Fatalf("a denied approval must release its hold: used %s", got)
	}
	// An approval that the current mandate no longer allows is refused.
	sp3 := a.MustAuthorize(Custom("0.40"))
	if _, err := e.Svc.SetMandate(bg, "yellow", []byte(`{"per_tx_auto":"0.05","per_tx_max":"0.30","daily":"1.00"}`), -1); err != nil {
		t.Fatal(err)
	}
	got, err = e.Svc.Approve(bg, sp3.ID)
	if err != nil || got.Status != spend.StatusDenied || !slices.Contains(got.Reasons, "per_tx_cap_exceeded") {
		t.Fatalf("approving a spend above the new cap: %s, %v", Describe(got), err)
	}
	mustVerify(t, e)
}

func testFreeze(t *testing.T, e *Env) {
	a := e.NewAgent("icy", `{"per_tx_auto":"0.05","per_tx_max":"1","daily":"10"}`)
	other := e.NewAgent("other", `{"per_tx_max":"1","daily":"10"}`)
	pending := a.MustAuthorize(Custom("0.50"))
	if pending.Status != spend.StatusPendingApproval {
		t.Fatalf("want pending, got %s", Describe(pending))
	}
	ag, err := e.Svc.Freeze(bg, "icy")
	if err != nil || ag.Status != spend.AgentFrozen {
		t.Fatalf("freeze: %v %v", ag, err)
	}
	sp := a.MustAuthorize(Custom("0.01"))
	if sp.Status != spend.StatusDenied || !slices.Equal(sp.Reasons, []string{"agent_frozen"}) {
		t.Fatalf("spend after freeze: %s", Describe(sp))
	}
	got, err := e.Svc.GetSpend(bg, pending.ID)
	if err != nil || got.Status != spend.StatusDenied || !slices.Equal(got.Reasons, []string{"agent_frozen"}) {
		t.Fatalf("pending approval after freeze: %s, %v", Describe(got), err)
	}
	if got := usedToday(t, e, "icy"); got != usd("0") {
		t.Fatalf("cancelled approval still holds %s", got)
	}
	if sp := other.MustAuthorize(Custom("0.01")); sp.Status != spend.StatusAuthorized {
		t.Fatalf("freezing one agent touched another: %s", Describe(sp))
	}
	if _, err := e.Svc.Unfreeze(bg, "icy"); err != nil {
		t.Fatal(err)
	}
	if sp := a.MustAuthorize(Custom("0.01")); sp.Status != spend.StatusAuthorized {
		t.Fatalf("after unfreeze: %s", Describe(sp))
	}
	if _, err := e.Svc.Revoke(bg, "icy"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authorize(Custom("0.01")); spend.CodeOf(err) != spend.CodeAgentKeyRevoked {
		t.Fatalf("spend of a revoked agent: err %v, want agent_key_revoked", err)
	}
	if _, err := e.Svc.Unfreeze(bg, "icy"); spend.CodeOf(err) != spend.CodeInvalidState {
		t.Fatalf("unfreeze of a revoked agent: %v", err)
	}
	mustVerify(t, e)
}

func testIdempotency(t *testing.T, e *Env) {
	a := e.NewAgent("idem", `{"per_tx_max":"1","daily":"10"}`)
	// First use of a key, raced by 100 requests: one spend, the same for all.
	race := Custom("0.10")
	race.IdempotencyKey = "raced-key"
	{
		var wg sync.WaitGroup
		outs := make([]*spend.Outcome, 100)
		errs := make([]error, 100)
		for i := range outs {
			wg.Add(1)
			go func() { defer wg.Done(); outs[i], errs[i] = a.Authorize(race) }()
		}
		wg.Wait()
		fresh := 0
		for i := range outs {
			if errs[i] != nil || outs[i].Spend.ID != outs[0].Spend.ID {
				t.Fatalf("raced first use %d: %+v %v", i, outs[i], errs[i])
			}
			if !outs[i].Replayed {
				fresh++
			}
		}
		if fresh != 1 {
			t.Fatalf("%d requests created the spend; want 1", fresh)
		}
		if _, err := e.Svc.Release(bg, a.Caller(nil), outs[0].Spend.ID); err != nil {
			t.Fatal(err)
		}
	}
	r := Custom("0.10")
	r.IdempotencyKey = "order-42"
	first := a.MustAuthorize(r)
	var wg sync.WaitGroup
	outs := make([]*spend.Outcome, 20)
	errs := make([]error, 20)
	for i := range outs {
		wg.Add(1)
		go func() { defer wg.Done(); outs[i], errs[i] = a.Authorize(r) }()
	}
	wg.Wait()
	for i := range outs {
		if errs[i] != nil || !outs[i].Replayed || outs[i].Spend.ID != first.ID {
			t.Fatalf("replay %d: %+v %v", i, outs[i], errs[i])
		}
	}
	if got := usedToday(t, e, "idem"); got != usd("100000") {
		t.Fatalf("replays held more: %s", got)
	}
	r2 := r
	r2.Amount = "0.11"
	_, err := a.Authorize(r2)
	var se *spend.Error
	if !errors.As(err, &se) || se.Code != spend.CodeIdempotencyConflict || se.Details["field"] != "amount" {
		t.Fatalf("same key, other amount: %v, want idempotency_conflict naming amount", err)
	}
	r3 := r
	r3.Payee = "0x0000000000000000000000000000000000000001"
	if _, err := a.Authorize(r3); !errors.As(err, &se) || se.Details["field"] != "payee" {
		t.Fatalf("same key, other payee: %v", err)
	}
}

func testAuthentication(t *testing.T, e *Env) {
	a := e.NewAgent("auth", `{"per_tx_max":"1","daily":"10"}`)
	c := a.Caller(Custom("0.01"))
	if _, err := e.Svc.Authorize(bg, c, Custom("0.01")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Svc.Authorize(bg, c, Custom("0.01")); spend.CodeOf(err) != spend.CodeNonceReplayed {
		t.Fatalf("replayed nonce: %v", err)
	}
	unknown := *a
	unknown.Address = spend.Checksum(RandomAddress())
	if _, err := unknown.Authorize(Custom("0.01")); spend.CodeOf(err) != spend.CodeAgentUnknown {
		t.Fatalf("unknown key: %v", err)
	}
	newAddr := RandomAddress()
	if _, err := e.Svc.RotateKey(bg, "auth", newAddr); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authorize(Custom("0.01")); spend.CodeOf(err) != spend.CodeAgentKeyRevoked {
		t.Fatalf("old key after rotation: %v", err)
	}
	rotated := *a
	rotated.Address = spend.Checksum(newAddr)
	if sp := rotated.MustAuthorize(Custom("0.01")); sp.Status != spend.StatusAuthorized {
		t.Fatalf("new key: %s", Describe(sp))
	}
}

func testCaptureRelease(t *testing.T, e *Env) {
	a := e.NewAgent("cap", `{"per_tx_max":"1","daily":"10"}`)
	sp := a.MustAuthorize(Custom("0.50"))
	if _, err := e.Svc.Capture(bg, a.Caller(nil), sp.ID, "0.51"); spend.CodeOf(err) != spend.CodeCaptureExceedsHold {
		t.Fatalf("capture above hold: %v", err)
	}
	got, err := e.Svc.Capture(bg, a.Caller(nil), sp.ID, "0.30")
	if err != nil || got.Status != spend.StatusCaptured || got.Captured.Int64() != 300000 {
		t.Fatalf("capture 0.30: %s %v", Describe(got), err)
	}
	if used := usedToday(t, e, "cap"); used != usd("300000") {
		t.Fatalf("after partial capture used %s, want 0.30", used)
	}
	if again, err := e.Svc.Capture(bg, a.Caller(nil), sp.ID, "0.30"); err != nil || again.Status != spend.StatusCaptured {
		t.Fatalf("a repeated capture report must be a no-op: %v", err)
	}
	if _, err := e.Svc.Release(bg, a.Caller(nil), sp.ID); spend.CodeOf(err) != spend.CodeInvalidState {
		t.Fatalf("release after capture: %v", err)
	}
	sp2 := a.MustAuthorize(Custom("0.25"))
	if got, err := e.Svc.Release(bg, a.Caller(nil), sp2.ID); err != nil || got.Status != spend.StatusReleased {
		t.Fatalf("release: %v", err)
	}
	if used := usedToday(t, e, "cap"); used != usd("300000") {
		t.Fatalf("after release used %s, want 0.30", used)
	}
	mustVerify(t, e)
}

func testExpiry(t *testing.T, e *Env) {
	a := e.NewAgent("exp", `{"per_tx_auto":"0.10","per_tx_max":"1","daily":"10"}`)
	held := a.MustAuthorize(Custom("0.05"))
	pending := a.MustAuthorize(Custom("0.50"))
	e.Clock.Advance(16 * time.Minute) // past the hold, not the approval window
	if n, err := e.Svc.ExpireDue(bg, 100); err != nil || n != 1 {
		t.Fatalf("ExpireDue = %d, %v; want 1", n, err)
	}
	if got, _ := e.Svc.GetSpend(bg, held.ID); got.Status != spend.StatusExpired {
		t.Fatalf("unused hold after its TTL: %s", Describe(got))
	}
	e.Clock.Advance(time.Hour)
	if _, err := e.Svc.Approve(bg, pending.ID); spend.CodeOf(err) != spend.CodeInvalidState {
		t.Fatalf("approving after the window: %v", err)
	}
	if got, _ := e.Svc.GetSpend(bg, pending.ID); got.Status != spend.StatusExpired {
		t.Fatalf("pending spend after its window: %s", Describe(got))
	}
	if used := usedToday(t, e, "exp"); used != usd("0") {
		t.Fatalf("expired holds still count: %s", used)
	}
	mustVerify(t, e)
}

func testIsolation(t *testing.T, e *Env) {
	a := e.NewAgent("alice", `{"per_tx_max":"1","daily":"10"}`)
	b := e.NewAgent("mallory", `{"per_tx_max":"1","daily":"10"}`)
	sp := a.MustAuthorize(Custom("0.10"))
	if _, err := e.Svc.AgentGetSpend(bg, b.Caller(nil), sp.ID); spend.CodeOf(err) != spend.CodeSpendNotFound {
		t.Fatalf("another agent read a spend: %v", err)
	}
	if _, err := e.Svc.Capture(bg, b.Caller(nil), sp.ID, ""); spend.CodeOf(err) != spend.CodeSpendNotFound {
		t.Fatalf("another agent captured a spend: %v", err)
	}
	if _, err := e.Svc.Release(bg, b.Caller(nil), sp.ID); spend.CodeOf(err) != spend.CodeSpendNotFound {
		t.Fatalf("another agent released a spend: %v", err)
	}
	l, err := e.Svc.AgentLimits(bg, b.Caller(nil))
	if err != nil || l.Agent.ID != b.ID || l.DailyUsedUSD.Sign() != 0 {
		t.Fatalf("limits of mallory: %+v %v", l, err)
	}
}

func testExecutorOnce(t *testing.T, e *Env) {
	a := e.NewAgent("exec", `{"per_tx_auto":"0.10","per_tx_max":"1","daily":"10"}`)
	r := spend.AuthorizeRequest{Rail: "testrail", Payee: "0x000000000000000000000000000000000000dEaD", Amount: "0.05", IdempotencyKey: "k1"}
	sp := a.MustAuthorize(r)
	if sp.Status != spend.StatusCaptured {
		t.Fatalf("green spend on an executing rail: %s", Describe(sp))
	}
	again := a.MustAuthorize(r)
	if again.ID != sp.ID {
		t.Fatal("replay made a new spend")
	}
	rail := railOf(t, e)
	if n := rail.Count(sp.ID); n != 1 {
		t.Fatalf("rail executed %d times for one intent", n)
	}
	// Yellow: executes only after approval and confirmation.
	r.IdempotencyKey, r.Amount = "k2", "0.50"
	y := a.MustAuthorize(r)
	if y.Status != spend.StatusPendingApproval || rail.Count(y.ID) != 0 {
		t.Fatalf("yellow spend executed before approval: %s", Describe(y))
	}
	if _, err := e.Svc.Confirm(bg, a.Caller(nil), y.ID); spend.CodeOf(err) != spend.CodeInvalidState {
		t.Fatalf("confirm before approval: %v", err)
	}
	if _, err := e.Svc.Approve(bg, y.ID); err != nil {
		t.Fatal(err)
	}
	done, err := e.Svc.Confirm(bg, a.Caller(nil), y.ID)
	if err != nil || done.Status != spend.StatusCaptured || rail.Count(y.ID) != 1 {
		t.Fatalf("confirm after approval: %s %v (executed %d)", Describe(done), err, rail.Count(y.ID))
	}
	if _, err := e.Svc.Confirm(bg, a.Caller(nil), y.ID); err != nil || rail.Count(y.ID) != 1 {
		t.Fatalf("second confirm executed again: %v", err)
	}
	// Failures release; unknown outcomes keep the hold.
	rail.Outcome = func(s *spend.Spend) (spend.ExecResult, error) {
		if s.Amount.Int64() == 10000 {
			return spend.ExecResult{Outcome: "failed"}, errors.New("seller said no")
		}
		return spend.ExecResult{}, errors.New("timeout")
	}
	r.IdempotencyKey, r.Amount = "k3", "0.01"
	if sp := a.MustAuthorize(r); sp.Status != spend.StatusReleased {
		t.Fatalf("failed execution: %s", Describe(sp))
	}
	r.IdempotencyKey, r.Amount = "k4", "0.02"
	if sp := a.MustAuthorize(r); sp.Status != spend.StatusUnknown {
		t.Fatalf("execution with unknown outcome: %s", Describe(sp))
	}
	if used := usedToday(t, e, "exec"); used != usd("570000") {
		t.Fatalf("used %s, want 0.05 + 0.50 captured + 0.02 unknown", used)
	}
	mustVerify(t, e)
}

func railOf(t *testing.T, e *Env) *Rail {
	t.Helper()
	r, ok := e.Svc.Rail("testrail").(*Rail)
	if !ok {
		t.Fatal("no test rail")
	}
	return r
}

func testBadInput(t *testing.T, e *Env) {
	a := e.NewAgent("bad", `{"per_tx_max":"1","daily":"10"}`)
	seq0, _, _ := e.Store.AuditHead(bg)
	cases := map[string]struct {
		r    spend.AuthorizeRequest
		code string
	}{
		"negative":      {Custom("-1"), "amount_negative"},
		"zero":          {Custom("0"), "amount_zero"},
		"over precise":  {Custom("0.0000001"), "amount_too_precise"},
		"overflow":      {Custom("1" + string(make([]byte, 0)) + "000000000000000000000000000000000000000000000000000000000000000000000000000000"), "amount_overflow"},
		"garbage":       {Custom("1e3"), "amount_invalid"},
		"unknown asset": {spend.AuthorizeRequest{Rail: "custom", Payee: "0xdead", Amount: "1", Asset: "DOGE"}, "asset_unknown"},
		"wrong network": {spend.AuthorizeRequest{Rail: "custom", Payee: "0xdead", Amount: "1", Network: "eip155:1"}, "network_unknown"},
		"unknown rail":  {spend.AuthorizeRequest{Rail: "wire", Payee: "0xdead", Amount: "1"}, spend.CodeRailUnknown},
		"no payee":      {spend.AuthorizeRequest{Rail: "custom", Amount: "1"}, spend.CodeInvalidRequest},
		"bad host":      {spend.AuthorizeRequest{Rail: "custom", Payee: "0xdead", Amount: "1", Host: "a b"}, spend.CodeInvalidRequest},
	}
	for name, c := range cases {
		if _, err := a.Authorize(c.r); spend.CodeOf(err) != c.code {
			t.Errorf("%s: err %v, want %s", name, err, c.code)
		}
	}
	if _, err := e.Svc.SetMandate(bg, "bad", []byte(`{"per_tx_max":"1","daily":"10","per_tx_mx":"5"}`), -1); err == nil {
		t.Error("a mandate with a misspelled field was accepted")
	}
	if _, err := e.Svc.SetMandate(bg, "bad", []byte(`{"per_tx_auto":"2","per_tx_max":"1"}`), -1); err == nil {
		t.Error("a mandate with auto-approve above the cap was accepted")
	}
	if seq, _, _ := e.Store.AuditHead(bg); seq != seq0 {
		t.Fatalf("bad input changed the audit chain: head %d → %d", seq0, seq)
	}
	if used := usedToday(t, e, "bad"); used != usd("0") {
		t.Fatalf("bad input held budget: %s", used)
	}
}

func testAuditVerifies(t *testing.T, e *Env) {
	a := e.NewAgent("aud", `{"per_tx_auto":"0.05","per_tx_max":"1","daily":"10"}`)
	a.MustAuthorize(Custom("0.01"))                    // authorize
	p := a.MustAuthorize(Custom("0.50"))               // request_approval
	a.MustAuthorize(Custom("5"))                       // deny
	if _, err := e.Svc.Approve(bg, p.ID); err != nil { // approve
		t.Fatal(err)
	}
	if _, err := e.Svc.Freeze(bg, "aud"); err != nil { // freeze
		t.Fatal(err)
	}
	if _, err := e.Svc.Checkpoint(bg); err != nil {
		t.Fatal(err)
	}
	res, err := e.Svc.VerifyAudit(bg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 6 || res.Checkpoints != 1 {
		t.Fatalf("verify: %+v, want 6 events (create, authorize, request_approval, deny, approve, freeze) and 1 checkpoint", res)
	}
	evs, err := e.Store.AuditEvents(bg, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, ev := range evs {
		actions = append(actions, ev.Action)
	}
	want := []string{"agent.create", "spend.authorize", "spend.request_approval", "spend.deny", "spend.approve", "agent.freeze"}
	if !slices.Equal(actions, want) {
		t.Fatalf("audit actions %v, want %v", actions, want)
	}
}

// testRefusalsAggregated is the reproduced attack: a frozen agent's 200
// requests left 200 audit events (and 200 denied spends). Now they leave
// no row each, and one agent.refusals event per agent and minute.
func testRefusalsAggregated(t *testing.T, e *Env) {
	a := e.NewAgent("noisy", `{"per_tx_max":"1","daily":"10"}`)
	if _, err := e.Svc.Freeze(bg, "noisy"); err != nil {
		t.Fatal(err)
	}
	head := func() int64 {
		seq, _, err := e.Store.AuditHead(bg)
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	before := head()
	for i := range 200 {
		sp := a.MustAuthorize(Custom("0.01"))
		if sp.Status != spend.StatusDenied || !slices.Equal(sp.Reasons, []string{"agent_frozen"}) || sp.ID != "" {
			t.Fatalf("request %d of a frozen agent: %s; want denied agent_frozen, not stored", i, Describe(sp))
		}
	}
	if got := head(); got != before {
		t.Fatalf("200 refused requests wrote %d audit events before the flush; want 0", got-before)
	}
	if l, err := e.Svc.ListSpends(bg, "noisy", nil, 1000); err != nil || len(l) != 0 {
		t.Fatalf("a frozen agent's refusals were stored as %d spends (%v)", len(l), err)
	}
	if err := e.Svc.FlushRefusals(bg, false); err != nil { // the minute is not over: nothing yet
		t.Fatal(err)
	}
	if got := head(); got != before {
		t.Fatalf("flush before the minute ended wrote %d events", got-before)
	}
	e.Clock.Advance(time.Minute)
	if err := e.Svc.FlushRefusals(bg, false); err != nil {
		t.Fatal(err)
	}
	if got := head(); got != before+1 {
		t.Fatalf("after the minute: %d events; want exactly 1", got-before)
	}
	evs, err := e.Svc.AuditTail(bg, 1)
	if err != nil || len(evs) != 1 {
		t.Fatal(err)
	}
	var d struct {
		Count   int64            `json:"count"`
		Reasons map[string]int64 `json:"reasons"`
		First   struct {
			Signature  string `json:"signature"`
			BodySHA256 string `json:"body_sha256"`
		} `json:"first_request"`
	}
	if err := json.Unmarshal(evs[0].Details, &d); err != nil || evs[0].Action != "agent.refusals" || d.Count != 200 ||
		d.Reasons["agent_frozen"] != 200 || d.First.Signature == "" || len(d.First.BodySHA256) != 64 {
		t.Fatalf("refusals event %s %s (%v)", evs[0].Action, evs[0].Details, err)
	}
	mustVerify(t, e)
}

// testRequestRate: an agent over its request rate is refused before
// anything is written (not even its nonce), and its refusals are
// aggregated like a frozen agent's.
func testRequestRate(t *testing.T, e *Env) {
	e.Svc.SetRequestRate(spend.RequestRate{PerSecond: 1, Burst: 5})
	a := e.NewAgent("hasty", `{"per_tx_max":"1","daily":"10"}`)
	other := e.NewAgent("calm", `{"per_tx_max":"1","daily":"10"}`)
	seq0, _, _ := e.Store.AuditHead(bg)
	refused := 0
	for range 20 {
		c := a.Caller(Custom("0.01"))
		if err := e.Svc.Admit(c); err != nil {
			if spend.CodeOf(err) != spend.CodeTooManyRequests {
				t.Fatalf("admit: %v", err)
			}
			refused++
			continue
		}
		if _, err := e.Svc.Authorize(bg, c, Custom("0.01")); err != nil {
			t.Fatal(err)
		}
	}
	if refused != 15 {
		t.Fatalf("%d of 20 requests at once refused; want 15 (burst 5)", refused)
	}
	if err := e.Svc.Admit(other.Caller(Custom("0.01"))); err != nil {
		t.Fatalf("one agent's rate limited another: %v", err)
	}
	seq1, _, _ := e.Store.AuditHead(bg)
	if seq1-seq0 != 5 {
		t.Fatalf("%d audit events for 5 admitted requests", seq1-seq0)
	}
	e.Clock.Advance(2 * time.Second)
	if err := e.Svc.Admit(a.Caller(Custom("0.01"))); err != nil {
		t.Fatalf("after the bucket refilled: %v", err)
	}
	e.Clock.Advance(time.Minute)
	if err := e.Svc.FlushRefusals(bg, false); err != nil {
		t.Fatal(err)
	}
	evs, err := e.Svc.AuditTail(bg, 1)
	if err != nil || len(evs) != 1 || evs[0].Action != "agent.refusals" || !strings.Contains(string(evs[0].Details), `"too_many_requests":15`) {
		t.Fatalf("refusal event: %+v %v", evs, err)
	}
	mustVerify(t, e)
}
