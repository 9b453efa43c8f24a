package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/app"
)

// keyUpstream is an API that checks its key (X-Api-Key) and answers
// what it was asked; calls counts the calls it served.
type keyUpstream struct {
	srv   *httptest.Server
	calls atomic.Int64
}

func newKeyUpstream(t *testing.T, key string) *keyUpstream {
	u := &keyUpstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Api-Key") != key {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"bad key"}`)
			return
		}
		u.calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		if c := r.URL.Query().Get("cost"); c != "" {
			w.Header().Set("X-Cost-USD", c)
		}
		json.NewEncoder(w).Encode(map[string]string{"method": r.Method, "path": r.URL.Path, "q": r.URL.Query().Get("q"), "body": string(body)})
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func owner(t testing.TB, n *node, method, path string, body any) answer {
	t.Helper()
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	return send(t, method, n.url+path, b, bearer(n.token))
}

func TestProxyPaysPerCallWithinTheMandate(t *testing.T) {
	n := startApp(t, app.Config{})
	const secret = "sk_test_0123456789abcdef"
	up := newKeyUpstream(t, secret)
	key := n.newAgent(t, "searcher", `{"per_tx_max":"1","daily":"0.01"}`)
	dom := n.domain(t)

	if a := owner(t, n, "POST", "/v1/vault", api.PutCredentialRequest{Name: "search", Upstream: up.srv.URL + "/api",
		Inject: "header:X-Api-Key={secret}", Secret: secret, AllowPrivate: true}); a.status != 201 {
		t.Fatalf("vault put: %s", a)
	} else if strings.Contains(string(a.body), secret) {
		t.Fatalf("vault put answered the secret: %s", a)
	}
	if a := owner(t, n, "POST", "/v1/vault/search/grants", api.GrantRequest{Agent: "searcher", Methods: []string{"GET", "POST"},
		Paths: []string{"/v1/search", "/v1/items/*"}, Price: "0.002"}); a.status != 201 {
		t.Fatalf("grant: %s", a)
	}
	call := func(method, pq string, body []byte) (answer, http.Header) {
		t.Helper()
		url := n.url + "/v1/proxy/search" + pq
		req, _ := http.NewRequest(method, url, strings.NewReader(string(body)))
		signHeaders(t, dom, key, method, "/v1/proxy/search"+pq, body, time.Now().Add(time.Minute))(req.Header)
		resp, err := rawHTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		a := answer{status: resp.StatusCode, body: raw}
		var e struct {
			Code    string         `json:"code"`
			Details map[string]any `json:"details"`
		}
		if json.Unmarshal(raw, &e) == nil {
			a.code, a.details = e.Code, e.Details
		}
		return a, resp.Header
	}
	a, h := call("GET", "/v1/search?q=cats", nil)
	if a.status != 200 || !strings.Contains(string(a.body), `"path":"/api/v1/search"`) || !strings.Contains(string(a.body), `"q":"cats"`) {
		t.Fatalf("proxied GET: %s", a)
	}
	if h.Get(api.HeaderPrice) != "0.002" || h.Get(api.HeaderSpendID) == "" || h.Get(api.HeaderError) != "" {
		t.Fatalf("proxied GET headers: %v", h)
	}
	if strings.Contains(string(a.body), secret) {
		t.Fatal("the answer carries the secret")
	}
	a, _ = call("POST", "/v1/items/42", []byte(`{"x":1}`))
	if a.status != 200 || !strings.Contains(string(a.body), `{\"x\":1}`) {
		t.Fatalf("proxied POST: %s", a)
	}
	// Outside the grant: refused, recorded, not sent.
	before := up.calls.Load()
	if a, h = call("DELETE", "/v1/items/42", nil); a.status != 403 || a.code != "spend_denied" || h.Get(api.HeaderError) != "spend_denied" {
		t.Fatalf("DELETE outside the grant: %s", a)
	}
	if a, _ = call("GET", "/v1/admin", nil); a.status != 403 || !strings.Contains(string(a.body), "grant_path_not_allowed") {
		t.Fatalf("path outside the grant: %s", a)
	}
	if a, _ = call("GET", "/v1/items/../admin", nil); a.status != 400 || a.code != "proxy_path_invalid" {
		t.Fatalf("traversal: %s", a)
	}
	if up.calls.Load() != before {
		t.Fatal("a refused call reached the upstream")
	}
	// The daily budget (0.01) buys five calls; two were made.
	var wg sync.WaitGroup
	var ok, refused atomic.Int64
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, _ := call("GET", "/v1/search?q=dogs", nil)
			switch {
			case a.status == 200:
				ok.Add(1)
			case a.status == 403 && strings.Contains(string(a.body), "daily_budget_exceeded"):
				refused.Add(1)
			default:
				t.Errorf("concurrent call: %s", a)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 3 || refused.Load() != 7 {
		t.Fatalf("budget for 5 calls, 2 made: %d more paid, %d refused; want 3 and 7", ok.Load(), refused.Load())
	}
	// Revocation stops the next call.
	if a := owner(t, n, "POST", "/v1/vault/search/grants/searcher/revoke", nil); a.status != 200 {
		t.Fatalf("revoke: %s", a)
	}
	if a, _ = call("GET", "/v1/search?q=x", nil); a.status != 403 || !strings.Contains(string(a.body), "grant_revoked") {
		t.Fatalf("after revoke: %s", a)
	}
	waitSettled(t, n)
	l := n.limits(t, "searcher")
	if got := l.DailyUsed; got != "0.01" {
		t.Fatalf("daily used = %s, want 0.01 (five captured calls)", got)
	}
	n.verify(t)
}

// waitSettled waits until no spend of n is unknown (proxied calls settle
// just after their answer).
func waitSettled(t testing.TB, n *node) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		a := owner(t, n, "GET", "/v1/spends?status=unknown", nil)
		if a.status == 200 && !strings.Contains(string(a.body), `"spend_id"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("spends still unknown: %s", a)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestProxyRefusesPrivateUpstreams: a credential whose upstream is (or
// resolves to) a loopback address is refused at connect time unless the
// owner allowed private addresses for it; nothing reaches the upstream and
// the call's hold is released.
func TestProxyRefusesPrivateUpstreams(t *testing.T) {
	n := startApp(t, app.Config{})
	const secret = "sk_test_private_0123456789"
	up := newKeyUpstream(t, secret)
	key := n.newAgent(t, "prober", `{"per_tx_max":"1","daily":"1"}`)
	dom := n.domain(t)
	port := up.srv.URL[strings.LastIndex(up.srv.URL, ":")+1:]
	for _, c := range []struct{ name, upstream string }{
		{"byip", "https://127.0.0.1:" + port},
		{"byname", "https://localhost:" + port}, // a name that resolves to loopback: checked at connect time
	} {
		if a := owner(t, n, "POST", "/v1/vault", api.PutCredentialRequest{Name: c.name, Upstream: c.upstream,
			Inject: "header:X-Api-Key={secret}", Secret: secret}); a.status != 201 {
			t.Fatalf("vault put %s: %s", c.name, a)
		}
		if a := owner(t, n, "POST", "/v1/vault/"+c.name+"/grants", api.GrantRequest{Agent: "prober", Methods: []string{"GET"},
			Paths: []string{"/v1/*"}, Price: "0.01"}); a.status != 201 {
			t.Fatalf("grant: %s", a)
		}
		pq := "/v1/proxy/" + c.name + "/v1/search"
		req, _ := http.NewRequest("GET", n.url+pq, nil)
		signHeaders(t, dom, key, "GET", pq, nil, time.Now().Add(time.Minute))(req.Header)
		resp, err := rawHTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(api.HeaderError) != "upstream_private" {
			t.Fatalf("%s: a private upstream without allow_private: HTTP %d %s %s", c.name, resp.StatusCode, resp.Header.Get(api.HeaderError), body)
		}
	}
	if got := up.calls.Load(); got != 0 {
		t.Fatalf("the private upstream was reached %d times", got)
	}
	waitSettled(t, n)
	if l := n.limits(t, "prober"); l.DailyUsed != "0" {
		t.Fatalf("refused connections were charged: daily used %s", l.DailyUsed)
	}
}
