package client

import (
	"context"
	"net/http"
)

// ReportSettlement tells Purser what the seller answered after a paid
// x402 retry (POST /v1/agent/spends/{id}/settlement); report is the
// JSON settlement report.
func (c *Client) ReportSettlement(ctx context.Context, id string, report any) (*Spend, error) {
	return c.spendCall(ctx, http.MethodPost, "/v1/agent/spends/"+escape(id)+"/settlement", report, authAgent)
}

// Assets lists what the server can pay with (GET /v1/agent/assets).
func (c *Client) Assets(ctx context.Context) ([]Asset, error) {
	var out struct {
		Assets []Asset `json:"assets"`
	}
	_, _, err := c.do(ctx, http.MethodGet, "/v1/agent/assets", nil, nil, authAgent, &out)
	return out.Assets, err
}

// Balances reads the calling agent's on-chain balances.
func (c *Client) Balances(ctx context.Context) ([]Balance, error) {
	var out struct {
		Balances []Balance `json:"balances"`
	}
	_, _, err := c.do(ctx, http.MethodGet, "/v1/agent/balances", nil, nil, authAgent, &out)
	return out.Balances, err
}

// AgentBalances reads an agent's on-chain balances (owner).
func (c *Client) AgentBalances(ctx context.Context, ref string) ([]Balance, error) {
	var out struct {
		Balances []Balance `json:"balances"`
	}
	_, _, err := c.do(ctx, http.MethodGet, "/v1/agents/"+escape(ref)+"/balances", nil, nil, authOwner, &out)
	return out.Balances, err
}

// Fund mints dev-chain USDC to an agent's wallet (owner; dev chain only).
func (c *Client) Fund(ctx context.Context, ref, amount, asset string) (*Funding, error) {
	var out Funding
	in := map[string]string{"amount": amount}
	if asset != "" {
		in["asset"] = asset
	}
	_, _, err := c.do(ctx, http.MethodPost, "/v1/agents/"+escape(ref)+"/fund", nil, in, authOwner, &out)
	return &out, err
}

// Chains describes the server's connected chains (owner).
func (c *Client) Chains(ctx context.Context) (*Chains, error) {
	var out Chains
	_, _, err := c.do(ctx, http.MethodGet, "/v1/chains", nil, nil, authOwner, &out)
	return &out, err
}
