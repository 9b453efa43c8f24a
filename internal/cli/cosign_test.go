package cli

import (
	"bytes"
	"context"
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

	"github.com/ethereum/go-ethereum/crypto"

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

	// Share refresh: the real cosign server side.
	epoch      int64
	rf         *cosign.KeygenSession
	rsid       cosign.SessionID
	pending    *cosign.Share
	check      *cosign.SignSession
	failFinish bool
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
	case "POST /v1/agents/ag_1/cosign/refresh":
		var req api.KeygenRequest
		json.Unmarshal(body, &req)
		m, _ := base64.StdEncoding.DecodeString(req.Message)
		if len(m) > 40 && m[6] == 1 {
			copy(f.rsid[:], m[8:40])
			f.rf, _ = cosign.NewRefresh(f.share, f.rsid)
			f.pending = nil
		}
		out, err := f.rf.Handle(m)
		if err != nil {
			w.WriteHeader(400)
			io.WriteString(w, `{"code":"cosign_message_invalid","message":"bad"}`)
			return
		}
		if out == nil {
			f.pending, _ = f.rf.Share()
			json.NewEncoder(w).Encode(api.KeygenResponse{Done: true, Address: f.share.Address().Hex(), Epoch: f.epoch + 1})
			return
		}
		json.NewEncoder(w).Encode(api.KeygenResponse{Message: base64.StdEncoding.EncodeToString(out)})
	case "POST /v1/agents/ag_1/cosign/refresh/commit":
		var req api.KeygenRequest
		json.Unmarshal(body, &req)
		m, _ := base64.StdEncoding.DecodeString(req.Message)
		var err error
		f.check, err = cosign.NewServerSigner(r.Context(), f.pending, cosign.RefreshCheck("ag_1", f.epoch+1, f.rsid), &cosign.MemoryLedger{})
		out, herr := f.check.Handle(m)
		if err != nil || herr != nil {
			w.WriteHeader(400)
			io.WriteString(w, `{"code":"cosign_message_invalid","message":"bad"}`)
			return
		}
		json.NewEncoder(w).Encode(api.KeygenResponse{Message: base64.StdEncoding.EncodeToString(out)})
	case "POST /v1/agents/ag_1/cosign/refresh/finish":
		var req api.RefreshFinishRequest
		json.Unmarshal(body, &req)
		sig := common0x(req.Signature)
		d := cosign.RefreshCheck("ag_1", f.epoch+1, f.rsid).Digest
		if f.failFinish || len(sig) != 65 || !recovers(sig, d, f.share.Address().Hex()) {
			w.WriteHeader(400)
			io.WriteString(w, `{"code":"cosign_signature_invalid","message":"no"}`)
			return
		}
		if f.recovery != nil && req.Recovery == nil {
			w.WriteHeader(400)
			io.WriteString(w, `{"code":"invalid_request","message":"recovery needed"}`)
			return
		}
		if req.Recovery != nil {
			f.recovery, _ = json.Marshal(req.Recovery)
		}
		f.share, f.pending = f.pending, nil
		f.epoch++
		json.NewEncoder(w).Encode(api.RefreshFinishResponse{Address: f.share.Address().Hex(), Epoch: f.epoch})
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

func common0x(s string) []byte {
	b, _ := hex.DecodeString(strings.TrimPrefix(s, "0x"))
	return b
}

func recovers(sig []byte, digest [32]byte, address string) bool {
	rec := append(append([]byte(nil), sig[:64]...), sig[64]-27)
	pub, err := crypto.SigToPub(digest[:], rec)
	return err == nil && crypto.PubkeyToAddress(*pub).Hex() == address
}

// cosignWith runs a whole signing between an agent share (MarshalBinary
// form) and a server share over digest, and reports whether it produced a
// signature of the wallet.
func cosignWith(t *testing.T, agentShare []byte, server *cosign.Share, digest [32]byte) bool {
	t.Helper()
	as, err := cosign.UnmarshalShare(agentShare)
	if err != nil {
		t.Fatal(err)
	}
	b := cosign.SignBinding{AgentID: "ag_1", SpendID: "sp_check", Digest: digest}
	a, err := cosign.NewAgentSigner(as, b)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := cosign.NewServerSigner(context.Background(), server, b, &cosign.MemoryLedger{})
	if err != nil {
		t.Fatal(err)
	}
	m1, err := a.Start()
	if err != nil {
		return false
	}
	m2, err := srv.Handle(m1)
	if err != nil {
		return false
	}
	if _, err := a.Handle(m2); err != nil {
		return false
	}
	sig, err := a.Signature()
	return err == nil && recovers(sig[:], digest, server.Address().Hex())
}

// TestAgentRotateKey2of2: rotate-key on a 2of2 agent refreshes both shares
// through the real cosign protocol: the new key file has a new identity key
// and a new share, the address is unchanged, the new share co-signs with
// the server's new share and the old one no longer does. Without the
// current key file, or without a recovery key when the agent has a recovery
// copy, it refuses with nothing changed; when the switch is refused, the
// new key file keeps the old share (the agent keeps working).
func TestAgentRotateKey2of2(t *testing.T) {
	t.Parallel()
	f := &cosignFake{t: t, epoch: 1}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	envv := map[string]string{"PURSER_SERVER": srv.URL, "PURSER_OWNER_TOKEN": "tok"}
	rk := filepath.Join(dir, "owner.recovery")
	if code, _, errOut := runCLI(t, envv, "owner", "recovery-key", "--out", rk); code != 0 {
		t.Fatal(errOut)
	}
	keyFile := filepath.Join(dir, "bob.key")
	if code, _, errOut := runCLI(t, envv, "agent", "create", "bob", "--key-out", keyFile, "--custody", "2of2", "--recovery-key", rk+".pub"); code != 0 {
		t.Fatalf("create: %s", errOut)
	}
	_, oldShare, err := agentauth.ReadKeyFileShare(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	address, oldIdentity := f.share.Address().Hex(), f.identity
	newFile := filepath.Join(dir, "bob2.key")

	if code, _, errOut := runCLI(t, envv, "agent", "rotate-key", "bob", "--key-out", newFile); code != 2 || !strings.Contains(errOut, "--key-file") {
		t.Fatalf("2of2 rotate without the key file: exit %d: %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, envv, "agent", "rotate-key", "bob", "--key-out", newFile, "--key-file", keyFile); code != 2 || !strings.Contains(errOut, "--recovery-key") {
		t.Fatalf("rotate without the recovery key: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(newFile); err == nil || f.identity != oldIdentity || f.epoch != 1 {
		t.Fatal("a refused rotate-key changed something")
	}

	envv["PURSER_AGENT_KEY"] = keyFile // the default for --key-file
	code, out, errOut := runCLI(t, envv, "agent", "rotate-key", "bob", "--key-out", newFile, "--recovery-key", rk+".pub")
	if code != 0 {
		t.Fatalf("rotate-key: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, address) || f.epoch != 2 || f.share.Address().Hex() != address {
		t.Fatalf("rotate-key: epoch %d, output:\n%s", f.epoch, out)
	}
	if st, err := os.Stat(newFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("new key file: %v", err)
	}
	id2, newShare, err := agentauth.ReadKeyFileShare(newFile)
	if err != nil || bytes.Equal(newShare, oldShare) || agentauth.Address(id2).Hex() != f.identity || f.identity == oldIdentity {
		t.Fatalf("new key file: %v (share changed %v, identity rotated %v)", err, !bytes.Equal(newShare, oldShare), f.identity != oldIdentity)
	}
	for _, sh := range [][]byte{oldShare, newShare} {
		if frag := base64.StdEncoding.EncodeToString(sh)[100:140]; strings.Contains(out+errOut+string(f.recovery), frag) {
			t.Fatal("a share was printed or sent in clear")
		}
	}
	digest := [32]byte{1, 2, 3}
	if !cosignWith(t, newShare, f.share, digest) {
		t.Fatal("the new share does not co-sign with the server's new share")
	}
	if cosignWith(t, oldShare, f.share, digest) {
		t.Fatal("the old share still co-signs with the server's new share")
	}
	// The recovery copy is the new share's.
	rkPriv, err := readRecoveryKey(rk, recoveryPrivateField)
	if err != nil {
		t.Fatal(err)
	}
	var blob api.RecoveryBlob
	json.Unmarshal(f.recovery, &blob)
	if got, err := sdk.OpenRecoveryBlob(&blob, "ag_1", address, rkPriv); err != nil || !bytes.Equal(got, newShare) {
		t.Fatalf("recovery copy: %v", err)
	}

	// The switch refused: the identity is rotated, and the new key file
	// holds the still-active share.
	f.failFinish = true
	third := filepath.Join(dir, "bob3.key")
	if code, _, errOut := runCLI(t, envv, "agent", "rotate-key", "bob", "--key-out", third, "--key-file", newFile, "--recovery-key", rk+".pub"); code == 0 || !strings.Contains(errOut, "not refreshed") {
		t.Fatalf("refused switch: exit %d: %s", code, errOut)
	}
	id3, share3, err := agentauth.ReadKeyFileShare(third)
	if err != nil || !bytes.Equal(share3, newShare) || agentauth.Address(id3).Hex() != f.identity || f.epoch != 2 {
		t.Fatalf("after a refused switch: %v (old share kept %v)", err, bytes.Equal(share3, newShare))
	}
}
