package spendtest

import (
	"encoding/json"
	"errors"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/spend"
)

const offerPayee = "0x000000000000000000000000000000000000bEEF"

func signReq(amount, key string) spend.AuthorizeRequest {
	o, _ := json.Marshal(SignOffer{PayTo: offerPayee, Amount: amount})
	// Payee and amount are the offer's, whatever the request claims.
	return spend.AuthorizeRequest{Rail: "signrail", Payee: "0xclaimed", Amount: "999", RailRequest: o, IdempotencyKey: key}
}

func signRailOf(t *testing.T, e *Env) *SignRail {
	t.Helper()
	r, ok := e.Svc.Rail("signrail").(*SignRail)
	if !ok {
		t.Fatal("signrail is not configured")
	}
	return r
}

func auditCount(t *testing.T, e *Env, action, subject string) int {
	t.Helper()
	evs, err := e.Svc.AuditTail(bg, 10000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range evs {
		if ev.Action == action && ev.Subject == subject {
			n++
		}
	}
	return n
}

// testSignOnce: a signing rail's spend gets exactly one recorded
// instrument, however many requests race to sign it.
func testSignOnce(t *testing.T, e *Env) {
	a := e.NewAgent("signer", `{"per_tx_auto":"0.10","per_tx_max":"1","daily":"10"}`)
	rail := signRailOf(t, e)
	sp := a.MustAuthorize(signReq("0.05", "k1"))
	if sp.Status != spend.StatusAuthorized || sp.RailRef == "" || !strings.EqualFold(sp.Payee, offerPayee) || sp.Amount.Int64() != 50000 {
		t.Fatalf("green spend on a signing rail: %s ref %q", Describe(sp), sp.RailRef)
	}
	if !sp.ExpiresAt.Equal(e.Clock.Now().Add(time.Minute)) {
		t.Fatalf("signed spend expires at %v, want the instrument's expiry", sp.ExpiresAt)
	}
	again := a.MustAuthorize(signReq("0.05", "k1"))
	if again.ID != sp.ID || again.RailRef != sp.RailRef || string(again.RailData) != string(sp.RailData) || rail.Signs(sp.ID) != 1 {
		t.Fatalf("replay: %s ref %q (signed %d times)", Describe(again), again.RailRef, rail.Signs(sp.ID))
	}
	if _, err := a.Authorize(signReq("0.06", "k1")); spend.CodeOf(err) != spend.CodeIdempotencyConflict {
		t.Fatalf("same key, other offer: %v", err)
	}
	// Agents cannot settle a signing rail's spend by their word.
	if _, err := e.Svc.Release(bg, a.Caller(nil), sp.ID); spend.CodeOf(err) != spend.CodeInvalidState {
		t.Fatalf("agent released a signed spend: %v", err)
	}
	if _, err := e.Svc.Capture(bg, a.Caller(nil), sp.ID, ""); spend.CodeOf(err) != spend.CodeInvalidState {
		t.Fatalf("agent captured a signed spend: %v", err)
	}
	// Yellow, approved, then confirmed by 16 racing requests: one instrument.
	y := a.MustAuthorize(signReq("0.50", "k2"))
	if y.Status != spend.StatusPendingApproval || y.RailRef != "" || rail.Signs(y.ID) != 0 {
		t.Fatalf("yellow spend signed before approval: %s", Describe(y))
	}
	if _, err := e.Svc.Approve(bg, y.ID); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	refs := make([]string, 16)
	errs := make([]error, 16)
	for i := range refs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := e.Svc.Confirm(bg, a.Caller(nil), y.ID)
			errs[i] = err
			if err == nil {
				refs[i] = got.RailRef
			}
		}()
	}
	wg.Wait()
	for i := range refs {
		if errs[i] != nil || refs[i] == "" || refs[i] != refs[0] {
			t.Fatalf("confirm %d: ref %q (first %q), %v", i, refs[i], refs[0], errs[i])
		}
	}
	if n := auditCount(t, e, "spend.sign", "spend:"+y.ID); n != 1 {
		t.Fatalf("%d spend.sign events for one spend", n)
	}
	mustVerify(t, e)
}

