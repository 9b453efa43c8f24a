package e2e

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/hpke"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/internal/app"
	"github.com/purserhq/purser/internal/cosign"
	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/internal/keystore"
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

// payoutReq is a payout of amount to the test payee.
func payoutReq(amount string) map[string]any {
	return map[string]any{"rail": "payout", "payee": payee, "amount": amount}
}

// TestCosignPayout: a payout from a co-signed wallet is authorized without
// a signature, co-signed, then relayed and captured from its receipt.
func TestCosignPayout(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	n, _ := m.cosignServer(t)
	m.fundRelayer(t, n)
	c := m.newCosigner(t, n, "copayer", `{"per_tx_auto":"2","per_tx_max":"5","daily":"10","rails":["payout"]}`, 2_000_000)
	sp, ans := c.authorize(t, payoutReq("0.75"))
	if ans.status != 201 || sp.Status != "authorized" || sp.RailRef != "" {
		t.Fatalf("authorize payout: %s", ans)
	}
	if got := m.balance(t, common.HexToAddress(payee)); got.Sign() != 0 {
		t.Fatalf("payee paid before the co-signature: %s", got)
	}
	b := c.binding(t, sp, common.HexToAddress(payee), big.NewInt(750_000), m.dev.Token(), devChainID(t, m))
	fin, _ := c.cosignSpend(t, sp.SpendID, b)
	var done api.Spend
	if fin.status != 200 || json.Unmarshal(fin.body, &done) != nil || done.Status != "captured" || len(done.RailData) != 0 {
		t.Fatalf("finish payout: %s", fin)
	}
	rcpt, err := m.dev.Client().WaitReceipt(context.Background(), common.HexToHash(done.RailRef))
	if err != nil || rcpt.Status != 1 || !evm.TransferLogged(rcpt, m.dev.Token(), c.wallet, common.HexToAddress(payee), big.NewInt(750_000)) {
		t.Fatalf("payout tx %s: %+v %v", done.RailRef, rcpt, err)
	}
	if got := m.balance(t, c.wallet); got.Int64() != 1_250_000 {
		t.Fatalf("co-signed wallet holds %s", got)
	}
	// Finishing again answers the spend; nothing is paid twice.
	fb, _ := json.Marshal(api.CosignFinishRequest{Signature: "0x" + hex.EncodeToString(make([]byte, 65))})
	if again := c.post(t, "/v1/agent/spends/"+sp.SpendID+"/cosign/finish", fb, ""); again.code != "cosign_signature_invalid" {
		t.Fatalf("finish with a zero signature: %s", again)
	}
	if got := m.balance(t, common.HexToAddress(payee)); got.Int64() != 750_000 {
		t.Fatalf("payee holds %s", got)
	}
	// Above per_tx_auto: pending, no signing material; approved, the
	// agent's confirm answers the authorization to co-sign.
	if _, err := m.dev.Mint(context.Background(), c.wallet, big.NewInt(3_000_000)); err != nil {
		t.Fatal(err)
	}
	pen, ans := c.authorize(t, payoutReq("3"))
	if ans.status != 202 || pen.Cosign != nil {
		t.Fatalf("pending payout: %s", ans)
	}
	if _, err := n.owner.Approve(context.Background(), pen.SpendID); err != nil {
		t.Fatal(err)
	}
	conf := c.post(t, "/v1/agent/spends/"+pen.SpendID+"/confirm", []byte(`{}`), "")
	var confirmed api.Spend
	if conf.status != 200 || json.Unmarshal(conf.body, &confirmed) != nil || confirmed.Cosign == nil {
		t.Fatalf("confirm of the approved payout: %s", conf)
	}
	fin, _ = c.cosignSpend(t, pen.SpendID, c.binding(t, confirmed, common.HexToAddress(payee), big.NewInt(3_000_000), m.dev.Token(), devChainID(t, m)))
	if fin.status != 200 || json.Unmarshal(fin.body, &done) != nil || done.Status != "captured" {
		t.Fatalf("finish of the approved payout: %s", fin)
	}
	if got := m.balance(t, common.HexToAddress(payee)); got.Int64() != 3_750_000 {
		t.Fatalf("payee holds %s after the approved payout", got)
	}
	verifyChain(t, n)
}

