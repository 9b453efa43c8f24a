// Package spendtest holds what tests of the spend pipeline share: a fake
// clock, an environment that wires a real spend.Service to a real store
// and keystore, agents that sign their own requests, the pipeline suite
// every store runs (RunPipeline), and the seeded simulation with its
// independent invariant auditor (RunSimulation).
package spendtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/cosignsrv"
	"github.com/purserhq/purser/internal/keystore"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/spend"
)

// Clock is a settable clock, safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock starts at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the current fake time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Env is a service on a store, with a fake clock.
type Env struct {
	T     testing.TB
	Svc   *spend.Service
	Store spend.Store
	Clock *Clock
	Keys  *keystore.Keystore
	cfg   spend.Config
}

// Start is the fake clock's start: midday, so day windows are far away.
var Start = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// Rail is a rail for tests that executes spends itself, with scripted
// outcomes: it records every execution so tests can check a spend was
// never executed twice.
type Rail struct {
	mu       sync.Mutex
	Outcome  func(s *spend.Spend) (spend.ExecResult, error)
	Executed map[string]int
}

// Name returns "testrail".
func (r *Rail) Name() string { return "testrail" }

// Execute records the call and returns the scripted outcome (captured in
// full by default).
func (r *Rail) Execute(_ context.Context, s *spend.Spend) (spend.ExecResult, error) {
	r.mu.Lock()
	if r.Executed == nil {
		r.Executed = map[string]int{}
	}
	r.Executed[s.ID]++
	r.mu.Unlock()
	if r.Outcome != nil {
		return r.Outcome(s)
	}
	return spend.ExecResult{Outcome: "captured", Captured: s.Amount, Ref: "test:" + s.ID}, nil
}

// Count returns how often spend id was executed.
func (r *Rail) Count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Executed[id]
}

// NewEnv wires a service to st.
func NewEnv(t testing.TB, st spend.Store, rails ...spend.Rail) *Env {
	t.Helper()
	ks, err := keystore.Open(filepath.Join(t.TempDir(), "keys"), keystore.FileKEK{Path: filepath.Join(t.TempDir(), "kek")})
	if err != nil {
		t.Fatal(err)
	}
	assets, err := money.NewRegistry(money.DefaultAssets()...)
	if err != nil {
		t.Fatal(err)
	}
	clock := NewClock(Start)
	cfg := spend.Config{
		Store: st, Assets: assets, Wallets: wallets{ks}, Checkpoints: ks.AuditSigner(), Clock: clock,
		Rails: rails, DefaultNetwork: "eip155:8453", HoldTTL: 15 * time.Minute, ApprovalTTL: time.Hour,
		Sealer: ks, Cosign: cosignsrv.Engine{}, CosignNetworks: []string{"eip155:8453"},
	}
	svc, err := spend.NewService(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &Env{T: t, Svc: svc, Store: st, Clock: clock, Keys: ks, cfg: cfg}
}

// Restart replaces the service with a new one on the same store, keys,
// clock and rails, as a process restart would: nothing the old service
// held in memory survives.
func (e *Env) Restart() {
	e.T.Helper()
	svc, err := spend.NewService(e.cfg)
	if err != nil {
		e.T.Fatal(err)
	}
	e.Svc = svc
}

type wallets struct{ ks *keystore.Keystore }

func (w wallets) Wallets(index uint32) ([]spend.Wallet, error) {
	sg, err := w.ks.Wallet(index)
	if err != nil {
		return nil, err
	}
	return []spend.Wallet{{Network: "eip155:8453", Address: sg.Address(), Custody: "keystore", Path: sg.Path()}}, nil
}

// Agent is a registered agent that makes (already authenticated)
// requests. The transport's signature check is tested in httpapi and
// agentauth; here a Caller carries a fresh nonce per request.
type Agent struct {
	*spend.Agent
	Address string
	env     *Env
}

// RandomAddress returns a random 0x address.
func RandomAddress() string {
	var b [20]byte
	rand.Read(b[:]) //nolint:errcheck
	return "0x" + hex.EncodeToString(b[:])
}

// NewAgent registers an agent with mandate (JSON, may be "").
func (e *Env) NewAgent(name, mandateJSON string) *Agent {
	e.T.Helper()
	addr := RandomAddress()
	a, err := e.Svc.CreateAgent(context.Background(), spend.CreateAgentRequest{Name: name, IdentityAddress: addr, Mandate: json.RawMessage(mandateJSON)})
	if err != nil {
		e.T.Fatalf("create agent %s: %v", name, err)
	}
	return &Agent{Agent: a, Address: a.IdentityAddress, env: e}
}

// Caller returns an authenticated caller for body with a fresh nonce.
func (a *Agent) Caller(body any) spend.Caller {
	raw, _ := json.Marshal(body)
	var n [32]byte
	rand.Read(n[:]) //nolint:errcheck
	return spend.Caller{Address: a.Address, Nonce: "0x" + hex.EncodeToString(n[:]), Expires: a.env.Clock.Now().Add(2 * time.Minute),
		Signature: "0x" + hex.EncodeToString(make([]byte, 65)), Body: raw}
}

// Authorize asks for a spend.
func (a *Agent) Authorize(r spend.AuthorizeRequest) (*spend.Outcome, error) {
	return a.env.Svc.Authorize(context.Background(), a.Caller(r), r)
}

// MustAuthorize fails the test on error.
func (a *Agent) MustAuthorize(r spend.AuthorizeRequest) *spend.Spend {
	a.env.T.Helper()
	out, err := a.Authorize(r)
	if err != nil {
		a.env.T.Fatalf("authorize %+v: %v", r, err)
	}
	return out.Spend
}

// Custom is a custom-rail request for amount to a fixed payee.
func Custom(amount string) spend.AuthorizeRequest {
	return spend.AuthorizeRequest{Rail: "custom", Payee: "0x000000000000000000000000000000000000dEaD", Amount: amount}
}

// Describe formats a spend for failure messages.
func Describe(sp *spend.Spend) string {
	if sp == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%s %s %v", sp.ID, sp.Status, sp.Reasons)
}