// testSignedReconcile: signed spends are never expired blindly; the rail
// decides, and the budget follows.
func testSignedReconcile(t *testing.T, e *Env) {
	a := e.NewAgent("recon", `{"per_tx_auto":"1","per_tx_max":"1","daily":"10"}`)
	rail := signRailOf(t, e)
	used := a.MustAuthorize(signReq("0.30", "u"))
	unused := a.MustAuthorize(signReq("0.20", "n"))
	open := a.MustAuthorize(signReq("0.10", "o"))
	e.Clock.Advance(time.Hour) // far past the instruments' and holds' expiry
	if n, err := e.Svc.ExpireDue(bg, 100); err != nil || n != 0 {
		t.Fatalf("ExpireDue expired %d signed spends (%v)", n, err)
	}
	rail.Script(used.ID, spend.ExecResult{Outcome: spend.OutcomeCaptured, Captured: big.NewInt(300000), Ref: "0xtx"})
	rail.Script(unused.ID, spend.ExecResult{Outcome: spend.OutcomeFailed})
	n, err := e.Svc.ReconcileDue(bg, 1) // one spend per page: every page is read
	if err != nil || n != 2 {
		t.Fatalf("ReconcileDue = %d, %v; want 2", n, err)
	}
	for id, want := range map[string]spend.Status{used.ID: spend.StatusCaptured, unused.ID: spend.StatusReleased, open.ID: spend.StatusAuthorized} {
		sp, err := e.Svc.GetSpend(bg, id)
		if err != nil || sp.Status != want {
			t.Fatalf("spend %s: %s, %v; want %s", id, Describe(sp), err, want)
		}
	}
	if got, _ := e.Svc.GetSpend(bg, used.ID); got.RailRef != "0xtx" {
		t.Fatalf("captured spend's rail ref %q, want the tx", got.RailRef)
	}
	if u := usedToday(t, e, "recon"); u != usd("400000") {
		t.Fatalf("used %s, want 0.30 captured + 0.10 held", u)
	}
	rail.Script(open.ID, spend.ExecResult{Outcome: spend.OutcomeUnknown})
	if sp, err := e.Svc.Reconcile(bg, open.ID); err != nil || sp.Status != spend.StatusUnknown {
		t.Fatalf("reconcile to unknown: %s %v", Describe(sp), err)
	}
	if n, err := e.Svc.ReconcileDue(bg, 100); err != nil || n != 0 {
		t.Fatalf("unknown stays unknown without news: %d %v", n, err)
	}
	mustVerify(t, e)
}

// testDryRun: a dry run reports the verdict and stores nothing.
func testDryRun(t *testing.T, e *Env) {
	a := e.NewAgent("dry", `{"per_tx_auto":"0.10","per_tx_max":"1","daily":"10"}`)
	for amount, want := range map[string]spend.Status{"0.05": spend.StatusAuthorized, "0.50": spend.StatusPendingApproval, "2": spend.StatusDenied} {
		r := signReq(amount, "same-key")
		r.DryRun = true
		out, err := a.Authorize(r)
		if err != nil || !out.DryRun || out.Spend.Status != want || out.Spend.ID != "" {
			t.Fatalf("dry run of %s: %+v %v; want %s", amount, out, err, want)
		}
	}
	if u := usedToday(t, e, "dry"); u != usd("0") {
		t.Fatalf("dry runs used %s", u)
	}
	if list, err := e.Svc.ListSpends(bg, "dry", nil, 10); err != nil || len(list) != 0 {
		t.Fatalf("dry runs stored %d spends (%v)", len(list), err)
	}
	if rail := signRailOf(t, e); rail.seq != 0 {
		t.Fatal("a dry run signed")
	}
}

// testPinnedPayees: with pin_payees, a host keeps the payee it was first
// paid to; a seller that switches payTo is refused.
func testPinnedPayees(t *testing.T, e *Env) {
	a := e.NewAgent("pinned", `{"per_tx_auto":"1","per_tx_max":"1","daily":"10","pin_payees":true}`)
	r := Custom("0.05")
	r.Host = "api.seller.com"
	if sp := a.MustAuthorize(r); sp.Status != spend.StatusAuthorized {
		t.Fatalf("first payment to a host: %s", Describe(sp))
	}
	r.Payee = "0x000000000000000000000000000000000000bEEF"
	sp := a.MustAuthorize(r)
	if sp.Status != spend.StatusDenied || !slices.Contains(sp.Reasons, "payee_pin_mismatch") {
		t.Fatalf("switched payee: %s", Describe(sp))
	}
	r.Host = "other.seller.com"
	if sp := a.MustAuthorize(r); sp.Status != spend.StatusAuthorized {
		t.Fatalf("another host with its own payee: %s", Describe(sp))
	}
}

