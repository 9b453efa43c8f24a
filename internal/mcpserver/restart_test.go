package mcpserver_test

import (
	"context"
	"math/big"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/purserhq/purser/internal/app"
	"github.com/purserhq/purser/internal/mcpserver"
	"github.com/purserhq/purser/sdk"
)

// restart stops p and starts it again on the same data directory (on a
// new port), returning the new URL.
func (p *purser) restart(t testing.TB) string {
	t.Helper()
	p.stop()
	srv, err := app.Start(context.Background(), p.cfg)
	if err != nil {
		t.Errorf("restart: %v", err)
		return ""
	}
	p.srv, p.url = srv, "http://"+srv.Addr()
	owner, err := sdk.NewOwner(p.url, p.token, sdk.WithHTTPClient(&http.Client{Timeout: time.Minute}))
	if err != nil {
		t.Error(err)
	}
	p.owner = owner
	return p.url
}

func isAuthorize(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Path == "/v1/agent/spends"
}

// TestRestartMidCall: Purser commits a payment and restarts before its
// answer reaches the MCP server. The call retries with the same
// idempotency key once Purser is back and completes once; retrying the
// tool call with the same key never pays again.
func TestRestartMidCall(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	p := startPurser(t, m, m.config(t.TempDir()))
	key, _ := p.newAgent(t, m, "phoenix", `{"per_tx_auto":"0.10","per_tx_max":"1","daily":"5","rails":["x402"]}`, 1_000_000)
	rec := newRecorder(t, p.url)
	var once sync.Once
	var restarted sync.WaitGroup
	restarted.Add(1)
	rec.setFail(func(r *http.Request) int {
		mode := 0
		if isAuthorize(r) {
			once.Do(func() {
				mode = 1 // the spend is committed; its answer is lost
				go func() {
					defer restarted.Done()
					time.Sleep(200 * time.Millisecond) // let the answer be dropped first
					rec.setTarget(p.restart(t))
				}()
			})
		}
		return mode
	})
	s := mcpserver.New(agentOf(t, rec.srv.URL, key), mcpserver.Options{RetryFor: 30 * time.Second})
	cs := connect(t, s, nil)
	args := map[string]any{"url": m.sellerURL + "/item", "idempotency_key": "restart-1"}
	res, out := call(t, cs, "x402_fetch", args)
	restarted.Wait()
	if res.IsError || str(out, "status") != "paid" || str(out, "idempotency_key") != "restart-1" {
		t.Fatalf("fetch across a restart: %v", out)
	}
	id := str(out, "spend_id")
	// The retry meets the same spend: captured already (already_paid),
	// or, while Purser has not yet recorded the capture from the chain,
	// authorized, and its used authorization is sent again, which the
	// seller refuses. Either way nothing more is paid (checked below).
	res, out = call(t, cs, "x402_fetch", args)
	if st := str(out, "status"); !(res.IsError && st == "already_paid") && !(st == "seller_failed" && str(out, "spend_id") == id) {
		t.Fatalf("retried call: %v", out)
	}
	if got := m.balance(t, m.seller); got != price {
		t.Fatalf("the seller received %d, want exactly %d", got, price)
	}
	oneSpend(t, p, id)
}

// TestRestartUnknownThenRetry: Purser commits a payment and stays down
// longer than the MCP server retries: the call reports unknown with the
// idempotency key to retry with. Once Purser is back, the same call pays
// once; again, it pays nothing more.
func TestRestartUnknownThenRetry(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	p := startPurser(t, m, m.config(t.TempDir()))
	key, _ := p.newAgent(t, m, "lazarus", `{"per_tx_auto":"0.10","per_tx_max":"1","daily":"5","rails":["x402","payout"]}`, 1_000_000)
	rec := newRecorder(t, p.url)
	var down atomic.Bool
	var first atomic.Bool
	rec.setFail(func(r *http.Request) int {
		if down.Load() {
			return 2
		}
		if isAuthorize(r) && first.CompareAndSwap(false, true) {
			down.Store(true)
			return 1
		}
		return 0
	})
	s := mcpserver.New(agentOf(t, rec.srv.URL, key), mcpserver.Options{RetryFor: time.Second})
	cs := connect(t, s, nil)
	args := map[string]any{"url": m.sellerURL + "/item", "idempotency_key": "lazarus-1"}
	res, out := call(t, cs, "x402_fetch", args)
	if !res.IsError || str(out, "status") != "unknown" || str(out, "idempotency_key") != "lazarus-1" {
		t.Fatalf("fetch while Purser is down: %v", out)
	}
	if m.balance(t, m.seller) != 0 {
		t.Fatal("paid while Purser was down")
	}
	rec.setTarget(p.restart(t))
	down.Store(false)
	res, out = call(t, cs, "x402_fetch", args)
	if res.IsError || str(out, "status") != "paid" {
		t.Fatalf("retry after the restart: %v", out)
	}
	id := str(out, "spend_id")
	res, out = call(t, cs, "x402_fetch", args)
	if !res.IsError || str(out, "status") != "already_paid" {
		t.Fatalf("second retry: %v", out)
	}
	if got := m.balance(t, m.seller); got != price {
		t.Fatalf("the seller received %d, want exactly %d", got, price)
	}
	oneSpend(t, p, id)
}

// oneSpend checks that the agent made exactly one spend, id.
func oneSpend(t *testing.T, p *purser, id string) {
	t.Helper()
	spends, err := sdk.Collect(p.owner.Spends(context.Background(), sdk.SpendFilter{}))
	if err != nil || len(spends) != 1 || spends[0].SpendID != id || spends[0].Status != sdk.StatusCaptured {
		t.Fatalf("spends %+v %v; want one, %s, captured", spends, err, id)
	}
}

// TestPayoutRestart: a payout whose answer is lost while Purser goes down
// reports unknown with its key; retried once Purser is back, it answers
// the one payout, never a second transfer.
func TestPayoutRestart(t *testing.T) {
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
	key, _ := p.newAgent(t, m, "sender", `{"per_tx_auto":"1","per_tx_max":"1","daily":"5","rails":["payout"]}`, 2_000_000)
	rec := newRecorder(t, p.url)
	var down, first atomic.Bool
	rec.setFail(func(r *http.Request) int {
		if down.Load() {
			return 2
		}
		if isAuthorize(r) && first.CompareAndSwap(false, true) {
			down.Store(true)
			return 1
		}
		return 0
	})
	s := mcpserver.New(agentOf(t, rec.srv.URL, key), mcpserver.Options{RetryFor: time.Second})
	cs := connect(t, s, nil)
	to := common.HexToAddress("0x000000000000000000000000000000000000bEEF")
	args := map[string]any{"address": to.Hex(), "amount": "0.40", "idempotency_key": "payout-restart-1"}
	res, out := call(t, cs, "pay", args)
	if !res.IsError || str(out, "status") != "unknown" || str(out, "idempotency_key") != "payout-restart-1" {
		t.Fatalf("payout while Purser is down: %v", out)
	}
	rec.setTarget(p.restart(t))
	down.Store(false)
	for range 2 {
		res, out = call(t, cs, "pay", args)
		if res.IsError || str(out, "status") != "paid" || len(str(out, "transaction")) != 66 {
			t.Fatalf("retried payout: %v", out)
		}
	}
	if got := m.balance(t, to); got != 400_000 {
		t.Fatalf("the payee received %d, want exactly 400000", got)
	}
	oneSpend(t, p, str(out, "spend_id"))
}
