package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/internal/app"
	"github.com/purserhq/purser/internal/cosign"
	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/x402"
)

// The server side of co-signed (2of2) wallets, over HTTP against a real
// server, dev chain, facilitator and seller; the agent side runs
// internal/cosign directly (the SDK's side is built elsewhere).

// cosigner is a 2of2 agent as its own side sees it.
type cosigner struct {
	n       *node
	dom     agentauth.Domain
	key     *ecdsa.PrivateKey
	id      string
	share   *cosign.Share
	wallet  common.Address
	mu      sync.Mutex
	answers [][]byte // every answer the agent and owner got, for the secrets test
}

func (c *cosigner) keep(b []byte) {
	c.mu.Lock()
	c.answers = append(c.answers, append([]byte(nil), b...))
	c.mu.Unlock()
}

// cosignServer starts Purser on the market's chain with its log kept.
func (m *market) cosignServer(t *testing.T) (*node, *lockedBuffer) {
	logs := &lockedBuffer{}
	n := startApp(t, app.Config{RPC: map[string]string{m.dev.Network(): m.dev.RPCURL()},
		Assets: []money.Asset{m.asset}, DefaultNetwork: m.dev.Network(), Stderr: logs, LogLevel: "debug"})
	return n, logs
}

// newCosigner creates a 2of2 agent, runs its key generation over HTTP and
// funds its wallet.
func (m *market) newCosigner(t *testing.T, n *node, name, mandate string, fund int64) *cosigner {
	t.Helper()
	c := &cosigner{n: n, dom: n.domain(t), key: newKey(t)}
	body, _ := json.Marshal(map[string]any{"name": name, "identity_address": agentauth.Address(c.key).Hex(),
		"mandate": json.RawMessage(mandate), "custody": "2of2"})
	ans := send(t, "POST", n.url+"/v1/agents", body, bearer(n.token))
	var a api.Agent
	if ans.status != 201 || json.Unmarshal(ans.body, &a) != nil || a.Custody != "2of2" || len(a.Wallets) != 0 {
		t.Fatalf("create 2of2 agent: %s", ans)
	}
	c.id = a.ID
	nonce := make([]byte, 32)
	rand.Read(nonce)
	kg, err := cosign.NewKeygen(cosign.RoleAgent, cosign.KeygenSessionID(a.ID, nonce))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := kg.Start()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var done api.KeygenResponse
	for i := 0; ; i++ {
		b, _ := json.Marshal(api.KeygenRequest{Message: base64.StdEncoding.EncodeToString(msg)})
		ans := send(t, "POST", n.url+"/v1/agents/"+name+"/cosign/keygen", b, bearer(n.token))
		c.keep(ans.body)
		var r api.KeygenResponse
		if ans.status != 200 || json.Unmarshal(ans.body, &r) != nil {
			t.Fatalf("keygen message %d: %s", i, ans)
		}
		if r.Done {
			done = r
			break
		}
		in, _ := base64.StdEncoding.DecodeString(r.Message)
		if msg, err = kg.Handle(in); err != nil || msg == nil {
			t.Fatalf("agent keygen on server message %d: %v", i, err)
		}
	}
	t.Logf("key generation over HTTP: %v", time.Since(start))
	if c.share, err = kg.Share(); err != nil {
		t.Fatal(err)
	}
	c.wallet = c.share.Address()
	if done.Address != c.wallet.Hex() || done.PublicKey != "0x"+hex.EncodeToString(c.share.PublicKey()) {
		t.Fatalf("keygen answer %+v; the agent's share says %s", done, c.wallet.Hex())
	}
	got, err := n.owner.Agent(context.Background(), name)
	if err != nil || len(got.Wallets) == 0 {
		t.Fatalf("agent show after keygen: %+v %v", got, err)
	}
	for _, w := range got.Wallets {
		if w.Custody != "cosign-2of2" || w.Address != c.wallet.Hex() || w.Path != "" {
			t.Fatalf("wallet after keygen: %+v", w)
		}
	}
	if fund > 0 {
		if _, err := m.dev.Mint(context.Background(), c.wallet, big.NewInt(fund)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// post sends a request signed by the agent.
func (c *cosigner) post(t *testing.T, path string, body []byte, ctype string) answer {
	t.Helper()
	sign := signHeaders(t, c.dom, c.key, "POST", path, body, time.Now().Add(time.Minute))
	ans := send(t, "POST", c.n.url+path, body, func(h http.Header) {
		sign(h)
		if ctype != "" {
			h.Set("Content-Type", ctype)
		}
	})
	c.keep(ans.body)
	return ans
}

func (c *cosigner) authorize(t *testing.T, req map[string]any) (api.Spend, answer) {
	t.Helper()
	b, _ := json.Marshal(req)
	ans := c.post(t, "/v1/agent/spends", b, "")
	var sp api.Spend
	_ = json.Unmarshal(ans.body, &sp)
	return sp, ans
}

// binding checks what the server asks the agent to co-sign against what
// the agent asked for, recomputes the digest and the session id itself,
// and returns its signing binding.
func (c *cosigner) binding(t *testing.T, sp api.Spend, to common.Address, value *big.Int, token common.Address, chainID int64) cosign.SignBinding {
	t.Helper()
	cs := sp.Cosign
	if cs == nil {
		t.Fatalf("spend %s (%s) carries no cosign block", sp.SpendID, sp.Status)
	}
	a := cs.Authorization
	if common.HexToAddress(a.From) != c.wallet || common.HexToAddress(a.To) != to || a.Value != value.String() ||
		cs.Domain.ChainID != strconv.FormatInt(chainID, 10) || common.HexToAddress(cs.Domain.VerifyingContract) != token {
		t.Fatalf("the server asks to co-sign something else: %+v", cs)
	}
	va, _ := new(big.Int).SetString(a.ValidAfter, 10)
	vb, _ := new(big.Int).SetString(a.ValidBefore, 10)
	auth := evm.Authorization{From: c.wallet, To: to, Value: value, ValidAfter: va, ValidBefore: vb}
	copy(auth.Nonce[:], common.FromHex(a.Nonce))
	digest := auth.Digest(evm.DomainSeparator(cs.Domain.Name, cs.Domain.Version, big.NewInt(chainID), token))
	if "0x"+hex.EncodeToString(digest[:]) != cs.Digest {
		t.Fatalf("digest: the agent computes %x, the server says %s", digest, cs.Digest)
	}
	b := cosign.SignBinding{AgentID: c.id, SpendID: sp.SpendID, Digest: digest}
	if sid := b.SessionID(c.share.PublicKey()); "0x"+hex.EncodeToString(sid[:]) != cs.SessionID {
		t.Fatalf("session id: the agent computes %x, the server says %s", sid, cs.SessionID)
	}
	return b
}

// cosignSpend runs steps 2 and 3; it returns the finish answer.
func (c *cosigner) cosignSpend(t *testing.T, spendID string, b cosign.SignBinding) (answer, cosign.Signature) {
	t.Helper()
	s, err := cosign.NewAgentSigner(c.share, b)
	if err != nil {
		t.Fatal(err)
	}
	m1, err := s.Start()
	if err != nil {
		t.Fatal(err)
	}
	ans := c.post(t, "/v1/agent/spends/"+spendID+"/cosign", m1, "application/octet-stream")
	if ans.status != 200 {
		t.Fatalf("cosign %s: %s", spendID, ans)
	}
	if _, err := s.Handle(ans.body); err != nil {
		t.Fatalf("agent on the server's answer: %v", err)
	}
	sig, err := s.Signature()
	if err != nil {
		t.Fatal(err)
	}
	fb, _ := json.Marshal(api.CosignFinishRequest{Signature: "0x" + hex.EncodeToString(sig[:])})
	return c.post(t, "/v1/agent/spends/"+spendID+"/cosign/finish", fb, ""), sig
}

func devChainID(t *testing.T, m *market) int64 {
	id, err := x402.ChainIDOf(m.dev.Network())
	if err != nil {
		t.Fatal(err)
	}
	return id.Int64()
}

// TestCosignX402: a co-signed wallet pays an x402 seller through the
// facilitator: key generation over HTTP, the spend answered with the
// authorization to co-sign (no signature, no payment header), the
// co-signature, the payment header from finish, the seller's settlement on
// chain (authorizationState used, balances exact).
func TestCosignX402(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	n, _ := m.cosignServer(t)
	c := m.newCosigner(t, n, "cobuyer", `{"per_tx_auto":"0.10","per_tx_max":"1","daily":"5","rails":["x402"]}`, 1_000_000)
	ctx := context.Background()

	resp, err := http.Get(m.sellerURL + "/item")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	pr, err := x402.ParsePaymentRequired(resp.Header, body)
	if resp.StatusCode != 402 || err != nil || len(pr.Accepts) == 0 {
		t.Fatalf("seller's 402: %d %v", resp.StatusCode, err)
	}
	offer := pr.Accepts[0]
	rr := api.X402Request{URL: m.sellerURL + "/item", Method: "GET", Version: offer.Version, Offer: offer.Raw}
	if offer.Version == 2 {
		rr.Resource = pr.Resource
	}
	rrb, _ := json.Marshal(rr)
	sp, ans := c.authorize(t, map[string]any{"rail": "x402", "payee": offer.PayTo, "amount": "0.01", "rail_request": json.RawMessage(rrb)})
	if ans.status != 201 || sp.Status != "authorized" || sp.RailRef != "" || len(sp.RailData) != 0 || sp.Cosign == nil {
		t.Fatalf("authorize: %s", ans)
	}
	b := c.binding(t, sp, m.seller, big.NewInt(price), m.dev.Token(), devChainID(t, m))
	// The replayed GET shows the same authorization to co-sign.
	get := send(t, "GET", n.url+"/v1/agent/spends/"+sp.SpendID, nil, signHeaders(t, c.dom, c.key, "GET", "/v1/agent/spends/"+sp.SpendID, nil, time.Now().Add(time.Minute)))
	var again api.Spend
	if json.Unmarshal(get.body, &again) != nil || again.Cosign == nil || again.Cosign.SessionID != sp.Cosign.SessionID {
		t.Fatalf("GET of the spend awaiting co-signature: %s", get)
	}
	start := time.Now()
	fin, _ := c.cosignSpend(t, sp.SpendID, b)
	t.Logf("co-signing over HTTP (cosign + finish): %v", time.Since(start))
	var done api.Spend
	if fin.status != 200 || json.Unmarshal(fin.body, &done) != nil || done.Cosign != nil || len(done.RailRef) != 66 {
		t.Fatalf("finish: %s", fin)
	}
	var pay api.X402Payment
	if err := json.Unmarshal(done.RailData, &pay); err != nil || pay.Header == "" || pay.HeaderValue == "" {
		t.Fatalf("finish carries no payment header: %s", done.RailData)
	}
	req, _ := http.NewRequest("GET", m.sellerURL+"/item", nil)
	req.Header.Set(pay.Header, pay.HeaderValue)
	paid, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	content, _ := io.ReadAll(paid.Body)
	paid.Body.Close()
	if paid.StatusCode != 200 || string(content) != "content of /item" {
		t.Fatalf("paid retry: %d %q", paid.StatusCode, content)
	}
	var nonce [32]byte
	copy(nonce[:], common.FromHex(pay.Nonce))
	used, err := m.dev.Client().AuthorizationState(ctx, m.dev.Token(), c.wallet, nonce)
	if err != nil || !used {
		t.Fatalf("authorizationState = %v, %v; want used", used, err)
	}
	if got := m.balance(t, m.seller); got.Int64() != price {
		t.Fatalf("seller balance %s, want %d", got, price)
	}
	if got := m.balance(t, c.wallet); got.Int64() != 1_000_000-price {
		t.Fatalf("co-signed wallet balance %s", got)
	}
	// The chain settles the spend.
	if rep := c.post(t, "/v1/agent/spends/"+sp.SpendID+"/settlement", []byte(`{"success":true}`), ""); rep.status != 200 {
		t.Fatalf("settlement report: %s", rep)
	}
	if s, err := n.owner.Spend(ctx, sp.SpendID); err != nil || s.Status != "captured" {
		t.Fatalf("spend after settlement: %+v %v", s, err)
	}
	verifyChain(t, n)
}
