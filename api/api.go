// Package api declares the JSON bodies of Purser's HTTP API (docs/api.md,
// docs/openapi.yaml) once: the server encodes them and the SDK decodes
// them, so the two cannot drift apart. It holds types and constants only,
// and imports nothing of Purser.
//
// Amounts are decimal strings in the asset's units ("0.05" USDC) and
// budgets are USD decimal strings: never floating point. Response objects
// keep the exact bytes they were decoded from in Raw, so that a client can
// show what the server said, fields it does not know included.
package api

import (
	"encoding/json"
	"time"
)

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

// Decisions of an authorization.
const (
	DecisionAllow         = "allow"
	DecisionNeedsApproval = "needs_approval"
	DecisionDeny          = "deny"
)

// Rails.
const (
	RailX402   = "x402"
	RailPayout = "payout"
)

// Error is the body of every error answer.
type Error struct {
	Code      string          `json:"code"`
	Message   string          `json:"message"`
	Details   json.RawMessage `json:"details,omitempty"`
	RequestID string          `json:"request_id,omitempty"`
}

// Deployment is the answer of GET /v1/deployment: what agents bind their
// request signatures to.
type Deployment struct {
	DeploymentID string       `json:"deployment_id"`
	AuthVersions []int        `json:"auth_versions"`
	EIP712Domain EIP712Domain `json:"eip712_domain"`
}

// EIP712Domain is the domain agent requests are signed in.
type EIP712Domain struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Salt    string `json:"salt"`
}

// Wallet is one of an agent's wallets.
type Wallet struct {
	Network string `json:"network"`
	Address string `json:"address"`
	Custody string `json:"custody"`
	Path    string `json:"path"`
}

// Agent is an agent as the owner sees it.
type Agent struct {
	ID              string `json:"id"`
	Name            string `json:"name"`
	Status          string `json:"status"`
	IdentityAddress string `json:"identity_address"`
	// Custody is CustodyServer or Custody2of2.
	Custody        string    `json:"custody"`
	Wallets        []Wallet  `json:"wallets"`
	MandateVersion int64     `json:"mandate_version"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`

	Raw json.RawMessage `json:"-"`
}

// Agents is the answer of GET /v1/agents.
type Agents struct {
	Agents []Agent `json:"agents"`
}

// CreateAgentRequest is the body of POST /v1/agents.
type CreateAgentRequest struct {
	Name            string          `json:"name"`
	IdentityAddress string          `json:"identity_address"`
	Mandate         json.RawMessage `json:"mandate,omitempty"`
	// Custody is who holds the wallet key: CustodyServer (default) or
	// Custody2of2 (a co-signed key, made by POST .../cosign/keygen).
	Custody string `json:"custody,omitempty"`
	// Recovery is the agent share encrypted to the owner's recovery key
	// (2of2 only; opaque to the server).
	Recovery *RecoveryBlob `json:"recovery,omitempty"`
}

// RotateKeyRequest is the body of POST /v1/agents/{ref}/rotate-key.
type RotateKeyRequest struct {
	IdentityAddress string `json:"identity_address"`
}

// FreezeRequest is the body of POST /v1/agents/{ref}/freeze.
type FreezeRequest struct {
	// CancelSigned also cancels on chain every signed, unused authorization.
	CancelSigned bool `json:"cancel_signed,omitempty"`
}

// FreezeResponse is the answer of a freeze: the agent, and with
// cancel_signed what became of each signed authorization.
type FreezeResponse struct {
	Agent
	Cancellations []Cancellation `json:"cancellations,omitempty"`
}

