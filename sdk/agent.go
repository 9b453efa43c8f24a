package sdk

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net"
	"net/http"
	"time"

	"github.com/purserhq/purser/api"
)

// Agent is one agent's client: every request is signed with its identity
// key (a fresh nonce each, valid for SignatureTTL), and the server answers
// about this agent only. It is safe for concurrent use.
type Agent struct {
	c *conn

	assets assetCache
	cs     cosignState
}

// NewAgent returns the client of the agent whose identity key is key, on
// the Purser server at serverURL (for example http://127.0.0.1:8402).
func NewAgent(serverURL string, key Signer, opts ...Option) (*Agent, error) {
	if key == nil {
		return nil, errors.New("sdk: NewAgent: nil key")
	}
	c, err := newConn(serverURL, opts)
	if err != nil {
		return nil, err
	}
	c.signer = key
	return &Agent{c: c}, nil
}

// Address is the agent's identity address.
func (a *Agent) Address() string { return a.c.signer.Address() }

// Deployment fetches the server's deployment id (no credentials needed).
func (a *Agent) Deployment(ctx context.Context) (*Deployment, error) { return a.c.deployment(ctx) }

// Health checks that the server is up (GET /healthz).
func (a *Agent) Health(ctx context.Context) error { return a.c.health(ctx) }

// Authorize asks to spend (POST /v1/agent/spends): the mandate decides,
// and an allowed spend is held against the budgets (and, on rails Purser
// executes, paid). Outcomes:
//   - allowed: the spend (status authorized, or captured for a payout
//     already sent), err nil;
//   - waiting for an owner: the spend and an *ApprovalRequiredError;
//   - refused: the spend and a *RefusedError (nothing held);
//   - anything else: nil and an *Error or a transport error.
//
// An empty IdempotencyKey is filled with a fresh one, so a network
// failure can be retried safely: the SDK retries once itself, and a retry
// with the same key answers the original spend (Replayed true).
func (a *Agent) Authorize(ctx context.Context, req AuthorizeRequest) (*Spend, error) {
	if req.DryRun {
		return nil, errors.New("sdk: Authorize with DryRun: use Agent.DryRun")
	}
	if req.IdempotencyKey == "" {
		req.IdempotencyKey = NewIdempotencyKey()
	}
	var s Spend
	_, err := a.c.do(ctx, http.MethodPost, "/v1/agent/spends", nil, req, authAgent, &s)
	if err != nil && retryable(ctx, err) {
		_, err = a.c.do(ctx, http.MethodPost, "/v1/agent/spends", nil, req, authAgent, &s)
	}
	sp, err := outcome(&s, err)
	if err != nil {
		return sp, err
	}
	return a.maybeCosign(ctx, req, sp)
}

// DryRun asks the mandate for its verdict on req without storing a spend,
// holding anything or paying: the answer says what Authorize would do
// now (Decision allow, needs_approval or deny, and the reasons). A
// refusal is a *RefusedError, as for Authorize.
func (a *Agent) DryRun(ctx context.Context, req AuthorizeRequest) (*Spend, error) {
	req.DryRun = true
	req.IdempotencyKey = ""
	var s Spend
	if _, err := a.c.do(ctx, http.MethodPost, "/v1/agent/spends", nil, req, authAgent, &s); err != nil {
		return outcome(nil, err)
	}
	return &s, nil
}

// outcome maps an authorization's answer to the SDK's outcomes.
func outcome(s *Spend, err error) (*Spend, error) {
	var re *RefusedError
	if errors.As(err, &re) {
		return re.Spend, err
	}
	if err != nil {
		return nil, err
	}
	if s.Status == api.StatusPendingApproval {
		return s, &ApprovalRequiredError{SpendID: s.SpendID, Reasons: s.Reasons, Spend: s}
	}
	return s, nil
}

// retryable reports whether a failed authorization may be sent again:
// the request did not reach the server or the server was restarting, and
// ctx still allows it. The idempotency key makes the retry safe.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Status == http.StatusServiceUnavailable || e.Status == http.StatusBadGateway
	}
	// http.Client's errors (refused, reset, EOF mid-answer) are *url.Error.
	var ne net.Error
	return errors.As(err, &ne)
}

// Spend fetches one of the agent's own spends.
func (a *Agent) Spend(ctx context.Context, id string) (*Spend, error) {
	return a.spendCall(ctx, http.MethodGet, "/v1/agent/spends/"+escape(id), nil)
}

// Confirm carries out an authorized spend on a rail Purser executes (a
// payout an owner approved): Purser signs and sends it. The answer's
// status is captured (paid), unknown (sent; the chain decides) or
// released (nothing moved, see Reasons). Confirming twice is safe: the
// second answers the spend as it stands.
//
// For a co-signed (2of2) wallet, Confirm co-signs the approved spend
// first, checking the authorization against what the spend records.
func (a *Agent) Confirm(ctx context.Context, id string) (*Spend, error) {
	sp, err := a.spendCall(ctx, http.MethodPost, "/v1/agent/spends/"+escape(id)+"/confirm", empty)
	if err != nil {
		return nil, err
	}
	return a.maybeCosign(ctx, requestOf(sp), sp)
}

