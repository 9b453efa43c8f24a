package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"mime"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/internal/apiproxy"
	"github.com/purserhq/purser/internal/cosign"
	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/internal/httpapi"
	"github.com/purserhq/purser/internal/keystore"
	"github.com/purserhq/purser/internal/metrics"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/rails"
	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/spend/spendtest"
	"github.com/purserhq/purser/internal/store/sqlite"
	"github.com/purserhq/purser/internal/webhook"
)

// apiHarness is a real server (spend service on SQLite, the x402 rail,
// a test executor rail, fake chains and faucet) and the spec its answers
// are held to.
type apiHarness struct {
	t      *testing.T
	o      *openAPI
	srv    *httptest.Server
	env    *spendtest.Env
	domain agentauth.Domain
	token  string

	unhealthy atomic.Bool
	chains    *fakeChains
	hooks     *webhook.Webhooks
	vault     *apiproxy.Vault

	mu   sync.Mutex
	seen map[string]map[int]bool // operation → statuses answered
}

// apiCall is one request and the answer it must get.
type apiCall struct {
	op     string // the spec's operation, "POST /v1/agent/spends"; "" for a path no operation has
	path   string // the request-target; "" is op's path
	method string // with op "": the method
	body   string
	owner  bool              // with the owner token
	bearer string            // with this bearer token instead
	agent  *ecdsa.PrivateKey // signed by this agent key
	header http.Header       // headers set as they are (a signature made beforehand)
	host   string            // the Host header
	want   int
	code   string // the error code, with want >= 400
}

// apiAnswer is what the server said.
type apiAnswer struct {
	status int
	header http.Header
	body   []byte
	json   map[string]any
}

func (a *apiAnswer) str(key string) string {
	s, _ := a.json[key].(string)
	return s
}

