package sdk_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/sdk"
)

// TestCosignRefreshE2E: a share refresh (agent rotate-key on a 2of2 agent)
// against the real server and dev chain. A refresh never finished changes
// nothing; a finished one keeps the address, the new key file pays, and
// the OLD share, even with a valid identity key, no longer co-signs
// anything. A bad check signature, a finish before the check and a
// finish without the new recovery copy are refused with nothing changed;
// no share appears in any answer or audit event.
func TestCosignRefreshE2E(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	ctx := context.Background()
	s := m.seller(t, false, route{pattern: "GET /item", amount: price})
	b := m.agent2of2(t, "refresher", green, 1_000_000)
	pay := func(what string, a *sdk.Agent, wantOK bool) {
		t.Helper()
		before := m.balance(t, s.payTo)
		hc := &http.Client{Transport: sdk.Transport(a, nil, nil)}
		resp, _, err := get(ctx, hc, s.url+"/item")
		ok := err == nil && resp.StatusCode == http.StatusOK
		if ok != wantOK {
			t.Fatalf("%s: paid %v (%v %v), want %v", what, ok, resp, err, wantOK)
		}
		if got := m.balance(t, s.payTo) - before; ok && got != price || !ok && got != 0 {
			t.Fatalf("%s: the seller received %d", what, got)
		}
	}
	pay("before any refresh", b.Agent, true)

	oldPath := filepath.Join(t.TempDir(), "old.key")
	oldShare := keyFileOf(t, m, b, oldPath)
	secrets := []string{base64.StdEncoding.EncodeToString(oldShare)[200:260]}

	// Recovery copy of the current share, so the refresh must replace it.
	rk, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if first, err := m.owner.CosignRecovery(ctx, b.id); !sdk.IsCode(err, "cosign_not_ready") {
		t.Fatalf("recovery before any: %+v %v", first, err)
	}

	// 1. A refresh run to its check but never finished: nothing changes.
	r0, err := m.owner.CosignRefresh(ctx, b.id, oldShare)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if r0.Key.Address != b.wallet.Hex() || r0.Epoch != 2 {
		t.Fatalf("refresh: address %s epoch %d", r0.Key.Address, r0.Epoch)
	}
	pay("after a refresh not finished", b.Agent, true)

	// 2. A new refresh replaces it; a finish before the check is refused.
	// (The server cannot open a recovery copy: any ciphertext stands in for one.)
	oldBlob := &api.RecoveryBlob{PublicKey: base64.StdEncoding.EncodeToString(rk.PublicKey().Bytes()), Ciphertext: base64.StdEncoding.EncodeToString([]byte("the old share, sealed"))}
	if err := m.owner.SetCosignRecovery(ctx, b.id, oldBlob); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r, err := m.owner.CosignRefresh(ctx, b.id, oldShare)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	t.Logf("refresh with its check signature over loopback: %s", time.Since(start))
	if err := r0.Finish(ctx, nil); !sdk.IsCode(err, "cosign_signature_invalid") && !sdk.IsCode(err, "cosign_not_ready") {
		t.Fatalf("finish of the replaced refresh: %v", err)
	}
	// Garbage for a share is refused on the client, before any message.
	if _, err := m.owner.CosignRefresh(ctx, b.id, []byte("not a share")); err == nil {
		t.Fatal("a refresh from garbage started")
	}
	// Without the new recovery copy: refused, since the old one holds a dead share.
	if err := r.Finish(ctx, nil); !sdk.IsCode(err, "invalid_request") {
		t.Fatalf("finish without the recovery copy: %v", err)
	}
	pay("after refused finishes", b.Agent, true)

	// 3. The rotation as the CLI does it: new key file, identity, finish.
	newPath := filepath.Join(t.TempDir(), "new.key")
	newID, err := agentauth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Key.WriteKeyFile(newPath, newID); err != nil {
		t.Fatal(err)
	}
	if _, err := m.owner.RotateKey(ctx, b.id, agentauth.Address(newID).Hex()); err != nil {
		t.Fatal(err)
	}
	blob, err := r.Key.RecoveryBlob(rk.PublicKey().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Finish(ctx, blob); err != nil {
		t.Fatalf("finish: %v", err)
	}
	if err := r.Finish(ctx, blob); err != nil {
		t.Fatalf("finish again (the same signature): %v", err)
	}
	_, newShare, err := agentauth.ReadKeyFileShare(newPath)
	if err != nil || len(newShare) == 0 || string(newShare) == string(oldShare) {
		t.Fatalf("new key file: %v", err)
	}
	secrets = append(secrets, base64.StdEncoding.EncodeToString(newShare)[200:260])
	a, err := m.owner.Agent(ctx, b.id)
	if err != nil || len(a.Wallets) == 0 || a.Wallets[0].Address != b.wallet.Hex() {
		t.Fatalf("agent after refresh: %+v %v", a, err)
	}
	got, err := m.owner.CosignRecovery(ctx, b.id)
	if err != nil {
		t.Fatal(err)
	}
	opened, err := sdk.OpenRecoveryBlob(got, b.id, b.wallet.Hex(), rk.Bytes())
	if err != nil || string(opened) != string(newShare) {
		t.Fatalf("the stored recovery copy is not the new share: %v", err)
	}
	newAgent := loadAgent(t, m, newPath)
	pay("with the new key file", newAgent, true)
	if got := m.balance(t, b.wallet); got != 1_000_000-4*price {
		t.Fatalf("the wallet holds %d", got)
	}

	// 4. The old share is dead: the old key file's identity is revoked, and
	// the old share under the NEW identity key produces no signature.
	pay("with the old key file", loadAgent(t, m, oldPath), false)
	zombie := filepath.Join(t.TempDir(), "zombie.key")
	if err := agentauth.WriteKeyFileShare(zombie, newID, oldShare); err != nil {
		t.Fatal(err)
	}
	pay("with the old share and the live identity", loadAgent(t, m, zombie), false)
	pay("with the new key file again", newAgent, true)

	// 5. A second refresh from the retired share is refused at once (its
	// frames are MACed with the old chain key); the live one works.
	if _, err := m.owner.CosignRefresh(ctx, b.id, oldShare); !sdk.IsCode(err, "cosign_message_invalid") {
		t.Fatalf("refresh from the retired share: %v", err)
	}

	// No share in any audit event; the refresh is audited.
	evs, err := m.owner.AuditTail(ctx, 500)
	if err != nil {
		t.Fatal(err)
	}
	refreshes := 0
	for _, e := range evs {
		for _, sec := range secrets {
			if strings.Contains(string(e.Raw)+string(e.Details), sec) {
				t.Fatalf("audit event %s carries a share", e.Action)
			}
		}
		if e.Action == "agent.cosign_refresh" {
			refreshes++
		}
	}
	if refreshes != 1 {
		t.Fatalf("%d agent.cosign_refresh events, want 1", refreshes)
	}
}

// keyFileOf copies buyer b's key file (identity and share) to path.
func keyFileOf(t *testing.T, m *market, b *buyer, path string) []byte {
	t.Helper()
	src := b.keyPath
	id, share, err := agentauth.ReadKeyFileShare(src)
	if err != nil || len(share) == 0 {
		t.Fatalf("key file %s: %v", src, err)
	}
	if err := agentauth.WriteKeyFileShare(path, id, share); err != nil {
		t.Fatal(err)
	}
	return share
}

func loadAgent(t *testing.T, m *market, path string) *sdk.Agent {
	t.Helper()
	s, err := sdk.LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := sdk.NewAgent(m.url, s, sdk.WithHTTPClient(&http.Client{Timeout: time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	return a
}
