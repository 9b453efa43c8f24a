package spendtest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/purserhq/purser/internal/spend"
)

// SignRail is a test rail shaped like x402: its Preparer takes payee and
// amount from the agent's rail request (the "offer"), its Signer produces
// an instrument, and its Reconciler reports scripted outcomes. It counts
// signatures so tests can check that a spend keeps one instrument.
type SignRail struct {
	Clock *Clock
	mu    sync.Mutex
	signs map[string]int
	seq   int
	// Outcomes maps a spend id to what Reconcile reports (default pending).
	Outcomes map[string]spend.ExecResult
}

// SignOffer is SignRail's rail request.
type SignOffer struct {
	PayTo  string `json:"pay_to"`
	Amount string `json:"amount"`
}

// Name returns "signrail".
func (r *SignRail) Name() string { return "signrail" }

// Prepare fills payee and amount from the offer.
func (r *SignRail) Prepare(_ context.Context, req *spend.AuthorizeRequest) error {
	var o SignOffer
	if err := json.Unmarshal(req.RailRequest, &o); err != nil || o.PayTo == "" || o.Amount == "" {
		return spend.Errorf(spend.CodeInvalidRequest, "signrail needs an offer with pay_to and amount")
	}
	req.Payee, req.Amount = o.PayTo, o.Amount
	return nil
}

// Sign returns a fresh instrument on every call (as a real signer with a
// random nonce would), valid for a minute.
func (r *SignRail) Sign(_ context.Context, s *spend.Spend) (string, json.RawMessage, time.Time, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.signs == nil {
		r.signs = map[string]int{}
	}
	r.signs[s.ID]++
	r.seq++
	ref := fmt.Sprintf("n%d", r.seq)
	return ref, json.RawMessage(fmt.Sprintf(`{"nonce":%q}`, ref)), r.Clock.Now().Add(time.Minute), nil
}

// Reconcile reports the scripted outcome.
func (r *SignRail) Reconcile(_ context.Context, s *spend.Spend) (spend.ExecResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if res, ok := r.Outcomes[s.ID]; ok {
		return res, nil
	}
	return spend.ExecResult{Outcome: spend.OutcomePending}, nil
}

// Script sets what Reconcile reports for a spend.
func (r *SignRail) Script(id string, res spend.ExecResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Outcomes == nil {
		r.Outcomes = map[string]spend.ExecResult{}
	}
	r.Outcomes[id] = res
}

// Signs returns how many times Sign ran for a spend.
func (r *SignRail) Signs(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.signs[id]
}