// noRedirects answers with a redirect as it is (a proxied upstream's).
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// testKey is a fixed secp256k1 key, so that every run is the same.
func testKey(t *testing.T, name string) *ecdsa.PrivateKey {
	k, err := crypto.ToECDSA(crypto.Keccak256([]byte("purser openapi test key " + name)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func addressOf(k *ecdsa.PrivateKey) string { return crypto.PubkeyToAddress(k.PublicKey).Hex() }

type fakeChains struct {
	mu   sync.Mutex
	down map[string]bool // wallet addresses whose balance cannot be read
}

func (*fakeChains) Networks() []string { return []string{"eip155:8453"} }

func (f *fakeChains) Balance(_ context.Context, _, _, owner string) (*big.Int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down[strings.ToLower(owner)] {
		return nil, errors.New("rpc: connection refused")
	}
	return big.NewInt(12_340_000), nil
}

type fakeFaucet struct{}

func (fakeFaucet) Network() string { return "eip155:8453" }

func (fakeFaucet) Fund(context.Context, string, *big.Int) (string, error) {
	return "0x" + strings.Repeat("ab", 32), nil
}

func newAPIHarness(t *testing.T) *apiHarness {
	t.Helper()
	h := &apiHarness{t: t, o: loadSpec(t), token: "pso_openapi_test", chains: &fakeChains{down: map[string]bool{}},
		seen: map[string]map[int]bool{}}
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "purser.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	assets, err := money.NewRegistry(money.DefaultAssets()...)
	if err != nil {
		t.Fatal(err)
	}
	// The test executor rail leaves a spend whose memo says "unknown" in
	// doubt, for an owner to resolve; it captures the others.
	exec := &spendtest.Rail{Outcome: func(sp *spend.Spend) (spend.ExecResult, error) {
		if sp.Memo == "unknown" {
			return spend.ExecResult{Outcome: spend.OutcomeUnknown}, nil
		}
		return spend.ExecResult{Outcome: spend.OutcomeCaptured, Captured: sp.Amount, Ref: "test:" + sp.ID}, nil
	}}
	x402 := &rails.X402{Common: rails.Common{Assets: assets, NonceKey: []byte("openapi test nonce key"),
		Wallet: func(ctx context.Context, agentID string) (evm.HashSigner, error) {
			a, cosigned, err := h.env.Svc.WalletOf(ctx, agentID)
			if err != nil {
				return nil, err
			}
			if cosigned != "" {
				return nil, &rails.CosignedWallet{Address: cosigned}
			}
			return h.env.Keys.Wallet(a.WalletIndex)
		},
		Now: func() time.Time { return h.env.Clock.Now() },
	}}
	// The credential vault and its rail, sealing with a keystore of its
	// own (the env's is made with the service, after the rails).
	vks, err := keystore.Open(filepath.Join(t.TempDir(), "vault-keys"), keystore.FileKEK{Path: filepath.Join(t.TempDir(), "vault-kek")})
	if err != nil {
		t.Fatal(err)
	}
	h.vault, err = apiproxy.New(apiproxy.Config{Sealer: vks, Assets: assets, Network: "eip155:8453"})
	if err != nil {
		t.Fatal(err)
	}
	h.env = spendtest.NewEnv(t, st, exec, x402, h.vault)
	h.vault.Bind(h.env.Svc)
	t.Cleanup(h.vault.Wait) // settlements of proxied calls, before the store closes
	hooks, err := webhook.New(webhook.Config{Service: h.env.Svc, Assets: assets, PublicURL: "https://purser.example",
		SecretKey: h.env.Keys.DeriveKey("webhook-secrets"), SigningKey: ed25519.NewKeyFromSeed(h.env.Keys.DeriveKey("webhook-ed25519"))})
	if err != nil {
		t.Fatal(err)
	}
	h.hooks = hooks
	var dep [32]byte
	copy(dep[:], crypto.Keccak256([]byte("openapi test deployment")))
	h.domain = agentauth.DeploymentDomain(dep)
	h.srv = httptest.NewServer(httpapi.New(httpapi.Config{
		Service: h.env.Svc, Assets: assets, OwnerToken: h.token, Metrics: metrics.NewRegistry(), Clock: h.env.Clock,
		Ready: func(context.Context) error {
			if h.unhealthy.Load() {
				return errors.New("database down")
			}
			return nil
		},
		Chains: h.chains, Faucet: fakeFaucet{}, Relayer: "0x00000000000000000000000000000000000000aa", Deployment: dep,
		Webhooks: hooks, Vault: h.vault,
	}).Handler())
	t.Cleanup(h.srv.Close)
	return h
}

// signed returns the four Purser-* headers of a request signed by key.
func (h *apiHarness) signed(key *ecdsa.PrivateKey, dom agentauth.Domain, method, target, body string, expires time.Time) http.Header {
	h.t.Helper()
	nonce, err := agentauth.NewNonce()
	if err != nil {
		h.t.Fatal(err)
	}
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	s, err := agentauth.Sign(key, dom, method, target, b, nonce, expires)
	if err != nil {
		h.t.Fatal(err)
	}
	hd := http.Header{}
	s.Apply(hd)
	return hd
}

// do sends c, checks the status and code it wants, and validates the
// answer (and, when it succeeds, the request body) against the spec.
func (h *apiHarness) do(c apiCall) *apiAnswer {
	h.t.Helper()
	method, opPath, _ := strings.Cut(c.op, " ")
	if c.op == "" {
		method = c.method
	}
	target := c.path
	if target == "" {
		target = opPath
	}
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequest(method, h.srv.URL+target, body)
	if err != nil {
		h.t.Fatal(err)
	}
	if c.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.host != "" {
		req.Host = c.host
	}
	switch {
	case c.owner:
		req.Header.Set("Authorization", "Bearer "+h.token)
	case c.bearer != "":
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	if c.agent != nil {
		for k, v := range h.signed(c.agent, h.domain, method, req.URL.RequestURI(), c.body, h.env.Clock.Now().Add(time.Minute)) {
			req.Header[k] = v
		}
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	res, err := noRedirects.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	a := &apiAnswer{status: res.StatusCode, header: res.Header, body: raw}
	json.Unmarshal(raw, &a.json) //nolint:errcheck // not every answer is a JSON object
	label := fmt.Sprintf("%s %s", method, target)
	code := a.str("code")
	if code == "" {
		code = res.Header.Get("Purser-Error") // a HEAD answer has no body
	}
	if a.status != c.want || (c.code != "" && code != c.code) {
		h.t.Errorf("%s → %d %.300s; want %d %s", label, a.status, raw, c.want, c.code)
	}
	if a.status >= 400 && a.json["code"] != nil {
		if st, ok := spend.HTTPStatus(a.str("code")); !ok || st != a.status {
			h.t.Errorf("%s → %d with code %q, which the registry answers with %d", label, a.status, a.str("code"), st)
		}
	}
	if c.op == "" {
		if err := h.o.validate("/components/schemas/Error", raw); err != nil {
			h.t.Errorf("%s → %d: the answer is no Error: %v", label, a.status, err)
		}
		return a
	}
	if strings.HasPrefix(opPath, apiproxy.Prefix) {
		h.checkProxy(label, method, opPath, a)
		return a
	}
	h.check(label, method, opPath, a.status, res.Header.Get("Content-Type"), raw)
	if c.body != "" && a.status < 300 && c.header.Get("Content-Type") != "application/octet-stream" {
		ptr, err := h.o.requestSchema(method, opPath)
		if err != nil || ptr == "" {
			h.t.Errorf("%s: the server took a body, but the spec declares none (%v)", label, err)
		} else if err := h.o.validate(ptr, []byte(c.body)); err != nil {
			h.t.Errorf("%s: the server took the body %s, which the spec's request schema refuses: %v", label, c.body, err)
		}
	}
	return a
}

// check validates one answer of operation method opPath against the
// spec, and records that the operation answered with status.
func (h *apiHarness) check(label, method, opPath string, status int, ctype string, body []byte) {
	h.t.Helper()
	h.mu.Lock()
	op := method + " " + opPath
	if h.seen[op] == nil {
		h.seen[op] = map[int]bool{}
	}
	h.seen[op][status] = true
	h.mu.Unlock()
	media, declared, err := h.o.responseMedia(method, opPath, status)
	if err != nil {
		h.t.Errorf("%s: %v", label, err)
		return
	}
	if !declared {
		h.t.Errorf("%s → %d, a status docs/openapi.yaml does not declare for %s: %.300s", label, status, op, body)
		return
	}
	mt, _, err := mime.ParseMediaType(ctype)
	if err != nil {
		h.t.Errorf("%s → %d: Content-Type %q: %v", label, status, ctype, err)
		return
	}
	ptr, ok := media[mt]
	if !ok {
		h.t.Errorf("%s → %d with Content-Type %s; the spec declares %v", label, status, mt, slices.Sorted(maps.Keys(media)))
		return
	}
	if ptr == "" {
		return
	}
	switch {
	case mt == "application/json":
		if err := h.o.validate(ptr, body); err != nil {
			h.t.Errorf("%s → %d: the answer does not match the spec's schema at %s:\n%v\nanswer: %.2000s", label, status, ptr, err, body)
		}
	default:
		if err := h.o.validateValue(ptr, string(body)); err != nil {
			h.t.Errorf("%s → %d: the answer does not match the spec's schema at %s: %v", label, status, ptr, err)
		}
		if mt == "application/x-ndjson" {
			h.checkLines(label, strings.TrimSuffix(ptr, "/schema")+"/x-purser-line-schema", body)
		}
	}
}

// checkLines validates each line of a JSON-lines answer.
func (h *apiHarness) checkLines(label, ptr string, body []byte) {
	h.t.Helper()
	if _, err := h.o.resolve("#" + ptr); err != nil {
		h.t.Errorf("%s: no line schema: %v", label, err)
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		n++
		if err := h.o.validate(ptr, sc.Bytes()); err != nil {
			h.t.Errorf("%s: line %d does not match the spec's line schema: %v\n%s", label, n, err, sc.Bytes())
		}
	}
	if n < 2 {
		h.t.Errorf("%s: %d lines; want a header and events", label, n)
	}
}

// TestOpenAPIAnswers drives a real server through every operation and
// the usual ways each can fail, and holds every answer to the schema the
// spec declares for its operation and status; a status the spec does not
// declare fails. Every success status the spec declares must be seen.
func TestOpenAPIAnswers(t *testing.T) {
	t.Parallel()
	h := newAPIHarness(t)
	keyA, keyB, keyC, stranger := testKey(t, "a"), testKey(t, "b"), testKey(t, "c"), testKey(t, "stranger")
	const payee = "0x000000000000000000000000000000000000dEaD"

	// ---- public ----
	h.do(apiCall{op: "GET /healthz", want: 200})
	h.unhealthy.Store(true)
	h.do(apiCall{op: "GET /healthz", want: 503})
	h.unhealthy.Store(false)
	h.do(apiCall{op: "GET /metrics", want: 200})
	dep := h.do(apiCall{op: "GET /v1/deployment", want: 200})
	if dep.str("deployment_id") != h.domain.DeploymentHex() {
		t.Errorf("deployment id %s; the server was given %s", dep.str("deployment_id"), h.domain.DeploymentHex())
	}
	h.do(apiCall{op: "GET /v1/deployment", host: "evil.example", want: 421, code: "host_not_served"})
	h.do(apiCall{method: "GET", path: "/v1/nothing", owner: true, want: 404, code: "not_found"})
	h.do(apiCall{method: "DELETE", path: "/v1/agents", owner: true, want: 405, code: "method_not_allowed"})
	h.metricsWithOwnerAuth()

	// ---- owner: agents ----
	alphaMandate := `{"per_tx_auto":"1","per_tx_max":"5","daily":"50","lifetime":"100","rate":"100/1m",` +
		`"deny_payees":["0x000000000000000000000000000000000000bad0"],"timezone":"Europe/Paris","pin_payees":true}`
	alpha := h.do(apiCall{op: "POST /v1/agents", owner: true, want: 201,
		body: `{"name":"alpha","identity_address":"` + addressOf(keyA) + `","mandate":` + alphaMandate + `}`})
	alphaID := alpha.str("id")
	beta := h.do(apiCall{op: "POST /v1/agents", owner: true, want: 201,
		body: `{"name":"beta","identity_address":"` + addressOf(keyB) + `"}`})
	h.chains.mu.Lock()
	for _, w := range asList(beta.json["wallets"]) {
		addr, _ := w.(map[string]any)["address"].(string)
		h.chains.down[strings.ToLower(addr)] = true
	}
	h.chains.mu.Unlock()
	h.do(apiCall{op: "POST /v1/agents", owner: true, want: 409, code: "agent_exists",
		body: `{"name":"alpha","identity_address":"` + addressOf(keyC) + `"}`})
	h.do(apiCall{op: "POST /v1/agents", owner: true, want: 400, code: "invalid_request",
		body: `{"name":"gamma","identity_address":"not an address"}`})
	h.do(apiCall{op: "POST /v1/agents", owner: true, want: 400, code: "mandate_invalid",
		body: `{"name":"gamma","identity_address":"` + addressOf(keyC) + `","mandate":{"per_tx_max":5,"per_tx_auto":"9","daily":"1"}}`})
	h.do(apiCall{op: "POST /v1/agents", owner: true, want: 400, code: "invalid_request",
		body: `{"name":"gamma","name":"delta","identity_address":"` + addressOf(keyC) + `"}`})
	h.do(apiCall{op: "POST /v1/agents", owner: true, want: 413, code: "body_too_large",
		body: `{"name":"` + strings.Repeat("x", httpapi.MaxBody) + `"}`})
	h.do(apiCall{op: "GET /v1/agents", owner: true, want: 200})
	h.do(apiCall{op: "GET /v1/agents", want: 401, code: "unauthorized"})
	h.do(apiCall{op: "GET /v1/agents", bearer: "pso_wrong", want: 401, code: "unauthorized"})
	h.do(apiCall{op: "GET /v1/agents", agent: keyA, want: 403, code: "wrong_credential"})
	h.do(apiCall{op: "GET /v1/agents/{ref}", path: "/v1/agents/alpha", owner: true, want: 200})
	h.do(apiCall{op: "GET /v1/agents/{ref}", path: "/v1/agents/" + alphaID, owner: true, want: 200})
	h.do(apiCall{op: "GET /v1/agents/{ref}", path: "/v1/agents/nobody", owner: true, want: 404, code: "agent_not_found"})
	h.do(apiCall{op: "GET /v1/agents/{ref}/mandate", path: "/v1/agents/alpha/mandate", owner: true, want: 200})
	h.do(apiCall{op: "GET /v1/agents/{ref}/mandate", path: "/v1/agents/beta/mandate", owner: true, want: 200})
	h.do(apiCall{op: "GET /v1/agents/{ref}/limits", path: "/v1/agents/alpha/limits", owner: true, want: 200})
	h.do(apiCall{op: "GET /v1/agents/{ref}/limits", path: "/v1/agents/beta/limits", owner: true, want: 200})
	h.do(apiCall{op: "GET /v1/agents/{ref}/limits", path: "/v1/agents/nobody/limits", owner: true, want: 404, code: "agent_not_found"})
	h.do(apiCall{op: "GET /v1/agents/{ref}/balances", path: "/v1/agents/alpha/balances", owner: true, want: 200})
	if r := h.do(apiCall{op: "GET /v1/agents/{ref}/balances", path: "/v1/agents/beta/balances", owner: true, want: 200}); !strings.Contains(string(r.body), `"error":"chain_unavailable"`) {
		t.Errorf("a balance the chain could not give: %s", r.body)
	}
	h.do(apiCall{op: "POST /v1/agents/{ref}/fund", path: "/v1/agents/alpha/fund", owner: true, body: `{"amount":"10"}`, want: 200})
	h.do(apiCall{op: "POST /v1/agents/{ref}/fund", path: "/v1/agents/alpha/fund", owner: true, body: `{"amount":"-1","asset":"USDC"}`, want: 400, code: "amount_negative"})
	h.do(apiCall{op: "POST /v1/agents/{ref}/fund", path: "/v1/agents/alpha/fund", owner: true, body: `{"amount":"1","asset":"DOGE"}`, want: 400, code: "asset_unknown"})
	h.do(apiCall{op: "POST /v1/agents/{ref}/fund", path: "/v1/agents/nobody/fund", owner: true, body: `{"amount":"1"}`, want: 404, code: "agent_not_found"})
	h.do(apiCall{op: "GET /v1/chains", owner: true, want: 200})

	// ---- agent: reads and spends ----
	h.do(apiCall{op: "GET /v1/agent/limits", agent: keyA, want: 200})
	h.do(apiCall{op: "GET /v1/agent/assets", agent: keyA, want: 200})
	h.do(apiCall{op: "GET /v1/agent/balances", agent: keyA, want: 200})
	custom := func(amount, extra string) string {
		return `{"rail":"custom","payee":"` + payee + `","amount":"` + amount + `"` + extra + `}`
	}
	ask := func(key *ecdsa.PrivateKey, body string, want int, code string) *apiAnswer {
		t.Helper()
		return h.do(apiCall{op: "POST /v1/agent/spends", agent: key, body: body, want: want, code: code})
	}
	allowed := ask(keyA, custom("0.5", `,"host":"API.Seller.com","idempotency_key":"k1","memo":"weather"`), 201, "")
	spA := allowed.str("spend_id")
	if r := ask(keyA, custom("0.5", `,"host":"API.Seller.com","idempotency_key":"k1","memo":"weather"`), 200, ""); r.json["replayed"] != true {
		t.Errorf("replay: %s", r.body)
	}
	ask(keyA, custom("0.6", `,"host":"api.seller.com","idempotency_key":"k1","memo":"weather"`), 409, "idempotency_conflict")
	spP1 := ask(keyA, custom("2", `,"host":"api.seller.com"`), 202, "").str("spend_id")
	spP2 := ask(keyA, custom("3", `,"host":"api.seller.com"`), 202, "").str("spend_id")
	denied := ask(keyA, custom("10", `,"host":"api.seller.com"`), 403, "spend_denied")
	if d, _ := denied.json["details"].(map[string]any); d == nil || d["spend"] == nil {
		t.Errorf("spend_denied without details.spend: %s", denied.body)
	}
	if r := ask(keyA, custom("0.1", `,"dry_run":true`), 200, ""); r.json["dry_run"] != true {
		t.Errorf("dry run: %s", r.body)
	}
	ask(keyA, custom("abc", ""), 400, "amount_invalid")
	ask(keyA, custom("0.1234567", ""), 400, "amount_too_precise")
	ask(keyA, `{"rail":"nope","payee":"`+payee+`","amount":"1"}`, 400, "rail_unknown")
	ask(keyA, `{"rail":"custom","payee":"`+payee+`","amount":"1","amount":"9"}`, 400, "invalid_request")
	ask(keyA, `{"rail":"custom","payee":"`+payee+`","amount":"1","Memo":"x"}`, 400, "invalid_request")
	ask(keyA, custom("1", `,"network":"eip155:1"`), 400, "network_unknown")
	ask(keyA, `{"rail":"custom","payee":"`+payee+`","amount":"1","`+strings.Repeat("x", 17<<10)+`":1}`, 413, "body_too_large")

	h.do(apiCall{op: "GET /v1/agent/spends/{id}", path: "/v1/agent/spends/" + spA, agent: keyA, want: 200})
	h.do(apiCall{op: "GET /v1/agent/spends/{id}", path: "/v1/agent/spends/spd_nope", agent: keyA, want: 404, code: "spend_not_found"})
	h.do(apiCall{op: "POST /v1/agent/spends/{id}/capture", path: "/v1/agent/spends/" + spA + "/capture", agent: keyA, body: `{"amount":"0.25"}`, want: 200})
	h.do(apiCall{op: "POST /v1/agent/spends/{id}/capture", path: "/v1/agent/spends/" + spA + "/capture", agent: keyA, body: `{}`, want: 409, code: "invalid_state"})
	spR := ask(keyA, custom("0.3", ""), 201, "").str("spend_id")
	h.do(apiCall{op: "POST /v1/agent/spends/{id}/capture", path: "/v1/agent/spends/" + spR + "/capture", agent: keyA, body: `{"amount":"5"}`, want: 409, code: "capture_exceeds_hold"})
	h.do(apiCall{op: "POST /v1/agent/spends/{id}/release", path: "/v1/agent/spends/" + spR + "/release", agent: keyA, want: 200})
	h.do(apiCall{op: "POST /v1/agent/spends/{id}/release", path: "/v1/agent/spends/" + spR + "/release", agent: keyA, body: `{}`, want: 200}) // a retried report
	h.do(apiCall{op: "POST /v1/agent/spends/{id}/release", path: "/v1/agent/spends/" + spA + "/release", agent: keyA, want: 409, code: "invalid_state"})

	// x402: the offer is signed; the seller's settlement captures it.
	x402Body := `{"rail":"x402","rail_request":{"url":"https://x402.example.com/weather?q=1","method":"GET","x402_version":2,"offer":` +
		`{"scheme":"exact","network":"eip155:8453","amount":"10000","asset":"0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",` +
		`"payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60,"extra":{"name":"USD Coin","version":"2"}}}}`
	x := ask(keyA, x402Body, 201, "")
	spX := x.str("spend_id")
	h.checkX402(x)
	spX2 := ask(keyA, x402Body, 201, "").str("spend_id") // stays signed, for freeze --cancel-signed
	ask(keyA, strings.Replace(x402Body, `"x402_version":2`, `"x402_version":3`, 1), 400, "x402_version_unsupported")
	ask(keyA, strings.Replace(x402Body, `"scheme":"exact"`, `"scheme":"upto"`, 1), 400, "x402_scheme_unsupported")
	h.do(apiCall{op: "POST /v1/agent/spends/{id}/settlement", path: "/v1/agent/spends/" + spX + "/settlement", agent: keyA, want: 400, code: "invalid_request"})
	h.do(apiCall{op: "POST /v1/agent/spends/{id}/settlement", path: "/v1/agent/spends/" + spX + "/settlement", agent: keyA,
		body: `{"success":true,"transaction":"0x` + strings.Repeat("12", 32) + `","network":"eip155:8453"}`, want: 200})
	h.do(apiCall{op: "POST /v1/agent/spends/{id}/settlement", path: "/v1/agent/spends/" + spA + "/settlement", agent: keyA,
		body: `{"success":true}`, want: 409, code: "invalid_state"})
	h.do(apiCall{op: "POST /v1/agent/spends/{id}/capture", path: "/v1/agent/spends/" + spX2 + "/capture", agent: keyA, body: `{}`, want: 409, code: "invalid_state"})

	// The test executor rail: one spend left in doubt, one approved and
	// then carried out by confirm.
	spU := ask(keyA, `{"rail":"testrail","payee":"`+payee+`","amount":"0.2","memo":"unknown"}`, 201, "").str("spend_id")
	spT := ask(keyA, `{"rail":"testrail","payee":"`+payee+`","amount":"2"}`, 202, "").str("spend_id")
	h.do(apiCall{op: "POST /v1/agent/spends/{id}/confirm", path: "/v1/agent/spends/" + spT + "/confirm", agent: keyA, want: 409, code: "invalid_state"})

	// Every body the spec closes to unknown fields, the server refuses
	// with one too.
	h.unknownFields(map[string]string{"ref": "alpha", "id": spX2, "name": "search", "agent": "alpha", "tool": "search_items", "path": "v1/x"}, keyA)

	// ---- owner: spends and approvals ----
	h.do(apiCall{op: "GET /v1/approvals", owner: true, want: 200})
	h.do(apiCall{op: "GET /v1/approvals", path: "/v1/approvals?agent=alpha", owner: true, want: 200})
	h.do(apiCall{op: "GET /v1/approvals", path: "/v1/approvals?agent=nobody", owner: true, want: 404, code: "agent_not_found"})
	h.do(apiCall{op: "POST /v1/approvals/{id}/approve", path: "/v1/approvals/" + spP1 + "/approve", owner: true, want: 200})
	h.do(apiCall{op: "POST /v1/approvals/{id}/approve", path: "/v1/approvals/" + spP1 + "/approve", owner: true, body: `{}`, want: 409, code: "invalid_state"})
	h.do(apiCall{op: "POST /v1/approvals/{id}/approve", path: "/v1/approvals/spd_nope/approve", owner: true, want: 404, code: "spend_not_found"})
	h.do(apiCall{op: "POST /v1/approvals/{id}/approve", path: "/v1/approvals/" + spT + "/approve", owner: true, want: 200})
	h.do(apiCall{op: "POST /v1/approvals/{id}/deny", path: "/v1/approvals/" + spP2 + "/deny", owner: true, body: `{"reason":"not today"}`, want: 200})
	h.do(apiCall{op: "POST /v1/approvals/{id}/deny", path: "/v1/approvals/" + spP2 + "/deny", owner: true, want: 409, code: "invalid_state"})
	h.do(apiCall{op: "POST /v1/agent/spends/{id}/confirm", path: "/v1/agent/spends/" + spP1 + "/confirm", agent: keyA, body: `{}`, want: 200})
	if r := h.do(apiCall{op: "POST /v1/agent/spends/{id}/confirm", path: "/v1/agent/spends/" + spT + "/confirm", agent: keyA, want: 200}); r.str("status") != "captured" {
		t.Errorf("confirm on an executor rail: %s", r.body)
	}
	h.do(apiCall{op: "POST /v1/spends/{id}/resolve", path: "/v1/spends/" + spU + "/resolve", owner: true, body: `{"released":true}`, want: 400, code: "invalid_request"})
	h.do(apiCall{op: "POST /v1/spends/{id}/resolve", path: "/v1/spends/" + spU + "/resolve", owner: true, body: `{"captured_tx":"ref-77","reason":"the seller's statement"}`, want: 200})
	h.do(apiCall{op: "POST /v1/spends/{id}/resolve", path: "/v1/spends/" + spU + "/resolve", owner: true, body: `{"released":true,"reason":"again"}`, want: 409, code: "invalid_state"})
	h.do(apiCall{op: "POST /v1/spends/{id}/resolve", path: "/v1/spends/spd_nope/resolve", owner: true, body: `{"released":true,"reason":"x"}`, want: 404, code: "spend_not_found"})
	h.do(apiCall{op: "GET /v1/spends", owner: true, want: 200})
	h.do(apiCall{op: "GET /v1/spends", path: "/v1/spends?agent=alpha&status=authorized,captured,released,denied,unknown&limit=50", owner: true, want: 200})
	h.do(apiCall{op: "GET /v1/spends", path: "/v1/spends?status=paid", owner: true, want: 400, code: "invalid_request"})
	h.do(apiCall{op: "GET /v1/spends", path: "/v1/spends?limit=0", owner: true, want: 400, code: "invalid_request"})
	h.do(apiCall{op: "GET /v1/spends", path: "/v1/spends?agent=nobody", owner: true, want: 404, code: "agent_not_found"})
	for _, id := range []string{spA, spX, spX2, spU, spT, spP1, spP2, spR} {
		h.do(apiCall{op: "GET /v1/spends/{id}", path: "/v1/spends/" + id, owner: true, want: 200})
	}
	h.do(apiCall{op: "GET /v1/spends/{id}", path: "/v1/spends/spd_nope", owner: true, want: 404, code: "spend_not_found"})

	// ---- owner: freeze ----
	frozen := h.do(apiCall{op: "POST /v1/agents/{ref}/freeze", path: "/v1/agents/alpha/freeze", owner: true, body: `{"cancel_signed":true}`, want: 200})
	if cs := asList(frozen.json["cancellations"]); len(cs) != 1 {
		t.Errorf("freeze --cancel-signed with one signed spend (%s): %s", spX2, frozen.body)
	}
	if r := ask(keyA, custom("0.1", ""), 403, "spend_denied"); !strings.Contains(string(r.body), "agent_frozen") {
		t.Errorf("a frozen agent's spend: %s", r.body)
	}
	h.do(apiCall{op: "POST /v1/agent/spends/{id}/confirm", path: "/v1/agent/spends/" + spP1 + "/confirm", agent: keyA, want: 403, code: "spend_denied"})
	h.do(apiCall{op: "POST /v1/agents/{ref}/unfreeze", path: "/v1/agents/alpha/unfreeze", owner: true, want: 200})
	h.do(apiCall{op: "POST /v1/agents/{ref}/freeze", path: "/v1/agents/alpha/freeze", owner: true, want: 200})
	h.do(apiCall{op: "POST /v1/agents/{ref}/unfreeze", path: "/v1/agents/alpha/unfreeze", owner: true, body: `{}`, want: 200})
	h.do(apiCall{op: "POST /v1/agents/{ref}/freeze", path: "/v1/agents/nobody/freeze", owner: true, want: 404, code: "agent_not_found"})

	// ---- beta: mandates, keys, revocation ----
	if r := ask(keyB, custom("0.1", ""), 403, "spend_denied"); !strings.Contains(string(r.body), "no_mandate") {
		t.Errorf("an agent without a mandate: %s", r.body)
	}
	spB := h.do(apiCall{op: "GET /v1/spends", path: "/v1/spends?agent=beta&limit=1", owner: true, want: 200})
	if list := asList(spB.json["spends"]); len(list) == 1 {
		id, _ := list[0].(map[string]any)["spend_id"].(string)
		h.do(apiCall{op: "GET /v1/agent/spends/{id}", path: "/v1/agent/spends/" + id, agent: keyA, want: 404, code: "spend_not_found"})
	} else {
		t.Errorf("beta's refused spend is not listed: %s", spB.body)
	}
	h.do(apiCall{op: "PUT /v1/agents/{ref}/mandate", path: "/v1/agents/beta/mandate", owner: true, want: 200,
		body: `{"mandate":{"per_tx_max":"1","lifetime":"10","rails":["custom"],"hosts":["*.example.com"],"payees":["` + payee + `"],` +
			`"valid_from":"2026-01-01T00:00:00Z","valid_until":"2027-01-01T00:00:00Z","approve_new_payees":true,"timezone":null},"base_version":0}`})
	h.do(apiCall{op: "PUT /v1/agents/{ref}/mandate", path: "/v1/agents/beta/mandate", owner: true, want: 409, code: "mandate_conflict",
		body: `{"mandate":{"per_tx_max":"2"},"base_version":0}`})
	h.do(apiCall{op: "PUT /v1/agents/{ref}/mandate", path: "/v1/agents/beta/mandate", owner: true, body: `{"base_version":1}`, want: 400, code: "invalid_request"})
	h.do(apiCall{op: "PUT /v1/agents/{ref}/mandate", path: "/v1/agents/beta/mandate", owner: true, body: `{"mandate":{"per_tx_max":"1","dialy":"5"}}`, want: 400, code: "mandate_invalid"})
	h.do(apiCall{op: "GET /v1/agents/{ref}/mandate", path: "/v1/agents/beta/mandate", owner: true, want: 200})
	h.do(apiCall{op: "GET /v1/agents/{ref}/limits", path: "/v1/agents/beta/limits", owner: true, want: 200})
	if r := ask(keyB, custom("0.5", `,"host":"shop.example.com"`), 202, ""); !strings.Contains(string(r.body), "new_payee_requires_approval") {
		t.Errorf("a new payee: %s", r.body)
	}
	h.do(apiCall{op: "POST /v1/agents/{ref}/rotate-key", path: "/v1/agents/beta/rotate-key", owner: true, body: `{"identity_address":"` + addressOf(keyC) + `"}`, want: 200})
	h.do(apiCall{op: "GET /v1/agent/limits", agent: keyB, want: 401, code: "agent_key_revoked"})
	h.do(apiCall{op: "GET /v1/agent/limits", agent: keyC, want: 200})
	h.do(apiCall{op: "POST /v1/agents/{ref}/rotate-key", path: "/v1/agents/beta/rotate-key", owner: true, body: `{"identity_address":"` + addressOf(keyA) + `"}`, want: 409, code: "agent_exists"})
	h.do(apiCall{op: "POST /v1/agents/{ref}/rotate-key", path: "/v1/agents/beta/rotate-key", owner: true, body: `{}`, want: 400, code: "invalid_request"})
	h.do(apiCall{op: "POST /v1/agents/{ref}/revoke", path: "/v1/agents/beta/revoke", owner: true, want: 200})
	h.do(apiCall{op: "POST /v1/agents/{ref}/unfreeze", path: "/v1/agents/beta/unfreeze", owner: true, want: 409, code: "invalid_state"})
	h.do(apiCall{op: "GET /v1/agent/limits", agent: keyC, want: 401, code: "agent_key_revoked"})

	// ---- agent authentication ----
	now := h.env.Clock.Now()
	h.do(apiCall{op: "GET /v1/agent/limits", want: 401, code: "auth_missing"})
	bad := h.signed(keyA, h.domain, "GET", "/v1/agent/limits", "", now.Add(time.Minute))
	bad.Set(agentauth.HeaderNonce, "0x1234")
	h.do(apiCall{op: "GET /v1/agent/limits", header: bad, want: 401, code: "auth_malformed"})
	h.do(apiCall{op: "GET /v1/agent/limits", header: h.signed(keyA, h.domain, "GET", "/v1/agent/assets", "", now.Add(time.Minute)), want: 401, code: "signature_invalid"})
	other := agentauth.DeploymentDomain([32]byte{1})
	h.do(apiCall{op: "GET /v1/agent/limits", header: h.signed(keyA, other, "GET", "/v1/agent/limits", "", now.Add(time.Minute)), want: 401, code: "signature_invalid"})
	h.do(apiCall{op: "GET /v1/agent/limits", header: h.signed(keyA, agentauth.UnboundDomain(), "GET", "/v1/agent/limits", "", now.Add(time.Minute)), want: 401, code: "signature_unbound"})
	h.do(apiCall{op: "GET /v1/agent/limits", header: h.signed(keyA, h.domain, "GET", "/v1/agent/limits", "", now.Add(-time.Second)), want: 401, code: "signature_expired"})
	h.do(apiCall{op: "GET /v1/agent/limits", header: h.signed(keyA, h.domain, "GET", "/v1/agent/limits", "", now.Add(time.Hour)), want: 401, code: "signature_expiry_too_far"})
	once := h.signed(keyA, h.domain, "GET", "/v1/agent/limits", "", now.Add(time.Minute))
	h.do(apiCall{op: "GET /v1/agent/limits", header: once, want: 200})
	h.do(apiCall{op: "GET /v1/agent/limits", header: once, want: 401, code: "nonce_replayed"})
	h.do(apiCall{op: "GET /v1/agent/limits", agent: stranger, want: 401, code: "agent_unknown"})
	h.do(apiCall{op: "GET /v1/agent/limits", owner: true, want: 403, code: "wrong_credential"})

	// ---- audit ----
	h.do(apiCall{op: "GET /v1/audit/tail", owner: true, want: 200})
	h.do(apiCall{op: "GET /v1/audit/tail", path: "/v1/audit/tail?n=1000", owner: true, want: 200})
	h.do(apiCall{op: "GET /v1/audit/tail", path: "/v1/audit/tail?n=0", owner: true, want: 400, code: "invalid_request"})
	h.do(apiCall{op: "POST /v1/audit/verify", owner: true, want: 200})
	h.do(apiCall{op: "GET /v1/audit/key", owner: true, want: 200})
	h.do(apiCall{op: "GET /v1/audit/export", owner: true, want: 200})
	h.do(apiCall{op: "GET /v1/audit/export", path: "/v1/audit/export?format=jsonl", owner: true, want: 200})
	if r := h.do(apiCall{op: "GET /v1/audit/export", path: "/v1/audit/export?format=csv", owner: true, want: 200}); !bytes.HasPrefix(r.body, []byte("seq,time,actor_type,actor_id,action,subject,details,prev_hash,hash\n")) {
		t.Errorf("CSV export header: %.200s", r.body)
	}
	h.do(apiCall{op: "GET /v1/audit/export", path: "/v1/audit/export?format=xml", owner: true, want: 400, code: "invalid_request"})

	// ---- owners of the portal ----
	inv := h.do(apiCall{op: "POST /v1/owners/invites", owner: true, body: `{"name":"alice"}`, want: 201})
	if !strings.Contains(inv.str("link"), "/enrol#") || inv.json["new_owner"] != true {
		t.Errorf("invite: %s", inv.body)
	}
	h.do(apiCall{op: "POST /v1/owners/invites", owner: true, want: 201})
	h.do(apiCall{op: "POST /v1/owners/invites", owner: true, body: `{"name":""}`, want: 201})
	h.do(apiCall{op: "POST /v1/owners/invites", owner: true, body: `{"name":"a\u0000b"}`, want: 400, code: "invalid_request"})
	h.do(apiCall{op: "POST /v1/owners/invites", owner: true, body: `{"nam":"x"}`, want: 400, code: "invalid_request"})
	h.do(apiCall{op: "GET /v1/owners", owner: true, want: 200})
	h.do(apiCall{op: "POST /v1/owners/{ref}/revoke", path: "/v1/owners/nobody/revoke", owner: true, want: 404, code: "owner_not_found"})
	h.do(apiCall{op: "POST /v1/passkeys/{id}/revoke", path: "/v1/passkeys/AAAA/revoke", owner: true, want: 404, code: "owner_not_found"})
	h.do(apiCall{op: "POST /v1/passkeys/{id}/revoke", path: "/v1/passkeys/n%21t/revoke", owner: true, want: 400, code: "invalid_request"})
	h.ownerSuccesses()
	// ---- webhooks ----
	h.webhooks()

	// ---- the credential vault and the proxy ----
	h.vaultAndProxy()

	// ---- credentials, operation by operation ----
	h.credentials()

	// ---- co-signed wallets ----
	h.cosigned(x402Body)

	// ---- every success the spec promises was seen ----
	h.coverage()
}

// metricsWithOwnerAuth: with --metrics-auth owner, /metrics takes the
// owner token.
func (h *apiHarness) metricsWithOwnerAuth() {
	h.t.Helper()
	srv := httptest.NewServer(httpapi.New(httpapi.Config{OwnerToken: h.token, MetricsAuth: "owner"}).Handler())
	defer srv.Close()
	for _, c := range []struct {
		auth   string
		status int
	}{{"", 401}, {"Bearer " + h.token, 200}} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/metrics", nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			h.t.Fatal(err)
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != c.status {
			h.t.Errorf("/metrics with --metrics-auth owner, Authorization %q: %d, want %d", c.auth, res.StatusCode, c.status)
		}
		h.check("GET /metrics (--metrics-auth owner)", "GET", "/metrics", res.StatusCode, res.Header.Get("Content-Type"), raw)
	}
}

// checkX402 holds an x402 spend's rail_request and rail_data to their
// schemas (the Spend schema leaves them open objects: they are
// rail-specific).
func (h *apiHarness) checkX402(a *apiAnswer) {
	h.t.Helper()
	for field, schema := range map[string]string{"rail_request": "X402Request", "rail_data": "X402Authorization"} {
		raw, err := json.Marshal(a.json[field])
		if err != nil || a.json[field] == nil {
			h.t.Errorf("x402 spend without %s: %s", field, a.body)
			continue
		}
		if err := h.o.validate("/components/schemas/"+schema, raw); err != nil {
			h.t.Errorf("x402 spend: %s is no %s: %v\n%s", field, schema, err, raw)
		}
	}
}

// unknownFields sends every operation whose request schema is closed a
// body with an unknown field: the spec must refuse it, and so must the
// server (400 invalid_request).
func (h *apiHarness) unknownFields(params map[string]string, agent *ecdsa.PrivateKey) {
	h.t.Helper()
	const body = `{"zz_not_a_field":true}`
	n := 0
	for _, op := range h.o.operations() {
		method, path, _ := strings.Cut(op, " ")
		ptr, err := h.o.requestSchema(method, path)
		if err != nil {
			h.t.Error(err)
			continue
		}
		if ptr == "" {
			continue
		}
		v, err := h.o.resolve("#" + ptr)
		if err != nil {
			h.t.Error(err)
			continue
		}
		schema, _ := v.(map[string]any)
		if schema, _, err = h.o.deref(schema, ptr); err != nil {
			h.t.Error(err)
			continue
		}
		if schema["additionalProperties"] != false {
			h.t.Errorf("%s: the request schema does not refuse unknown fields, but the server does", op)
			continue
		}
		if err := h.o.validate(ptr, []byte(body)); err == nil {
			h.t.Errorf("%s: the request schema takes %s", op, body)
		}
		c := apiCall{op: op, path: fill(path, params), body: body, want: 400, code: "invalid_request"}
		if strings.HasPrefix(path, "/v1/agent/") {
			c.agent = agent
		} else {
			c.owner = true
		}
		h.do(c)
		n++
	}
	if n < 10 {
		h.t.Errorf("only %d operations take a body", n)
	}
}

// fill puts params into a spec path's {name}s.
func fill(path string, params map[string]string) string {
	for k, v := range params {
		path = strings.ReplaceAll(path, "{"+k+"}", v)
	}
	return path
}

// credentials sends every operation without credentials: what the spec
// says it needs must be what the server asks for.
func (h *apiHarness) credentials() {
	h.t.Helper()
	global := asList(h.o.doc["security"])
	for _, op := range h.o.operations() {
		method, path, _ := strings.Cut(op, " ")
		o, _, _ := h.o.operation(method, path)
		reqs := global
		if s, ok := o["security"]; ok {
			reqs = asList(s)
		}
		public := len(reqs) == 0
		var owner, agent bool
		for _, r := range reqs {
			r, _ := r.(map[string]any)
			switch {
			case len(r) == 0:
				public = true
			case r["ownerToken"] != nil && len(r) == 1:
				owner = true
			case len(r) == 4 && r["purserAgent"] != nil && r["purserNonce"] != nil && r["purserExpires"] != nil && r["purserSignature"] != nil:
				agent = true
			default:
				h.t.Errorf("%s: unexpected security requirement %v", op, r)
			}
		}
		c := apiCall{op: op, path: fill(path, map[string]string{"ref": "alpha", "id": "spd_nope", "name": "search", "agent": "alpha", "tool": "search_items", "path": "v1/x"})}
		switch {
		case public:
			c.want = 200
		case owner && !agent:
			c.want, c.code = 401, "unauthorized"
		case agent && !owner:
			c.want, c.code = 401, "auth_missing"
		default:
			h.t.Errorf("%s: security %v is neither public, owner nor agent", op, reqs)
			continue
		}
		h.do(c)
	}
}

// coverage: every operation answered, and with every success status
// the spec declares for it.
func (h *apiHarness) coverage() {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, op := range h.o.operations() {
		method, path, _ := strings.Cut(op, " ")
		o, _, _ := h.o.operation(method, path)
		var statuses []string
		responses, _ := o["responses"].(map[string]any)
		for s := range responses {
			statuses = append(statuses, s)
		}
		sort.Strings(statuses)
		for _, s := range statuses {
			if d, ok := strings.CutSuffix(s, "XX"); ok {
				if d < "4" && !slices.ContainsFunc(slices.Collect(maps.Keys(h.seen[op])), func(st int) bool { return fmt.Sprint(st/100) == d }) {
					h.t.Errorf("%s never answered a %s status, a success range the spec declares: drive it here, or drop it from the spec", op, s)
				}
				continue
			}
			var st int
			fmt.Sscan(s, &st) //nolint:errcheck
			if st < 400 && st != 0 && !h.seen[op][st] {
				h.t.Errorf("%s never answered %d, a success the spec declares: drive it here, or drop it from the spec", op, st)
			}
		}
	}
}

// ownerSuccesses revokes a passkey and an owner that the store holds (an
// enrolment needs a WebAuthn ceremony: internal/owners tests it).
func (h *apiHarness) ownerSuccesses() {
	h.t.Helper()
	now := time.Now().UTC()
	err := h.env.Store.InTx(context.Background(), func(tx spend.Tx) error {
		if err := tx.OwnerCreate(context.Background(), &spend.Owner{ID: "own_bob", Name: "bob", CreatedAt: now}); err != nil {
			return err
		}
		return tx.PasskeyAdd(context.Background(), &spend.Passkey{CredentialID: []byte("cred-1"), OwnerID: "own_bob", PublicKey: []byte{0xa5}, CreatedAt: now})
	})
	if err != nil {
		h.t.Fatal(err)
	}
	if r := h.do(apiCall{op: "GET /v1/owners", owner: true, want: 200}); !strings.Contains(string(r.body), `"credential_id":"Y3JlZC0x"`) {
		h.t.Errorf("owners: %s", r.body)
	}
	pk := h.do(apiCall{op: "POST /v1/passkeys/{id}/revoke", path: "/v1/passkeys/Y3JlZC0x/revoke", owner: true, want: 200})
	if pk.json["revoked_at"] == nil {
		h.t.Errorf("revoked passkey: %s", pk.body)
	}
	for range 2 { // revoking twice changes nothing
		if o := h.do(apiCall{op: "POST /v1/owners/{ref}/revoke", path: "/v1/owners/bob/revoke", owner: true, want: 200}); o.json["revoked_at"] == nil {
			h.t.Errorf("revoked owner: %s", o.body)
		}
	}
	h.do(apiCall{op: "POST /v1/owners/invites", owner: true, body: `{"name":"bob"}`, want: 409, code: "invalid_state"})
}

// webhooks drives the webhook endpoints: create (with a secret, with the
// deployment's key, refused targets), list, get, a ping to a receiver
// that accepts and one that refuses, the delivery log with a delivered
// message, resume, delete.
func (h *apiHarness) webhooks() {
	h.t.Helper()
	var mu sync.Mutex
	refuse := false
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if refuse {
			http.Error(w, "no thanks", http.StatusGone)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()
	const op = "POST /v1/webhooks"
	h.do(apiCall{op: op, body: `{"url":"` + recv.URL + `"}`, owner: true, want: 400, code: "webhook_target_private"})
	h.do(apiCall{op: op, body: `{"url":"ftp://example.com/"}`, owner: true, want: 400, code: "invalid_request"})
	h.do(apiCall{op: op, body: `{"url":"https://example.com/","events":["nope"]}`, owner: true, want: 400, code: "invalid_request"})
	h.do(apiCall{op: op, body: `{"url":"https://example.com/","signing":"rsa"}`, owner: true, want: 400, code: "invalid_request"})
	ed := h.do(apiCall{op: op, body: `{"url":"https://example.com/hook","signing":"ed25519","events":["agent.frozen"]}`, owner: true, want: 201})
	c := h.do(apiCall{op: op, body: `{"url":"` + recv.URL + `/in","allow_private":true,"events":["agent.frozen","approval.requested"]}`, owner: true, want: 201})
	id, secret := c.str("id"), c.str("secret")
	if !strings.HasPrefix(secret, "whsec_") || ed.str("secret") != "" || !strings.HasPrefix(ed.str("public_key"), "whpk_") {
		h.t.Errorf("created: %s / %s", c.body, ed.body)
	}
	list := h.do(apiCall{op: "GET /v1/webhooks", owner: true, want: 200})
	if bytes.Contains(list.body, []byte(strings.TrimPrefix(secret, "whsec_"))) {
		h.t.Errorf("the list shows the secret")
	}
	if k := h.do(apiCall{op: "GET /v1/webhooks/signing-key", owner: true, want: 200}); k.str("public_key") != ed.str("public_key") {
		h.t.Errorf("signing key %s; creation said %s", k.str("public_key"), ed.str("public_key"))
	}
	h.do(apiCall{op: "GET /v1/webhooks/{id}", path: "/v1/webhooks/" + id, owner: true, want: 200})
	h.do(apiCall{op: "GET /v1/webhooks/{id}", path: "/v1/webhooks/whk_nope", owner: true, want: 404, code: "webhook_not_found"})
	if p := h.do(apiCall{op: "POST /v1/webhooks/{id}/test", path: "/v1/webhooks/" + id + "/test", owner: true, want: 200}); p.str("outcome") != "delivered" {
		h.t.Errorf("ping: %s", p.body)
	}
	// A delivered event, then a refused one (410): the endpoint pauses.
	a := h.env.NewAgent("hooked", "")
	if _, err := h.env.Svc.Freeze(context.Background(), a.ID); err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.hooks.Pass(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	mu.Lock()
	refuse = true
	mu.Unlock()
	if p := h.do(apiCall{op: "POST /v1/webhooks/{id}/test", path: "/v1/webhooks/" + id + "/test", owner: true, want: 200}); p.str("outcome") != "failed" || p.json["status_code"] != float64(410) {
		h.t.Errorf("refused ping: %s", p.body)
	}
	b := h.env.NewAgent("hooked2", "")
	if _, err := h.env.Svc.Freeze(context.Background(), b.ID); err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.hooks.Pass(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	if w := h.do(apiCall{op: "GET /v1/webhooks/{id}", path: "/v1/webhooks/" + id, owner: true, want: 200}); w.str("status") != "paused" {
		h.t.Errorf("after a 410: %s", w.body)
	}
	d := h.do(apiCall{op: "GET /v1/webhooks/{id}/deliveries", path: "/v1/webhooks/" + id + "/deliveries", owner: true, want: 200})
	if ds, _ := d.json["deliveries"].([]any); len(ds) != 4 {
		h.t.Errorf("deliveries: %s", d.body)
	}
	h.do(apiCall{op: "GET /v1/webhooks/{id}/deliveries", path: "/v1/webhooks/" + id + "/deliveries?limit=1", owner: true, want: 200})
	h.do(apiCall{op: "GET /v1/webhooks/{id}/deliveries", path: "/v1/webhooks/" + id + "/deliveries?before=x", owner: true, want: 400, code: "invalid_request"})
	h.do(apiCall{op: "GET /v1/webhooks/{id}/deliveries", path: "/v1/webhooks/whk_nope/deliveries", owner: true, want: 404, code: "webhook_not_found"})
	h.do(apiCall{op: "POST /v1/webhooks/{id}/resume", path: "/v1/webhooks/" + id + "/resume", body: `{"skip":true}`, owner: true, want: 200})
	h.do(apiCall{op: "POST /v1/webhooks/{id}/resume", path: "/v1/webhooks/" + id + "/resume", owner: true, want: 200})
	h.do(apiCall{op: "POST /v1/webhooks/{id}/resume", path: "/v1/webhooks/whk_nope/resume", owner: true, want: 404, code: "webhook_not_found"})
	h.do(apiCall{op: "POST /v1/webhooks/{id}/test", path: "/v1/webhooks/whk_nope/test", owner: true, want: 404, code: "webhook_not_found"})
	h.do(apiCall{op: "DELETE /v1/webhooks/{id}", path: "/v1/webhooks/" + id, owner: true, want: 200})
	h.do(apiCall{op: "DELETE /v1/webhooks/{id}", path: "/v1/webhooks/" + id, owner: true, want: 404, code: "webhook_not_found"})
}

// cosigned drives the co-signing operations: a 2of2 agent's key
// generation, its recovery blob, and an x402 spend co-signed and finished.
func (h *apiHarness) cosigned(x402Body string) {
	h.t.Helper()
	key := testKey(h.t, "cosigner")
	h.do(apiCall{op: "POST /v1/agents", owner: true, want: 201,
		body: `{"name":"cosigned","identity_address":"` + addressOf(key) + `","custody":"2of2","mandate":{"per_tx_auto":"1","per_tx_max":"5","daily":"50"}}`})
	h.do(apiCall{op: "POST /v1/agents", owner: true, want: 400, code: "invalid_request",
		body: `{"name":"custodian","identity_address":"` + addressOf(testKey(h.t, "custodian")) + `","custody":"3of5"}`})
	// Before its key exists, a signing rail is refused.
	h.do(apiCall{op: "POST /v1/agent/spends", agent: key, body: x402Body, want: 409, code: "cosign_not_ready"})
	nonce := make([]byte, 32)
	rand.Read(nonce)
	id := h.do(apiCall{op: "GET /v1/agents/{ref}", path: "/v1/agents/cosigned", owner: true, want: 200}).str("id")
	kg, err := cosign.NewKeygen(cosign.RoleAgent, cosign.KeygenSessionID(id, nonce))
	if err != nil {
		h.t.Fatal(err)
	}
	msg, err := kg.Start()
	if err != nil {
		h.t.Fatal(err)
	}
	keygen := func(m []byte, want int, code string) *apiAnswer {
		return h.do(apiCall{op: "POST /v1/agents/{ref}/cosign/keygen", path: "/v1/agents/cosigned/cosign/keygen", owner: true, want: want, code: code,
			body: `{"message":"` + base64.StdEncoding.EncodeToString(m) + `"}`})
	}
	keygen([]byte("not a message"), 400, "cosign_message_invalid")
	for {
		a := keygen(msg, 200, "")
		if a.json["done"] == true {
			break
		}
		in, _ := base64.StdEncoding.DecodeString(a.str("message"))
		if msg, err = kg.Handle(in); err != nil || msg == nil {
			h.t.Fatalf("agent keygen: %v", err)
		}
	}
	share, err := kg.Share()
	if err != nil {
		h.t.Fatal(err)
	}
	keygen(msg, 409, "cosign_custody_mismatch")
	h.do(apiCall{op: "GET /v1/agents/{ref}/cosign/recovery", path: "/v1/agents/cosigned/cosign/recovery", owner: true, want: 409, code: "cosign_not_ready"})
	blob := `{"public_key":"` + base64.StdEncoding.EncodeToString(make([]byte, 32)) + `","ciphertext":"` + base64.StdEncoding.EncodeToString([]byte("sealed elsewhere")) + `"}`
	h.do(apiCall{op: "POST /v1/agents/{ref}/cosign/recovery", path: "/v1/agents/cosigned/cosign/recovery", owner: true, body: blob, want: 200})
	h.do(apiCall{op: "POST /v1/agents/{ref}/cosign/recovery", path: "/v1/agents/alpha/cosign/recovery", owner: true, body: blob, want: 409, code: "cosign_custody_mismatch"})
	h.do(apiCall{op: "GET /v1/agents/{ref}/cosign/recovery", path: "/v1/agents/cosigned/cosign/recovery", owner: true, want: 200})

	sp := h.do(apiCall{op: "POST /v1/agent/spends", agent: key, body: x402Body, want: 201})
	cs, _ := sp.json["cosign"].(map[string]any)
	if cs == nil || sp.json["rail_data"] != nil {
		h.t.Fatalf("co-signed x402 spend: %s", sp.body)
	}
	spendID := sp.str("spend_id")
	var digest [32]byte
	copy(digest[:], common0x(cs["digest"].(string)))
	s, err := cosign.NewAgentSigner(share, cosign.SignBinding{AgentID: id, SpendID: spendID, Digest: digest})
	if err != nil {
		h.t.Fatal(err)
	}
	m1, err := s.Start()
	if err != nil {
		h.t.Fatal(err)
	}
	octet := http.Header{"Content-Type": {"application/octet-stream"}}
	finish := func(sig string, want int, code string) *apiAnswer {
		return h.do(apiCall{op: "POST /v1/agent/spends/{id}/cosign/finish", path: "/v1/agent/spends/" + spendID + "/cosign/finish", agent: key,
			body: `{"signature":"` + sig + `"}`, want: want, code: code})
	}
	finish("0x"+strings.Repeat("00", 65), 409, "cosign_not_ready")
	m2 := h.do(apiCall{op: "POST /v1/agent/spends/{id}/cosign", path: "/v1/agent/spends/" + spendID + "/cosign", agent: key, body: string(m1), header: octet, want: 200})
	h.do(apiCall{op: "POST /v1/agent/spends/{id}/cosign", path: "/v1/agent/spends/" + spendID + "/cosign", agent: key, body: string(m1), header: octet, want: 409, code: "cosign_session_used"})
	if _, err := s.Handle(m2.body); err != nil {
		h.t.Fatalf("agent on m2: %v", err)
	}
	sig, err := s.Signature()
	if err != nil {
		h.t.Fatal(err)
	}
	finish("0x"+strings.Repeat("11", 65), 400, "cosign_signature_invalid")
	if done := finish("0x"+hex.EncodeToString(sig[:]), 200, ""); done.json["rail_data"] == nil {
		h.t.Errorf("finished x402 spend carries no payment: %s", done.body)
	}
	h.refreshed(id, share, blob)
}

// refreshed runs a share refresh of the co-signed agent: the refresh
// rounds, the check signature with the new pair, and the finish that
// switches shares (refused without the new recovery copy, with a bad
// signature, or before the check).
func (h *apiHarness) refreshed(id string, share *cosign.Share, blob string) {
	h.t.Helper()
	nonce := make([]byte, 32)
	rand.Read(nonce)
	sid := cosign.RefreshSessionID(id, share.PublicKey(), nonce)
	rf, err := cosign.NewRefresh(share, sid)
	if err != nil {
		h.t.Fatal(err)
	}
	msg, err := rf.Start()
	if err != nil {
		h.t.Fatal(err)
	}
	call := func(op, path string, body string, want int, code string) *apiAnswer {
		return h.do(apiCall{op: op, path: path, owner: true, want: want, code: code, body: body})
	}
	const base = "/v1/agents/cosigned/cosign/refresh"
	b64 := func(m []byte) string { return `{"message":"` + base64.StdEncoding.EncodeToString(m) + `"}` }
	call("POST /v1/agents/{ref}/cosign/refresh", base, b64([]byte("not a message")), 400, "cosign_message_invalid")
	call("POST /v1/agents/{ref}/cosign/refresh", "/v1/agents/alpha/cosign/refresh", b64(msg), 409, "cosign_custody_mismatch")
	call("POST /v1/agents/{ref}/cosign/refresh/commit", base+"/commit", b64(msg), 409, "cosign_not_ready")
	var epoch int64
	for {
		a := call("POST /v1/agents/{ref}/cosign/refresh", base, b64(msg), 200, "")
		if a.json["done"] == true {
			epoch = int64(a.json["epoch"].(float64))
			break
		}
		in, _ := base64.StdEncoding.DecodeString(a.str("message"))
		if msg, err = rf.Handle(in); err != nil || msg == nil {
			h.t.Fatalf("agent refresh: %v", err)
		}
	}
	fresh, err := rf.Share()
	if err != nil {
		h.t.Fatal(err)
	}
	finish := func(body string, want int, code string) *apiAnswer {
		return call("POST /v1/agents/{ref}/cosign/refresh/finish", base+"/finish", body, want, code)
	}
	zero := `{"signature":"0x` + strings.Repeat("11", 65) + `"}`
	finish(zero, 409, "cosign_not_ready") // no check signed yet
	s, err := cosign.NewAgentSigner(fresh, cosign.RefreshCheck(id, epoch, sid))
	if err != nil {
		h.t.Fatal(err)
	}
	m1, err := s.Start()
	if err != nil {
		h.t.Fatal(err)
	}
	m2 := call("POST /v1/agents/{ref}/cosign/refresh/commit", base+"/commit", b64(m1), 200, "")
	call("POST /v1/agents/{ref}/cosign/refresh/commit", base+"/commit", b64(m1), 409, "cosign_session_used")
	in, _ := base64.StdEncoding.DecodeString(m2.str("message"))
	if _, err := s.Handle(in); err != nil {
		h.t.Fatalf("agent on the check's m2: %v", err)
	}
	sig, err := s.Signature()
	if err != nil {
		h.t.Fatal(err)
	}
	finish(zero, 400, "cosign_signature_invalid")
	good := `"signature":"0x` + hex.EncodeToString(sig[:]) + `"`
	finish("{"+good+"}", 400, "invalid_request") // the agent has a recovery copy: a new one is due
	done := finish("{"+good+`,"recovery":`+blob+"}", 200, "")
	if done.str("address") != share.Address().Hex() || done.json["epoch"] != float64(epoch) {
		h.t.Errorf("refresh finish: %s", done.body)
	}
}

func common0x(s string) []byte {
	b, _ := hex.DecodeString(strings.TrimPrefix(s, "0x"))
	return b
}
