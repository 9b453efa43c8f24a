package sdk

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/internal/cosign"
)

// EnvAgentKey names the environment variable that holds the path of the
// agent's key file (see KeyFromEnv).
const EnvAgentKey = "PURSER_AGENT_KEY"

// Signer is an agent's identity key. It only authenticates the agent's
// requests to Purser: it holds no money and signs no payment. Implement
// it to keep the key in an OS keychain or an HSM; LoadKeyFile, KeyFromEnv
// and NewKey give one backed by a key in memory.
type Signer interface {
	// Address is the key's 0x address, as registered with the agent.
	Address() string
	// SignHash signs a 32-byte digest with the secp256k1 key and returns
	// r ‖ s ‖ v (65 bytes, v 0/1 or 27/28). The SDK checks that the
	// signature recovers to Address before sending it.
	SignHash(ctx context.Context, digest [32]byte) ([]byte, error)
}

// localKey is a Signer over a key in this process's memory, with the
// agent's share of its co-signed wallet key when it has one.
type localKey struct {
	key   *ecdsa.PrivateKey
	share *cosign.Share
}

// NewKey returns a Signer for a secp256k1 private key.
func NewKey(key *ecdsa.PrivateKey) (Signer, error) {
	if key == nil || key.Curve != crypto.S256() {
		return nil, errors.New("sdk: NewKey: want a secp256k1 private key")
	}
	return localKey{key: key}, nil
}

// GenerateKey makes a new agent identity key and writes it to path (mode
// 0600; an existing file is not overwritten). Register its Address with
// the owner (Owner.CreateAgent) to make it an agent.
func GenerateKey(path string) (Signer, error) {
	k, err := agentauth.GenerateKey()
	if err != nil {
		return nil, err
	}
	if err := agentauth.WriteKeyFile(path, k); err != nil {
		return nil, err
	}
	return localKey{key: k}, nil
}

// LoadKeyFile reads an agent key file (as `purser agent create --key-out`
// and GenerateKey write it). A file readable by other users is refused.
// When the file holds a co-signing share (a 2of2 agent), an Agent made
// with the key co-signs its spends with Purser by itself.
func LoadKeyFile(path string) (Signer, error) {
	k, raw, err := agentauth.ReadKeyFileShare(path)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return localKey{key: k}, nil
	}
	defer clear(raw)
	share, err := cosign.UnmarshalShare(raw)
	if err != nil || share.Role() != cosign.RoleAgent {
		return nil, fmt.Errorf("sdk: key file %s: the cosign-share line is not an agent's co-signing share", path)
	}
	return localKey{key: k, share: share}, nil
}

// shareOf is the co-signing share behind a Signer, nil for none.
func shareOf(s Signer) *cosign.Share {
	if k, ok := s.(localKey); ok {
		return k.share
	}
	return nil
}

// KeyFromEnv loads the key file named by PURSER_AGENT_KEY.
func KeyFromEnv() (Signer, error) {
	p := strings.TrimSpace(os.Getenv(EnvAgentKey))
	if p == "" {
		return nil, fmt.Errorf("sdk: %s is not set (it names the agent's key file)", EnvAgentKey)
	}
	return LoadKeyFile(p)
}

func (k localKey) Address() string { return agentauth.Address(k.key).Hex() }

func (k localKey) SignHash(_ context.Context, d [32]byte) ([]byte, error) {
	return crypto.Sign(d[:], k.key)
}

// String never shows the key.
func (k localKey) String() string { return "sdk.Signer(" + k.Address() + ")" }

// GoString never shows the key, even under %#v.
func (k localKey) GoString() string { return k.String() }

// signRequest signs one request: the in-memory key directly, any other
// Signer through SignWith, which checks what it returns.
func signRequest(ctx context.Context, s Signer, dom agentauth.Domain, method, target string, body []byte, nonce [32]byte, exp time.Time) (agentauth.Signed, error) {
	if k, ok := s.(localKey); ok {
		return agentauth.Sign(k.key, dom, method, target, body, nonce, exp)
	}
	addr := s.Address()
	if !common.IsHexAddress(addr) {
		return agentauth.Signed{}, fmt.Errorf("sdk: the signer's address %q is not a 0x address", addr)
	}
	return agentauth.SignWith(common.HexToAddress(addr), func(d [32]byte) ([]byte, error) { return s.SignHash(ctx, d) },
		dom, method, target, body, nonce, exp)
}
