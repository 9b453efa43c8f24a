package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/app"
)

// TestProxyStripeMock calls Stripe's own API mock, which checks its key,
// through the proxy: an agent creates, lists and retrieves customers
// with a key it never sees, each call a captured spend at the grant's
// price; a wrong key in the vault gets stripe-mock's 401 (passed through,
// scrubbed, the hold released), and an agent without a grant is refused
// before stripe-mock is called.
func TestProxyStripeMock(t *testing.T) {
	t.Parallel()
	stripe, stripeCalls := countingFront(t, startStripeMock(t))
	logs := &lockedBuffer{}
	n := startApp(t, app.Config{LogLevel: "debug", Stderr: logs})
	const key = "sk_test_4eC39HqLyjWDarjtT1zdp7dcPurser" // a valid-looking test mode key
	mustOwner(t, n, "POST", "/v1/vault", api.PutCredentialRequest{Name: "stripe", Upstream: stripe,
		Inject: "header:Authorization=Bearer {secret}", Secret: key, AllowPrivate: true}, 201, nil)
	ag := n.proxyAgent(t, n.newAgent(t, "biller", `{"per_tx_max":"1","daily":"1"}`))
	mustOwner(t, n, "POST", "/v1/vault/stripe/grants", api.GrantRequest{Agent: "biller", Methods: []string{"POST", "GET"},
		Paths: []string{"/v1/customers", "/v1/customers/*"}, Price: "0.003"}, 201, nil)
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}

	var spends []string
	paid := func(what string, a answer, h http.Header) {
		t.Helper()
		if a.status != 200 || h.Get(api.HeaderError) != "" || h.Get(api.HeaderPrice) != "0.003" || h.Get(api.HeaderSpendID) == "" {
			t.Fatalf("%s: %s %v; want stripe-mock's 200 at 0.003", what, a, h)
		}
		spends = append(spends, h.Get(api.HeaderSpendID))
	}
	a, h := ag.call(t, "POST", "/v1/proxy/stripe/v1/customers", []byte(url.Values{"email": {"ada@example.com"}}.Encode()), form)
	paid("create a customer", a, h)
	var cus struct {
		ID     string `json:"id"`
		Object string `json:"object"`
	}
	if err := json.Unmarshal(a.body, &cus); err != nil || cus.Object != "customer" || cus.ID == "" {
		t.Fatalf("create a customer: not a customer: %s", a)
	}
	a, h = ag.call(t, "GET", "/v1/proxy/stripe/v1/customers?limit=3", nil, nil)
	paid("list customers", a, h)
	var list struct {
		Object string            `json:"object"`
		Data   []json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(a.body, &list); err != nil || list.Object != "list" {
		t.Fatalf("list customers: not a list: %s", a)
	}
	a, h = ag.call(t, "GET", "/v1/proxy/stripe/v1/customers/"+cus.ID, nil, nil)
	paid("retrieve the customer", a, h)
	if !strings.Contains(string(a.body), `"object": "customer"`) && !strings.Contains(string(a.body), `"object":"customer"`) {
		t.Fatalf("retrieve the customer: %s", a)
	}
	waitSettled(t, n)
	for _, id := range spends {
		if sp := ownerSpend(t, n, id); sp.Status != "captured" || sp.Rail != "apiproxy" || sp.Captured == nil || *sp.Captured != "0.003" {
			t.Fatalf("spend %s: %+v; want captured 0.003 on rail apiproxy", id, sp)
		}
	}
	if l := n.limits(t, "biller"); micro(t, l.DailyUsed) != 9000 {
		t.Fatalf("daily used %s, want 0.009 (three calls)", l.DailyUsed)
	}

	// A key stripe-mock refuses: its 401 is the agent's answer, with the
	// key it echoes scrubbed, and the call is not paid.
	const wrong = "pk_wrong_0123456789abcdefXYZ"
	mustOwner(t, n, "POST", "/v1/vault/stripe/rotate", api.RotateCredentialRequest{Secret: wrong}, 200, nil)
	a, h = ag.call(t, "GET", "/v1/proxy/stripe/v1/customers?limit=3", nil, nil)
	if a.status != 401 || h.Get(api.HeaderError) != "" || !strings.Contains(string(a.body), "invalid_request_error") {
		t.Fatalf("with a wrong key: %s %v; want stripe-mock's own 401", a, h)
	}
	if strings.Contains(string(a.body), wrong) || !strings.Contains(string(a.body), "[REDACTED]") {
		t.Fatalf("stripe-mock echoes the key it was given; the proxy must scrub it: %s", a)
	}
	if h.Get(api.HeaderPrice) != "0" {
		t.Fatalf("with a wrong key: Purser-Price %q, want 0", h.Get(api.HeaderPrice))
	}
	waitSettled(t, n)
	if sp := ownerSpend(t, n, h.Get(api.HeaderSpendID)); sp.Status != "released" || !spendHas(sp, "upstream_not_served") {
		t.Fatalf("the refused call's spend: %s %s; want released upstream_not_served", sp.Status, joinReasons(sp))
	}

	// Another agent, no grant: refused by Purser, stripe-mock not called
	// (it would have answered 401 with the wrong key now in the vault).
	mustOwner(t, n, "POST", "/v1/vault/stripe/rotate", api.RotateCredentialRequest{Secret: key}, 200, nil)
	other := n.proxyAgent(t, n.newAgent(t, "stranger", `{"per_tx_max":"1","daily":"1"}`))
	before := stripeCalls.Load()
	a, h = other.call(t, "POST", "/v1/proxy/stripe/v1/customers", []byte("email=eve@example.com"), form)
	if !a.refusedFor(h, "grant_missing") {
		t.Fatalf("without a grant: %s; want 403 spend_denied grant_missing", a)
	}
	if got := stripeCalls.Load() - before; got != 0 {
		t.Fatalf("without a grant, stripe-mock was called %d times", got)
	}
	if stripeCalls.Load() != 4 {
		t.Fatalf("stripe-mock saw %d calls, want 4 (three paid, one refused by its key check)", stripeCalls.Load())
	}
	for what, b := range map[string][]byte{"biller": ag.received(), "stranger": other.received(), "log": logs.Bytes()} {
		for _, s := range []string{key, wrong} {
			if strings.Contains(string(b), s) {
				t.Errorf("a stripe key reached the %s", what)
			}
		}
	}
	n.verify(t)
}