// TestCosignHostile: a hostile agent gets no signature over anything but
// the authorized digest, and no second session for a spend.
func TestCosignHostile(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	n, _ := m.cosignServer(t)
	m.fundRelayer(t, n)
	c := m.newCosigner(t, n, "hostile", `{"per_tx_auto":"1","per_tx_max":"2","daily":"50","rails":["payout"]}`, 20_000_000)
	chainID := devChainID(t, m)
	to := common.HexToAddress(payee)
	open := func(amount string) (api.Spend, cosign.SignBinding) {
		t.Helper()
		sp, ans := c.authorize(t, payoutReq(amount))
		if ans.status != 201 || sp.Cosign == nil {
			t.Fatalf("authorize: %s", ans)
		}
		v, _ := money.ParsePositive(amount, 6)
		return sp, c.binding(t, sp, to, v, m.dev.Token(), chainID)
	}
	firstMsg := func(b cosign.SignBinding) []byte {
		t.Helper()
		s, err := cosign.NewAgentSigner(c.share, b)
		if err != nil {
			t.Fatal(err)
		}
		m1, err := s.Start()
		if err != nil {
			t.Fatal(err)
		}
		return m1
	}
	cosignPath := func(id string) string { return "/v1/agent/spends/" + id + "/cosign" }
	refused := func(what string, ans answer, code string) {
		t.Helper()
		if ans.code != code || ans.status == 200 {
			t.Fatalf("%s: %s; want %s", what, ans, code)
		}
	}

	// m1 bound to another spend's session: refused before the library
	// parses it; the session is spent, the other spend unaffected.
	a, _ := open("0.10")
	bsp, bb := open("0.20")
	refused("m1 of another spend", c.post(t, cosignPath(a.SpendID), firstMsg(bb), "application/octet-stream"), "cosign_message_invalid")
	refused("a second session for the spend", c.post(t, cosignPath(a.SpendID), firstMsg(bb), "application/octet-stream"), "cosign_session_used")
	fin, sigB := c.cosignSpend(t, bsp.SpendID, bb)
	if fin.status != 200 {
		t.Fatalf("the other spend: %s", fin)
	}
	refused("cosign after the spend was co-signed", c.post(t, cosignPath(bsp.SpendID), firstMsg(bb), "application/octet-stream"), "cosign_session_used")

	// A tampered m1: refused, nothing answered.
	tsp, tb := open("0.10")
	m1 := firstMsg(tb)
	m1[len(m1)/2] ^= 1
	refused("tampered m1", c.post(t, cosignPath(tsp.SpendID), m1, "application/octet-stream"), "cosign_message_invalid")

	// A finish with a valid signature of the wallet, over another digest
	// (spend B's), is refused.
	fsp, fb := open("0.10")
	s, _ := cosign.NewAgentSigner(c.share, fb)
	fm1, _ := s.Start()
	if ans := c.post(t, cosignPath(fsp.SpendID), fm1, "application/octet-stream"); ans.status != 200 {
		t.Fatalf("cosign: %s", ans)
	}
	other, _ := json.Marshal(api.CosignFinishRequest{Signature: "0x" + hex.EncodeToString(sigB[:])})
	refused("finish with another spend's signature", c.post(t, cosignPath(fsp.SpendID)+"/finish", other, ""), "cosign_signature_invalid")

	// A denied spend and a pending one get no signing material.
	den, ans := c.authorize(t, payoutReq("3"))
	if ans.status != 403 || den.Cosign != nil || strings.Contains(string(ans.body), `"cosign"`) {
		t.Fatalf("denied spend: %s", ans)
	}
	deniedID, _ := ans.details["spend_id"].(string)
	refused("cosign of a denied spend", c.post(t, cosignPath(deniedID), firstMsg(cosign.SignBinding{AgentID: c.id, SpendID: deniedID}), "application/octet-stream"), "spend_denied")
	pen, ans := c.authorize(t, payoutReq("1.50"))
	if ans.status != 202 || pen.Cosign != nil {
		t.Fatalf("pending spend: %s", ans)
	}
	refused("cosign of a pending spend", c.post(t, cosignPath(pen.SpendID), firstMsg(cosign.SignBinding{AgentID: c.id, SpendID: pen.SpendID}), "application/octet-stream"), "invalid_state")

	// Frozen in between: the freeze released the unsigned spend; the
	// co-signing is refused and nothing is answered.
	zsp, zb := open("0.10")
	if _, err := n.owner.Freeze(context.Background(), "hostile"); err != nil {
		t.Fatal(err)
	}
	ans = c.post(t, cosignPath(zsp.SpendID), firstMsg(zb), "application/octet-stream")
	refused("cosign after a freeze", ans, "invalid_state")
	if s, err := n.owner.Spend(context.Background(), zsp.SpendID); err != nil || s.Status != "released" || s.HeldUSD != "0" {
		t.Fatalf("the frozen agent's spend: %+v %v", s, err)
	}
	if _, err := n.owner.Unfreeze(context.Background(), "hostile"); err != nil {
		t.Fatal(err)
	}
	// A mandate tightened in between: the last check denies the spend.
	msp, mb := open("0.10")
	if _, err := n.owner.SetMandate(context.Background(), "hostile", json.RawMessage(`{"per_tx_auto":"0.05","per_tx_max":"0.05","daily":"50","rails":["payout"]}`), nil); err != nil {
		t.Fatal(err)
	}
	refused("cosign after the mandate tightened", c.post(t, cosignPath(msp.SpendID), firstMsg(mb), "application/octet-stream"), "spend_denied")
	if s, err := n.owner.Spend(context.Background(), msp.SpendID); err != nil || s.Status != "denied" || s.HeldUSD != "0" {
		t.Fatalf("the spend the mandate now refuses: %+v %v", s, err)
	}

	// Custody is checked both ways.
	plain := n.newAgent(t, "plain", `{"per_tx_auto":"1","daily":"5","rails":["payout"]}`)
	pc := &cosigner{n: n, dom: c.dom, key: plain}
	psp, pans := pc.authorize(t, payoutReq("0.10"))
	if psp.SpendID == "" || psp.Cosign != nil {
		t.Fatalf("server-custody payout: %s", pans)
	}
	refused("cosign of a server-custody agent's spend", pc.post(t, cosignPath(psp.SpendID), firstMsg(bb), "application/octet-stream"), "cosign_custody_mismatch")
	kb, _ := json.Marshal(api.KeygenRequest{Message: base64.StdEncoding.EncodeToString(firstMsg(bb))})
	refused("keygen of a server-custody agent", send(t, "POST", n.url+"/v1/agents/plain/cosign/keygen", kb, bearer(n.token)), "cosign_custody_mismatch")
	refused("keygen of an agent that has its key", send(t, "POST", n.url+"/v1/agents/hostile/cosign/keygen", kb, bearer(n.token)), "cosign_custody_mismatch")

	// Only spend B moved money.
	if got := m.balance(t, to); got.Int64() != 200_000 {
		t.Fatalf("payee holds %s; want only spend B's 200000", got)
	}
	// Two failed sessions so far (another spend's m1, a tampered one); the
	// third within a day freezes the agent: each is a data point against
	// the OT multiplication.
	if a, err := n.owner.Agent(context.Background(), "hostile"); err != nil || a.Status != "active" {
		t.Fatalf("after two failed sessions: %+v %v", a, err)
	}
	gsp, gb := open("0.04") // the mandate was tightened to 0.05 above
	m1 = firstMsg(gb)
	m1[len(m1)-1] ^= 1
	refused("a third refused session", c.post(t, cosignPath(gsp.SpendID), m1, "application/octet-stream"), "cosign_message_invalid")
	if a, err := n.owner.Agent(context.Background(), "hostile"); err != nil || a.Status != "frozen" {
		t.Fatalf("after three failed sessions: %+v %v; want frozen", a, err)
	}
	verifyChain(t, n)
}

