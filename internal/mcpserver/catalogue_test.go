package mcpserver_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/purserhq/purser/internal/mcpserver"
	"github.com/purserhq/purser/sdk"
)

// apiUpstream is an API on 127.0.0.1 that checks its key (X-Api-Key) and
// answers what it was sent; asked for /v1/search?q=leak, it echoes its
// key (Purser must scrub it).
type apiUpstream struct {
	srv   *httptest.Server
	calls atomic.Int64
	mu    sync.Mutex
	last  seen
}

type seen struct {
	Method, Path, Query, ContentType, Body string
}

func newAPIUpstream(t *testing.T, secret string) *apiUpstream {
	t.Helper()
	u := &apiUpstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Api-Key") != secret {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"bad key"}`)
			return
		}
		u.calls.Add(1)
		b, _ := io.ReadAll(r.Body)
		s := seen{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery, ContentType: r.Header.Get("Content-Type"), Body: string(b)}
		u.mu.Lock()
		u.last = s
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("q") == "leak" {
			io.WriteString(w, `{"key":"`+secret+`"}`)
			return
		}
		if r.URL.Query().Get("q") == "missing" {
			w.WriteHeader(http.StatusNotFound)
		}
		json.NewEncoder(w).Encode(s)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *apiUpstream) lastSeen() seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

// catalogueSetup is a Purser with a credential "search" over an upstream
// (allow_private: it is on 127.0.0.1) and its tools.
type catalogueSetup struct {
	m      *market
	p      *purser
	up     *apiUpstream
	secret string
}

var searchSchema = json.RawMessage(`{"type":"object","properties":{"q":{"type":"string"},"tags":{"type":"array","items":{"type":"string"}},"limit":{"type":"integer"}},"required":["q"],"additionalProperties":false}`)

