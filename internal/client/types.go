package client

import (
	"encoding/json"
	"time"
)

// Wallet is one of an agent's wallets.
type Wallet struct {
	Network string `json:"network"`
	Address string `json:"address"`
	Custody string `json:"custody,omitempty"`
	Path    string `json:"path,omitempty"`
}

// Agent mirrors the Agent object. Raw is the object exactly as answered.
type Agent struct {
	ID              string    `json:"id"`
	Name            string    `json:"name"`
	Status          string    `json:"status"`
	IdentityAddress string    `json:"identity_address"`
	Wallets         []Wallet  `json:"wallets"`
	MandateVersion  int64     `json:"mandate_version"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`

	Raw json.RawMessage `json:"-"`
}

// MandateView is an agent's current mandate and its version; Mandate is
// the mandate object as the server sent it (null when there is none).
type MandateView struct {
	AgentID string          `json:"agent_id"`
	Version int64           `json:"version"`
	Mandate json.RawMessage `json:"mandate"`

	Raw json.RawMessage `json:"-"`
}

// Spend mirrors the Spend object. Amounts are decimal strings.
type Spend struct {
	SpendID        string          `json:"spend_id"`
	AgentID        string          `json:"agent_id"`
	Status         string          `json:"status"`
	Decision       string          `json:"decision"`
	Reasons        []string        `json:"reasons"`
	Rail           string          `json:"rail"`
	Host           string          `json:"host"`
	Payee          string          `json:"payee"`
	Asset          string          `json:"asset"`
	Network        string          `json:"network"`
	Amount         string          `json:"amount"`
	AmountUSD      string          `json:"amount_usd"`
	HeldUSD        string          `json:"held_usd"`
	Captured       *string         `json:"captured"`
	CapturedUSD    *string         `json:"captured_usd"`
	MandateVersion int64           `json:"mandate_version"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	Memo           string          `json:"memo,omitempty"`
	RailRef        string          `json:"rail_ref,omitempty"`
	RailRequest    json.RawMessage `json:"rail_request,omitempty"`
	RailData       json.RawMessage `json:"rail_data,omitempty"`
	DryRun         bool            `json:"dry_run,omitempty"`
	CreatedAt      time.Time       `json:"created_at"`
	UpdatedAt      time.Time       `json:"updated_at"`
	ExpiresAt      *time.Time      `json:"expires_at"`
	Replayed       bool            `json:"replayed"`
	Intent         json.RawMessage `json:"intent,omitempty"`

	Raw json.RawMessage `json:"-"`
}

// Spend statuses (docs/spend-lifecycle.md).
const (
	StatusPendingApproval = "pending_approval"
	StatusAuthorized      = "authorized"
	StatusCaptured        = "captured"
	StatusReleased        = "released"
	StatusDenied          = "denied"
	StatusExpired         = "expired"
	StatusUnknown         = "unknown"
)

// Window is a budget window of Limits (USD decimals).
type Window struct {
	Limit     string `json:"limit"`
	Used      string `json:"used"`
	Remaining string `json:"remaining"`
}

// RateWindow is the rate limit of Limits.
type RateWindow struct {
	Limit string      `json:"limit"`
	Used  json.Number `json:"used"`
}

// Limits mirrors the Limits object.
type Limits struct {
	AgentID        string          `json:"agent_id"`
	Name           string          `json:"name"`
	Status         string          `json:"status"`
	MandateVersion int64           `json:"mandate_version"`
	Mandate        json.RawMessage `json:"mandate"`
	Day            string          `json:"day"`
	Daily          *Window         `json:"daily"`
	Lifetime       *Window         `json:"lifetime"`
	Rate           *RateWindow     `json:"rate"`
	PerTxAuto      string          `json:"per_tx_auto,omitempty"`
	PerTxMax       string          `json:"per_tx_max,omitempty"`
	Wallets        []Wallet        `json:"wallets"`

	Raw json.RawMessage `json:"-"`
}

// AuditActor is who caused an audit event.
type AuditActor struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// AuditEvent is one event of GET /v1/audit/tail.
type AuditEvent struct {
	Seq      int64           `json:"seq"`
	Time     time.Time       `json:"time"`
	Actor    AuditActor      `json:"actor"`
	Action   string          `json:"action"`
	Subject  string          `json:"subject"`
	Details  json.RawMessage `json:"details"`
	PrevHash string          `json:"prev_hash"`
	Hash     string          `json:"hash"`

	Raw json.RawMessage `json:"-"`
}

// AuditVerifyResult is the answer of POST /v1/audit/verify.
type AuditVerifyResult struct {
	OK          bool   `json:"ok"`
	Events      int64  `json:"events"`
	Checkpoints int64  `json:"checkpoints"`
	HeadSeq     int64  `json:"head_seq"`
	HeadHash    string `json:"head_hash"`
	KeyID       string `json:"key_id"`
}

// AuditKey is the server's audit public key (hex) and its ID.
type AuditKey struct {
	AuditKey string `json:"audit_key"`
	KeyID    string `json:"key_id"`
}

// CreateAgentRequest is the body of POST /v1/agents.
type CreateAgentRequest struct {
	Name            string          `json:"name"`
	IdentityAddress string          `json:"identity_address"`
	Mandate         json.RawMessage `json:"mandate,omitempty"`
}

// AuthorizeRequest is the body of POST /v1/agent/spends.
type AuthorizeRequest struct {
	Rail           string `json:"rail"`
	Payee          string `json:"payee"`
	Amount         string `json:"amount"`
	Host           string `json:"host,omitempty"`
	Asset          string `json:"asset,omitempty"`
	Network        string `json:"network,omitempty"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	Memo           string `json:"memo,omitempty"`
	// RailRequest is rail-specific data signed with the intent (an x402 offer).
	RailRequest json.RawMessage `json:"rail_request,omitempty"`
	// DryRun asks for the verdict only: nothing is stored or held.
	DryRun bool `json:"dry_run,omitempty"`
}

