package mcpserver

import (
	"context"
	"net/http"
	"time"

	"github.com/purserhq/purser/api"
)

// Agent is what the tools need of Purser: one agent's side of the HTTP
// API, signed with its identity key in this process. The key never
// crosses this interface; an implementation holds it.
//
// Errors that carry a stable code (docs/api.md) implement Coded; any
// other error is a transport failure (Purser unreachable, a timeout),
// which the tools treat as "outcome unknown" for anything that may have
// moved money. A refusal by the mandate is not an error: Authorize and
// Fetch return the spend with status denied.
type Agent interface {
	Limits(ctx context.Context) (*Limits, error)
	Balances(ctx context.Context) ([]Balance, error)
	Assets(ctx context.Context) ([]Asset, error)
	// Authorize asks for a spend (payout, or a dry run of one).
	Authorize(ctx context.Context, req AuthorizeRequest) (*Spend, error)
	Spend(ctx context.Context, id string) (*Spend, error)
	// Confirm carries out an approved spend on a rail Purser executes.
	Confirm(ctx context.Context, id string) (*Spend, error)
	// Fetch requests a URL and pays its 402 through Purser.
	Fetch(ctx context.Context, req FetchRequest) (*FetchResult, error)
	// ConfirmFetch finishes an x402 payment an owner approved.
	ConfirmFetch(ctx context.Context, spendID string, req FetchRequest) (*FetchResult, error)
}

// Coded is an error with a stable code of docs/api.md.
type Coded interface {
	error
	Code() string
}

// APIError is an error with a code, as the Agent implementations return
// them. Reasons are the reason codes of a refusal; RetryAfter the server's
// Retry-After, if any.
type APIError struct {
	Status     int
	ErrCode    string
	Msg        string
	Field      string
	Reasons    []string
	RetryAfter time.Duration
	// SpendID and Transaction, when the error is about one spend
	// (already_paid).
	SpendID, Transaction string
}

func (e *APIError) Error() string {
	if e.Msg == "" {
		return e.ErrCode
	}
	return e.Msg
}

// Code is the stable code.
func (e *APIError) Code() string { return e.ErrCode }

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

// Spend is a spend as the tools report it.
type Spend struct {
	ID             string
	Status         string
	Decision       string
	Reasons        []string
	Rail           string
	Host           string
	Payee          string
	Asset          string
	Network        string
	Amount         string
	AmountUSD      string
	Captured       string // "" until something was captured
	RailRef        string // the transaction, once known
	IdempotencyKey string
	ExpiresAt      *time.Time
	DryRun         bool
	Replayed       bool
	// URL and Method of an x402 spend (from its rail request).
	URL, Method string
}

// AuthorizeRequest is a spend request.
type AuthorizeRequest struct {
	Rail           string
	Payee          string
	Amount         string
	Asset          string
	Network        string
	Memo           string
	IdempotencyKey string
	DryRun         bool
}

// Window is a budget window in USD.
type Window struct {
	Limit, Used, Remaining string
}

// Limits is the agent's mandate and what is left of it.
type Limits struct {
	AgentID        string
	Name           string
	Status         string
	MandateVersion int64
	Day            string
	Timezone       string
	Daily          *Window
	Lifetime       *Window
	RateLimit      string
	RateUsed       int64
	PerTxAuto      string
	PerTxMax       string
	Rails          []string
	Hosts          []string
	ValidUntil     string
}

// Balance is one token balance of the agent's wallet.
type Balance struct {
	Network, Asset, Address, Balance, Error string
}

// Asset is an asset Purser can pay with.
type Asset struct {
	Symbol   string
	Network  string
	Decimals uint8
	USD      bool
}

// FetchRequest is one paid-API call.
type FetchRequest struct {
	URL            string
	Method         string
	Header         http.Header
	Body           []byte
	Max            string
	IdempotencyKey string
	DryRun         bool
}

// Fetch outcomes.
const (
	OutcomeServed       = "served"
	OutcomePaid         = "paid"
	OutcomePending      = "pending_approval"
	OutcomeRefused      = "refused"
	OutcomeSellerFailed = "seller_failed"
	OutcomeDryRun       = "dry_run"
)

// FetchResult is how a fetch ended.
type FetchResult struct {
	Outcome     string
	HTTPStatus  int
	Header      http.Header
	Body        []byte
	Spend       *Spend
	Transaction string // the settlement's, when the seller reported one
	Settled     bool   // the seller reported a successful settlement
	Offer       *Offer
	Reasons     []string
	Error       string
}

// Offer is the seller's offer that was chosen.
type Offer struct {
	Network, Asset, Amount, PayTo string
}

// ToolAgent is what the owner-described tools need beyond Agent: the
// agent's catalogue and calls through Purser's proxy. An Agent without it
// serves the built-in tools only.
type ToolAgent interface {
	// Grants is the agent's active grants and the tools they cover (GET
	// /v1/agent/grants); its Version changes whenever either does.
	Grants(ctx context.Context) (*api.AgentGrants, error)
	// Proxy calls a credential's upstream through Purser. An answer of the
	// upstream is a ProxyResult, whatever its status; a call that waits
	// for the owner is a ProxyResult with Pending set; a refusal or any
	// other answer Purser made instead of the upstream is an error
	// (spend_denied as *APIError with the reasons).
	Proxy(ctx context.Context, req ProxyRequest) (*ProxyResult, error)
}

// ProxyRequest is one call through the proxy. Path is below the
// credential's upstream, escaped, with its query.
type ProxyRequest struct {
	Credential     string
	Method         string
	Path           string
	Header         http.Header
	Body           []byte
	IdempotencyKey string
}

// ProxyResult is the upstream's answer (Body read whole, within the
// proxy's bound), or, with Pending, the spend that waits for approval.
type ProxyResult struct {
	HTTPStatus int
	Header     http.Header
	Body       []byte
	// SpendID and Price are Purser's Purser-Spend-Id and Purser-Price.
	SpendID, Price string
	Pending        *Spend
}
