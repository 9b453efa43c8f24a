package mcpserver_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/purserhq/purser/internal/mcpserver"
	"github.com/purserhq/purser/internal/money"
)

// checkingAgent fails the fuzz test when a request that should have been
// refused as invalid input reaches it.
type checkingAgent struct {
	mcpserver.Agent
	mu  sync.Mutex
	bad []string
}

func (a *checkingAgent) fail(format string) {
	a.mu.Lock()
	a.bad = append(a.bad, format)
	a.mu.Unlock()
}

func (a *checkingAgent) Assets(context.Context) ([]mcpserver.Asset, error) {
	return []mcpserver.Asset{{Symbol: "USDC", Network: "eip155:8453", Decimals: 6, USD: true}}, nil
}

func (a *checkingAgent) Fetch(_ context.Context, r mcpserver.FetchRequest) (*mcpserver.FetchResult, error) {
	u, err := url.Parse(r.URL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.User != nil:
		a.fail("url " + r.URL)
	case len(r.Body) > mcpserver.MaxRequestBody:
		a.fail("body")
	case r.IdempotencyKey == "" && !r.DryRun:
		a.fail("no idempotency key")
	}
	if r.Max != "" {
		if _, err := money.ParsePositive(r.Max, 6); err != nil {
			a.fail("max " + r.Max)
		}
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n\x00") || k == "Host" || k == "X-Payment" || strings.HasPrefix(k, "Purser-") {
				a.fail("header " + k)
			}
		}
	}
	return &mcpserver.FetchResult{Outcome: mcpserver.OutcomeServed, HTTPStatus: 200, Header: http.Header{}, Body: []byte("ok")}, nil
}

func (a *checkingAgent) Authorize(_ context.Context, r mcpserver.AuthorizeRequest) (*mcpserver.Spend, error) {
	if _, err := money.ParsePositive(r.Amount, 6); err != nil {
		a.fail("amount " + r.Amount)
	}
	if len(r.Payee) != 42 || !strings.HasPrefix(r.Payee, "0x") || len(r.Memo) > 256 {
		a.fail("payee or memo")
	}
	return &mcpserver.Spend{ID: "spd_x", Status: mcpserver.StatusCaptured, Rail: "payout", Amount: r.Amount, Asset: "USDC", Captured: r.Amount}, nil
}

// FuzzToolArguments: whatever arguments a client sends, the answer is a
// tool result (never a panic or a protocol error) with a status, an
// invalid input carries a code, and nothing malformed reaches Purser.
func FuzzToolArguments(f *testing.F) {
	for _, seed := range []string{
		`{"url":"https://a.example/x","max_amount":"0.05","idempotency_key":"k"}`,
		`{"url":"http://127.0.0.1:1/x","method":"POST","body":"hi","headers":{"X-A":"b"}}`,
		`{"url":"file:///etc/passwd"}`,
		`{"address":"0x000000000000000000000000000000000000bEEF","amount":"0.10","memo":"m"}`,
		`{"address":"0x000000000000000000000000000000000000bEEF","amount":"-1"}`,
		`{"action":"pay","address":"0x000000000000000000000000000000000000bEEF","amount":"1"}`,
		`{"action":"x402_fetch","url":"https://a.example/x"}`,
		`{"spend_id":"spd_1"}`, `{}`, `[]`, `null`, `{"url":"https://a.example","URL":"x"}`,
	} {
		for tool := range 4 {
			f.Add(uint8(tool), seed)
		}
	}
	agent := &checkingAgent{}
	s := mcpserver.New(agent, mcpserver.Options{})
	cs := connect(f, s, nil)
	tools := []string{"x402_fetch", "pay", "dry_run", "limits"}
	f.Fuzz(func(t *testing.T, tool uint8, args string) {
		if !json.Valid([]byte(args)) {
			return // the client would not send it
		}
		name := tools[int(tool)%len(tools)]
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: json.RawMessage(args)})
		if err != nil {
			t.Fatalf("%s %s: protocol error %v", name, args, err)
		}
		raw, _ := json.Marshal(res.StructuredContent)
		var out map[string]any
		if json.Unmarshal(raw, &out) != nil || str(out, "status") == "" {
			t.Fatalf("%s %s: no status in %s", name, args, raw)
		}
		if str(out, "status") == "invalid_input" && (errCode(out) == "" || !res.IsError) {
			t.Fatalf("%s %s: invalid input without a code: %s", name, args, raw)
		}
		agent.mu.Lock()
		bad := agent.bad
		agent.mu.Unlock()
		if len(bad) > 0 {
			t.Fatalf("%s %s: reached Purser: %v", name, args, bad)
		}
	})
}
