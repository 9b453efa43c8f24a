package spend

import (
	"context"
	"encoding/json"
	"math/big"
	"time"
)

// RailAPIProxy is the rail of calls through the credential proxy
// (internal/apiproxy): each call to a vault credential's upstream is a
// spend on it.
const RailAPIProxy = "apiproxy"

// Credential is a vault entry: an upstream API and how its secret is
// injected. The secret itself is in CredentialSecret, sealed.
type Credential struct {
	ID           string // crd_…
	Name         string // unique among credentials
	Upstream     string // scheme://host[:port][/base path], fixed: an agent cannot change it
	Inject       string // the injection spec as the owner gave it (apiproxy.ParseInject)
	AllowPrivate bool   // the upstream may resolve to private, loopback or link-local addresses
	TimeoutMS    int64  // an upstream call's deadline, whole call; 0: the default
	Version      int64  // the current secret's version (1, 2, …)
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// CredentialSecret is one version of a credential's secret, sealed with
// the keystore's envelope encryption (additional data names the
// credential id and version). A version replaced by rotate stays usable
// until RetiresAt (the owner's grace period); every stored version is
// scrubbed from what the proxy returns.
type CredentialSecret struct {
	CredentialID string
	Version      int64
	Sealed       []byte
	CreatedAt    time.Time
	RetiresAt    *time.Time // nil: the current version
}

// Grant lets one agent call one credential's upstream: the methods and
// paths it may use, what a call costs and how often it may be made.
// Granting again replaces the grant (a new ID); revoking sets RevokedAt.
type Grant struct {
	ID           string // grt_…
	CredentialID string
	AgentID      string
	Methods      []string // upper case, e.g. GET, POST
	Paths        []string // patterns: exact, "*" one segment, a trailing "*" the rest
	// Price is what a call holds and captures, in the asset's atomic units
	// (USDC); nil: unpriced (counted, rate-limited and audited, zero held).
	Price *big.Int
	// PriceHeader, when set, names the response header in which the
	// upstream reports a call's price (a decimal in the asset's units);
	// MaxPrice is then what each call holds, and at most that is captured.
	PriceHeader string
	MaxPrice    *big.Int
	RateLimit   int           // calls per RatePer; 0: no grant rate limit
	RatePer     time.Duration // the rate window
	RateStart   int64         // unix seconds of the current rate window
	RateUsed    int           // calls counted in that window
	ExpiresAt   *time.Time
	RevokedAt   *time.Time
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Tool is an MCP tool an owner describes over a credential: purser mcp
// lists it to agents whose grant covers its method and path, and calls it
// through the proxy.
type Tool struct {
	CredentialID string
	Name         string // unique in the deployment
	Description  string
	Method       string
	Path         string          // template: /v1/customers/{id}
	Schema       json.RawMessage // JSON Schema of the arguments (an object schema)
	Body         string          // how arguments that fill no placeholder are sent: "query", "json" or "form"
	Price        *big.Int        // nil: the grant's price; else what a call matching this tool holds
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// VaultTx is the part of Tx that stores credentials, grants and tools.
// Secrets are stored sealed; the store never sees a plain secret.
type VaultTx interface {
	// CredentialCreate adds a credential; a name in use is ErrConflict.
	CredentialCreate(ctx context.Context, c *Credential) error
	// CredentialGet finds a credential by id or by name.
	CredentialGet(ctx context.Context, ref string) (*Credential, error)
	// CredentialList returns every credential, by name.
	CredentialList(ctx context.Context) ([]*Credential, error)
	// CredentialUpdate writes Upstream, Inject, AllowPrivate, TimeoutMS,
	// Version and UpdatedAt.
	CredentialUpdate(ctx context.Context, c *Credential) error
	// CredentialDelete removes a credential with its secrets, grants and
	// tools: no ciphertext of it remains.
	CredentialDelete(ctx context.Context, id string) error

	// CredentialSecretAdd stores a sealed version; a second one with the
	// same (credential, version) is ErrConflict.
	CredentialSecretAdd(ctx context.Context, s *CredentialSecret) error
	// CredentialSecrets returns a credential's versions, newest first.
	CredentialSecrets(ctx context.Context, credentialID string) ([]*CredentialSecret, error)
	// CredentialSecretUpdate writes RetiresAt.
	CredentialSecretUpdate(ctx context.Context, s *CredentialSecret) error

	// GrantPut stores g as the grant of (CredentialID, AgentID), replacing
	// the one there was.
	GrantPut(ctx context.Context, g *Grant) error
	// GrantGet returns the grant of (credential, agent), revoked or not.
	GrantGet(ctx context.Context, credentialID, agentID string) (*Grant, error)
	// GrantList returns grants, filtered by credential and agent ("":
	// any), by credential then agent.
	GrantList(ctx context.Context, credentialID, agentID string) ([]*Grant, error)
	// GrantUpdate writes RateStart, RateUsed, RevokedAt and UpdatedAt.
	GrantUpdate(ctx context.Context, g *Grant) error

	// ToolPut adds or replaces the tool named t.Name; a name used by
	// another credential's tool is ErrConflict.
	ToolPut(ctx context.Context, t *Tool) error
	// ToolDelete removes a credential's tool.
	ToolDelete(ctx context.Context, credentialID, name string) error
	// ToolList returns tools, filtered by credential ("": all), by name.
	ToolList(ctx context.Context, credentialID string) ([]*Tool, error)
}

// AsAgent authenticates c (resolving its key and spending its nonce) and
// runs fn for its agent in the same transaction: the agent-side reads of
// packages beside spend (GET /v1/agent/grants) go through it.
func (s *Service) AsAgent(ctx context.Context, c Caller, fn func(tx Tx, a *Agent) error) error {
	return s.inTx(ctx, func(tx Tx) error {
		a, err := s.authAgent(ctx, tx, c, false)
		if err != nil {
			return err
		}
		return fn(tx, a)
	})
}

// DefaultNetwork is the network of requests that name none.
func (s *Service) DefaultNetwork() string { return s.cfg.DefaultNetwork }
