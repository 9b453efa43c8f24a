package apiproxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"net/url"
	"slices"
	"time"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/metrics"
	"github.com/purserhq/purser/internal/spend"
)

var (
	_ spend.Rail        = (*Vault)(nil)
	_ spend.Admitter    = (*Vault)(nil)
	_ spend.ZeroAmounts = (*Vault)(nil)
)

// railRequest is the rail-specific part of a proxied call's spend: what
// the call is, as the grant judges it. It is built by Purser from the
// signed request (never taken from the agent as is) and stored with the
// spend; a retry under the same idempotency key must match it exactly.
type railRequest struct {
	Credential   string `json:"credential"`
	CredentialID string `json:"credential_id"`
	GrantID      string `json:"grant_id,omitempty"`
	Method       string `json:"method"`
	Path         string `json:"path"`
	QuerySHA256  string `json:"query_sha256,omitempty"`
	BodySHA256   string `json:"body_sha256"`
	Tool         string `json:"tool,omitempty"`
}

// entry is what a call needs of a credential, decrypted once per
// (version, update time): the secret versions and the tools.
type entry struct {
	cred     spend.Credential
	upstream *url.URL
	inject   Inject
	host     string // the spend's host: the upstream's, as the mandate sees it
	current  []byte
	previous []byte     // the version before, while it may still be used
	prevTill time.Time  // until when
	scrub    [][]byte   // every stored version
	tools    []*spend.Tool
}

// fresh reports whether e still describes c.
func (e *entry) fresh(c *spend.Credential) bool {
	return e != nil && e.cred.Version == c.Version && e.cred.UpdatedAt.Equal(c.UpdatedAt) && e.cred.Upstream == c.Upstream
}

