package spend

import (
	"context"
	"math/big"
	"time"

	"github.com/purserhq/purser/internal/audit"
)

// Store is the persistence the service needs. Implementations live in
// internal/store/*, and internal/store/storetest is the one definition of
// correct behaviour that every implementation must pass.
//
// API is internal and not stable.
type Store interface {
	// InTx runs fn in a read-write transaction and commits it. fn must not
	// keep references to tx after it returns and must be safe to run again
	// (an implementation may retry a transaction that lost a serialization
	// race, or group several callers' fns into one commit, each behind its
	// own savepoint). When InTx returns nil, everything fn wrote, including
	// its audit events, is durable. When it returns an error, nothing is.
	InTx(ctx context.Context, fn func(tx Tx) error) error
	// InTxPrefetch is InTx for a transaction that starts by reading the
	// rows p names. A store that groups transactions may load those rows
	// (and lock the agents) for the whole group in a few statements, and
	// hold back its writes to the end of the group; fn must observe exactly
	// what it would observe under InTx. p is a hint: rows it does not name
	// are read as usual.
	InTxPrefetch(ctx context.Context, p *Prefetch, fn func(tx Tx) error) error
	// Read runs fn against a consistent read-only view. Writes through tx
	// fail.
	Read(ctx context.Context, fn func(tx Tx) error) error
	// AuditEvents returns up to limit events with seq > afterSeq in order.
	AuditEvents(ctx context.Context, afterSeq int64, limit int) ([]*audit.Event, error)
	// AuditHead returns the last sequence number and hash (0 and zero hash
	// for an empty chain).
	AuditHead(ctx context.Context) (int64, [32]byte, error)
	// CheckpointAdd stores a signed checkpoint; a second one for the same
	// seq is ignored.
	CheckpointAdd(ctx context.Context, c audit.Checkpoint) error
	// Checkpoints returns the checkpoints with seq <= uptoSeq, in order.
	Checkpoints(ctx context.Context, uptoSeq int64) ([]audit.Checkpoint, error)
	// CheckpointLast returns the checkpoint with the highest seq, also one
	// beyond the chain head (nil when there is none).
	CheckpointLast(ctx context.Context) (*audit.Checkpoint, error)
	Close() error
}

