package spend

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/purserhq/purser/internal/audit"
	"github.com/purserhq/purser/internal/mandate"
	"github.com/purserhq/purser/internal/money"
)

// Clock is where the service reads the time; tests substitute their own.
type Clock interface{ Now() time.Time }

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// WalletProvider derives an agent's server-held wallets; implemented by
// the keystore. It must be deterministic: the same index always yields the
// same addresses.
type WalletProvider interface {
	Wallets(index uint32) ([]Wallet, error)
}

// Rail is a payment rail. The required part is tiny: a name. A rail that
// moves money itself also implements Executor; a rail Purser only governs
// (the "custom" rail: the agent pays elsewhere and reports the outcome)
// does not.
type Rail interface {
	Name() string
}

// Executor moves money for an authorized spend. Execute is called only
// after the hold and its audit event are committed, outside any
// transaction, with a context detached from the request. It must be
// idempotent on s.ID: a second call for the same spend must not pay twice.
type Executor interface {
	Execute(ctx context.Context, s *Spend) (ExecResult, error)
}

// ExecResult is what a rail reports after Execute or Reconcile.
type ExecResult struct {
	// Outcome: OutcomeCaptured (money moved: Captured is the actual
	// amount, at most the spend's Amount), OutcomeFailed (nothing moved
	// and nothing can move any more: release the hold), OutcomeUnknown
	// (cannot tell: keep the hold, mark the spend unknown) or
	// OutcomePending (nothing new: leave the spend as it is).
	Outcome  string
	Captured *big.Int
	Ref      string
	Reasons  []string // why a failed spend was released, e.g. insufficient_funds
}

// Reporter is implemented by rails whose outcome an agent can report (an
// x402 seller's settlement header). Report weighs the report against what
// the rail can check itself; an agent's word alone never releases a hold.
type Reporter interface {
	Report(ctx context.Context, s *Spend, report json.RawMessage) (ExecResult, error)
}

// Outcomes a rail reports in ExecResult.
const (
	OutcomeCaptured = "captured"
	OutcomeFailed   = "failed"
	OutcomeUnknown  = "unknown"
	OutcomePending  = "pending"
)

// Preparer is implemented by rails whose intent carries rail-specific
// data in AuthorizeRequest.RailRequest (an x402 offer). Prepare validates
// it and sets the fields the pipeline governs (payee, amount, asset,
// network, host) from it, so that what the mandate judges is exactly what
// the rail will sign. It runs before anything is stored.
type Preparer interface {
	Prepare(ctx context.Context, r *AuthorizeRequest) error
}

// Signer is implemented by rails that produce a signed instrument (an
// EIP-3009 authorization) for an authorized spend. Sign runs after the
// hold is committed, outside any transaction. Its result is committed
// before anyone sees it or the rail executes it; when two signings race,
// the first commit wins and the other result is discarded, so a spend has
// at most one instrument. ref identifies the instrument on its rail (an
// authorization nonce); expires is when it stops being usable (zero: keep
// the spend's expiry).
type Signer interface {
	Sign(ctx context.Context, s *Spend) (ref string, data json.RawMessage, expires time.Time, err error)
}

// SignRefused is returned by a Signer that found, before signing, that
// the spend cannot be carried out (the wallet lacks the funds, the relayer
// cannot pay gas). Nothing was signed, so the hold is released at once
// with Reasons.
type SignRefused struct{ Reasons []string }

func (e *SignRefused) Error() string { return "rail refused to sign: " + strings.Join(e.Reasons, ", ") }

// Canceller is implemented by rails whose signed instruments can be made
// unusable (EIP-3009 cancelAuthorization). Cancel returns what the rail
// then knows: OutcomeFailed once the instrument can no longer be used,
// OutcomeCaptured if it was used first, OutcomePending if it cannot tell
// yet. It is how `freeze --cancel-signed` stops authorizations already
// handed out.
type Canceller interface {
	Cancel(ctx context.Context, s *Spend) (ExecResult, error)
}

// Admitter is implemented by rails whose permission lives beside the
// mandate (a vault grant, rail apiproxy). Admit runs in the decision's
// transaction under the agent's lock, for an active agent, before the
// mandate is evaluated, so a revoked or expired permission stops the very
// next request.
type Admitter interface {
	Admit(ctx context.Context, tx Tx, a *Agent, r *AuthorizeRequest, now time.Time) (Admission, error)
}

