package e2e

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/internal/app"
)

// TestPortalGuardsOnTheRealServer: the portal's pages as `purser serve`
// wires them, behind internal/owners: no session → sign-in; the owner
// token and agent signatures open no page; a state change from another
// origin or host, or without the CSRF token, is refused; the API keeps
// its JSON answers beside the pages.
func TestPortalGuardsOnTheRealServer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, err := app.Start(context.Background(), app.Config{DataDir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	n := newNode(t, "http://"+srv.Addr(), dir)
	key := n.newAgent(t, "bot", `{"daily":"10"}`)
	origin := srv.Owners().PublicURL()
	host := strings.TrimPrefix(origin, "http://")
	client := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path string, body url.Values, prep func(r *http.Request)) (*http.Response, string) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			rd = strings.NewReader(body.Encode())
		}
		req, _ := http.NewRequest(method, "http://"+srv.Addr()+path, rd)
		req.Host = host
		req.Header.Set("Accept", "text/html")
		if body != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if prep != nil {
			prep(req)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for _, path := range []string{"/", "/agents", "/approvals", "/audit"} {
		resp, _ := do(http.MethodGet, path, nil, nil)
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/signin") {
			t.Errorf("GET %s without a session: %d %q", path, resp.StatusCode, resp.Header.Get("Location"))
		}
		resp, body := do(http.MethodGet, path, nil, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+n.token) })
		if resp.StatusCode == http.StatusOK || strings.Contains(body, "bot") {
			t.Errorf("GET %s with the owner token: %d (the token is for /v1)", path, resp.StatusCode)
		}
		nonce, _ := agentauth.NewNonce()
		signed, err := agentauth.Sign(key, n.domain(t), http.MethodGet, path, nil, nonce, time.Now().Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		resp, body = do(http.MethodGet, path, nil, func(r *http.Request) { signed.Apply(r.Header) })
		if resp.StatusCode == http.StatusOK || strings.Contains(body, "bot") {
			t.Errorf("GET %s with an agent signature: %d", path, resp.StatusCode)
		}
	}
	a, err := n.owner.Agent(context.Background(), "bot")
	if err != nil {
		t.Fatal(err)
	}
	for name, prep := range map[string]func(r *http.Request){
		"foreign origin": func(r *http.Request) { r.Header.Set("Origin", "http://evil.example") },
		"foreign host":   func(r *http.Request) { r.Host = "evil.example"; r.Header.Set("Origin", "http://evil.example") },
		"no csrf token":  func(r *http.Request) { r.Header.Set("Origin", origin) },
	} {
		resp, _ := do(http.MethodPost, "/agents/"+a.ID+"/freeze", url.Values{}, prep)
		if resp.StatusCode < 400 {
			t.Errorf("POST freeze, %s: %d", name, resp.StatusCode)
		}
	}
	if got, _ := n.owner.Agent(context.Background(), "bot"); got.Status != "active" {
		t.Errorf("the agent is %s after refused freezes", got.Status)
	}
	// The API beside the pages: unknown /v1 paths still answer JSON.
	resp, body := do(http.MethodGet, "/v1/nope", nil, nil)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `"code":"not_found"`) {
		t.Errorf("GET /v1/nope: %d %s", resp.StatusCode, body)
	}
	resp, body = do(http.MethodGet, "/signin", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Sign in with a passkey") ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Errorf("GET /signin: %d", resp.StatusCode)
	}
}
