package sdk_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/sdk"
)

// agent2of2 creates a co-signed (2of2) agent the way `purser agent create
// --custody 2of2` does: identity key file, agent, key generation with the
// server, the share into the key file; then funds its wallet and loads
// the key file into an Agent, which co-signs by itself.
func (m *market) agent2of2(t *testing.T, name, mandate string, fund int64) *buyer {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), name+".key")
	id, err := sdk.GenerateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := m.owner.CreateAgent(ctx, sdk.CreateAgentRequest{Name: name, IdentityAddress: id.Address(),
		Mandate: json.RawMessage(mandate), Custody: api.Custody2of2})
	if err != nil {
		t.Fatalf("create 2of2 agent %s: %v", name, err)
	}
	start := time.Now()
	k, err := m.owner.CosignKeygen(ctx, a.ID)
	if err != nil {
		t.Fatalf("key generation: %v", err)
	}
	t.Logf("key generation over loopback: %s", time.Since(start))
	if err := k.AddToKeyFile(path); err != nil {
		t.Fatal(err)
	}
	if a, err = m.owner.Agent(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	b := &buyer{id: a.ID, name: name, keyPath: path}
	for _, w := range a.Wallets {
		if w.Network == m.dev.Network() {
			b.wallet = common.HexToAddress(w.Address)
			if w.Custody != api.WalletCustodyCosign {
				t.Errorf("wallet custody %q, want %q", w.Custody, api.WalletCustodyCosign)
			}
		}
	}
	if a.Custody != api.Custody2of2 || b.wallet.Hex() != k.Address {
		t.Fatalf("agent %s: custody %q, wallet %s, generated %s", name, a.Custody, b.wallet.Hex(), k.Address)
	}
	if fund > 0 {
		if _, err := m.dev.Mint(ctx, b.wallet, big.NewInt(fund)); err != nil {
			t.Fatal(err)
		}
	}
	s, err := sdk.LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if b.Agent, err = sdk.NewAgent(m.url, s, sdk.WithHTTPClient(&http.Client{Timeout: time.Minute})); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCosignE2E: a 2of2 agent pays x402 v2 and v1 sellers through the
// facilitator on the dev chain and sends a payout, all co-signed; balances
// and authorizationState check out on chain. Concurrent payments against a
// budget for some of them yield exactly that many transfers.
func TestCosignE2E(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	ctx := context.Background()

	t.Run("x402 v2 and v1", func(t *testing.T) {
		for _, v1 := range []bool{false, true} {
			version := map[bool]int{false: 2, true: 1}[v1]
			s := m.seller(t, v1, route{pattern: "GET /item", amount: price})
			b := m.agent2of2(t, fmt.Sprintf("cosigner-v%d", version), green, 1_000_000)
			hc := &http.Client{Transport: sdk.Transport(b.Agent, nil, nil)}
			resp, body, err := get(ctx, hc, s.url+"/item")
			if err != nil || resp.StatusCode != http.StatusOK || string(body) != "content of /item" {
				t.Fatalf("v%d: %v %v %q", version, resp, err, body)
			}
			if got := m.balance(t, s.payTo); got != price {
				t.Errorf("v%d: the seller received %d", version, got)
			}
			if got := m.balance(t, b.wallet); got != 1_000_000-price {
				t.Errorf("v%d: the wallet holds %d", version, got)
			}
			l := m.spends(t, b.name)
			if len(l) != 1 || !m.used(t, b, &l[0]) {
				t.Fatalf("v%d: spends %+v, or the authorization is unused on chain", version, l)
			}
			// Fetch too, the CLI's path.
			res, err := b.Fetch(ctx, sdk.FetchRequest{URL: s.url + "/item"})
			if err != nil || res.Outcome != sdk.Paid {
				t.Fatalf("v%d fetch: %+v %v", version, res, err)
			}
			if got := m.balance(t, s.payTo); got != 2*price {
				t.Errorf("v%d: after fetch the seller holds %d", version, got)
			}
		}
	})

	t.Run("payout", func(t *testing.T) {
		chains, err := m.owner.Chains(ctx)
		if err != nil || chains.Relayer == "" {
			t.Fatalf("chains: %+v %v", chains, err)
		}
		if _, err := m.dev.FundETH(ctx, common.HexToAddress(chains.Relayer), big.NewInt(1e18)); err != nil {
			t.Fatal(err)
		}
		b := m.agent2of2(t, "cosign-payer", `{"per_tx_auto":"2","per_tx_max":"5","daily":"10","rails":["payout"]}`, 2_000_000)
		to := common.HexToAddress("0x000000000000000000000000000000000000bEEF")
		before := m.balance(t, to)
		sp, err := b.Pay(ctx, sdk.PayRequest{To: to.Hex(), Amount: "0.75", IdempotencyKey: "cosign-payout"})
		if err != nil || (sp.Status != sdk.StatusCaptured && sp.Status != sdk.StatusUnknown) {
			t.Fatalf("payout: %+v %v", sp, err)
		}
		if sp.Status == sdk.StatusUnknown {
			time.Sleep(2 * time.Second)
		}
		if got := m.balance(t, to) - before; got != 750_000 {
			t.Fatalf("payee received %d, want 750000", got)
		}
		if got := m.balance(t, b.wallet); got != 1_250_000 {
			t.Fatalf("wallet holds %d", got)
		}
	})

	t.Run("approved spends are co-signed at confirm", func(t *testing.T) {
		s := m.seller(t, false, route{pattern: "GET /item", amount: price})
		// Everything needs the owner's approval.
		b := m.agent2of2(t, "cosign-yellow", `{"per_tx_auto":"0","per_tx_max":"1","daily":"5","rails":["x402","payout"]}`, 1_000_000)
		res, err := b.Fetch(ctx, sdk.FetchRequest{URL: s.url + "/item"})
		if err != nil || res.Outcome != sdk.Pending || res.Spend.Cosign != nil {
			t.Fatalf("yellow fetch: %+v %v (a pending spend must carry no signing material)", res, err)
		}
		if _, err := m.owner.Approve(ctx, res.Spend.SpendID); err != nil {
			t.Fatal(err)
		}
		done, err := b.ConfirmFetch(ctx, res.Spend.SpendID, sdk.FetchRequest{})
		if err != nil || done.Outcome != sdk.Paid || string(done.Body) != "content of /item" {
			t.Fatalf("confirm fetch: %+v %v", done, err)
		}
		if got := m.balance(t, s.payTo); got != price {
			t.Fatalf("the seller received %d", got)
		}
		// A payout approved while the agent waits (WaitForApproval, then Confirm).
		to := common.HexToAddress("0x000000000000000000000000000000000000cafe")
		_, err = b.Pay(ctx, sdk.PayRequest{To: to.Hex(), Amount: "0.20"})
		var ar *sdk.ApprovalRequiredError
		if !errors.As(err, &ar) {
			t.Fatalf("yellow payout: %v", err)
		}
		go func() {
			time.Sleep(300 * time.Millisecond)
			m.owner.Approve(ctx, ar.SpendID)
		}()
		decided, err := b.WaitForApproval(ctx, ar.SpendID, 100*time.Millisecond)
		if err != nil || decided.Status != sdk.StatusAuthorized {
			t.Fatalf("wait: %+v %v", decided, err)
		}
		sp, err := b.Confirm(ctx, ar.SpendID)
		if err != nil || (sp.Status != sdk.StatusCaptured && sp.Status != sdk.StatusUnknown) {
			t.Fatalf("confirm payout: %+v %v", sp, err)
		}
		if sp.Status == sdk.StatusUnknown {
			time.Sleep(2 * time.Second)
		}
		if got := m.balance(t, to); got != 200_000 {
			t.Fatalf("payee received %d, want 200000", got)
		}
	})

	t.Run("budget exact under concurrency", func(t *testing.T) {
		s := m.seller(t, false, route{pattern: "GET /item", amount: price})
		// A daily budget for exactly 5 payments of 0.01.
		b := m.agent2of2(t, "cosign-budget", `{"per_tx_auto":"0.10","per_tx_max":"1","daily":"0.05","rails":["x402"]}`, 1_000_000)
		hc := &http.Client{Transport: sdk.Transport(b.Agent, nil, nil)}
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok := 0
		start := time.Now()
		for range 15 {
			wg.Go(func() {
				resp, _, err := get(ctx, hc, s.url+"/item")
				if err == nil && resp.StatusCode == http.StatusOK {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		t.Logf("15 concurrent co-signed payments in %s", time.Since(start))
		if ok != 5 || m.balance(t, s.payTo) != 5*price {
			t.Fatalf("%d payments served, seller holds %d; want exactly 5", ok, m.balance(t, s.payTo))
		}
	})
}

// TestCosignLatency measures, side by side in one run, the same x402
// payment (Transport, seller, facilitator, dev chain) from a server-custody
// and from a 2of2 wallet, and logs the medians. Every payment must succeed.
// It takes about a minute (the dev chain mines each settlement):
// PURSER_MEASURE=1 runs it.
func TestCosignLatency(t *testing.T) {
	if os.Getenv("PURSER_MEASURE") == "" {
		t.Skip("a measurement: PURSER_MEASURE=1 go test ./sdk -run TestCosignLatency -v")
	}
	m := newMarket(t)
	ctx := context.Background()
	s := m.seller(t, false, route{pattern: "GET /item", amount: price})
	const n = 15
	median := func(b *buyer) time.Duration {
		hc := &http.Client{Transport: sdk.Transport(b.Agent, nil, nil)}
		var d []time.Duration
		for range n {
			start := time.Now()
			resp, _, err := get(ctx, hc, s.url+"/item")
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: %v %v", b.name, resp, err)
			}
			d = append(d, time.Since(start))
		}
		slices.Sort(d)
		return d[n/2]
	}
	server := m.agent(t, "latency-server", green, 1_000_000)
	cosigned := m.agent2of2(t, "latency-2of2", green, 1_000_000)
	median(server) // warm up both paths
	ms, mc := median(server), median(cosigned)
	t.Logf("x402 payment median over %d: server custody %s, 2of2 co-signed %s, added %s", n, ms, mc, mc-ms)
	if m.balance(t, s.payTo) != (3*n)*price {
		t.Fatalf("the seller holds %d, want %d", m.balance(t, s.payTo), 3*n*price)
	}
}
