package api

import (
	"encoding/json"
	"time"
)

// The credential vault and the proxy (docs/vault.md). Secrets are
// write-only: they appear in requests (PutCredentialRequest,
// RotateCredentialRequest) and in no answer.

// PutCredentialRequest is the body of POST /v1/vault: a new credential.
type PutCredentialRequest struct {
	Name string `json:"name"`
	// Upstream is the API's base URL (https://api.example.com, optionally
	// with a base path). Scheme, host and port are fixed: an agent only
	// chooses the path below it.
	Upstream string `json:"upstream"`
	// Inject says where the secret goes: "header:NAME=TEMPLATE" (e.g.
	// "header:Authorization=Bearer {secret}"), "query:PARAM={secret}" or
	// "basic:USER:{secret}".
	Inject string `json:"inject"`
	// Secret is the secret itself; never returned.
	Secret string `json:"secret"`
	// AllowPrivate lets the upstream resolve to private, loopback or
	// link-local addresses (an API on the owner's own network).
	AllowPrivate bool `json:"allow_private,omitempty"`
	// Timeout bounds a whole upstream call, a Go duration ("30s"); ""
	// means 30 s.
	Timeout string `json:"timeout,omitempty"`
}

// RotateCredentialRequest is the body of POST /v1/vault/{name}/rotate.
type RotateCredentialRequest struct {
	Secret string `json:"secret"`
	// Grace keeps the previous version usable for this long (a Go
	// duration): a call the upstream refuses with 401 under the new
	// secret is retried once with the old one. "" or "0s": none.
	Grace string `json:"grace,omitempty"`
}

// Credential is a vault entry as the owner sees it: never its secret.
type Credential struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Upstream     string `json:"upstream"`
	Inject       string `json:"inject"`
	AllowPrivate bool   `json:"allow_private"`
	Timeout      string `json:"timeout"`
	// Version is the current secret's version.
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Versions, Grants and Tools are filled by GET /v1/vault/{name}.
	Versions []SecretVersion `json:"versions,omitempty"`
	Grants   []Grant         `json:"grants,omitempty"`
	Tools    []Tool          `json:"tools,omitempty"`
}

// SecretVersion describes one stored version of a secret (not the
// secret).
type SecretVersion struct {
	Version   int64      `json:"version"`
	Current   bool       `json:"current"`
	CreatedAt time.Time  `json:"created_at"`
	RetiresAt *time.Time `json:"retires_at,omitempty"`
}

// Credentials is the answer of GET /v1/vault.
type Credentials struct {
	Credentials []Credential `json:"credentials"`
}

// GrantRequest is the body of POST /v1/vault/{name}/grants.
type GrantRequest struct {
	// Agent is the agent's id or name.
	Agent string `json:"agent"`
	// Methods the agent may use, e.g. ["GET","POST"].
	Methods []string `json:"methods"`
	// Paths the agent may call, below the upstream's base path: exact
	// ("/v1/search"), "*" for one segment ("/v1/items/*/reviews"), a
	// trailing "*" for the rest ("/v1/items/*").
	Paths []string `json:"paths"`
	// Price is what one call costs, in USDC ("0.002"); "" with no
	// PriceHeader: unpriced.
	Price string `json:"price,omitempty"`
	// PriceHeader names the upstream's response header that reports a
	// call's price; MaxPrice is then held per call, and at most that is
	// captured.
	PriceHeader string `json:"price_header,omitempty"`
	MaxPrice    string `json:"max_price,omitempty"`
	// Rate limits the grant's calls, "COUNT/DURATION" ("60/1m").
	Rate string `json:"rate,omitempty"`
	// Expires ends the grant after this long (a Go duration, "24h").
	Expires string `json:"expires,omitempty"`
}

// Grant is an agent's permission to call a credential's upstream.
type Grant struct {
	ID          string     `json:"id"`
	Credential  string     `json:"credential"`
	AgentID     string     `json:"agent_id"`
	AgentName   string     `json:"agent_name,omitempty"`
	Methods     []string   `json:"methods"`
	Paths       []string   `json:"paths"`
	Price       string     `json:"price,omitempty"`
	PriceHeader string     `json:"price_header,omitempty"`
	MaxPrice    string     `json:"max_price,omitempty"`
	Asset       string     `json:"asset"`
	Rate        string     `json:"rate,omitempty"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	// Status is "active", "expired" or "revoked".
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
}

// Grants is the answer of GET /v1/vault/{name}/grants.
type Grants struct {
	Grants []Grant `json:"grants"`
}

// ToolRequest is the body of POST /v1/vault/{name}/tools: an MCP tool
// over the credential.
type ToolRequest struct {
	// Name is the tool's name for the model: [a-z][a-z0-9_]{0,63},
	// unique in the deployment, none of purser mcp's own tools.
	Name        string `json:"name"`
	Description string `json:"description"`
	Method      string `json:"method"`
	// Path is a template below the upstream's base path; {arg} is
	// filled from the argument of that name ("/v1/customers/{id}").
	Path string `json:"path"`
	// Schema is the JSON Schema of the arguments (type object).
	Schema json.RawMessage `json:"schema,omitempty"`
	// Body says how arguments that fill no placeholder are sent: "query"
	// (default for GET, DELETE), "json" (default otherwise) or "form".
	Body string `json:"body,omitempty"`
	// Price, when set, is what a call matching this tool's method and
	// path costs instead of the grant's price (USDC).
	Price string `json:"price,omitempty"`
}

// Tool is an owner-described MCP tool over a credential.
type Tool struct {
	Name        string          `json:"name"`
	Credential  string          `json:"credential"`
	Description string          `json:"description"`
	Method      string          `json:"method"`
	Path        string          `json:"path"`
	Schema      json.RawMessage `json:"schema"`
	Body        string          `json:"body"`
	Price       string          `json:"price,omitempty"`
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
}

// Tools is the answer of GET /v1/vault/{name}/tools.
type Tools struct {
	Tools []Tool `json:"tools"`
}

// AgentGrant is what an agent sees of one of its grants (GET
// /v1/agent/grants): where it may call, never the secret.
type AgentGrant struct {
	Credential  string     `json:"credential"`
	Upstream    string     `json:"upstream"`
	Methods     []string   `json:"methods"`
	Paths       []string   `json:"paths"`
	Price       string     `json:"price,omitempty"`
	PriceHeader string     `json:"price_header,omitempty"`
	MaxPrice    string     `json:"max_price,omitempty"`
	Asset       string     `json:"asset"`
	Rate        string     `json:"rate,omitempty"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
}

// AgentGrants is the answer of GET /v1/agent/grants: the caller's active
// grants and the tools they cover. Version changes whenever either does
// (purser mcp polls it to announce tools/list_changed).
type AgentGrants struct {
	Grants  []AgentGrant `json:"grants"`
	Tools   []Tool       `json:"tools"`
	Version string       `json:"version"`
}

// Headers of proxied calls (/v1/proxy/{name}/{path}).
const (
	// HeaderSpendID names the spend a proxied call made, on every answer.
	HeaderSpendID = "Purser-Spend-Id"
	// HeaderPrice is the price captured for the call (USDC), on answers
	// the upstream gave.
	HeaderPrice = "Purser-Price"
	// HeaderError is set (to the error code) on answers Purser gave
	// instead of the upstream: their body is a Purser error.
	HeaderError = "Purser-Error"
	// HeaderIdempotencyKey makes a proxied call idempotent: a retry with
	// the same key and the same request is not sent upstream again.
	HeaderIdempotencyKey = "Idempotency-Key"
)
