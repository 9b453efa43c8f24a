package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/sdk"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// runCLI runs the command line with the given environment.
func runCLI(t *testing.T, envv map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdio: Stdio{In: strings.NewReader(""), Out: &out, Err: &errb}, getenv: func(k string) string { return envv[k] }}
	code = e.run(context.Background(), args)
	return code, out.String(), errb.String()
}

func TestHelpGolden(t *testing.T) {
	t.Parallel()
	code, out, errOut := runCLI(t, nil, "help")
	if code != 0 || errOut != "" {
		t.Fatalf("purser help: exit %d, stderr %q", code, errOut)
	}
	golden := filepath.Join("testdata", "help.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if out != string(want) {
		t.Errorf("purser help differs from %s (run go test -update after checking):\n%s", golden, out)
	}
	for _, args := range [][]string{{"--help"}, {"-h"}} {
		if code, o, _ := runCLI(t, nil, args...); code != 0 || o != out {
			t.Errorf("purser %v: exit %d or different text", args, code)
		}
	}
}

// TestHelpListsEveryFlagAndExitCode: purser help names every mandate
// flag, every global flag of client commands and every exit code.
func TestHelpListsEveryFlagAndExitCode(t *testing.T) {
	t.Parallel()
	_, out, _ := runCLI(t, nil, "help")
	var want []string
	for _, d := range mandateFlagList {
		want = append(want, "--"+d.flag+" ")
	}
	want = append(want, "--server URL", "--data DIR", "--json", "--agent-key FILE")
	for _, w := range want {
		if !strings.Contains(out, "  "+w) {
			t.Errorf("purser help does not list %q", strings.TrimSpace(w))
		}
	}
	_, exits, _ := strings.Cut(out, "Exit codes:")
	exits, _, _ = strings.Cut(exits, "\n\n")
	for _, code := range []int{ExitOK, ExitFailure, ExitUsage, ExitPending, ExitRefused, ExitSellerFailed, ExitUpstream} {
		if !strings.Contains(exits, "\n  "+strconv.Itoa(code)+"  ") {
			t.Errorf("purser help's exit codes do not list %d: %q", code, exits)
		}
	}
}

func TestCommandHelpAndUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{[]string{"agent", "create", "--help"}, 0, "--key-out", ""},
		{[]string{"help", "agent", "create"}, 0, "usage: purser agent create", ""},
		{[]string{"spend", "--help"}, 0, "spend status SPEND_ID", ""},
		{[]string{"spend", "status", "-h"}, 0, "usage: purser spend status", ""},
		{[]string{"audit", "--help"}, 0, "audit verify", ""},
		{[]string{"serve", "--help"}, 0, "-hold-ttl", ""},
		{[]string{}, 2, "", "usage: purser"},
		{[]string{"nope"}, 2, "", `unknown command "nope"`},
		{[]string{"agent"}, 2, "", "needs a subcommand"},
		{[]string{"agent", "create", "bob"}, 2, "", "--key-out FILE is required"},
		{[]string{"agent", "create", "--bogus", "bob"}, 2, "", "unknown flag -bogus"},
		{[]string{"agent", "show"}, 2, "", "missing NAME"},
		{[]string{"agent", "show", "a", "b"}, 2, "", `unexpected argument "b"`},
		{[]string{"mandate", "set", "bob"}, 2, "", "nothing to change"},
		{[]string{"mandate", "set", "bob", "--valid-from", "soon"}, 2, "", "RFC 3339"},
		{[]string{"spend", "--payee", "0x1"}, 2, "", "--amount and --payee are required"},
		{[]string{"spend", "--amount", "1", "--payee", "0x1"}, 2, "", "no agent key"},
		{[]string{"audit", "export", "--format", "xml"}, 2, "", "jsonl or csv"},
		{[]string{"audit", "tail", "-n", "0"}, 2, "", "-n must be"},
		{[]string{"bench", "--agents", "0"}, 2, "", "--agents must be"},
		{[]string{"serve", "extra"}, 2, "", "unexpected argument"},
		{[]string{"x402", "fetch", "--help"}, 0, "-data BODY", ""},
		{[]string{"x402", "confirm", "--help"}, 0, "-H", ""},
		{[]string{"x402", "fetch"}, 2, "", "missing URL"},
		{[]string{"x402", "fetch", "http://x", "--data", "{}", "-H", "bad"}, 2, "", "use 'Name: value'"},
		{[]string{"pay", "0x1"}, 2, "", "missing AMOUNT"},
		{[]string{"facilitator"}, 2, "", "--rpc"},
		{[]string{"facilitator", "--rpc", "eip155:1"}, 2, "", "CAIP2=URL"},
		{[]string{"serve", "--rpc", "base=http://x"}, 2, "", "CAIP2=URL"},
		{[]string{"fund", "bob"}, 2, "", "missing AMOUNT"},
		{[]string{"demo", "extra"}, 2, "", "unexpected argument"},
		{[]string{"--server", "ftp://x", "agent", "list"}, 1, "", "no owner token"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			code, out, errOut := runCLI(t, nil, tt.args...)
			if code != tt.code || !strings.Contains(out, tt.inStdout) || !strings.Contains(errOut, tt.inStderr) {
				t.Errorf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, tt.code, out, errOut)
			}
		})
	}
}

