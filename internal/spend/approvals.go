package spend

import (
	"context"
	"errors"
	"math/big"
	"slices"
	"time"

	"github.com/purserhq/purser/internal/audit"
	"github.com/purserhq/purser/internal/mandate"
)

// ListSpends returns spends for the owner, newest first.
func (s *Service) ListSpends(ctx context.Context, agentRef string, statuses []Status, limit int) ([]*Spend, error) {
	var out []*Spend
	err := s.read(ctx, func(tx Tx) error {
		p := &SpendListParams{Statuses: statuses, Limit: limit, NewestFirst: true}
		if agentRef != "" {
			a, err := getAgent(ctx, tx, agentRef)
			if err != nil {
				return err
			}
			p.AgentID = a.ID
		}
		var err error
		out, err = tx.SpendList(ctx, p)
		return err
	})
	return out, err
}

// GetSpend returns any spend, for the owner.
func (s *Service) GetSpend(ctx context.Context, id string) (*Spend, error) {
	var out *Spend
	err := s.read(ctx, func(tx Tx) error {
		var err error
		out, err = tx.SpendGet(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return Errorf(CodeSpendNotFound, "no spend %q", id)
		}
		return err
	})
	return out, err
}

// Approve lets a pending spend go ahead. The current mandate is evaluated
// again (the owner approves the approval reasons, not a breach of a hard
// limit that appeared meanwhile); a spend that now breaks a rule is
// denied instead.
func (s *Service) Approve(ctx context.Context, id string) (*Spend, error) {
	return s.decidePending(ctx, id, true, "")
}

// Deny refuses a pending spend and releases its hold.
func (s *Service) Deny(ctx context.Context, id, reason string) (*Spend, error) {
	if len(reason) > 512 {
		return nil, Errorf(CodeInvalidRequest, "reason is longer than 512 bytes")
	}
	return s.decidePending(ctx, id, false, reason)
}

func (s *Service) decidePending(ctx context.Context, id string, approve bool, reason string) (*Spend, error) {
	return s.decidePendingBy(ctx, id, approve, reason, nil)
}

// approver is who decides a pending spend when it is not the owner
// token: a signed-in owner, and for a passkey approval the check of the
// assertion against the spend (owners.go).
type approver struct {
	actor audit.Actor
	// check runs under the agent's lock on the pending spend and returns
	// the actor of the decision.
	check    func(ctx context.Context, tx Tx, sp *Spend, now time.Time) (audit.Actor, error)
	passkey  *audit.PasskeyAssertion // stored in the spend.approve event
	replayed bool                    // the spend was approved already
}

