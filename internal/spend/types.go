package spend

import (
	"encoding/json"
	"math/big"
	"time"
)

// AgentStatus is an agent's lifecycle state.
type AgentStatus string

const (
	AgentActive  AgentStatus = "active"
	AgentFrozen  AgentStatus = "frozen"
	AgentRevoked AgentStatus = "revoked"
)

// Agent is one AI agent: its identity key, wallets and mandate version.
type Agent struct {
	ID              string
	Name            string
	Status          AgentStatus
	IdentityAddress string // the active identity key's address (EIP-55)
	WalletIndex     uint32 // BIP-32 index of the agent's server-held wallet (never derived for a 2of2 agent)
	Custody         string // CustodyServer or Custody2of2
	MandateVersion  int64  // 0: no mandate yet
	RateWindowStart int64  // unix seconds of the current rate window
	RateCount       int    // authorizations counted in that window
	CreatedAt       time.Time
	UpdatedAt       time.Time
	Wallets         []Wallet // filled by reads that say so
}

// AgentKey is one identity key of an agent; rotation revokes the old key.
type AgentKey struct {
	Address   string // EIP-55
	AgentID   string
	CreatedAt time.Time
	RevokedAt *time.Time
}

// Wallet is an agent's account on one network.
type Wallet struct {
	AgentID string
	Network string // CAIP-2
	Address string
	Custody string // "keystore": server-held, HD-derived; WalletCustodyCosign: co-signed
	Path    string // BIP-32 path
}

// MandateRecord is one stored version of an agent's mandate, kept as the
// exact JSON the owner set so that audit and history show what was decided.
type MandateRecord struct {
	AgentID   string
	Version   int64
	Body      json.RawMessage
	CreatedAt time.Time
}

// Status is a spend's state; see docs/spend-lifecycle.md.
type Status string

const (
	StatusPendingApproval Status = "pending_approval"
	StatusAuthorized      Status = "authorized"
	StatusCaptured        Status = "captured"
	StatusReleased        Status = "released"
	StatusDenied          Status = "denied"
	StatusExpired         Status = "expired"
	StatusUnknown         Status = "unknown"
)

// Holding reports whether a spend in this state holds budget.
func (s Status) Holding() bool {
	return s == StatusPendingApproval || s == StatusAuthorized || s == StatusUnknown
}

// Terminal reports whether no further transition is possible.
func (s Status) Terminal() bool {
	return s == StatusCaptured || s == StatusReleased || s == StatusDenied || s == StatusExpired
}

// Spend is one payment intent and its fate.
type Spend struct {
	ID             string
	AgentID        string
	IdempotencyKey string // "" when the agent gave none
	Rail           string
	Host           string
	Payee          string
	Asset          string   // symbol
	Network        string   // CAIP-2
	Amount         *big.Int // requested maximum, asset atomic units
	AmountUSD      *big.Int // what the hold counts against budgets, micro-USD
	Captured       *big.Int // asset atomic units; nil until captured
	CapturedUSD    *big.Int
	Status         Status
	Reasons        []string
	MandateVersion int64
	DayKey         string // daily window the hold counts in
	Memo           string
	IntentSig      string // 0x hex signature of the request; the signed body itself is in the spend's audit event
	IntentNonce    string
	RailRef        string          // the rail's reference: an authorization nonce, a tx hash
	RailRequest    json.RawMessage // rail-specific part of the signed intent (an x402 offer); immutable
	RailData       json.RawMessage // what the rail produced (a signed authorization, a receipt)
	DenyReason     string          // what the owner told the agent when denying it
	CreatedAt      time.Time
	UpdatedAt      time.Time
	ExpiresAt      time.Time // when a holding spend expires; zero for terminal ones
	// Cosign is not stored: set on answers to the agent of a co-signed
	// wallet while the spend awaits its co-signature.
	Cosign *CosignSigning
}

// Held returns the micro-USD amount this spend currently holds.
func (s *Spend) Held() *big.Int {
	if s.Status.Holding() {
		return s.AmountUSD
	}
	return new(big.Int)
}

// Window names of the usage counters.
const windowLifetime = "lifetime"

func windowDay(dayKey string) string { return "day:" + dayKey }

// Usage is what a reader sees of an agent's budgets.
type Usage struct {
	DayKey      string
	DailyUSD    *big.Int
	LifetimeUSD *big.Int
}
