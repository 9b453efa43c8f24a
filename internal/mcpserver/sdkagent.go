package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/sdk"
)

// SDKAgent is the Agent of a public-SDK client (sdk.Agent): the MCP
// server is a client of the API like any agent program, and the key stays
// in the sdk.Signer.
type SDKAgent struct {
	A *sdk.Agent
}

// NewSDKAgent wraps a.
func NewSDKAgent(a *sdk.Agent) *SDKAgent { return &SDKAgent{A: a} }

var _ Agent = (*SDKAgent)(nil)

// convErr maps the SDK's errors to APIError; transport errors stay as
// they are.
func convErr(err error) error {
	if err == nil {
		return nil
	}
	var re *sdk.RefusedError
	if errors.As(err, &re) {
		return &APIError{Status: http.StatusForbidden, ErrCode: "spend_denied", Msg: "the mandate refused the spend", Reasons: re.Reasons, SpendID: re.SpendID}
	}
	var e *sdk.Error
	if errors.As(err, &e) {
		out := &APIError{Status: e.Status, ErrCode: e.Code, Msg: e.Message, Reasons: e.Reasons()}
		if f, ok := e.Details["field"].(string); ok {
			out.Field = f
		}
		if id, ok := e.Details["spend_id"].(string); ok {
			out.SpendID = id
		}
		if m := alreadyPaidRE.FindStringSubmatch(e.Message); e.Code == "already_paid" && m != nil {
			out.SpendID, out.Transaction = m[1], m[2]
		}
		return out
	}
	return err
}

// alreadyPaidRE reads the spend and the transaction out of the SDK's
// already_paid message ("spend spd_… was paid already (0x…)").
var alreadyPaidRE = regexp.MustCompile(`^spend (\S+) was paid already \((\S*)\)`)

func convSpend(s *sdk.Spend) *Spend {
	if s == nil {
		return nil
	}
	out := &Spend{ID: s.SpendID, Status: s.Status, Decision: s.Decision, Reasons: s.Reasons, Rail: s.Rail, Host: s.Host,
		Payee: s.Payee, Asset: s.Asset, Network: s.Network, Amount: s.Amount, AmountUSD: s.AmountUSD, RailRef: s.RailRef,
		IdempotencyKey: s.IdempotencyKey, ExpiresAt: s.ExpiresAt, DryRun: s.DryRun, Replayed: s.Replayed}
	if s.Captured != nil {
		out.Captured = *s.Captured
	}
	if s.Rail == api.RailX402 && len(s.RailRequest) > 0 {
		var rr api.X402Request
		if json.Unmarshal(s.RailRequest, &rr) == nil {
			out.URL, out.Method = rr.URL, rr.Method
		}
	}
	return out
}

