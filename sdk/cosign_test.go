package sdk

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
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

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/internal/cosign"
	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/x402"
)

// cosignShares runs a key generation between the two sides in process.
func cosignShares(t *testing.T) (agent, server *cosign.Share) {
	t.Helper()
	sid := cosign.KeygenSessionID("agt_test", []byte(t.Name()))
	ag, err := cosign.NewKeygen(cosign.RoleAgent, sid)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := cosign.NewKeygen(cosign.RoleServer, sid)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := ag.Start()
	if err != nil {
		t.Fatal(err)
	}
	for turn := 0; msg != nil; turn++ {
		side := sv
		if turn%2 == 1 {
			side = ag
		}
		if msg, err = side.Handle(msg); err != nil {
			t.Fatalf("keygen turn %d: %v", turn, err)
		}
	}
	if agent, err = ag.Share(); err != nil {
		t.Fatal(err)
	}
	if server, err = sv.Share(); err != nil {
		t.Fatal(err)
	}
	return agent, server
}

const (
	testToken   = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
	testPayee   = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
	testNetwork = "eip155:84532"
)

// signingFor is what an honest server sends: the authorization it built
// for the spend and its digest and session id.
func signingFor(from common.Address, to string, value int64, pub []byte, agentID, spendID string) *api.CosignSigning {
	var nonce [32]byte
	copy(nonce[:], crypto.Keccak256([]byte(spendID)))
	a := evm.Authorization{From: from, To: common.HexToAddress(to), Value: big.NewInt(value), ValidAfter: big.NewInt(0),
		ValidBefore: big.NewInt(1800000000), Nonce: nonce}
	d := a.Digest(evm.DomainSeparator("USDC", "2", big.NewInt(84532), common.HexToAddress(testToken)))
	sid := cosign.SignBinding{AgentID: agentID, SpendID: spendID, Digest: d}.SessionID(pub)
	return &api.CosignSigning{SessionID: "0x" + hex.EncodeToString(sid[:]), Digest: "0x" + hex.EncodeToString(d[:]),
		Authorization: api.CosignAuthorization{From: from.Hex(), To: to, Value: fmt.Sprint(value), ValidAfter: "0",
			ValidBefore: "1800000000", Nonce: "0x" + hex.EncodeToString(nonce[:])},
		Domain: api.CosignDomain{Name: "USDC", Version: "2", ChainID: "84532", VerifyingContract: testToken}}
}

var testWant = &cosignWant{payTo: common.HexToAddress(testPayee), max: big.NewInt(10000), chainID: big.NewInt(84532),
	token: common.HexToAddress(testToken), name: "USDC", version: "2"}

