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
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/spend"
)

var (
	_ spend.Rail        = (*Vault)(nil)
	_ spend.Admitter    = (*Vault)(nil)
	_ spend.ZeroAmounts = (*Vault)(nil)
	_ spend.Preparer    = (*Vault)(nil)
)

// railRequest is the rail-specific part of a proxied call's spend: what
// the call is, as the grant judges it. It is built by Purser from the
// signed request (never taken from the agent as is) and stored with the
// spend; a retry under the same idempotency key must match it exactly.
type railRequest struct {
	Credential   string `json:"credential"`
	CredentialID string `json:"credential_id"`
	Method       string `json:"method"`
	Path         string `json:"path"`
	QuerySHA256  string `json:"query_sha256,omitempty"`
	BodySHA256   string `json:"body_sha256"`
	Tool         string `json:"tool,omitempty"`
	ToolPrice    string `json:"tool_price,omitempty"` // the tool's own price, replacing the grant's
}

// railData is what the decision stored for the call to carry out: the
// grant it was admitted under and, for a grant priced by the upstream,
// the header to read the price from.
type railData struct {
	GrantID     string `json:"grant_id"`
	PriceHeader string `json:"price_header,omitempty"`
}

// entry is what a call needs of a credential, decrypted once per
// (version, update time): the secret versions and the tools.
type entry struct {
	cred     spend.Credential
	upstream *url.URL
	inject   Inject
	host     string // the spend's host: the upstream's, as the mandate sees it
	current  []byte
	previous []byte    // the version before, while it may still be used
	prevTill time.Time // until when
	scrub    [][]byte  // every stored version
	tools    []*spend.Tool

	// The forwarder's targets (they cache their scrubber): with the
	// previous secret while it may be used, and without.
	withPrev, alone *Target
}

// target is what a call at now is forwarded with.
func (e *entry) target(now time.Time) *Target {
	if e.withPrev != nil && now.Before(e.prevTill) {
		return e.withPrev
	}
	return e.alone
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
	newTarget := func(prev []byte) (*Target, error) {
		t := &Target{Upstream: up, Inject: inj, Secret: e.current, Previous: prev, Scrub: e.scrub, AllowPrivate: c.AllowPrivate,
			Timeout: timeoutOf(c), MaxRequest: MaxBody, MaxResponse: v.maxResp}
		return t, t.Prepare()
	}
	if e.alone, err = newTarget(nil); err != nil {
		return nil, err
	}
	if e.previous != nil {
		if e.withPrev, err = newTarget(e.previous); err != nil {
			return nil, err
		}
	}
	v.mu.Lock()
	v.cache[c.ID] = e
	v.mu.Unlock()
	return e, nil
}

// call is one proxied call as read before its decision.
type call struct {
	e           *entry
	tool        *spend.Tool // the tool whose method and path it matches, if any
	priceHeader string      // decided with the spend: the upstream reports the price here
}

// cacheTTL bounds how long a credential read before a call is trusted:
// this node's own vault changes drop the cache at once; another node's
// rotation (or removal) is seen within cacheTTL. Grants are not cached:
// every call's decision reads its grant in its own transaction.
const cacheTTL = time.Second

type named struct {
	e  *entry
	at time.Time
}

// entryByName returns the credential called name, from the cache or the
// database (a read-only transaction, off the writer).
func (v *Vault) entryByName(ctx context.Context, name string) (*entry, error) {
	now := time.Now()
	v.mu.Lock()
	n, ok := v.byName[name]
	v.mu.Unlock()
	if ok && now.Sub(n.at) < cacheTTL {
		return n.e, nil
	}
	var e *entry
	err := v.svc.ReadTx(ctx, func(tx spend.Tx) error {
		c, err := getCred(ctx, tx, name)
		if err != nil {
			return err
		}
		e, err = v.load(ctx, tx, c)
		return err
	})
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	v.byName[name] = named{e: e, at: now}
	v.mu.Unlock()
	return e, nil
}

// invalidate forgets every cached credential (after an owner's change).
func (v *Vault) invalidate() {
	v.mu.Lock()
	clear(v.byName)
	clear(v.cache)
	v.mu.Unlock()
}

// prepare finds the call's credential and the tool it matches.
func (v *Vault) prepare(ctx context.Context, name, method, path string) (*call, error) {
	e, err := v.entryByName(ctx, name)
	if err != nil {
		return nil, err
	}
	cl := &call{e: e}
	for _, t := range e.tools {
		if t.Method == method && MatchPath([]string{TemplatePattern(t.Path)}, path) {
			cl.tool = t
			break
		}
	}
	return cl, nil
}

// Admit checks, in the decision's transaction and under the agent's lock,
// that the agent has a live grant on the credential that allows the
// method and path and is within its own rate limit, and prices the call
// from it (or from the tool it matches), atomically with the check.
func (v *Vault) Admit(ctx context.Context, tx spend.Tx, a *spend.Agent, r *spend.AuthorizeRequest, now time.Time) (spend.Admission, error) {
	var rr railRequest
	if err := json.Unmarshal(r.RailRequest, &rr); err != nil {
		return spend.Admission{}, err
	}
	refuse := func(reason string) (spend.Admission, error) {
		return spend.Admission{Reasons: []string{reason}, Amount: new(big.Int)}, nil
	}
	g, err := tx.GrantGet(ctx, rr.CredentialID, a.ID)
	if errors.Is(err, spend.ErrNotFound) {
		return refuse("grant_missing")
	}
	if err != nil {
		return spend.Admission{}, err
	}
	switch {
	case g.RevokedAt != nil:
		return refuse("grant_revoked")
	case g.ExpiresAt != nil && !now.Before(*g.ExpiresAt):
		return refuse("grant_expired")
	case !slices.Contains(g.Methods, rr.Method):
		return refuse("grant_method_not_allowed")
	case !MatchPath(g.Paths, rr.Path):
		return refuse("grant_path_not_allowed")
	}
	rd := railData{GrantID: g.ID}
	price := new(big.Int)
	switch {
	case rr.ToolPrice != "":
		if price, err = money.ParseAmount(rr.ToolPrice, v.asset.Decimals); err != nil {
			return spend.Admission{}, err
		}
	case g.PriceHeader != "":
		price, rd.PriceHeader = g.MaxPrice, g.PriceHeader
	case g.Price != nil:
		price = g.Price
	}
	raw, err := json.Marshal(rd)
	if err != nil {
		return spend.Admission{}, err
	}
	adm := spend.Admission{Amount: new(big.Int).Set(price), RailData: raw}
	if g.RateLimit <= 0 {
		return adm, nil
	}
	per := int64(g.RatePer / time.Second)
	ws := now.Unix() / per * per
	used := 0
	if g.RateStart == ws {
		used = g.RateUsed
	}
	if used >= g.RateLimit {
		return refuse("grant_rate_limited")
	}
	adm.Commit = func(ctx context.Context, tx spend.Tx) error {
		g.RateStart, g.RateUsed = ws, used+1
		return tx.GrantUpdate(ctx, g)
	}
	return adm, nil
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

// Prepare refuses apiproxy spends asked for anywhere but the proxy
// (POST /v1/agent/spends with rail apiproxy): the proxy builds the
// rail request from the call itself, and only its spends are carried out.
func (v *Vault) Prepare(_ context.Context, r *spend.AuthorizeRequest) error {
	if !r.Inline {
		return spend.Errorf(spend.CodeInvalidRequest, "rail apiproxy spends are made by calling the API through /v1/proxy/NAME/PATH").
			WithDetails(map[string]any{"field": "rail"})
	}
	return nil
}
