package sdk

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/cosign"
)

// keygenServer plays the server's side of key generation with the real
// cosign package, and stores a recovery blob.
func keygenServer(t *testing.T) (*httptest.Server, func() *cosign.Share) {
	t.Helper()
	var (
		mu       sync.Mutex
		ks       *cosign.KeygenSession
		recovery []byte
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(401)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/v1/agents/a1":
			json.NewEncoder(w).Encode(AgentInfo{ID: "agt_1", Name: "a1", Custody: api.Custody2of2})
		case "/v1/agents/agt_1/cosign/keygen":
			var req api.KeygenRequest
			json.NewDecoder(r.Body).Decode(&req)
			m, _ := base64.StdEncoding.DecodeString(req.Message)
			if ks == nil {
				var sid cosign.SessionID
				copy(sid[:], m[8:40]) // the agent picks the id (frame header)
				ks, _ = cosign.NewKeygen(cosign.RoleServer, sid)
			}
			out, err := ks.Handle(m)
			if err != nil {
				w.WriteHeader(400)
				return
			}
			if out == nil {
				sh, _ := ks.Share()
				json.NewEncoder(w).Encode(api.KeygenResponse{Done: true, Address: sh.Address().Hex(), PublicKey: "0x" + hex.EncodeToString(sh.PublicKey())})
				return
			}
			json.NewEncoder(w).Encode(api.KeygenResponse{Message: base64.StdEncoding.EncodeToString(out)})
		case "/v1/agents/a1/cosign/recovery":
			if r.Method == http.MethodPost {
				recovery = must(json.Marshal(json.RawMessage(readAll(r))))
			}
			w.Write(recovery)
		default:
			w.WriteHeader(404)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, func() *cosign.Share {
		mu.Lock()
		defer mu.Unlock()
		s, _ := ks.Share()
		return s
	}
}

func readAll(r *http.Request) []byte {
	var b bytes.Buffer
	b.ReadFrom(r.Body)
	return b.Bytes()
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestCosignKeygenAndRecovery: the owner side runs key generation with the
// server; the share goes into the key file beside the identity key, loads
// into a co-signing Signer, and its recovery blob opens only with the
// owner's recovery key, for this agent and wallet.
func TestCosignKeygenAndRecovery(t *testing.T) {
	t.Parallel()
	srv, serverShare := keygenServer(t)
	o, err := NewOwner(srv.URL, "tok")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	k, err := o.CosignKeygen(ctx, "a1")
	if err != nil {
		t.Fatal(err)
	}
	if k.Address != serverShare().Address().Hex() || k.AgentID != "agt_1" {
		t.Fatalf("address %s, server's %s", k.Address, serverShare().Address().Hex())
	}
	path := filepath.Join(t.TempDir(), "agent.key")
	if _, err := GenerateKey(path); err != nil {
		t.Fatal(err)
	}
	if err := k.AddToKeyFile(path); err != nil {
		t.Fatal(err)
	}
	s, err := LoadKeyFile(path)
	if err != nil || shareOf(s) == nil || shareOf(s).Address().Hex() != k.Address {
		t.Fatalf("key file: %v", err)
	}
	raw, _ := shareOf(s).MarshalBinary()
	if out := k.String() + k.GoString(); strings.Contains(out, base64.StdEncoding.EncodeToString(raw)[:40]) {
		t.Fatal("CosignKey prints its share")
	}

	owner, _ := ecdh.X25519().GenerateKey(rand.Reader)
	blob, err := k.RecoveryBlob(owner.PublicKey().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if err := o.SetCosignRecovery(ctx, "a1", blob); err != nil {
		t.Fatal(err)
	}
	got, err := o.CosignRecovery(ctx, "a1")
	if err != nil || *got != *blob {
		t.Fatalf("stored blob: %v", err)
	}
	opened, err := OpenRecoveryBlob(got, k.AgentID, k.Address, owner.Bytes())
	if err != nil || !bytes.Equal(opened, raw) {
		t.Fatalf("open: %v", err)
	}
	if ct := must(base64.StdEncoding.DecodeString(blob.Ciphertext)); bytes.Contains(ct, raw[40:72]) {
		t.Fatal("ciphertext holds the share in clear")
	}
	other, _ := ecdh.X25519().GenerateKey(rand.Reader)
	if _, err := OpenRecoveryBlob(got, k.AgentID, k.Address, other.Bytes()); err == nil {
		t.Fatal("opened with another key")
	}
	forged := *got
	forged.PublicKey = base64.StdEncoding.EncodeToString(other.PublicKey().Bytes())
	if _, err := OpenRecoveryBlob(&forged, k.AgentID, k.Address, other.Bytes()); err == nil {
		t.Fatal("opened with another key claiming to be the recipient")
	}
	if _, err := OpenRecoveryBlob(got, "agt_other", k.Address, owner.Bytes()); err == nil {
		t.Fatal("opened as another agent's share")
	}
}
