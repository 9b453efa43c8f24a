package spend

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/purserhq/purser/internal/audit"
)

// ReconcileOptions bound the background reconciler (ReconcileScheduler).
type ReconcileOptions struct {
	// Workers is how many spends are asked about at once (default 4): a
	// node holding thousands of open signed spends must not open
	// thousands of requests to its chain endpoint every few seconds.
	Workers int
	// BackoffMin is how long a spend with no news waits before it is
	// asked again (default 5 s); each answer without news doubles the
	// wait, up to BackoffMax (default 5 min).
	BackoffMin, BackoffMax time.Duration
}

func (o ReconcileOptions) withDefaults() ReconcileOptions {
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = 5 * time.Second
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = max(5*time.Minute, o.BackoffMin)
	}
	return o
}

// ReconcileScheduler asks the rails about open spends with bounded
// concurrency and a per-spend exponential backoff. Its schedule lives in
// memory: a restart (or another node) asks every open spend again once,
// which is safe since settling re-reads each spend under its agent's lock.
type ReconcileScheduler struct {
	s   *Service
	opt ReconcileOptions

	mu    sync.Mutex
	retry map[string]retryAt // spend id → when to ask again
}

type retryAt struct {
	at    time.Time
	delay time.Duration
}

// NewReconcileScheduler returns a scheduler with an empty schedule.
func (s *Service) NewReconcileScheduler(opt ReconcileOptions) *ReconcileScheduler {
	return &ReconcileScheduler{s: s, opt: opt.withDefaults(), retry: map[string]retryAt{}}
}

// ReconcileDue asks the rails what became of every spend whose outcome
// is open on the rail (ReconcileScheduler.Pass with a fresh schedule:
// every open spend is asked once).
func (s *Service) ReconcileDue(ctx context.Context, pageSize int) (int, error) {
	return s.NewReconcileScheduler(ReconcileOptions{}).Pass(ctx, pageSize)
}

// Pass asks the rails what became of the spends whose outcome is open on
// the rail (signed instruments not yet settled: authorized with a rail
// reference, and unknown outcomes), read page (of pageSize) after page,
// oldest first, skipping those whose backoff has not passed. It settles
// what the rails can prove and returns how many spends changed. Safe to
// run on every node at once: settle re-reads each spend under its
// agent's lock.
func (r *ReconcileScheduler) Pass(ctx context.Context, pageSize int) (int, error) {
	s := r.s
	now := s.now()
	var (
		mu   sync.Mutex
		n    int
		errs []error
	)
	work := make(chan *Spend)
	var wg sync.WaitGroup
	for range r.opt.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sp := range work {
				changed, err := s.reconcile(ctx, sp)
				r.schedule(sp, changed, now)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else if changed {
					n++
				}
				mu.Unlock()
			}
		}()
	}
	seen := map[string]bool{}
	var listErr error
	p := &SpendListParams{Statuses: []Status{StatusAuthorized, StatusUnknown}, Signed: true, Limit: pageSize}
	for ctx.Err() == nil {
		var open []*Spend
		listErr = s.read(ctx, func(tx Tx) error {
			var err error
			open, err = tx.SpendList(ctx, p)
			return err
		})
		if listErr != nil {
			break
		}
		for _, sp := range open {
			seen[sp.ID] = true
			if r.due(sp.ID, now) {
				work <- sp
			}
		}
		if len(open) < p.Limit {
			break
		}
		last := open[len(open)-1]
		p.AfterCreated, p.AfterID = last.CreatedAt, last.ID
	}
	close(work)
	wg.Wait()
	if listErr == nil && ctx.Err() == nil {
		r.forget(seen) // settled or gone: their schedule is not needed any more
	}
	return n, errors.Join(append(errs, listErr)...)
}

func (r *ReconcileScheduler) due(id string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	next, ok := r.retry[id]
	return !ok || !now.Before(next.at)
}

