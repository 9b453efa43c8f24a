package sdk

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/hpke"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/internal/cosign"
)

// Key generation of co-signed (2of2) wallets, on the owner's machine (the
// agent side of the protocol runs there, so the agent's share is written
// straight into the agent's key file), and the recovery copy of the share,
// encrypted to the owner's offline X25519 key.

// CosignKey is the outcome of a key generation: the wallet's address and
// public key, and the agent's share (a secret: it never prints; write it
// into the agent's key file with AddToKeyFile).
type CosignKey struct {
	AgentID   string
	Address   string // the joint wallet's 0x address
	PublicKey string // its compressed public key, 0x-hex

	share *cosign.Share
}

// String never shows the share.
func (k *CosignKey) String() string { return "sdk.CosignKey(" + k.Address + ")" }

// GoString never shows the share, even under %#v.
func (k *CosignKey) GoString() string { return k.String() }

// CosignKeygen runs the agent's side of the key generation of agent ref's
// co-signed wallet with the server (POST /v1/agents/{ref}/cosign/keygen,
// five messages). The agent must have been created with custody 2of2.
// Neither side ever holds the whole key.
func (o *Owner) CosignKeygen(ctx context.Context, ref string) (*CosignKey, error) {
	ag, err := o.Agent(ctx, ref)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, 32)
	rand.Read(nonce)
	ks, err := cosign.NewKeygen(cosign.RoleAgent, cosign.KeygenSessionID(ag.ID, nonce))
	if err != nil {
		return nil, fmt.Errorf("sdk: key generation: %w", err)
	}
	msg, err := ks.Start()
	if err != nil {
		return nil, fmt.Errorf("sdk: key generation: %w", err)
	}
	path := "/v1/agents/" + escape(ag.ID) + "/cosign/keygen"
	for range 3 { // m1, m3, m5
		var resp api.KeygenResponse
		if _, err := o.c.do(ctx, http.MethodPost, path, nil, api.KeygenRequest{Message: base64.StdEncoding.EncodeToString(msg)}, authOwner, &resp); err != nil {
			return nil, fmt.Errorf("sdk: key generation: %w", err)
		}
		if resp.Done {
			if !ks.Done() {
				return nil, errors.New("sdk: key generation: the server says done before the agent side is")
			}
			share, err := ks.Share()
			if err != nil {
				return nil, fmt.Errorf("sdk: key generation: %w", err)
			}
			pub := "0x" + hex.EncodeToString(share.PublicKey())
			if !strings.EqualFold(resp.Address, share.Address().Hex()) || !strings.EqualFold(resp.PublicKey, pub) {
				return nil, fmt.Errorf("sdk: key generation: the server's wallet %s is not the key generated (%s)", resp.Address, share.Address().Hex())
			}
			return &CosignKey{AgentID: ag.ID, Address: share.Address().Hex(), PublicKey: pub, share: share}, nil
		}
		in, err := base64.StdEncoding.DecodeString(resp.Message)
		if err != nil || len(in) == 0 {
			return nil, errors.New("sdk: key generation: the server's message is not base64")
		}
		if msg, err = ks.Handle(in); err != nil {
			return nil, fmt.Errorf("sdk: key generation: %w", err)
		}
		if msg == nil {
			return nil, errors.New("sdk: key generation: the agent side has nothing more to send, but the server is not done")
		}
	}
	return nil, errors.New("sdk: key generation: the server did not finish after the fifth message")
}

// AddToKeyFile writes the agent's share into the agent's key file at path
// (the identity key stays its first line), atomically, mode 0600.
func (k *CosignKey) AddToKeyFile(path string) error {
	id, err := agentauth.ReadKeyFile(path)
	if err != nil {
		return err
	}
	raw, err := k.share.MarshalBinary()
	if err != nil {
		return err
	}
	defer clear(raw)
	return agentauth.WriteKeyFileShare(path, id, raw)
}

// recoveryInfo binds a recovery ciphertext to its agent and wallet: it
// does not open as another agent's share.
func recoveryInfo(agentID, address string) []byte {
	return []byte("purser/cosign/recovery/v1\x00" + agentID + "\x00" + strings.ToLower(address))
}

var recoveryKDF, recoveryAEAD = hpke.HKDFSHA256(), hpke.ChaCha20Poly1305()