// TestCosignBudget: 50 concurrent co-signed payouts against a daily budget
// for 10: exactly 10 are answered with the server's part, and exactly 10
// transfers land on chain.
func TestCosignBudget(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	n, _ := m.cosignServer(t)
	m.fundRelayer(t, n)
	c := m.newCosigner(t, n, "swarm2", `{"per_tx_auto":"1","per_tx_max":"1","daily":"1.00","rails":["payout"]}`, 10_000_000)
	chainID := devChainID(t, m)
	var mu sync.Mutex
	var signed, denied, other int
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			sp, ans := c.authorize(t, payoutReq("0.10"))
			if ans.status == 403 && ans.code == "spend_denied" {
				mu.Lock()
				denied++
				mu.Unlock()
				return
			}
			if ans.status != 201 || sp.Cosign == nil {
				mu.Lock()
				other++
				mu.Unlock()
				t.Errorf("authorize: %s", ans)
				return
			}
			fin, _ := c.cosignSpend(t, sp.SpendID, c.binding(t, sp, common.HexToAddress(payee), big.NewInt(100_000), m.dev.Token(), chainID))
			var done api.Spend
			mu.Lock()
			defer mu.Unlock()
			if fin.status == 200 && json.Unmarshal(fin.body, &done) == nil && done.Status == "captured" {
				signed++
			} else {
				other++
				t.Errorf("finish: %s", fin)
			}
		})
	}
	wg.Wait()
	if signed != 10 || denied != 40 || other != 0 {
		t.Fatalf("signed %d, denied %d, other %d; want 10/40/0", signed, denied, other)
	}
	if got := m.balance(t, common.HexToAddress(payee)); got.Int64() != 10*100_000 {
		t.Fatalf("payee received %s; want exactly 10 payouts", got)
	}
	verifyChain(t, n)
}

