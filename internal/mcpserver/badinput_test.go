package mcpserver_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/purserhq/purser/internal/mcpserver"
	"github.com/purserhq/purser/sdk"
)

// TestBadInput: malformed arguments get a tool error (isError, status
// invalid_input, a code naming what is wrong), never a protocol error, and
// nothing is held, paid, or even asked of the seller.
func TestBadInput(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	p := startPurser(t, m, m.config(t.TempDir()))
	key, wallet := p.newAgent(t, m, "careful", `{"per_tx_auto":"1","per_tx_max":"1","daily":"5"}`, 1_000_000)
	s := mcpserver.New(agentOf(t, p.url, key), mcpserver.Options{})
	cs := connect(t, s, nil)
	item := m.sellerURL + "/item"
	to := "0x000000000000000000000000000000000000bEEF"
	huge := strings.Repeat("a", mcpserver.MaxRequestBody+1)
	manyHeaders := map[string]any{}
	for i := range 40 {
		manyHeaders["X-H"+strings.Repeat("x", i)] = "v"
	}
	cases := []struct {
		name, tool string
		args       any
		code       string
	}{
		{"missing url", "x402_fetch", map[string]any{}, "missing_field"},
		{"empty url", "x402_fetch", map[string]any{"url": ""}, "missing_field"},
		{"extra field", "x402_fetch", map[string]any{"url": item, "pay_anyway": true}, "unknown_field"},
		{"case variant field", "x402_fetch", map[string]any{"URL": item}, "unknown_field"},
		{"file url", "x402_fetch", map[string]any{"url": "file:///etc/passwd"}, "url_scheme_not_allowed"},
		{"data url", "x402_fetch", map[string]any{"url": "data:text/plain,hi"}, "url_scheme_not_allowed"},
		{"ftp url", "x402_fetch", map[string]any{"url": "ftp://example.com/x"}, "url_scheme_not_allowed"},
		{"relative url", "x402_fetch", map[string]any{"url": "/item"}, "url_invalid"},
		{"no host", "x402_fetch", map[string]any{"url": "http:///item"}, "url_invalid"},
		{"credentials in url", "x402_fetch", map[string]any{"url": "http://u:p@127.0.0.1/item"}, "url_invalid"},
		{"huge url", "x402_fetch", map[string]any{"url": "http://x.com/" + strings.Repeat("a", 3000)}, "value_invalid"},
		{"negative max", "x402_fetch", map[string]any{"url": item, "max_amount": "-0.01"}, "amount_negative"},
		{"over-precise max", "x402_fetch", map[string]any{"url": item, "max_amount": "0.0000001"}, "amount_too_precise"},
		{"zero max", "x402_fetch", map[string]any{"url": item, "max_amount": "0"}, "amount_zero"},
		{"numeric max", "x402_fetch", map[string]any{"url": item, "max_amount": 0.05}, "invalid_request"},
		{"exponent max", "x402_fetch", map[string]any{"url": item, "max_amount": "1e3"}, "amount_invalid"},
		{"huge body", "x402_fetch", map[string]any{"url": m.sellerURL + "/echo", "method": "POST", "body": huge}, "body_too_large"},
		{"huge header", "x402_fetch", map[string]any{"url": item, "headers": map[string]any{"X-Big": strings.Repeat("b", 5000)}}, "headers_too_large"},
		{"many headers", "x402_fetch", map[string]any{"url": item, "headers": manyHeaders}, "headers_too_large"},
		{"header injection", "x402_fetch", map[string]any{"url": item, "headers": map[string]any{"X-A": "v\r\nX-Payment: x"}}, "header_invalid"},
		{"payment header", "x402_fetch", map[string]any{"url": item, "headers": map[string]any{"X-PAYMENT": "forged"}}, "header_not_allowed"},
		{"host header", "x402_fetch", map[string]any{"url": item, "headers": map[string]any{"Host": "evil.com"}}, "header_not_allowed"},
		{"bad method", "x402_fetch", map[string]any{"url": item, "method": "CONNECT"}, "value_invalid"},
		{"negative wait", "x402_fetch", map[string]any{"url": item, "wait_for_approval_seconds": -1}, "value_invalid"},
		{"long wait", "x402_fetch", map[string]any{"url": item, "wait_for_approval_seconds": 100000}, "value_invalid"},
		{"fractional wait", "x402_fetch", map[string]any{"url": item, "wait_for_approval_seconds": 1.5}, "invalid_request"},
		{"bad idempotency key", "x402_fetch", map[string]any{"url": item, "idempotency_key": "has space"}, "value_invalid"},
		{"not an object", "x402_fetch", []any{item}, "invalid_request"},
		{"pay missing amount", "pay", map[string]any{"address": to}, "missing_field"},
		{"pay negative", "pay", map[string]any{"address": to, "amount": "-1"}, "amount_negative"},
		{"pay over-precise", "pay", map[string]any{"address": to, "amount": "0.0000001"}, "amount_too_precise"},
		{"pay leading zero", "pay", map[string]any{"address": to, "amount": "00.1"}, "amount_invalid"},
		{"pay huge amount", "pay", map[string]any{"address": to, "amount": strings.Repeat("9", 200)}, "amount_invalid"},
		{"pay bad address", "pay", map[string]any{"address": "0x123", "amount": "0.1"}, "value_invalid"},
		{"pay extra field", "pay", map[string]any{"address": to, "amount": "0.1", "gas": "1"}, "unknown_field"},
		{"pay long memo", "pay", map[string]any{"address": to, "amount": "0.1", "memo": strings.Repeat("m", 300)}, "value_invalid"},
		{"pay unknown asset", "pay", map[string]any{"address": to, "amount": "0.1", "asset": "DOGE"}, "asset_unknown"},
		{"limits extra field", "limits", map[string]any{"agent": "other"}, "unknown_field"},
		{"status missing id", "spend_status", map[string]any{}, "missing_field"},
		{"status bad id", "spend_status", map[string]any{"spend_id": "../../v1/agents"}, "value_invalid"},
		{"confirm bad id", "confirm", map[string]any{"spend_id": "spd_x/../y"}, "value_invalid"},
		{"dry run no action", "dry_run", map[string]any{"url": item}, "missing_field"},
		{"dry run bad action", "dry_run", map[string]any{"action": "steal"}, "value_invalid"},
		{"dry run mixed fields", "dry_run", map[string]any{"action": "pay", "address": to, "amount": "0.1", "url": item}, "unknown_field"},
		{"dry run file url", "dry_run", map[string]any{"action": "x402_fetch", "url": "file:///etc/passwd"}, "url_scheme_not_allowed"},
	}
	for _, c := range cases {
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: c.tool, Arguments: c.args})
		if err != nil {
			t.Errorf("%s: protocol error %v; want a tool error", c.name, err)
			continue
		}
		out := structured(t, cs, c.tool, res)
		if !res.IsError || str(out, "status") != "invalid_input" || errCode(out) != c.code {
			raw, _ := json.Marshal(out)
			t.Errorf("%s: isError %v, %s; want invalid_input %s", c.name, res.IsError, raw, c.code)
		}
	}
	// Nothing was held, paid or asked of the seller.
	spends, err := sdk.Collect(p.owner.Spends(context.Background(), sdk.SpendFilter{Agent: "careful"}))
	if err != nil || len(spends) != 0 {
		t.Fatalf("spends after bad input: %d %v", len(spends), err)
	}
	if l, err := p.owner.Limits(context.Background(), "careful"); err != nil || l.Daily.Used != "0" {
		t.Fatalf("daily used %+v %v", l.Daily, err)
	}
	if got := m.balance(t, wallet); got != 1_000_000 {
		t.Fatalf("wallet holds %d", got)
	}
	if m.balance(t, m.seller) != 0 || m.reqs.Load() != 0 {
		t.Fatalf("the seller was reached (%d requests) or paid", m.reqs.Load())
	}
}