// Tx is a store transaction. Methods return ErrNotFound when a row does
// not exist.
type Tx interface {
	OwnerTx  // ownerstore.go
	VaultTx  // vault.go
	CosignTx // cosign.go

	AgentCreate(ctx context.Context, a *Agent) error
	// AgentGet finds an agent by id or by name.
	AgentGet(ctx context.Context, ref string) (*Agent, error)
	// AgentLock reads an agent and locks its row until the transaction
	// ends: every change of an agent's budgets or status takes this lock
	// first, which is what serialises a freeze with later authorizations.
	AgentLock(ctx context.Context, id string) (*Agent, error)
	// AgentLockByKey resolves an identity key (active or revoked) to its
	// agent and locks the agent row. When idempotencyKey is not empty it
	// also returns the id of the agent's spend under that key ("" when
	// there is none): every authorization needs both, in one round trip.
	AgentLockByKey(ctx context.Context, address, idempotencyKey string) (*Agent, *AgentKey, string, error)
	// AgentKeyGet returns an identity key without locking.
	AgentKeyGet(ctx context.Context, address string) (*AgentKey, error)
	AgentUpdate(ctx context.Context, a *Agent) error
	AgentList(ctx context.Context) ([]*Agent, error)
	AgentMaxWalletIndex(ctx context.Context) (int64, error) // -1 when there is no agent

	AgentKeyAdd(ctx context.Context, k *AgentKey) error
	AgentKeysRevoke(ctx context.Context, agentID string, at time.Time) error

	WalletAdd(ctx context.Context, w *Wallet) error
	WalletList(ctx context.Context, agentID string) ([]Wallet, error)

	MandatePut(ctx context.Context, m *MandateRecord) error
	MandateGet(ctx context.Context, agentID string, version int64) (*MandateRecord, error)

	// UsageGet returns the committed (held + captured) micro-USD per
	// window; a window never written reads as zero.
	UsageGet(ctx context.Context, agentID string, windows []string) ([]*big.Int, error)
	// UsageAdd adds delta (which may be negative) to each window's
	// counter. A counter never goes below zero: that is an error.
	UsageAdd(ctx context.Context, agentID string, windows []string, delta *big.Int) error
	// UsagePut sets the windows' counters to values (read under the same
	// agent lock in the same transaction).
	UsagePut(ctx context.Context, agentID string, windows []string, values []*big.Int) error

	PayeeKnown(ctx context.Context, agentID, payee string) (bool, error)
	PayeeAdd(ctx context.Context, agentID, payee string) error
	// HostPinGet returns the payee host is pinned to for the agent, ""
	// if none; HostPinAdd pins it unless it is pinned already.
	HostPinGet(ctx context.Context, agentID, host string) (string, error)
	HostPinAdd(ctx context.Context, agentID, host, payee string) error

	// NonceUse records a signed request's nonce; fresh is false when the
	// same nonce with the same expiry was seen before (a replayed request
	// repeats both, since the signature covers both).
	NonceUse(ctx context.Context, agentID, nonce string, expires time.Time) (fresh bool, err error)
	NoncesPrune(ctx context.Context, before time.Time) (int64, error)
	// DBNow returns the database's clock: one clock for every process
	// sharing the database, whatever their own clocks say.
	DBNow(ctx context.Context) (time.Time, error)

	SpendCreate(ctx context.Context, s *Spend) error
	SpendGet(ctx context.Context, id string) (*Spend, error)
	SpendUpdate(ctx context.Context, s *Spend) error
	SpendList(ctx context.Context, p *SpendListParams) ([]*Spend, error)
	// SpendCount counts spends in the given statuses.
	SpendCount(ctx context.Context, statuses []Status) (int64, error)
	// SpendCountOpenSigned counts the agent's open signed spends: those a
	// rail has signed (RailRef set) that are authorized or unknown.
	SpendCountOpenSigned(ctx context.Context, agentID string) (int64, error)

	// Webhooks (see webhooks.go). WebhookGet and WebhookList return the
	// sealed secret too; callers must not show it.
	WebhookCreate(ctx context.Context, w *WebhookEndpoint) error
	WebhookGet(ctx context.Context, id string) (*WebhookEndpoint, error)
	// WebhookList returns every endpoint, oldest first.
	WebhookList(ctx context.Context) ([]*WebhookEndpoint, error)
	// WebhookUpdate writes status, cursor, next attempt time, last error
	// and updated time.
	WebhookUpdate(ctx context.Context, w *WebhookEndpoint) error
	// WebhookDelete removes an endpoint with its messages and attempts.
	WebhookDelete(ctx context.Context, id string) error
	// WebhookMessageAdd stores a new message; one for the same endpoint,
	// seq and part is an error.
	WebhookMessageAdd(ctx context.Context, m *WebhookMessage) error
	// WebhookMessageHead returns the endpoint's pending message with the
	// lowest (seq, part), ErrNotFound when none is pending.
	WebhookMessageHead(ctx context.Context, endpointID string) (*WebhookMessage, error)
	// WebhookMessageUpdate writes status, attempts and updated time.
	WebhookMessageUpdate(ctx context.Context, m *WebhookMessage) error
	// WebhookAttemptAdd records an attempt and sets its ID.
	WebhookAttemptAdd(ctx context.Context, a *WebhookAttempt) error
	// WebhookAttemptList returns the endpoint's attempts, newest first,
	// with ID < beforeID (0: from the newest), up to limit.
	WebhookAttemptList(ctx context.Context, endpointID string, beforeID int64, limit int) ([]*WebhookAttempt, error)
	// WebhookPrune deletes attempts made before before, and messages no
	// longer pending that were last changed before it; a pending message
	// is never deleted.
	WebhookPrune(ctx context.Context, before time.Time) (int64, error)
	// WebhookLease takes or renews the dispatcher lease for holder until
	// the database's clock reaches until; false when another holder's
	// lease has not run out (by the database's clock).
	WebhookLease(ctx context.Context, holder string, ttl time.Duration) (bool, error)

	// AuditAppend adds an event to the chain. The store assigns Seq,
	// PrevHash and Hash when the transaction commits, so the chain head
	// stays locked only for the commit itself.
	AuditAppend(ctx context.Context, e *audit.Event) error
}

// Prefetch names what an agent-signed transaction reads first: the
// agent (by identity key, locked), the request nonce it spends, the spend
// under its idempotency key and its budget windows.
type Prefetch struct {
	Address        string // identity key
	Nonce          string
	NonceExpires   time.Time
	IdempotencyKey string   // "" for none
	Windows        []string // budget windows whose counters fn may read
}

// SpendListParams filters SpendList. Zero values do not filter.
type SpendListParams struct {
	AgentID       string
	Statuses      []Status
	ExpiresBefore time.Time // only spends with a non-zero ExpiresAt before this
	Signed        bool      // only spends a rail has signed or executed (RailRef set)
	Unsigned      bool      // only spends with no RailRef
	// After pages forward (oldest first): only spends created after
	// (AfterCreated, AfterID).
	AfterCreated time.Time
	AfterID      string
	Limit        int // 0: 100
	NewestFirst  bool
}