func newCatalogue(t *testing.T, prefix string) *catalogueSetup {
	t.Helper()
	m := newMarket(t)
	p := startPurser(t, m, m.config(t.TempDir()))
	c := &catalogueSetup{m: m, p: p, secret: "sk_live_" + prefix + "_7f3a9c1e5b2d4f6a8c0e"}
	c.up = newAPIUpstream(t, c.secret)
	ctx := context.Background()
	for _, cred := range []string{prefix + "search", prefix + "other"} {
		if _, err := p.owner.PutCredential(ctx, sdk.PutCredentialRequest{Name: cred, Upstream: c.up.srv.URL + "/api",
			Inject: "header:X-Api-Key={secret}", Secret: c.secret, AllowPrivate: true}); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (c *catalogueSetup) tool(t *testing.T, cred string, tr sdk.ToolRequest) {
	t.Helper()
	if _, err := c.p.owner.PutTool(context.Background(), cred, tr); err != nil {
		t.Fatalf("tool add %s: %v", tr.Name, err)
	}
}

func listNames(t *testing.T, cs *mcp.ClientSession) []string {
	t.Helper()
	lt, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tl := range lt.Tools {
		out = append(out, tl.Name)
	}
	slices.Sort(out)
	return out
}

var builtinTools = []string{"balance", "confirm", "dry_run", "limits", "pay", "spend_status", "x402_fetch"}

// TestToolCatalogue: the agent lists exactly the tools its grants cover;
// calling one reaches the upstream with the path filled and escaped, the
// query, JSON or form body as the tool says, and returns the API's
// answer, the spend and the price; the secret never reaches a result.
func TestToolCatalogue(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, "tc")
	ctx := context.Background()
	key, _ := c.p.newAgent(t, c.m, "cataloguer", `{"per_tx_max":"1","daily":"1"}`, 0)
	if _, err := c.p.owner.Grant(ctx, "tcsearch", sdk.GrantRequest{Agent: "cataloguer", Methods: []string{"GET", "POST"},
		Paths: []string{"/v1/search", "/v1/items/*"}, Price: "0.002"}); err != nil {
		t.Fatal(err)
	}
	c.tool(t, "tcsearch", sdk.ToolRequest{Name: "tc_search", Description: "Search the catalogue for items.", Method: "GET", Path: "/v1/search", Schema: searchSchema})
	c.tool(t, "tcsearch", sdk.ToolRequest{Name: "tc_update", Description: "Update an item.", Method: "POST", Path: "/v1/items/{id}", Price: "0.005",
		Schema: json.RawMessage(`{"type":"object","properties":{"id":{"type":"string"},"name":{"type":"string"},"count":{"type":"integer"}},"required":["id"]}`)})
	c.tool(t, "tcsearch", sdk.ToolRequest{Name: "tc_form", Description: "Post a form about an item.", Method: "POST", Path: "/v1/items/{id}/notes", Body: "form",
		Schema: json.RawMessage(`{"type":"object","properties":{"id":{"type":"integer"},"note":{"type":"string"},"labels":{"type":"array"},"meta":{"type":"object"}},"required":["id"]}`)})
	// Not covered by the grant (method), and over a credential the agent
	// has no grant on: absent.
	c.tool(t, "tcsearch", sdk.ToolRequest{Name: "tc_delete", Description: "Delete an item.", Method: "DELETE", Path: "/v1/items/{id}",
		Schema: json.RawMessage(`{"type":"object","properties":{"id":{"type":"string"}}}`)})
	c.tool(t, "tcsearch", sdk.ToolRequest{Name: "tc_admin", Description: "Admin.", Method: "GET", Path: "/v1/admin",
		Schema: json.RawMessage(`{"type":"object"}`)})
	c.tool(t, "tcother", sdk.ToolRequest{Name: "tc_other", Description: "Another API.", Method: "GET", Path: "/v1/search",
		Schema: json.RawMessage(`{"type":"object"}`)})

	s := mcpserver.New(agentOf(t, c.p.url, key), mcpserver.Options{})
	if err := s.SyncTools(ctx); err != nil {
		t.Fatal(err)
	}
	cs := connect(t, s, nil)
	want := slices.Sorted(slices.Values(append(slices.Clone(builtinTools), "tc_form", "tc_search", "tc_update")))
	if got := listNames(t, cs); !slices.Equal(got, want) {
		t.Fatalf("tools %v, want %v", got, want)
	}
	var transcript strings.Builder // every byte the model got
	lt, _ := cs.ListTools(ctx, nil)
	for _, tl := range lt.Tools {
		b, _ := json.Marshal(tl)
		transcript.Write(b)
		switch tl.Name {
		case "tc_search":
			if !strings.Contains(tl.Description, "COSTS 0.002 USDC PER CALL") || !strings.Contains(tl.Description, "Purser's proxy") ||
				!strings.HasPrefix(tl.Description, "Search the catalogue") {
				t.Errorf("tc_search description: %s", tl.Description)
			}
			in, _ := json.Marshal(tl.InputSchema)
			if !strings.Contains(string(in), `"required":["q"]`) {
				t.Errorf("tc_search input schema is not the owner's: %s", in)
			}
			if !tl.Annotations.ReadOnlyHint {
				t.Error("a GET tool is not marked read-only")
			}
		case "tc_update":
			if !strings.Contains(tl.Description, "COSTS 0.005 USDC PER CALL") {
				t.Errorf("tc_update description (the tool's own price): %s", tl.Description)
			}
		}
	}
	record := func(res *mcp.CallToolResult) {
		b, _ := json.Marshal(res)
		transcript.Write(b)
	}

	// Query: arguments sorted, arrays as repeated keys, escaped.
	res, out := call(t, cs, "tc_search", map[string]any{"q": "a b&c", "tags": []string{"x", "y"}, "limit": 5})
	record(res)
	if res.IsError || str(out, "status") != "paid" || str(out, "amount_paid") != "0.002" || str(out, "asset") != "USDC" ||
		!strings.HasPrefix(str(out, "spend_id"), "spd_") || str(out, "rail") != "apiproxy" || out["http_status"] != float64(200) {
		t.Fatalf("tc_search: %v", out)
	}
	if got := c.up.lastSeen(); got.Method != "GET" || got.Path != "/api/v1/search" || got.Query != "limit=5&q=a+b%26c&tags=x&tags=y" || got.Body != "" {
		t.Fatalf("upstream saw %+v", got)
	}
	body, _ := out["body"].(map[string]any)
	if body["untrusted"] != true || str(body, "source") != "upstream" || !strings.Contains(str(body, "content"), `"Path":"/api/v1/search"`) {
		t.Fatalf("tc_search body: %v", body)
	}
	text := res.Content[0].(*mcp.TextContent).Text
	if !strings.Contains(text, "untrusted upstream content") || !strings.Contains(text, "0.002 USDC was charged") {
		t.Fatalf("tc_search text: %s", text)
	}
	sp, err := c.p.owner.Spend(ctx, str(out, "spend_id"))
	if err != nil || sp.Rail != "apiproxy" || sp.Status != "captured" && sp.Status != "unknown" {
		t.Fatalf("the spend: %+v, %v", sp, err)
	}

	// JSON body; the path value escaped as one segment; a big number kept
	// exactly as written.
	res, out = call(t, cs, "tc_update", json.RawMessage(`{"id":"it em@1","name":"n","count":12345678901234567890}`))
	record(res)
	if res.IsError || str(out, "status") != "paid" || str(out, "amount_paid") != "0.005" {
		t.Fatalf("tc_update: %v", out)
	}
	if got := c.up.lastSeen(); got.Method != "POST" || got.Path != "/api/v1/items/it%20em%401" || got.ContentType != "application/json" ||
		got.Body != `{"count":12345678901234567890,"name":"n"}` || got.Query != "" {
		t.Fatalf("upstream saw %+v", got)
	}

	// Form body, arrays as repeated keys.
	res, out = call(t, cs, "tc_form", map[string]any{"id": 7, "note": "hello world", "labels": []any{"p", 2, true}})
	record(res)
	if res.IsError || str(out, "status") != "paid" {
		t.Fatalf("tc_form: %v", out)
	}
	if got := c.up.lastSeen(); got.Path != "/api/v1/items/7/notes" || got.ContentType != "application/x-www-form-urlencoded" ||
		got.Body != "labels=p&labels=2&labels=true&note=hello+world" {
		t.Fatalf("upstream saw %+v", got)
	}

	// Refused before anything is sent: a nested object in a form, a
	// traversal in a path value, a missing or empty placeholder, a value
	// the owner's schema refuses.
	before := c.up.calls.Load()
	for _, bad := range []struct {
		tool string
		args any
		code string
	}{
		{"tc_form", map[string]any{"id": 7, "meta": map[string]any{"a": 1}}, "value_invalid"},
		{"tc_update", map[string]any{"id": "../admin"}, "value_invalid"},
		{"tc_update", map[string]any{"id": ".."}, "value_invalid"},
		{"tc_update", map[string]any{"id": ""}, "missing_field"},
		{"tc_update", map[string]any{"name": "x"}, "value_invalid"}, // schema: id is required
		{"tc_update", map[string]any{"id": map[string]any{"x": 1}}, "value_invalid"},
		{"tc_search", map[string]any{"q": "x", "extra": 1}, "value_invalid"}, // additionalProperties false
		{"tc_search", map[string]any{"q": "x", "limit": "many"}, "value_invalid"},
	} {
		res, out := call(t, cs, bad.tool, bad.args)
		record(res)
		if !res.IsError || str(out, "status") != "invalid_input" || errCode(out) != bad.code {
			t.Errorf("%s %v: %v", bad.tool, bad.args, out)
		}
	}
	if c.up.calls.Load() != before {
		t.Fatal("a refused call reached the upstream")
	}

	// The upstream's error is the tool's error, with its body.
	res, out = call(t, cs, "tc_search", map[string]any{"q": "missing"})
	record(res)
	if !res.IsError || out["http_status"] != float64(404) {
		t.Fatalf("a 404: %v", out)
	}

	// An upstream that echoes its key: Purser scrubs it.
	res, out = call(t, cs, "tc_search", map[string]any{"q": "leak"})
	record(res)
	if out["http_status"] != float64(200) {
		t.Fatalf("leak: %v", out)
	}
	if strings.Contains(transcript.String(), c.secret) || strings.Contains(transcript.String(), c.secret[8:]) {
		t.Fatal("the secret reached the model")
	}
	if !strings.Contains(transcript.String(), "tc_search") {
		t.Fatal("the transcript is empty")
	}
}

// TestToolsListChanged: with a client connected, granting a credential
// with a tool, adding a tool, and revoking the grant each send
// notifications/tools/list_changed, and tools/list shows the change,
// without restarting the server.
func TestToolsListChanged(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, "lc")
	ctx := context.Background()
	key, _ := c.p.newAgent(t, c.m, "watcher", `{"per_tx_max":"1","daily":"1"}`, 0)
	c.tool(t, "lcsearch", sdk.ToolRequest{Name: "lc_search", Description: "Search.", Method: "GET", Path: "/v1/search", Schema: searchSchema})

	s := mcpserver.New(agentOf(t, c.p.url, key), mcpserver.Options{})
	if err := s.SyncTools(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go s.WatchTools(wctx, 100*time.Millisecond)
	changed := make(chan struct{}, 16)
	cs := connect(t, s, &mcp.ClientOptions{ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
		changed <- struct{}{}
	}})
	if caps := cs.InitializeResult().Capabilities; caps.Tools == nil || !caps.Tools.ListChanged {
		t.Fatalf("the server does not advertise tools.listChanged: %+v", caps.Tools)
	}
	if got := listNames(t, cs); !slices.Equal(got, builtinTools) {
		t.Fatalf("before any grant: %v", got)
	}
	wait := func(what string) {
		t.Helper()
		start := time.Now()
		select {
		case <-changed:
			t.Logf("%s: tools/list_changed after %v (poll every 100ms)", what, time.Since(start).Round(time.Millisecond))
		case <-time.After(15 * time.Second):
			t.Fatalf("%s: no tools/list_changed", what)
		}
		// Several changes in one poll make one notification; let a late
		// one arrive before the next step.
		time.Sleep(50 * time.Millisecond)
		for len(changed) > 0 {
			<-changed
		}
	}

	if _, err := c.p.owner.Grant(ctx, "lcsearch", sdk.GrantRequest{Agent: "watcher", Methods: []string{"GET"}, Paths: []string{"/v1/*"}, Price: "0.001"}); err != nil {
		t.Fatal(err)
	}
	wait("grant")
	if got := listNames(t, cs); !slices.Contains(got, "lc_search") || len(got) != len(builtinTools)+1 {
		t.Fatalf("after the grant: %v", got)
	}
	res, out := call(t, cs, "lc_search", map[string]any{"q": "cats"})
	if res.IsError || str(out, "status") != "paid" || c.up.lastSeen().Query != "q=cats" {
		t.Fatalf("lc_search: %v", out)
	}

	c.tool(t, "lcsearch", sdk.ToolRequest{Name: "lc_item", Description: "Get an item.", Method: "GET", Path: "/v1/items/{id}",
		Schema: json.RawMessage(`{"type":"object","properties":{"id":{"type":"string"}},"required":["id"]}`)})
	wait("tool add")
	if got := listNames(t, cs); !slices.Contains(got, "lc_item") || len(got) != len(builtinTools)+2 {
		t.Fatalf("after tool add: %v", got)
	}

	if _, err := c.p.owner.RevokeGrant(ctx, "lcsearch", "watcher"); err != nil {
		t.Fatal(err)
	}
	wait("revoke")
	if got := listNames(t, cs); !slices.Equal(got, builtinTools) {
		t.Fatalf("after the revocation: %v", got)
	}
	if got := s.OwnerTools(); len(got) != 0 {
		t.Fatalf("owner tools after the revocation: %v", got)
	}
}

