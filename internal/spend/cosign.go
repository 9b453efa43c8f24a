package spend

import (
	"context"
	"time"
)

// Custody of an agent's wallet key (Agent.Custody).
const (
	// CustodyServer: the key is HD-derived from the keystore's seed.
	CustodyServer = "server"
	// Custody2of2: the key is shared between the agent and the server
	// (internal/cosign); neither side can sign alone.
	Custody2of2 = "2of2"
)

// WalletCustodyCosign is the Wallet.Custody of a co-signed wallet.
const WalletCustodyCosign = "cosign-2of2"

// CosignKey is the server's side of an agent's co-signed key. The row
// exists from the agent's creation (Epoch 0: no key yet, perhaps a recovery
// blob); key generation fills it (Epoch 1). SealedShare is the keystore's
// envelope over cosign.Share.MarshalBinary, with additional data
// "cosign:<agent id>:<epoch>".
type CosignKey struct {
	AgentID     string
	PublicKey   []byte // compressed secp256k1, 33 bytes; nil before key generation
	Address     string // EIP-55
	SealedShare []byte
	Epoch       int64
	// The agent share encrypted to the owner's recovery key (HPKE), as the
	// owner's client gave it: opaque to the server. "" when none.
	RecoveryPublicKey  string
	RecoveryCiphertext string
	CreatedAt          time.Time
	UpdatedAt          time.Time
}

// Ready reports whether key generation has finished.
func (k *CosignKey) Ready() bool { return k != nil && k.Epoch > 0 && len(k.PublicKey) == 33 }

// CosignTx is the part of Tx that stores co-signed keys and the durable
// ledger of signing sessions.
type CosignTx interface {
	// CosignKeyCreate inserts the row of a new 2of2 agent; ErrConflict
	// when the agent has one.
	CosignKeyCreate(ctx context.Context, k *CosignKey) error
	CosignKeyGet(ctx context.Context, agentID string) (*CosignKey, error)
	// CosignKeyUpdate rewrites the agent's row; ErrNotFound when it has none.
	CosignKeyUpdate(ctx context.Context, k *CosignKey) error
	// CosignSessionClaim records a session id as used; ErrConflict when it
	// was claimed before (whatever became of that session).
	CosignSessionClaim(ctx context.Context, c *CosignSession) error
}

// CosignSession is one claimed signing (or key generation) session.
type CosignSession struct {
	SessionID string // 0x hex
	AgentID   string
	SpendID   string
	Kind      string // "sign"
	CreatedAt time.Time
}
