package httpapi_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/apiproxy"
)

// checkProxy holds one answer of a proxied call to the spec. An answer
// with Purser-Error is Purser's: its status must be declared, and its
// body is an Error with that code. Any other is the upstream's own, of
// any status and type: the spec must declare its status (or its range)
// with an opaque "*/*" body, and Purser's headers must be on it.
func (h *apiHarness) checkProxy(label, method, opPath string, a *apiAnswer) {
	h.t.Helper()
	op := method + " " + opPath
	h.mu.Lock()
	if h.seen[op] == nil {
		h.seen[op] = map[int]bool{}
	}
	h.seen[op][a.status] = true
	h.mu.Unlock()
	o, _, err := h.o.operation(method, opPath)
	if err != nil {
		h.t.Errorf("%s: %v", label, err)
		return
	}
	responses, _ := o["responses"].(map[string]any)
	if pe := a.header.Get(api.HeaderError); pe != "" {
		media, declared, err := h.o.responseMedia(method, opPath, a.status)
		switch {
		case err != nil:
			h.t.Errorf("%s: %v", label, err)
			return
		case !declared:
			h.t.Errorf("%s → %d %s, a status docs/openapi.yaml does not declare for %s", label, a.status, pe, op)
			return
		case media["application/json"] == "":
			h.t.Errorf("%s → %d: the spec declares no JSON Error for Purser's answer", label, a.status)
			return
		}
		if method == http.MethodHead {
			return // no body
		}
		if err := h.o.validate(media["application/json"], a.body); err != nil {
			h.t.Errorf("%s → %d: Purser's answer is no Error: %v\n%s", label, a.status, err, a.body)
		}
		if a.str("code") != pe {
			h.t.Errorf("%s → %d: Purser-Error %q, body code %q", label, a.status, pe, a.str("code"))
		}
		return
	}
	key := fmt.Sprint(a.status)
	if responses[key] == nil {
		key = fmt.Sprintf("%dXX", a.status/100)
	}
	r, ok := responses[key].(map[string]any)
	if !ok {
		h.t.Errorf("%s → %d from the upstream, a status (and range) docs/openapi.yaml does not declare for %s", label, a.status, op)
		return
	}
	r, _, err = h.o.deref(r, "")
	if err != nil {
		h.t.Errorf("%s: %v", label, err)
		return
	}
	content, _ := r["content"].(map[string]any)
	if _, ok := content["*/*"]; !ok {
		h.t.Errorf("%s → %d from the upstream: the spec's %s does not take an opaque body of any type", label, a.status, key)
	}
	if a.header.Get(api.HeaderSpendID) == "" || a.header.Get(api.HeaderPrice) == "" {
		h.t.Errorf("%s → %d from the upstream without %s or %s: %v", label, a.status, api.HeaderSpendID, api.HeaderPrice, a.header)
	}
}

