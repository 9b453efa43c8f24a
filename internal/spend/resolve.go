package spend

import (
	"context"
	"errors"
	"math/big"
	"regexp"
	"strings"
	"time"
)

// CodeChainDisagrees refuses an owner's resolution of a spend that the
// chain contradicts (details.chain says what the chain shows).
const CodeChainDisagrees = "chain_disagrees"

// ChainResolver is implemented by rails whose instruments a chain can
// speak for (the EIP-3009 rails). An owner's resolution of an unknown
// spend is checked against it first.
type ChainResolver interface {
	// ChainOutcome reports what the chain shows of sp's instrument, as
	// Reconcile does but without side effects: captured (used; Ref is the
	// settling transaction when the logs show it), failed (never used,
	// and can no longer be) or pending (unused and still usable).
	// connected is false when no chain is connected for sp's network.
	ChainOutcome(ctx context.Context, sp *Spend) (res ExecResult, connected bool, err error)
	// VerifyTransfer checks that transaction tx succeeded and carries
	// sp's transfer (from the agent's wallet to the payee, of the
	// authorized amount), and returns the amount. A transaction that does
	// not is a *Error with CodeChainDisagrees.
	VerifyTransfer(ctx context.Context, sp *Spend, tx string) (*big.Int, error)
}

// ResolveRequest is an owner's resolution of a spend whose outcome is
// unknown: exactly one of CapturedTx (it was paid, in this transaction)
// and Released (nothing moved, and nothing can move any more).
type ResolveRequest struct {
	CapturedTx string
	Released   bool
	Reason     string // why; required with Released
}

var (
	txHashRE  = regexp.MustCompile(`^0x[0-9a-fA-F]{64}$`)
	railRefRE = regexp.MustCompile(`^[\x21-\x7e]{1,128}$`)
)