// TestCosignSecrets: neither share appears in the server's log, the audit
// export, any answer or the database in the clear; the server's share is
// stored sealed and is a server share of the agent's wallet; no HD wallet
// the server could derive is the co-signed wallet; the recovery blob (the
// agent share sealed with HPKE to the owner's X25519 key) round-trips
// opaque and opens only with the owner's key.
func TestCosignSecrets(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	n, logs := m.cosignServer(t)
	m.fundRelayer(t, n)
	c := m.newCosigner(t, n, "secretive", `{"per_tx_auto":"2","per_tx_max":"5","daily":"10","rails":["payout"]}`, 2_000_000)
	ctx := context.Background()

	// Recovery: the owner's client seals the agent share to the owner's key.
	agentRaw, err := c.share.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	ownerKey, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hpub, _ := hpke.NewDHKEMPublicKey(ownerKey.PublicKey())
	info := []byte("purser/cosign/recovery/v1:" + c.id)
	sealed, err := hpke.Seal(hpub, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), info, agentRaw)
	if err != nil {
		t.Fatal(err)
	}
	blob := api.RecoveryBlob{PublicKey: base64.StdEncoding.EncodeToString(ownerKey.PublicKey().Bytes()), Ciphertext: base64.StdEncoding.EncodeToString(sealed)}
	bb, _ := json.Marshal(blob)
	if ans := send(t, "POST", n.url+"/v1/agents/secretive/cosign/recovery", bb, bearer(n.token)); ans.status != 200 {
		t.Fatalf("set recovery: %s", ans)
	}
	got := send(t, "GET", n.url+"/v1/agents/secretive/cosign/recovery", nil, bearer(n.token))
	var back api.RecoveryBlob
	if got.status != 200 || json.Unmarshal(got.body, &back) != nil || back != blob {
		t.Fatalf("get recovery: %s", got)
	}
	ct, _ := base64.StdEncoding.DecodeString(back.Ciphertext)
	hpriv, _ := hpke.NewDHKEMPrivateKey(ownerKey)
	if opened, err := hpke.Open(hpriv, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), info, ct); err != nil || !bytes.Equal(opened, agentRaw) {
		t.Fatalf("the owner cannot open the recovery blob: %v", err)
	}
	// An agent cannot read it.
	if ans := c.post(t, "/v1/agents/secretive/cosign/recovery", nil, ""); ans.status == 200 {
		t.Fatalf("an agent read the recovery blob: %s", ans)
	}

	// A payout and a refused session, so that every path logs.
	sp, ans := c.authorize(t, payoutReq("0.25"))
	if ans.status != 201 {
		t.Fatalf("authorize: %s", ans)
	}
	if fin, _ := c.cosignSpend(t, sp.SpendID, c.binding(t, sp, common.HexToAddress(payee), big.NewInt(250_000), m.dev.Token(), devChainID(t, m))); fin.status != 200 {
		t.Fatalf("finish: %s", fin)
	}
	bad, _ := c.authorize(t, payoutReq("0.10"))
	if ans := c.post(t, "/v1/agent/spends/"+bad.SpendID+"/cosign", []byte("PCSM garbage"), "application/octet-stream"); ans.code != "cosign_message_invalid" {
		t.Fatalf("garbage m1: %s", ans)
	}

	// The server's share, as the server holds it: sealed in the database.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(n.dir, "purser.db")+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var sealedB64 string
	var epoch int64
	if err := db.QueryRow(`SELECT sealed_share, epoch FROM cosign_keys WHERE agent_id = ?`, c.id).Scan(&sealedB64, &epoch); err != nil {
		t.Fatal(err)
	}
	ks, err := keystore.Open(n.dir, keystore.FileKEK{Path: filepath.Join(n.dir, "kek")})
	if err != nil {
		t.Fatal(err)
	}
	sealedShare, _ := base64.StdEncoding.DecodeString(sealedB64)
	if _, err := ks.Decrypt(sealedShare, []byte(fmt.Sprintf("cosign:%s:%d", "agt_other", epoch))); err == nil {
		t.Fatal("the sealed share opens under another agent's additional data")
	}
	serverRaw, err := ks.Decrypt(sealedShare, []byte(fmt.Sprintf("cosign:%s:%d", c.id, epoch)))
	if err != nil {
		t.Fatal(err)
	}
	server, err := cosign.UnmarshalShare(serverRaw)
	if err != nil || server.Role() != cosign.RoleServer || server.Address() != c.wallet {
		t.Fatalf("stored server share: %v", err)
	}
	// The server alone has no key for the wallet: no HD wallet it derives
	// is the co-signed address, and its share cannot act as the agent's.
	for i := range uint32(8) {
		w, err := ks.Wallet(i)
		if err != nil {
			t.Fatal(err)
		}
		if common.HexToAddress(w.Address()) == c.wallet {
			t.Fatalf("HD wallet %d is the co-signed wallet", i)
		}
	}
	if _, err := cosign.NewAgentSigner(server, cosign.SignBinding{AgentID: c.id, SpendID: "x"}); err == nil {
		t.Fatal("the server's share signs as the agent")
	}

	// Search everything that left the server, and the database files.
	export, err := n.owner.AuditExport(ctx, "jsonl")
	if err != nil {
		t.Fatal(err)
	}
	exportB, _ := io.ReadAll(export)
	export.Close()
	if len(exportB) == 0 {
		t.Fatal("empty audit export")
	}
	metricsPage := send(t, "GET", n.url+"/metrics", nil, bearer(n.token))
	if metricsPage.status != 200 || !bytes.Contains(metricsPage.body, []byte("purser_")) {
		t.Fatalf("metrics: %s", metricsPage)
	}
	haystacks := map[string][]byte{"server log": logs.Bytes(), "audit export": exportB, "metrics": metricsPage.body}
	for i, a := range c.answers {
		haystacks[fmt.Sprintf("answer %d", i)] = a
	}
	for _, f := range []string{"purser.db", "purser.db-wal"} {
		if b, err := os.ReadFile(filepath.Join(n.dir, f)); err == nil {
			haystacks[f] = b
		}
	}
	needles := map[string][]byte{}
	for who, raw := range map[string][]byte{"agent share": agentRaw, "server share": serverRaw} {
		secret := raw[79:111] // the secret scalar (cosign's share layout)
		needles[who+" (hex)"] = []byte(hex.EncodeToString(raw))
		needles[who+" (base64)"] = []byte(base64.StdEncoding.EncodeToString(raw))
		needles[who+" (base64url)"] = []byte(base64.RawURLEncoding.EncodeToString(raw))
		needles[who+" secret (hex)"] = []byte(hex.EncodeToString(secret))
		needles[who+" secret (bytes)"] = secret
		for off := range 3 { // base64 of the secret at every alignment
			needles[fmt.Sprintf("%s secret (base64 @%d)", who, off)] = []byte(base64.StdEncoding.EncodeToString(raw[79-off : 111])[4:36])
		}
	}
	for hn, h := range haystacks {
		for nn, needle := range needles {
			if bytes.Contains(h, needle) {
				t.Errorf("%s appears in %s", nn, hn)
			}
		}
	}
	if !bytes.Contains(logs.Bytes(), []byte("cosign signing message refused")) {
		t.Fatal("the refused session was not logged: the log search searched nothing")
	}
	verifyChain(t, n)
}