// vaultAndProxy drives the vault's routes and the proxy: credentials
// (upstreams on 127.0.0.1 with allow_private), grants, tools, the agent's
// grants, proxied calls of every method (served, redirected, refused by
// the upstream, waiting for approval then carried out, repeated), the
// proxy's own refusals, rotation, revocation and deletion.
func (h *apiHarness) vaultAndProxy() {
	h.t.Helper()
	const secret, secret2 = "sk_test_openapiVaultSecret1", "sk_test_openapiVaultSecret2"
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Authorization"); a != "Bearer "+secret && a != "Bearer "+secret2 {
			http.Error(w, "bad key", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/v1/redirect":
			w.Header().Set("Location", "https://elsewhere.example/")
			w.WriteHeader(http.StatusFound)
		case "/v1/forbidden":
			http.Error(w, "not for you", http.StatusForbidden)
		default:
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "%s %s", r.Method, r.URL.Path)
		}
	}))
	defer up.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	put := func(name, upstream string) string {
		return `{"name":"` + name + `","upstream":"` + upstream + `","inject":"header:Authorization=Bearer {secret}","secret":"` + secret + `","allow_private":true,"timeout":"5s"}`
	}
	const vop = "POST /v1/vault"
	c := h.do(apiCall{op: vop, owner: true, body: put("search", up.URL), want: 201})
	if strings.Contains(string(c.body), secret) {
		h.t.Errorf("a credential's answer holds its secret: %s", c.body)
	}
	h.do(apiCall{op: vop, owner: true, body: put("pricey", up.URL+"/v1"), want: 201})
	h.do(apiCall{op: vop, owner: true, body: put("dead", dead.URL), want: 201})
	h.do(apiCall{op: vop, owner: true, body: put("search", up.URL), want: 409, code: "credential_exists"})
	h.do(apiCall{op: vop, owner: true, body: strings.Replace(put("other", up.URL), secret, "short", 1), want: 400, code: "secret_invalid"})
	h.do(apiCall{op: vop, owner: true, body: put("other", "ftp://x.example"), want: 400, code: "invalid_request"})
	h.do(apiCall{op: "GET /v1/vault", owner: true, want: 200})
	h.do(apiCall{op: "GET /v1/vault/{name}", path: "/v1/vault/nope", owner: true, want: 404, code: "credential_not_found"})

	key := testKey(h.t, "vault agent")
	h.do(apiCall{op: "POST /v1/agents", owner: true, want: 201,
		body: `{"name":"vaulter","identity_address":"` + addressOf(key) + `","mandate":{"per_tx_auto":"1","per_tx_max":"5","daily":"50"}}`})
	all := `["GET","HEAD","POST","PUT","PATCH","DELETE","OPTIONS"]`
	grant := func(name, extra string) string {
		return `{"agent":"vaulter","methods":` + all + `,"paths":["/v1/*","/*"]` + extra + `}`
	}
	gop := "POST /v1/vault/{name}/grants"
	h.do(apiCall{op: gop, path: "/v1/vault/search/grants", owner: true, want: 201, body: grant("search", `,"price":"0.01","rate":"1000/1m","expires":"24h"`)})
	h.do(apiCall{op: gop, path: "/v1/vault/pricey/grants", owner: true, want: 201, body: grant("pricey", `,"price_header":"X-Cost","max_price":"2"`)})
	h.do(apiCall{op: gop, path: "/v1/vault/dead/grants", owner: true, want: 201, body: grant("dead", "")})
	h.do(apiCall{op: gop, path: "/v1/vault/search/grants", owner: true, want: 404, code: "agent_not_found", body: `{"agent":"nobody","methods":["GET"],"paths":["/"]}`})
	h.do(apiCall{op: gop, path: "/v1/vault/search/grants", owner: true, want: 400, code: "invalid_request", body: `{"agent":"vaulter","methods":["GET"],"paths":["/a/../b"]}`})
	h.do(apiCall{op: gop, path: "/v1/vault/nope/grants", owner: true, want: 404, code: "credential_not_found", body: `{"agent":"vaulter","methods":["GET"],"paths":["/"]}`})
	h.do(apiCall{op: "GET /v1/vault/{name}/grants", path: "/v1/vault/search/grants", owner: true, want: 200})

	top := "POST /v1/vault/{name}/tools"
	h.do(apiCall{op: top, path: "/v1/vault/search/tools", owner: true, want: 201,
		body: `{"name":"search_items","description":"Find an item.","method":"GET","path":"/v1/items/{id}","price":"0.05"}`})
	h.do(apiCall{op: top, path: "/v1/vault/search/tools", owner: true, want: 201,
		body: `{"name":"create_item","description":"Create an item.","method":"POST","path":"/v1/items","body":"json",` +
			`"schema":{"type":"object","properties":{"title":{"type":"string"}},"required":["title"]}}`})
	h.do(apiCall{op: top, path: "/v1/vault/pricey/tools", owner: true, want: 409, code: "tool_exists",
		body: `{"name":"search_items","description":"Find.","method":"GET","path":"/v1/x"}`})
	h.do(apiCall{op: top, path: "/v1/vault/search/tools", owner: true, want: 400, code: "invalid_request",
		body: `{"name":"limits","description":"Mine.","method":"GET","path":"/v1/x"}`})
	h.do(apiCall{op: "GET /v1/vault/{name}/tools", path: "/v1/vault/search/tools", owner: true, want: 200})
	h.do(apiCall{op: "POST /v1/vault/{name}/rotate", path: "/v1/vault/search/rotate", owner: true, want: 200, body: `{"secret":"` + secret2 + `","grace":"1h"}`})
	h.do(apiCall{op: "POST /v1/vault/{name}/rotate", path: "/v1/vault/search/rotate", owner: true, want: 400, code: "secret_invalid", body: `{"secret":""}`})
	h.do(apiCall{op: "POST /v1/vault/{name}/rotate", path: "/v1/vault/nope/rotate", owner: true, want: 404, code: "credential_not_found", body: `{"secret":"` + secret2 + `"}`})
	if g := h.do(apiCall{op: "GET /v1/vault/{name}", path: "/v1/vault/search", owner: true, want: 200}); len(asList(g.json["versions"])) != 2 ||
		len(asList(g.json["grants"])) != 1 || len(asList(g.json["tools"])) != 2 {
		h.t.Errorf("a credential with two versions, one grant and two tools: %s", g.body)
	}
	if g := h.do(apiCall{op: "GET /v1/agent/grants", agent: key, want: 200}); len(asList(g.json["grants"])) != 3 || len(asList(g.json["tools"])) != 2 {
		h.t.Errorf("the agent's grants: %s", g.body)
	}

	// Proxied calls, every method.
	proxy := func(method, target, idem string, want int, code string) *apiAnswer {
		h.t.Helper()
		c := apiCall{op: method + " /v1/proxy/{name}/{path}", path: target, agent: key, want: want, code: code}
		if method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
			c.body = `{"title":"x"}`
		}
		if idem != "" {
			c.header = http.Header{api.HeaderIdempotencyKey: {idem}}
		}
		return h.do(c)
	}
	for _, m := range anyMethod {
		if r := proxy(m, "/v1/proxy/search/v1/items?q=1", "", 200, ""); r.header.Get(api.HeaderPrice) != "0.01" ||
			(m != http.MethodHead && string(r.body) != m+" /v1/items") {
			h.t.Errorf("%s through the proxy: %s %v", m, r.body, r.header)
		}
		proxy(m, "/v1/proxy/search/v1/redirect", "", 302, "")
		if r := proxy(m, "/v1/proxy/search/v1/forbidden", "", 403, ""); r.header.Get(api.HeaderPrice) != "0" {
			h.t.Errorf("an upstream's 403 is not captured: %v", r.header)
		}
		// Above the mandate's auto-approve: an owner approves, the same
		// request with the same key is carried out, and only once.
		idem := "idem-" + m
		w := proxy(m, "/v1/proxy/pricey/items", idem, 202, "approval_required")
		id := w.header.Get(api.HeaderSpendID)
		if d, _ := w.json["details"].(map[string]any); m != http.MethodHead && (d == nil || d["spend_id"] != id || id == "") {
			h.t.Errorf("approval_required without its spend: %s %v", w.body, w.header)
		}
		h.do(apiCall{op: "POST /v1/approvals/{id}/approve", path: "/v1/approvals/" + id + "/approve", owner: true, want: 200})
		if r := proxy(m, "/v1/proxy/pricey/items", idem, 200, ""); r.header.Get(api.HeaderSpendID) != id || r.header.Get(api.HeaderPrice) != "2" {
			h.t.Errorf("the approved call: %v", r.header)
		}
		proxy(m, "/v1/proxy/pricey/items", idem, 409, "call_already_made")
		proxy(m, "/v1/proxy/search/v1/%2e%2e/admin", "", 400, "proxy_path_invalid")
		proxy(m, "/v1/proxy/nope/v1/items", "", 404, "credential_not_found")
		proxy(m, "/v1/proxy/dead/v1/items", "", 502, "upstream_unreachable")
	}
	h.do(apiCall{op: "GET /v1/proxy/{name}/{path}", path: "/v1/proxy/search/v1/items", want: 401, code: "auth_missing"})
	h.do(apiCall{op: "GET /v1/proxy/{name}/{path}", path: "/v1/proxy/search/v1/items", owner: true, want: 401, code: "auth_missing"})
	h.do(apiCall{op: "POST /v1/proxy/{name}/{path}", path: "/v1/proxy/search/v1/items", agent: key, body: strings.Repeat("x", apiproxy.MaxBody+1), want: 413, code: "body_too_large"})

	// Revocation, deletion.
	rop := "POST /v1/vault/{name}/grants/{agent}/revoke"
	h.do(apiCall{op: rop, path: "/v1/vault/search/grants/vaulter/revoke", owner: true, want: 200})
	h.do(apiCall{op: rop, path: "/v1/vault/search/grants/alpha/revoke", owner: true, want: 404, code: "grant_not_found"})
	if r := proxy("GET", "/v1/proxy/search/v1/items", "", 403, "spend_denied"); !strings.Contains(string(r.body), "grant_revoked") {
		h.t.Errorf("a call after revocation: %s", r.body)
	}
	dop := "DELETE /v1/vault/{name}/tools/{tool}"
	h.do(apiCall{op: dop, path: "/v1/vault/search/tools/search_items", owner: true, want: 200})
	h.do(apiCall{op: dop, path: "/v1/vault/search/tools/search_items", owner: true, want: 404, code: "tool_not_found"})
	h.do(apiCall{op: "DELETE /v1/vault/{name}", path: "/v1/vault/search", owner: true, want: 200})
	h.do(apiCall{op: "DELETE /v1/vault/{name}", path: "/v1/vault/search", owner: true, want: 404, code: "credential_not_found"})
	h.vault.Wait()
}
