package sdk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/app"
	"github.com/purserhq/purser/sdk"
)

// vaultUpstream is an API that checks its key (X-Api-Key, any of keys)
// and echoes what it received: method, path, query, body and the
// Authorization header it saw. /redirect answers 302 to another host.
func vaultUpstream(t *testing.T, keys ...string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok := false
		for _, k := range keys {
			ok = ok || r.Header.Get("X-Api-Key") == k
		}
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"bad key"}`)
			return
		}
		switch r.URL.Path {
		case "/api/redirect":
			w.Header().Set("Location", "https://elsewhere.example/landing")
			w.WriteHeader(http.StatusFound)
			return
		case "/api/missing":
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, "no such thing")
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"method": r.Method, "path": r.URL.Path, "query": r.URL.RawQuery,
			"body": string(body), "authorization": r.Header.Get("Authorization"), "ct": r.Header.Get("Content-Type")})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// tap records every byte Purser answered the agent, to search for the
// secret.
type tap struct {
	mu  sync.Mutex
	all bytes.Buffer
}

func (tp *tap) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	tp.mu.Lock()
	resp.Header.Write(&tp.all)
	tp.all.Write(b)
	tp.mu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}

// TestVaultAndProxy drives the vault's owner calls and the agent's
// proxied calls through the SDK against a real in-process server and a
// real upstream that checks its key: put, list, show, rotate (the old
// secret kept for the grace), grant, tools, the agent's grants, Proxy
// (query kept, the agent's Authorization not sent, the upstream's 404
// and 302 returned as they are), ProxyTransport under an unmodified
// http.Client, a refusal, an approval carried out by resending with the
// same Idempotency-Key, revocation, delete. No byte the agent received
// holds a secret.
func TestVaultAndProxy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	srv, err := app.Start(ctx, app.Config{DataDir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	url := "http://" + srv.Addr()
	tok, err := os.ReadFile(filepath.Join(dir, "owner.token"))
	if err != nil {
		t.Fatal(err)
	}
	owner, err := sdk.NewOwner(url, strings.TrimSpace(string(tok)))
	if err != nil {
		t.Fatal(err)
	}
	const secret, secret2 = "sk_test_sdk_vault_0123456789", "sk_test_sdk_vault_rotated_987"
	up := vaultUpstream(t, secret, secret2)

	key, err := sdk.GenerateKey(filepath.Join(t.TempDir(), "agent.key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := owner.CreateAgent(ctx, sdk.CreateAgentRequest{Name: "searcher", IdentityAddress: key.Address(),
		Mandate: json.RawMessage(`{"per_tx_auto":"0.005","per_tx_max":"1","daily":"5"}`)}); err != nil {
		t.Fatal(err)
	}
	cr, err := owner.PutCredential(ctx, sdk.PutCredentialRequest{Name: "search", Upstream: up.URL + "/api", Inject: "header:X-Api-Key={secret}",
		Secret: secret, AllowPrivate: true, Timeout: "10s"})
	if err != nil {
		t.Fatal(err)
	}
	if cr.Name != "search" || cr.Version != 1 || !cr.AllowPrivate {
		t.Fatalf("put: %+v", cr)
	}
	if _, err := owner.PutCredential(ctx, sdk.PutCredentialRequest{Name: "search", Upstream: up.URL, Inject: "header:X-Api-Key={secret}", Secret: secret, AllowPrivate: true}); !sdk.IsCode(err, "credential_exists") {
		t.Fatalf("second put: %v", err)
	}
	// The secret never crosses the network in clear to a public host.
	if _, err := owner.PutCredential(ctx, sdk.PutCredentialRequest{Name: "plain", Upstream: "http://api.example.com", Inject: "header:X-Api-Key={secret}", Secret: secret}); !sdk.IsCode(err, "invalid_request") {
		t.Fatalf("an http upstream without allow_private: %v", err)
	}
	if _, err := owner.PutCredential(ctx, sdk.PutCredentialRequest{Name: "pricey", Upstream: up.URL + "/api", Inject: "header:X-Api-Key={secret}",
		Secret: secret, AllowPrivate: true}); err != nil {
		t.Fatal(err)
	}
	if l, err := owner.Credentials(ctx); err != nil || len(l) != 2 {
		t.Fatalf("credentials: %+v %v", l, err)
	}
	g, err := owner.Grant(ctx, "search", sdk.GrantRequest{Agent: "searcher", Methods: []string{"GET", "POST"}, Paths: []string{"/v1/*"},
		Price: "0.002", Rate: "100/1m", Expires: "24h"})
	if err != nil || g.Status != "active" || g.Price != "0.002" || g.ExpiresAt == nil {
		t.Fatalf("grant: %+v %v", g, err)
	}
	if _, err := owner.Grant(ctx, "pricey", sdk.GrantRequest{Agent: "searcher", Methods: []string{"GET"}, Paths: []string{"/v1/*"}, Price: "0.01"}); err != nil {
		t.Fatal(err)
	}
	if l, err := owner.Grants(ctx, "search"); err != nil || len(l) != 1 || l[0].AgentName != "searcher" {
		t.Fatalf("grants: %+v %v", l, err)
	}
	tl, err := owner.PutTool(ctx, "search", sdk.ToolRequest{Name: "web_search", Description: "search the web", Method: "GET", Path: "/v1/search",
		Schema: json.RawMessage(`{"type":"object","properties":{"q":{"type":"string"}},"required":["q"]}`)})
	if err != nil || tl.Name != "web_search" {
		t.Fatalf("put tool: %+v %v", tl, err)
	}
	if l, err := owner.Tools(ctx, "search"); err != nil || len(l) != 1 {
		t.Fatalf("tools: %+v %v", l, err)
	}
	if c, err := owner.Credential(ctx, "search"); err != nil || len(c.Versions) != 1 || len(c.Grants) != 1 || len(c.Tools) != 1 {
		t.Fatalf("show: %+v %v", c, err)
	}

	rec := &tap{}
	agent, err := sdk.NewAgent(url, key, sdk.WithHTTPClient(&http.Client{Transport: rec, Timeout: time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	ag, err := agent.Grants(ctx)
	if err != nil || len(ag.Grants) != 2 || len(ag.Tools) != 1 || ag.Version == "" {
		t.Fatalf("agent grants: %+v %v", ag, err)
	}
	echo := func(resp *http.Response, err error) map[string]string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("proxied call: %d %s", resp.StatusCode, b)
		}
		var m map[string]string
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if resp.Header.Get(sdk.HeaderSpendID) == "" || resp.Header.Get(sdk.HeaderPrice) == "" {
			t.Errorf("no spend or price header: %v", resp.Header)
		}
		return m
	}
	m := echo(agent.Proxy(ctx, "search", "GET", "/v1/search?q=purser%20docs&n=2", nil,
		http.Header{"Authorization": {"Bearer placeholder"}, "Accept": {"application/json"}}))
	if m["path"] != "/api/v1/search" || m["query"] != "q=purser%20docs&n=2" || m["authorization"] != "" {
		t.Errorf("proxied GET reached the upstream as %v", m)
	}
	// An unmodified http.Client; the host it names is ignored.
	hc := &http.Client{Transport: sdk.ProxyTransport(agent, "search")}
	req, _ := http.NewRequest("POST", "https://api.example.com/v1/items?draft=1", strings.NewReader(`{"name":"x"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer placeholder")
	m = echo(hc.Do(req))
	if m["method"] != "POST" || m["path"] != "/api/v1/items" || m["query"] != "draft=1" || m["body"] != `{"name":"x"}` || m["ct"] != "application/json" || m["authorization"] != "" {
		t.Errorf("transport POST reached the upstream as %v", m)
	}
	if _, err := hc.Post("https://api.example.com/v1/upload", "application/octet-stream", bytes.NewReader(make([]byte, sdk.MaxProxyBody+1))); !errors.Is(err, sdk.ErrProxyBodyTooLarge) {
		t.Errorf("oversized body: %v", err)
	}

	// Outside the grant: a refusal, nothing sent.
	_, err = agent.Proxy(ctx, "search", "DELETE", "/v1/items/1", nil, nil)
	var re *sdk.RefusedError
	if !errors.As(err, &re) || !strings.Contains(strings.Join(re.Reasons, ","), "grant_method_not_allowed") {
		t.Fatalf("DELETE outside the grant: %v", err)
	}
	// A traversal is not served (Purser refuses it, or answers a
	// redirect the SDK does not follow: nothing signed goes elsewhere).
	if resp, err := hc.Get("https://api.example.com/v1/../admin"); err == nil {
		resp.Body.Close()
		if resp.StatusCode < 300 {
			t.Errorf("a traversal was served: %d %s", resp.StatusCode, resp.Request.URL)
		}
	}

	// Above the auto-approve limit: waits; approved, the same request
	// with the same key is carried out.
	idem := http.Header{"Idempotency-Key": {"sdk-vault-approval"}}
	_, err = agent.Proxy(ctx, "pricey", "GET", "/v1/report", nil, idem)
	var ar *sdk.ApprovalRequiredError
	if !errors.As(err, &ar) || ar.SpendID == "" {
		t.Fatalf("pricey call: %v", err)
	}
	if _, err := owner.Approve(ctx, ar.SpendID); err != nil {
		t.Fatal(err)
	}
	m = echo(agent.Proxy(ctx, "pricey", "GET", "/v1/report", nil, idem))
	if m["path"] != "/api/v1/report" {
		t.Errorf("approved call: %v", m)
	}

	// Rotation with a grace: the new secret is used.
	if c, err := owner.RotateCredential(ctx, "search", sdk.RotateCredentialRequest{Secret: secret2, Grace: "1h"}); err != nil || c.Version != 2 {
		t.Fatalf("rotate: %+v %v", c, err)
	}
	echo(agent.Proxy(ctx, "search", "GET", "/v1/after-rotate", nil, nil))

	// Revoked: the next call is refused.
	if g, err := owner.RevokeGrant(ctx, "search", "searcher"); err != nil || g.Status != "revoked" {
		t.Fatalf("revoke: %+v %v", g, err)
	}
	if _, err := agent.Proxy(ctx, "search", "GET", "/v1/search", nil, nil); !errors.As(err, &re) || !strings.Contains(strings.Join(re.Reasons, ","), "grant_revoked") {
		t.Fatalf("after revoke: %v", err)
	}
	if _, err := owner.DeleteTool(ctx, "search", "web_search"); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.DeleteCredential(ctx, "search"); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Credential(ctx, "search"); !sdk.IsCode(err, "credential_not_found") {
		t.Fatalf("deleted credential: %v", err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, s := range []string{secret, secret2} {
		if bytes.Contains(rec.all.Bytes(), []byte(s)) {
			t.Errorf("the agent received a secret")
		}
	}
}

// TestProxyRedirectNotFollowed: an upstream's redirect reaches the agent
// as the upstream's answer; Agent.Proxy does not follow it (it would
// send the signed headers to wherever it points).
func TestProxyRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	srv, err := app.Start(ctx, app.Config{DataDir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	url := "http://" + srv.Addr()
	tok, _ := os.ReadFile(filepath.Join(dir, "owner.token"))
	owner, _ := sdk.NewOwner(url, strings.TrimSpace(string(tok)))
	const secret = "sk_test_redirect_0123456789"
	up := vaultUpstream(t, secret)
	key, _ := sdk.GenerateKey(filepath.Join(t.TempDir(), "agent.key"))
	if _, err := owner.CreateAgent(ctx, sdk.CreateAgentRequest{Name: "r", IdentityAddress: key.Address(), Mandate: json.RawMessage(`{"per_tx_max":"1"}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.PutCredential(ctx, sdk.PutCredentialRequest{Name: "api", Upstream: up.URL + "/api", Inject: "header:X-Api-Key={secret}", Secret: secret, AllowPrivate: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Grant(ctx, "api", sdk.GrantRequest{Agent: "r", Methods: []string{"GET"}, Paths: []string{"/*"}}); err != nil {
		t.Fatal(err)
	}
	agent, _ := sdk.NewAgent(url, key)
	resp, err := agent.Proxy(ctx, "api", "GET", "/redirect", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("redirect: %d %v", resp.StatusCode, resp.Header)
	}
	resp, err = agent.Proxy(ctx, "api", "GET", "/missing", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || string(b) != "no such thing" {
		t.Fatalf("upstream 404: %d %q", resp.StatusCode, b)
	}
}