// schedule sets when sp is asked again: a spend that changed (settled,
// or became unknown) starts over; one with no news waits twice as long
// as last time, but not past its instrument's expiry, when the chain can
// first tell that it will never be used.
func (r *ReconcileScheduler) schedule(sp *Spend, changed bool, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if changed {
		delete(r.retry, sp.ID)
		return
	}
	delay := r.opt.BackoffMin
	if prev, ok := r.retry[sp.ID]; ok {
		delay = min(prev.delay*2, r.opt.BackoffMax)
	}
	at := now.Add(delay)
	if exp := sp.ExpiresAt; sp.Status == StatusAuthorized && exp.After(now) && at.After(exp) {
		at = exp
	}
	r.retry[sp.ID] = retryAt{at: at, delay: delay}
}

func (r *ReconcileScheduler) forget(open map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.retry {
		if !open[id] {
			delete(r.retry, id)
		}
	}
}

// Reconcile asks sp's rail now (an agent reported a settlement, or an
// owner wants an answer) and returns the spend as it then stands.
func (s *Service) Reconcile(ctx context.Context, id string) (*Spend, error) {
	sp, err := s.GetSpend(ctx, id)
	if err != nil {
		return nil, err
	}
	if _, err := s.reconcile(ctx, sp); err != nil {
		return nil, err
	}
	return s.GetSpend(ctx, id)
}

func (s *Service) reconcile(ctx context.Context, sp *Spend) (bool, error) {
	if !sp.Status.Holding() || sp.RailRef == "" {
		return false, nil
	}
	rc, ok := s.rails[sp.Rail].(Reconciler)
	if !ok {
		return false, nil
	}
	ask := rc.Reconcile
	if ck, ok := s.rails[sp.Rail].(Checker); ok {
		// Reconcile may act (resubmit a lost payout); for an agent that is
		// no longer active only look (design invariant 4).
		var a *Agent
		if err := s.read(ctx, func(tx Tx) error {
			var err error
			a, err = tx.AgentGet(ctx, sp.AgentID)
			return err
		}); err != nil {
			return false, err
		}
		if a.Status != AgentActive {
			ask = ck.Check
		}
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.ExecTimeout)
	defer cancel()
	res, err := ask(rctx, sp)
	if err != nil {
		s.log.Warn("reconcile failed", "rail", sp.Rail, "spend_id", sp.ID, "err", err)
		return false, nil // asked again on the next round
	}
	if res.Outcome == "" || res.Outcome == OutcomePending || (res.Outcome == OutcomeUnknown && sp.Status == StatusUnknown) {
		return false, nil
	}
	after, err := s.settle(ctx, sp.ID, res, SystemActor)
	if err != nil {
		return false, err
	}
	return after.Status != sp.Status, nil
}

// ReportSettlement takes an agent's report of what happened to one of its
// spends (the settlement header an x402 seller returned) to the spend's
// rail, and settles what the rail accepts.
func (s *Service) ReportSettlement(ctx context.Context, c Caller, id string, report json.RawMessage) (*Spend, error) {
	sp, err := s.AgentGetSpend(ctx, c, id)
	if err != nil {
		return nil, err
	}
	rp, ok := s.rails[sp.Rail].(Reporter)
	if !ok {
		return nil, Errorf(CodeInvalidState, "rail %s takes no settlement reports", sp.Rail)
	}
	if !sp.Status.Holding() || sp.RailRef == "" {
		return sp, nil
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.ExecTimeout)
	defer cancel()
	res, err := rp.Report(rctx, sp, report)
	if err != nil {
		return nil, err
	}
	if res.Outcome == "" || res.Outcome == OutcomePending {
		return sp, nil
	}
	in := intentOf(c)
	return s.settleBy(context.WithoutCancel(ctx), sp.ID, res, audit.Actor{Type: "agent", ID: sp.AgentID}, &in)
}
