package sdk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/sdk"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/golden")

// exchange is one request the SDK sent to Purser and the server's answer,
// byte for byte.
type exchange struct {
	name         string
	method, path string // path with its query
	request      []byte
	status       int
	response     []byte
}

// recorder is the SDK's http.RoundTripper in TestGoldenBodies: it keeps
// every exchange, named after the step that caused it.
type recorder struct {
	mu   sync.Mutex
	step string
	n    int // exchanges of the current step
	all  []exchange
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.GetBody != nil {
		rc, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		body, err = io.ReadAll(rc)
		if err != nil {
			return nil, err
		}
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(answer))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	name := r.step
	if r.n > 1 {
		name = fmt.Sprintf("%s-%d", r.step, r.n)
	}
	r.all = append(r.all, exchange{name: name, method: req.Method, path: req.URL.RequestURI(), request: body, status: resp.StatusCode, response: answer})
	return resp, nil
}

// at names the exchanges of the next step.
func (r *recorder) at(step string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.step, r.n = step, 0
}

// TestGoldenBodies drives a real server through every agent endpoint and
// the owner's main ones with the SDK, and keeps the JSON both ways honest:
//   - the exact bodies sent and answered, with volatile values (ids,
//     times, nonces, hashes, addresses, ports) normalized, must equal
//     testdata/golden/*.txt (go test -run TestGoldenBodies -update
//     rewrites them);
//   - each answer (and each request) decoded into its type of package api
//     and encoded again must keep every key: a field the server sends but
//     api does not declare would be lost to SDK users.
func TestGoldenBodies(t *testing.T) {
	t.Parallel()
	d := startDevMarket(filepath.Join(t.TempDir(), "purser"))
	t.Cleanup(d.close)
	rec := &recorder{}
	hc := &http.Client{Transport: rec, Timeout: time.Minute}
	ctx := context.Background()
	check := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	owner, err := sdk.NewOwner(d.url, d.token, sdk.WithHTTPClient(hc))
	check("owner", err)

	rec.at("owner-deployment")
	dep, err := owner.Deployment(ctx)
	check("deployment", err)
	key, err := sdk.GenerateKey(filepath.Join(t.TempDir(), "agent.key"))
	check("key", err)
	rec.at("owner-create-agent")
	_, err = owner.CreateAgent(ctx, sdk.CreateAgentRequest{Name: "golden", IdentityAddress: key.Address(),
		Mandate: json.RawMessage(`{"per_tx_auto":"0.10","per_tx_max":"1.00","daily":"5.00"}`)})
	check("create agent", err)
	rec.at("owner-agents")
	_, err = sdk.Collect(owner.Agents(ctx))
	check("agents", err)
	rec.at("owner-agent")
	_, err = owner.Agent(ctx, "golden")
	check("agent", err)
	rec.at("owner-mandate")
	mv, err := owner.Mandate(ctx, "golden")
	check("mandate", err)
	rec.at("owner-set-mandate")
	_, err = owner.SetMandate(ctx, "golden", json.RawMessage(`{"per_tx_auto":"0.10","per_tx_max":"1.00","daily":"5.00","lifetime":"50.00","rate":"100/1m"}`), &mv.Version)
	check("set mandate", err)
	rec.at("owner-fund")
	_, err = owner.Fund(ctx, "golden", "1", "")
	check("fund", err)
	rec.at("owner-chains")
	_, err = owner.Chains(ctx)
	check("chains", err)

	agent, err := sdk.NewAgent(d.url, key, sdk.WithHTTPClient(hc), sdk.WithDeployment(dep.DeploymentID))
	check("agent client", err)
	custom := func(amount, memo string) sdk.AuthorizeRequest {
		return sdk.AuthorizeRequest{Rail: "custom", Payee: "0x000000000000000000000000000000000000dEaD", Amount: amount,
			Memo: memo, IdempotencyKey: "golden-" + memo}
	}
	rec.at("agent-assets")
	_, err = sdk.Collect(agent.Assets(ctx))
	check("assets", err)
	rec.at("agent-authorize-allowed")
	sp, err := agent.Authorize(ctx, custom("0.05", "capture"))
	check("authorize", err)
	rec.at("agent-authorize-replayed")
	_, err = agent.Authorize(ctx, custom("0.05", "capture"))
	check("authorize replayed", err)
	rec.at("agent-spend")
	_, err = agent.Spend(ctx, sp.SpendID)
	check("spend", err)
	rec.at("agent-capture")
	_, err = agent.Capture(ctx, sp.SpendID, "0.03")
	check("capture", err)
	rec.at("agent-authorize-to-release")
	sp, err = agent.Authorize(ctx, custom("0.04", "release"))
	check("authorize", err)
	rec.at("agent-release")
	_, err = agent.Release(ctx, sp.SpendID)
	check("release", err)
	rec.at("agent-authorize-pending")
	_, err = agent.Authorize(ctx, custom("0.50", "approve"))
	var ar *sdk.ApprovalRequiredError
	if !errors.As(err, &ar) {
		t.Fatalf("authorize 0.50: %v; want pending", err)
	}
	rec.at("owner-approvals")
	_, err = sdk.Collect(owner.Approvals(ctx))
	check("approvals", err)
	rec.at("owner-approve")
	_, err = owner.Approve(ctx, ar.SpendID)
	check("approve", err)
	rec.at("agent-authorize-to-deny")
	_, err = agent.Authorize(ctx, custom("0.60", "deny"))
	if !errors.As(err, &ar) {
		t.Fatalf("authorize 0.60: %v; want pending", err)
	}
	rec.at("owner-deny")
	_, err = owner.Deny(ctx, ar.SpendID, "too dear")
	check("deny", err)
	rec.at("agent-authorize-refused")
	_, err = agent.Authorize(ctx, custom("2.00", "refused"))
	var re *sdk.RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("authorize 2.00: %v; want refused", err)
	}
	rec.at("agent-dry-run")
	_, err = agent.DryRun(ctx, custom("0.05", "dry-run"))
	check("dry run", err)
	rec.at("agent-fetch")
	res, err := agent.Fetch(ctx, sdk.FetchRequest{URL: d.paidAPI + "/weather", IdempotencyKey: "golden-weather", Memo: "weather"})
	if err != nil || res.Outcome != sdk.Paid {
		t.Fatalf("fetch: %+v %v", res, err)
	}
	rec.at("agent-pay")
	paid, err := agent.Pay(ctx, sdk.PayRequest{To: "0x000000000000000000000000000000000000dEaD", Amount: "0.02", Memo: "tip", IdempotencyKey: "golden-tip"})
	if err != nil || paid.Status != sdk.StatusCaptured {
		t.Fatalf("pay: %+v %v", paid, err)
	}
	rec.at("agent-pay-pending")
	_, err = agent.Pay(ctx, sdk.PayRequest{To: "0x000000000000000000000000000000000000dEaD", Amount: "0.25", Memo: "bigger tip", IdempotencyKey: "golden-bigger-tip"})
	if !errors.As(err, &ar) {
		t.Fatalf("pay 0.25: %v; want pending", err)
	}
	rec.at("owner-approve-payout")
	_, err = owner.Approve(ctx, ar.SpendID)
	check("approve payout", err)
	rec.at("agent-confirm")
	confirmed, err := agent.Confirm(ctx, ar.SpendID)
	if err != nil || confirmed.Status != sdk.StatusCaptured {
		t.Fatalf("confirm: %+v %v", confirmed, err)
	}
	rec.at("agent-limits")
	_, err = agent.Limits(ctx)
	check("limits", err)
	rec.at("agent-balances")
	_, err = sdk.Collect(agent.Balances(ctx))
	check("balances", err)
	rec.at("owner-limits")
	_, err = owner.Limits(ctx, "golden")
	check("owner limits", err)
	rec.at("owner-balances")
	_, err = sdk.Collect(owner.Balances(ctx, "golden"))
	check("owner balances", err)
	rec.at("owner-spends")
	_, err = sdk.Collect(owner.Spends(ctx, sdk.SpendFilter{Agent: "golden", Status: "captured,released", Limit: 10}))
	check("spends", err)
	rec.at("owner-spend")
	_, err = owner.Spend(ctx, paid.SpendID)
	check("owner spend", err)
	rec.at("owner-freeze")
	_, _, err = owner.FreezeCancelSigned(ctx, "golden")
	check("freeze", err)
	rec.at("owner-unfreeze")
	_, err = owner.Unfreeze(ctx, "golden")
	check("unfreeze", err)
	rec.at("owner-audit-tail")
	_, err = owner.AuditTail(ctx, 2)
	check("audit tail", err)
	rec.at("owner-audit-verify")
	_, err = owner.AuditVerify(ctx)
	check("audit verify", err)
	rec.at("owner-audit-key")
	_, err = owner.AuditKey(ctx)
	check("audit key", err)
	other, err := sdk.GenerateKey(filepath.Join(t.TempDir(), "other.key"))
	check("key", err)
	rec.at("owner-rotate-key")
	_, err = owner.RotateKey(ctx, "golden", other.Address())
	check("rotate key", err)
	rec.at("owner-revoke")
	_, err = owner.Revoke(ctx, "golden")
	check("revoke", err)
	rec.at("owner-not-found")
	if _, err := owner.Spend(ctx, "spd_nope"); !sdk.IsCode(err, "spend_not_found") {
		t.Fatalf("missing spend: %v", err)
	}

	// The vault (docs/vault.md), for an agent set up unrecorded. The
	// upstream is never called: these are Purser's own answers.
	setup, err := sdk.NewOwner(d.url, d.token)
	check("setup owner", err)
	vkey, err := sdk.GenerateKey(filepath.Join(t.TempDir(), "vault.key"))
	check("key", err)
	_, err = setup.CreateAgent(ctx, sdk.CreateAgentRequest{Name: "golden-vault", IdentityAddress: vkey.Address(),
		Mandate: json.RawMessage(`{"per_tx_max":"1.00"}`)})
	check("create vault agent", err)
	rec.at("owner-vault-put")
	_, err = owner.PutCredential(ctx, sdk.PutCredentialRequest{Name: "search", Upstream: "https://api.example.com/v2",
		Inject: "header:Authorization=Bearer {secret}", Secret: "sk_test_golden_0123456789", Timeout: "10s"})
	check("vault put", err)
	rec.at("owner-vault-grant")
	_, err = owner.Grant(ctx, "search", sdk.GrantRequest{Agent: "golden-vault", Methods: []string{"GET", "POST"},
		Paths: []string{"/search", "/items/*"}, Price: "0.002", Rate: "60/1m", Expires: "24h"})
	check("vault grant", err)
	rec.at("owner-vault-tool")
	_, err = owner.PutTool(ctx, "search", sdk.ToolRequest{Name: "web_search", Description: "search the web", Method: "GET", Path: "/search",
		Schema: json.RawMessage(`{"type":"object","properties":{"q":{"type":"string"}},"required":["q"]}`)})
	check("vault tool", err)
	rec.at("owner-vault-rotate")
	_, err = owner.RotateCredential(ctx, "search", sdk.RotateCredentialRequest{Secret: "sk_test_golden_rotated_987", Grace: "1h"})
	check("vault rotate", err)
	rec.at("owner-vault-list")
	_, err = owner.Credentials(ctx)
	check("vault list", err)
	rec.at("owner-vault-show")
	_, err = owner.Credential(ctx, "search")
	check("vault show", err)
	rec.at("owner-vault-grants")
	_, err = owner.Grants(ctx, "search")
	check("vault grants", err)
	rec.at("owner-vault-tools")
	_, err = owner.Tools(ctx, "search")
	check("vault tools", err)
	vagent, err := sdk.NewAgent(d.url, vkey, sdk.WithHTTPClient(hc), sdk.WithDeployment(dep.DeploymentID))
	check("vault agent client", err)
	rec.at("agent-grants")
	_, err = vagent.Grants(ctx)
	check("agent grants", err)
	rec.at("owner-vault-revoke")
	_, err = owner.RevokeGrant(ctx, "search", "golden-vault")
	check("vault revoke", err)
	rec.at("owner-vault-delete-tool")
	_, err = owner.DeleteTool(ctx, "search", "web_search")
	check("vault delete tool", err)
	rec.at("owner-vault-delete")
	_, err = owner.DeleteCredential(ctx, "search")
	check("vault delete", err)
	rec.at("owner-vault-not-found")
	if _, err := owner.Credential(ctx, "search"); !sdk.IsCode(err, "credential_not_found") {
		t.Fatalf("missing credential: %v", err)
	}

	dir := filepath.Join("testdata", "golden")
	if *update {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	for i, ex := range rec.all {
		name := fmt.Sprintf("%02d-%s.txt", i+1, ex.name)
		names = append(names, name)
		got := golden(t, ex)
		path := filepath.Join(dir, name)
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
		} else if want, err := os.ReadFile(path); err != nil {
			t.Errorf("%v (run with -update to write it)", err)
		} else if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the server's answer now (run with -update if that is intended):\n--- got\n%s\n--- want\n%s", path, got, want)
		}
		checkKeys(t, name, ex)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !slices.Contains(names, filepath.Base(f)) {
			t.Errorf("%s is no longer produced (run with -update)", f)
		}
	}
	// Every route of docs/api.md's agent table was driven.
	for _, route := range []string{"POST /v1/agent/spends", "GET /v1/agent/spends/", "/confirm", "/capture", "/release", "/settlement",
		"GET /v1/agent/limits", "GET /v1/agent/assets", "GET /v1/agent/balances"} {
		found := false
		for _, ex := range rec.all {
			found = found || strings.Contains(ex.method+" "+ex.path, route)
		}
		if !found {
			t.Errorf("no exchange covers %s", route)
		}
	}
}

