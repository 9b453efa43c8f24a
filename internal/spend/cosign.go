package spend

import (
	"context"
	"encoding/json"
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
	// CosignSessionFail marks a claimed session as failed (the server
	// refused the agent's message); ErrNotFound when it was never claimed.
	CosignSessionFail(ctx context.Context, sessionID string) error
	// CosignFailures counts an agent's failed sessions claimed at or
	// after since.
	CosignFailures(ctx context.Context, agentID string, since time.Time) (int, error)
}

// CosignSession is one claimed signing (or key generation) session.
type CosignSession struct {
	SessionID string // 0x hex
	AgentID   string
	SpendID   string
	Kind      string // "sign"
	CreatedAt time.Time
}

// CosignPending is what a Signer returns, as its error, for a spend whose
// wallet is co-signed: the server holds no key that could sign, so the rail
// built the instrument unsigned (Data, its rail data; Ref, the
// authorization nonce). The pipeline records it on the authorized spend
// (RailRef stays empty: nothing is signed yet) and the agent co-signs it
// over POST /v1/agent/spends/{id}/cosign.
type CosignPending struct {
	Ref  string
	Data json.RawMessage
}

func (*CosignPending) Error() string {
	return "the wallet is co-signed: the instrument awaits the agent's co-signature"
}

// Cosigner is implemented by signing rails that can carry out a spend
// from a co-signed wallet.
type Cosigner interface {
	// CosignPlan reads the unsigned instrument the rail stored in
	// sp.RailData and returns what is signed: the server computes the
	// digest from its own record, never from anything the agent sent.
	CosignPlan(sp *Spend) (*CosignPlan, error)
	// CosignComplete returns sp's rail data with the checked signature
	// (r‖s‖v, v 27/28) added, as Sign returns it for a server-held key.
	CosignComplete(sp *Spend, sig []byte) (json.RawMessage, error)
}

// CosignPlan is an unsigned EIP-3009 authorization of a co-signed wallet.
type CosignPlan struct {
	Ref         string   // the authorization nonce, 0x hex
	Digest      [32]byte // its EIP-712 digest
	ValidBefore time.Time
	Signed      bool // the rail data holds a signature already
	// What the agent checks, as the API shows it.
	Authorization CosignAuthorization
	Domain        CosignDomain
}

// CosignAuthorization is an EIP-3009 authorization's fields: decimal
// strings for value and times, 0x hex for addresses and the nonce.
type CosignAuthorization struct {
	From, To, Value, ValidAfter, ValidBefore, Nonce string
}

// CosignDomain is the token's EIP-712 domain.
type CosignDomain struct {
	Name, Version, ChainID, VerifyingContract string
}

// CosignSigning is what the agent of a co-signed spend awaiting its
// signature is shown: the plan and the session id both sides derive.
type CosignSigning struct {
	SessionID string // 0x hex
	Plan      *CosignPlan
}

// CosignEngine is the co-signing cryptography (internal/cosign, adapted by
// internal/cosignsrv and wired by the app). The pipeline keeps it behind
// this interface: it handles shares only as sealed or serialised bytes and
// protocol messages as opaque bytes, and stays free of curve libraries.
// Errors name a class of problem, never a value.
type CosignEngine interface {
	// NewKeygen starts the server's side of a key generation whose session
	// id the agent chose, read from its first message m1.
	NewKeygen(m1 []byte) (CosignKeygenSession, error)
	// NewRefresh starts the server's side of a share refresh of its
	// serialised share; the agent chose the session id, read from m1.
	NewRefresh(share, m1 []byte) (CosignKeygenSession, error)
	// RefreshSessionID is the refresh session id the agent chose, read
	// from m1.
	RefreshSessionID(m1 []byte) ([32]byte, error)
	// RefreshCheck is the signing binding (spend id part and digest) of the
	// check signature that ends the refresh sid to epoch.
	RefreshCheck(agentID string, epoch int64, sid [32]byte) (spendID string, digest [32]byte)
	// SignSessionID is the signing session id both sides derive.
	SignSessionID(publicKey []byte, agentID, spendID string, digest [32]byte) [32]byte
	// ServerSign runs the server's one signing step over digest with its
	// serialised share, answering m1 with m2. The caller claimed the
	// session id in its durable ledger first.
	ServerSign(share []byte, agentID, spendID string, digest [32]byte, m1 []byte) ([]byte, error)
	// VerifySignature checks a 65-byte r‖s‖v signature (v 27/28, low s)
	// over digest against an address.
	VerifySignature(sig []byte, digest [32]byte, address string) bool
}

// CosignKeygenSession is the server's side of one key generation.
type CosignKeygenSession interface {
	Handle(msg []byte) ([]byte, error)
	Done() bool
	// Share returns the server's serialised share, the wallet's
	// compressed public key and its address (EIP-55), once Done.
	Share() (share, publicKey []byte, address string, err error)
}