// Admission is an Admitter's verdict.
type Admission struct {
	// Reasons refuse the spend: it is stored denied with them, like a
	// mandate refusal.
	Reasons []string
	// Amount, when set, is what the spend holds (the permission prices it,
	// atomically with its check), in the asset's atomic units, replacing
	// the request's amount.
	Amount *big.Int
	// RailData is stored with the spend (what the permission decided, for
	// the rail to carry out).
	RailData json.RawMessage
	// Commit, if set, is called in the same transaction when the spend
	// holds (allowed or waiting for approval): it counts the request
	// against the permission's own limits.
	Commit func(context.Context, Tx) error
}

// ZeroAmounts is implemented by rails whose spends may cost nothing (an
// unpriced API call is still counted, rate-limited and audited).
type ZeroAmounts interface {
	AllowsZeroAmount() bool
}

// Checker is implemented by rails whose Reconcile may act (resubmit a lost
// payout): Check only reads what the chain shows. The reconciler uses it
// for agents that are no longer active, so nothing of a frozen agent is
// executed (design invariant 4).
type Checker interface {
	Check(ctx context.Context, s *Spend) (ExecResult, error)
}

// Reconciler is implemented by rails that can find out what happened to
// a spend whose outcome is unknown.
type Reconciler interface {
	Reconcile(ctx context.Context, s *Spend) (ExecResult, error)
}

// CustomRail is the rail for payments Purser authorises but does not
// execute: the agent pays by other means and reports capture or release.
type CustomRail struct{}

// Name returns "custom".
func (CustomRail) Name() string { return "custom" }

// Config wires a Service.
type Config struct {
	Store          Store
	Assets         *money.Registry
	Wallets        WalletProvider
	Checkpoints    audit.CheckpointSigner
	Anchor         CheckpointAnchor // optional: the last checkpoint kept outside the database
	Clock          Clock
	Logger         *slog.Logger
	Rails          []Rail // "custom" is always present
	DefaultNetwork string // CAIP-2 used when a request names none
	HoldTTL        time.Duration
	ApprovalTTL    time.Duration
	TxTimeout      time.Duration // deadline of every store transaction
	ExecTimeout    time.Duration // deadline of a rail execution
	// MaxOpenSigned caps an agent's open signed spends (signed, not yet
	// settled, or unknown): at the cap, authorizations on signing rails
	// are denied too_many_open_spends. 0: 100; negative: no cap.
	MaxOpenSigned int
	// RequestRate bounds every agent's requests before anything is
	// written (Admit); zero disables it.
	RequestRate RequestRate
	// Sealer seals the server's shares of co-signed (2of2) keys; without
	// it no co-signed key can be made.
	Sealer Sealer
	// Cosign is the co-signing cryptography (internal/cosignsrv).
	Cosign CosignEngine
	// CosignNetworks are the networks a co-signed agent gets a wallet on
	// (the EVM networks the wallet provider serves).
	CosignNetworks []string
}

// Service is the spend pipeline and the agent and mandate administration
// around it. It is safe for concurrent use.
type Service struct {
	cfg   Config
	store Store
	clock Clock
	log   *slog.Logger
	rails map[string]Rail

	mu       sync.Mutex
	mandates map[string]*mandate.Mandate // agentID/version → decoded; versions are immutable
	cosign   cosignState                 // key generations in progress

	gate gate // per-agent request rates and aggregated refusals
}

