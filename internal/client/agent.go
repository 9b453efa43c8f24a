package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
)

// Authorize asks to spend (POST /v1/agent/spends). The answer is the spend
// for 201 (allowed), 200 (an idempotent replay) and 202 (waiting for
// approval: Status is pending_approval). When the mandate refuses, the
// error is an *APIError with code spend_denied and the refused spend,
// taken from details.spend, is returned too.
func (c *Client) Authorize(ctx context.Context, req AuthorizeRequest) (*Spend, error) {
	var s Spend
	_, _, err := c.do(ctx, http.MethodPost, "/v1/agent/spends", nil, req, authAgent, &s)
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.Code == "spend_denied" {
			return deniedSpend(ae), err
		}
		return nil, err
	}
	return &s, nil
}

// deniedSpend builds the refused spend from a spend_denied error:
// details.spend when present, else what details carries on its own.
func deniedSpend(ae *APIError) *Spend {
	var d struct {
		Spend   *Spend   `json:"spend"`
		SpendID string   `json:"spend_id"`
		Status  string   `json:"status"`
		Reasons []string `json:"reasons"`
	}
	_ = json.Unmarshal(ae.rawDetails, &d)
	s := d.Spend
	if s == nil {
		s = &Spend{}
	}
	if s.SpendID == "" {
		s.SpendID = d.SpendID
	}
	if s.Status == "" {
		s.Status = d.Status
		if s.Status == "" {
			s.Status = StatusDenied
		}
	}
	if s.Decision == "" {
		s.Decision = "deny"
	}
	if len(s.Reasons) == 0 {
		s.Reasons = d.Reasons
	}
	return s
}

// AgentSpend fetches one of the agent's own spends.
func (c *Client) AgentSpend(ctx context.Context, id string) (*Spend, error) {
	return c.spendCall(ctx, http.MethodGet, "/v1/agent/spends/"+escape(id), nil, authAgent)
}

// Confirm executes an authorized spend on a rail Purser executes.
func (c *Client) Confirm(ctx context.Context, id string) (*Spend, error) {
	return c.spendCall(ctx, http.MethodPost, "/v1/agent/spends/"+escape(id)+"/confirm", empty, authAgent)
}

// Capture captures an authorized spend; amount "" captures the full hold.
func (c *Client) Capture(ctx context.Context, id, amount string) (*Spend, error) {
	body := struct {
		Amount string `json:"amount,omitempty"`
	}{amount}
	return c.spendCall(ctx, http.MethodPost, "/v1/agent/spends/"+escape(id)+"/capture", body, authAgent)
}

// Release releases an authorized spend's hold.
func (c *Client) Release(ctx context.Context, id string) (*Spend, error) {
	return c.spendCall(ctx, http.MethodPost, "/v1/agent/spends/"+escape(id)+"/release", empty, authAgent)
}

// Limits is the calling agent's limits and usage.
func (c *Client) Limits(ctx context.Context) (*Limits, error) {
	var l Limits
	if _, _, err := c.do(ctx, http.MethodGet, "/v1/agent/limits", nil, nil, authAgent, &l); err != nil {
		return nil, err
	}
	return &l, nil
}