// load returns the cached entry of c, or reads and decrypts it.
func (v *Vault) load(ctx context.Context, tx spend.Tx, c *spend.Credential) (*entry, error) {
	v.mu.Lock()
	e := v.cache[c.ID]
	v.mu.Unlock()
	if e.fresh(c) {
		return e, nil
	}
	up, err := ParseUpstream(c.Upstream)
	if err != nil {
		return nil, err
	}
	inj, err := ParseInject(c.Inject)
	if err != nil {
		return nil, err
	}
	vs, err := tx.CredentialSecrets(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	tools, err := tx.ToolList(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	e = &entry{cred: *c, upstream: up, inject: inj, host: up.Host, tools: tools}
	for _, s := range vs {
		pt, err := v.sealer.Decrypt(s.Sealed, aad(c.ID, s.Version))
		if err != nil {
			return nil, errors.New("apiproxy: a secret of credential " + c.Name + " does not open with this deployment's key")
		}
		e.scrub = append(e.scrub, pt)
		switch {
		case s.Version == c.Version:
			e.current = pt
		case s.Version == c.Version-1 && s.RetiresAt != nil:
			e.previous, e.prevTill = pt, *s.RetiresAt
		}
	}
	if e.current == nil {
		return nil, errors.New("apiproxy: credential " + c.Name + " has no current secret")
	}
	v.mu.Lock()
	v.cache[c.ID] = e
	v.mu.Unlock()
	return e, nil
}

// call is one proxied call as read before its decision.
type call struct {
	e     *entry
	grant *spend.Grant // nil: none (the decision refuses it, recorded)
	tool  *spend.Tool  // the tool whose method and path it matches, if any
	price *big.Int     // what it holds
	fixed bool         // the price is fixed (no price header to read)
}

// prepare reads the credential and the caller's grant (a read-only
// transaction, off the writer) and prices the call. The decision's
// transaction checks the grant again (Admit).
func (v *Vault) prepare(ctx context.Context, address, name, method, path string) (*call, error) {
	var out *call
	err := v.svc.ReadTx(ctx, func(tx spend.Tx) error {
		c, err := getCred(ctx, tx, name)
		if err != nil {
			return err
		}
		e, err := v.load(ctx, tx, c)
		if err != nil {
			return err
		}
		out = &call{e: e, price: new(big.Int), fixed: true}
		k, err := tx.AgentKeyGet(ctx, address)
		if errors.Is(err, spend.ErrNotFound) {
			return nil // the pipeline answers agent_unknown
		}
		if err != nil {
			return err
		}
		g, err := tx.GrantGet(ctx, c.ID, k.AgentID)
		if errors.Is(err, spend.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		out.grant = g
		for _, t := range e.tools {
			if t.Method == method && MatchPath([]string{TemplatePattern(t.Path)}, path) {
				out.tool = t
				break
			}
		}
		switch {
		case out.tool != nil && out.tool.Price != nil:
			out.price = out.tool.Price
		case g.PriceHeader != "":
			out.price, out.fixed = g.MaxPrice, false
		case g.Price != nil:
			out.price = g.Price
		}
		return nil
	})
	return out, err
}

// Admit checks, in the decision's transaction and under the agent's lock,
// that the grant the call was priced under is still the agent's, live,
// allows the method and path, and is within its own rate limit.
func (v *Vault) Admit(ctx context.Context, tx spend.Tx, a *spend.Agent, r *spend.AuthorizeRequest, now time.Time) ([]string, func(context.Context, spend.Tx) error, error) {
	var rr railRequest
	if err := json.Unmarshal(r.RailRequest, &rr); err != nil {
		return nil, nil, err
	}
	g, err := tx.GrantGet(ctx, rr.CredentialID, a.ID)
	if errors.Is(err, spend.ErrNotFound) {
		return []string{"grant_missing"}, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	switch {
	case rr.GrantID == "":
		return []string{"grant_missing"}, nil, nil
	case g.ID != rr.GrantID:
		return []string{"grant_changed"}, nil, nil
	case g.RevokedAt != nil:
		return []string{"grant_revoked"}, nil, nil
	case g.ExpiresAt != nil && !now.Before(*g.ExpiresAt):
		return []string{"grant_expired"}, nil, nil
	case !slices.Contains(g.Methods, rr.Method):
		return []string{"grant_method_not_allowed"}, nil, nil
	case !MatchPath(g.Paths, rr.Path):
		return []string{"grant_path_not_allowed"}, nil, nil
	}
	if g.RateLimit <= 0 {
		return nil, nil, nil
	}
	per := int64(g.RatePer / time.Second)
	ws := now.Unix() / per * per
	used := 0
	if g.RateStart == ws {
		used = g.RateUsed
	}
	if used >= g.RateLimit {
		return []string{"grant_rate_limited"}, nil, nil
	}
	return nil, func(ctx context.Context, tx spend.Tx) error {
		g.RateStart, g.RateUsed = ws, used+1
		return tx.GrantUpdate(ctx, g)
	}, nil
}

// AgentGrants is what an agent may call: its live grants and the tools
// they cover (GET /v1/agent/grants).
func (v *Vault) AgentGrants(ctx context.Context, c spend.Caller) (*api.AgentGrants, error) {
	out := &api.AgentGrants{}
	err := v.svc.AsAgent(ctx, c, func(tx spend.Tx, a *spend.Agent) error {
		out.Grants, out.Tools = []api.AgentGrant{}, []api.Tool{}
		now := v.svc.Now()
		gs, err := tx.GrantList(ctx, "", a.ID)
		if err != nil {
			return err
		}
		for _, g := range gs {
			if grantStatus(g, now) != "active" {
				continue
			}
			cred, err := tx.CredentialGet(ctx, g.CredentialID)
			if errors.Is(err, spend.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			out.Grants = append(out.Grants, api.AgentGrant{Credential: cred.Name, Upstream: cred.Upstream,
				Methods: nonNil(g.Methods), Paths: nonNil(g.Paths), Price: v.price(g.Price), PriceHeader: g.PriceHeader,
				MaxPrice: v.price(g.MaxPrice), Asset: v.asset.Symbol, Rate: rateString(g), ExpiresAt: g.ExpiresAt})
			ts, err := tx.ToolList(ctx, cred.ID)
			if err != nil {
				return err
			}
			for _, t := range ts {
				if slices.Contains(g.Methods, t.Method) && MatchPath(g.Paths, TemplatePattern(t.Path)) {
					tv := v.toolView(cred, t)
					if tv.Price == "" {
						// What a call will cost, for the model to weigh.
						tv.Price = v.price(g.Price)
					}
					out.Tools = append(out.Tools, tv)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out.Tools, func(a, b api.Tool) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	b, _ := json.Marshal(struct {
		G []api.AgentGrant
		T []api.Tool
	}{out.Grants, out.Tools})
	sum := sha256.Sum256(b)
	out.Version = hex.EncodeToString(sum[:12])
	return out, nil
}

// proxyMetrics count calls by outcome; never a secret, a path or a body.
type proxyMetrics struct {
	calls *metrics.CounterVec
	dur   *metrics.HistogramVec
}

func newProxyMetrics(reg *metrics.Registry) *proxyMetrics {
	if reg == nil {
		reg = metrics.NewRegistry()
	}
	return &proxyMetrics{
		calls: reg.NewCounterVec("purser_proxy_calls_total", "Proxied API calls by credential and outcome (captured, released, denied, approval, error).", "credential", "outcome"),
		dur:   reg.NewHistogramVec("purser_proxy_upstream_duration_seconds", "Time from sending a proxied call to the end of the upstream's answer.", metrics.DefaultLatencyBuckets, "credential"),
	}
}