func TestStatusExit(t *testing.T) {
	t.Parallel()
	tests := map[string]int{
		"authorized": 0, "captured": 0, "pending_approval": 3,
		"denied": 4, "expired": 4, "released": 4, "unknown": 5, "": 1,
	}
	for status, want := range tests {
		if got := statusExit(status); got != want {
			t.Errorf("statusExit(%q) = %d, want %d", status, got, want)
		}
	}
}

// fakeDomain is the fake servers' deployment.
var fakeDomain = agentauth.DeploymentDomain([32]byte{0xfa, 0xce, 31: 1})

// fakeServer plays the API for the CLI: agent requests must carry a
// signature agentauth verifies, owner requests the token "tok".
type fakeServer struct {
	t          *testing.T
	conflicts  atomic.Int32 // how many mandate PUTs to refuse with mandate_conflict
	puts       atomic.Int32
	createFail bool
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	reply := func(status int, v string) { w.WriteHeader(status); io.WriteString(w, v) }
	if r.URL.Path == "/v1/deployment" {
		reply(200, `{"deployment_id":"`+fakeDomain.DeploymentHex()+`","auth_versions":[2]}`)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/v1/agent/") {
		s, err := agentauth.Parse(r.Header)
		if err == nil {
			err = s.Verify(fakeDomain, r.Method, r.RequestURI, body, time.Now())
		}
		if err != nil {
			reply(401, `{"code":"signature_invalid","message":"bad signature"}`)
			return
		}
	} else if r.Header.Get("Authorization") != "Bearer tok" {
		reply(401, `{"code":"unauthorized","message":"bad token"}`)
		return
	}
	spend := func(id, status, decision, reasons string) string {
		return `{"spend_id":"` + id + `","status":"` + status + `","decision":"` + decision + `","reasons":[` + reasons + `],"amount":"0.05","asset":"USDC","payee":"0xdead"}`
	}
	switch r.Method + " " + r.URL.Path {
	case "POST /v1/agent/spends":
		var req map[string]string
		json.Unmarshal(body, &req)
		if req["rail"] != "custom" {
			f.t.Errorf("rail %q, want the default custom", req["rail"])
		}
		switch req["amount"] {
		case "0.05":
			reply(201, spend("sp_ok", "authorized", "allow", ""))
		case "0.20":
			reply(202, spend("sp_wait", "pending_approval", "needs_approval", `"over_auto"`))
		case "9":
			reply(403, `{"code":"spend_denied","message":"refused","details":{"spend_id":"sp_no","status":"denied","reasons":["daily_exceeded"],"spend":`+spend("sp_no", "denied", "deny", `"daily_exceeded"`)+`}}`)
		default:
			reply(400, `{"code":"amount_invalid","message":"bad amount","details":{"field":"amount"}}`)
		}
	case "GET /v1/agent/spends/sp_ok":
		reply(200, spend("sp_ok", "captured", "allow", ""))
	case "GET /v1/agent/spends/sp_wait":
		reply(200, spend("sp_wait", "pending_approval", "needs_approval", ""))
	case "GET /v1/agent/spends/sp_exp":
		reply(200, spend("sp_exp", "expired", "allow", ""))
	case "POST /v1/agents":
		if f.createFail {
			reply(409, `{"code":"agent_exists","message":"name taken"}`)
			return
		}
		var req struct {
			Name            string          `json:"name"`
			IdentityAddress string          `json:"identity_address"`
			Mandate         json.RawMessage `json:"mandate"`
		}
		json.Unmarshal(body, &req)
		if string(req.Mandate) != `{"daily":"10","per_tx_auto":"0.50"}` {
			f.t.Errorf("create mandate %s", req.Mandate)
		}
		reply(201, `{"id":"ag_1","name":"bob","status":"active","identity_address":"`+req.IdentityAddress+`","wallets":[{"network":"eip155:8453","address":"0x00000000000000000000000000000000000000aa"}]}`)
	case "GET /v1/agents/bob/mandate":
		v := 3 + f.puts.Load()
		reply(200, `{"agent_id":"ag_1","version":`+strconv.Itoa(int(v))+`,"mandate":{"daily":"10","hosts":["a.com"]}}`)
	case "PUT /v1/agents/bob/mandate":
		n := f.puts.Add(1)
		want := `{"mandate":{"daily":"20"},"base_version":` + strconv.Itoa(int(2+n)) + `}`
		if string(body) != want {
			f.t.Errorf("PUT %s, want %s", body, want)
		}
		if f.conflicts.Add(-1) >= 0 {
			reply(409, `{"code":"mandate_conflict","message":"changed"}`)
			return
		}
		reply(200, `{"agent_id":"ag_1","version":99,"mandate":{"daily":"20"}}`)
	case "GET /v1/approvals":
		reply(200, `{"approvals":[`+spend("sp_wait", "pending_approval", "needs_approval", "")+`]}`)
	default:
		reply(404, `{"code":"not_found","message":"no such thing"}`)
	}
}

