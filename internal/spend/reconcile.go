package spend

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/purserhq/purser/internal/audit"
)

// ReconcileDue asks the rails what became of every spend whose outcome
// is open on the rail: signed instruments not yet settled (authorized
// with a rail reference) and unknown outcomes, read page (of pageSize)
// after page, oldest first. It settles what the rails can prove and
// returns how many spends changed. Safe to run on every node at once:
// settle re-reads each spend under its agent's lock.
func (s *Service) ReconcileDue(ctx context.Context, pageSize int) (int, error) {
	n := 0
	var errs []error
	p := &SpendListParams{Statuses: []Status{StatusAuthorized, StatusUnknown}, Signed: true, Limit: pageSize}
	for {
		var open []*Spend
		err := s.read(ctx, func(tx Tx) error {
			var err error
			open, err = tx.SpendList(ctx, p)
			return err
		})
		if err != nil {
			return n, errors.Join(append(errs, err)...)
		}
		for _, sp := range open {
			changed, err := s.reconcile(ctx, sp)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if changed {
				n++
			}
		}
		if len(open) < p.Limit || ctx.Err() != nil {
			return n, errors.Join(errs...)
		}
		last := open[len(open)-1]
		p.AfterCreated, p.AfterID = last.CreatedAt, last.ID
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
	rctx, cancel := context.WithTimeout(ctx, s.cfg.ExecTimeout)
	defer cancel()
	res, err := rc.Reconcile(rctx, sp)
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