// Capture records that an authorized spend was paid; amount "" captures
// the whole hold, a smaller amount gives the rest back to the budget.
func (a *Agent) Capture(ctx context.Context, id, amount string) (*Spend, error) {
	return a.spendCall(ctx, http.MethodPost, "/v1/agent/spends/"+escape(id)+"/capture", api.CaptureRequest{Amount: amount})
}

// Release gives an authorized spend's hold back to the budget: nothing
// was paid.
func (a *Agent) Release(ctx context.Context, id string) (*Spend, error) {
	return a.spendCall(ctx, http.MethodPost, "/v1/agent/spends/"+escape(id)+"/release", empty)
}

// ReportSettlement tells Purser what an x402 seller answered to the paid
// retry (Fetch and Transport do this themselves).
func (a *Agent) ReportSettlement(ctx context.Context, id string, report SettlementReport) (*Spend, error) {
	return a.spendCall(ctx, http.MethodPost, "/v1/agent/spends/"+escape(id)+"/settlement", report)
}

func (a *Agent) spendCall(ctx context.Context, method, path string, in any) (*Spend, error) {
	var s Spend
	if _, err := a.c.do(ctx, method, path, nil, in, authAgent, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Limits is the agent's mandate and what is left of each budget window.
func (a *Agent) Limits(ctx context.Context) (*Limits, error) {
	var l Limits
	if _, err := a.c.do(ctx, http.MethodGet, "/v1/agent/limits", nil, nil, authAgent, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// Balances yields the agent's on-chain balances, per network and asset.
// A balance the chain could not be read for has Error set.
func (a *Agent) Balances(ctx context.Context) iter.Seq2[Balance, error] {
	return seq(func() ([]Balance, error) {
		var out api.Balances
		_, err := a.c.do(ctx, http.MethodGet, "/v1/agent/balances", nil, nil, authAgent, &out)
		return out.Balances, err
	})
}

// Assets yields what the server can count and pay with.
func (a *Agent) Assets(ctx context.Context) iter.Seq2[Asset, error] {
	return seq(func() ([]Asset, error) { return a.assetList(ctx) })
}

func (a *Agent) assetList(ctx context.Context) ([]Asset, error) {
	var out api.Assets
	_, err := a.c.do(ctx, http.MethodGet, "/v1/agent/assets", nil, nil, authAgent, &out)
	return out.Assets, err
}

// PayRequest is a payout: USDC sent on chain from the agent's wallet.
type PayRequest struct {
	To      string // 0x address
	Amount  string // decimal, in the asset's units ("1.50")
	Asset   string // "" is USDC
	Network string // CAIP-2; "" is the server's default network
	Memo    string // the purpose, shown to the owner and kept in the audit trail
	// IdempotencyKey makes a retry answer the original payout; "" makes a
	// fresh one.
	IdempotencyKey string
}

func (p PayRequest) authorize() AuthorizeRequest {
	return AuthorizeRequest{Rail: api.RailPayout, Payee: p.To, Amount: p.Amount, Asset: p.Asset, Network: p.Network,
		Memo: p.Memo, IdempotencyKey: p.IdempotencyKey}
}

// Pay sends a payout. Outcomes are Authorize's; an allowed payout is sent
// at once and answers captured (mined), unknown (sent, not yet mined: the
// server's reconciler settles it from the chain) or released (nothing
// moved; Reasons say why, e.g. insufficient_funds).
func (a *Agent) Pay(ctx context.Context, p PayRequest) (*Spend, error) {
	return a.Authorize(ctx, p.authorize())
}

// DryRunPay is the mandate's verdict on a payout, without paying.
func (a *Agent) DryRunPay(ctx context.Context, p PayRequest) (*Spend, error) {
	return a.DryRun(ctx, p.authorize())
}

// WaitForApproval polls a spend until an owner decided it (or it
// expired), every poll (1 s if zero), until ctx ends. It returns the
// spend once its status is no longer pending_approval: authorized means
// approved (finish it with Confirm or ConfirmFetch); denied, expired mean
// no. When ctx ends first it returns the pending spend and ctx's error.
func (a *Agent) WaitForApproval(ctx context.Context, id string, poll time.Duration) (*Spend, error) {
	if poll <= 0 {
		poll = time.Second
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		s, err := a.Spend(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		if s.Status != api.StatusPendingApproval {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return s, fmt.Errorf("sdk: spend %s still waits for approval: %w", id, ctx.Err())
		case <-t.C:
		}
	}
}

// seq yields the items of one list call; the SDK's lists are iterators so
// that paging can come without changing callers.
func seq[T any](list func() ([]T, error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		items, err := list()
		if err != nil {
			var zero T
			yield(zero, err)
			return
		}
		for _, it := range items {
			if !yield(it, nil) {
				return
			}
		}
	}
}

// Collect gathers an iterator's items, stopping at the first error.
func Collect[T any](s iter.Seq2[T, error]) ([]T, error) {
	var out []T
	for v, err := range s {
		if err != nil {
			return out, err
		}
		out = append(out, v)
	}
	return out, nil
}