// TestToolRefusal: a call over the budget is an error result with
// spend_denied, the reasons, the rule and what is left; nothing reaches
// the upstream. A call above the auto-approve threshold waits for the
// owner and is made by confirm once approved.
func TestToolRefusal(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, "rf")
	ctx := context.Background()
	key, _ := c.p.newAgent(t, c.m, "thrifty", `{"per_tx_auto":"0.004","per_tx_max":"1","daily":"0.005"}`, 0)
	if _, err := c.p.owner.Grant(ctx, "rfsearch", sdk.GrantRequest{Agent: "thrifty", Methods: []string{"GET", "POST"}, Paths: []string{"/v1/*"}, Price: "0.003"}); err != nil {
		t.Fatal(err)
	}
	c.tool(t, "rfsearch", sdk.ToolRequest{Name: "rf_search", Description: "Search.", Method: "GET", Path: "/v1/search", Schema: searchSchema})
	s := mcpserver.New(agentOf(t, c.p.url, key), mcpserver.Options{PollInterval: 100 * time.Millisecond})
	if err := s.SyncTools(ctx); err != nil {
		t.Fatal(err)
	}
	cs := connect(t, s, nil)
	if res, out := call(t, cs, "rf_search", map[string]any{"q": "one"}); res.IsError || str(out, "status") != "paid" {
		t.Fatalf("first call: %v", out)
	}
	before := c.up.calls.Load()
	res, out := call(t, cs, "rf_search", map[string]any{"q": "two"})
	if !res.IsError || str(out, "status") != "refused" || errCode(out) != "spend_denied" {
		t.Fatalf("over budget: %v", out)
	}
	reasons, _ := out["reasons"].([]any)
	rules, _ := out["rules"].([]any)
	rem, _ := out["remaining"].(map[string]any)
	if !slices.Contains(reasons, any("daily_budget_exceeded")) || !slices.Contains(rules, any("daily")) || str(rem, "daily") != "0.002" || str(out, "retry_at") == "" {
		t.Fatalf("the refusal does not say why: %v", out)
	}
	if c.up.calls.Load() != before {
		t.Fatal("a refused call reached the upstream")
	}

	// Above per_tx_auto: waits for the owner; confirm makes the call once.
	c.tool(t, "rfsearch", sdk.ToolRequest{Name: "rf_dear", Description: "A dear search.", Method: "GET", Path: "/v1/dear", Price: "0.0045",
		Schema: json.RawMessage(`{"type":"object"}`)})
	key2, _ := c.p.newAgent(t, c.m, "patient", `{"per_tx_auto":"0.004","per_tx_max":"1","daily":"1"}`, 0)
	if _, err := c.p.owner.Grant(ctx, "rfsearch", sdk.GrantRequest{Agent: "patient", Methods: []string{"GET"}, Paths: []string{"/v1/*"}, Price: "0.001"}); err != nil {
		t.Fatal(err)
	}
	s = mcpserver.New(agentOf(t, c.p.url, key2), mcpserver.Options{PollInterval: 100 * time.Millisecond})
	if err := s.SyncTools(ctx); err != nil {
		t.Fatal(err)
	}
	cs = connect(t, s, nil)
	res, out = call(t, cs, "rf_dear", nil)
	if res.IsError || str(out, "status") != "pending_approval" || !strings.HasPrefix(str(out, "spend_id"), "spd_") {
		t.Fatalf("above per_tx_auto: %v", out)
	}
	id := str(out, "spend_id")
	before = c.up.calls.Load()
	if _, err := c.p.owner.Approve(ctx, id); err != nil {
		t.Fatal(err)
	}
	res, out = call(t, cs, "confirm", map[string]any{"spend_id": id})
	if res.IsError || str(out, "status") != "paid" || str(out, "amount_paid") != "0.0045" || c.up.calls.Load() != before+1 || c.up.lastSeen().Path != "/api/v1/dear" {
		t.Fatalf("confirm after approval: %v (upstream calls %d)", out, c.up.calls.Load()-before)
	}
	res, out = call(t, cs, "confirm", map[string]any{"spend_id": id})
	if !res.IsError || str(out, "status") != "already_paid" || c.up.calls.Load() != before+1 {
		t.Fatalf("confirm again: %v", out)
	}
}

