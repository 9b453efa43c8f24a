package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/purserhq/purser/internal/client"
	"github.com/purserhq/purser/internal/payer"
)

// ClientAgent is the Agent of a Purser client signing with the agent's
// key, and of the x402 payer built on it.
type ClientAgent struct {
	C *client.Client
	P *payer.Payer
}

// NewClientAgent wraps c.
func NewClientAgent(c *client.Client) *ClientAgent {
	return &ClientAgent{C: c, P: payer.New(c)}
}

var _ Agent = (*ClientAgent)(nil)

func convErr(err error) error {
	if err == nil {
		return nil
	}
	var ae *client.APIError
	if errors.As(err, &ae) {
		e := &APIError{Status: ae.Status, ErrCode: ae.Code, Msg: ae.Message, Reasons: ae.Reasons()}
		if f, ok := ae.Details["field"].(string); ok {
			e.Field = f
		}
		return e
	}
	var pe *payer.Error
	if errors.As(err, &pe) {
		return &APIError{ErrCode: pe.Code(), Msg: pe.Message()}
	}
	return err
}

func convSpend(s *client.Spend) *Spend {
	if s == nil {
		return nil
	}
	out := &Spend{ID: s.SpendID, Status: s.Status, Decision: s.Decision, Reasons: s.Reasons, Rail: s.Rail, Host: s.Host,
		Payee: s.Payee, Asset: s.Asset, Network: s.Network, Amount: s.Amount, AmountUSD: s.AmountUSD, RailRef: s.RailRef,
		IdempotencyKey: s.IdempotencyKey, ExpiresAt: s.ExpiresAt, DryRun: s.DryRun, Replayed: s.Replayed}
	if s.Captured != nil {
		out.Captured = *s.Captured
	}
	if s.Rail == "x402" && len(s.RailRequest) > 0 {
		var rr struct {
			URL    string `json:"url"`
			Method string `json:"method"`
		}
		if json.Unmarshal(s.RailRequest, &rr) == nil {
			out.URL, out.Method = rr.URL, rr.Method
		}
	}
	return out
}

// Limits implements Agent.
func (a *ClientAgent) Limits(ctx context.Context) (*Limits, error) {
	l, err := a.C.Limits(ctx)
	if err != nil {
		return nil, convErr(err)
	}
	out := &Limits{AgentID: l.AgentID, Name: l.Name, Status: l.Status, MandateVersion: l.MandateVersion, Day: l.Day,
		PerTxAuto: l.PerTxAuto, PerTxMax: l.PerTxMax}
	if l.Daily != nil {
		out.Daily = &Window{Limit: l.Daily.Limit, Used: l.Daily.Used, Remaining: l.Daily.Remaining}
	}
	if l.Lifetime != nil {
		out.Lifetime = &Window{Limit: l.Lifetime.Limit, Used: l.Lifetime.Used, Remaining: l.Lifetime.Remaining}
	}
	if l.Rate != nil {
		out.RateLimit = l.Rate.Limit
		out.RateUsed, _ = l.Rate.Used.Int64()
	}
	var m struct {
		PerTxAuto  string   `json:"per_tx_auto"`
		PerTxMax   string   `json:"per_tx_max"`
		Timezone   string   `json:"timezone"`
		Rails      []string `json:"rails"`
		Hosts      []string `json:"hosts"`
		ValidUntil string   `json:"valid_until"`
	}
	if len(l.Mandate) > 0 && json.Unmarshal(l.Mandate, &m) == nil {
		out.Timezone, out.Rails, out.Hosts, out.ValidUntil = m.Timezone, m.Rails, m.Hosts, m.ValidUntil
		if out.PerTxAuto == "" {
			out.PerTxAuto = m.PerTxAuto
		}
		if out.PerTxMax == "" {
			out.PerTxMax = m.PerTxMax
		}
	}
	return out, nil
}

