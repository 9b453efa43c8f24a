package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/internal/app"
	"github.com/purserhq/purser/sdk"
)

// exportedIntent is the signed request an agent event carries.
type exportedIntent struct {
	Signer      string `json:"signer"`
	Method      string `json:"method"`
	Path        string `json:"path"`
	Body        string `json:"body"`
	Signature   string `json:"signature"`
	Nonce       string `json:"nonce"`
	Expires     int64  `json:"expires"`
	AuthVersion int    `json:"auth_version"`
	Deployment  string `json:"deployment"`
}

type exportedEvent struct {
	Type    string `json:"type"`
	Seq     int64  `json:"seq"`
	Action  string `json:"action"`
	Subject string `json:"subject"`
	Actor   struct {
		Type string `json:"type"`
		ID   string `json:"id"`
	} `json:"actor"`
	Details json.RawMessage `json:"details"`
}

// exportEvents reads n's audit export (jsonl) and returns its events.
func exportEvents(t *testing.T, n *node) []exportedEvent {
	t.Helper()
	rc, err := n.owner.AuditExport(context.Background(), "jsonl")
	if err != nil {
		t.Fatalf("audit export: %v", err)
	}
	defer rc.Close()
	var out []exportedEvent
	sc := bufio.NewScanner(rc)
	sc.Buffer(nil, 8<<20)
	for sc.Scan() {
		var e exportedEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		if e.Type == "event" {
			out = append(out, e)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// recoverIntent recomputes the EIP-712 digest of an exported intent from
// its fields alone and recovers the signer's address with go-ethereum's
// ecrecover (not Purser's verifier).
func recoverIntent(t *testing.T, in exportedIntent) common.Address {
	t.Helper()
	var dom agentauth.Domain
	switch in.AuthVersion {
	case agentauth.VersionBound:
		id, err := agentauth.ParseDeployment(in.Deployment)
		if err != nil {
			t.Fatalf("intent deployment: %v", err)
		}
		dom = agentauth.DeploymentDomain(id)
	case agentauth.VersionUnbound:
		dom = agentauth.UnboundDomain()
	default:
		t.Fatalf("intent auth_version %d", in.AuthVersion)
	}
	var nonce [32]byte
	if b := common.FromHex(in.Nonce); len(b) == 32 {
		copy(nonce[:], b)
	} else {
		t.Fatalf("intent nonce %q", in.Nonce)
	}
	sig := common.FromHex(in.Signature)
	if len(sig) != 65 {
		t.Fatalf("intent signature %q", in.Signature)
	}
	if sig[64] >= 27 {
		sig[64] -= 27
	}
	digest := agentauth.Digest(dom, common.HexToAddress(in.Signer), in.Method, in.Path,
		crypto.Keccak256Hash([]byte(in.Body)), nonce, time.Unix(in.Expires, 0))
	pub, err := crypto.SigToPub(digest[:], sig)
	if err != nil {
		t.Fatalf("recover: %v", err)
	}
	return crypto.PubkeyToAddress(*pub)
}

// TestExportProvesEveryAgentEvent drives agents through every kind of
// request that leaves an agent event (authorize green, yellow and red;
// capture; release; confirm; an x402 payment and its settlement report),
// exports the audit trail and, for every event whose actor is an agent,
// recomputes the EIP-712 digest from the exported intent alone and
// recovers the agent's registered identity address.
func TestExportProvesEveryAgentEvent(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	n := m.purserOn(t, "")
	ctx := context.Background()
	dep, err := n.owner.Deployment(ctx)
	if err != nil {
		t.Fatal(err)
	}

	key := n.newAgent(t, "prover", `{"per_tx_auto":"0.10","per_tx_max":"1","daily":"10"}`)
	a := n.agentClient(t, key)
	green, err := a.Authorize(ctx, sdk.AuthorizeRequest{Rail: "custom", Payee: payee, Amount: "0.05", Memo: `quotes " \ <b>&amp; é ☃ 😀`})
	if err != nil || green.Decision != "allow" {
		t.Fatalf("green: %+v %v", green, err)
	}
	if _, err := a.Capture(ctx, green.SpendID, "0.04"); err != nil {
		t.Fatalf("capture: %v", err)
	}
	green2, err := a.Authorize(ctx, sdk.AuthorizeRequest{Rail: "custom", Payee: payee, Amount: "0.06"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Release(ctx, green2.SpendID); err != nil {
		t.Fatalf("release: %v", err)
	}
	yellow, err := a.Authorize(ctx, sdk.AuthorizeRequest{Rail: "custom", Payee: payee, Amount: "0.50"})
	if !isPending(err) || yellow.Decision != "needs_approval" {
		t.Fatalf("yellow: %+v %v", yellow, err)
	}
	if _, err := n.owner.Approve(ctx, yellow.SpendID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Confirm(ctx, yellow.SpendID); err != nil {
		t.Fatalf("confirm: %v", err)
	}
	if _, err := a.Capture(ctx, yellow.SpendID, ""); err != nil {
		t.Fatalf("capture approved: %v", err)
	}
	if _, err := a.Authorize(ctx, sdk.AuthorizeRequest{Rail: "custom", Payee: payee, Amount: "5"}); !isAPI(err, 403, "spend_denied") {
		t.Fatalf("red: %v", err)
	}

	// An x402 payment: authorize (signed by Purser), then the agent's
	// settlement report.
	p, _ := m.agentFor(t, n, "x402-prover", `{"per_tx_auto":"0.10","per_tx_max":"1","daily":"5","rails":["x402"]}`, 1_000_000)
	if res, err := p.Fetch(ctx, sdk.FetchRequest{URL: m.sellerURL + "/item"}); err != nil || res.Outcome != sdk.Paid {
		t.Fatalf("x402 fetch: %+v %v", res, err)
	}

	identity := map[string]string{} // agent id → identity address
	agents, err := sdk.Collect(n.owner.Agents(ctx))
	if err != nil {
		t.Fatal(err)
	}
	for _, ag := range agents {
		identity[ag.ID] = ag.IdentityAddress
	}
	seen := map[string]int{}
	for _, e := range exportEvents(t, n) {
		if e.Actor.Type != "agent" {
			continue
		}
		var d struct {
			Intent *exportedIntent `json:"intent"`
		}
		if err := json.Unmarshal(e.Details, &d); err != nil || d.Intent == nil {
			t.Errorf("agent event %d %s has no intent: %s", e.Seq, e.Action, e.Details)
			continue
		}
		in := *d.Intent
		want, ok := identity[e.Actor.ID]
		if !ok {
			t.Fatalf("event %d: unknown agent %s", e.Seq, e.Actor.ID)
		}
		if got := recoverIntent(t, in); got.Hex() != want || in.Signer != want {
			t.Errorf("event %d %s: recovered %s, signer %s, agent's identity %s", e.Seq, e.Action, got.Hex(), in.Signer, want)
		}
		if in.AuthVersion != 2 || in.Deployment != dep.DeploymentID {
			t.Errorf("event %d: auth_version %d deployment %s, want 2 and %s", e.Seq, in.AuthVersion, in.Deployment, dep.DeploymentID)
		}
		seen[e.Action+" "+in.Method+" "+path.Base(in.Path)]++
	}
	// Every kind of agent request that leaves an event left a provable one.
	for _, k := range []string{"spend.authorize POST spends", "spend.deny POST spends", "spend.request_approval POST spends",
		"spend.capture POST capture", "spend.release POST release", "spend.capture POST settlement"} {
		if seen[k] == 0 {
			t.Errorf("no agent event %q among %v", k, seen)
		}
	}
	verifyChain(t, n)
}

// TestSignedBodiesAreUnambiguous: a signed body that two JSON readers
// could read differently is refused before anything is stored (invalid
// UTF-8, which Go would store re-encoded so the signature no longer
// checks; duplicate keys; keys differing only in case, which Go matches
// to fields case-insensitively), at every level, rail_request included.
// A body that is accepted is kept byte for byte.
func TestSignedBodiesAreUnambiguous(t *testing.T) {
	t.Parallel()
	n := startApp(t, app.Config{})
	ctx := context.Background()
	key := n.newAgent(t, "strict", `{"per_tx_max":"1","daily":"10"}`)
	dom := n.domain(t)
	const spends = "/v1/agent/spends"
	post := func(path string, body []byte) answer {
		return send(t, "POST", n.url+path, body, signHeaders(t, dom, key, "POST", path, body, time.Now().Add(time.Minute)))
	}
	good, err := n.agentClient(t, key).Authorize(ctx, sdk.AuthorizeRequest{Rail: "custom", Payee: payee, Amount: "0.01"})
	if err != nil {
		t.Fatal(err)
	}
	before := n.verify(t)

	cases := []struct {
		name, path, body, reason string
	}{
		{"invalid utf8 in a value", spends, "{\"rail\":\"custom\",\"payee\":\"" + payee + "\",\"amount\":\"0.01\",\"memo\":\"caf\xe9\"}", "invalid_utf8"},
		{"invalid utf8 in a key", spends, "{\"rail\":\"custom\",\"payee\":\"" + payee + "\",\"amount\":\"0.01\",\"\xff\":1}", "invalid_utf8"},
		{"invalid utf8 in rail_request", spends, "{\"rail\":\"custom\",\"payee\":\"" + payee + "\",\"amount\":\"0.01\",\"rail_request\":{\"x\":\"\xc3\"}}", "invalid_utf8"},
		{"lone surrogate", spends, `{"rail":"custom","payee":"` + payee + `","amount":"0.01","memo":"\ud800"}`, "invalid_utf8"},
		{"duplicate amount", spends, `{"rail":"custom","payee":"` + payee + `","amount":"0.01","amount":"0.99"}`, "duplicate_key"},
		{"case variant amount", spends, `{"rail":"custom","payee":"` + payee + `","amount":"0.01","AMOUNT":"0.99"}`, "case_variant_key"},
		{"case-only field name", spends, `{"rail":"custom","payee":"` + payee + `","Amount":"0.01"}`, "key_case_mismatch"},
		{"duplicate in rail_request", spends, `{"rail":"custom","payee":"` + payee + `","amount":"0.01","rail_request":{"offer":{"payTo":"a","payTo":"b"}}}`, "duplicate_key"},
		{"case variant in rail_request", spends, `{"rail":"custom","payee":"` + payee + `","amount":"0.01","rail_request":{"url":"a","URL":"b"}}`, "case_variant_key"},
		{"case-only key in an x402 rail_request", spends, `{"rail":"x402","rail_request":{"URL":"https://seller.example/item","x402_version":2,"offer":{}}}`, "key_case_mismatch"},
		{"capture duplicate", spends + "/" + good.SpendID + "/capture", `{"amount":"0.001","amount":"0.01"}`, "duplicate_key"},
		{"capture case", spends + "/" + good.SpendID + "/capture", `{"Amount":"0.001"}`, "key_case_mismatch"},
		{"release invalid utf8", spends + "/" + good.SpendID + "/release", "{\"\xfe\":1}", "invalid_utf8"},
	}
	for _, tc := range cases {
		a := post(tc.path, []byte(tc.body))
		if a.status != 400 || a.code != "invalid_request" || a.details["reason"] != tc.reason {
			t.Errorf("%s: %v, want 400 invalid_request reason %s", tc.name, a, tc.reason)
		}
	}
	after := n.verify(t)
	if after.HeadSeq != before.HeadSeq || after.HeadHash != before.HeadHash {
		t.Errorf("refused bodies changed the audit trail: head %d → %d", before.HeadSeq, after.HeadSeq)
	}
	if sp, err := n.owner.Spend(ctx, good.SpendID); err != nil || sp.Status != sdk.StatusAuthorized {
		t.Errorf("the spend after refused captures: %+v %v", sp, err)
	}

	// Accepted bodies are kept exactly: escapes, HTML characters,
	// U+2028, non-ASCII, odd spacing, all as signed.
	exact := "{ \"rail\" : \"custom\",\"payee\":\"" + payee + "\",\n\"amount\":\"0.02\",\"memo\":\"<a href=\\\"x\\\">&amp;</a> \\u00e9 é \u2028 \\/ \\ud83d\\ude00 😀\\t\" }"
	if a := post(spends, []byte(exact)); a.status != http.StatusCreated {
		t.Fatalf("exact body: %v", a)
	}
	found := false
	for _, e := range exportEvents(t, n) {
		var d struct {
			Intent *exportedIntent `json:"intent"`
		}
		json.Unmarshal(e.Details, &d)
		if d.Intent != nil && strings.Contains(d.Intent.Body, "href") {
			found = true
			if d.Intent.Body != exact {
				t.Errorf("exported body differs from the signed one:\n got %q\nwant %q", d.Intent.Body, exact)
			}
			if got := recoverIntent(t, *d.Intent); got != agentauth.Address(key) {
				t.Errorf("recovered %s from the exported body", got.Hex())
			}
		}
	}
	if !found {
		t.Error("the exact body's event is not in the export")
	}
}

// TestSignatureBoundToDeployment: the same agent key registered on two
// Pursers. A request signed for A and replayed to B is refused; so is a
// version 1 (unbound) signature, unless B accepts them for a transition,
// when the audit trail records it as version 1.
func TestSignatureBoundToDeployment(t *testing.T) {
	t.Parallel()
	a := startApp(t, app.Config{})
	b := startApp(t, app.Config{})
	c := startApp(t, app.Config{AcceptUnboundSignatures: true})
	const mandate = `{"per_tx_max":"1","daily":"10"}`
	key := newKey(t)
	for _, n := range []*node{a, b, c} {
		if _, err := n.owner.CreateAgent(context.Background(), sdk.CreateAgentRequest{Name: "twin", IdentityAddress: agentauth.Address(key).Hex(), Mandate: json.RawMessage(mandate)}); err != nil {
			t.Fatal(err)
		}
	}
	if a.domain(t) == b.domain(t) {
		t.Fatal("two deployments share a deployment id")
	}
	const spends = "/v1/agent/spends"
	exp := time.Now().Add(time.Minute)
	body := spendBody("0.01", "")
	forA := signHeaders(t, a.domain(t), key, "POST", spends, body, exp)
	before := b.verify(t)
	if got := send(t, "POST", b.url+spends, body, forA); got.status != 401 || got.code != "signature_invalid" {
		t.Errorf("A's request replayed to B: %v, want 401 signature_invalid", got)
	}
	if after := b.verify(t); after.HeadSeq != before.HeadSeq {
		t.Errorf("the replay changed B's audit trail")
	}
	if got := send(t, "POST", a.url+spends, body, forA); got.status != http.StatusCreated {
		t.Errorf("A's request on A: %v", got)
	}

	unbound := signHeaders(t, agentauth.UnboundDomain(), key, "POST", spends, body, exp)
	if got := send(t, "POST", b.url+spends, body, unbound); got.status != 401 || got.code != "signature_unbound" {
		t.Errorf("version 1 signature on B: %v, want 401 signature_unbound", got)
	}
	if got := send(t, "POST", c.url+spends, body, unbound); got.status != http.StatusCreated {
		t.Errorf("version 1 signature on C (accepting them): %v", got)
	}
	var d sdk.Deployment
	if err := json.Unmarshal(send(t, "GET", c.url+"/v1/deployment", nil, nil).body, &d); err != nil || len(d.AuthVersions) != 2 {
		t.Errorf("C's deployment: %+v %v", d, err)
	}
	var v1 int
	for _, e := range exportEvents(t, c) {
		var det struct {
			Intent *exportedIntent `json:"intent"`
		}
		json.Unmarshal(e.Details, &det)
		if det.Intent != nil && det.Intent.AuthVersion == 1 {
			v1++
			if det.Intent.Deployment != "" || recoverIntent(t, *det.Intent) != agentauth.Address(key) {
				t.Errorf("version 1 intent: %+v", det.Intent)
			}
		}
	}
	if v1 != 1 {
		t.Errorf("C recorded %d version 1 intents, want 1", v1)
	}
}

// sendHost sends a request with the given Host header.
func sendHost(t *testing.T, method, url, host string, prep func(h http.Header)) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	if prep != nil {
		prep(req.Header)
	}
	resp, err := rawHTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, body: raw}
	var e struct {
		Code string `json:"code"`
	}
	if json.Unmarshal(raw, &e) == nil {
		a.code = e.Code
	}
	return a
}

// TestHostHeaderChecked: a DNS-rebinding page reaches a loopback server
// under its own name; those requests are refused, on /metrics and the
// API alike. Loopback names, IP literals and configured names work.
func TestHostHeaderChecked(t *testing.T) {
	t.Parallel()
	n := startApp(t, app.Config{HostNames: []string{"purser.example.com"}})
	port := n.url[strings.LastIndex(n.url, ":")+1:]
	for _, host := range []string{"evil.example", "evil.example:" + port, "localhost.evil.example", "127.0.0.1.nip.io:" + port, "purser.example.com.evil"} {
		for _, path := range []string{"/metrics", "/v1/agents", "/healthz", "/v1/deployment", "/nope"} {
			if a := sendHost(t, "GET", n.url+path, host, bearer(n.token)); a.status != http.StatusMisdirectedRequest || a.code != "host_not_served" {
				t.Errorf("Host %s %s: %v, want 421 host_not_served", host, path, a)
			}
		}
	}
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "LOCALHOST", "localhost.", "[::1]:" + port, "10.0.0.7", "purser.example.com", "Purser.Example.Com:443"} {
		if a := sendHost(t, "GET", n.url+"/v1/agents", host, bearer(n.token)); a.status != http.StatusOK {
			t.Errorf("Host %s: %v, want 200", host, a)
		}
	}
	open := startApp(t, app.Config{HostNames: []string{"*"}})
	if a := sendHost(t, "GET", open.url+"/healthz", "evil.example", nil); a.status != http.StatusOK {
		t.Errorf("--host-names '*': %v", a)
	}
}

// TestMetricsAuth: /metrics is open by default and needs the owner token
// with MetricsAuth "owner".
func TestMetricsAuth(t *testing.T) {
	t.Parallel()
	openNode := startApp(t, app.Config{})
	if a := send(t, "GET", openNode.url+"/metrics", nil, nil); a.status != 200 || !bytes.Contains(a.body, []byte("purser_http_requests_total")) {
		t.Errorf("open /metrics: %v", a)
	}
	n := startApp(t, app.Config{MetricsAuth: "owner"})
	if a := send(t, "GET", n.url+"/metrics", nil, nil); a.status != 401 || a.code != "unauthorized" {
		t.Errorf("/metrics without the token: %v, want 401", a)
	}
	if a := send(t, "GET", n.url+"/metrics", nil, bearer("pso_wrong")); a.status != 401 {
		t.Errorf("/metrics with a wrong token: %v, want 401", a)
	}
	if a := send(t, "GET", n.url+"/metrics", nil, bearer(n.token)); a.status != 200 || !bytes.Contains(a.body, []byte("purser_http_requests_total")) {
		t.Errorf("/metrics with the token: %v", a)
	}
	if _, err := app.Start(context.Background(), app.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", MetricsAuth: "token"}); err == nil {
		t.Error("an unknown metrics-auth started")
	}
}

func modeOf(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestDataDirModes: the data directory is 0700 and the database, its WAL,
// the owner token and the sealed keys are 0600, on a fresh start and
// after a start over files left readable by others.
func TestDataDirModes(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	check := func(when string) {
		t.Helper()
		if m := modeOf(t, dir); m != 0o700 {
			t.Errorf("%s: data dir mode %04o, want 0700", when, m)
		}
		for _, f := range []string{"purser.db", "purser.db-wal", "purser.db-shm", "owner.token", "kek", "seed.enc"} {
			if m := modeOf(t, filepath.Join(dir, f)); m != 0o600 {
				t.Errorf("%s: %s mode %04o, want 0600", when, f, m)
			}
		}
	}
	logs := &lockedBuffer{}
	srv, err := app.Start(context.Background(), app.Config{DataDir: dir, Listen: "127.0.0.1:0", Stderr: logs})
	if err != nil {
		t.Fatal(err)
	}
	check("fresh start")
	deployment := func() string {
		t.Helper()
		var d sdk.Deployment
		if err := json.Unmarshal(send(t, "GET", "http://"+srv.Addr()+"/v1/deployment", nil, nil).body, &d); err != nil || d.DeploymentID == "" {
			t.Fatalf("deployment: %+v %v", d, err)
		}
		return d.DeploymentID
	}
	first := deployment()
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// An older version, a restore or a loose umask left them readable.
	os.Chmod(dir, 0o755)
	for _, f := range []string{"purser.db", "owner.token", "kek", "seed.enc"} {
		if err := os.Chmod(filepath.Join(dir, f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srv, err = app.Start(context.Background(), app.Config{DataDir: dir, Listen: "127.0.0.1:0", Stderr: logs})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	check("restart over loose modes")
	// The id comes from the seed: the same data directory (or a second
	// node given a copy of it) is the same deployment.
	if again := deployment(); again != first {
		t.Errorf("deployment id changed across a restart: %s → %s", first, again)
	}
	if !bytes.Contains(logs.Bytes(), []byte(`"fixed file mode"`)) {
		t.Error("fixing the modes left no log line")
	}
}
