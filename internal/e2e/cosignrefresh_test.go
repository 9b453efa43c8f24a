package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"path/filepath"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/cosign"
	"github.com/purserhq/purser/internal/keystore"
)

// refreshTo runs a share refresh of c over HTTP up to its check signature
// (the new shares are then pending on the server) and, with finish, the
// switch. It returns the agent's new share.
func (c *cosigner) refreshTo(t *testing.T, finish bool) *cosign.Share {
	t.Helper()
	owner := bearer(c.n.token)
	base := c.n.url + "/v1/agents/" + c.id + "/cosign/refresh"
	nonce := make([]byte, 32)
	rand.Read(nonce)
	sid := cosign.RefreshSessionID(c.id, c.share.PublicKey(), nonce)
	rf, err := cosign.NewRefresh(c.share, sid)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := rf.Start()
	if err != nil {
		t.Fatal(err)
	}
	var epoch int64
	for i := 0; ; i++ {
		b, _ := json.Marshal(api.KeygenRequest{Message: base64.StdEncoding.EncodeToString(msg)})
		ans := send(t, "POST", base, b, owner)
		c.keep(ans.body)
		var r api.KeygenResponse
		if ans.status != 200 || json.Unmarshal(ans.body, &r) != nil {
			t.Fatalf("refresh message %d: %s", i, ans)
		}
		if r.Done {
			if r.Address != c.wallet.Hex() {
				t.Fatalf("refresh answer %+v", r)
			}
			epoch = r.Epoch
			break
		}
		in, _ := base64.StdEncoding.DecodeString(r.Message)
		if msg, err = rf.Handle(in); err != nil || msg == nil {
			t.Fatalf("agent refresh on server message %d: %v", i, err)
		}
	}
	fresh, err := rf.Share()
	if err != nil || fresh.Address() != c.wallet {
		t.Fatalf("refreshed share: %v", err)
	}
	s, err := cosign.NewAgentSigner(fresh, cosign.RefreshCheck(c.id, epoch, sid))
	if err != nil {
		t.Fatal(err)
	}
	m1, err := s.Start()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(api.KeygenRequest{Message: base64.StdEncoding.EncodeToString(m1)})
	ans := send(t, "POST", base+"/commit", b, owner)
	c.keep(ans.body)
	var r api.KeygenResponse
	if ans.status != 200 || json.Unmarshal(ans.body, &r) != nil {
		t.Fatalf("refresh commit: %s", ans)
	}
	m2, _ := base64.StdEncoding.DecodeString(r.Message)
	if _, err := s.Handle(m2); err != nil {
		t.Fatalf("agent on the check's m2: %v", err)
	}
	sig, err := s.Signature()
	if err != nil {
		t.Fatalf("the new pair does not sign: %v", err)
	}
	if finish {
		fb, _ := json.Marshal(api.RefreshFinishRequest{Signature: "0x" + hex.EncodeToString(sig[:])})
		ans := send(t, "POST", base+"/finish", fb, owner)
		c.keep(ans.body)
		var done api.RefreshFinishResponse
		if ans.status != 200 || json.Unmarshal(ans.body, &done) != nil || done.Epoch != epoch || done.Address != c.wallet.Hex() {
			t.Fatalf("refresh finish: %s", ans)
		}
	}
	return fresh
}