func (s *Service) decidePendingBy(ctx context.Context, id string, approve bool, reason string, by *approver) (*Spend, error) {
	var out *Spend
	var stateErr error
	err := s.inTx(ctx, func(tx Tx) error {
		stateErr = nil
		now := s.now()
		sp, err := tx.SpendGet(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return Errorf(CodeSpendNotFound, "no spend %q", id)
		} else if err != nil {
			return err
		}
		a, err := tx.AgentLock(ctx, sp.AgentID)
		if err != nil {
			return err
		}
		if sp, err = tx.SpendGet(ctx, id); err != nil {
			return err
		}
		out = sp
		actor := OwnerActor
		if by != nil {
			by.replayed = false
			if by.actor.Type != "" {
				actor = by.actor
			}
			if by.passkey != nil && Approved(sp) {
				by.replayed = true // approving twice is idempotent
				return nil
			}
		}
		if sp.Status != StatusPendingApproval {
			return Errorf(CodeInvalidState, "spend %s is %s, not pending approval", sp.ID, sp.Status).WithDetails(map[string]any{"status": sp.Status})
		}
		if !now.Before(sp.ExpiresAt) {
			if err := s.expire(ctx, tx, sp, now); err != nil {
				return err
			}
			stateErr = Errorf(CodeInvalidState, "the approval window of spend %s closed at %s", sp.ID, sp.ExpiresAt.Format(time.RFC3339)).WithDetails(map[string]any{"status": sp.Status})
			return nil
		}
		if by != nil && by.check != nil {
			if actor, err = by.check(ctx, tx, sp, now); err != nil {
				return err
			}
		}
		if !approve {
			sp.DenyReason = reason
			if err := s.finish(ctx, tx, sp, StatusDenied, nil, now, []string{"owner_denied"}); err != nil {
				return err
			}
			return appendAudit(ctx, tx, now, actor, "spend.deny", "spend:"+sp.ID, map[string]any{
				"spend_id": sp.ID, "agent_id": sp.AgentID, "reasons": sp.Reasons, "reason_text": reason, "released_usd": usd(sp.AmountUSD)})
		}
		reasons, err := s.recheck(ctx, tx, a, sp, now)
		if err != nil {
			return err
		}
		if len(reasons) > 0 {
			if err := s.finish(ctx, tx, sp, StatusDenied, nil, now, reasons); err != nil {
				return err
			}
			return appendAudit(ctx, tx, now, actor, "spend.deny", "spend:"+sp.ID, map[string]any{
				"spend_id": sp.ID, "agent_id": sp.AgentID, "reasons": reasons, "reason_text": "approval refused: the current mandate denies it", "released_usd": usd(sp.AmountUSD)})
		}
		sp.Status, sp.UpdatedAt, sp.ExpiresAt = StatusAuthorized, now, now.Add(s.cfg.HoldTTL)
		if err := tx.SpendUpdate(ctx, sp); err != nil {
			return err
		}
		if err := tx.PayeeAdd(ctx, a.ID, sp.Payee); err != nil {
			return err
		}
		if sp.Host != "" {
			if pinned, err := tx.HostPinGet(ctx, a.ID, pinKey(sp.Host)); err != nil {
				return err
			} else if pinned == "" {
				if err := tx.HostPinAdd(ctx, a.ID, pinKey(sp.Host), sp.Payee); err != nil {
					return err
				}
			}
		}
		details := map[string]any{"spend_id": sp.ID, "agent_id": sp.AgentID, "status": sp.Status, "mandate_version": a.MandateVersion}
		if by != nil && by.passkey != nil {
			details["passkey"] = by.passkey
		}
		return appendAudit(ctx, tx, now, actor, "spend.approve", "spend:"+sp.ID, details)
	})
	if err != nil {
		return nil, err
	}
	if stateErr != nil {
		return nil, stateErr
	}
	return out, nil
}

// recheck returns the deny reasons the agent's current state and mandate
// give a pending spend, counting the budget without its own hold.
func (s *Service) recheck(ctx context.Context, tx Tx, a *Agent, sp *Spend, now time.Time) ([]string, error) {
	switch a.Status {
	case AgentFrozen:
		return []string{"agent_frozen"}, nil
	case AgentRevoked:
		return []string{"agent_revoked"}, nil
	}
	m, err := s.mandateFor(ctx, tx, a.ID, a.MandateVersion)
	if err != nil {
		return nil, err
	}
	used, err := tx.UsageGet(ctx, a.ID, []string{windowDay(sp.DayKey), windowLifetime})
	if err != nil {
		return nil, err
	}
	u := mandate.Usage{
		DailyUSD:    new(big.Int).Sub(used[0], sp.AmountUSD),
		LifetimeUSD: new(big.Int).Sub(used[1], sp.AmountUSD),
		PayeeKnown:  true, // the owner is approving this payee
	}
	if m != nil && m.PinPayees && sp.Host != "" {
		if u.PinnedPayee, err = tx.HostPinGet(ctx, a.ID, pinKey(sp.Host)); err != nil {
			return nil, err
		}
	}
	dec := mandate.Evaluate(m, mandate.Intent{Rail: sp.Rail, Host: sp.Host, Payee: sp.Payee, AmountUSD: sp.AmountUSD}, u, now)
	if dec.Verdict == mandate.Deny {
		return slices.Clone(dec.Reasons), nil
	}
	return nil, nil
}

// expire ends a holding spend whose window passed.
func (s *Service) expire(ctx context.Context, tx Tx, sp *Spend, now time.Time) error {
	from := sp.Status
	if err := s.finish(ctx, tx, sp, StatusExpired, nil, now, nil); err != nil {
		return err
	}
	return appendAudit(ctx, tx, now, SystemActor, "spend.expire", "spend:"+sp.ID, map[string]any{
		"spend_id": sp.ID, "agent_id": sp.AgentID, "released_usd": usd(sp.AmountUSD), "from": from})
}