// Cancellation is what a freeze with cancel_signed did to one signed spend.
type Cancellation struct {
	SpendID string   `json:"spend_id"`
	Status  string   `json:"status"`
	Reasons []string `json:"reasons"`
	RailRef string   `json:"rail_ref,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// MandateView is an agent's current mandate and its version; Mandate is
// null when none is set.
type MandateView struct {
	AgentID string          `json:"agent_id"`
	Version int64           `json:"version"`
	Mandate json.RawMessage `json:"mandate"`

	Raw json.RawMessage `json:"-"`
}

// SetMandateRequest is the body of PUT /v1/agents/{ref}/mandate. With
// BaseVersion set the server refuses (mandate_conflict) if the mandate
// changed since that version.
type SetMandateRequest struct {
	Mandate     json.RawMessage `json:"mandate"`
	BaseVersion *int64          `json:"base_version,omitempty"`
}

// Spend is one spend: an authorization and what became of it.
type Spend struct {
	SpendID        string   `json:"spend_id"`
	AgentID        string   `json:"agent_id"`
	Status         string   `json:"status"`
	Decision       string   `json:"decision"`
	Reasons        []string `json:"reasons"`
	Rail           string   `json:"rail"`
	Host           string   `json:"host"`
	Payee          string   `json:"payee"`
	Asset          string   `json:"asset"`
	Network        string   `json:"network"`
	Amount         string   `json:"amount"`
	AmountUSD      string   `json:"amount_usd"`
	HeldUSD        string   `json:"held_usd"`
	Captured       *string  `json:"captured,omitempty"`
	CapturedUSD    *string  `json:"captured_usd,omitempty"`
	MandateVersion int64    `json:"mandate_version"`
	IdempotencyKey string   `json:"idempotency_key,omitempty"`
	Memo           string   `json:"memo,omitempty"`
	// DenyReason is what the owner said when denying the spend.
	DenyReason string `json:"deny_reason,omitempty"`
	RailRef    string `json:"rail_ref,omitempty"`
	// RailRequest is what the agent signed for the rail (an x402 offer);
	// RailData what the rail produced for the agent (an x402 payment
	// header; never a payout's authorization).
	RailRequest json.RawMessage `json:"rail_request,omitempty"`
	RailData    json.RawMessage `json:"rail_data,omitempty"`
	// Cosign is, for a co-signed wallet's authorized spend that is not
	// signed yet, what the agent co-signs (see api/cosign.go).
	Cosign    *CosignSigning `json:"cosign,omitempty"`
	DryRun    bool           `json:"dry_run,omitempty"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
	ExpiresAt *time.Time     `json:"expires_at"`
	// Replayed is true when an idempotency key returned an earlier spend.
	Replayed bool `json:"replayed"`

	Raw json.RawMessage `json:"-"`
}

// Spends is the answer of GET /v1/spends.
type Spends struct {
	Spends []Spend `json:"spends"`
}

// Approvals is the answer of GET /v1/approvals.
type Approvals struct {
	Approvals []Spend `json:"approvals"`
}

// DeniedDetails is the details object of a spend_denied error.
type DeniedDetails struct {
	SpendID string   `json:"spend_id"`
	Status  string   `json:"status"`
	Reasons []string `json:"reasons"`
	Spend   *Spend   `json:"spend,omitempty"`
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
	// RailRequest is rail-specific data signed with the intent (for x402,
	// an X402Request).
	RailRequest json.RawMessage `json:"rail_request,omitempty"`
	// DryRun asks for the verdict only: nothing is stored or held.
	DryRun bool `json:"dry_run,omitempty"`
}

// CaptureRequest is the body of POST /v1/agent/spends/{id}/capture;
// Amount "" captures the whole hold.
type CaptureRequest struct {
	Amount string `json:"amount,omitempty"`
}

// DenyRequest is the body of POST /v1/approvals/{id}/deny; the agent
// receives Reason.
type DenyRequest struct {
	Reason string `json:"reason,omitempty"`
}

