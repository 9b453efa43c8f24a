package rails

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/spend"
)

func testRail(t *testing.T) *X402 {
	reg, err := money.NewRegistry(money.DefaultAssets()...)
	if err != nil {
		t.Fatal(err)
	}
	return &X402{Common: Common{Assets: reg}}
}

func offerReq(t *testing.T, mod func(o map[string]any), req func(r map[string]any)) spend.AuthorizeRequest {
	o := map[string]any{"scheme": "exact", "network": "eip155:84532", "amount": "10000",
		"asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
		"maxTimeoutSeconds": 60, "extra": map[string]any{"name": "USDC", "version": "2"}}
	if mod != nil {
		mod(o)
	}
	ob, _ := json.Marshal(o)
	r := map[string]any{"url": "https://api.seller.com/weather?q=1", "method": "GET", "x402_version": 2, "offer": json.RawMessage(ob)}
	if req != nil {
		req(r)
	}
	rb, _ := json.Marshal(r)
	return spend.AuthorizeRequest{Rail: "x402", Payee: "0xclaimed", Amount: "999", RailRequest: rb}
}

// TestPrepareTakesTheOffer: the intent the mandate judges is the offer,
// whatever the agent claims; offers Purser will not sign are refused.
func TestPrepareTakesTheOffer(t *testing.T) {
	r := testRail(t)
	req := offerReq(t, nil, nil)
	if err := r.Prepare(context.Background(), &req); err != nil {
		t.Fatal(err)
	}
	if req.Payee != "0x209693Bc6afc0C5328bA36FaF03C514EF312287C" || req.Amount != "0.01" || req.Host != "api.seller.com" ||
		req.Network != "eip155:84532" || req.Asset != "USDC" {
		t.Fatalf("prepared %+v", req)
	}
	cases := map[string]struct {
		req  spend.AuthorizeRequest
		code string
	}{
		"unknown asset":   {offerReq(t, func(o map[string]any) { o["asset"] = "0x0000000000000000000000000000000000000001" }, nil), "asset_unknown"},
		"asset by symbol": {offerReq(t, func(o map[string]any) { o["asset"] = "USDC" }, nil), "asset_unknown"},
		"other network":   {offerReq(t, func(o map[string]any) { o["network"] = "eip155:1" }, nil), "network_unknown"},
		"v1 name unknown": {offerReq(t, func(o map[string]any) { o["network"] = "atlantis" }, nil), "x402_network_unsupported"},
		"mainnet domain on sepolia": {offerReq(t, func(o map[string]any) {
			o["extra"] = map[string]any{"name": "USD Coin", "version": "2"}
		}, nil), "x402_domain_mismatch"},
		"no domain":       {offerReq(t, func(o map[string]any) { o["extra"] = map[string]any{} }, nil), "x402_domain_mismatch"},
		"payTo not addr":  {offerReq(t, func(o map[string]any) { o["payTo"] = "bob" }, nil), "x402_payto_invalid"},
		"zero payTo":      {offerReq(t, func(o map[string]any) { o["payTo"] = "0x0000000000000000000000000000000000000000" }, nil), "x402_payto_invalid"},
		"zero amount":     {offerReq(t, func(o map[string]any) { o["amount"] = "0" }, nil), "amount_zero"},
		"other scheme":    {offerReq(t, func(o map[string]any) { o["scheme"] = "upto" }, nil), "x402_scheme_unsupported"},
		"above max":       {offerReq(t, nil, func(r map[string]any) { r["max"] = "0.005" }), "x402_amount_above_max"},
		"bad url":         {offerReq(t, nil, func(r map[string]any) { r["url"] = "ftp://x" }), spend.CodeInvalidRequest},
		"unknown field":   {offerReq(t, nil, func(r map[string]any) { r["pay_anyway"] = true }), spend.CodeInvalidRequest},
		"version 3":       {offerReq(t, nil, func(r map[string]any) { r["x402_version"] = 3 }), "x402_version_unsupported"},
		"malformed offer": {offerReq(t, func(o map[string]any) { o["amount"] = "1e4" }, nil), "x402_malformed"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			req := c.req
			if err := r.Prepare(context.Background(), &req); spend.CodeOf(err) != c.code {
				t.Fatalf("err %v; want %s", err, c.code)
			}
		})
	}
	// The claim and the URL are compared in one spelling.
	req = offerReq(t, nil, func(r map[string]any) { r["url"] = "https://API.seller.com:443/weather" })
	req.Host = "api.seller.com."
	if err := r.Prepare(context.Background(), &req); err != nil || req.Host != "api.seller.com" {
		t.Fatalf("host claim in another spelling: %v, host %q", err, req.Host)
	}
	// A host claim that is not the URL's host is refused.
	req = offerReq(t, nil, nil)
	req.Host = "other.com"
	if err := r.Prepare(context.Background(), &req); spend.CodeOf(err) != "x402_host_mismatch" {
		t.Fatalf("host claim: %v", err)
	}
}
