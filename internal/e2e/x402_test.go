package e2e

import (
	"context"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/internal/app"
	"github.com/purserhq/purser/internal/devchain"
	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/internal/facilitator"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/sdk"
	"github.com/purserhq/purser/x402"
	"github.com/purserhq/purser/x402/middleware"
)

// market is a dev chain with Purser's facilitator and a seller charging
// with Purser's middleware: everything an x402 payment crosses, for real.
type market struct {
	dev       *devchain.Chain
	facURL    string
	seller    common.Address
	sellerURL string
	asset     money.Asset
	keys      sync.Map // agent name → identity key
}

const price = 10000 // 0.01 USDC

func newMarket(t *testing.T) *market {
	t.Helper()
	dev, err := devchain.Start(devchain.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	ctx := context.Background()
	gas, _ := crypto.GenerateKey()
	if _, err := dev.FundETH(ctx, crypto.PubkeyToAddress(gas.PublicKey), big.NewInt(1e18)); err != nil {
		t.Fatal(err)
	}
	fac, err := facilitator.New(facilitator.Config{Networks: map[string]facilitator.Network{
		dev.Network(): {Client: dev.Client(), Relayer: evm.NewRelayer(dev.Client(), evm.KeySigner(gas))}}})
	if err != nil {
		t.Fatal(err)
	}
	fs := httptest.NewServer(fac.Handler())
	t.Cleanup(fs.Close)
	sk, _ := crypto.GenerateKey()
	m := &market{dev: dev, facURL: fs.URL, seller: crypto.PubkeyToAddress(sk.PublicKey),
		asset: money.Asset{Symbol: "USDC", Network: dev.Network(), Address: dev.Token().Hex(), Decimals: 6, USD: true, EIP712Name: "USD Coin", EIP712Version: "2"}}
	route := func(pattern string, amount int64) middleware.Route {
		return middleware.Route{Pattern: pattern, Amount: fmt.Sprint(amount), Asset: m.asset.Address, Network: dev.Network(),
			PayTo: m.seller.Hex(), EIP712Name: "USD Coin", EIP712Version: "2", Description: "test", MimeType: "text/plain"}
	}
	mw, err := middleware.New(middleware.Config{Facilitator: &x402.FacilitatorClient{URL: fs.URL},
		Routes: []middleware.Route{route("GET /item", price), route("GET /pricey", 500000), route("GET /short", price)}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "content of "+r.URL.Path) })
	ss := httptest.NewServer(mw(mux))
	t.Cleanup(ss.Close)
	m.sellerURL = ss.URL
	return m
}