// Resolve settles a spend left unknown, on an owner's word, audited with
// the owner as actor and the reason. Where the spend's rail has a chain
// connected for its network, the chain is asked first and has the last
// word (invariant 10: a hold is released only when the chain shows the
// authorization can no longer be used): a release is refused while the
// authorization was used or can still be used, and a capture must name a
// transaction that carries the spend's transfer. Without a chain the
// owner's word is recorded as given.
func (s *Service) Resolve(ctx context.Context, id string, r ResolveRequest) (*Spend, error) {
	switch {
	case (r.CapturedTx != "") == r.Released:
		return nil, Errorf(CodeInvalidRequest, "give exactly one of captured_tx and released").WithDetails(map[string]any{"field": "captured_tx"})
	case r.Released && strings.TrimSpace(r.Reason) == "":
		return nil, Errorf(CodeInvalidRequest, "a release needs a reason").WithDetails(map[string]any{"field": "reason"})
	case len(r.Reason) > 512:
		return nil, Errorf(CodeInvalidRequest, "reason is longer than 512 bytes").WithDetails(map[string]any{"field": "reason"})
	case r.CapturedTx != "" && !railRefRE.MatchString(r.CapturedTx):
		return nil, Errorf(CodeInvalidRequest, "captured_tx must be 1-128 printable ASCII characters").WithDetails(map[string]any{"field": "captured_tx"})
	}
	sp, err := s.GetSpend(ctx, id)
	if err != nil {
		return nil, err
	}
	if sp.Status != StatusUnknown {
		return nil, Errorf(CodeInvalidState, "spend %s is %s; only a spend whose outcome is unknown can be resolved", sp.ID, sp.Status).
			WithDetails(map[string]any{"status": sp.Status})
	}
	captured, chain, err := s.askChain(ctx, sp, r)
	if err != nil {
		return nil, err
	}
	var out *Spend
	err = s.inTx(context.WithoutCancel(ctx), func(tx Tx) error {
		now := s.now()
		if _, err := tx.AgentLock(ctx, sp.AgentID); err != nil {
			return err
		}
		cur, err := tx.SpendGet(ctx, id)
		if err != nil {
			return err
		}
		if cur.Status != StatusUnknown {
			return Errorf(CodeInvalidState, "spend %s became %s meanwhile", cur.ID, cur.Status).WithDetails(map[string]any{"status": cur.Status})
		}
		action := "spend.release"
		if r.Released {
			err = s.finish(ctx, tx, cur, StatusReleased, nil, now, []string{"owner_resolved"})
		} else {
			action = "spend.capture"
			cur.RailRef = r.CapturedTx
			err = s.finish(ctx, tx, cur, StatusCaptured, captured, now, nil)
		}
		if err != nil {
			return err
		}
		out = cur
		return appendAudit(ctx, tx, now, OwnerActor, action, "spend:"+cur.ID, map[string]any{
			"spend_id": cur.ID, "agent_id": cur.AgentID, "status": cur.Status, "captured": amountString(cur.Captured),
			"captured_usd": usd(cur.CapturedUSD), "rail_ref": cur.RailRef,
			"resolution": map[string]any{"by": "owner", "reason": r.Reason, "chain": chain}})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// askChain checks an owner's resolution against the chain, where one is
// connected, and returns the amount to capture and what the chain showed
// ("none": the rail has no chain; "not_connected"; "used";
// "expired_unused").
func (s *Service) askChain(ctx context.Context, sp *Spend, r ResolveRequest) (*big.Int, string, error) {
	full := new(big.Int).Set(sp.Amount)
	cr, ok := s.rails[sp.Rail].(ChainResolver)
	if !ok {
		return full, "none", nil
	}
	if r.CapturedTx != "" && !txHashRE.MatchString(r.CapturedTx) {
		return nil, "", Errorf(CodeInvalidRequest, "captured_tx must be a 0x transaction hash on rail %s", sp.Rail).WithDetails(map[string]any{"field": "captured_tx"})
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.ExecTimeout)
	defer cancel()
	res, connected, err := cr.ChainOutcome(cctx, sp)
	if err != nil {
		s.log.Warn("resolve: chain check failed", "rail", sp.Rail, "spend_id", sp.ID, "err", err)
		return nil, "", Errorf(CodeChainUnavailable, "the chain for %s did not answer; nothing was changed, try again", sp.Network)
	}
	if !connected {
		return full, "not_connected", nil
	}
	disagree := func(shows, format string, args ...any) (*big.Int, string, error) {
		return nil, "", Errorf(CodeChainDisagrees, format, args...).WithDetails(map[string]any{"chain": shows, "spend_id": sp.ID})
	}
	switch res.Outcome {
	case OutcomeCaptured:
		if r.Released {
			return disagree("used", "the chain shows the authorization of spend %s was used: money moved, so it cannot be released; resolve it with its transaction (captured_tx)", sp.ID)
		}
		if txHashRE.MatchString(res.Ref) && !strings.EqualFold(res.Ref, r.CapturedTx) {
			return disagree("used", "the chain shows the authorization of spend %s was used in transaction %s, not %s", sp.ID, res.Ref, r.CapturedTx)
		}
		amt, err := cr.VerifyTransfer(cctx, sp, r.CapturedTx)
		if err != nil {
			var coded *Error
			if errors.As(err, &coded) {
				return nil, "", err
			}
			s.log.Warn("resolve: transaction check failed", "rail", sp.Rail, "spend_id", sp.ID, "err", err)
			return nil, "", Errorf(CodeChainUnavailable, "the chain for %s did not answer; nothing was changed, try again", sp.Network)
		}
		return amt, "used", nil
	case OutcomeFailed:
		if r.CapturedTx != "" {
			return disagree("expired_unused", "the chain shows the authorization of spend %s was never used and can no longer be: nothing moved; resolve it as released", sp.ID)
		}
		return nil, "expired_unused", nil
	default:
		if r.CapturedTx != "" {
			return disagree("unused", "the chain shows the authorization of spend %s unused: nothing has moved yet", sp.ID)
		}
		until := "its validBefore"
		if !sp.ExpiresAt.IsZero() {
			until = sp.ExpiresAt.UTC().Format(time.RFC3339)
		}
		return disagree("unused_valid", "the authorization of spend %s is unused but can still be used until %s: wait until then (the reconciler then releases it) or cancel it on chain first", sp.ID, until)
	}
}
