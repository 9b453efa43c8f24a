package mcpserver_test

import (
	"context"
	"encoding/json"
	"math/big"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/mcpserver"
	"github.com/purserhq/purser/sdk"
)

// TestCosignTools: `purser mcp`'s tools pay from a co-signed (2of2) wallet
// through the SDK, which co-signs each spend with the server: x402_fetch
// pays the seller, pay sends a payout, both on the dev chain.
func TestCosignTools(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	p := startPurser(t, m, m.config(t.TempDir()))
	ctx := context.Background()
	chains, err := p.owner.Chains(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.dev.FundETH(ctx, common.HexToAddress(chains.Relayer), big.NewInt(1e18)); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "agent.key")
	id, err := sdk.GenerateKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	a, err := p.owner.CreateAgent(ctx, sdk.CreateAgentRequest{Name: "cosigner", IdentityAddress: id.Address(), Custody: api.Custody2of2,
		Mandate: json.RawMessage(`{"per_tx_auto":"1","per_tx_max":"1","daily":"5","rails":["x402","payout"]}`)})
	if err != nil {
		t.Fatal(err)
	}
	k, err := p.owner.CosignKeygen(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.AddToKeyFile(keyFile); err != nil {
		t.Fatal(err)
	}
	wallet := common.HexToAddress(k.Address)
	if _, err := m.dev.Mint(ctx, wallet, big.NewInt(2_000_000)); err != nil {
		t.Fatal(err)
	}
	signer, err := sdk.LoadKeyFile(keyFile) // as `purser mcp` loads PURSER_AGENT_KEY
	if err != nil {
		t.Fatal(err)
	}
	ag, err := sdk.NewAgent(p.url, signer, sdk.WithHTTPClient(&http.Client{Timeout: time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	cs := connect(t, mcpserver.New(mcpserver.NewSDKAgent(ag), mcpserver.Options{}), nil)

	before := m.balance(t, m.seller)
	res, out := call(t, cs, "x402_fetch", map[string]any{"url": m.sellerURL + "/item"})
	if res.IsError || str(out, "status") != "paid" {
		t.Fatalf("x402_fetch: %v", out)
	}
	if got := m.balance(t, m.seller) - before; got != price {
		t.Fatalf("the seller received %d, want %d", got, price)
	}
	to := common.HexToAddress("0x000000000000000000000000000000000000bEEF")
	res, out = call(t, cs, "pay", map[string]any{"address": to.Hex(), "amount": "0.50"})
	if res.IsError || str(out, "status") != "paid" {
		t.Fatalf("pay: %v", out)
	}
	if got := m.balance(t, to); got != 500_000 {
		t.Fatalf("payee received %d", got)
	}
	if got := m.balance(t, wallet); got != 2_000_000-price-500_000 {
		t.Fatalf("the co-signed wallet holds %d", got)
	}
}
