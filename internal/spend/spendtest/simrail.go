package spendtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/purserhq/purser/internal/spend"
)

// SimRail is the simulation's rail that moves money, shaped like the
// payout rail: it signs an instrument (which the pipeline commits before
// anyone uses it), executes it idempotently and reconciles from its own
// ledger. That ledger is the ground truth of what was paid, which the
// auditor compares with the store. Outcomes depend on the amount only, so
// a replay agrees with the first call.
type SimRail struct {
	Clock *Clock
	// Committed reads a spend as committed (the raw store, past any
	// injected faults); Sign uses it to check that no instrument exists
	// for a spend that is not authorized.
	Committed func(ctx context.Context, id string) (*spend.Spend, error)

	mu         sync.Mutex
	seq        int
	inst       map[string]*simInstrument // ref → instrument
	paid       map[string]*big.Int       // spend id → amount that moved
	violations []string
}

type simInstrument struct {
	spendID    string
	amount     *big.Int
	validUntil time.Time
	used       bool // the money moved
	cancelled  bool // it can never move
}

// simValidity is how long an instrument can be used.
const simValidity = 10 * time.Minute

var _ interface {
	spend.Signer
	spend.Executor
	spend.Reconciler
} = (*SimRail)(nil)

// Name returns "simrail".
func (r *SimRail) Name() string { return "simrail" }

// Sign makes a fresh instrument for s.
func (r *SimRail) Sign(ctx context.Context, s *spend.Spend) (string, json.RawMessage, time.Time, error) {
	if r.Committed != nil {
		cur, err := r.Committed(ctx, s.ID)
		switch {
		case errors.Is(err, spend.ErrNotFound):
			r.violate("signed spend %s, which is not committed", s.ID)
		case err == nil && (cur.Status == spend.StatusPendingApproval || cur.Status == spend.StatusDenied):
			// Never authorized. (Any other status was authorized first; a
			// racing expiry may have ended it since, and then the pipeline
			// drops this instrument unused.)
			r.violate("signed spend %s, which is %s", s.ID, cur.Status)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inst == nil {
		r.inst, r.paid = map[string]*simInstrument{}, map[string]*big.Int{}
	}
	r.seq++
	ref := fmt.Sprintf("sim%d", r.seq)
	until := r.Clock.Now().Add(simValidity)
	r.inst[ref] = &simInstrument{spendID: s.ID, amount: new(big.Int).Set(s.Amount), validUntil: until}
	return ref, json.RawMessage(fmt.Sprintf(`{"ref":%q}`, ref)), until, nil
}

// Execute uses the spend's committed instrument. By amount: a fifth is
// refused (nothing moves), a fifth times out before sending (nothing
// moves, the outcome is unknown), a fifth times out after the money moved
// (unknown), the rest pay.
func (r *SimRail) Execute(_ context.Context, s *spend.Spend) (spend.ExecResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	in := r.inst[s.RailRef]
	if in == nil || in.spendID != s.ID {
		r.violateLocked("executed spend %s with instrument %q, which the rail never signed for it", s.ID, s.RailRef)
		return spend.ExecResult{Outcome: spend.OutcomeFailed}, errors.New("no such instrument")
	}
	if res, done := r.finalLocked(in); done {
		return res, nil
	}
	// The sim's amounts are whole cents of a 6-decimal asset.
	switch new(big.Int).Mod(new(big.Int).Div(in.amount, big.NewInt(10_000)), big.NewInt(5)).Int64() {
	case 0:
		in.cancelled = true
		return spend.ExecResult{Outcome: spend.OutcomeFailed, Reasons: []string{"transfer_reverted"}}, nil
	case 1:
		return spend.ExecResult{}, errors.New("timed out before sending")
	case 2:
		r.payLocked(in)
		return spend.ExecResult{}, errors.New("timed out waiting for the receipt")
	}
	r.payLocked(in)
	return spend.ExecResult{Outcome: spend.OutcomeCaptured, Captured: in.amount, Ref: s.RailRef}, nil
}

// Reconcile reports what the ledger shows.
func (r *SimRail) Reconcile(_ context.Context, s *spend.Spend) (spend.ExecResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	in := r.inst[s.RailRef]
	if in == nil {
		return spend.ExecResult{}, fmt.Errorf("no instrument %q", s.RailRef)
	}
	if res, done := r.finalLocked(in); done {
		return res, nil
	}
	return spend.ExecResult{Outcome: spend.OutcomePending}, nil
}

// finalLocked returns the outcome of an instrument that is used, cancelled
// or expired unused (which it then cancels: it can never move money).
func (r *SimRail) finalLocked(in *simInstrument) (spend.ExecResult, bool) {
	switch {
	case in.used:
		return spend.ExecResult{Outcome: spend.OutcomeCaptured, Captured: in.amount}, true
	case in.cancelled:
		return spend.ExecResult{Outcome: spend.OutcomeFailed, Reasons: []string{"transfer_reverted"}}, true
	case !r.Clock.Now().Before(in.validUntil):
		in.cancelled = true
		return spend.ExecResult{Outcome: spend.OutcomeFailed, Reasons: []string{"authorization_expired_unused"}}, true
	}
	return spend.ExecResult{}, false
}

func (r *SimRail) payLocked(in *simInstrument) {
	if prev, ok := r.paid[in.spendID]; ok {
		r.violateLocked("spend %s paid twice (%s, then %s)", in.spendID, prev, in.amount)
	}
	in.used = true
	r.paid[in.spendID] = in.amount
}

// Paid returns a copy of the ledger: spend id → amount that moved.
func (r *SimRail) Paid() map[string]*big.Int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]*big.Int, len(r.paid))
	for k, v := range r.paid {
		out[k] = v
	}
	return out
}

// Violations returns what the rail saw that must never happen.
func (r *SimRail) Violations() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.violations...)
}

func (r *SimRail) violate(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.violateLocked(format, args...)
}

func (r *SimRail) violateLocked(format string, args ...any) {
	r.violations = append(r.violations, fmt.Sprintf(format, args...))
}
