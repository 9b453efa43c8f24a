package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/app"
	"github.com/purserhq/purser/internal/audit"
)

// writeApprovalExport writes a signed export of a passkey approval: the
// passkey added, the spend requested, the spend approved with an
// assertion over its terms. alter changes the assertion before the chain
// is sealed and signed, so the chain itself is consistent.
func writeApprovalExport(t *testing.T, path string, k testSigner, alter func(a *audit.PasskeyAssertion)) {
	t.Helper()
	b64 := base64.RawURLEncoding
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	spki, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	sig, nonce := "0x"+strings.Repeat("ab", 65), "0x"+strings.Repeat("01", 32)
	dig := audit.IntentDigest(sig, nonce)
	commit := audit.ApprovalCommit{SpendID: "spd_1", AgentID: "agt_1", IntentDigest: hex.EncodeToString(dig[:]), Amount: "5000000",
		Asset: "USDC", Network: "eip155:8453", Payee: "0x000000000000000000000000000000000000dead", Nonce: strings.Repeat("5a", 16),
		ExpiresAt: t0.Add(5 * time.Minute).UnixMilli()}
	cd, _ := json.Marshal(map[string]any{"type": "webauthn.get", "challenge": b64.EncodeToString(commit.Challenge()), "origin": "http://localhost:8402"})
	rp := sha256.Sum256([]byte("localhost"))
	ad := binary.BigEndian.AppendUint32(append(rp[:], 0x05), 1)
	h := sha256.Sum256(cd)
	d := sha256.Sum256(append(append([]byte{}, ad...), h[:]...))
	s, _ := ecdsa.SignASN1(rand.Reader, key, d[:])
	a := &audit.PasskeyAssertion{OwnerID: "own_1", CredentialID: "Y3JlZA", AuthenticatorData: b64.EncodeToString(ad),
		ClientDataJSON: b64.EncodeToString(cd), Signature: b64.EncodeToString(s), RPID: "localhost", Origin: "http://localhost:8402", Commit: commit}
	alter(a)
	events := []struct {
		actor   audit.Actor
		action  string
		details any
	}{
		{audit.Actor{Type: "owner", ID: "own_1"}, "owner.passkey_added", audit.PasskeyAdded{OwnerID: "own_1", OwnerName: "alice",
			CredentialID: "Y3JlZA", PublicKeySPKI: b64.EncodeToString(spki), Algorithm: -7, RPID: "localhost", Origin: "http://localhost:8402"}},
		{audit.Actor{Type: "agent", ID: "agt_1"}, "spend.request_approval", map[string]any{"spend_id": "spd_1", "agent_id": "agt_1",
			"payee": commit.Payee, "asset": "USDC", "network": "eip155:8453", "amount": "5000000", "host": "",
			"intent": map[string]any{"signature": sig, "nonce": nonce}}},
		{audit.Actor{Type: "owner", ID: "own_1"}, "spend.approve", map[string]any{"spend_id": "spd_1", "passkey": a}},
	}
	var buf bytes.Buffer
	w, _ := audit.NewWriter(&buf, k.Public(), t0)
	var prev [32]byte
	for i, ev := range events {
		raw, _ := json.Marshal(ev.details)
		e := &audit.Event{Seq: int64(i + 1), Time: t0.Add(time.Duration(i) * time.Second), Actor: ev.actor, Action: ev.action, Details: raw}
		if err := e.Seal(prev); err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
		w.WriteEvent(e) //nolint:errcheck
		if i == len(events)-1 {
			cp, _ := audit.SignCheckpoint(k, e.Seq, e.Hash, t0)
			w.WriteCheckpoint(cp) //nolint:errcheck
		}
	}
	w.Flush() //nolint:errcheck
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestAuditVerifyPasskeyApproval: `purser audit verify FILE` checks the
// owner's passkey signature on an approval offline: one byte of it
// altered fails the export though its chain and checkpoint are
// consistent.
func TestAuditVerifyPasskeyApproval(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k := testSigner{ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))}
	keyHex := hex.EncodeToString(k.Public())
	good, bad := filepath.Join(dir, "good.jsonl"), filepath.Join(dir, "bad.jsonl")
	writeApprovalExport(t, good, k, func(*audit.PasskeyAssertion) {})
	writeApprovalExport(t, bad, k, func(a *audit.PasskeyAssertion) {
		s, _ := base64.RawURLEncoding.DecodeString(a.Signature)
		s[12] ^= 1
		a.Signature = base64.RawURLEncoding.EncodeToString(s)
	})
	if code, out, errOut := runCLI(t, nil, "audit", "verify", good, "--audit-key", keyHex, "--data", dir); code != 0 || !strings.Contains(out, "1 approvals signed with an owner's passkey verified") {
		t.Fatalf("a good approval: exit %d %s %s", code, out, errOut)
	}
	code, out, _ := runCLI(t, nil, "audit", "verify", bad, "--audit-key", keyHex, "--data", dir)
	if code != 1 || !strings.Contains(out, "BROKEN at seq 3") || !strings.Contains(out, "approval assertion") {
		t.Fatalf("an altered approval: exit %d %q", code, out)
	}
}

// TestOwnerCommands: owner invite prints a one-time link on the public
// URL; owner list shows the owners; owner revoke refuses what does not
// exist and revokes what does; serve refuses a public URL that cannot
// carry passkeys.
func TestOwnerCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	srv, err := app.Start(ctx, app.Config{DataDir: dir, Listen: "127.0.0.1:0", PublicURL: "https://wallet.example.com", Stdout: io.Discard, Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(ctx) //nolint:errcheck // the test is over
	base := []string{"--server", "http://" + srv.Addr(), "--data", dir}
	cli := func(args ...string) (int, string) {
		code, out, errOut := runCLI(t, nil, append(args, base...)...)
		return code, out + errOut
	}
	code, out := cli("owner", "invite", "--name", "alice")
	if code != 0 || !strings.Contains(out, "enrolment link for new owner alice") || !strings.Contains(out, "https://wallet.example.com/enrol#") {
		t.Fatalf("owner invite: %d %s", code, out)
	}
	code, out = cli("owner", "invite", "--json")
	var inv struct {
		Link, Name string
	}
	if code != 0 || json.Unmarshal([]byte(out), &inv) != nil || inv.Name != "owner" || !strings.HasPrefix(inv.Link, "https://wallet.example.com/enrol#") {
		t.Fatalf("owner invite --json: %d %s", code, out)
	}
	if code, out := cli("owner", "list"); code != 0 || !strings.Contains(out, "no owners yet") {
		t.Fatalf("owner list: %d %s", code, out)
	}
	if code, out := cli("owner", "revoke", "alice"); code == 0 || !strings.Contains(out, "owner_not_found") {
		t.Fatalf("revoking an owner who never enrolled: %d %s", code, out)
	}
	if code, out := cli("owner", "revoke", "--passkey", "AAAA"); code == 0 || !strings.Contains(out, "owner_not_found") {
		t.Fatalf("revoking an unknown passkey: %d %s", code, out)
	}
	if code, _ := cli("owner", "revoke"); code != 2 {
		t.Fatalf("owner revoke without a name: exit %d, want 2", code)
	}
	for _, bad := range []string{"http://wallet.example.com", "http://127.0.0.1:8402", "https://x.example/path"} {
		if _, err := app.Start(ctx, app.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", PublicURL: bad, Stdout: io.Discard, Stderr: io.Discard}); err == nil || !strings.Contains(err.Error(), "public-url") {
			t.Errorf("serve --public-url %s: %v", bad, err)
		}
	}
}