// volatile are the values that differ from run to run, in the order they
// are replaced (longer hex runs first).
var volatile = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`0x[0-9a-fA-F]{130}`), "0x<signature>"},
	{regexp.MustCompile(`0x[0-9a-fA-F]{64}`), "0x<hash>"},
	{regexp.MustCompile(`0x[0-9a-fA-F]{40}`), "0x<address>"},
	{regexp.MustCompile(`[0-9a-f]{16,}`), "<hex>"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`), "<time>"},
	{regexp.MustCompile(`"\d{4}-\d\d-\d\d"`), `"<date>"`},
	{regexp.MustCompile(`\b([a-z]{2,8})_[0-9a-z]{26}\b`), "${1}_<id>"},
	{regexp.MustCompile(`(\\?"(?:header_value|audit_key)\\?":\s*\\?")[^"\\]+`), "${1}<opaque>"},
	{regexp.MustCompile(`127\.0\.0\.1:\d+`), "127.0.0.1:<port>"},
	{regexp.MustCompile(`("rate":\{[^}]*"used":)\d+`), "${1}0"}, // requests in the current minute
	{regexp.MustCompile(`(\\?"(?:seq|valid_before|head_seq|events|checkpoints|expires|signed_at)\\?":\s*)\d+`), "${1}0"},
}

func normalize(b []byte) []byte {
	for _, v := range volatile {
		b = v.re.ReplaceAll(b, []byte(v.repl))
	}
	return b
}

// golden renders one exchange: the request line, then each body
// normalized and indented (key order kept as sent).
func golden(t *testing.T, ex exchange) []byte {
	t.Helper()
	var out bytes.Buffer
	fmt.Fprintf(&out, "%s %s\n", ex.method, normalize([]byte(ex.path)))
	section := func(title string, body []byte) {
		fmt.Fprintf(&out, "-- %s --\n", title)
		if len(body) == 0 {
			return
		}
		var ind bytes.Buffer
		if err := json.Indent(&ind, normalize(body), "", "  "); err != nil {
			t.Fatalf("%s %s: %s is not JSON: %v\n%s", ex.method, ex.path, title, err, body)
		}
		out.Write(ind.Bytes())
		out.WriteByte('\n')
	}
	section("request", ex.request)
	section(fmt.Sprintf("response %d", ex.status), ex.response)
	return out.Bytes()
}

var (
	reAgentSpend  = regexp.MustCompile(`^/v1/agent/spends/[^/]+(/(confirm|capture|release|settlement))?$`)
	reAgentRef    = regexp.MustCompile(`^/v1/agents/[^/]+(/(freeze|unfreeze|revoke|rotate-key|mandate|limits|balances|fund))?$`)
	reOwnerSpend  = regexp.MustCompile(`^/v1/spends/[^/]+$`)
	reApproveDeny = regexp.MustCompile(`^/v1/approvals/[^/]+/(approve|deny)$`)
	reVault       = regexp.MustCompile(`^/v1/vault(/[^/]+(/(rotate|grants|tools)(/[^/]+(/revoke)?)?)?)?$`)
)

// types returns the api types of an exchange's request and answer.
func types(t *testing.T, ex exchange) (req, resp any) {
	t.Helper()
	path, _, _ := strings.Cut(ex.path, "?")
	if ex.status >= 400 {
		resp = new(api.Error)
	}
	pick := func(rq, rs any) {
		req = rq
		if resp == nil {
			resp = rs
		}
	}
	switch m := reAgentSpend.FindStringSubmatch(path); {
	case path == "/v1/deployment":
		pick(nil, new(api.Deployment))
	case path == "/v1/chains":
		pick(nil, new(api.Chains))
	case path == "/v1/agents" && ex.method == http.MethodPost:
		pick(new(api.CreateAgentRequest), new(api.Agent))
	case path == "/v1/agents":
		pick(nil, new(api.Agents))
	case path == "/v1/agent/spends":
		pick(new(api.AuthorizeRequest), new(api.Spend))
	case path == "/v1/agent/limits":
		pick(nil, new(api.Limits))
	case path == "/v1/agent/assets":
		pick(nil, new(api.Assets))
	case path == "/v1/agent/balances":
		pick(nil, new(api.Balances))
	case m != nil && m[2] == "capture":
		pick(new(api.CaptureRequest), new(api.Spend))
	case m != nil && m[2] == "settlement":
		pick(new(api.SettlementReport), new(api.Spend))
	case m != nil:
		pick(nil, new(api.Spend))
	case path == "/v1/spends":
		pick(nil, new(api.Spends))
	case reOwnerSpend.MatchString(path):
		pick(nil, new(api.Spend))
	case path == "/v1/approvals":
		pick(nil, new(api.Approvals))
	case reApproveDeny.MatchString(path) && strings.HasSuffix(path, "/deny"):
		pick(new(api.DenyRequest), new(api.Spend))
	case reApproveDeny.MatchString(path):
		pick(nil, new(api.Spend))
	case path == "/v1/audit/tail":
		pick(nil, new(api.AuditEvents))
	case path == "/v1/audit/verify":
		pick(nil, new(api.AuditVerifyResult))
	case path == "/v1/audit/key":
		pick(nil, new(api.AuditKey))
	case path == "/v1/agent/grants":
		pick(nil, new(api.AgentGrants))
	case reVault.MatchString(path):
		m := reVault.FindStringSubmatch(path)
		switch {
		case m[1] == "" && ex.method == http.MethodPost:
			pick(new(api.PutCredentialRequest), new(api.Credential))
		case m[1] == "":
			pick(nil, new(api.Credentials))
		case m[3] == "rotate":
			pick(new(api.RotateCredentialRequest), new(api.Credential))
		case m[3] == "grants" && m[5] == "/revoke":
			pick(nil, new(api.Grant))
		case m[3] == "grants" && ex.method == http.MethodPost:
			pick(new(api.GrantRequest), new(api.Grant))
		case m[3] == "grants":
			pick(nil, new(api.Grants))
		case m[3] == "tools" && m[4] != "":
			pick(nil, new(api.Tool))
		case m[3] == "tools" && ex.method == http.MethodPost:
			pick(new(api.ToolRequest), new(api.Tool))
		case m[3] == "tools":
			pick(nil, new(api.Tools))
		default:
			pick(nil, new(api.Credential))
		}
	case reAgentRef.MatchString(path):
		switch sub := reAgentRef.FindStringSubmatch(path)[2]; sub {
		case "freeze":
			pick(new(api.FreezeRequest), new(api.FreezeResponse))
		case "rotate-key":
			pick(new(api.RotateKeyRequest), new(api.Agent))
		case "mandate":
			pick(new(api.SetMandateRequest), new(api.MandateView))
		case "limits":
			pick(nil, new(api.Limits))
		case "balances":
			pick(nil, new(api.Balances))
		case "fund":
			pick(new(api.FundRequest), new(api.Funding))
		default:
			pick(nil, new(api.Agent))
		}
	default:
		t.Fatalf("%s %s: no api type known for this route", ex.method, ex.path)
	}
	return req, resp
}

// checkKeys decodes the exchange's bodies into their api types, encodes
// them again and reports every key lost (or invented) on the way.
func checkKeys(t *testing.T, name string, ex exchange) {
	t.Helper()
	req, resp := types(t, ex)
	if req != nil && len(ex.request) > 0 && string(ex.request) != "{}" {
		roundTrip(t, name+" request", ex.request, req)
	}
	if len(ex.response) > 0 {
		roundTrip(t, name+" response", ex.response, resp)
	}
}

func roundTrip(t *testing.T, what string, raw []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Errorf("%s: decode into %T: %v", what, v, err)
		return
	}
	again, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%s: encode %T: %v", what, v, err)
	}
	want, got := keySet(t, raw), keySet(t, again)
	for k := range want {
		if !got[k] {
			t.Errorf("%s: %T loses %q", what, v, k)
		}
	}
	for k := range got {
		if !want[k] {
			t.Errorf("%s: %T adds %q, which the server did not send", what, v, k)
		}
	}
}

// keySet is every key path of a JSON document ("wallets[].network").
func keySet(t *testing.T, raw []byte) map[string]bool {
	t.Helper()
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("not JSON: %v: %s", err, raw)
	}
	out := map[string]bool{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				out[p] = true
				walk(p, e)
			}
		case []any:
			for _, e := range v {
				walk(prefix+"[]", e)
			}
		}
	}
	walk("", doc)
	return out
}
