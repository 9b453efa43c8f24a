package apiproxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/metrics"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/spend"
)

// Sealer is the keystore's envelope encryption (keystore.Keystore).
type Sealer interface {
	Encrypt(plaintext, aad []byte) ([]byte, error)
	Decrypt(ciphertext, aad []byte) ([]byte, error)
}

// Limits of the vault.
const (
	MaxCredentials    = 200
	MaxGrantPaths     = 32
	MaxToolsPerCred   = 64
	MaxSecret         = 4 << 10
	MaxToolSchema     = 16 << 10
	DefaultTimeout    = 30 * time.Second
	MaxTimeout        = 5 * time.Minute
	DefaultMaxRequest = 1 << 20
	// DefaultMaxResponse bounds what one call returns to an agent.
	DefaultMaxResponse = 10 << 20
)

// Config wires a Vault.
type Config struct {
	// Service is the spend pipeline; nil: Bind it before use (the vault is
	// one of its rails, so it is built first).
	Service *spend.Service
	Sealer  Sealer
	Assets  *money.Registry
	Logger  *slog.Logger
	// Network is where proxied calls' asset (USDC) is looked up; "" is
	// the service's default network.
	Network string
	// Forwarder sends the calls; nil builds one with the defaults.
	Forwarder *Forwarder
	// MaxResponse bounds one call's answer (default DefaultMaxResponse).
	MaxResponse int64
	Metrics     *metrics.Registry
}

// Vault is the credential vault, the apiproxy rail and the proxy.
type Vault struct {
	svc     *spend.Service
	sealer  Sealer
	asset   money.Asset
	log     *slog.Logger
	fwd     *Forwarder
	maxResp int64

	mu     sync.Mutex
	cache  map[string]*entry // credential id → what a call needs, at one (version, updated) state
	byName map[string]named  // credential name → its entry, read at a time (cacheTTL)

	settles  sync.WaitGroup // calls answered, not settled yet
	smu      sync.Mutex
	pending  []spend.Settlement
	settling bool // a settleLoop runs
	metrics  *proxyMetrics
}

// New builds a Vault.
func New(cfg Config) (*Vault, error) {
	if cfg.Sealer == nil || cfg.Assets == nil {
		return nil, errors.New("apiproxy: Sealer and Assets are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	network := cfg.Network
	if network == "" && cfg.Service != nil {
		network = cfg.Service.DefaultNetwork()
	}
	asset, err := cfg.Assets.Lookup(network, "USDC")
	if err != nil {
		return nil, fmt.Errorf("apiproxy: proxied calls are priced in USDC on %s: %w", network, err)
	}
	if cfg.MaxResponse <= 0 {
		cfg.MaxResponse = DefaultMaxResponse
	}
	if cfg.Forwarder == nil {
		cfg.Forwarder = NewForwarder(Options{})
	}
	return &Vault{svc: cfg.Service, sealer: cfg.Sealer, asset: asset, log: cfg.Logger, fwd: cfg.Forwarder,
		maxResp: cfg.MaxResponse, cache: map[string]*entry{}, byName: map[string]named{}, metrics: newProxyMetrics(cfg.Metrics)}, nil
}

// Bind gives the vault its service, when the vault had to exist first
// (it is one of the service's rails).
func (v *Vault) Bind(svc *spend.Service) { v.svc = svc }

// Name is the rail's name.
func (v *Vault) Name() string { return spend.RailAPIProxy }

// AllowsZeroAmount: unpriced calls are spends of zero.
func (v *Vault) AllowsZeroAmount() bool { return true }

// Wait waits for the settlements of calls already answered.
func (v *Vault) Wait() { v.settles.Wait() }

var (
	nameRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)
	toolNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	headerRE   = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)
)

// builtinTools are purser mcp's own tools: an owner's tool may not take
// their names.
var builtinTools = []string{"limits", "balance", "x402_fetch", "pay", "spend_status", "confirm", "dry_run"}

var methods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

func invalid(field, format string, args ...any) error {
	return spend.Errorf(spend.CodeInvalidRequest, format, args...).WithDetails(map[string]any{"field": field})
}

