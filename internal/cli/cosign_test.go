package cli

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/internal/cosign"
	"github.com/purserhq/purser/sdk"
)

// cosignFake plays the owner API of co-signed wallets with the real cosign
// server side: create (custody 2of2), key generation, the recovery blob,
// identity rotation.
type cosignFake struct {
	t        *testing.T
	mu       sync.Mutex
	ks       *cosign.KeygenSession
	share    *cosign.Share
	identity string
	custody  string
	recovery []byte
}

func (f *cosignFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("Authorization") != "Bearer tok" {
		w.WriteHeader(401)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	agent := func() {
		a := api.Agent{ID: "ag_1", Name: "bob", Status: "active", IdentityAddress: f.identity, Custody: f.custody}
		if f.share != nil {
			a.Wallets = []api.Wallet{{Network: "eip155:84532", Address: f.share.Address().Hex(), Custody: api.WalletCustodyCosign}}
		}
		json.NewEncoder(w).Encode(a)
	}
	switch r.Method + " " + r.URL.Path {
	case "POST /v1/agents":
		var req api.CreateAgentRequest
		json.Unmarshal(body, &req)
		f.identity, f.custody = req.IdentityAddress, req.Custody
		w.WriteHeader(201)
		agent()
	case "GET /v1/agents/ag_1", "GET /v1/agents/bob":
		agent()
	case "POST /v1/agents/ag_1/rotate-key":
		var req api.RotateKeyRequest
		json.Unmarshal(body, &req)
		f.identity = req.IdentityAddress
		agent()
	case "POST /v1/agents/ag_1/cosign/keygen":
		var req api.KeygenRequest
		json.Unmarshal(body, &req)
		m, _ := base64.StdEncoding.DecodeString(req.Message)
		if f.ks == nil {
			var sid cosign.SessionID
			copy(sid[:], m[8:40])
			f.ks, _ = cosign.NewKeygen(cosign.RoleServer, sid)
		}
		out, err := f.ks.Handle(m)
		if err != nil {
			w.WriteHeader(400)
			io.WriteString(w, `{"code":"cosign_message_invalid","message":"bad"}`)
			return
		}
		if out == nil {
			f.share, _ = f.ks.Share()
			json.NewEncoder(w).Encode(api.KeygenResponse{Done: true, Address: f.share.Address().Hex(), PublicKey: "0x" + hex.EncodeToString(f.share.PublicKey())})
			return
		}
		json.NewEncoder(w).Encode(api.KeygenResponse{Message: base64.StdEncoding.EncodeToString(out)})
	case "POST /v1/agents/ag_1/cosign/recovery":
		f.recovery = body
		w.Write(body)
	case "GET /v1/agents/ag_1/cosign/recovery":
		w.Write(f.recovery)
	default:
		w.WriteHeader(404)
		io.WriteString(w, `{"code":"not_found","message":"no such thing"}`)
	}
}

// TestAgentCreate2of2: owner recovery-key, agent create --custody 2of2
// --recovery-key (the key file gains the share, the server its recovery
// blob), agent show says the custody, and agent recover restores a lost
// key file with the same share and a new identity key.
func TestAgentCreate2of2(t *testing.T) {
	t.Parallel()
	f := &cosignFake{t: t}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	envv := map[string]string{"PURSER_SERVER": srv.URL, "PURSER_OWNER_TOKEN": "tok"}

	rk := filepath.Join(dir, "owner.recovery")
	if code, _, errOut := runCLI(t, envv, "owner", "recovery-key", "--out", rk); code != 0 {
		t.Fatalf("recovery-key: exit %d: %s", code, errOut)
	}
	if st, err := os.Stat(rk); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private recovery key: %v", err)
	}
	if code, _, errOut := runCLI(t, envv, "owner", "recovery-key", "--out", rk); code == 0 || !strings.Contains(errOut, "exists") {
		t.Fatalf("recovery-key overwrote: %s", errOut)
	}

	keyFile := filepath.Join(dir, "bob.key")
	// The private key is refused: the owner keeps it offline.
	if code, _, errOut := runCLI(t, envv, "agent", "create", "bob", "--key-out", keyFile, "--custody", "2of2", "--recovery-key", rk); code == 0 || !strings.Contains(errOut, ".pub") {
		t.Fatalf("private recovery key accepted: %s", errOut)
	}
	if code, _, errOut := runCLI(t, envv, "agent", "create", "bob", "--key-out", keyFile, "--custody", "3of5"); code != 2 {
		t.Fatalf("--custody 3of5: exit %d: %s", code, errOut)
	}
	code, out, errOut := runCLI(t, envv, "agent", "create", "bob", "--key-out", keyFile, "--custody", "2of2", "--recovery-key", rk+".pub")
	if code != 0 {
		t.Fatalf("create: exit %d: %s", code, errOut)
	}
	if f.custody != "2of2" || f.share == nil || f.recovery == nil {
		t.Fatalf("server saw custody %q, keygen done %v, recovery %v", f.custody, f.share != nil, f.recovery != nil)
	}
	if !strings.Contains(out, f.share.Address().Hex()) || !strings.Contains(out, "custody") || !strings.Contains(out, "2of2") {
		t.Fatalf("create output lacks the wallet or custody:\n%s", out)
	}
	if st, _ := os.Stat(keyFile); st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %o", st.Mode().Perm())
	}
	id, share, err := agentauth.ReadKeyFileShare(keyFile)
	if err != nil || share == nil || agentauth.Address(id).Hex() != f.identity {
		t.Fatalf("key file: %v", err)
	}
	signer, err := sdk.LoadKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString(share)
	if strings.Contains(out+errOut, b64[100:140]) || strings.Contains(f.identity+string(f.recovery), b64[100:140]) {
		t.Fatal("the share was printed or sent in clear")
	}
	if signer.Address() != f.identity {
		t.Fatal("the key file's signer is another identity")
	}

	if code, out, _ := runCLI(t, envv, "agent", "show", "bob"); code != 0 || !strings.Contains(out, "2of2") {
		t.Fatalf("show: %s", out)
	}

	// The key file is lost: the owner recovers the agent in place.
	oldIdentity := f.identity
	newFile := filepath.Join(dir, "bob-recovered.key")
	if code, _, errOut := runCLI(t, envv, "agent", "recover", "bob", "--recovery-key", rk); code != 2 || !strings.Contains(errOut, "--key-out") {
		t.Fatalf("recover without --key-out: exit %d: %s", code, errOut)
	}
	code, out, errOut = runCLI(t, envv, "agent", "recover", "bob", "--recovery-key", rk, "--key-out", newFile)
	if code != 0 {
		t.Fatalf("recover: exit %d: %s", code, errOut)
	}
	id2, share2, err := agentauth.ReadKeyFileShare(newFile)
	if err != nil || !bytes.Equal(share2, share) || agentauth.Address(id2).Hex() != f.identity || f.identity == oldIdentity {
		t.Fatalf("recovered key file: %v (same share %v, identity rotated %v)", err, bytes.Equal(share2, share), f.identity != oldIdentity)
	}
	if strings.Contains(out+errOut, b64[100:140]) {
		t.Fatal("recover printed the share")
	}
	// Another recovery key cannot open it.
	rk2 := filepath.Join(dir, "other.recovery")
	runCLI(t, envv, "owner", "recovery-key", "--out", rk2)
	if code, _, errOut := runCLI(t, envv, "agent", "recover", "bob", "--recovery-key", rk2, "--key-out", filepath.Join(dir, "x.key")); code == 0 {
		t.Fatalf("recovered with another recovery key: %s", errOut)
	}
}
