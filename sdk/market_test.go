package sdk_test

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
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

// market is everything an x402 payment crosses, for real and in process:
// a dev chain with its EIP-3009 token, Purser's facilitator settling on
// it, and a Purser server connected to it. Sellers are made per test
// (market.seller), each paid to its own address.
type market struct {
	dev    *devchain.Chain
	asset  money.Asset
	facURL string
	url    string // Purser's base URL
	token  string // the owner token
	owner  *sdk.Owner
}

// fujiChainID is Avalanche Fuji's chain id, a network with an x402 v1
// name ("avalanche-fuji") on which Purser configures no asset by default:
// the dev chain runs under it so that sellers can offer v1 and v2.
const fujiChainID = 43113

// price is what a seller's routes cost unless said otherwise: 0.01 USDC.
const price = 10_000

func newMarket(t *testing.T) *market {
	t.Helper()
	dev, err := devchain.Start(devchain.Config{ChainID: fujiChainID})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	ctx := context.Background()
	gas, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
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
	m := &market{dev: dev, facURL: fs.URL, asset: money.Asset{Symbol: "USDC", Network: dev.Network(), Address: dev.Token().Hex(),
		Decimals: devchain.TokenDecimals, USD: true, EIP712Name: devchain.TokenName, EIP712Version: devchain.TokenVersion}}
	dir := t.TempDir()
	srv, err := app.Start(ctx, app.Config{DataDir: dir, Listen: "127.0.0.1:0", RPC: map[string]string{dev.Network(): dev.RPCURL()},
		Assets: []money.Asset{m.asset}, DefaultNetwork: dev.Network()})
	if err != nil {
		t.Fatalf("app.Start: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	m.url = "http://" + srv.Addr()
	m.token = ownerToken(t, dir)
	if m.owner, err = sdk.NewOwner(m.url, m.token, sdk.WithHTTPClient(&http.Client{Timeout: time.Minute})); err != nil {
		t.Fatal(err)
	}
	return m
}

func ownerToken(t testing.TB, dataDir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "owner.token"))
	if err != nil {
		t.Fatalf("owner token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// seller is a paid API behind Purser's x402 middleware.
type seller struct {
	url   string
	payTo common.Address
	// requests counts every request that reached the seller; paid those
	// that carried a payment header (v2 PAYMENT-SIGNATURE or v1 X-PAYMENT).
	requests, paid atomic.Int64
}

// route is one priced route of a seller and its handler.
type route struct {
	pattern string
	amount  int64
	handler http.HandlerFunc
}

// serveContent answers "content of PATH".
func serveContent(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "content of "+r.URL.Path) }

// seller starts a seller charging for routes, paid to a fresh address.
// With v1only the seller speaks x402 v1 only: its 402 carries the v1 JSON
// body and no PAYMENT-REQUIRED header, so clients must pay with X-PAYMENT.
func (m *market) seller(t *testing.T, v1only bool, routes ...route) *seller {
	t.Helper()
	key, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s := &seller{payTo: crypto.PubkeyToAddress(key.PublicKey)}
	mux := http.NewServeMux()
	mux.HandleFunc("/", serveContent) // free
	mux.HandleFunc("GET /quota", func(w http.ResponseWriter, r *http.Request) {
		// A 402 that is no x402 payment request.
		http.Error(w, "monthly quota exceeded", http.StatusPaymentRequired)
	})
	var mr []middleware.Route
	for _, r := range routes {
		h := r.handler
		if h == nil {
			h = serveContent
		}
		mux.HandleFunc(r.pattern, h)
		mr = append(mr, middleware.Route{Pattern: r.pattern, Amount: fmt.Sprint(r.amount), Asset: m.asset.Address, Network: m.dev.Network(),
			PayTo: s.payTo.Hex(), EIP712Name: m.asset.EIP712Name, EIP712Version: m.asset.EIP712Version, Description: "test", MimeType: "text/plain"})
	}
	mw, err := middleware.New(middleware.Config{Facilitator: &x402.FacilitatorClient{URL: m.facURL}, Routes: mr})
	if err != nil {
		t.Fatal(err)
	}
	paidAPI := mw(mux)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if r.Header.Get(x402.HeaderPaymentSignature) != "" || r.Header.Get(x402.HeaderXPayment) != "" {
			s.paid.Add(1)
		}
		if v1only {
			if r.Header.Get(x402.HeaderPaymentSignature) != "" {
				t.Errorf("a v2 payment reached a v1 seller")
			}
			w = v1Writer{w}
		}
		paidAPI.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// v1Writer hides the v2 PAYMENT-REQUIRED header of a 402.
type v1Writer struct{ http.ResponseWriter }

func (w v1Writer) WriteHeader(status int) {
	w.Header().Del(x402.HeaderPaymentRequired)
	w.ResponseWriter.WriteHeader(status)
}

func (w v1Writer) Write(b []byte) (int, error) {
	w.Header().Del(x402.HeaderPaymentRequired)
	return w.ResponseWriter.Write(b)
}

// balance is who's token balance on the chain, in atomic units.
func (m *market) balance(t *testing.T, who common.Address) int64 {
	t.Helper()
	b, err := m.dev.Client().BalanceOf(context.Background(), m.dev.Token(), who)
	if err != nil {
		t.Fatal(err)
	}
	return b.Int64()
}

// buyer is an agent of the market: its client, its wallet, its name.
type buyer struct {
	*sdk.Agent
	id     string
	name   string
	key    *ecdsa.PrivateKey
	wallet common.Address
	// keyPath is a 2of2 agent's key file (identity key and share).
	keyPath string
}

// agent creates an agent with mandate, mints fund atomic units to its
// wallet and returns its client (opts are the client's options).
func (m *market) agent(t *testing.T, name, mandate string, fund int64, opts ...sdk.Option) *buyer {
	t.Helper()
	key, err := agentauth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := m.owner.CreateAgent(context.Background(), sdk.CreateAgentRequest{Name: name,
		IdentityAddress: agentauth.Address(key).Hex(), Mandate: json.RawMessage(mandate)})
	if err != nil {
		t.Fatalf("create agent %s: %v", name, err)
	}
	b := &buyer{id: a.ID, name: name, key: key}
	for _, w := range a.Wallets {
		if w.Network == m.dev.Network() {
			b.wallet = common.HexToAddress(w.Address)
		}
	}
	if b.wallet == (common.Address{}) {
		t.Fatalf("agent %s has no wallet on %s: %+v", name, m.dev.Network(), a.Wallets)
	}
	if fund > 0 {
		if _, err := m.dev.Mint(context.Background(), b.wallet, big.NewInt(fund)); err != nil {
			t.Fatal(err)
		}
	}
	s, err := sdk.NewKey(key)
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]sdk.Option{sdk.WithHTTPClient(&http.Client{Timeout: time.Minute})}, opts...)
	if b.Agent, err = sdk.NewAgent(m.url, s, opts...); err != nil {
		t.Fatal(err)
	}
	return b
}

// spends lists the agent's spends as the owner sees them.
func (m *market) spends(t *testing.T, agent string) []sdk.Spend {
	t.Helper()
	l, err := sdk.Collect(m.owner.Spends(context.Background(), sdk.SpendFilter{Agent: agent, Limit: 1000}))
	if err != nil {
		t.Fatalf("spends of %s: %v", agent, err)
	}
	return l
}

// used reports whether the authorization of an x402 spend was used on
// chain (the token's authorizationState of the agent's wallet and nonce).
func (m *market) used(t *testing.T, b *buyer, sp *sdk.Spend) bool {
	t.Helper()
	var p struct {
		Nonce string `json:"nonce"`
	}
	if err := json.Unmarshal(sp.RailData, &p); err != nil || len(p.Nonce) != 66 {
		t.Fatalf("spend %s carries no nonce: %s", sp.SpendID, sp.RailData)
	}
	var nonce [32]byte
	copy(nonce[:], common.FromHex(p.Nonce))
	used, err := m.dev.Client().AuthorizationState(context.Background(), m.dev.Token(), b.wallet, nonce)
	if err != nil {
		t.Fatal(err)
	}
	return used
}