func credNotFound(name string) error {
	return spend.Errorf("credential_not_found", "no vault credential %q", name)
}

func newID(prefix string) string {
	var b [12]byte
	rand.Read(b[:]) //nolint:errcheck // crypto/rand does not fail
	return prefix + "_" + hex.EncodeToString(b[:])
}

func aad(credID string, version int64) []byte {
	return []byte("vault:" + credID + ":" + strconv.FormatInt(version, 10))
}

func parseTimeout(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Second || d > MaxTimeout {
		return 0, invalid("timeout", "timeout %q must be a duration from 1s to %s", s, MaxTimeout)
	}
	return d.Milliseconds(), nil
}

func timeoutOf(c *spend.Credential) time.Duration {
	if c.TimeoutMS <= 0 {
		return DefaultTimeout
	}
	return time.Duration(c.TimeoutMS) * time.Millisecond
}

func checkSecret(secret string) error {
	if len(secret) > MaxSecret {
		return spend.Errorf("secret_invalid", "the secret is longer than %d bytes", MaxSecret)
	}
	if err := ValidateSecret([]byte(secret)); err != nil {
		return spend.Errorf("secret_invalid", "the secret is refused: %s", err.Error())
	}
	return nil
}

// ownerTx is an owner's change of the vault: audited in its commit, and
// this node's cached credentials are dropped once it is.
func (v *Vault) ownerTx(ctx context.Context, action, subject string, fn func(tx spend.Tx) (any, error)) error {
	err := v.svc.InOwnerTx(ctx, action, subject, fn)
	if err == nil {
		v.invalidate()
	}
	return err
}

// Put stores a new credential and its secret (version 1).
func (v *Vault) Put(ctx context.Context, req api.PutCredentialRequest) (*api.Credential, error) {
	if !nameRE.MatchString(req.Name) {
		return nil, invalid("name", "name must be 1-64 characters [a-z0-9_.-], starting with a letter or digit")
	}
	up, err := ParseUpstream(req.Upstream)
	if err != nil {
		return nil, invalid("upstream", "upstream: %s", err.Error())
	}
	if up.Scheme == "http" && !req.AllowPrivate {
		// The secret would cross the network in clear: only an upstream on
		// the owner's own network (allowed explicitly) may be plain http.
		return nil, invalid("upstream", "an http upstream would carry the secret in clear: use https, or allow_private for an API on your own network")
	}
	if _, err := ParseInject(req.Inject); err != nil {
		return nil, invalid("inject", "inject: %s", err.Error())
	}
	if err := checkSecret(req.Secret); err != nil {
		return nil, err
	}
	tms, err := parseTimeout(req.Timeout)
	if err != nil {
		return nil, err
	}
	now := v.svc.Now()
	c := &spend.Credential{ID: newID("crd"), Name: req.Name, Upstream: up.String(), Inject: req.Inject,
		AllowPrivate: req.AllowPrivate, TimeoutMS: tms, Version: 1, CreatedAt: now, UpdatedAt: now}
	sealed, err := v.sealer.Encrypt([]byte(req.Secret), aad(c.ID, 1))
	if err != nil {
		return nil, err
	}
	err = v.ownerTx(ctx, "vault.put", "credential:"+c.ID, func(tx spend.Tx) (any, error) {
		all, err := tx.CredentialList(ctx)
		if err != nil {
			return nil, err
		}
		if len(all) >= MaxCredentials {
			return nil, spend.Errorf(spend.CodeInvalidRequest, "a deployment holds at most %d credentials", MaxCredentials)
		}
		if err := tx.CredentialCreate(ctx, c); err != nil {
			if errors.Is(err, spend.ErrConflict) {
				return nil, spend.Errorf("credential_exists", "a credential named %q exists; rotate its secret with `vault rotate`", c.Name)
			}
			return nil, err
		}
		if err := tx.CredentialSecretAdd(ctx, &spend.CredentialSecret{CredentialID: c.ID, Version: 1, Sealed: sealed, CreatedAt: now}); err != nil {
			return nil, err
		}
		return credDetails(c), nil
	})
	if err != nil {
		return nil, err
	}
	out := credView(c)
	return &out, nil
}