// NewService checks cfg and builds a Service.
func NewService(cfg Config) (*Service, error) {
	var errs []error
	if cfg.Store == nil {
		errs = append(errs, errors.New("spend: Config.Store is required"))
	}
	if cfg.Assets == nil {
		errs = append(errs, errors.New("spend: Config.Assets is required"))
	}
	if cfg.Wallets == nil {
		errs = append(errs, errors.New("spend: Config.Wallets is required"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HoldTTL <= 0 {
		cfg.HoldTTL = 15 * time.Minute
	}
	if cfg.ApprovalTTL <= 0 {
		cfg.ApprovalTTL = time.Hour
	}
	if cfg.TxTimeout <= 0 {
		cfg.TxTimeout = 10 * time.Second
	}
	if cfg.ExecTimeout <= 0 {
		cfg.ExecTimeout = 60 * time.Second
	}
	if cfg.MaxOpenSigned == 0 {
		cfg.MaxOpenSigned = 100
	}
	s := &Service{
		cfg: cfg, store: cfg.Store, clock: cfg.Clock, log: cfg.Logger,
		rails:    map[string]Rail{"custom": CustomRail{}},
		mandates: map[string]*mandate.Mandate{},
	}
	for _, r := range cfg.Rails {
		s.rails[r.Name()] = r
	}
	return s, nil
}

func (s *Service) now() time.Time { return s.clock.Now().UTC().Truncate(time.Microsecond) }

// inTx runs fn in a store transaction with the service's deadline.
func (s *Service) inTx(ctx context.Context, fn func(tx Tx) error) error {
	return s.inTxPrefetch(ctx, nil, fn)
}

// inTxPrefetch is inTx with a prefetch hint (Store.InTxPrefetch).
func (s *Service) inTxPrefetch(ctx context.Context, p *Prefetch, fn func(tx Tx) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.TxTimeout)
	defer cancel()
	err := s.store.InTxPrefetch(ctx, p, fn)
	if errors.Is(err, context.DeadlineExceeded) {
		return Errorf(CodeUnavailable, "the store did not answer in time; nothing was changed")
	}
	return err
}

// callerPrefetch is what an agent-signed authorization reads first. Its
// day window depends on the mandate's time zone, which is not known
// before the agent is read, so it names the UTC day and both neighbours:
// every time zone's date is one of them.
func callerPrefetch(c Caller, idemKey string, now time.Time) *Prefetch {
	now = now.UTC()
	return &Prefetch{
		Address: c.Address, Nonce: c.Nonce, NonceExpires: c.Expires, IdempotencyKey: idemKey,
		Windows: []string{windowLifetime,
			windowDay(now.AddDate(0, 0, -1).Format(time.DateOnly)),
			windowDay(now.Format(time.DateOnly)),
			windowDay(now.AddDate(0, 0, 1).Format(time.DateOnly))},
	}
}

func (s *Service) read(ctx context.Context, fn func(tx Tx) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.TxTimeout)
	defer cancel()
	return s.store.Read(ctx, fn)
}

var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// newID returns prefix_ + 16 bytes in Crockford base32.
// The first 6 bytes are the time in milliseconds, so ids sort by creation
// and new rows land at the right edge of the primary-key index (random
// keys dirty a different index page per insert, which the commit then
// has to write); the other 10 bytes are random.
func newID(prefix string) string {
	var b [16]byte
	ms := uint64(time.Now().UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	if _, err := rand.Read(b[6:]); err != nil {
		panic("spend: crypto/rand failed: " + err.Error())
	}
	return prefix + "_" + idEncoding.EncodeToString(b[:])
}

// appendAudit marshals details and appends one event to tx.
func appendAudit(ctx context.Context, tx Tx, now time.Time, actor audit.Actor, action, subject string, details any) error {
	raw, err := json.Marshal(details)
	if err != nil {
		return fmt.Errorf("spend: audit details: %w", err)
	}
	return tx.AuditAppend(ctx, &audit.Event{Time: now, Actor: actor, Action: action, Subject: subject, Details: raw})
}

// OwnerActor is the actor of owner actions taken with the owner token.
var OwnerActor = audit.Actor{Type: "owner", ID: "owner"}

// SystemActor is the actor of the service's own transitions (expiry).
var SystemActor = audit.Actor{Type: "system", ID: "purser"}

func agentActor(a *Agent) audit.Actor { return audit.Actor{Type: "agent", ID: a.ID} }

// mandateFor returns the decoded mandate version, from cache or tx.
func (s *Service) mandateFor(ctx context.Context, tx Tx, agentID string, version int64) (*mandate.Mandate, error) {
	if version == 0 {
		return nil, nil
	}
	key := fmt.Sprintf("%s/%d", agentID, version)
	s.mu.Lock()
	m, ok := s.mandates[key]
	s.mu.Unlock()
	if ok {
		return m, nil
	}
	rec, err := tx.MandateGet(ctx, agentID, version)
	if err != nil {
		return nil, fmt.Errorf("spend: load mandate %s: %w", key, err)
	}
	m, err = mandate.Decode(rec.Body)
	if err != nil {
		return nil, fmt.Errorf("spend: stored mandate %s does not decode: %w", key, err)
	}
	s.mu.Lock()
	if len(s.mandates) > 100_000 { // bound memory; entries are cheap to reload
		clear(s.mandates)
	}
	s.mandates[key] = m
	s.mu.Unlock()
	return m, nil
}

// normalizePayee lower-cases 0x addresses so that allowlists and
// "known payee" checks compare equal.
func normalizePayee(p string) string {
	if len(p) == 42 && (strings.HasPrefix(p, "0x") || strings.HasPrefix(p, "0X")) {
		return "0x" + strings.ToLower(p[2:])
	}
	return p
}

// Rail returns the rail registered under name, or nil.
func (s *Service) Rail(name string) Rail { return s.rails[name] }