func startFake(t *testing.T, f *fakeServer) (map[string]string, string) {
	t.Helper()
	f.t = t
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	key, _ := agentauth.GenerateKey()
	keyFile := filepath.Join(dir, "agent.key")
	if err := agentauth.WriteKeyFile(keyFile, key); err != nil {
		t.Fatal(err)
	}
	return map[string]string{"PURSER_SERVER": srv.URL, "PURSER_OWNER_TOKEN": "tok", "PURSER_AGENT_KEY": keyFile}, dir
}

func TestSpendExitCodes(t *testing.T) {
	t.Parallel()
	envv, _ := startFake(t, &fakeServer{})
	tests := []struct {
		name     string
		args     []string
		code     int
		inStdout string
	}{
		{"allowed", []string{"spend", "--amount", "0.05", "--payee", "0xdead"}, 0, "sp_ok"},
		{"pending", []string{"spend", "--amount=0.20", "--payee", "0xdead"}, 3, "sp_wait"},
		{"denied", []string{"spend", "--payee", "0xdead", "--amount", "9"}, 4, "daily_exceeded"},
		{"denied json", []string{"spend", "--payee", "0xdead", "--amount", "9", "--json"}, 4, `"spend_id": "sp_no"`},
		{"pending json", []string{"spend", "--json", "--amount", "0.20", "--payee", "0xdead"}, 3, `"status": "pending_approval"`},
		{"other error", []string{"spend", "--amount", "x", "--payee", "0xdead"}, 1, ""},
		{"status captured", []string{"spend", "status", "sp_ok"}, 0, "captured"},
		{"status pending", []string{"spend", "status", "sp_wait"}, 3, ""},
		{"status expired", []string{"spend", "status", "--json", "sp_exp"}, 4, `"expired"`},
		{"status missing", []string{"spend", "status", "sp_zzz"}, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := runCLI(t, envv, tt.args...)
			if code != tt.code || !strings.Contains(out, tt.inStdout) {
				t.Errorf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, tt.code, out, errOut)
			}
			if tt.code == 1 && !strings.Contains(errOut, "error: ") {
				t.Errorf("stderr %q lacks the error line", errOut)
			}
		})
	}
	if _, out, errOut := runCLI(t, envv, "spend", "--amount", "x", "--payee", "0xdead"); out != "" || errOut != "error: bad amount (amount_invalid)\n" {
		t.Errorf("error format: stdout %q stderr %q", out, errOut)
	}
}

func TestAgentCreateKeyFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		fail    bool
		code    int
		keyLeft bool
	}{
		{"created", false, 0, true},
		{"refused", true, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			envv, dir := startFake(t, &fakeServer{createFail: tt.fail})
			keyFile := filepath.Join(dir, "bob.key")
			code, out, errOut := runCLI(t, envv, "agent", "create", "--key-out", keyFile, "bob", "--per-tx-auto", "0.50", "--daily=10", "--json")
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr %s", code, tt.code, errOut)
			}
			st, err := os.Stat(keyFile)
			if tt.keyLeft != (err == nil) {
				t.Fatalf("key file present %v, want %v", err == nil, tt.keyLeft)
			}
			if !tt.keyLeft {
				return
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("key file mode %o", st.Mode().Perm())
			}
			key, err := agentauth.ReadKeyFile(keyFile)
			if err != nil {
				t.Fatal(err)
			}
			var a struct {
				IdentityAddress string `json:"identity_address"`
				Wallets         []struct{ Address string }
			}
			if err := json.Unmarshal([]byte(out), &a); err != nil || a.IdentityAddress != agentauth.Address(key).Hex() || len(a.Wallets) != 1 {
				t.Errorf("--json output %s (%v)", out, err)
			}
			// A second create must not overwrite the key.
			if code, _, errOut := runCLI(t, envv, "agent", "create", "bob2", "--key-out", keyFile); code != 1 || !strings.Contains(errOut, "exists") {
				t.Errorf("overwrite: exit %d, stderr %s", code, errOut)
			}
			if again, _ := agentauth.ReadKeyFile(keyFile); again == nil || !again.Equal(key) {
				t.Error("the key file was replaced")
			}
		})
	}
}

func TestMandateSetRetriesOnConflict(t *testing.T) {
	t.Parallel()
	tests := []struct {
		conflicts int32
		code      int
		puts      int32
	}{
		{0, 0, 1},
		{2, 0, 3},
		{3, 0, 4},
		{4, 1, 4},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(int(tt.conflicts)), func(t *testing.T) {
			t.Parallel()
			f := &fakeServer{}
			f.conflicts.Store(tt.conflicts)
			envv, _ := startFake(t, f)
			code, out, errOut := runCLI(t, envv, "mandate", "set", "bob", "--daily", "20", "--hosts", "none")
			if code != tt.code || f.puts.Load() != tt.puts {
				t.Fatalf("exit %d (want %d), %d PUTs (want %d); stderr %s", code, tt.code, f.puts.Load(), tt.puts, errOut)
			}
			if code == 0 && !strings.Contains(out, "version 99") {
				t.Errorf("stdout %q", out)
			}
			if code == 1 && !strings.Contains(errOut, "(mandate_conflict)") {
				t.Errorf("stderr %q", errOut)
			}
		})
	}
}

func TestApprovalsListJSON(t *testing.T) {
	t.Parallel()
	envv, _ := startFake(t, &fakeServer{})
	code, out, errOut := runCLI(t, envv, "approvals", "list", "--json")
	var v struct {
		Approvals []struct {
			SpendID string `json:"spend_id"`
		}
	}
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || len(v.Approvals) != 1 || v.Approvals[0].SpendID != "sp_wait" {
		t.Errorf("exit %d stdout %s stderr %s", code, out, errOut)
	}
	if code, out, _ := runCLI(t, envv, "--json", "approvals"); code != 0 || !strings.Contains(out, "sp_wait") {
		t.Errorf("leading --json and default subcommand: exit %d, %s", code, out)
	}
	if code, _, errOut := runCLI(t, map[string]string{"PURSER_SERVER": envv["PURSER_SERVER"], "PURSER_OWNER_TOKEN": "bad"}, "approvals", "list"); code != 1 || errOut != "error: bad token (unauthorized)\n" {
		t.Errorf("bad token: exit %d, stderr %q", code, errOut)
	}
}