// TestCosignAgentGone: an agent that gets the server's part and never
// comes back leaks no hold and never pays twice. One pays its seller with
// the signature it finished alone: the chain shows the authorization used,
// and the spend is captured. One never uses it: once validBefore has
// passed on chain, unused, the hold is released.
func TestCosignAgentGone(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	n, _ := m.cosignServer(t)
	c := m.newCosigner(t, n, "gone", `{"per_tx_auto":"0.10","per_tx_max":"1","daily":"5","rails":["x402"]}`, 1_000_000)
	resp, err := http.Get(m.sellerURL + "/item")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	pr, err := x402.ParsePaymentRequired(resp.Header, body)
	if err != nil || len(pr.Accepts) == 0 {
		t.Fatalf("402: %v", err)
	}
	offer := pr.Accepts[0]
	spendOn := func(raw json.RawMessage) api.Spend {
		rr := api.X402Request{URL: m.sellerURL + "/item", Method: "GET", Version: offer.Version, Offer: raw, Resource: pr.Resource}
		rrb, _ := json.Marshal(rr)
		sp, ans := c.authorize(t, map[string]any{"rail": "x402", "payee": offer.PayTo, "amount": "0.01", "rail_request": json.RawMessage(rrb)})
		if ans.status != 201 || sp.Cosign == nil {
			t.Fatalf("authorize: %s", ans)
		}
		return sp
	}
	// m2 only: the agent finishes the signature itself and never calls finish.
	halfway := func(sp api.Spend) cosign.Signature {
		s, err := cosign.NewAgentSigner(c.share, c.binding(t, sp, m.seller, big.NewInt(price), m.dev.Token(), devChainID(t, m)))
		if err != nil {
			t.Fatal(err)
		}
		m1, _ := s.Start()
		ans := c.post(t, "/v1/agent/spends/"+sp.SpendID+"/cosign", m1, "application/octet-stream")
		if ans.status != 200 {
			t.Fatalf("cosign: %s", ans)
		}
		if _, err := s.Handle(ans.body); err != nil {
			t.Fatal(err)
		}
		sig, err := s.Signature()
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	report := func(id string) api.Spend {
		ans := c.post(t, "/v1/agent/spends/"+id+"/settlement", []byte(`{"success":false}`), "")
		var sp api.Spend
		if ans.status != 200 || json.Unmarshal(ans.body, &sp) != nil {
			t.Fatalf("settlement report: %s", ans)
		}
		return sp
	}

	// 1. Paid behind the server's back.
	paid := spendOn(offer.Raw)
	sig := halfway(paid)
	a := paid.Cosign.Authorization
	va, _ := new(big.Int).SetString(a.ValidAfter, 10)
	vb, _ := new(big.Int).SetString(a.ValidBefore, 10)
	var nonce [32]byte
	copy(nonce[:], common.FromHex(a.Nonce))
	payload, err := x402.NewPaymentPayload(&offer, pr.Resource, x402.ExactPayload{Signature: "0x" + hex.EncodeToString(sig[:]),
		Authorization: x402.Authorization{From: a.From, To: a.To, Value: big.NewInt(price), ValidAfter: va, ValidBefore: vb, Nonce: nonce}})
	if err != nil {
		t.Fatal(err)
	}
	hn, hv, err := payload.HeaderValue()
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", m.sellerURL+"/item", nil)
	req.Header.Set(hn, hv)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("paying the seller with the agent's own signature: %d", res.StatusCode)
	}
	if sp := report(paid.SpendID); sp.Status != "captured" {
		t.Fatalf("spend paid without finish: %+v; want captured from the chain", sp)
	}

	// 2. Never used: an 8-second offer, so that validBefore passes soon (the
	// dev chain's clock may lead the wall clock by a few seconds).
	short := json.RawMessage(strings.Replace(string(offer.Raw), `"maxTimeoutSeconds":300`, `"maxTimeoutSeconds":8`, 1))
	if string(short) == string(offer.Raw) {
		t.Fatalf("offer has no maxTimeoutSeconds 300: %s", offer.Raw)
	}
	unused := spendOn(short)
	halfway(unused)
	if sp := report(unused.SpendID); sp.Status != "authorized" || sp.HeldUSD == "0" {
		t.Fatalf("before validBefore the hold stays: %+v", sp)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		sp := report(unused.SpendID)
		if sp.Status == "released" && sp.HeldUSD == "0" && slices.Contains(sp.Reasons, "authorization_expired_unused") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unused co-signed authorization still %+v after validBefore", sp)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if got := m.balance(t, m.seller); got.Int64() != price {
		t.Fatalf("seller holds %s; want one payment", got)
	}
	verifyChain(t, n)
}