// Limits implements Agent.
func (a *SDKAgent) Limits(ctx context.Context) (*Limits, error) {
	l, err := a.A.Limits(ctx)
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
		out.RateLimit, out.RateUsed = l.Rate.Limit, l.Rate.Used
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
func (a *SDKAgent) Balances(ctx context.Context) ([]Balance, error) {
	bs, err := sdk.Collect(a.A.Balances(ctx))
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
func (a *SDKAgent) Assets(ctx context.Context) ([]Asset, error) {
	as, err := sdk.Collect(a.A.Assets(ctx))
	if err != nil {
		return nil, convErr(err)
	}
	out := make([]Asset, 0, len(as))
	for _, x := range as {
		out = append(out, Asset{Symbol: x.Symbol, Network: x.Network, Decimals: x.Decimals, USD: x.USD})
	}
	return out, nil
}

// Authorize implements Agent: a refusal is the denied spend and a spend
// waiting for approval the pending one, both without an error.
func (a *SDKAgent) Authorize(ctx context.Context, r AuthorizeRequest) (*Spend, error) {
	req := sdk.AuthorizeRequest{Rail: r.Rail, Payee: r.Payee, Amount: r.Amount, Asset: r.Asset,
		Network: r.Network, Memo: r.Memo, IdempotencyKey: r.IdempotencyKey}
	var s *sdk.Spend
	var err error
	if r.DryRun {
		s, err = a.A.DryRun(ctx, req)
	} else {
		s, err = a.A.Authorize(ctx, req)
	}
	var re *sdk.RefusedError
	var ar *sdk.ApprovalRequiredError
	switch {
	case errors.As(err, &re) && re.Spend != nil:
		out := convSpend(re.Spend)
		if len(out.Reasons) == 0 {
			out.Reasons = re.Reasons
		}
		out.Status = StatusDenied
		return out, nil
	case errors.As(err, &ar):
		return convSpend(ar.Spend), nil
	case err != nil:
		return nil, convErr(err)
	}
	return convSpend(s), nil
}

// Spend implements Agent.
func (a *SDKAgent) Spend(ctx context.Context, id string) (*Spend, error) {
	s, err := a.A.Spend(ctx, id)
	if err != nil {
		return nil, convErr(err)
	}
	return convSpend(s), nil
}

// Confirm implements Agent.
func (a *SDKAgent) Confirm(ctx context.Context, id string) (*Spend, error) {
	s, err := a.A.Confirm(ctx, id)
	if err != nil {
		return nil, convErr(err)
	}
	return convSpend(s), nil
}

func convFetch(r FetchRequest, res *sdk.FetchResult, err error) (*FetchResult, error) {
	if err != nil {
		var e *sdk.Error
		var re *sdk.RefusedError
		if !errors.As(err, &e) && !errors.As(err, &re) && r.URL != "" &&
			(strings.HasPrefix(err.Error(), "request "+r.URL+":") || strings.HasPrefix(err.Error(), "read "+r.URL+":")) {
			// The seller, not Purser, could not be reached.
			return nil, &APIError{ErrCode: "seller_unreachable", Msg: "the seller could not be reached"}
		}
		return nil, convErr(err)
	}
	out := &FetchResult{Outcome: string(res.Outcome), HTTPStatus: res.HTTPStatus, Header: res.Header, Body: res.Body,
		Spend: convSpend(res.Spend), Reasons: res.Reasons, Error: res.Error}
	if out.Outcome == OutcomeRefused && out.Spend != nil && out.Spend.Status == "" {
		out.Spend.Status = StatusDenied
	}
	if res.Settlement != nil {
		out.Transaction, out.Settled = res.Settlement.Transaction, res.Settlement.Success
	}
	if res.Offer != nil {
		out.Offer = &Offer{Network: res.Offer.Network, Asset: res.Offer.Asset, Amount: res.Offer.Amount, PayTo: res.Offer.PayTo}
	}
	return out, nil
}

func fetchRequest(r FetchRequest) sdk.FetchRequest {
	return sdk.FetchRequest{URL: r.URL, Method: strings.ToUpper(r.Method), Header: r.Header, Body: r.Body, Max: r.Max,
		IdempotencyKey: r.IdempotencyKey, DryRun: r.DryRun}
}

// Fetch implements Agent. Waiting for approval is the MCP server's (it
// sends progress notifications meanwhile), not the SDK's.
func (a *SDKAgent) Fetch(ctx context.Context, r FetchRequest) (*FetchResult, error) {
	res, err := a.A.Fetch(ctx, fetchRequest(r))
	return convFetch(r, res, err)
}

// ConfirmFetch implements Agent.
func (a *SDKAgent) ConfirmFetch(ctx context.Context, id string, r FetchRequest) (*FetchResult, error) {
	res, err := a.A.ConfirmFetch(ctx, id, fetchRequest(r))
	return convFetch(r, res, err)
}

var _ ToolAgent = (*SDKAgent)(nil)

// Grants implements ToolAgent.
func (a *SDKAgent) Grants(ctx context.Context) (*api.AgentGrants, error) {
	g, err := a.A.Grants(ctx)
	if err != nil {
		return nil, convErr(err)
	}
	return g, nil
}

// maxProxyRead bounds what is read of an upstream's answer: the model is
// shown at most Options.MaxBodyBytes of it, and the size up to this.
const maxProxyRead = 8 << 20

// Proxy implements ToolAgent.
func (a *SDKAgent) Proxy(ctx context.Context, r ProxyRequest) (*ProxyResult, error) {
	h := r.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if r.IdempotencyKey != "" {
		h.Set(api.HeaderIdempotencyKey, r.IdempotencyKey)
	}
	resp, err := a.A.Proxy(ctx, r.Credential, r.Method, r.Path, r.Body, h)
	var ar *sdk.ApprovalRequiredError
	switch {
	case errors.As(err, &ar):
		sp := convSpend(ar.Spend)
		if sp == nil {
			sp = &Spend{ID: ar.SpendID, Status: StatusPendingApproval, Reasons: ar.Reasons}
		}
		if sp.Status == "" {
			sp.Status = StatusPendingApproval
		}
		sp.Rail = RailAPIProxy
		return &ProxyResult{Pending: sp, SpendID: sp.ID}, nil
	case err != nil:
		return nil, convErr(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProxyRead))
	if err != nil {
		// The call was made and its price captured; only its answer is
		// lost. A retry with the same key is not sent again.
		return nil, &APIError{ErrCode: "upstream_failed", Msg: "the upstream's answer broke off", SpendID: resp.Header.Get(api.HeaderSpendID)}
	}
	return &ProxyResult{HTTPStatus: resp.StatusCode, Header: resp.Header, Body: body,
		SpendID: resp.Header.Get(api.HeaderSpendID), Price: resp.Header.Get(api.HeaderPrice)}, nil
}