func (m *market) balance(t *testing.T, who common.Address) *big.Int {
	t.Helper()
	b, err := m.dev.Client().BalanceOf(context.Background(), m.dev.Token(), who)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// purserOn starts Purser connected to the market's chain.
func (m *market) purserOn(t *testing.T, dataDir string) *node {
	return startApp(t, app.Config{DataDir: dataDir, RPC: map[string]string{m.dev.Network(): m.dev.RPCURL()},
		Assets: []money.Asset{m.asset}, DefaultNetwork: m.dev.Network()})
}

// agentFor creates a funded agent and returns its payer.
func (m *market) agentFor(t *testing.T, n *node, name, mandate string, fund int64) (*sdk.Agent, common.Address) {
	t.Helper()
	key, err := agentauth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	m.keys.Store(name, key)
	a, err := n.owner.CreateAgent(context.Background(), sdk.CreateAgentRequest{Name: name,
		IdentityAddress: agentauth.Address(key).Hex(), Mandate: json.RawMessage(mandate)})
	if err != nil {
		t.Fatal(err)
	}
	var wallet common.Address
	for _, w := range a.Wallets {
		if w.Network == m.dev.Network() {
			wallet = common.HexToAddress(w.Address)
		}
	}
	if wallet == (common.Address{}) {
		t.Fatalf("agent has no wallet on %s: %+v", m.dev.Network(), a.Wallets)
	}
	if fund > 0 {
		if _, err := m.dev.Mint(context.Background(), wallet, big.NewInt(fund)); err != nil {
			t.Fatal(err)
		}
	}
	c, err := sdk.NewAgent(n.url, signer(t, key), sdk.WithHTTPClient(&http.Client{Timeout: time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	return c, wallet
}

func nonceOf(t *testing.T, sp *sdk.Spend) [32]byte {
	t.Helper()
	var rec struct {
		Nonce string `json:"nonce"`
	}
	if err := json.Unmarshal(sp.RailData, &rec); err != nil || len(rec.Nonce) != 66 {
		t.Fatalf("spend %s has no recorded nonce: %s", sp.SpendID, sp.RailData)
	}
	var n [32]byte
	copy(n[:], common.FromHex(rec.Nonce))
	return n
}

func TestX402PaysOnceAndCaptures(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	n := m.purserOn(t, "")
	p, wallet := m.agentFor(t, n, "buyer", `{"per_tx_auto":"0.10","per_tx_max":"1","daily":"5","rails":["x402"]}`, 1_000_000)
	ctx := context.Background()

	res, err := p.Fetch(ctx, sdk.FetchRequest{URL: m.sellerURL + "/item", IdempotencyKey: "once"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != sdk.Paid || string(res.Body) != "content of /item" || !res.Settlement.Success {
		t.Fatalf("green fetch: %+v body %q", res, res.Body)
	}
	if got := m.balance(t, m.seller); got.Int64() != price {
		t.Fatalf("seller balance %s, want %d", got, price)
	}
	if got := m.balance(t, wallet); got.Int64() != 1_000_000-price {
		t.Fatalf("agent balance %s, want %d", got, 1_000_000-price)
	}
	used, err := m.dev.Client().AuthorizationState(ctx, m.dev.Token(), wallet, nonceOf(t, res.Spend))
	if err != nil || !used {
		t.Fatalf("authorizationState(nonce) = %v, %v; want used", used, err)
	}
	sp, err := n.owner.Spend(ctx, res.Spend.SpendID)
	if err != nil || sp.Status != sdk.StatusCaptured || sp.RailRef != res.Settlement.Transaction {
		t.Fatalf("spend after settlement: %+v %v; want captured with the tx", sp, err)
	}
	// The same intent again (a retry after a timeout): the same spend,
	// no second payment.
	if _, err := p.Fetch(ctx, sdk.FetchRequest{URL: m.sellerURL + "/item", IdempotencyKey: "once"}); codeOf(err) != "already_paid" {
		t.Fatalf("replayed intent: %v; want already_paid", err)
	}
	if got := m.balance(t, m.seller); got.Int64() != price {
		t.Fatalf("seller balance after replay %s, want %d", got, price)
	}
	// Dry run: the verdict, nothing held or signed.
	res, err = p.Fetch(ctx, sdk.FetchRequest{URL: m.sellerURL + "/pricey", DryRun: true})
	if err != nil || res.Outcome != sdk.DryRun || res.Spend.Status != sdk.StatusPendingApproval {
		t.Fatalf("dry run: %+v %v", res, err)
	}
	// Yellow: waits, is approved, then confirmed and paid.
	res, err = p.Fetch(ctx, sdk.FetchRequest{URL: m.sellerURL + "/pricey"})
	if err != nil || res.Outcome != sdk.Pending {
		t.Fatalf("yellow fetch: %+v %v", res, err)
	}
	if _, err := n.owner.Approve(ctx, res.Spend.SpendID); err != nil {
		t.Fatal(err)
	}
	res, err = p.ConfirmFetch(ctx, res.Spend.SpendID, sdk.FetchRequest{})
	if err != nil || res.Outcome != sdk.Paid || string(res.Body) != "content of /pricey" {
		t.Fatalf("confirm after approval: %+v %v", res, err)
	}
	if got := m.balance(t, m.seller); got.Int64() != price+500000 {
		t.Fatalf("seller balance %s after the approved payment", got)
	}
	// Red: above the agent's own --max: nothing asked, nothing signed.
	if _, err := p.Fetch(ctx, sdk.FetchRequest{URL: m.sellerURL + "/pricey", Max: "0.10"}); codeOf(err) != "x402_amount_above_max" {
		t.Fatalf("above --max: %v", err)
	}
	verifyChain(t, n)
}

// TestX402ConcurrentBudget: with a daily budget that fits 100 payments,
// 300 concurrent fetches pay exactly 100 times, and the seller's balance
// on chain rises by exactly 100 prices.
func TestX402ConcurrentBudget(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	n := m.purserOn(t, "")
	p, wallet := m.agentFor(t, n, "swarm", `{"per_tx_auto":"0.10","per_tx_max":"1","daily":"1.00","rails":["x402"]}`, 10_000_000)
	var paid, refused, other atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 300)
	for range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := p.Fetch(context.Background(), sdk.FetchRequest{URL: m.sellerURL + "/item"})
			switch {
			case err != nil:
				other.Add(1)
				errs <- err
			case res.Outcome == sdk.Paid:
				paid.Add(1)
			case res.Outcome == sdk.Refused && strings.Contains(strings.Join(res.Reasons, ","), "daily_budget_exceeded"):
				refused.Add(1)
			default:
				other.Add(1)
				errs <- fmt.Errorf("outcome %s %v (http %d)", res.Outcome, res.Reasons, res.HTTPStatus)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if paid.Load() != 100 || refused.Load() != 200 || other.Load() != 0 {
		t.Fatalf("paid %d, refused %d, other %d; want 100/200/0", paid.Load(), refused.Load(), other.Load())
	}
	if got := m.balance(t, m.seller); got.Int64() != 100*price {
		t.Fatalf("seller received %s, want exactly %d", got, 100*price)
	}
	if got := m.balance(t, wallet); got.Int64() != 10_000_000-100*price {
		t.Fatalf("agent wallet holds %s", got)
	}
	verifyChain(t, n)
}

// hostile is a seller whose 402 is whatever the test says.
func hostile(t *testing.T, h http.HandlerFunc) string {
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}

func paymentRequired(t *testing.T, accepts ...map[string]any) string {
	b, err := json.Marshal(map[string]any{"x402Version": 2, "error": "Payment required",
		"resource": map[string]any{"url": "http://seller/x"}, "accepts": accepts})
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// TestX402HostileSellers: a 402 that tries to steer the wallet is refused
// with a clear code and nothing is signed.
func TestX402HostileSellers(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	n := m.purserOn(t, "")
	other, _ := crypto.GenerateKey()
	stranger := crypto.PubkeyToAddress(other.PublicKey).Hex()
	p, _ := m.agentFor(t, n, "careful", fmt.Sprintf(`{"per_tx_auto":"1","per_tx_max":"1","daily":"5","payees":[%q]}`, m.seller.Hex()), 1_000_000)
	offer := func(mod func(map[string]any)) map[string]any {
		o := map[string]any{"scheme": "exact", "network": m.dev.Network(), "amount": "10000", "asset": m.asset.Address,
			"payTo": m.seller.Hex(), "maxTimeoutSeconds": 60, "extra": map[string]any{"name": "USD Coin", "version": "2"}}
		if mod != nil {
			mod(o)
		}
		return o
	}
	serve402 := func(header string) string {
		return hostile(t, func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("PAYMENT-SIGNATURE") != "" {
				t.Errorf("a payment was sent to a hostile seller")
			}
			w.Header().Set("PAYMENT-REQUIRED", header)
			w.WriteHeader(http.StatusPaymentRequired)
			w.Write([]byte("{}"))
		})
	}
	cases := map[string]struct {
		url, max string
		code     string // error code, or the mandate's reason
	}{
		"unknown asset": {url: serve402(paymentRequired(t, offer(func(o map[string]any) { o["asset"] = stranger }))), code: "x402_no_payable_offer"},
		"other chain":   {url: serve402(paymentRequired(t, offer(func(o map[string]any) { o["network"] = "eip155:1" }))), code: "x402_no_payable_offer"},
		"wrong domain": {url: serve402(paymentRequired(t, offer(func(o map[string]any) {
			o["extra"] = map[string]any{"name": "USD Coin Evil", "version": "2"}
		}))), code: "x402_no_payable_offer"},
		"above max":        {url: serve402(paymentRequired(t, offer(nil))), max: "0.001", code: "x402_amount_above_max"},
		"above mandate":    {url: serve402(paymentRequired(t, offer(func(o map[string]any) { o["amount"] = "2000000" }))), code: "per_tx_cap_exceeded"},
		"payee not listed": {url: serve402(paymentRequired(t, offer(func(o map[string]any) { o["payTo"] = stranger }))), code: "payee_not_allowed"},
		"malformed header": {url: serve402("not base64!"), code: "x402_malformed"},
		"oversized header": {url: serve402(strings.Repeat("A", 20000)), code: "x402_too_large"},
		"redirect elsewhere": {url: hostile(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://127.0.0.2:1/", http.StatusFound)
		}), code: "x402_redirect_refused"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			res, err := p.Fetch(context.Background(), sdk.FetchRequest{URL: c.url, Max: c.max})
			got := codeOf(err)
			if err == nil && res.Outcome == sdk.Refused {
				got = strings.Join(res.Reasons, ",")
			}
			if !strings.Contains(got, c.code) {
				t.Fatalf("got %q (%v, %+v); want %s", got, err, res, c.code)
			}
		})
	}
	evs, err := n.owner.AuditTail(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Action == "spend.sign" {
			t.Fatalf("something was signed for a hostile seller: %+v", ev)
		}
	}
}

// TestX402UnusedAuthorizationReleases: an agent that got a signed payment
// but never used it gets its hold back once the chain shows the
// authorization expired unused, and a restart in between changes nothing.
func TestX402UnusedAuthorizationReleases(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	dir := t.TempDir()
	n := m.purserOn(t, dir)
	p, wallet := m.agentFor(t, n, "quitter", `{"per_tx_auto":"1","per_tx_max":"1","daily":"5"}`, 1_000_000)
	seller := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("PAYMENT-REQUIRED", paymentRequired(t, map[string]any{"scheme": "exact", "network": m.dev.Network(),
			"amount": "30000", "asset": m.asset.Address, "payTo": m.seller.Hex(), "maxTimeoutSeconds": 2,
			"extra": map[string]any{"name": "USD Coin", "version": "2"}}))
		w.WriteHeader(http.StatusPaymentRequired) // never serves: the paid retry fails too
	})
	res, err := p.Fetch(context.Background(), sdk.FetchRequest{URL: seller})
	if err != nil || res.Outcome != sdk.SellerFailed {
		t.Fatalf("fetch from a seller that never settles: %+v %v", res, err)
	}
	id := res.Spend.SpendID
	nonce := nonceOf(t, res.Spend)
	deadline := time.Now().Add(30 * time.Second)
	for {
		sp, err := n.owner.Spend(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if sp.Status == sdk.StatusReleased {
			break
		}
		if sp.Status != sdk.StatusAuthorized || time.Now().After(deadline) {
			t.Fatalf("spend %s is %s; want it authorized until released", id, sp.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}
	used, err := m.dev.Client().AuthorizationState(context.Background(), m.dev.Token(), wallet, nonce)
	if err != nil || used {
		t.Fatalf("authorizationState = %v, %v; want unused", used, err)
	}
	l, err := n.owner.Limits(context.Background(), "quitter")
	if err != nil || l.Daily == nil || l.Daily.Used != "0" {
		t.Fatalf("limits after release: %+v %v", l, err)
	}
}

func codeOf(err error) string {
	if err == nil {
		return ""
	}
	var ae *sdk.Error
	if errors.As(err, &ae) {
		return ae.Code
	}
	var c interface{ Code() string }
	if errors.As(err, &c) {
		return c.Code()
	}
	return err.Error()
}

func verifyChain(t *testing.T, n *node) {
	t.Helper()
	v, err := n.owner.AuditVerify(context.Background())
	if err != nil || !v.OK {
		t.Fatalf("audit verify: %+v %v", v, err)
	}
}

// TestX402RestartBetweenSigningAndSettlement: the agent got a signed
// payment, Purser restarted, and the agent retries the same intent: it
// gets the same authorization (same nonce), the seller settles it once,
// and the reconciler captures the hold from the chain.
func TestX402RestartBetweenSigningAndSettlement(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	dir := t.TempDir()
	srv, err := app.Start(context.Background(), app.Config{DataDir: dir, Listen: "127.0.0.1:0",
		RPC: map[string]string{m.dev.Network(): m.dev.RPCURL()}, Assets: []money.Asset{m.asset}, DefaultNetwork: m.dev.Network()})
	if err != nil {
		t.Fatal(err)
	}
	n := newNode(t, "http://"+srv.Addr(), dir)
	p, wallet := m.agentFor(t, n, "restart", `{"per_tx_auto":"1","per_tx_max":"1","daily":"5"}`, 1_000_000)
	// The seller's first answer to the paid retry is lost (a 502 from a
	// proxy, say); nothing was settled.
	var lost atomic.Bool
	front := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("PAYMENT-SIGNATURE") != "" && lost.CompareAndSwap(false, true) {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		forward(t, w, r, m.sellerURL+"/item")
	})
	first, err := p.Fetch(context.Background(), sdk.FetchRequest{URL: front, IdempotencyKey: "restart-1"})
	if err != nil || first.Outcome != sdk.SellerFailed {
		t.Fatalf("first attempt: %+v %v", first, err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	n2 := m.purserOn(t, dir)
	key, _ := m.keys.Load("restart")
	c2, err := sdk.NewAgent(n2.url, signer(t, key.(*ecdsa.PrivateKey)))
	if err != nil {
		t.Fatal(err)
	}
	p2 := c2
	second, err := p2.Fetch(context.Background(), sdk.FetchRequest{URL: front, IdempotencyKey: "restart-1"})
	if err != nil || second.Outcome != sdk.Paid || second.Spend.SpendID != first.Spend.SpendID {
		t.Fatalf("retry after restart: %+v %v", second, err)
	}
	if nonceOf(t, second.Spend) != nonceOf(t, first.Spend) {
		t.Fatal("the retry signed a second authorization")
	}
	if got := m.balance(t, m.seller); got.Int64() != price {
		t.Fatalf("seller received %s; want exactly one price", got)
	}
	if used, _ := m.dev.Client().AuthorizationState(context.Background(), m.dev.Token(), wallet, nonceOf(t, first.Spend)); !used {
		t.Fatal("the authorization is unused on chain")
	}
	sp, err := n2.owner.Spend(context.Background(), first.Spend.SpendID)
	if err != nil || sp.Status != sdk.StatusCaptured {
		t.Fatalf("spend after settlement: %+v %v", sp, err)
	}
}

// forward relays r to url and the answer back: a host in front of the
// honest seller, which tests then make misbehave.
func forward(t *testing.T, w http.ResponseWriter, r *http.Request, url string) {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, url, nil)
	if err != nil {
		t.Error(err)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// TestX402PinnedPayee: with pin_payees, a host paid once to one payee
// cannot switch its payTo: the next 402 naming another payee is refused
// payee_pin_mismatch and nothing is signed.
func TestX402PinnedPayee(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	n := m.purserOn(t, "")
	p, _ := m.agentFor(t, n, "pinned", `{"per_tx_auto":"1","per_tx_max":"1","daily":"5","pin_payees":true}`, 1_000_000)
	var switched atomic.Bool
	other, _ := crypto.GenerateKey()
	swindler := crypto.PubkeyToAddress(other.PublicKey).Hex()
	// The host proxies the honest seller, then starts naming another payee.
	front := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		if switched.Load() {
			w.Header().Set("PAYMENT-REQUIRED", paymentRequired(t, map[string]any{"scheme": "exact", "network": m.dev.Network(),
				"amount": "10000", "asset": m.asset.Address, "payTo": swindler, "maxTimeoutSeconds": 60,
				"extra": map[string]any{"name": "USD Coin", "version": "2"}}))
			w.WriteHeader(http.StatusPaymentRequired)
			return
		}
		forward(t, w, r, m.sellerURL+"/item")
	})
	if res, err := p.Fetch(context.Background(), sdk.FetchRequest{URL: front}); err != nil || res.Outcome != sdk.Paid {
		t.Fatalf("first payment: %+v %v", res, err)
	}
	switched.Store(true)
	res, err := p.Fetch(context.Background(), sdk.FetchRequest{URL: front})
	if err != nil || res.Outcome != sdk.Refused || !strings.Contains(strings.Join(res.Reasons, ","), "payee_pin_mismatch") {
		t.Fatalf("switched payee: %+v %v", res, err)
	}
	if got := m.balance(t, common.HexToAddress(swindler)); got.Sign() != 0 {
		t.Fatalf("the swindler received %s", got)
	}
}