// RecoveryBlob encrypts the agent's share to the owner's X25519 recovery
// public key (32 bytes) with HPKE (RFC 9180: DHKEM(X25519), HKDF-SHA256,
// ChaCha20-Poly1305), for Owner.SetCosignRecovery: the server stores it
// and cannot open it.
func (k *CosignKey) RecoveryBlob(recoveryPublicKey []byte) (*api.RecoveryBlob, error) {
	pk, err := ecdh.X25519().NewPublicKey(recoveryPublicKey)
	if err != nil {
		return nil, fmt.Errorf("sdk: recovery key: %w", err)
	}
	hpk, err := hpke.NewDHKEMPublicKey(pk)
	if err != nil {
		return nil, fmt.Errorf("sdk: recovery key: %w", err)
	}
	raw, err := k.share.MarshalBinary()
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	ct, err := hpke.Seal(hpk, recoveryKDF, recoveryAEAD, recoveryInfo(k.AgentID, k.Address), raw)
	if err != nil {
		return nil, fmt.Errorf("sdk: encrypt the share to the recovery key: %w", err)
	}
	return &api.RecoveryBlob{PublicKey: base64.StdEncoding.EncodeToString(recoveryPublicKey), Ciphertext: base64.StdEncoding.EncodeToString(ct)}, nil
}

// OpenRecoveryBlob decrypts a recovery blob of agent agentID's wallet
// address with the owner's X25519 recovery private key (32 bytes) and
// returns the agent's share (MarshalBinary form; a secret). It checks the
// share is an agent share of that wallet.
func OpenRecoveryBlob(b *api.RecoveryBlob, agentID, address string, recoveryPrivateKey []byte) ([]byte, error) {
	sk, err := ecdh.X25519().NewPrivateKey(recoveryPrivateKey)
	if err != nil {
		return nil, fmt.Errorf("sdk: recovery key: %w", err)
	}
	if pub, _ := base64.StdEncoding.DecodeString(b.PublicKey); !bytes.Equal(pub, sk.PublicKey().Bytes()) {
		return nil, errors.New("sdk: the share was encrypted to another recovery key")
	}
	hsk, err := hpke.NewDHKEMPrivateKey(sk)
	if err != nil {
		return nil, fmt.Errorf("sdk: recovery key: %w", err)
	}
	ct, err := base64.StdEncoding.DecodeString(b.Ciphertext)
	if err != nil {
		return nil, errors.New("sdk: the recovery ciphertext is not base64")
	}
	raw, err := hpke.Open(hsk, recoveryKDF, recoveryAEAD, recoveryInfo(agentID, address), ct)
	if err != nil {
		return nil, errors.New("sdk: the recovery ciphertext does not open with this key for this agent and wallet")
	}
	share, err := cosign.UnmarshalShare(raw)
	if err != nil || share.Role() != cosign.RoleAgent || !strings.EqualFold(share.Address().Hex(), address) {
		clear(raw)
		return nil, errors.New("sdk: the recovered share is not this wallet's agent share")
	}
	return raw, nil
}

// SetCosignRecovery stores the agent share's recovery blob with the server
// (POST /v1/agents/{ref}/cosign/recovery).
func (o *Owner) SetCosignRecovery(ctx context.Context, ref string, b *api.RecoveryBlob) error {
	_, err := o.c.do(ctx, http.MethodPost, "/v1/agents/"+escape(ref)+"/cosign/recovery", nil, b, authOwner, nil)
	return err
}

// CosignRecovery fetches the stored recovery blob of agent ref's share.
func (o *Owner) CosignRecovery(ctx context.Context, ref string) (*api.RecoveryBlob, error) {
	var b api.RecoveryBlob
	if _, err := o.c.do(ctx, http.MethodGet, "/v1/agents/"+escape(ref)+"/cosign/recovery", nil, nil, authOwner, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// WriteKeyFile writes a new agent key file at path: the identity key and
// this share, atomically, mode 0600 (agent rotate-key on a 2of2 agent).
func (k *CosignKey) WriteKeyFile(path string, identity *ecdsa.PrivateKey) error {
	raw, err := k.share.MarshalBinary()
	if err != nil {
		return err
	}
	defer clear(raw)
	return agentauth.WriteKeyFileShare(path, identity, raw)
}