// TestCosignOverhead measures, side by side in one run, what Purser adds
// to a paid x402 request until the agent holds its payment header: for a
// server-custody wallet one signed authorization request, for a co-signed
// one the same plus the signing round trip (the agent's two steps, the
// server's one, over loopback) and the finish. The seller's 402 and its
// settlement on chain are the same for both and left out (on the dev chain
// they are dominated by block timing). Run with PURSER_COSIGN_BENCH=N.
func TestCosignOverhead(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("PURSER_COSIGN_BENCH"))
	if runs <= 0 {
		t.Skip("PURSER_COSIGN_BENCH is not set")
	}
	// Signed, unused authorizations stay open: at most 100 per agent
	// (serve --max-open-spends), 3 of them the warm-up.
	runs = min(runs, 95)
	m := newMarket(t)
	n, _ := m.cosignServer(t)
	mandate := `{"per_tx_auto":"0.10","per_tx_max":"1","daily":"1000","rails":["x402"]}`
	m.agentFor(t, n, "plainbench", mandate, 0)
	keyAny, _ := m.keys.Load("plainbench")
	plain := &cosigner{n: n, dom: n.domain(t), key: keyAny.(*ecdsa.PrivateKey)}
	c := m.newCosigner(t, n, "cobench", mandate, 0)
	chainID := devChainID(t, m)
	resp, err := http.Get(m.sellerURL + "/item")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	pr, err := x402.ParsePaymentRequired(resp.Header, body)
	if err != nil {
		t.Fatal(err)
	}
	offer := pr.Accepts[0]
	rrb, _ := json.Marshal(api.X402Request{URL: m.sellerURL + "/item", Method: "GET", Version: offer.Version, Offer: offer.Raw, Resource: pr.Resource})
	req := map[string]any{"rail": "x402", "payee": offer.PayTo, "amount": "0.01", "rail_request": json.RawMessage(rrb)}
	header := func(raw []byte) {
		var pay api.X402Payment
		if json.Unmarshal(raw, &pay) != nil || pay.HeaderValue == "" {
			t.Fatalf("no payment header: %s", raw)
		}
	}
	server := func() {
		sp, ans := plain.authorize(t, req)
		if ans.status != 201 {
			t.Fatalf("authorize: %s", ans)
		}
		header(sp.RailData)
	}
	cosigned := func() {
		sp, ans := c.authorize(t, req)
		if ans.status != 201 {
			t.Fatalf("authorize: %s", ans)
		}
		fin, _ := c.cosignSpend(t, sp.SpendID, c.binding(t, sp, m.seller, big.NewInt(price), m.dev.Token(), chainID))
		var done api.Spend
		if fin.status != 200 || json.Unmarshal(fin.body, &done) != nil {
			t.Fatalf("finish: %s", fin)
		}
		header(done.RailData)
	}
	for range 3 { // warm both paths
		server()
		cosigned()
	}
	var ds, dc []time.Duration
	for range runs {
		start := time.Now()
		server()
		ds = append(ds, time.Since(start))
		start = time.Now()
		cosigned()
		dc = append(dc, time.Since(start))
		for _, x := range []*cosigner{plain, c} {
			x.mu.Lock()
			x.answers = nil // keep memory flat
			x.mu.Unlock()
		}
	}
	slices.Sort(ds)
	slices.Sort(dc)
	q := func(d []time.Duration, f float64) time.Duration {
		return d[int(float64(len(d)-1)*f)].Round(100 * time.Microsecond)
	}
	t.Logf("%d payments each, until the agent holds the payment header: server custody median %v (p90 %v), co-signed median %v (p90 %v): added %v at the median",
		runs, q(ds, 0.5), q(ds, 0.9), q(dc, 0.5), q(dc, 0.9), q(dc, 0.5)-q(ds, 0.5))
}