// ResolveRequest is an owner's resolution of a spend whose outcome is
// unknown: CapturedTx (it was paid in this transaction) or Released with
// a Reason (nothing moved, and nothing can move any more).
type ResolveRequest struct {
	CapturedTx string `json:"captured_tx,omitempty"`
	Released   bool   `json:"released,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// Window is a budget window of Limits (USD decimals).
type Window struct {
	Limit     string `json:"limit"`
	Used      string `json:"used"`
	Remaining string `json:"remaining"`
}

// RateWindow is the rate limit of Limits ("10/1m") and the requests
// counted in its current window.
type RateWindow struct {
	Limit string `json:"limit"`
	Used  int64  `json:"used"`
}

// Limits is an agent's mandate and what is left of it. Daily, Lifetime and
// Rate are nil when the mandate sets no such limit.
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
	DailyUsed      string          `json:"daily_used"`
	LifetimeUsed   string          `json:"lifetime_used"`
	PerTxAuto      string          `json:"per_tx_auto,omitempty"`
	PerTxMax       string          `json:"per_tx_max,omitempty"`
	Wallets        []Wallet        `json:"wallets"`

	Raw json.RawMessage `json:"-"`
}

// Balance is one token balance of an agent's wallet; Error is set (and
// Balance empty) when the chain could not be read.
type Balance struct {
	Network string `json:"network"`
	Asset   string `json:"asset"`
	Token   string `json:"token"`
	Address string `json:"address"`
	Balance string `json:"balance"`
	Error   string `json:"error,omitempty"`
}

// Balances is the answer of GET /v1/agent/balances and
// GET /v1/agents/{ref}/balances.
type Balances struct {
	AgentID  string    `json:"agent_id"`
	Balances []Balance `json:"balances"`
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

// Assets is the answer of GET /v1/agent/assets.
type Assets struct {
	Assets []Asset `json:"assets"`
}

// FundRequest is the body of POST /v1/agents/{ref}/fund (dev chain only).
type FundRequest struct {
	Amount string `json:"amount"`
	Asset  string `json:"asset,omitempty"`
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

// Chains is what the server knows of chains (GET /v1/chains).
type Chains struct {
	Networks   []string `json:"networks"`
	Relayer    string   `json:"relayer"`
	DevNetwork string   `json:"dev_network"`
}

// AuditActor is who caused an audit event.
type AuditActor struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// AuditEvent is one event of the audit chain (hashes in hex).
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

// AuditEvents is the answer of GET /v1/audit/tail.
type AuditEvents struct {
	Events []AuditEvent `json:"events"`
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

// AuditKey is the server's audit public key (hex) and its id.
type AuditKey struct {
	AuditKey string `json:"audit_key"`
	KeyID    string `json:"key_id"`
}

// X402Request is the rail_request of an x402 spend: what the agent was
// asked to pay for, exactly as the seller offered it.
type X402Request struct {
	URL      string          `json:"url"`
	Method   string          `json:"method,omitempty"`
	Version  int             `json:"x402_version"`
	Offer    json.RawMessage `json:"offer"`
	Resource json.RawMessage `json:"resource,omitempty"` // v2 PaymentRequired.resource
	Max      string          `json:"max,omitempty"`      // the agent's own cap, in the asset's units
}

// X402Payment is the part of a signed x402 spend's rail_data the agent
// needs: the header to retry the request with.
type X402Payment struct {
	Header      string `json:"header"`
	HeaderValue string `json:"header_value"`
	Nonce       string `json:"nonce"`
	ValidBefore int64  `json:"valid_before"`
}

// SettlementReport is the body of POST /v1/agent/spends/{id}/settlement:
// what the seller answered to the paid retry.
type SettlementReport struct {
	Success     bool   `json:"success"`
	Transaction string `json:"transaction,omitempty"`
	Network     string `json:"network,omitempty"`
	ErrorReason string `json:"error_reason,omitempty"`
	HTTPStatus  int    `json:"http_status,omitempty"`
}

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

// UnmarshalJSON decodes f: the agent (which keeps the raw object) and the
// cancellations. Without it the embedded Agent's method would drop them.
func (f *FreezeResponse) UnmarshalJSON(b []byte) error {
	if err := f.Agent.UnmarshalJSON(b); err != nil {
		return err
	}
	var c struct {
		Cancellations []Cancellation `json:"cancellations"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return err
	}
	f.Cancellations = c.Cancellations
	return nil
}