// testSignRechecks: what an owner approved is signed only if, at the
// moment of signing and under the agent's lock, the agent is still
// active, the current mandate still allows it and the hold has not
// expired (the reproduced attack: a payout approved, the agent frozen,
// then confirmed and paid).
func testSignRechecks(t *testing.T, e *Env) {
	a := e.NewAgent("rechecked", `{"per_tx_auto":"0.05","per_tx_max":"1","daily":"10"}`)
	rail := signRailOf(t, e)
	approved := func(key string) *spend.Spend {
		t.Helper()
		sp := a.MustAuthorize(signReq("0.50", key))
		if sp.Status != spend.StatusPendingApproval {
			t.Fatalf("want pending: %s", Describe(sp))
		}
		if sp, err := e.Svc.Approve(bg, sp.ID); err != nil || sp.Status != spend.StatusAuthorized || sp.RailRef != "" {
			t.Fatalf("approve: %s %v", Describe(sp), err)
		}
		return sp
	}
	confirm := func(sp *spend.Spend) error {
		_, err := e.Svc.Confirm(bg, a.Caller(nil), sp.ID)
		return err
	}
	deniedFor := func(err error, reason string) bool {
		var se *spend.Error
		if !errors.As(err, &se) || se.Code != spend.CodeSpendDenied {
			return false
		}
		rs, _ := se.Details["reasons"].([]string)
		return slices.Contains(rs, reason)
	}

	// The mandate was tightened after the approval.
	lowered := approved("lowered")
	if _, err := e.Svc.SetMandate(bg, "rechecked", []byte(`{"per_tx_auto":"0.05","per_tx_max":"0.10","daily":"10"}`), -1); err != nil {
		t.Fatal(err)
	}
	if err := confirm(lowered); !deniedFor(err, "per_tx_cap_exceeded") {
		t.Fatalf("confirm under a mandate that now refuses it: %v; want spend_denied per_tx_cap_exceeded", err)
	}
	if got, _ := e.Svc.GetSpend(bg, lowered.ID); got.Status != spend.StatusDenied || got.RailRef != "" || rail.Signs(lowered.ID) > 1 {
		t.Fatalf("after the refused confirm: %s ref %q", Describe(got), got.RailRef)
	}
	if _, err := e.Svc.SetMandate(bg, "rechecked", []byte(`{"per_tx_auto":"0.05","per_tx_max":"1","daily":"10"}`), -1); err != nil {
		t.Fatal(err)
	}

	// The hold expired before the confirm (no sweep ran yet).
	late := approved("late")
	e.Clock.Advance(16 * time.Minute)
	if err := confirm(late); spend.CodeOf(err) != spend.CodeInvalidState {
		t.Fatalf("confirm after the hold expired: %v; want invalid_state", err)
	}
	if got, _ := e.Svc.GetSpend(bg, late.ID); got.Status != spend.StatusExpired || got.RailRef != "" {
		t.Fatalf("after the late confirm: %s", Describe(got))
	}

	// Frozen after the approval: the freeze releases it, nothing is signed.
	frozen := approved("frozen")
	if _, err := e.Svc.Freeze(bg, "rechecked"); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.Svc.GetSpend(bg, frozen.ID); got.Status != spend.StatusReleased || !slices.Equal(got.Reasons, []string{"agent_frozen"}) {
		t.Fatalf("approved spend after the freeze: %s; want released agent_frozen", Describe(got))
	}
	if err := confirm(frozen); !deniedFor(err, "agent_frozen") {
		t.Fatalf("confirm after the freeze: %v; want spend_denied agent_frozen", err)
	}
	if _, err := a.Authorize(signReq("0.50", "frozen")); !deniedFor(err, "agent_frozen") {
		t.Fatalf("replay after the freeze: %v; want spend_denied agent_frozen", err)
	}
	for _, id := range []string{lowered.ID, late.ID, frozen.ID} {
		if n := rail.Signs(id); n > 1 {
			t.Fatalf("spend %s signed %d times", id, n)
		}
		if n := auditCount(t, e, "spend.sign", "spend:"+id); n != 0 {
			t.Fatalf("spend %s has %d spend.sign events; want none", id, n)
		}
	}
	if got := usedToday(t, e, "rechecked"); got != usd("0") {
		t.Fatalf("refused spends still hold %s", got)
	}
	mustVerify(t, e)
}