// Balances implements Agent.
func (a *ClientAgent) Balances(ctx context.Context) ([]Balance, error) {
	bs, err := a.C.Balances(ctx)
	if err != nil {
		return nil, convErr(err)
	}
	out := make([]Balance, 0, len(bs))
	for _, b := range bs {
		out = append(out, Balance{Network: b.Network, Asset: b.Asset, Address: b.Address, Balance: b.Balance, Error: b.Error})
	}
	return out, nil
}

// Assets implements Agent.
func (a *ClientAgent) Assets(ctx context.Context) ([]Asset, error) {
	as, err := a.C.Assets(ctx)
	if err != nil {
		return nil, convErr(err)
	}
	out := make([]Asset, 0, len(as))
	for _, x := range as {
		out = append(out, Asset{Symbol: x.Symbol, Network: x.Network, Decimals: x.Decimals, USD: x.USD})
	}
	return out, nil
}

// Authorize implements Agent: a refusal is the denied spend, no error.
func (a *ClientAgent) Authorize(ctx context.Context, r AuthorizeRequest) (*Spend, error) {
	s, err := a.C.Authorize(ctx, client.AuthorizeRequest{Rail: r.Rail, Payee: r.Payee, Amount: r.Amount, Asset: r.Asset,
		Network: r.Network, Memo: r.Memo, IdempotencyKey: r.IdempotencyKey, DryRun: r.DryRun})
	if s != nil && client.IsCode(err, "spend_denied") {
		out := convSpend(s)
		if len(out.Reasons) == 0 {
			var ae *client.APIError
			errors.As(err, &ae)
			out.Reasons = ae.Reasons()
		}
		return out, nil
	}
	if err != nil {
		return nil, convErr(err)
	}
	return convSpend(s), nil
}

// Spend implements Agent.
func (a *ClientAgent) Spend(ctx context.Context, id string) (*Spend, error) {
	s, err := a.C.AgentSpend(ctx, id)
	return convSpend(s), convErr(err)
}

// Confirm implements Agent.
func (a *ClientAgent) Confirm(ctx context.Context, id string) (*Spend, error) {
	s, err := a.C.Confirm(ctx, id)
	if err != nil {
		return nil, convErr(err)
	}
	return convSpend(s), nil
}

func convFetch(r FetchRequest, res *payer.Result, err error) (*FetchResult, error) {
	if err != nil {
		var c interface{ Code() string }
		var ae *client.APIError
		if !errors.As(err, &c) && !errors.As(err, &ae) && r.URL != "" &&
			(strings.HasPrefix(err.Error(), "request "+r.URL+":") || strings.HasPrefix(err.Error(), "read "+r.URL+":")) {
			// The seller, not Purser, could not be reached.
			return nil, &APIError{ErrCode: "seller_unreachable", Msg: "the seller could not be reached"}
		}
		return nil, convErr(err)
	}
	out := &FetchResult{Outcome: string(res.Outcome), HTTPStatus: res.HTTPStatus, Header: res.Header, Body: res.Body,
		Spend: convSpend(res.Spend), Reasons: res.Reasons, Error: res.Error}
	if res.Settlement != nil {
		out.Transaction, out.Settled = res.Settlement.Transaction, res.Settlement.Success
	}
	if res.Offer != nil {
		out.Offer = &Offer{Network: res.Offer.Network, Asset: res.Offer.Asset, Amount: res.Offer.Amount, PayTo: res.Offer.PayTo}
	}
	return out, nil
}

func payerRequest(r FetchRequest) payer.Request {
	return payer.Request{URL: r.URL, Method: strings.ToUpper(r.Method), Header: r.Header, Body: r.Body, Max: r.Max,
		IdempotencyKey: r.IdempotencyKey, DryRun: r.DryRun}
}

// Fetch implements Agent.
func (a *ClientAgent) Fetch(ctx context.Context, r FetchRequest) (*FetchResult, error) {
	res, err := a.P.Fetch(ctx, payerRequest(r))
	return convFetch(r, res, err)
}

// ConfirmFetch implements Agent.
func (a *ClientAgent) ConfirmFetch(ctx context.Context, id string, r FetchRequest) (*FetchResult, error) {
	res, err := a.P.Confirm(ctx, id, payerRequest(r))
	return convFetch(r, res, err)
}
