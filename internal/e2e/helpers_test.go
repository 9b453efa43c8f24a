package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/internal/app"
	"github.com/purserhq/purser/sdk"
)

// payee is the payee of every test spend.
const payee = "0x000000000000000000000000000000000000dEaD"

// node is one running server as a test sees it: its base URL, its owner
// token and an owner client.
type node struct {
	url   string
	token string
	dir   string
	owner *sdk.Owner
}

// startApp starts Purser in process on 127.0.0.1:0 (SQLite in a fresh
// temporary directory unless cfg says otherwise) and shuts it down at
// cleanup.
func startApp(t testing.TB, cfg app.Config) *node {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	cfg.Listen = "127.0.0.1:0"
	srv, err := app.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("app.Start: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return newNode(t, "http://"+srv.Addr(), cfg.DataDir)
}

// newNode reads the owner token of dataDir and builds the owner client.
func newNode(t testing.TB, url, dataDir string) *node {
	t.Helper()
	tok := readToken(t, dataDir)
	owner, err := sdk.NewOwner(url, tok, sdk.WithHTTPClient(&http.Client{Timeout: 60 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	return &node{url: url, token: tok, dir: dataDir, owner: owner}
}

func readToken(t testing.TB, dataDir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "owner.token"))
	if err != nil {
		t.Fatalf("owner token: %v", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		t.Fatal("owner.token is empty")
	}
	return tok
}

// agentClient is a client of n that signs with key.
func (n *node) agentClient(t *testing.T, key *ecdsa.PrivateKey) *sdk.Agent {
	t.Helper()
	c, err := sdk.NewAgent(n.url, signer(t, key), sdk.WithHTTPClient(&http.Client{Timeout: 60 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newAgent creates an agent with a fresh key and the given mandate JSON
// ("" for none) and returns the key.
func (n *node) newAgent(t *testing.T, name, mandate string) *ecdsa.PrivateKey {
	t.Helper()
	key := newKey(t)
	req := sdk.CreateAgentRequest{Name: name, IdentityAddress: agentauth.Address(key).Hex()}
	if mandate != "" {
		req.Mandate = json.RawMessage(mandate)
	}
	if _, err := n.owner.CreateAgent(context.Background(), req); err != nil {
		t.Fatalf("create agent %s: %v", name, err)
	}
	return key
}

func (n *node) verify(t *testing.T) *sdk.AuditVerifyResult {
	t.Helper()
	r, err := n.owner.AuditVerify(context.Background())
	if err != nil {
		t.Fatalf("audit verify: %v", err)
	}
	if !r.OK {
		t.Fatalf("audit verify: ok=false: %+v", r)
	}
	return r
}

func (n *node) limits(t *testing.T, ref string) *sdk.Limits {
	t.Helper()
	l, err := n.owner.Limits(context.Background(), ref)
	if err != nil {
		t.Fatalf("limits of %s: %v", ref, err)
	}
	return l
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := agentauth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// answer is a raw HTTP answer with its decoded error fields, if any.
type answer struct {
	status  int
	body    []byte
	code    string
	details map[string]any
}

func (a answer) String() string {
	b := string(a.body)
	if len(b) > 300 {
		b = b[:300] + "…"
	}
	return fmt.Sprintf("HTTP %d %s", a.status, b)
}

var rawHTTP = &http.Client{Timeout: 60 * time.Second}

// send sends one raw request; prep may set headers.
func send(t testing.TB, method, url string, body []byte, prep func(h http.Header)) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if prep != nil {
		prep(req.Header)
	}
	resp, err := rawHTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read answer: %v", method, url, err)
	}
	a := answer{status: resp.StatusCode, body: raw}
	var e struct {
		Code    string         `json:"code"`
		Details map[string]any `json:"details"`
	}
	if json.Unmarshal(raw, &e) == nil {
		a.code, a.details = e.Code, e.Details
	}
	return a
}

// domain is the signature domain n publishes (GET /v1/deployment).
func (n *node) domain(t *testing.T) agentauth.Domain {
	t.Helper()
	d, err := n.owner.Deployment(context.Background())
	if err != nil {
		t.Fatalf("deployment of %s: %v", n.url, err)
	}
	id, err := agentauth.ParseDeployment(d.DeploymentID)
	if err != nil {
		t.Fatalf("deployment of %s: %v", n.url, err)
	}
	return agentauth.DeploymentDomain(id)
}

// signHeaders signs method+pathQuery+body in dom with key, a fresh nonce and the
// given expiry, and returns a prep function that applies the signature.
func signHeaders(t *testing.T, dom agentauth.Domain, key *ecdsa.PrivateKey, method, pathQuery string, body []byte, expires time.Time) func(h http.Header) {
	t.Helper()
	nonce, err := agentauth.NewNonce()
	if err != nil {
		t.Fatal(err)
	}
	s, err := agentauth.Sign(key, dom, method, pathQuery, body, nonce, expires)
	if err != nil {
		t.Fatal(err)
	}
	return s.Apply
}

func bearer(tok string) func(h http.Header) {
	return func(h http.Header) { h.Set("Authorization", "Bearer "+tok) }
}

// micro parses a non-negative USD decimal string into micro-USD.
func micro(t *testing.T, s string) int64 {
	t.Helper()
	ip, fp, _ := strings.Cut(s, ".")
	if len(fp) > 6 {
		t.Fatalf("amount %q has more than 6 decimals", s)
	}
	fp += strings.Repeat("0", 6-len(fp))
	i, err1 := strconv.ParseInt(ip, 10, 64)
	f, err2 := strconv.ParseInt(fp, 10, 64)
	if err1 != nil || err2 != nil || i < 0 {
		t.Fatalf("amount %q is not a non-negative decimal", s)
	}
	return i*1_000_000 + f
}

// lockedBuffer is an io.Writer safe for concurrent use (server logs).
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf.Bytes()...)
}

func spendBody(amount, idem string) []byte {
	m := map[string]string{"rail": "custom", "payee": payee, "amount": amount}
	if idem != "" {
		m["idempotency_key"] = idem
	}
	b, _ := json.Marshal(m)
	return b
}

// signer is key as an sdk.Signer.
func signer(t testing.TB, key *ecdsa.PrivateKey) sdk.Signer {
	t.Helper()
	s, err := sdk.NewKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// isPending reports whether err is the SDK's needs-approval outcome.
func isPending(err error) bool {
	var ar *sdk.ApprovalRequiredError
	return errors.As(err, &ar)
}