// credDetails is a credential in the audit trail: never its secret, nor
// anything derived from it.
func credDetails(c *spend.Credential) map[string]any {
	return map[string]any{"credential_id": c.ID, "name": c.Name, "upstream": c.Upstream, "inject": c.Inject,
		"allow_private": c.AllowPrivate, "timeout_ms": c.TimeoutMS, "version": c.Version}
}

func credView(c *spend.Credential) api.Credential {
	return api.Credential{ID: c.ID, Name: c.Name, Upstream: c.Upstream, Inject: c.Inject, AllowPrivate: c.AllowPrivate,
		Timeout: timeoutOf(c).String(), Version: c.Version, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
}

func getCred(ctx context.Context, tx spend.Tx, name string) (*spend.Credential, error) {
	c, err := tx.CredentialGet(ctx, name)
	if errors.Is(err, spend.ErrNotFound) {
		return nil, credNotFound(name)
	}
	return c, err
}

// Rotate stores a new version of a credential's secret. The previous
// version stays usable for grace (a call the upstream refuses with 401
// under the new one is tried once with it), then only scrubbed.
func (v *Vault) Rotate(ctx context.Context, name string, req api.RotateCredentialRequest) (*api.Credential, error) {
	if err := checkSecret(req.Secret); err != nil {
		return nil, err
	}
	var grace time.Duration
	if req.Grace != "" {
		d, err := time.ParseDuration(req.Grace)
		if err != nil || d < 0 || d > 30*24*time.Hour {
			return nil, invalid("grace", "grace %q must be a duration from 0s to 720h", req.Grace)
		}
		grace = d
	}
	var out api.Credential
	err := v.ownerTx(ctx, "vault.rotate", "credential:"+name, func(tx spend.Tx) (any, error) {
		now := v.svc.Now()
		c, err := getCred(ctx, tx, name)
		if err != nil {
			return nil, err
		}
		vs, err := tx.CredentialSecrets(ctx, c.ID)
		if err != nil {
			return nil, err
		}
		retires := now.Add(grace)
		for _, s := range vs {
			if s.RetiresAt == nil || s.RetiresAt.After(retires) {
				s.RetiresAt = &retires
				if err := tx.CredentialSecretUpdate(ctx, s); err != nil {
					return nil, err
				}
			}
		}
		prev := c.Version
		c.Version++
		sealed, err := v.sealer.Encrypt([]byte(req.Secret), aad(c.ID, c.Version))
		if err != nil {
			return nil, err
		}
		if err := tx.CredentialSecretAdd(ctx, &spend.CredentialSecret{CredentialID: c.ID, Version: c.Version, Sealed: sealed, CreatedAt: now}); err != nil {
			return nil, err
		}
		c.UpdatedAt = now
		if err := tx.CredentialUpdate(ctx, c); err != nil {
			return nil, err
		}
		out = credView(c)
		return map[string]any{"credential_id": c.ID, "name": c.Name, "version": c.Version, "previous_version": prev,
			"previous_retires_at": retires.Unix()}, nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// Delete removes a credential with every version of its secret, its
// grants and its tools.
func (v *Vault) Delete(ctx context.Context, name string) (*api.Credential, error) {
	var out api.Credential
	err := v.ownerTx(ctx, "vault.rm", "credential:"+name, func(tx spend.Tx) (any, error) {
		c, err := getCred(ctx, tx, name)
		if err != nil {
			return nil, err
		}
		if err := tx.CredentialDelete(ctx, c.ID); err != nil {
			return nil, err
		}
		out = credView(c)
		return map[string]any{"credential_id": c.ID, "name": c.Name}, nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// List returns every credential, by name.
func (v *Vault) List(ctx context.Context) ([]api.Credential, error) {
	out := []api.Credential{}
	err := v.svc.ReadTx(ctx, func(tx spend.Tx) error {
		cs, err := tx.CredentialList(ctx)
		if err != nil {
			return err
		}
		out = out[:0]
		for _, c := range cs {
			out = append(out, credView(c))
		}
		return nil
	})
	return out, err
}

// Get returns a credential with its versions, grants and tools.
func (v *Vault) Get(ctx context.Context, name string) (*api.Credential, error) {
	var out api.Credential
	err := v.svc.ReadTx(ctx, func(tx spend.Tx) error {
		c, err := getCred(ctx, tx, name)
		if err != nil {
			return err
		}
		out = credView(c)
		vs, err := tx.CredentialSecrets(ctx, c.ID)
		if err != nil {
			return err
		}
		out.Versions = make([]api.SecretVersion, 0, len(vs))
		for _, s := range vs {
			out.Versions = append(out.Versions, api.SecretVersion{Version: s.Version, Current: s.Version == c.Version,
				CreatedAt: s.CreatedAt, RetiresAt: s.RetiresAt})
		}
		if out.Grants, err = v.grantViews(ctx, tx, c); err != nil {
			return err
		}
		ts, err := tx.ToolList(ctx, c.ID)
		if err != nil {
			return err
		}
		out.Tools = make([]api.Tool, 0, len(ts))
		for _, t := range ts {
			out.Tools = append(out.Tools, v.toolView(c, t))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

func (v *Vault) price(p *big.Int) string {
	if p == nil {
		return ""
	}
	return money.FormatAmount(p, v.asset.Decimals)
}

func (v *Vault) parsePrice(field, s string) (*big.Int, error) {
	if s == "" {
		return nil, nil
	}
	p, err := money.ParseAmount(s, v.asset.Decimals)
	if err != nil {
		var e *spend.Error
		if errors.As(err, &e) && e.Details == nil {
			e.Details = map[string]any{"field": field}
		}
		return nil, err
	}
	return p, nil
}

func grantStatus(g *spend.Grant, now time.Time) string {
	switch {
	case g.RevokedAt != nil:
		return "revoked"
	case g.ExpiresAt != nil && !now.Before(*g.ExpiresAt):
		return "expired"
	}
	return "active"
}

func rateString(g *spend.Grant) string {
	if g.RateLimit <= 0 {
		return ""
	}
	return strconv.Itoa(g.RateLimit) + "/" + shortDuration(g.RatePer)
}

// shortDuration prints 1m for a minute, not 1m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	return strings.TrimSuffix(s, "0m")
}

func (v *Vault) grantView(c *spend.Credential, g *spend.Grant, agentName string, now time.Time) api.Grant {
	return api.Grant{ID: g.ID, Credential: c.Name, AgentID: g.AgentID, AgentName: agentName, Methods: nonNil(g.Methods),
		Paths: nonNil(g.Paths), Price: v.price(g.Price), PriceHeader: g.PriceHeader, MaxPrice: v.price(g.MaxPrice),
		Asset: v.asset.Symbol, Rate: rateString(g), ExpiresAt: g.ExpiresAt, RevokedAt: g.RevokedAt,
		Status: grantStatus(g, now), CreatedAt: g.CreatedAt}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (v *Vault) grantViews(ctx context.Context, tx spend.Tx, c *spend.Credential) ([]api.Grant, error) {
	gs, err := tx.GrantList(ctx, c.ID, "")
	if err != nil {
		return nil, err
	}
	now := v.svc.Now()
	out := make([]api.Grant, 0, len(gs))
	for _, g := range gs {
		name := ""
		if a, err := tx.AgentGet(ctx, g.AgentID); err == nil {
			name = a.Name
		}
		out = append(out, v.grantView(c, g, name, now))
	}
	return out, nil
}

// Grants lists a credential's grants.
func (v *Vault) Grants(ctx context.Context, name string) ([]api.Grant, error) {
	var out []api.Grant
	err := v.svc.ReadTx(ctx, func(tx spend.Tx) error {
		c, err := getCred(ctx, tx, name)
		if err != nil {
			return err
		}
		out, err = v.grantViews(ctx, tx, c)
		return err
	})
	return out, err
}

// ParseRate reads "COUNT/DURATION" ("60/1m").
func ParseRate(s string) (int, time.Duration, error) {
	n, per, ok := strings.Cut(s, "/")
	count, err := strconv.Atoi(n)
	if !ok || err != nil || count < 1 || count > 1_000_000 {
		return 0, 0, fmt.Errorf("rate %q must be COUNT/DURATION, e.g. 60/1m", s)
	}
	if per != "" && (per[0] < '0' || per[0] > '9') {
		per = "1" + per // "60/m"
	}
	d, err := time.ParseDuration(per)
	if err != nil || d < time.Second || d > 31*24*time.Hour || d%time.Second != 0 {
		return 0, 0, fmt.Errorf("rate %q: the window must be whole seconds, from 1s to 744h", s)
	}
	return count, d, nil
}

// Grant lets an agent call a credential's upstream, replacing the grant
// it had.
func (v *Vault) Grant(ctx context.Context, name string, req api.GrantRequest) (*api.Grant, error) {
	if len(req.Methods) == 0 {
		return nil, invalid("methods", "methods is required, e.g. [\"GET\"]")
	}
	ms := make([]string, 0, len(req.Methods))
	for _, m := range req.Methods {
		m = strings.ToUpper(strings.TrimSpace(m))
		if !slices.Contains(methods, m) {
			return nil, invalid("methods", "method %q is not one of %s", m, strings.Join(methods, ", "))
		}
		ms = append(ms, m)
	}
	slices.Sort(ms)
	ms = slices.Compact(ms)
	if len(req.Paths) == 0 || len(req.Paths) > MaxGrantPaths {
		return nil, invalid("paths", "paths must list 1 to %d path patterns", MaxGrantPaths)
	}
	for _, p := range req.Paths {
		if err := ValidatePattern(p); err != nil {
			return nil, invalid("paths", "path pattern %q: %s", p, err.Error())
		}
	}
	price, err := v.parsePrice("price", req.Price)
	if err != nil {
		return nil, err
	}
	maxPrice, err := v.parsePrice("max_price", req.MaxPrice)
	if err != nil {
		return nil, err
	}
	switch {
	case req.PriceHeader != "" && price != nil:
		return nil, invalid("price", "price and price_header exclude each other: a fixed price, or the upstream's reported price up to max_price")
	case req.PriceHeader != "" && !headerRE.MatchString(req.PriceHeader):
		return nil, invalid("price_header", "price_header must be a header name")
	case req.PriceHeader != "" && (maxPrice == nil || maxPrice.Sign() == 0):
		return nil, invalid("max_price", "price_header needs max_price: what each call holds, and the most captured")
	case req.PriceHeader == "" && maxPrice != nil:
		return nil, invalid("max_price", "max_price goes with price_header")
	}
	g := &spend.Grant{ID: newID("grt"), Methods: ms, Paths: slices.Clone(req.Paths), Price: price,
		PriceHeader: req.PriceHeader, MaxPrice: maxPrice}
	if req.Rate != "" {
		if g.RateLimit, g.RatePer, err = ParseRate(req.Rate); err != nil {
			return nil, invalid("rate", "%s", err.Error())
		}
	}
	now := v.svc.Now()
	if req.Expires != "" {
		d, err := time.ParseDuration(req.Expires)
		if err != nil || d <= 0 {
			return nil, invalid("expires", "expires %q must be a positive duration, e.g. 24h", req.Expires)
		}
		e := now.Add(d)
		g.ExpiresAt = &e
	}
	g.CreatedAt, g.UpdatedAt = now, now
	var out api.Grant
	err = v.ownerTx(ctx, "vault.grant", "credential:"+name, func(tx spend.Tx) (any, error) {
		c, err := getCred(ctx, tx, name)
		if err != nil {
			return nil, err
		}
		a, err := tx.AgentGet(ctx, req.Agent)
		if errors.Is(err, spend.ErrNotFound) {
			return nil, spend.Errorf(spend.CodeAgentNotFound, "no agent %q", req.Agent)
		}
		if err != nil {
			return nil, err
		}
		g.CredentialID, g.AgentID = c.ID, a.ID
		if err := tx.GrantPut(ctx, g); err != nil {
			return nil, err
		}
		out = v.grantView(c, g, a.Name, now)
		return grantDetails(c, &out), nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

func grantDetails(c *spend.Credential, g *api.Grant) map[string]any {
	d := map[string]any{"credential_id": c.ID, "name": c.Name, "grant_id": g.ID, "agent_id": g.AgentID,
		"methods": g.Methods, "paths": g.Paths, "price": g.Price, "price_header": g.PriceHeader, "max_price": g.MaxPrice,
		"asset": g.Asset, "rate": g.Rate}
	if g.ExpiresAt != nil {
		d["expires_at"] = g.ExpiresAt.Unix()
	}
	return d
}

// Revoke ends an agent's grant on a credential: its next call is refused.
func (v *Vault) Revoke(ctx context.Context, name, agent string) (*api.Grant, error) {
	var out api.Grant
	err := v.ownerTx(ctx, "vault.revoke", "credential:"+name, func(tx spend.Tx) (any, error) {
		now := v.svc.Now()
		c, err := getCred(ctx, tx, name)
		if err != nil {
			return nil, err
		}
		a, err := tx.AgentGet(ctx, agent)
		if errors.Is(err, spend.ErrNotFound) {
			return nil, spend.Errorf(spend.CodeAgentNotFound, "no agent %q", agent)
		}
		if err != nil {
			return nil, err
		}
		g, err := tx.GrantGet(ctx, c.ID, a.ID)
		if errors.Is(err, spend.ErrNotFound) {
			return nil, spend.Errorf("grant_not_found", "agent %s has no grant on %s", a.Name, c.Name)
		}
		if err != nil {
			return nil, err
		}
		if g.RevokedAt == nil {
			g.RevokedAt, g.UpdatedAt = &now, now
			if err := tx.GrantUpdate(ctx, g); err != nil {
				return nil, err
			}
		}
		out = v.grantView(c, g, a.Name, now)
		return map[string]any{"credential_id": c.ID, "name": c.Name, "grant_id": g.ID, "agent_id": a.ID}, nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

func (v *Vault) toolView(c *spend.Credential, t *spend.Tool) api.Tool {
	return api.Tool{Name: t.Name, Credential: c.Name, Description: t.Description, Method: t.Method, Path: t.Path,
		Schema: t.Schema, Body: t.Body, Price: v.price(t.Price), CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt}
}

var placeholderRE = regexp.MustCompile(`\{([^{}]*)\}`)
var argNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,63}$`)

// toolSchema checks an owner's argument schema, or makes one from the
// path's placeholders (each a required string).
func toolSchema(raw json.RawMessage, placeholders []string) (json.RawMessage, error) {
	if len(raw) == 0 {
		props := map[string]any{}
		for _, p := range placeholders {
			props[p] = map[string]any{"type": "string"}
		}
		return json.Marshal(map[string]any{"type": "object", "properties": props, "required": nonNil(placeholders), "additionalProperties": false})
	}
	if len(raw) > MaxToolSchema {
		return nil, invalid("schema", "schema is larger than %d bytes", MaxToolSchema)
	}
	var s struct {
		Type       string                     `json:"type"`
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(raw, &s); err != nil || s.Type != "object" {
		return nil, invalid("schema", "schema must be a JSON Schema object with \"type\": \"object\"")
	}
	for _, p := range placeholders {
		if _, ok := s.Properties[p]; !ok {
			return nil, invalid("schema", "the path's placeholder {%s} is not a property of the schema", p)
		}
	}
	var compact json.RawMessage
	compact, err := json.Marshal(json.RawMessage(raw))
	if err != nil {
		return nil, invalid("schema", "schema is not valid JSON")
	}
	return compact, nil
}

// PutTool adds or replaces an MCP tool over a credential.
func (v *Vault) PutTool(ctx context.Context, name string, req api.ToolRequest) (*api.Tool, error) {
	if !toolNameRE.MatchString(req.Name) {
		return nil, invalid("name", "tool name must be 1-64 characters [a-z0-9_], starting with a letter")
	}
	if slices.Contains(builtinTools, req.Name) {
		return nil, invalid("name", "%q is one of purser mcp's own tools", req.Name)
	}
	if d := strings.TrimSpace(req.Description); d == "" || len(req.Description) > 2048 {
		return nil, invalid("description", "description is required, at most 2048 bytes: it is what the model reads")
	}
	m := strings.ToUpper(req.Method)
	if !slices.Contains(methods, m) {
		return nil, invalid("method", "method %q is not one of %s", req.Method, strings.Join(methods, ", "))
	}
	var ph []string
	for _, sub := range placeholderRE.FindAllStringSubmatch(req.Path, -1) {
		if !argNameRE.MatchString(sub[1]) {
			return nil, invalid("path", "placeholder {%s} must be [a-z_][a-z0-9_]*", sub[1])
		}
		ph = append(ph, sub[1])
	}
	if _, err := CleanPath(placeholderRE.ReplaceAllString(req.Path, "x")); err != nil {
		return nil, invalid("path", "path template %q: %s", req.Path, err.Error())
	}
	body := req.Body
	switch body {
	case "":
		body = "json"
		if m == "GET" || m == "DELETE" || m == "HEAD" || m == "OPTIONS" {
			body = "query"
		}
	case "query", "json", "form":
	default:
		return nil, invalid("body", "body must be query, json or form")
	}
	schema, err := toolSchema(req.Schema, ph)
	if err != nil {
		return nil, err
	}
	price, err := v.parsePrice("price", req.Price)
	if err != nil {
		return nil, err
	}
	var out api.Tool
	err = v.ownerTx(ctx, "vault.tool_put", "credential:"+name, func(tx spend.Tx) (any, error) {
		now := v.svc.Now()
		c, err := getCred(ctx, tx, name)
		if err != nil {
			return nil, err
		}
		ts, err := tx.ToolList(ctx, c.ID)
		if err != nil {
			return nil, err
		}
		created := now
		exists := false
		for _, t := range ts {
			if t.Name == req.Name {
				created, exists = t.CreatedAt, true
			}
		}
		if !exists && len(ts) >= MaxToolsPerCred {
			return nil, invalid("name", "a credential has at most %d tools", MaxToolsPerCred)
		}
		t := &spend.Tool{CredentialID: c.ID, Name: req.Name, Description: req.Description, Method: m, Path: req.Path,
			Schema: schema, Body: body, Price: price, CreatedAt: created, UpdatedAt: now}
		if err := tx.ToolPut(ctx, t); err != nil {
			if errors.Is(err, spend.ErrConflict) {
				return nil, spend.Errorf("tool_exists", "another credential has a tool named %q", req.Name)
			}
			return nil, err
		}
		// The credential's update time versions its tool catalogue.
		c.UpdatedAt = now
		if err := tx.CredentialUpdate(ctx, c); err != nil {
			return nil, err
		}
		out = v.toolView(c, t)
		return map[string]any{"credential_id": c.ID, "name": c.Name, "tool": t.Name, "method": t.Method, "path": t.Path,
			"price": out.Price}, nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// Tools lists a credential's tools.
func (v *Vault) Tools(ctx context.Context, name string) ([]api.Tool, error) {
	out := []api.Tool{}
	err := v.svc.ReadTx(ctx, func(tx spend.Tx) error {
		c, err := getCred(ctx, tx, name)
		if err != nil {
			return err
		}
		ts, err := tx.ToolList(ctx, c.ID)
		if err != nil {
			return err
		}
		out = out[:0]
		for _, t := range ts {
			out = append(out, v.toolView(c, t))
		}
		return nil
	})
	return out, err
}

// DeleteTool removes a credential's tool.
func (v *Vault) DeleteTool(ctx context.Context, name, tool string) (*api.Tool, error) {
	var out api.Tool
	err := v.ownerTx(ctx, "vault.tool_rm", "credential:"+name, func(tx spend.Tx) (any, error) {
		now := v.svc.Now()
		c, err := getCred(ctx, tx, name)
		if err != nil {
			return nil, err
		}
		ts, err := tx.ToolList(ctx, c.ID)
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(ts, func(t *spend.Tool) bool { return t.Name == tool })
		if i < 0 {
			return nil, spend.Errorf("tool_not_found", "credential %s has no tool %q", c.Name, tool)
		}
		if err := tx.ToolDelete(ctx, c.ID, tool); err != nil {
			return nil, err
		}
		c.UpdatedAt = now
		if err := tx.CredentialUpdate(ctx, c); err != nil {
			return nil, err
		}
		out = v.toolView(c, ts[i])
		return map[string]any{"credential_id": c.ID, "name": c.Name, "tool": tool}, nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}