// Balance is one token balance of an agent's wallet.
type Balance struct {
	Network string `json:"network"`
	Asset   string `json:"asset"`
	Token   string `json:"token"`
	Address string `json:"address"`
	Balance string `json:"balance"`
	Error   string `json:"error,omitempty"`
}

// Asset is an asset the server can count and pay with.
type Asset struct {
	Symbol        string `json:"symbol"`
	Network       string `json:"network"`
	Address       string `json:"address,omitempty"`
	Decimals      uint8  `json:"decimals"`
	USD           bool   `json:"usd"`
	EIP712Name    string `json:"eip712_name,omitempty"`
	EIP712Version string `json:"eip712_version,omitempty"`
}

// Funding is the result of funding an agent on the dev chain.
type Funding struct {
	AgentID string `json:"agent_id"`
	Network string `json:"network"`
	Asset   string `json:"asset"`
	Address string `json:"address"`
	Amount  string `json:"amount"`
	Tx      string `json:"tx"`
}

// Chains is what the server knows of chains.
type Chains struct {
	Networks   []string `json:"networks"`
	Relayer    string   `json:"relayer"`
	DevNetwork string   `json:"dev_network"`
}

// SpendFilter narrows GET /v1/spends; zero values mean no filter.
type SpendFilter struct {
	Agent  string // id or name
	Status string // comma-separated statuses
	Limit  int
}

// Each object keeps the bytes it was decoded from in Raw, so a caller can
// print exactly what the server answered, fields this client does not know
// included.

func keep(b []byte) json.RawMessage { return append(json.RawMessage(nil), b...) }

// UnmarshalJSON decodes a and keeps the raw object.
func (a *Agent) UnmarshalJSON(b []byte) error {
	type plain Agent
	if err := json.Unmarshal(b, (*plain)(a)); err != nil {
		return err
	}
	a.Raw = keep(b)
	return nil
}

// UnmarshalJSON decodes v and keeps the raw object.
func (v *MandateView) UnmarshalJSON(b []byte) error {
	type plain MandateView
	if err := json.Unmarshal(b, (*plain)(v)); err != nil {
		return err
	}
	v.Raw = keep(b)
	return nil
}

// UnmarshalJSON decodes s and keeps the raw object.
func (s *Spend) UnmarshalJSON(b []byte) error {
	type plain Spend
	if err := json.Unmarshal(b, (*plain)(s)); err != nil {
		return err
	}
	s.Raw = keep(b)
	return nil
}

// UnmarshalJSON decodes l and keeps the raw object.
func (l *Limits) UnmarshalJSON(b []byte) error {
	type plain Limits
	if err := json.Unmarshal(b, (*plain)(l)); err != nil {
		return err
	}
	l.Raw = keep(b)
	return nil
}

// UnmarshalJSON decodes e and keeps the raw object.
func (e *AuditEvent) UnmarshalJSON(b []byte) error {
	type plain AuditEvent
	if err := json.Unmarshal(b, (*plain)(e)); err != nil {
		return err
	}
	e.Raw = keep(b)
	return nil
}
