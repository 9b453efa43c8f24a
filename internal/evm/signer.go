package evm

import (
	"crypto/ecdsa"
	"fmt"
	"log/slog"

	"github.com/ethereum/go-ethereum/crypto"
)

// HashSigner signs 32-byte digests (EIP-712 digests and transaction hashes).
// SignHash returns 65 bytes r‖s‖v with v = 27 or 28. Purser's keystore wallets
// implement it, so keys never leave the keystore.
type HashSigner interface {
	Address() string // EIP-55 0x address
	SignHash(hash [32]byte) ([]byte, error)
}

// KeySigner wraps an in-memory private key (tests, the dev chain's faucet).
func KeySigner(k *ecdsa.PrivateKey) HashSigner {
	return keySigner{k: k, addr: crypto.PubkeyToAddress(k.PublicKey).Hex()}
}

type keySigner struct {
	k    *ecdsa.PrivateKey
	addr string
}

func (s keySigner) Address() string { return s.addr }

func (s keySigner) SignHash(hash [32]byte) ([]byte, error) {
	sig, err := crypto.Sign(hash[:], s.k)
	if err != nil {
		return nil, fmt.Errorf("evm: sign: %w", err)
	}
	sig[64] += 27
	return sig, nil
}

// The key is the secret; printing a signer must not show it.
func (s keySigner) String() string { return "evm.KeySigner(" + s.addr + ")" }

func (s keySigner) GoString() string { return s.String() }

func (s keySigner) LogValue() slog.Value { return slog.StringValue(s.String()) }
