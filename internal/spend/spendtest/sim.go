package spendtest

import (
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/mandate"
	"github.com/purserhq/purser/internal/spend"
)

// RunSimulation drives the pipeline with a seeded random workload —
// intents, approvals, denials, rail failures and unknown outcomes,
// captures, releases, freezes, mandate changes and clock jumps — and
// after every step checks the invariants with Auditor, which recomputes
// everything from the stored spends and the audit chain rather than
// trusting the service's own counters. It prints the seed on failure.
func RunSimulation(t *testing.T, e *Env, seed uint64, steps int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	defer func() {
		if t.Failed() {
			t.Logf("simulation seed %d, %d steps (rerun with -simseed %d)", seed, steps, seed)
		}
	}()
	rail := railOf(t, e)
	rail.Outcome = func(s *spend.Spend) (spend.ExecResult, error) {
		switch s.Amount.Int64() % 7 { // deterministic per amount, so replays agree
		case 0:
			return spend.ExecResult{Outcome: "failed"}, errors.New("rail refused")
		case 1:
			return spend.ExecResult{}, errors.New("rail timed out")
		case 2:
			half := new(big.Int).Div(s.Amount, big.NewInt(2))
			return spend.ExecResult{Outcome: "captured", Captured: half, Ref: "partial"}, nil
		}
		return spend.ExecResult{Outcome: "captured", Captured: s.Amount, Ref: "full"}, nil
	}
	mandates := []string{
		`{"per_tx_auto":"0.50","per_tx_max":"2","daily":"10","lifetime":"40"}`,
		`{"per_tx_auto":"0.10","per_tx_max":"1","daily":"3","approve_new_payees":true}`,
		`{"per_tx_max":"5","daily":"8","rate":"20/1h"}`,
		`{"per_tx_auto":"1","per_tx_max":"1","lifetime":"15","payees":["0x00000000000000000000000000000000000000a1","0x00000000000000000000000000000000000000a2"]}`,
	}
	var agents []*Agent
	for i := range 4 {
		agents = append(agents, e.NewAgent(fmt.Sprintf("sim-%d", i), mandates[i]))
	}
	payees := []string{"0x00000000000000000000000000000000000000a1", "0x00000000000000000000000000000000000000a2", "0x00000000000000000000000000000000000000a3"}
	var ids []string
	aud := &Auditor{Env: e}
	for step := range steps {
		a := agents[rng.IntN(len(agents))]
		switch k := rng.IntN(100); {
		case k < 45:
			r := spend.AuthorizeRequest{Rail: "custom", Payee: payees[rng.IntN(len(payees))],
				Amount: fmt.Sprintf("%d.%02d", rng.IntN(3), rng.IntN(100))}
			if r.Amount == "0.00" {
				r.Amount = "0.01"
			}
			if rng.IntN(3) == 0 {
				r.Rail = "testrail"
			}
			if rng.IntN(4) == 0 {
				r.IdempotencyKey = fmt.Sprintf("k%d", rng.IntN(20))
			}
			out, err := a.Authorize(r)
			if err != nil && spend.CodeOf(err) != spend.CodeIdempotencyConflict {
				t.Fatalf("step %d: authorize %+v: %v", step, r, err)
			}
			if err == nil {
				ids = append(ids, out.Spend.ID)
			}
		case k < 55 && len(ids) > 0:
			id := ids[rng.IntN(len(ids))]
			if rng.IntN(3) == 0 {
				_, err := e.Svc.Deny(bg, id, "sim")
				expectStateErr(t, step, err)
			} else {
				_, err := e.Svc.Approve(bg, id)
				expectStateErr(t, step, err)
			}
		case k < 65 && len(ids) > 0:
			id := ids[rng.IntN(len(ids))]
			owner := agentOf(agents, e, id)
			if owner == nil {
				continue
			}
			var err error
			switch rng.IntN(3) {
			case 0:
				_, err = e.Svc.Capture(bg, owner.Caller(nil), id, "")
			case 1:
				_, err = e.Svc.Release(bg, owner.Caller(nil), id)
			default:
				_, err = e.Svc.Confirm(bg, owner.Caller(nil), id)
			}
			expectStateErr(t, step, err)
		case k < 70:
			if rng.IntN(2) == 0 {
				_, err := e.Svc.Freeze(bg, a.Name)
				expectStateErr(t, step, err)
			} else {
				_, err := e.Svc.Unfreeze(bg, a.Name)
				expectStateErr(t, step, err)
			}
		case k < 73:
			if _, err := e.Svc.SetMandate(bg, a.Name, []byte(mandates[rng.IntN(len(mandates))]), -1); err != nil {
				t.Fatalf("step %d: set mandate: %v", step, err)
			}
		case k < 90:
			e.Clock.Advance(time.Duration(rng.IntN(20)) * time.Minute)
			if _, err := e.Svc.ExpireDue(bg, 1000); err != nil {
				t.Fatalf("step %d: expire: %v", step, err)
			}
		default:
			e.Clock.Advance(time.Duration(rng.IntN(26)) * time.Hour) // crosses days
		}
		if step%25 == 0 || step == steps-1 {
			if err := aud.Check(); err != nil {
				t.Fatalf("step %d: invariant broken: %v", step, err)
			}
		}
	}
}