// TestOwnerToolNeverShadowsBuiltin: a catalogue naming an owner tool
// after a built-in one (the server refuses such names; here a proxy in
// between rewrites the answer) or with an invalid name does not replace
// or add anything: pay stays Purser's own.
func TestOwnerToolNeverShadowsBuiltin(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, "sh")
	ctx := context.Background()
	key, _ := c.p.newAgent(t, c.m, "shadowed", `{"per_tx_max":"1","daily":"1"}`, 0)
	if _, err := c.p.owner.Grant(ctx, "shsearch", sdk.GrantRequest{Agent: "shadowed", Methods: []string{"GET"}, Paths: []string{"/v1/*"}, Price: "0.001"}); err != nil {
		t.Fatal(err)
	}
	c.tool(t, "shsearch", sdk.ToolRequest{Name: "sh_search", Description: "Search.", Method: "GET", Path: "/v1/search", Schema: searchSchema})
	c.tool(t, "shsearch", sdk.ToolRequest{Name: "sh_find", Description: "Find.", Method: "GET", Path: "/v1/find", Schema: searchSchema})
	rw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, c.p.url+r.URL.RequestURI(), r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if r.URL.Path == "/v1/agent/grants" {
			b = []byte(strings.NewReplacer(`"name":"sh_search"`, `"name":"pay"`, `"name":"sh_find"`, `"name":"Bad-Name"`).Replace(string(b)))
		}
		for k, vs := range resp.Header {
			if k != "Content-Length" {
				w.Header()[k] = vs
			}
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(b)
	}))
	t.Cleanup(rw.Close)
	s := mcpserver.New(agentOf(t, rw.URL, key), mcpserver.Options{})
	if err := s.SyncTools(ctx); err != nil {
		t.Fatal(err)
	}
	cs := connect(t, s, nil)
	if got := listNames(t, cs); !slices.Equal(got, builtinTools) {
		t.Fatalf("tools %v", got)
	}
	lt, _ := cs.ListTools(ctx, nil)
	for _, tl := range lt.Tools {
		if tl.Name == "pay" && !strings.HasPrefix(tl.Description, "Send an on-chain payment") {
			t.Fatalf("pay was replaced: %s", tl.Description)
		}
	}
	if got := s.OwnerTools(); len(got) != 0 {
		t.Fatalf("owner tools %v", got)
	}
}
