package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"iter"
	"net/http"
	"net/url"
	"strconv"

	"github.com/purserhq/purser/api"
)

// Owner is the owner's client: it provisions agents and mandates, decides
// approvals, reads spends and the audit trail. token is the owner token
// (<data>/owner.token of the server). Send it over https, or to a
// loopback address only. It is safe for concurrent use.
type Owner struct{ c *conn }

// NewOwner returns the owner's client of the server at serverURL.
func NewOwner(serverURL, token string, opts ...Option) (*Owner, error) {
	if token == "" {
		return nil, errors.New("sdk: NewOwner: empty owner token")
	}
	c, err := newConn(serverURL, opts)
	if err != nil {
		return nil, err
	}
	c.ownerToken = token
	return &Owner{c: c}, nil
}

// Health checks that the server is up (GET /healthz).
func (o *Owner) Health(ctx context.Context) error { return o.c.health(ctx) }

// Deployment fetches the server's deployment id.
func (o *Owner) Deployment(ctx context.Context) (*Deployment, error) { return o.c.deployment(ctx) }

// CreateAgent registers an agent for the identity address its key has
// (Signer.Address), with an optional mandate (JSON, docs/api.md).
func (o *Owner) CreateAgent(ctx context.Context, req CreateAgentRequest) (*AgentInfo, error) {
	var a AgentInfo
	if _, err := o.c.do(ctx, http.MethodPost, "/v1/agents", nil, req, authOwner, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// Agents yields every agent.
func (o *Owner) Agents(ctx context.Context) iter.Seq2[AgentInfo, error] {
	return seq(func() ([]AgentInfo, error) {
		var out api.Agents
		_, err := o.c.do(ctx, http.MethodGet, "/v1/agents", nil, nil, authOwner, &out)
		return out.Agents, err
	})
}

// Agent fetches an agent by id or name.
func (o *Owner) Agent(ctx context.Context, ref string) (*AgentInfo, error) {
	return o.agentCall(ctx, http.MethodGet, ref, "", nil)
}

// Freeze stops an agent at once: its new spends are refused and approved,
// unsigned ones released, until Unfreeze.
func (o *Owner) Freeze(ctx context.Context, ref string) (*AgentInfo, error) {
	return o.agentCall(ctx, http.MethodPost, ref, "/freeze", empty)
}

// FreezeCancelSigned freezes an agent and cancels on chain every
// authorization signed for it that is not used yet.
func (o *Owner) FreezeCancelSigned(ctx context.Context, ref string) (*AgentInfo, []Cancellation, error) {
	var out api.FreezeResponse
	if _, err := o.c.do(ctx, http.MethodPost, "/v1/agents/"+escape(ref)+"/freeze", nil, api.FreezeRequest{CancelSigned: true}, authOwner, &out); err != nil {
		return nil, nil, err
	}
	return &out.Agent, out.Cancellations, nil
}

// Unfreeze lets a frozen agent spend again.
func (o *Owner) Unfreeze(ctx context.Context, ref string) (*AgentInfo, error) {
	return o.agentCall(ctx, http.MethodPost, ref, "/unfreeze", empty)
}

// Revoke ends an agent for good.
func (o *Owner) Revoke(ctx context.Context, ref string) (*AgentInfo, error) {
	return o.agentCall(ctx, http.MethodPost, ref, "/revoke", empty)
}

// RotateKey replaces an agent's identity address (its wallets stay).
func (o *Owner) RotateKey(ctx context.Context, ref, identityAddress string) (*AgentInfo, error) {
	return o.agentCall(ctx, http.MethodPost, ref, "/rotate-key", api.RotateKeyRequest{IdentityAddress: identityAddress})
}

func (o *Owner) agentCall(ctx context.Context, method, ref, suffix string, in any) (*AgentInfo, error) {
	var a AgentInfo
	if _, err := o.c.do(ctx, method, "/v1/agents/"+escape(ref)+suffix, nil, in, authOwner, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// Mandate fetches an agent's mandate and its version.
func (o *Owner) Mandate(ctx context.Context, ref string) (*MandateView, error) {
	var v MandateView
	if _, err := o.c.do(ctx, http.MethodGet, "/v1/agents/"+escape(ref)+"/mandate", nil, nil, authOwner, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// SetMandate replaces an agent's mandate (JSON, docs/api.md). With
// baseVersion non-nil the server refuses (mandate_conflict) if the mandate
// changed since that version.
func (o *Owner) SetMandate(ctx context.Context, ref string, mandate json.RawMessage, baseVersion *int64) (*MandateView, error) {
	var v MandateView
	body := api.SetMandateRequest{Mandate: mandate, BaseVersion: baseVersion}
	if _, err := o.c.do(ctx, http.MethodPut, "/v1/agents/"+escape(ref)+"/mandate", nil, body, authOwner, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// Limits is an agent's mandate and what is left of each window.
func (o *Owner) Limits(ctx context.Context, ref string) (*Limits, error) {
	var l Limits
	if _, err := o.c.do(ctx, http.MethodGet, "/v1/agents/"+escape(ref)+"/limits", nil, nil, authOwner, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// Balances yields an agent's on-chain balances.
func (o *Owner) Balances(ctx context.Context, ref string) iter.Seq2[Balance, error] {
	return seq(func() ([]Balance, error) {
		var out api.Balances
		_, err := o.c.do(ctx, http.MethodGet, "/v1/agents/"+escape(ref)+"/balances", nil, nil, authOwner, &out)
		return out.Balances, err
	})
}

// Fund mints dev-chain USDC to an agent's wallet (dev chain only; asset
// "" is USDC).
func (o *Owner) Fund(ctx context.Context, ref, amount, asset string) (*Funding, error) {
	var out Funding
	if _, err := o.c.do(ctx, http.MethodPost, "/v1/agents/"+escape(ref)+"/fund", nil, api.FundRequest{Amount: amount, Asset: asset}, authOwner, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Chains describes the server's connected chains.
func (o *Owner) Chains(ctx context.Context) (*Chains, error) {
	var out Chains
	if _, err := o.c.do(ctx, http.MethodGet, "/v1/chains", nil, nil, authOwner, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SpendFilter narrows Owner.Spends; zero values mean no filter.
type SpendFilter struct {
	Agent  string // id or name
	Status string // comma-separated statuses
	Limit  int    // at most this many (server default 100, at most 1000)
}

// Spends yields spends, newest first.
func (o *Owner) Spends(ctx context.Context, f SpendFilter) iter.Seq2[Spend, error] {
	return seq(func() ([]Spend, error) {
		q := url.Values{}
		if f.Agent != "" {
			q.Set("agent", f.Agent)
		}
		if f.Status != "" {
			q.Set("status", f.Status)
		}
		if f.Limit > 0 {
			q.Set("limit", strconv.Itoa(f.Limit))
		}
		var out api.Spends
		_, err := o.c.do(ctx, http.MethodGet, "/v1/spends", q, nil, authOwner, &out)
		return out.Spends, err
	})
}

// Spend fetches any spend.
func (o *Owner) Spend(ctx context.Context, id string) (*Spend, error) {
	return o.spendCall(ctx, http.MethodGet, "/v1/spends/"+escape(id), nil)
}

// Approvals yields the spends waiting for the owner's decision.
func (o *Owner) Approvals(ctx context.Context) iter.Seq2[Spend, error] {
	return seq(func() ([]Spend, error) {
		var out api.Approvals
		_, err := o.c.do(ctx, http.MethodGet, "/v1/approvals", nil, nil, authOwner, &out)
		return out.Approvals, err
	})
}

// Approve approves a pending spend; the agent then confirms it.
func (o *Owner) Approve(ctx context.Context, id string) (*Spend, error) {
	return o.spendCall(ctx, http.MethodPost, "/v1/approvals/"+escape(id)+"/approve", empty)
}

// Deny refuses a pending spend; the agent receives reason ("" for none).
func (o *Owner) Deny(ctx context.Context, id, reason string) (*Spend, error) {
	return o.spendCall(ctx, http.MethodPost, "/v1/approvals/"+escape(id)+"/deny", api.DenyRequest{Reason: reason})
}

// Resolve settles a spend whose outcome is unknown; the server checks it
// against the chain where one is connected.
func (o *Owner) Resolve(ctx context.Context, id string, r ResolveRequest) (*Spend, error) {
	return o.spendCall(ctx, http.MethodPost, "/v1/spends/"+escape(id)+"/resolve", r)
}

func (o *Owner) spendCall(ctx context.Context, method, path string, in any) (*Spend, error) {
	var s Spend
	if _, err := o.c.do(ctx, method, path, nil, in, authOwner, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// AuditTail returns the last n audit events, oldest first (n <= 0: the
// server's default, 20).
func (o *Owner) AuditTail(ctx context.Context, n int) ([]AuditEvent, error) {
	q := url.Values{}
	if n > 0 {
		q.Set("n", strconv.Itoa(n))
	}
	var out api.AuditEvents
	if _, err := o.c.do(ctx, http.MethodGet, "/v1/audit/tail", q, nil, authOwner, &out); err != nil {
		return nil, err
	}
	return out.Events, nil
}

// AuditVerify asks the server to verify its own chain. A broken chain is
// an *Error with code audit_chain_broken and details.seq. For a check
// that does not trust the server, export and verify offline
// (`purser audit verify --file`).
func (o *Owner) AuditVerify(ctx context.Context) (*AuditVerifyResult, error) {
	var r AuditVerifyResult
	if _, err := o.c.do(ctx, http.MethodPost, "/v1/audit/verify", nil, empty, authOwner, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// AuditKey fetches the server's audit public key.
func (o *Owner) AuditKey(ctx context.Context) (*AuditKey, error) {
	var k AuditKey
	if _, err := o.c.do(ctx, http.MethodGet, "/v1/audit/key", nil, nil, authOwner, &k); err != nil {
		return nil, err
	}
	return &k, nil
}