// TestCosignDigest: the digest the SDK computes from the server's fields is
// the one internal/evm (the server's EIP-3009 code) computes, and the known
// vector of internal/evm's TestDigestVector.
func TestCosignDigest(t *testing.T) {
	t.Parallel()
	from := common.HexToAddress("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
	c := signingFor(from, testPayee, 10000, nil, "a", "s")
	var nonce [32]byte
	for i := range nonce {
		nonce[i] = 0x11
	}
	c.Authorization.Nonce = "0x" + hex.EncodeToString(nonce[:])
	a := evm.Authorization{From: from, To: common.HexToAddress(testPayee), Value: big.NewInt(10000), ValidAfter: big.NewInt(0),
		ValidBefore: big.NewInt(1800000000), Nonce: nonce}
	want := a.Digest(evm.DomainSeparator("USDC", "2", big.NewInt(84532), common.HexToAddress(testToken)))
	c.Digest = "0x" + hex.EncodeToString(want[:])
	d, err := checkCosign(c, testWant, from, "s")
	if err != nil {
		t.Fatal(err)
	}
	if d != want || hex.EncodeToString(d[:]) != "8b544c5a60580d36004b454c46f98d024a596db9a1b0e3e431911be2ee715abd" {
		t.Fatalf("digest %x, want %x", d, want)
	}
}

// TestCosignMismatch: a server (hostile or buggy) asking the agent to
// co-sign anything but what it asked for is refused with a clear *Error,
// status 0, before anything is signed.
func TestCosignMismatch(t *testing.T) {
	t.Parallel()
	from := common.HexToAddress("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
	tests := []struct {
		name   string
		tamper func(c *api.CosignSigning)
		ok     bool
	}{
		{"honest", func(c *api.CosignSigning) {}, true},
		{"less than asked", func(c *api.CosignSigning) { *c = *signingFor(from, testPayee, 9999, nil, "a", "s") }, true},
		{"more than asked", func(c *api.CosignSigning) { *c = *signingFor(from, testPayee, 10001, nil, "a", "s") }, false},
		{"zero", func(c *api.CosignSigning) { *c = *signingFor(from, testPayee, 0, nil, "a", "s") }, false},
		{"another payee", func(c *api.CosignSigning) {
			*c = *signingFor(from, "0x000000000000000000000000000000000000dEaD", 10000, nil, "a", "s")
		}, false},
		{"another wallet", func(c *api.CosignSigning) {
			*c = *signingFor(common.HexToAddress("0x000000000000000000000000000000000000bEEF"), testPayee, 10000, nil, "a", "s")
		}, false},
		{"another chain", func(c *api.CosignSigning) { c.Domain.ChainID = "8453" }, false},
		{"another token", func(c *api.CosignSigning) { c.Domain.VerifyingContract = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913" }, false},
		{"another token name", func(c *api.CosignSigning) { c.Domain.Name = "USD Coin" }, false},
		{"digest of other fields", func(c *api.CosignSigning) { c.Authorization.ValidBefore = "1900000000" }, false},
		{"other digest", func(c *api.CosignSigning) { c.Digest = "0x" + strings.Repeat("ab", 32) }, false},
		{"short nonce", func(c *api.CosignSigning) { c.Authorization.Nonce = "0x1234" }, false},
		{"value not decimal", func(c *api.CosignSigning) { c.Authorization.Value = "0x10" }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := signingFor(from, testPayee, 10000, nil, "a", "s")
			tc.tamper(c)
			_, err := checkCosign(c, testWant, from, "s")
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var e *Error
			if !IsCode(err, CodeCosignMismatch) || !asError(err, &e) || e.Status != 0 {
				t.Fatalf("got %v, want a %s *Error with status 0", err, CodeCosignMismatch)
			}
		})
	}
}

func asError(err error, e **Error) bool {
	v, ok := err.(*Error)
	*e = v
	return ok
}

// cosignServer is a Purser stand-in that verifies agent signatures and runs
// the server's side of the co-signing with the real cosign package: what
// h-cs builds into httpapi, reduced to the protocol.
type cosignServer struct {
	t        *testing.T
	share    *cosign.Share
	ledger   cosign.MemoryLedger
	agentID  string
	payee    string
	value    int64
	cosigns  atomic.Int32
	releases atomic.Int32
	brokenM2 bool
	x402     bool

	mu     sync.Mutex
	digest map[string][32]byte
	sig    map[string][]byte
}

func (s *cosignServer) handle(w http.ResponseWriter, r *http.Request, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	fail := func(status int, code string) {
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]any{"code": code, "message": code})
	}
	switch {
	case r.URL.Path == "/v1/agent/assets":
		json.NewEncoder(w).Encode(api.Assets{Assets: []Asset{{Symbol: "USDC", Network: testNetwork, Address: testToken, Decimals: 6, USD: true,
			EIP712Name: "USDC", EIP712Version: "2"}}})
	case r.URL.Path == "/v1/agent/spends" && r.Method == http.MethodPost:
		var req AuthorizeRequest
		json.Unmarshal(body, &req)
		if req.IdempotencyKey == "" || strings.HasPrefix(req.IdempotencyKey, "sdk-") {
			req.IdempotencyKey = "x"
		}
		id := "spd_" + req.IdempotencyKey
		c := signingFor(s.share.Address(), s.payee, s.value, s.share.PublicKey(), s.agentID, id)
		var d [32]byte
		hex.Decode(d[:], []byte(strings.TrimPrefix(c.Digest, "0x")))
		s.mu.Lock()
		s.digest[id] = d
		signed := s.sig[id] != nil
		s.mu.Unlock()
		sp := Spend{SpendID: id, AgentID: s.agentID, Status: api.StatusAuthorized, Rail: req.Rail, Payee: req.Payee, Amount: req.Amount,
			Asset: "USDC", Network: testNetwork}
		if !signed {
			sp.Cosign = c
		}
		json.NewEncoder(w).Encode(sp)
	case strings.HasSuffix(r.URL.Path, "/cosign"):
		s.cosigns.Add(1)
		id := strings.Split(r.URL.Path, "/")[4]
		if r.Header.Get("Content-Type") != "application/octet-stream" {
			fail(415, "invalid_request")
			return
		}
		s.mu.Lock()
		d := s.digest[id]
		s.mu.Unlock()
		sv, err := cosign.NewServerSigner(r.Context(), s.share, cosign.SignBinding{AgentID: s.agentID, SpendID: id, Digest: d}, &s.ledger)
		if err != nil {
			fail(409, "cosign_session_used")
			return
		}
		m2, err := sv.Handle(body)
		if err != nil {
			fail(400, "cosign_message_invalid")
			return
		}
		if s.brokenM2 {
			m2[len(m2)/2] ^= 1
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(m2)
	case strings.HasSuffix(r.URL.Path, "/cosign/finish"):
		id := strings.Split(r.URL.Path, "/")[4]
		var fin api.CosignFinishRequest
		json.Unmarshal(body, &fin)
		sig, err := hex.DecodeString(strings.TrimPrefix(fin.Signature, "0x"))
		s.mu.Lock()
		d := s.digest[id]
		s.mu.Unlock()
		if err != nil || len(sig) != 65 || (sig[64] != 27 && sig[64] != 28) {
			fail(400, "cosign_signature_invalid")
			return
		}
		rs := append([]byte(nil), sig...)
		rs[64] -= 27
		pub, err := crypto.SigToPub(d[:], rs)
		if err != nil || crypto.PubkeyToAddress(*pub) != s.share.Address() {
			fail(400, "cosign_signature_invalid")
			return
		}
		s.mu.Lock()
		s.sig[id] = sig
		s.mu.Unlock()
		if s.x402 {
			rd, _ := json.Marshal(api.X402Payment{Header: x402.HeaderPaymentSignature, HeaderValue: "paid-" + hex.EncodeToString(sig[:8])})
			json.NewEncoder(w).Encode(Spend{SpendID: id, AgentID: s.agentID, Status: api.StatusAuthorized, Rail: api.RailX402, RailData: rd})
			return
		}
		json.NewEncoder(w).Encode(Spend{SpendID: id, AgentID: s.agentID, Status: api.StatusCaptured, Rail: api.RailPayout, RailRef: "0xtx"})
	case strings.HasSuffix(r.URL.Path, "/settlement"):
		json.NewEncoder(w).Encode(Spend{SpendID: strings.Split(r.URL.Path, "/")[4], Status: api.StatusCaptured, Rail: api.RailX402})
	case strings.HasSuffix(r.URL.Path, "/release"):
		s.releases.Add(1)
		json.NewEncoder(w).Encode(Spend{SpendID: strings.Split(r.URL.Path, "/")[4], Status: api.StatusReleased})
	default:
		fail(404, "not_found")
	}
}

func newCosignAgent(t *testing.T, s *cosignServer, agentShare *cosign.Share) *Agent {
	t.Helper()
	srv := verifyingServer(t, s.handle)
	key, _ := agentauth.GenerateKey()
	a, err := NewAgent(srv.URL, localKey{key: key, share: agentShare})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestCosignPayout: a 2of2 agent's payout is co-signed through the three
// messages; the signature the server receives recovers to the joint wallet
// over the server's digest. Concurrent calls for the same spend run one
// session; a replay after signing passes through.
func TestCosignPayout(t *testing.T) {
	t.Parallel()
	agentShare, serverShare := cosignShares(t)
	s := &cosignServer{t: t, share: serverShare, agentID: "agt_1", payee: testPayee, value: 1_500_000,
		digest: map[string][32]byte{}, sig: map[string][]byte{}}
	a := newCosignAgent(t, s, agentShare)
	ctx := context.Background()
	sp, err := a.Pay(ctx, PayRequest{To: testPayee, Amount: "1.50", Network: testNetwork, IdempotencyKey: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	if sp.Status != api.StatusCaptured || s.cosigns.Load() != 1 || len(s.sig["spd_k1"]) != 65 {
		t.Fatalf("payout: status %s, %d sessions, signature %d bytes", sp.Status, s.cosigns.Load(), len(s.sig["spd_k1"]))
	}

	// Eight concurrent callers of one spend (one idempotency key): one
	// session, one signature, every caller gets the signed spend.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			sp, err := a.Pay(ctx, PayRequest{To: testPayee, Amount: "1.50", Network: testNetwork, IdempotencyKey: "k2"})
			if err == nil && sp.Status != api.StatusCaptured && sp.Status != api.StatusAuthorized {
				err = fmt.Errorf("status %s", sp.Status)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := s.cosigns.Load(); n != 2 {
		t.Fatalf("%d signing sessions for 2 spends", n)
	}

	// A share of another key cannot finish: the server's part does not
	// combine with it, and nothing is signed.
	otherAgent, _ := cosignShares(t)
	b := newCosignAgent(t, s, otherAgent)
	if _, err := b.Pay(ctx, PayRequest{To: testPayee, Amount: "1.50", Network: testNetwork, IdempotencyKey: "k3"}); !IsCode(err, CodeCosignMismatch) {
		t.Fatalf("a share of another wallet: %v", err)
	}
}

// TestCosignRefusesWhatItDidNotAsk: a server that asks the agent to co-sign
// a transfer to another payee or of more gets nothing: no protocol message
// leaves the agent, and the hold is released.
func TestCosignRefusesWhatItDidNotAsk(t *testing.T) {
	t.Parallel()
	agentShare, serverShare := cosignShares(t)
	for _, tc := range []struct {
		payee string
		value int64
	}{{"0x000000000000000000000000000000000000dEaD", 1_500_000}, {testPayee, 1_500_001}} {
		s := &cosignServer{t: t, share: serverShare, agentID: "agt_1", payee: tc.payee, value: tc.value,
			digest: map[string][32]byte{}, sig: map[string][]byte{}}
		a := newCosignAgent(t, s, agentShare)
		_, err := a.Pay(context.Background(), PayRequest{To: testPayee, Amount: "1.50", Network: testNetwork})
		if !IsCode(err, CodeCosignMismatch) || s.cosigns.Load() != 0 || s.releases.Load() != 1 {
			t.Fatalf("%s %d: %v (%d sessions, %d releases)", tc.payee, tc.value, err, s.cosigns.Load(), s.releases.Load())
		}
	}
}

// TestCosignFailedSessionNotRetried: a session that failed (a tampered
// server answer) returns a clear error, and the same spend asked again gets
// that error without a second session.
func TestCosignFailedSessionNotRetried(t *testing.T) {
	t.Parallel()
	agentShare, serverShare := cosignShares(t)
	s := &cosignServer{t: t, share: serverShare, agentID: "agt_1", payee: testPayee, value: 1_500_000, brokenM2: true,
		digest: map[string][32]byte{}, sig: map[string][]byte{}}
	a := newCosignAgent(t, s, agentShare)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := PayRequest{To: testPayee, Amount: "1.50", Network: testNetwork, IdempotencyKey: "k"}
	_, err1 := a.Pay(ctx, p)
	_, err2 := a.Pay(ctx, p)
	if err1 == nil || err2 == nil || s.cosigns.Load() != 1 || len(s.sig) != 0 {
		t.Fatalf("errors %v / %v, %d sessions, %d signatures", err1, err2, s.cosigns.Load(), len(s.sig))
	}
	if !strings.Contains(err1.Error(), "co-sign spend spd_k") {
		t.Fatalf("unclear error: %v", err1)
	}
}

// TestLoadKeyFileShare: a 2of2 key file loads with its share; an
// identity-only one without; the Signer never prints the share; a broken
// share line is refused without quoting it.
func TestLoadKeyFileShare(t *testing.T) {
	t.Parallel()
	agentShare, _ := cosignShares(t)
	raw, err := agentShare.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	key, _ := agentauth.GenerateKey()
	path := dir + "/agent.key"
	if err := agentauth.WriteKeyFileShare(path, key, raw); err != nil {
		t.Fatal(err)
	}
	s, err := LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sh := shareOf(s); sh == nil || sh.Address() != agentShare.Address() || s.Address() != agentauth.Address(key).Hex() {
		t.Fatal("share or identity lost")
	}
	b64 := base64.StdEncoding.EncodeToString(raw)
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(f, s); strings.Contains(out, b64[40:80]) || strings.Contains(out, hex.EncodeToString(raw[40:60])) {
			t.Fatalf("%s prints the share: %s", f, out)
		}
	}
	plain := dir + "/plain.key"
	agentauth.WriteKeyFile(plain, key)
	if s, err := LoadKeyFile(plain); err != nil || shareOf(s) != nil {
		t.Fatalf("identity-only: %v", err)
	}
	bad := dir + "/bad.key"
	raw[len(raw)-1] ^= 1 // the share's checksum no longer matches
	agentauth.WriteKeyFileShare(bad, key, raw)
	if _, err := LoadKeyFile(bad); err == nil || strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(raw)[40:80]) {
		t.Fatalf("broken share: %v", err)
	}
}

// x402Seller answers 402 with one v2 offer of 0.01 USDC to testPayee, and
// serves the paid retry.
func x402Seller(t *testing.T, paid *atomic.Int32) string {
	t.Helper()
	offer := `{"scheme":"exact","network":"` + testNetwork + `","amount":"10000","asset":"` + testToken + `","payTo":"` + testPayee +
		`","maxTimeoutSeconds":60,"extra":{"name":"USDC","version":"2"}}`
	req, err := x402.ParseRequirements(2, json.RawMessage(offer))
	if err != nil {
		t.Fatal(err)
	}
	hv, err := x402.EncodePaymentRequired(&x402.PaymentRequired{Version: 2, Resource: json.RawMessage(`{"url":"http://seller/data"}`), Accepts: []x402.Requirements{*req}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v := r.Header.Get(x402.HeaderPaymentSignature); strings.HasPrefix(v, "paid-") {
			paid.Add(1)
			st, _ := x402.EncodeSettleResponse(&x402.SettleResponse{Success: true, Transaction: "0x" + strings.Repeat("ab", 32), Network: testNetwork})
			w.Header().Set(x402.HeaderPaymentResponse, st)
			io.WriteString(w, "the data")
			return
		}
		w.Header().Set(x402.HeaderPaymentRequired, hv)
		w.WriteHeader(http.StatusPaymentRequired)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestCosignX402: Fetch and Transport pay an x402 seller from a 2of2
// wallet: the authorization is checked against the seller's offer (not
// what Purser echoes), co-signed, and the paid retry carries the payment.
// A Purser that builds an authorization above the offer gets no signature.
func TestCosignX402(t *testing.T) {
	t.Parallel()
	agentShare, serverShare := cosignShares(t)
	var paid atomic.Int32
	seller := x402Seller(t, &paid)
	s := &cosignServer{t: t, share: serverShare, agentID: "agt_1", payee: testPayee, value: 10000, x402: true,
		digest: map[string][32]byte{}, sig: map[string][]byte{}}
	a := newCosignAgent(t, s, agentShare)
	ctx := context.Background()
	res, err := a.Fetch(ctx, FetchRequest{URL: seller + "/data", IdempotencyKey: "f1"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != Paid || string(res.Body) != "the data" || paid.Load() != 1 || s.cosigns.Load() != 1 {
		t.Fatalf("fetch: %s %q, %d paid, %d sessions", res.Outcome, res.Body, paid.Load(), s.cosigns.Load())
	}
	hc := &http.Client{Transport: Transport(a, nil, nil)}
	req, _ := http.NewRequestWithContext(WithIdempotencyKey(ctx, "t1"), http.MethodGet, seller+"/data", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || paid.Load() != 2 || s.cosigns.Load() != 2 {
		t.Fatalf("transport: %d, %d paid, %d sessions", resp.StatusCode, paid.Load(), s.cosigns.Load())
	}

	hostile := &cosignServer{t: t, share: serverShare, agentID: "agt_1", payee: testPayee, value: 10001, x402: true,
		digest: map[string][32]byte{}, sig: map[string][]byte{}}
	b := newCosignAgent(t, hostile, agentShare)
	if _, err := b.Fetch(ctx, FetchRequest{URL: seller + "/data"}); !IsCode(err, CodeCosignMismatch) || hostile.cosigns.Load() != 0 {
		t.Fatalf("above the offer: %v, %d sessions", err, hostile.cosigns.Load())
	}
	if paid.Load() != 2 {
		t.Fatal("the seller was paid without a co-signed authorization")
	}
}

// TestCosignWithoutShare: an agent loaded from an identity-only key file
// whose spend asks to be co-signed gets a clear error, and sends nothing.
func TestCosignWithoutShare(t *testing.T) {
	t.Parallel()
	_, serverShare := cosignShares(t)
	s := &cosignServer{t: t, share: serverShare, agentID: "agt_1", payee: testPayee, value: 1_500_000,
		digest: map[string][32]byte{}, sig: map[string][]byte{}}
	a := newCosignAgent(t, s, nil)
	_, err := a.Pay(context.Background(), PayRequest{To: testPayee, Amount: "1.50", Network: testNetwork})
	if err == nil || !strings.Contains(err.Error(), "no cosign share") || s.cosigns.Load() != 0 {
		t.Fatalf("no share: %v, %d sessions", err, s.cosigns.Load())
	}
}