// ExpireDue expires up to limit holding spends whose time has passed and
// returns how many it expired. Safe to run on every node at once: each
// spend is re-read under its agent's lock before it changes.
func (s *Service) ExpireDue(ctx context.Context, limit int) (int, error) {
	now := s.now()
	var due []*Spend
	err := s.read(ctx, func(tx Tx) error {
		var err error
		// A signed spend is not expired blindly: its instrument may have
		// been used. The reconciler asks the rail (ReconcileDue).
		due, err = tx.SpendList(ctx, &SpendListParams{
			Statuses: []Status{StatusPendingApproval, StatusAuthorized}, ExpiresBefore: now, Unsigned: true, Limit: limit})
		return err
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, d := range due {
		err := s.inTx(ctx, func(tx Tx) error {
			if _, err := tx.AgentLock(ctx, d.AgentID); err != nil {
				return err
			}
			sp, err := tx.SpendGet(ctx, d.ID)
			if err != nil {
				return err
			}
			if sp.Status != StatusPendingApproval && sp.Status != StatusAuthorized || sp.ExpiresAt.After(now) || sp.RailRef != "" {
				return nil
			}
			n++
			return s.expire(ctx, tx, sp, now)
		})
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Limits is what an agent may still spend.
type Limits struct {
	Agent             *Agent
	MandateVersion    int64
	Mandate           *mandate.Mandate
	DayKey            string
	DailyUsedUSD      *big.Int
	LifetimeUsedUSD   *big.Int
	DailyRemaining    *big.Int // nil: no daily budget
	LifetimeRemaining *big.Int // nil: no lifetime budget
	RateUsed          int
}

// AgentLimits returns the caller's mandate and remaining budgets.
func (s *Service) AgentLimits(ctx context.Context, c Caller) (*Limits, error) {
	var out *Limits
	err := s.inTx(ctx, func(tx Tx) error {
		a, err := s.authAgent(ctx, tx, c, false)
		if err != nil {
			return err
		}
		out, err = s.limits(ctx, tx, a)
		return err
	})
	return out, err
}

// OwnerLimits returns an agent's mandate and remaining budgets.
func (s *Service) OwnerLimits(ctx context.Context, ref string) (*Limits, error) {
	var out *Limits
	err := s.read(ctx, func(tx Tx) error {
		a, err := getAgent(ctx, tx, ref)
		if err != nil {
			return err
		}
		out, err = s.limits(ctx, tx, a)
		return err
	})
	return out, err
}

func (s *Service) limits(ctx context.Context, tx Tx, a *Agent) (*Limits, error) {
	now := s.now()
	m, err := s.mandateFor(ctx, tx, a.ID, a.MandateVersion)
	if err != nil {
		return nil, err
	}
	l := &Limits{Agent: a, MandateVersion: a.MandateVersion, Mandate: m, DayKey: now.Format(time.DateOnly)}
	if m != nil {
		l.DayKey = m.DayKey(now)
		if m.Rate != nil && a.RateWindowStart == m.RateWindowStart(now).Unix() {
			l.RateUsed = a.RateCount
		}
	}
	used, err := tx.UsageGet(ctx, a.ID, []string{windowDay(l.DayKey), windowLifetime})
	if err != nil {
		return nil, err
	}
	l.DailyUsedUSD, l.LifetimeUsedUSD = used[0], used[1]
	if m != nil && m.Daily != nil {
		l.DailyRemaining = nonNeg(new(big.Int).Sub(m.Daily, used[0]))
	}
	if m != nil && m.Lifetime != nil {
		l.LifetimeRemaining = nonNeg(new(big.Int).Sub(m.Lifetime, used[1]))
	}
	if a.Wallets, err = tx.WalletList(ctx, a.ID); err != nil {
		return nil, err
	}
	return l, nil
}

func nonNeg(v *big.Int) *big.Int {
	if v.Sign() < 0 {
		v.SetInt64(0)
	}
	return v
}

// CountHolding returns how many spends hold budget right now.
func (s *Service) CountHolding(ctx context.Context) (int64, error) {
	var n int64
	err := s.read(ctx, func(tx Tx) error {
		var err error
		n, err = tx.SpendCount(ctx, []Status{StatusPendingApproval, StatusAuthorized, StatusUnknown})
		return err
	})
	return n, err
}
