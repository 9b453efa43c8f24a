package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/app"
)

// runCLIIn runs the command line with stdin.
func runCLIIn(t *testing.T, envv map[string]string, stdin io.Reader, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdio: Stdio{In: stdin, Out: &out, Err: &errb}, getenv: func(k string) string { return envv[k] }}
	code = e.run(context.Background(), args)
	return code, out.String(), errb.String()
}

// echoUpstream is an API that checks its key (X-Api-Key, any of keys)
// and echoes the call; /api/v1/missing answers 404.
func echoUpstream(t *testing.T, keys ...string) *httptest.Server {
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
		if r.URL.Path == "/api/v1/missing" {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, "no such thing")
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"method": r.Method, "path": r.URL.Path, "query": r.URL.RawQuery, "body": string(body)})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// vaultServer starts a real server and returns the CLI's environment
// (server, owner token, the agent key of agent "bob", created with a
// mandate that auto-approves up to 0.005) and the data directory.
func vaultServer(t *testing.T) (map[string]string, string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	srv, err := app.Start(ctx, app.Config{DataDir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	tok, err := os.ReadFile(filepath.Join(dir, "owner.token"))
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "bob.key")
	envv := map[string]string{"PURSER_SERVER": "http://" + srv.Addr(), "PURSER_OWNER_TOKEN": strings.TrimSpace(string(tok)), "PURSER_AGENT_KEY": keyFile}
	if code, out, errOut := runCLI(t, envv, "agent", "create", "bob", "--key-out", keyFile, "--per-tx-auto", "0.005", "--per-tx-max", "1", "--daily", "5"); code != 0 {
		t.Fatalf("agent create: %d %s %s", code, out, errOut)
	}
	return envv, dir
}

// TestVaultAndProxyCommands drives purser vault and purser proxy against
// a real server and an upstream that checks its key, and searches every
// byte the CLI printed for the secrets.
func TestVaultAndProxyCommands(t *testing.T) {
	t.Parallel()
	const secret, secret2 = "sk_test_cli_vault_0123456789", "sk_test_cli_vault_rotated_42"
	up := echoUpstream(t, secret, secret2)
	envv, dir := vaultServer(t)
	var printed strings.Builder
	cli := func(stdin string, args ...string) (int, string, string) {
		t.Helper()
		code, out, errOut := runCLIIn(t, envv, strings.NewReader(stdin), args...)
		printed.WriteString(out + errOut)
		return code, out, errOut
	}
	must := func(want int, stdin string, args ...string) string {
		t.Helper()
		code, out, errOut := cli(stdin, args...)
		if code != want {
			t.Fatalf("purser %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, out, errOut)
		}
		return out + errOut
	}
	out := must(0, secret+"\n", "vault", "put", "search", "--upstream", up.URL+"/api", "--inject", "header:X-Api-Key={secret}", "--allow-private", "--timeout", "10s")
	if !strings.Contains(out, "credential search stored (version 1)") {
		t.Errorf("put: %s", out)
	}
	if out := must(1, secret+"\n", "vault", "put", "search", "--upstream", up.URL, "--inject", "header:X-Api-Key={secret}", "--allow-private"); !strings.Contains(out, "credential_exists") {
		t.Errorf("second put: %s", out)
	}
	secretFile := filepath.Join(dir, "pricey.secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	must(0, "", "vault", "put", "pricey", "--upstream", up.URL+"/api", "--inject", "header:X-Api-Key={secret}", "--allow-private", "--secret-file", secretFile)
	if out := must(0, "", "vault", "list"); !strings.Contains(out, "search") || !strings.Contains(out, "pricey") || !strings.Contains(out, "NAME") {
		t.Errorf("list: %s", out)
	}
	var l struct {
		Credentials []struct {
			Name string `json:"name"`
		} `json:"credentials"`
	}
	if err := json.Unmarshal([]byte(must(0, "", "vault", "list", "--json")), &l); err != nil || len(l.Credentials) != 2 {
		t.Errorf("list --json: %+v %v", l, err)
	}

	// Grants: flag errors first.
	for _, bad := range [][]string{
		{"--paths", "/v1/*"},
		{"--methods", "GET"},
		{"--methods", "GET", "--paths", "/v1/*", "--price", "0.1", "--price-header", "X-Cost"},
		{"--methods", "GET", "--paths", "/v1/*", "--price-header", "X-Cost"},
		{"--methods", "GET", "--paths", "/v1/*", "--expires", "tomorrow"},
	} {
		must(2, "", append([]string{"vault", "grant", "search", "bob"}, bad...)...)
	}
	if out := must(0, "", "vault", "grant", "search", "bob", "--methods", "get,post", "--paths", "/v1/*", "--price", "0.002", "--rate", "60/1m", "--expires", "24h"); !strings.Contains(out, "granted bob on search: GET,POST /v1/*, price 0.002, rate 60/1m") {
		t.Errorf("grant: %s", out)
	}
	must(0, "", "vault", "grant", "pricey", "bob", "--methods", "GET", "--paths", "/v1/*", "--price", "0.01")
	must(2, "", "vault", "tool", "add", "search", "web_search", "--method", "GET", "--path", "/v1/search")
	must(2, "", "vault", "tool", "add", "search", "web_search", "--method", "GET", "--path", "/v1/search", "--description", "d", "--schema", "{nope")
	must(0, "", "vault", "tool", "add", "search", "web_search", "--method", "get", "--path", "/v1/search", "--description", "search the web",
		"--schema", `{"type":"object","properties":{"q":{"type":"string"}}}`, "--body", "query")
	if out := must(0, "", "vault", "tool", "list", "search"); !strings.Contains(out, "web_search") || !strings.Contains(out, "search the web") {
		t.Errorf("tool list: %s", out)
	}
	if out := must(0, "", "vault", "show", "search"); !strings.Contains(out, "grants:") || !strings.Contains(out, "bob") || !strings.Contains(out, "web_search") {
		t.Errorf("show: %s", out)
	}

	// The agent's side.
	if out := must(0, "", "proxy", "search", "/v1/search?q=cats"); !strings.Contains(out, `"path":"/api/v1/search"`) || !strings.Contains(out, `"query":"q=cats"`) {
		t.Errorf("proxy: %s", out)
	}
	if out := must(0, "", "proxy", "search", "/v1/search", "--include"); !strings.HasPrefix(out, "HTTP/1.1 200 OK\r\n") || !strings.Contains(out, "Purser-Price: 0.002\r\n") {
		t.Errorf("proxy --include: %s", out)
	}
	bodyFile := filepath.Join(dir, "body.json")
	os.WriteFile(bodyFile, []byte(`{"n":1}`), 0o600)
	if out := must(0, "", "proxy", "search", "/v1/items", "--data", "@"+bodyFile, "-H", "Content-Type: application/json"); !strings.Contains(out, `"method":"POST"`) || !strings.Contains(out, `"body":"{\"n\":1}"`) {
		t.Errorf("proxy --data @FILE: %s", out)
	}
	var pj struct {
		Status  int    `json:"status"`
		SpendID string `json:"spend_id"`
		Price   string `json:"price"`
		Body    string `json:"body"`
	}
	if err := json.Unmarshal([]byte(must(0, "", "proxy", "search", "/v1/x", "--json")), &pj); err != nil || pj.Status != 200 || pj.SpendID == "" || pj.Price != "0.002" || !strings.Contains(pj.Body, "/api/v1/x") {
		t.Errorf("proxy --json: %+v %v", pj, err)
	}
	if out := must(ExitUpstream, "", "proxy", "search", "/v1/missing"); !strings.Contains(out, "no such thing") || !strings.Contains(out, "the upstream answered 404") {
		t.Errorf("no output")
	}
	must(ExitRefused, "", "proxy", "search", "/v1/items/1", "--method", "DELETE")
	if code, out, errOut := cli("", "proxy", "search", "/v1/../admin"); code == 0 || code == ExitUpstream || strings.Contains(out, "/api/admin") {
		t.Errorf("traversal: exit %d %s %s", code, out, errOut)
	}
	must(2, "", "proxy", "search", "v1/no-slash")

	// Above auto-approve: exit 3, the key to resend with printed;
	// approved, the same command with that key is carried out.
	code, o, e := cli("", "proxy", "pricey", "/v1/report")
	if code != ExitPending {
		t.Fatalf("pricey: %d %s %s", code, o, e)
	}
	spendID := regexp.MustCompile(`spd_[0-9a-z]+`).FindString(o)
	key := regexp.MustCompile(`--idempotency-key (\S+)`).FindStringSubmatch(e)
	if spendID == "" || key == nil {
		t.Fatalf("pricey printed no spend id or key: %s %s", o, e)
	}
	must(0, "", "approve", spendID)
	if out := must(0, "", "proxy", "pricey", "/v1/report", "--idempotency-key", key[1]); !strings.Contains(out, `"path":"/api/v1/report"`) {
		t.Errorf("approved call: %s", out)
	}

	if out := must(0, secret2, "vault", "rotate", "search", "--grace", "1h"); !strings.Contains(out, "version 2 is current") {
		t.Errorf("rotate: %s", out)
	}
	must(0, "", "proxy", "search", "/v1/after-rotate")
	if out := must(0, "", "vault", "revoke", "search", "bob"); !strings.Contains(out, "revoked bob's grant on search") {
		t.Errorf("revoke: %s", out)
	}
	if out := must(ExitRefused, "", "proxy", "search", "/v1/search"); !strings.Contains(out, "grant_revoked") {
		t.Errorf("after revoke: %s", out)
	}
	must(0, "", "vault", "tool", "rm", "search", "web_search")
	must(0, "", "vault", "rm", "search")
	if out := must(1, "", "vault", "show", "search"); !strings.Contains(out, "credential_not_found") {
		t.Errorf("show after rm: %s", out)
	}
	for _, s := range []string{secret, secret2} {
		if strings.Contains(printed.String(), s) {
			t.Errorf("the CLI printed a secret")
		}
	}
}

// TestVaultSecretNeverPrinted: however the owner gets it wrong, the
// secret is not printed: a secret given as an argument, as a --secret
// flag, written into --inject, or echoed back by a (misbehaving) server
// in its error. /dev/null on stdin is an empty secret.
func TestVaultSecretNeverPrinted(t *testing.T) {
	t.Parallel()
	const secret = "sk_live_never_print_me_0123456789"
	var mu sync.Mutex
	var got []string
	// This server misbehaves on purpose (Purser does not echo secrets):
	// it quotes what it received in its error.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, string(b))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		json.NewEncoder(w).Encode(map[string]any{"code": "secret_invalid", "message": "bad request " + string(b), "details": map[string]string{"secret": secret}})
	}))
	t.Cleanup(srv.Close)
	envv := map[string]string{"PURSER_SERVER": srv.URL, "PURSER_OWNER_TOKEN": "tok"}
	put := []string{"vault", "put", "k", "--upstream", "https://api.example.com", "--inject", "header:X-Api-Key={secret}"}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	tests := []struct {
		name  string
		stdin io.Reader
		args  []string
		code  int
		want  string
	}{
		{"argument", strings.NewReader(""), append(append([]string{}, put...), secret), 2, "never from the command line"},
		{"flag", strings.NewReader(""), append(append([]string{}, put...), "--secret="+secret), 2, "unknown flag"},
		{"flag with a space", strings.NewReader(""), append(append([]string{}, put...), "--secret", secret), 2, "unknown flag"},
		{"in --inject", strings.NewReader(""), []string{"vault", "put", "k", "--upstream", "https://api.example.com", "--inject", "header:X-Api-Key=" + secret}, 2, "must contain {secret}"},
		{"rotate argument", strings.NewReader(""), []string{"vault", "rotate", "k", secret}, 2, "never from the command line"},
		{"empty stdin", strings.NewReader("\n"), put, 2, "empty"},
		{"a device that is no terminal", devNull, put, 2, "empty"},
		{"server echoes it", strings.NewReader(secret + "\n"), put, 1, "[secret]"},
		{"server echoes it on rotate", strings.NewReader(secret), []string{"vault", "rotate", "k"}, 1, "[secret]"},
		{"json", strings.NewReader(secret), append(append([]string{}, put...), "--json"), 1, "[secret]"},
	}
	for _, tt := range tests {
		code, out, errOut := runCLIIn(t, envv, tt.stdin, tt.args...)
		if code != tt.code || !strings.Contains(out+errOut, tt.want) {
			t.Errorf("%s: exit %d (want %d), output %q lacks %q", tt.name, code, tt.code, out+errOut, tt.want)
		}
		if strings.Contains(out+errOut, secret) || strings.Contains(out+errOut, secret[8:]) {
			t.Errorf("%s: the secret was printed: %q", tt.name, out+errOut)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// Only the stdin cases reached the server, with the trailing newline
	// trimmed.
	if len(got) != 3 || !strings.Contains(got[0], `"secret":"`+secret+`"`) {
		t.Errorf("the server received %q", got)
	}
}

// TestProxyServe runs purser proxy serve against a real server: an
// unmodified client reaches the upstream at http://127.0.0.1:PORT/NAME/...;
// a foreign Host, any Origin and a browser's Sec-Fetch-Site are refused;
// an oversized body is refused before Purser is called; Purser's
// refusals come back as Purser answered them; the context's end stops
// it gracefully. A non-loopback --listen is refused.
func TestProxyServe(t *testing.T) {
	t.Parallel()
	const secret = "sk_test_cli_serve_0123456789"
	up := echoUpstream(t, secret)
	envv, _ := vaultServer(t)
	if code, out, errOut := runCLIIn(t, envv, strings.NewReader(secret), "vault", "put", "search", "--upstream", up.URL+"/api",
		"--inject", "header:X-Api-Key={secret}", "--allow-private"); code != 0 {
		t.Fatalf("put: %d %s %s", code, out, errOut)
	}
	if code, out, errOut := runCLI(t, envv, "vault", "grant", "search", "bob", "--methods", "GET,POST", "--paths", "/v1/*", "--price", "0.002"); code != 0 {
		t.Fatalf("grant: %d %s %s", code, out, errOut)
	}
	for _, addr := range []string{"0.0.0.0:0", "192.0.2.1:80", "example.com:80", "nonsense"} {
		if code, _, errOut := runCLI(t, envv, "proxy", "serve", "--listen", addr); code != 2 || !strings.Contains(errOut, "--listen") {
			t.Errorf("--listen %s: exit %d %s", addr, code, errOut)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var errb bytes.Buffer
	done := make(chan int, 1)
	go func() {
		e := &env{stdio: Stdio{In: strings.NewReader(""), Out: pw, Err: &errb}, getenv: func(k string) string { return envv[k] }}
		done <- e.run(ctx, []string{"proxy", "serve", "--listen", "127.0.0.1:0", "--json"})
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	var started struct {
		URL    string `json:"url"`
		Listen string `json:"listen"`
	}
	if err := json.Unmarshal([]byte(line), &started); err != nil || !strings.HasPrefix(started.URL, "http://127.0.0.1:") {
		t.Fatalf("startup line %q: %v", line, err)
	}
	base := started.URL
	do := func(method, url string, body io.Reader, h map[string]string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, body)
		for k, v := range h {
			if k == "Host" {
				req.Host = v
			} else {
				req.Header.Set(k, v)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := do("GET", base+"search/v1/search?q=a%20b", nil, map[string]string{"Authorization": "Bearer placeholder"})
	if resp.StatusCode != 200 || !strings.Contains(body, `"path":"/api/v1/search"`) || !strings.Contains(body, `"query":"q=a%20b"`) ||
		resp.Header.Get("Purser-Price") != "0.002" || resp.Header.Get("Purser-Spend-Id") == "" {
		t.Errorf("GET: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	resp, body = do("POST", base+"search/v1/items", strings.NewReader(`{"n":2}`), map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != 200 || !strings.Contains(body, `"body":"{\"n\":2}"`) {
		t.Errorf("POST: %d %s", resp.StatusCode, body)
	}
	// What a web page could send.
	for name, h := range map[string]map[string]string{
		"foreign Host":      {"Host": "evil.example:" + strings.Split(started.Listen, ":")[1]},
		"wrong port":        {"Host": "127.0.0.1:1"},
		"loopback Origin":   {"Origin": strings.TrimSuffix(base, "/")},
		"foreign Origin":    {"Origin": "https://evil.example"},
		"no-cors fetch":     {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},
		"null Origin":       {"Origin": "null"},
		"same-site browser": {"Sec-Fetch-Site": "same-origin"},
	} {
		if resp, body := do("GET", base+"search/v1/search", nil, h); resp.StatusCode != http.StatusForbidden || resp.Header.Get("Purser-Spend-Id") != "" {
			t.Errorf("%s: %d %s", name, resp.StatusCode, body)
		}
	}
	if resp, body := do("POST", base+"search/v1/upload", bytes.NewReader(make([]byte, 1<<20+1)), nil); resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("Purser-Error") != "body_too_large" {
		t.Errorf("oversized body: %d %s", resp.StatusCode, body)
	}
	if resp, body := do("DELETE", base+"search/v1/items/1", nil, nil); resp.StatusCode != http.StatusForbidden || resp.Header.Get("Purser-Error") != "spend_denied" || !strings.Contains(body, "grant_method_not_allowed") {
		t.Errorf("refused call: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	if resp, body := do("GET", base+"search/v1/../admin", nil, nil); resp.StatusCode < 400 || strings.Contains(body, "/api/admin") {
		t.Errorf("traversal: %d %s", resp.StatusCode, body)
	}
	if resp, _ := do("GET", base, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("no credential name: %d", resp.StatusCode)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("proxy serve exit %d: %s", code, errb.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("proxy serve did not stop")
	}
}

// TestBenchProxy runs bench --proxy against a real server: both phases
// answer, every proxied call is a captured spend of the price, and the
// bench's credential is gone afterwards.
func TestBenchProxy(t *testing.T) {
	t.Parallel()
	envv, _ := vaultServer(t)
	code, out, errOut := runCLI(t, envv, "bench", "--proxy", "--agents", "4", "--duration", "400ms", "--warmup", "100ms", "--amount", "0.001", "--json")
	if code != 0 {
		t.Fatalf("bench --proxy: exit %d\n%s\n%s", code, out, errOut)
	}
	var r benchProxyResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("bench --proxy --json: %v\n%s", err, out)
	}
	if r.Direct.Authorizations == 0 || r.Proxied.Authorizations == 0 || len(r.Direct.Errors) > 0 || len(r.Proxied.Errors) > 0 {
		t.Fatalf("bench --proxy: %+v", r)
	}
	if r.Price != "0.001" || r.Proxied.P50ms <= 0 {
		t.Errorf("bench --proxy: price %q, proxied p50 %v", r.Price, r.Proxied.P50ms)
	}
	if code, out, _ := runCLI(t, envv, "vault", "list", "--json"); code != 0 || strings.Contains(out, "bench-") {
		t.Errorf("the bench's credential is left behind: %s", out)
	}
	code, out, _ = runCLI(t, envv, "spends", "list", "--status", "captured", "--json")
	if code != 0 || !strings.Contains(out, `"rail":"apiproxy"`) && !strings.Contains(out, `"rail": "apiproxy"`) {
		t.Errorf("no captured apiproxy spend after bench --proxy: %.300s", out)
	}
}