// TestCosignRace: ten concurrent first messages for one spend (each a
// fresh signed request): exactly one is answered with the server's part,
// the others are refused cosign_session_used; and the answered one works.
func TestCosignRace(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	n, _ := m.cosignServer(t)
	m.fundRelayer(t, n)
	c := m.newCosigner(t, n, "racer", `{"per_tx_auto":"1","per_tx_max":"2","daily":"50","rails":["payout"]}`, 1_000_000)
	sp, ans := c.authorize(t, payoutReq("0.30"))
	if ans.status != 201 {
		t.Fatalf("authorize: %s", ans)
	}
	b := c.binding(t, sp, common.HexToAddress(payee), big.NewInt(300_000), m.dev.Token(), devChainID(t, m))
	signers := make([]*cosign.SignSession, 10)
	answers := make([]answer, 10)
	var wg sync.WaitGroup
	for i := range signers {
		s, err := cosign.NewAgentSigner(c.share, b)
		if err != nil {
			t.Fatal(err)
		}
		signers[i] = s
		m1, _ := s.Start()
		wg.Go(func() {
			answers[i] = c.post(t, "/v1/agent/spends/"+sp.SpendID+"/cosign", m1, "application/octet-stream")
		})
	}
	wg.Wait()
	won := -1
	for i, a := range answers {
		switch {
		case a.status == 200 && won < 0:
			won = i
		case a.status == 409 && a.code == "cosign_session_used":
		default:
			t.Fatalf("answer %d: %s (first answered: %d)", i, a, won)
		}
	}
	if won < 0 {
		t.Fatal("no first message was answered")
	}
	if _, err := signers[won].Handle(answers[won].body); err != nil {
		t.Fatal(err)
	}
	sig, err := signers[won].Signature()
	if err != nil {
		t.Fatal(err)
	}
	fb, _ := json.Marshal(api.CosignFinishRequest{Signature: "0x" + hex.EncodeToString(sig[:])})
	var done api.Spend
	if fin := c.post(t, "/v1/agent/spends/"+sp.SpendID+"/cosign/finish", fb, ""); fin.status != 200 || json.Unmarshal(fin.body, &done) != nil || done.Status != "captured" {
		t.Fatalf("finish: %s", fin)
	}
	if got := m.balance(t, common.HexToAddress(payee)); got.Int64() != 300_000 {
		t.Fatalf("payee holds %s", got)
	}
	verifyChain(t, n)
}