func expectStateErr(t *testing.T, step int, err error) {
	t.Helper()
	switch spend.CodeOf(err) {
	case "", spend.CodeInvalidState, spend.CodeSpendNotFound, spend.CodeSpendDenied: // denied: a frozen agent's confirm
		if err != nil && spend.CodeOf(err) == "" {
			t.Fatalf("step %d: %v", step, err)
		}
	default:
		t.Fatalf("step %d: unexpected %v", step, err)
	}
}

func agentOf(agents []*Agent, e *Env, id string) *Agent {
	sp, err := e.Svc.GetSpend(bg, id)
	if err != nil {
		return nil
	}
	for _, a := range agents {
		if a.ID == sp.AgentID {
			return a
		}
	}
	return nil
}

// Auditor checks the pipeline's invariants from the raw store.
type Auditor struct{ Env *Env }

// Check recomputes every budget window from the spends, compares it with
// the stored counters and the mandate limits, checks that every spend's
// audit history is one creation event plus at most one terminal event that
// agrees with its status, and verifies the chain.
func (a *Auditor) Check() error {
	e := a.Env
	var errs []error
	err := e.Store.Read(bg, func(tx spend.Tx) error {
		agents, err := tx.AgentList(bg)
		if err != nil {
			return err
		}
		for _, ag := range agents {
			spends, err := tx.SpendList(bg, &spend.SpendListParams{AgentID: ag.ID, Limit: 1_000_000})
			if err != nil {
				return err
			}
			windows := map[string]*big.Int{"lifetime": new(big.Int)}
			for _, sp := range spends {
				var counted *big.Int
				switch {
				case sp.Status.Holding():
					counted = sp.AmountUSD
				case sp.Status == spend.StatusCaptured:
					counted = sp.CapturedUSD
					if sp.Captured == nil || sp.Captured.Cmp(sp.Amount) > 0 || sp.CapturedUSD.Cmp(sp.AmountUSD) > 0 {
						errs = append(errs, fmt.Errorf("spend %s captured %v of %v", sp.ID, sp.Captured, sp.Amount))
					}
				default:
					continue
				}
				day := "day:" + sp.DayKey
				if windows[day] == nil {
					windows[day] = new(big.Int)
				}
				windows[day].Add(windows[day], counted)
				windows["lifetime"].Add(windows["lifetime"], counted)
			}
			for w, want := range windows {
				got, err := tx.UsageGet(bg, ag.ID, []string{w})
				if err != nil {
					return err
				}
				if got[0].Cmp(want) != 0 {
					errs = append(errs, fmt.Errorf("agent %s window %s: counter %s, spends add up to %s", ag.Name, w, got[0], want))
				}
			}
			// Limits: no window may exceed the tightest limit any mandate
			// version ever set (a mandate lowered later may leave older
			// spends above the new limit, which is allowed).
			var maxDaily, maxLife *big.Int
			for v := int64(1); v <= ag.MandateVersion; v++ {
				rec, err := tx.MandateGet(bg, ag.ID, v)
				if err != nil {
					return err
				}
				m, err := mandate.Decode(rec.Body)
				if err != nil {
					return err
				}
				maxDaily, maxLife = maxOf(maxDaily, m.Daily), maxOf(maxLife, m.Lifetime)
			}
			for w, used := range windows {
				limit := maxDaily
				if w == "lifetime" {
					limit = maxLife
				}
				if limit != nil && used.Cmp(limit) > 0 {
					errs = append(errs, fmt.Errorf("agent %s window %s: %s committed above every limit it ever had (%s)", ag.Name, w, used, limit))
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := a.checkHistories(); err != nil {
		errs = append(errs, err)
	}
	if _, err := e.Svc.VerifyAudit(bg); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// unlimited is used where a mandate version had no limit for a window.
var unlimited = new(big.Int).Lsh(big.NewInt(1), 300)

func maxOf(cur, v *big.Int) *big.Int {
	if v == nil {
		v = unlimited
	}
	if cur == nil || v.Cmp(cur) > 0 {
		return v
	}
	return cur
}

var terminalActions = map[string]bool{"spend.capture": true, "spend.release": true, "spend.expire": true, "spend.cancel": true}

func (a *Auditor) checkHistories() error {
	evs, err := a.Env.Store.AuditEvents(bg, 0, 10_000_000)
	if err != nil {
		return err
	}
	created := map[string]int{}
	terminal := map[string]int{}
	for _, ev := range evs {
		id, ok := strings.CutPrefix(ev.Subject, "spend:")
		if !ok {
			continue
		}
		switch {
		case ev.Action == "spend.authorize" || ev.Action == "spend.request_approval" || (ev.Action == "spend.deny" && ev.Actor.Type == "agent"):
			created[id]++
		case terminalActions[ev.Action] || ev.Action == "spend.deny":
			terminal[id]++
		}
	}
	var errs []error
	err = a.Env.Store.Read(bg, func(tx spend.Tx) error {
		spends, err := tx.SpendList(bg, &spend.SpendListParams{Limit: 1_000_000})
		if err != nil {
			return err
		}
		for _, sp := range spends {
			if created[sp.ID] != 1 {
				errs = append(errs, fmt.Errorf("spend %s has %d creation events", sp.ID, created[sp.ID]))
			}
			wantTerm := 0
			if sp.Status.Terminal() && !(sp.Status == spend.StatusDenied && terminal[sp.ID] == 0) {
				wantTerm = 1
			}
			if terminal[sp.ID] != wantTerm {
				errs = append(errs, fmt.Errorf("spend %s (%s) has %d terminal events, want %d", sp.ID, sp.Status, terminal[sp.ID], wantTerm))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return errors.Join(errs...)
}