// TestServeJSON: serve takes --json like every command; its startup
// line is then one JSON object on stdout (the logs are JSON on stderr
// either way).
func TestServeJSON(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var errb bytes.Buffer
	e := &env{stdio: Stdio{In: strings.NewReader(""), Out: pw, Err: &errb}, getenv: func(string) string { return "" }}
	done := make(chan int, 1)
	go func() {
		code := e.run(ctx, []string{"serve", "--json", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--log-level", "error"})
		pw.Close()
		done <- code
	}()
	var started struct {
		URL, Listen, Store, Data string
	}
	dec := json.NewDecoder(pr)
	dec.DisallowUnknownFields()
	err := dec.Decode(&started)
	cancel()
	go io.Copy(io.Discard, pr) //nolint:errcheck // drain until serve returns
	if code := <-done; code != 0 {
		t.Fatalf("serve --json: exit %d, stderr %s", code, errb.String())
	}
	if err != nil || !strings.HasPrefix(started.URL, "http://127.0.0.1:") || started.Store != "sqlite" || started.Data == "" {
		t.Fatalf("serve --json printed %+v (%v)", started, err)
	}
}

// TestOwnerTokenPlainHTTPWarning: before an owner command sends the
// token over http:// to a host that is not loopback, stderr says so.
func TestOwnerTokenPlainHTTPWarning(t *testing.T) {
	t.Parallel()
	f := &fakeServer{t: t}
	var sawRequest atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawRequest.Store(true)
		f.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	// Every name dials the fake server, so a remote-looking URL works.
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
	}}}
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	for _, tc := range []struct {
		server string
		warn   bool
	}{
		{"http://purser.example.com:" + port, true},
		{"http://192.0.2.10:" + port, true},
		{"http://127.0.0.1:" + port, false},
		{"http://localhost:" + port, false},
		{"http://[::1]:" + port, false},
	} {
		var out, errb bytes.Buffer
		e := &env{stdio: Stdio{In: strings.NewReader(""), Out: &out, Err: &errb},
			getenv: func(k string) string {
				return map[string]string{"PURSER_SERVER": tc.server, "PURSER_OWNER_TOKEN": "tok"}[k]
			},
			clientOpts: []sdk.Option{sdk.WithHTTPClient(hc)}}
		sawRequest.Store(false)
		if code := e.run(context.Background(), []string{"approvals"}); code != 0 || !sawRequest.Load() {
			t.Fatalf("%s: exit %d, request sent %v, stderr %q", tc.server, code, sawRequest.Load(), errb.String())
		}
		if got := strings.Contains(errb.String(), "warning: sending the owner token over plain http://"); got != tc.warn {
			t.Errorf("%s: warning %v, want %v (stderr %q)", tc.server, got, tc.warn, errb.String())
		}
	}
	for _, u := range []string{"https://purser.example.com", "http://127.0.0.2:1", "http://[::ffff:127.0.0.1]:1"} {
		if _, warn := plainHTTPRemote(u); warn {
			t.Errorf("%s: warned", u)
		}
	}
}

// TestPinnedDeployment: PURSER_DEPLOYMENT pins the id agent commands sign
// for; a server of another deployment refuses them.
func TestPinnedDeployment(t *testing.T) {
	t.Parallel()
	envv, _ := startFake(t, &fakeServer{})
	pin := func(id string) map[string]string {
		m := map[string]string{}
		for k, v := range envv {
			m[k] = v
		}
		m["PURSER_DEPLOYMENT"] = id
		return m
	}
	if code, out, errOut := runCLI(t, pin(fakeDomain.DeploymentHex()), "spend", "--amount", "0.05", "--payee", "0xdead"); code != 0 || !strings.Contains(out, "sp_ok") {
		t.Errorf("pinned to the server's deployment: exit %d, %q %q", code, out, errOut)
	}
	other := agentauth.DeploymentDomain([32]byte{9}).DeploymentHex()
	if code, _, errOut := runCLI(t, pin(other), "spend", "--amount", "0.05", "--payee", "0xdead"); code == 0 || !strings.Contains(errOut, "bad signature") {
		t.Errorf("pinned to another deployment: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, pin("0x12"), "spend", "--amount", "0.05", "--payee", "0xdead"); code == 0 || !strings.Contains(errOut, "PURSER_DEPLOYMENT") {
		t.Errorf("a malformed pin: exit %d, stderr %q", code, errOut)
	}
}