// TestCosignRestart: the server restarts between the authorization and the
// co-signature: the unsigned authorization and the sealed share are
// durable, so the same session runs after the restart and pays once; a
// key generation cut by the restart is gone and starts over.
func TestCosignRestart(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	dir := t.TempDir()
	cfg := app.Config{DataDir: dir, Listen: "127.0.0.1:0", RPC: map[string]string{m.dev.Network(): m.dev.RPCURL()},
		Assets: []money.Asset{m.asset}, DefaultNetwork: m.dev.Network()}
	srv, err := app.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := newNode(t, "http://"+srv.Addr(), dir)
	m.fundRelayer(t, n)
	c := m.newCosigner(t, n, "survivor", `{"per_tx_auto":"1","per_tx_max":"2","daily":"50","rails":["payout"]}`, 1_000_000)
	sp, ans := c.authorize(t, payoutReq("0.40"))
	if ans.status != 201 || sp.Cosign == nil {
		t.Fatalf("authorize: %s", ans)
	}
	// A second agent's key generation, cut after its first message.
	key2 := newKey(t)
	body, _ := json.Marshal(map[string]any{"name": "halfmade", "identity_address": agentauth.Address(key2).Hex(), "custody": "2of2"})
	if a := send(t, "POST", n.url+"/v1/agents", body, bearer(n.token)); a.status != 201 {
		t.Fatalf("create: %s", a)
	}
	kg, _ := cosign.NewKeygen(cosign.RoleAgent, cosign.KeygenSessionID("halfmade", []byte("nonce")))
	km1, _ := kg.Start()
	kb, _ := json.Marshal(api.KeygenRequest{Message: base64.StdEncoding.EncodeToString(km1)})
	first := send(t, "POST", n.url+"/v1/agents/halfmade/cosign/keygen", kb, bearer(n.token))
	var r api.KeygenResponse
	if first.status != 200 || json.Unmarshal(first.body, &r) != nil || r.Done {
		t.Fatalf("keygen m1: %s", first)
	}
	km2, _ := base64.StdEncoding.DecodeString(r.Message)
	km3, err := kg.Handle(km2)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv, err = app.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	n2 := newNode(t, "http://"+srv.Addr(), dir)
	c.n = n2
	kb, _ = json.Marshal(api.KeygenRequest{Message: base64.StdEncoding.EncodeToString(km3)})
	if a := send(t, "POST", n2.url+"/v1/agents/halfmade/cosign/keygen", kb, bearer(n2.token)); a.code != "cosign_message_invalid" {
		t.Fatalf("keygen m3 after a restart: %s; want cosign_message_invalid (start over)", a)
	}
	fin, _ := c.cosignSpend(t, sp.SpendID, c.binding(t, sp, common.HexToAddress(payee), big.NewInt(400_000), m.dev.Token(), devChainID(t, m)))
	var done api.Spend
	if fin.status != 200 || json.Unmarshal(fin.body, &done) != nil || done.Status != "captured" {
		t.Fatalf("co-signing after a restart: %s", fin)
	}
	if got := m.balance(t, common.HexToAddress(payee)); got.Int64() != 400_000 {
		t.Fatalf("payee holds %s", got)
	}
	verifyChain(t, n2)
}