// TestCosignRefresh: share refresh against the real server and dev chain.
// A refresh never finished leaves the old pair working; a finished one
// keeps the wallet, the new agent share pays a payout, and the old agent
// share is refused at its first message (it is also checked, in process,
// against the server's new share as stored: no signature). The stored
// share is sealed under the new epoch. A frozen agent may refresh, a
// revoked one may not. No share (old or new, either side) appears in the
// server's log, the audit export or any answer.
func TestCosignRefresh(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	n, logs := m.cosignServer(t)
	m.fundRelayer(t, n)
	c := m.newCosigner(t, n, "refreshed", `{"per_tx_auto":"2","per_tx_max":"5","daily":"10","rails":["payout"]}`, 2_000_000)
	chainID := devChainID(t, m)
	payout := func(what, amount string, atomic int64) {
		t.Helper()
		sp, ans := c.authorize(t, payoutReq(amount))
		if ans.status != 201 {
			t.Fatalf("%s: authorize: %s", what, ans)
		}
		fin, _ := c.cosignSpend(t, sp.SpendID, c.binding(t, sp, common.HexToAddress(payee), big.NewInt(atomic), m.dev.Token(), chainID))
		var done api.Spend
		if fin.status != 200 || json.Unmarshal(fin.body, &done) != nil || done.Status != "captured" {
			t.Fatalf("%s: finish: %s", what, fin)
		}
	}
	oldAgent := c.share
	oldRaw, _ := oldAgent.MarshalBinary()

	// Not finished: nothing changes.
	unfinished := c.refreshTo(t, false)
	payout("after a refresh not finished", "0.10", 100_000)
	unfinishedRaw, _ := unfinished.MarshalBinary()

	// Frozen agents may refresh (rotating after an incident).
	if _, err := n.owner.Freeze(context.Background(), c.id); err != nil {
		t.Fatal(err)
	}
	fresh := c.refreshTo(t, true)
	if _, err := n.owner.Unfreeze(context.Background(), c.id); err != nil {
		t.Fatal(err)
	}
	freshRaw, _ := fresh.MarshalBinary()
	c.share = fresh
	payout("with the new share", "0.25", 250_000)
	if got := m.balance(t, common.HexToAddress(payee)); got.Int64() != 350_000 {
		t.Fatalf("payee holds %s", got)
	}

	// The old share: refused at its first message, nothing signed.
	sp, ans := c.authorize(t, payoutReq("0.05"))
	if ans.status != 201 {
		t.Fatalf("authorize: %s", ans)
	}
	c.share = oldAgent
	b := c.binding(t, sp, common.HexToAddress(payee), big.NewInt(50_000), m.dev.Token(), chainID)
	c.share = fresh
	s, _ := cosign.NewAgentSigner(oldAgent, b)
	m1, _ := s.Start()
	if ans := c.post(t, "/v1/agent/spends/"+sp.SpendID+"/cosign", m1, "application/octet-stream"); ans.code != "cosign_message_invalid" {
		t.Fatalf("the old share's message: %s", ans)
	}

	// The server's stored share: the new epoch, the new pair's server half.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(n.dir, "purser.db")+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var sealedB64 string
	var epoch int64
	if err := db.QueryRow(`SELECT sealed_share, epoch FROM cosign_keys WHERE agent_id = ?`, c.id).Scan(&sealedB64, &epoch); err != nil {
		t.Fatal(err)
	}
	if epoch != 2 {
		t.Fatalf("epoch %d after one finished refresh, want 2", epoch)
	}
	ks, err := keystore.Open(n.dir, keystore.FileKEK{Path: filepath.Join(n.dir, "kek")})
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := base64.StdEncoding.DecodeString(sealedB64)
	if _, err := ks.Decrypt(sealed, fmt.Appendf(nil, "cosign:%s:1", c.id)); err == nil {
		t.Fatal("the new share opens under the old epoch's additional data")
	}
	serverRaw, err := ks.Decrypt(sealed, fmt.Appendf(nil, "cosign:%s:2", c.id))
	if err != nil {
		t.Fatal(err)
	}
	server, err := cosign.UnmarshalShare(serverRaw)
	if err != nil || server.Address() != c.wallet {
		t.Fatalf("stored server share: %v", err)
	}
	digest := [32]byte{7}
	if !signsWith(t, fresh, server, c.id, digest) {
		t.Fatal("the new pair does not sign in process")
	}
	for who, a := range map[string]*cosign.Share{"old": oldAgent, "unfinished": unfinished} {
		if signsWith(t, a, server, c.id, digest) {
			t.Fatalf("the %s agent share signs with the server's active share", who)
		}
	}

	// A revoked agent's shares are not refreshed.
	if _, err := n.owner.Revoke(context.Background(), c.id); err != nil {
		t.Fatal(err)
	}
	rb, _ := json.Marshal(api.KeygenRequest{Message: base64.StdEncoding.EncodeToString([]byte("x"))})
	if ans := send(t, "POST", n.url+"/v1/agents/"+c.id+"/cosign/refresh", rb, bearer(n.token)); ans.code != "invalid_state" {
		t.Fatalf("refresh of a revoked agent: %s", ans)
	}

	// Secrets: every share, old and new, on both sides.
	export, err := n.owner.AuditExport(context.Background(), "jsonl")
	if err != nil {
		t.Fatal(err)
	}
	exportB, _ := io.ReadAll(export)
	export.Close()
	if !bytes.Contains(exportB, []byte("agent.cosign_refresh")) {
		t.Fatal("the refresh is not audited")
	}
	haystacks := map[string][]byte{"server log": logs.Bytes(), "audit export": exportB}
	for i, a := range c.answers {
		haystacks[fmt.Sprintf("answer %d", i)] = a
	}
	for who, raw := range map[string][]byte{"old agent share": oldRaw, "new agent share": freshRaw, "unfinished agent share": unfinishedRaw, "new server share": serverRaw} {
		secret := raw[79:111]
		for nn, needle := range map[string][]byte{"hex": []byte(hex.EncodeToString(raw)), "base64": []byte(base64.StdEncoding.EncodeToString(raw)),
			"secret hex": []byte(hex.EncodeToString(secret)), "secret": secret} {
			for hn, h := range haystacks {
				if bytes.Contains(h, needle) {
					t.Errorf("%s (%s) appears in %s", who, nn, hn)
				}
			}
		}
	}
	if !bytes.Contains(logs.Bytes(), []byte("cosign signing message refused")) {
		t.Fatal("the old share's refused session was not logged: the log search searched nothing")
	}
	verifyChain(t, n)
}

// signsWith runs a whole signing in process between an agent share and a
// server share and reports whether it yields a signature of the wallet.
func signsWith(t *testing.T, agent, server *cosign.Share, agentID string, digest [32]byte) bool {
	t.Helper()
	b := cosign.SignBinding{AgentID: agentID, SpendID: "in-process", Digest: digest}
	a, err := cosign.NewAgentSigner(agent, b)
	if err != nil {
		t.Fatal(err)
	}
	s, err := cosign.NewServerSigner(context.Background(), server, b, &cosign.MemoryLedger{})
	if err != nil {
		t.Fatal(err)
	}
	m1, err := a.Start()
	if err != nil {
		return false
	}
	m2, err := s.Handle(m1)
	if err != nil {
		return false
	}
	if _, err := a.Handle(m2); err != nil {
		return false
	}
	_, err = a.Signature()
	return err == nil
}
