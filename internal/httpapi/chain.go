package httpapi

import (
	"github.com/purserhq/purser/api"

	"context"
	"encoding/json"
	"math/big"
	"net/http"
	"strings"

	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/spend"
)

// Chains reads on-chain state for the API.
type Chains interface {
	// Networks lists the connected networks (CAIP-2).
	Networks() []string
	// Balance is owner's balance of token (0x address) on network.
	Balance(ctx context.Context, network, token, owner string) (*big.Int, error)
}

// Faucet mints test funds on a dev chain.
type Faucet interface {
	Network() string
	Fund(ctx context.Context, to string, amount *big.Int) (tx string, err error)
}

// balances reads every configured token balance of a's wallets on the
// connected networks.
func (s *Server) balances(ctx context.Context, a *spend.Agent) []api.Balance {
	out := []api.Balance{}
	if s.chains == nil {
		return out
	}
	connected := map[string]bool{}
	for _, n := range s.chains.Networks() {
		connected[n] = true
	}
	for _, w := range a.Wallets {
		if !connected[w.Network] {
			continue
		}
		for _, as := range s.assets.Assets() {
			if as.Network != w.Network || as.Address == "" {
				continue
			}
			b := api.Balance{Network: w.Network, Asset: as.Symbol, Token: as.Address, Address: w.Address}
			v, err := s.chains.Balance(ctx, w.Network, as.Address, w.Address)
			if err != nil {
				s.log.Warn("balance read failed", "network", w.Network, "err", err)
				b.Error = "chain_unavailable"
			} else {
				b.Balance = money.FormatAmount(v, as.Decimals)
			}
			out = append(out, b)
		}
	}
	return out
}

func (s *Server) ownerBalances(w http.ResponseWriter, r *http.Request) error {
	a, err := s.svc.GetAgent(r.Context(), r.PathValue("ref"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, api.Balances{AgentID: a.ID, Balances: s.balances(r.Context(), a)})
}

func (s *Server) agentBalances(w http.ResponseWriter, r *http.Request, c spend.Caller) error {
	l, err := s.svc.AgentLimits(r.Context(), c)
	if err != nil {
		return err
	}
	a, err := s.svc.GetAgent(r.Context(), l.Agent.ID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, api.Balances{AgentID: a.ID, Balances: s.balances(r.Context(), a)})
}

// agentAssets lists what this server can pay with, so a client can pick
// an offer it will not be refused for.
func (s *Server) agentAssets(w http.ResponseWriter, r *http.Request, c spend.Caller) error {
	if _, err := s.svc.AgentLimits(r.Context(), c); err != nil { // authenticates and spends the nonce
		return err
	}
	out := api.Assets{Assets: []api.Asset{}}
	for _, a := range s.assets.Assets() {
		out.Assets = append(out.Assets, api.Asset{Symbol: a.Symbol, Network: a.Network, Address: a.Address, Decimals: a.Decimals, USD: a.USD,
			EIP712Name: a.EIP712Name, EIP712Version: a.EIP712Version})
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) chainsInfo(w http.ResponseWriter, r *http.Request) error {
	nets := []string{}
	if s.chains != nil {
		nets = s.chains.Networks()
	}
	dev := ""
	if s.faucet != nil {
		dev = s.faucet.Network()
	}
	return writeJSON(w, http.StatusOK, api.Chains{Networks: nets, Relayer: s.relayer, DevNetwork: dev})
}

// fund mints dev-chain USDC to an agent's wallet and records it.
func (s *Server) fund(w http.ResponseWriter, r *http.Request) error {
	var req api.FundRequest
	if err := bindJSON(r, &req); err != nil {
		return err
	}
	if s.faucet == nil {
		return &spend.Error{Code: "dev_chain_only", Message: "funding mints test tokens and works only on the dev chain (purser serve --dev-chain)"}
	}
	network := s.faucet.Network()
	if req.Asset == "" {
		req.Asset = "USDC"
	}
	asset, err := s.assets.Lookup(network, req.Asset)
	if err != nil {
		return err
	}
	amt, err := money.ParsePositive(req.Amount, asset.Decimals)
	if err != nil {
		return err
	}
	a, err := s.svc.GetAgent(r.Context(), r.PathValue("ref"))
	if err != nil {
		return err
	}
	var addr string
	for _, wl := range a.Wallets {
		if wl.Network == network {
			addr = wl.Address
		}
	}
	if addr == "" {
		return &spend.Error{Code: spend.CodeInvalidState, Message: "agent " + a.Name + " has no wallet on " + network}
	}
	tx, err := s.faucet.Fund(r.Context(), addr, amt)
	if err != nil {
		return err
	}
	formatted := money.FormatAmount(amt, asset.Decimals)
	if err := s.svc.RecordFunding(r.Context(), a.ID, map[string]any{"network": network, "asset": asset.Symbol,
		"address": addr, "amount": formatted, "tx": tx}); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, api.Funding{AgentID: a.ID, Network: network, Asset: asset.Symbol,
		Address: addr, Amount: formatted, Tx: tx})
}

// reportSettlement takes the settlement an x402 seller returned (or its
// absence) to the spend's rail.
func (s *Server) reportSettlement(w http.ResponseWriter, r *http.Request, c spend.Caller) error {
	if len(strings.TrimSpace(string(c.Body))) == 0 || !json.Valid(c.Body) {
		return &spend.Error{Code: spend.CodeInvalidRequest, Message: "the body must be a JSON settlement report"}
	}
	sp, err := s.svc.ReportSettlement(r.Context(), c, r.PathValue("id"), c.Body)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.spendView(sp, false))
}
