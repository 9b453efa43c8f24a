package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/internal/app"
)

// TestSecretsStayOutOfLogs drives a server with debug logging through
// agents, spends, approvals, freezes, a key rotation and audit exports,
// then looks for every secret in the logs, the exports and every answer
// an agent received.
func TestSecretsStayOutOfLogs(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	stdout := &lockedBuffer{}
	n := startApp(t, app.Config{LogLevel: "debug", Stderr: logs, Stdout: stdout})
	ctx := context.Background()

	var agentSeen [][]byte // every body an agent received
	var keys []*ecdsa.PrivateKey
	agentCall := func(key *ecdsa.PrivateKey, method, path string, body []byte) answer {
		a := send(t, method, n.url+path, body, signHeaders(t, n.domain(t), key, method, path, body, time.Now().Add(time.Minute)))
		agentSeen = append(agentSeen, a.body)
		return a
	}
	spendID := func(a answer) string {
		var v struct {
			SpendID string         `json:"spend_id"`
			Details map[string]any `json:"details"`
		}
		json.Unmarshal(a.body, &v)
		if v.SpendID == "" {
			v.SpendID, _ = v.Details["spend_id"].(string)
		}
		if v.SpendID == "" {
			t.Fatalf("no spend id in %v", a)
		}
		return v.SpendID
	}

	for _, name := range []string{"sec-a", "sec-b"} {
		keys = append(keys, n.newAgent(t, name, `{"per_tx_auto":"0.10","per_tx_max":"1","daily":"1.50"}`))
	}
	ka, kb := keys[0], keys[1]
	// Allowed, captured, released, pending then approved, pending then
	// denied, refused by the mandate.
	s1 := spendID(agentCall(ka, "POST", "/v1/agent/spends", spendBody("0.05", "k1")))
	agentCall(ka, "POST", "/v1/agent/spends", spendBody("0.05", "k1")) // idempotent replay
	agentCall(ka, "POST", "/v1/agent/spends/"+s1+"/capture", []byte(`{"amount":"0.04"}`))
	s2 := spendID(agentCall(ka, "POST", "/v1/agent/spends", spendBody("0.02", "")))
	agentCall(ka, "POST", "/v1/agent/spends/"+s2+"/release", []byte(`{}`))
	p1 := spendID(agentCall(kb, "POST", "/v1/agent/spends", spendBody("0.50", "")))
	p2 := spendID(agentCall(kb, "POST", "/v1/agent/spends", spendBody("0.60", "")))
	if _, err := n.owner.Approve(ctx, p1); err != nil {
		t.Fatalf("approve: %v", err)
	}
	if _, err := n.owner.Deny(ctx, p2, "no"); err != nil {
		t.Fatalf("deny: %v", err)
	}
	agentCall(kb, "GET", "/v1/agent/spends/"+p1, nil)
	if a := agentCall(kb, "POST", "/v1/agent/spends", spendBody("5", "")); a.code != "spend_denied" {
		t.Fatalf("spend above the cap: %v, want spend_denied", a)
	}
	agentCall(kb, "GET", "/v1/agent/limits", nil)
	if _, err := n.owner.Freeze(ctx, "sec-a"); err != nil {
		t.Fatal(err)
	}
	if a := agentCall(ka, "POST", "/v1/agent/spends", spendBody("0.01", "")); a.code != "spend_denied" {
		t.Fatalf("frozen agent's spend: %v, want spend_denied", a)
	}
	if _, err := n.owner.Unfreeze(ctx, "sec-a"); err != nil {
		t.Fatal(err)
	}
	newB := newKey(t)
	keys = append(keys, newB)
	if _, err := n.owner.RotateKey(ctx, "sec-b", agentauth.Address(newB).Hex()); err != nil {
		t.Fatal(err)
	}
	// Failures are logged too: a revoked key, a bad signature, a wrong
	// owner token, a panic-free internal path.
	agentCall(kb, "GET", "/v1/agent/limits", nil)
	agentCall(newB, "GET", "/v1/agent/limits", nil)
	send(t, "GET", n.url+"/v1/agents", nil, bearer(n.token+"0"))
	send(t, "GET", n.url+"/v1/agents", nil, bearer(n.token[:len(n.token)-1]))
	n.verify(t)

	var exports [][]byte
	for _, f := range []string{"jsonl", "csv"} {
		rc, err := n.owner.AuditExport(ctx, f)
		if err != nil {
			t.Fatalf("audit export %s: %v", f, err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte("spend.authorize")) {
			t.Fatalf("audit export %s has no spend.authorize event; is it an export at all? %.200s", f, b)
		}
		exports = append(exports, b)
	}
	tail := send(t, "GET", n.url+"/v1/audit/tail?n=1000", nil, bearer(n.token))
	exports = append(exports, tail.body)

	// The secrets, in every spelling they could leak in.
	secrets := map[string][]string{"owner token": {n.token}}
	for i, k := range keys {
		d := crypto.FromECDSA(k)
		secrets[fmt.Sprintf("agent key #%d", i)] = spellings(d)
	}
	kek, err := os.ReadFile(filepath.Join(n.dir, "kek"))
	if err != nil {
		t.Fatalf("kek: %v (the key file is what this test protects)", err)
	}
	secrets["kek"] = secretSpellings(kek)
	sealed, err := os.ReadFile(filepath.Join(n.dir, "seed.enc"))
	if err != nil {
		t.Fatalf("seed.enc: %v", err)
	}
	var seed struct {
		Ciphertext []byte `json:"ciphertext"`
	}
	if err := json.Unmarshal(sealed, &seed); err != nil || len(seed.Ciphertext) < 32 {
		t.Fatalf("seed.enc: no ciphertext (%v; %d bytes)", err, len(seed.Ciphertext))
	}
	secrets["seed.enc ciphertext"] = spellings(seed.Ciphertext)

	logged := logs.Bytes()
	if !bytes.Contains(logged, []byte(`"level":"DEBUG"`)) {
		t.Fatalf("no debug lines in the captured log; is the log captured? %.300s", logged)
	}
	haystacks := map[string][]byte{"server log": logged, "server stdout": stdout.Bytes()}
	for i, e := range exports {
		haystacks[[]string{"jsonl export", "csv export", "audit tail"}[i]] = e
	}
	for i, b := range agentSeen {
		haystacks[fmt.Sprintf("agent answer #%d", i)] = b
	}
	for what, vals := range secrets {
		for _, v := range vals {
			if len(v) < 8 {
				continue
			}
			for where, h := range haystacks {
				if bytes.Contains(bytes.ToLower(h), []byte(strings.ToLower(v))) {
					t.Errorf("%s leaks into the %s", what, where)
				}
			}
		}
	}
}

// spellings of raw secret bytes: hex and base64.
func spellings(b []byte) []string {
	return []string{hex.EncodeToString(b), base64.StdEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b)}
}

// secretSpellings of a key file: its bytes, their hex and base64 and, if
// the file holds the key as hex text, that text and the decoded key's.
func secretSpellings(b []byte) []string {
	out := append(spellings(b), string(b))
	txt := strings.TrimSpace(string(b))
	if d, err := hex.DecodeString(strings.TrimPrefix(txt, "0x")); err == nil && len(d) >= 16 {
		out = append(out, txt)
		out = append(out, spellings(d)...)
	}
	return out
}
