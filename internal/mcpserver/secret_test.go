package mcpserver_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/purserhq/purser/internal/mcpserver"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.b.Bytes()...)
}

// keyForms are the ways the key's 32 bytes could be spelled.
func keyForms(raw []byte) []string {
	h := hex.EncodeToString(raw)
	return []string{h, strings.ToUpper(h), "0x" + h, "0X" + strings.ToUpper(h),
		base64.StdEncoding.EncodeToString(raw), base64.RawStdEncoding.EncodeToString(raw),
		base64.URLEncoding.EncodeToString(raw), base64.RawURLEncoding.EncodeToString(raw)}
}

// TestKeyNeverLeaves: over a full session (every tool, a payment, an
// approval, a payout, a refusal, bad input), the agent key's bytes appear
// in no request or response between the MCP server and Purser (bodies and
// headers), no tool result and no log line.
func TestKeyNeverLeaves(t *testing.T) {
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
	key, _ := p.newAgent(t, m, "secretive", `{"per_tx_auto":"0.10","per_tx_max":"1","daily":"2","rails":["x402","payout"]}`, 2_000_000)
	rec := newRecorder(t, p.url)
	var logs syncBuffer
	s := mcpserver.New(agentOf(t, rec.srv.URL, key), mcpserver.Options{Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ApprovalURL: "http://127.0.0.1:1/approve/{spend_id}"})
	cs := connect(t, s, nil)
	var results [][]byte
	do := func(name string, args any) map[string]any {
		res, out := call(t, cs, name, args)
		raw, _ := json.Marshal(res)
		results = append(results, raw)
		return out
	}
	do("limits", nil)
	do("balance", nil)
	do("dry_run", map[string]any{"action": "x402_fetch", "url": m.sellerURL + "/item"})
	do("dry_run", map[string]any{"action": "pay", "address": "0x000000000000000000000000000000000000bEEF", "amount": "0.05"})
	if out := do("x402_fetch", map[string]any{"url": m.sellerURL + "/item", "idempotency_key": "k1"}); str(out, "status") != "paid" {
		t.Fatalf("fetch: %v", out)
	}
	do("x402_fetch", map[string]any{"url": m.sellerURL + "/item", "idempotency_key": "k1"})
	out := do("x402_fetch", map[string]any{"url": m.sellerURL + "/pricey", "idempotency_key": "k2"})
	id := str(out, "spend_id")
	do("spend_status", map[string]any{"spend_id": id})
	if _, err := p.owner.Approve(ctx, id); err != nil {
		t.Fatal(err)
	}
	if out := do("confirm", map[string]any{"spend_id": id}); str(out, "status") != "paid" {
		t.Fatalf("confirm: %v", out)
	}
	if out := do("pay", map[string]any{"address": "0x000000000000000000000000000000000000bEEF", "amount": "0.05", "idempotency_key": "p1"}); str(out, "status") != "paid" {
		t.Fatalf("pay: %v", out)
	}
	do("pay", map[string]any{"address": "0x000000000000000000000000000000000000bEEF", "amount": "5"})
	do("x402_fetch", map[string]any{"url": "file:///etc/passwd"})
	do("spend_status", map[string]any{"spend_id": "spd_nope"})
	tools, _ := cs.ListTools(ctx, nil)
	raw, _ := json.Marshal(tools)
	results = append(results, raw)

	traffic := rec.all()
	if len(traffic) < 10 {
		t.Fatalf("only %d requests and answers recorded", len(traffic))
	}
	everything := append(append(traffic, results...), logs.Bytes())
	for _, form := range keyForms(crypto.FromECDSA(key)) {
		for i, b := range everything {
			if bytes.Contains(bytes.ToLower(b), bytes.ToLower([]byte(form))) {
				t.Fatalf("the agent key (%d chars) appears in item %d of the session: %.300s", len(form), i, b)
			}
		}
	}
	// The signature headers did travel: the proxy saw signed requests.
	if !bytes.Contains(bytes.Join(traffic, nil), []byte("Purser-Signature")) {
		t.Fatal("no signed request went through the proxy")
	}
}
