package sdk

import (
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/purserhq/purser/internal/agentauth"
)

// hsmKey is a Signer the SDK does not know: it only signs digests, as a
// keychain or an HSM would. sign is the key it really signs with.
type hsmKey struct {
	addr  string
	sign  *ecdsa.PrivateKey
	calls atomic.Int32
}

func (h *hsmKey) Address() string { return h.addr }

func (h *hsmKey) SignHash(_ context.Context, d [32]byte) ([]byte, error) {
	h.calls.Add(1)
	return crypto.Sign(d[:], h.sign)
}

// TestCustomSigner: a Signer outside the SDK signs requests the server
// verifies; one whose signature does not recover to its address (a
// keychain holding another key) fails before anything is sent.
func TestCustomSigner(t *testing.T) {
	t.Parallel()
	key, _ := agentauth.GenerateKey()
	other, _ := agentauth.GenerateKey()
	var reached atomic.Int32
	srv := verifyingServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		reached.Add(1)
		io.WriteString(w, `{"agent_id":"ag_1"}`)
	})
	ctx := context.Background()

	good := &hsmKey{addr: agentauth.Address(key).Hex(), sign: key}
	a, err := NewAgent(srv.URL, good)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Limits(ctx); err != nil || good.calls.Load() != 1 || reached.Load() != 1 {
		t.Fatalf("custom signer: %v (%d signatures, %d requests)", err, good.calls.Load(), reached.Load())
	}

	wrong := &hsmKey{addr: agentauth.Address(key).Hex(), sign: other}
	b, _ := NewAgent(srv.URL, wrong)
	if _, err := b.Limits(ctx); err == nil || !strings.Contains(err.Error(), "does not recover") || reached.Load() != 1 {
		t.Fatalf("a signer holding another key: %v (%d requests reached the server)", err, reached.Load())
	}

	local, _ := NewKey(key)
	if s := local.(interface{ String() string }).String(); strings.Contains(strings.ToLower(s), hexKey(key)) || strings.Contains(fmt.Sprintf("%#v %+v", local, local), hexKey(key)) {
		t.Errorf("the key shows in %q", s)
	}
}

func hexKey(k *ecdsa.PrivateKey) string { return hex.EncodeToString(crypto.FromECDSA(k)) }
