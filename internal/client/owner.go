package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
)

// empty is the body of POSTs that take none: the server reads "{}".
var empty = struct{}{}

// CreateAgent registers an agent (POST /v1/agents).
func (c *Client) CreateAgent(ctx context.Context, req CreateAgentRequest) (*Agent, error) {
	var a Agent
	if _, _, err := c.do(ctx, http.MethodPost, "/v1/agents", nil, req, authOwner, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// ListAgents lists all agents.
func (c *Client) ListAgents(ctx context.Context) ([]Agent, error) {
	var out struct {
		Agents []Agent `json:"agents"`
	}
	if _, _, err := c.do(ctx, http.MethodGet, "/v1/agents", nil, nil, authOwner, &out); err != nil {
		return nil, err
	}
	return out.Agents, nil
}

// GetAgent fetches an agent by id or name.
func (c *Client) GetAgent(ctx context.Context, ref string) (*Agent, error) {
	return c.agentCall(ctx, http.MethodGet, ref, "", nil)
}

// FreezeAgent freezes an agent: its spends are refused until unfrozen.
func (c *Client) FreezeAgent(ctx context.Context, ref string) (*Agent, error) {
	return c.agentCall(ctx, http.MethodPost, ref, "/freeze", empty)
}

// UnfreezeAgent unfreezes an agent.
func (c *Client) UnfreezeAgent(ctx context.Context, ref string) (*Agent, error) {
	return c.agentCall(ctx, http.MethodPost, ref, "/unfreeze", empty)
}

// RevokeAgent revokes an agent for good.
func (c *Client) RevokeAgent(ctx context.Context, ref string) (*Agent, error) {
	return c.agentCall(ctx, http.MethodPost, ref, "/revoke", empty)
}

// RotateKey replaces an agent's identity address.
func (c *Client) RotateKey(ctx context.Context, ref, identityAddress string) (*Agent, error) {
	return c.agentCall(ctx, http.MethodPost, ref, "/rotate-key", map[string]string{"identity_address": identityAddress})
}

// Cancellation is what `freeze --cancel-signed` did to one signed spend.
type Cancellation struct {
	SpendID string   `json:"spend_id"`
	Status  string   `json:"status"`
	Reasons []string `json:"reasons"`
	RailRef string   `json:"rail_ref,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// FreezeAgentCancelSigned freezes an agent and cancels on chain every
// authorization signed for it that is not used yet.
func (c *Client) FreezeAgentCancelSigned(ctx context.Context, ref string) (*Agent, []Cancellation, error) {
	var out struct {
		Cancellations []Cancellation `json:"cancellations"`
	}
	_, raw, err := c.do(ctx, http.MethodPost, "/v1/agents/"+escape(ref)+"/freeze", nil, map[string]bool{"cancel_signed": true}, authOwner, &out)
	if err != nil {
		return nil, nil, err
	}
	var a Agent
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, nil, err
	}
	return &a, out.Cancellations, nil
}

func (c *Client) agentCall(ctx context.Context, method, ref, suffix string, in any) (*Agent, error) {
	var a Agent
	if _, _, err := c.do(ctx, method, "/v1/agents/"+escape(ref)+suffix, nil, in, authOwner, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// GetMandate fetches an agent's mandate and its version.
func (c *Client) GetMandate(ctx context.Context, ref string) (*MandateView, error) {
	var v MandateView
	if _, _, err := c.do(ctx, http.MethodGet, "/v1/agents/"+escape(ref)+"/mandate", nil, nil, authOwner, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// SetMandate replaces an agent's mandate. With baseVersion non-nil the
// server refuses (mandate_conflict) if the mandate changed since.
func (c *Client) SetMandate(ctx context.Context, ref string, mandate json.RawMessage, baseVersion *int64) (*MandateView, error) {
	body := struct {
		Mandate     json.RawMessage `json:"mandate"`
		BaseVersion *int64          `json:"base_version,omitempty"`
	}{mandate, baseVersion}
	var v MandateView
	if _, _, err := c.do(ctx, http.MethodPut, "/v1/agents/"+escape(ref)+"/mandate", nil, body, authOwner, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// AgentLimits is an agent's limits and usage, as the owner sees them.
func (c *Client) AgentLimits(ctx context.Context, ref string) (*Limits, error) {
	var l Limits
	if _, _, err := c.do(ctx, http.MethodGet, "/v1/agents/"+escape(ref)+"/limits", nil, nil, authOwner, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// ListSpends lists spends, newest first.
func (c *Client) ListSpends(ctx context.Context, f SpendFilter) ([]Spend, error) {
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
	var out struct {
		Spends []Spend `json:"spends"`
	}
	if _, _, err := c.do(ctx, http.MethodGet, "/v1/spends", q, nil, authOwner, &out); err != nil {
		return nil, err
	}
	return out.Spends, nil
}

// GetSpend fetches any spend.
func (c *Client) GetSpend(ctx context.Context, id string) (*Spend, error) {
	return c.spendCall(ctx, http.MethodGet, "/v1/spends/"+escape(id), nil, authOwner)
}

// ListApprovals lists the spends waiting for the owner's decision.
func (c *Client) ListApprovals(ctx context.Context) ([]Spend, error) {
	var out struct {
		Approvals []Spend `json:"approvals"`
	}
	if _, _, err := c.do(ctx, http.MethodGet, "/v1/approvals", nil, nil, authOwner, &out); err != nil {
		return nil, err
	}
	return out.Approvals, nil
}

// Approve approves a pending spend.
func (c *Client) Approve(ctx context.Context, id string) (*Spend, error) {
	return c.spendCall(ctx, http.MethodPost, "/v1/approvals/"+escape(id)+"/approve", empty, authOwner)
}

// Deny denies a pending spend; reason may be empty.
func (c *Client) Deny(ctx context.Context, id, reason string) (*Spend, error) {
	body := struct {
		Reason string `json:"reason,omitempty"`
	}{reason}
	return c.spendCall(ctx, http.MethodPost, "/v1/approvals/"+escape(id)+"/deny", body, authOwner)
}

func (c *Client) spendCall(ctx context.Context, method, path string, in any, auth authKind) (*Spend, error) {
	var s Spend
	if _, _, err := c.do(ctx, method, path, nil, in, auth, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// AuditTail returns the last n audit events, oldest first (n <= 0: the
// server's default).
func (c *Client) AuditTail(ctx context.Context, n int) ([]AuditEvent, error) {
	q := url.Values{}
	if n > 0 {
		q.Set("n", strconv.Itoa(n))
	}
	var out struct {
		Events []AuditEvent `json:"events"`
	}
	if _, _, err := c.do(ctx, http.MethodGet, "/v1/audit/tail", q, nil, authOwner, &out); err != nil {
		return nil, err
	}
	return out.Events, nil
}

// AuditVerify asks the server to verify its own chain. A broken chain is
// an *APIError with code audit_chain_broken and details.seq.
func (c *Client) AuditVerify(ctx context.Context) (*AuditVerifyResult, error) {
	var r AuditVerifyResult
	if _, _, err := c.do(ctx, http.MethodPost, "/v1/audit/verify", nil, empty, authOwner, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// AuditKey fetches the server's audit public key.
func (c *Client) AuditKey(ctx context.Context) (*AuditKey, error) {
	var k AuditKey
	if _, _, err := c.do(ctx, http.MethodGet, "/v1/audit/key", nil, nil, authOwner, &k); err != nil {
		return nil, err
	}
	return &k, nil
}

// ResolveRequest is an owner's resolution of a spend whose outcome is
// unknown: CapturedTx (it was paid in this transaction) or Released with
// a Reason (nothing moved, and nothing can move any more).
type ResolveRequest struct {
	CapturedTx string `json:"captured_tx,omitempty"`
	Released   bool   `json:"released,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// Resolve settles an unknown spend (POST /v1/spends/{id}/resolve); the
// server checks it against the chain where one is connected.
func (c *Client) Resolve(ctx context.Context, id string, r ResolveRequest) (*Spend, error) {
	return c.spendCall(ctx, http.MethodPost, "/v1/spends/"+escape(id)+"/resolve", r, authOwner)
}
