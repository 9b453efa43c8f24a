package spend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/purserhq/purser/internal/audit"
	"github.com/purserhq/purser/internal/mandate"
	"github.com/purserhq/purser/internal/money"
)

// Caller is an agent request whose signature the transport has verified:
// Address recovered from the signature over (method, path, body hash,
// nonce, expiry). The service resolves it to an agent and spends the nonce
// in the same transaction as the request's effect.
type Caller struct {
	Address   string // EIP-55 identity address
	Nonce     string // 0x hex, single use
	Expires   time.Time
	Signature string // 0x hex, kept in the audit trail as the signed intent
	Body      []byte // the exact signed body
	// BodySHA256, when set (0x hex), stands for Body in the audit trail:
	// a proxied API call's body is the agent's business and may be large,
	// and the signature covers only its hash.
	BodySHA256 string
	// What else the signature covers, so the audit trail can recompute
	// its digest: the method, the request-target as sent, and the EIP-712
	// domain (version 2: bound to Deployment, a 0x id; version 1: none).
	Method, Path string
	AuthVersion  int
	Deployment   string
}

// AuthorizeRequest is the spend intent an agent signs.
type AuthorizeRequest struct {
	Rail           string
	Host           string
	Payee          string
	Asset          string // symbol or token address; "" means USDC
	Network        string // CAIP-2; "" means the server's default network
	Amount         string // decimal, in the asset's units: the most this spend may cost
	IdempotencyKey string
	Memo           string
	// RailRequest is rail-specific data the agent signed with the intent
	// (an x402 offer); the rail's Preparer validates it.
	RailRequest json.RawMessage
	// DryRun evaluates the intent against the mandate and the current
	// budgets without storing a spend or placing a hold.
	DryRun bool
	// Inline is for rails whose work is the request itself (a proxied
	// API call, rail apiproxy): an allowed spend is recorded as executing
	// (spend.execute, status unknown) in the decision's own transaction,
	// and Outcome.Run tells the caller to carry it out now and Settle it.
	Inline bool
}

// Outcome is the result of an authorization: the spend and whether it was
// an idempotent replay of an earlier request. A dry run's spend is not
// stored: its status is what the decision would be.
type Outcome struct {
	Spend    *Spend
	Replayed bool
	DryRun   bool
	// Run (Inline requests only): this request started the spend's
	// execution and must carry it out, then Settle it.
	Run bool
	// unstored: the refusal of a frozen or revoked agent, counted in the
	// agent's aggregated refusals instead of stored (gate.go).
	unstored bool
}

var (
	railRE = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)
	keyRE  = regexp.MustCompile(`^[\x21-\x7e]{1,255}$`)
	hostRE = regexp.MustCompile(`^[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$`)
	payeRE = regexp.MustCompile(`^[A-Za-z0-9:._@-]{1,128}$`)
)

// maxRailRequest bounds the rail data an agent signs into an intent (an
// x402 offer is well under 2 KiB); it is stored with the spend.
const maxRailRequest = 8 << 10

// prepared is a validated AuthorizeRequest.
type prepared struct {
	req       AuthorizeRequest
	asset     money.Asset
	amount    *big.Int
	amountUSD *big.Int
}

func (s *Service) prepare(ctx context.Context, r AuthorizeRequest) (*prepared, error) {
	if r.Rail == "" {
		return nil, Errorf(CodeInvalidRequest, "rail is required").WithDetails(map[string]any{"field": "rail"})
	}
	if !railRE.MatchString(r.Rail) {
		return nil, Errorf(CodeInvalidRequest, "rail %q is malformed", r.Rail).WithDetails(map[string]any{"field": "rail"})
	}
	rail, ok := s.rails[r.Rail]
	if !ok {
		return nil, Errorf(CodeRailUnknown, "rail %q is not configured on this server", r.Rail).WithDetails(map[string]any{"field": "rail"})
	}
	if r.Asset == "" {
		r.Asset = "USDC"
	}
	if r.Network == "" {
		r.Network = s.cfg.DefaultNetwork
	}
	if len(r.RailRequest) > maxRailRequest {
		return nil, Errorf(CodeInvalidRequest, "rail_request is larger than %d bytes", maxRailRequest).WithDetails(map[string]any{"field": "rail_request"})
	}
	if pr, ok := rail.(Preparer); ok {
		if err := pr.Prepare(ctx, &r); err != nil {
			return nil, err
		}
	} else if len(r.RailRequest) > 0 {
		return nil, Errorf(CodeInvalidRequest, "rail %s takes no rail_request", r.Rail).WithDetails(map[string]any{"field": "rail_request"})
	}
	if r.Payee == "" || !payeRE.MatchString(r.Payee) {
		return nil, Errorf(CodeInvalidRequest, "payee is required: a 0x address or an id of 1-128 characters [A-Za-z0-9:._@-]").WithDetails(map[string]any{"field": "payee"})
	}
	r.Payee = normalizePayee(r.Payee)
	if r.Host != "" && !hostRE.MatchString(r.Host) {
		return nil, Errorf(CodeInvalidRequest, "host %q is malformed: a DNS name with an optional :port", r.Host).WithDetails(map[string]any{"field": "host"})
	}
	if err := normalizeRequestHost(&r); err != nil {
		return nil, err
	}
	if r.IdempotencyKey != "" && !keyRE.MatchString(r.IdempotencyKey) {
		return nil, Errorf(CodeInvalidRequest, "idempotency_key must be 1-255 printable ASCII characters").WithDetails(map[string]any{"field": "idempotency_key"})
	}
	if len(r.Memo) > 256 {
		return nil, Errorf(CodeInvalidRequest, "memo is longer than 256 bytes").WithDetails(map[string]any{"field": "memo"})
	}
	asset, err := s.cfg.Assets.Lookup(r.Network, r.Asset)
	if err != nil {
		return nil, err
	}
	r.Asset, r.Network = asset.Symbol, asset.Network
	if r.Amount == "" {
		return nil, Errorf(CodeInvalidRequest, "amount is required").WithDetails(map[string]any{"field": "amount"})
	}
	parse := money.ParsePositive
	if z, ok := rail.(ZeroAmounts); ok && z.AllowsZeroAmount() {
		parse = money.ParseAmount
	}
	amount, err := parse(r.Amount, asset.Decimals)
	if err != nil {
		return nil, err
	}
	usdAmt, err := money.ToUSD(asset, amount)
	if err != nil {
		return nil, err
	}
	r.Amount = money.FormatAmount(amount, asset.Decimals)
	return &prepared{req: r, asset: asset, amount: amount, amountUSD: usdAmt}, nil
}

// conflictField names the first field in which a replayed request under
// an idempotency key differs from the original.
func conflictField(sp *Spend, p *prepared) string {
	switch {
	case sp.Rail != p.req.Rail:
		return "rail"
	case sp.Host != p.req.Host:
		return "host"
	case sp.Payee != p.req.Payee:
		return "payee"
	case sp.Asset != p.req.Asset:
		return "asset"
	case sp.Network != p.req.Network:
		return "network"
	case sp.Amount.Cmp(p.amount) != 0 && !p.req.Inline:
		// An inline rail prices the call itself in the decision (Admit);
		// its rail request names the call.
		return "amount"
	case sp.Memo != p.req.Memo:
		return "memo"
	case !bytes.Equal(sp.RailRequest, p.req.RailRequest):
		return "rail_request"
	}
	return ""
}

// authAgent resolves (and, with lock, locks) the caller's agent and
// spends its nonce.
func (s *Service) authAgent(ctx context.Context, tx Tx, c Caller, lock bool) (*Agent, error) {
	a, _, err := s.authAgentIdem(ctx, tx, c, lock, "")
	return a, err
}

// authAgentIdem is authAgent that also returns the id of the agent's
// spend under idemKey, if any (only with lock).
func (s *Service) authAgentIdem(ctx context.Context, tx Tx, c Caller, lock bool, idemKey string) (*Agent, string, error) {
	var a *Agent
	var k *AgentKey
	var prevID string
	var err error
	if lock {
		a, k, prevID, err = tx.AgentLockByKey(ctx, c.Address, idemKey)
	} else {
		if k, err = tx.AgentKeyGet(ctx, c.Address); err == nil {
			a, err = tx.AgentGet(ctx, k.AgentID)
		}
	}
	if errors.Is(err, ErrNotFound) {
		return nil, "", Errorf(CodeAgentUnknown, "no agent has identity key %s", c.Address)
	}
	if err != nil {
		return nil, "", err
	}
	if k.RevokedAt != nil {
		return nil, "", Errorf(CodeAgentKeyRevoked, "identity key %s was revoked", c.Address)
	}
	fresh, err := tx.NonceUse(ctx, a.ID, c.Nonce, c.Expires)
	if err != nil {
		return nil, "", err
	}
	if !fresh {
		return nil, "", Errorf(CodeNonceReplayed, "request nonce was already used; sign every request with a new nonce")
	}
	return a, prevID, nil
}

// Authorize is the pipeline's front half: authenticate, check
// idempotency, evaluate the mandate and, in the same transaction, reserve
// the hold and append the decision's audit event. An allowed spend on a
// rail that executes is then executed.
func (s *Service) Authorize(ctx context.Context, c Caller, r AuthorizeRequest) (*Outcome, error) {
	p, err := s.prepare(ctx, r)
	if err != nil {
		return nil, err
	}
	var out Outcome
	var refused error
	err = s.inTxPrefetch(ctx, callerPrefetch(c, p.req.IdempotencyKey, s.now()), func(tx Tx) error {
		out, refused = Outcome{}, nil
		now := s.now()
		a, prevID, err := s.authAgentIdem(ctx, tx, c, true, p.req.IdempotencyKey)
		if err != nil {
			return err
		}
		if prevID != "" && !p.req.DryRun {
			prev, err := tx.SpendGet(ctx, prevID)
			if err != nil {
				return err
			}
			if f := conflictField(prev, p); f != "" {
				return Errorf(CodeIdempotencyConflict, "idempotency key %q was used for a different request (field %s differs)", p.req.IdempotencyKey, f).
					WithDetails(map[string]any{"field": f, "spend_id": prev.ID})
			}
			out = Outcome{Spend: prev, Replayed: true}
			if a.Status != AgentActive {
				// A replay must not carry out for a frozen agent what its
				// first request started (sign, execute), and answers as any
				// request of a frozen agent does.
				refused = deniedErr(prev, []string{statusReason(a.Status)})
			}
			return nil
		}
		return s.decide(ctx, tx, a, c, p, now, &out)
	})
	if err != nil {
		return nil, err
	}
	if refused != nil {
		return nil, refused
	}
	if out.unstored {
		s.countRefusal(agentActor(&Agent{ID: out.Spend.AgentID}), c, out.Spend.Reasons[0], s.clock.Now())
		return &out, nil
	}
	sp := out.Spend
	if p.req.Inline && !out.DryRun {
		return s.inlineTail(ctx, &out)
	}
	if out.DryRun || sp.Status != StatusAuthorized || sp.RailRef != "" {
		return &out, nil
	}
	// A replay may find the spend authorized but unsigned (the first
	// request died between the two commits): signing is safe to repeat,
	// since the first recorded instrument wins. Executing is not, for a
	// rail that does not sign first, so only the first request does it.
	_, signs := s.rails[sp.Rail].(Signer)
	if !out.Replayed || signs {
		if out.Spend, err = s.advance(ctx, sp); err != nil {
			return nil, err
		}
	}
	return &out, nil
}

func (s *Service) decide(ctx context.Context, tx Tx, a *Agent, c Caller, p *prepared, now time.Time, out *Outcome) error {
	m, err := s.mandateFor(ctx, tx, a.ID, a.MandateVersion)
	if err != nil {
		return err
	}
	var dayKey string
	if m != nil {
		dayKey = m.DayKey(now)
	} else {
		dayKey = now.Format(time.DateOnly)
	}
	var dec mandate.Decision
	var used []*big.Int // the day and lifetime counters, when read
	var admitCommit func(context.Context, Tx) error
	var railData json.RawMessage
	switch a.Status {
	case AgentFrozen, AgentRevoked:
		// Not stored one by one: a frozen agent's requests must not fill
		// the database (invariant 12). Counted per minute instead.
		out.Spend = &Spend{AgentID: a.ID, Rail: p.req.Rail, Host: p.req.Host, Payee: p.req.Payee, Asset: p.req.Asset,
			Network: p.req.Network, Amount: p.amount, AmountUSD: p.amountUSD, Status: StatusDenied,
			Reasons: []string{statusReason(a.Status)}, MandateVersion: a.MandateVersion, DayKey: dayKey, Memo: p.req.Memo,
			CreatedAt: now, UpdatedAt: now, RailRequest: p.req.RailRequest}
		out.DryRun, out.unstored = p.req.DryRun, !p.req.DryRun
		return nil
	default:
		if err := s.checkCosignReady(ctx, tx, a, p.req.Rail); err != nil {
			return err
		}
		u := mandate.Usage{}
		if m != nil && m.Bounded() {
			var err error
			if used, err = tx.UsageGet(ctx, a.ID, []string{windowDay(dayKey), windowLifetime}); err != nil {
				return err
			}
			u.DailyUSD, u.LifetimeUSD = used[0], used[1]
			if m.Rate != nil && a.RateWindowStart == m.RateWindowStart(now).Unix() {
				u.RateCount = a.RateCount
			}
			if m.ApproveNewPayees {
				if u.PayeeKnown, err = tx.PayeeKnown(ctx, a.ID, p.req.Payee); err != nil {
					return err
				}
			}
			if m.PinPayees && p.req.Host != "" {
				if u.PinnedPayee, err = tx.HostPinGet(ctx, a.ID, pinKey(p.req.Host)); err != nil {
					return err
				}
			}
		}
		var adm *Admission
		if ad, ok := s.rails[p.req.Rail].(Admitter); ok {
			res, err := ad.Admit(ctx, tx, a, &p.req, now)
			if err != nil {
				return err
			}
			if res.Amount != nil {
				usdAmt, err := money.ToUSD(p.asset, res.Amount)
				if err != nil {
					return err
				}
				pp := *p // p is the caller's and read again if the transaction is retried
				pp.amount, pp.amountUSD = res.Amount, usdAmt
				pp.req.Amount = money.FormatAmount(res.Amount, p.asset.Decimals)
				p = &pp
			}
			adm, railData = &res, res.RailData
		}
		dec = mandate.Evaluate(m, mandate.Intent{Rail: p.req.Rail, Host: p.req.Host, Payee: p.req.Payee, AmountUSD: p.amountUSD}, u, now)
		if adm != nil && len(adm.Reasons) > 0 {
			// The rail's own permission refuses first: its reasons, then
			// what the mandate would have said too.
			dec = mandate.Decision{Verdict: mandate.Deny, Reasons: append(slices.Clone(adm.Reasons), denyReasons(dec)...)}
		} else if adm != nil {
			admitCommit = adm.Commit
		}
	}
	if dec, err = s.capOpenSigned(ctx, tx, a, p, dec); err != nil {
		return err
	}
	sp := &Spend{
		ID: newID("spd"), AgentID: a.ID, IdempotencyKey: p.req.IdempotencyKey,
		Rail: p.req.Rail, Host: p.req.Host, Payee: p.req.Payee, Asset: p.req.Asset, Network: p.req.Network,
		Amount: p.amount, AmountUSD: p.amountUSD, Reasons: dec.Reasons, MandateVersion: a.MandateVersion,
		DayKey: dayKey, Memo: p.req.Memo, IntentSig: c.Signature, IntentNonce: c.Nonce,
		CreatedAt: now, UpdatedAt: now,
	}
	if sp.Reasons == nil {
		sp.Reasons = []string{}
	}
	action := ""
	switch dec.Verdict {
	case mandate.Allow:
		sp.Status, sp.ExpiresAt, action = StatusAuthorized, now.Add(s.cfg.HoldTTL), "spend.authorize"
		if p.req.Inline && !p.req.DryRun {
			// Recorded as executing in this same commit (spend.execute below).
			sp.Status, out.Run = StatusUnknown, true
		}
	case mandate.NeedsApproval:
		sp.Status, sp.ExpiresAt, action = StatusPendingApproval, now.Add(s.cfg.ApprovalTTL), "spend.request_approval"
	default:
		sp.Status, action = StatusDenied, "spend.deny"
	}
	if p.req.DryRun {
		sp.ID, sp.RailRequest = "", p.req.RailRequest
		out.Spend, out.DryRun = sp, true
		return nil // the request's nonce is spent; nothing else is written
	}
	sp.RailRequest, sp.RailData = p.req.RailRequest, railData
	if err := tx.SpendCreate(ctx, sp); err != nil {
		return err
	}
	if sp.Status.Holding() {
		if admitCommit != nil && !p.req.DryRun {
			if err := admitCommit(ctx, tx); err != nil {
				return err
			}
		}
		var err error
		if used != nil {
			err = tx.UsagePut(ctx, a.ID, []string{windowDay(dayKey), windowLifetime},
				[]*big.Int{new(big.Int).Add(used[0], sp.AmountUSD), new(big.Int).Add(used[1], sp.AmountUSD)})
		} else {
			err = s.hold(ctx, tx, a.ID, dayKey, sp.AmountUSD)
		}
		if err != nil {
			return err
		}
		if m != nil && m.Rate != nil {
			ws := m.RateWindowStart(now).Unix()
			if a.RateWindowStart != ws {
				a.RateWindowStart, a.RateCount = ws, 0
			}
			a.RateCount++
			if err := tx.AgentUpdate(ctx, a); err != nil {
				return err
			}
		}
		if sp.Status == StatusAuthorized && m != nil && m.ApproveNewPayees {
			if err := tx.PayeeAdd(ctx, a.ID, sp.Payee); err != nil {
				return err
			}
		}
		if sp.Status == StatusAuthorized && m != nil && m.PinPayees && sp.Host != "" {
			if err := tx.HostPinAdd(ctx, a.ID, pinKey(sp.Host), sp.Payee); err != nil {
				return err
			}
		}
	}
	out.Spend = sp
	d := spendDetails(sp, c)
	if sp.Status.Holding() && used != nil {
		d.BudgetAlerts = budgetAlerts(m, dayKey, used, sp.AmountUSD)
	}
	if !out.Run {
		return appendAudit(ctx, tx, now, agentActor(a), action, "spend:"+sp.ID, d)
	}
	d.Status = StatusAuthorized
	if err := appendAudit(ctx, tx, now, agentActor(a), action, "spend:"+sp.ID, d); err != nil {
		return err
	}
	return appendAudit(ctx, tx, now, SystemActor, "spend.execute", "spend:"+sp.ID, map[string]any{
		"spend_id": sp.ID, "agent_id": sp.AgentID, "rail": sp.Rail, "status": sp.Status})
}

// denyReasons is what a decision refuses for, if it refuses (approval
// reasons are not refusals).
func denyReasons(d mandate.Decision) []string {
	if d.Verdict != mandate.Deny {
		return nil
	}
	return d.Reasons
}

// inlineTail finishes an Inline authorization. A new allowed spend was
// recorded as executing by its decision (out.Run). A replay finds its
// spend as it is: one an owner approved since (authorized, not begun) is
// begun now, after the last checks, and run by this request; any other
// (running or done elsewhere, refused) is answered as it is and not run
// again (an agent never pays twice for one intent).
func (s *Service) inlineTail(ctx context.Context, out *Outcome) (*Outcome, error) {
	sp := out.Spend
	if !out.Replayed || sp.Status != StatusAuthorized || sp.RailRef != "" {
		return out, nil
	}
	started, begun, err := s.beginExecuteStarted(ctx, sp)
	if err != nil {
		return nil, err
	}
	out.Spend, out.Run = started, begun
	return out, nil
}

// BudgetAlertPercent is the share of a budget whose crossing a spend's
// decision records (webhook event budget.threshold).
const BudgetAlertPercent = 80

// budgetAlert records that a spend's hold took a budget from below
// BudgetAlertPercent of its limit to at or above it. It is recorded once,
// on the decision that crosses the mark: the webhook dispatcher reads it
// from the audit event, so an alert is neither missed nor sent twice.
type budgetAlert struct {
	Window   string `json:"window"` // "daily" or "lifetime"
	Day      string `json:"day,omitempty"`
	LimitUSD string `json:"limit_usd"`
	UsedUSD  string `json:"used_usd"` // held and captured, this spend included
	Percent  int    `json:"percent"`
}

// budgetAlerts returns the budgets of m whose alert mark adding amount to
// used (day, lifetime) crosses.
func budgetAlerts(m *mandate.Mandate, dayKey string, used []*big.Int, amount *big.Int) []budgetAlert {
	if m == nil || len(used) != 2 {
		return nil
	}
	var out []budgetAlert
	for i, b := range []struct {
		window, day string
		limit       *big.Int
	}{{"daily", dayKey, m.Daily}, {"lifetime", "", m.Lifetime}} {
		if b.limit == nil || b.limit.Sign() <= 0 {
			continue
		}
		before := used[i]
		if before == nil {
			before = new(big.Int)
		}
		after := new(big.Int).Add(before, amount)
		mark := new(big.Int).Mul(b.limit, big.NewInt(BudgetAlertPercent))
		hundred := big.NewInt(100)
		if new(big.Int).Mul(before, hundred).Cmp(mark) < 0 && new(big.Int).Mul(after, hundred).Cmp(mark) >= 0 {
			out = append(out, budgetAlert{Window: b.window, Day: b.day, LimitUSD: usd(b.limit), UsedUSD: usd(after), Percent: BudgetAlertPercent})
		}
	}
	return out
}

// intentRecord is the signed request as the audit trail keeps it: enough
// to recompute the EIP-712 digest and recover the agent's address.
// Body is exact: the server refuses bodies that are not valid UTF-8, so
// the JSON string round-trips byte for byte.
type intentRecord struct {
	Signer      string `json:"signer"`
	Method      string `json:"method"`
	Path        string `json:"path"`
	Body        string `json:"body"`
	BodySHA256  string `json:"body_sha256,omitempty"` // instead of body (a proxied call's)
	Signature   string `json:"signature"`
	Nonce       string `json:"nonce"`
	Expires     int64  `json:"expires"`
	AuthVersion int    `json:"auth_version"`
	Deployment  string `json:"deployment,omitempty"`
}

func intentOf(c Caller) intentRecord {
	return intentRecord{Signer: c.Address, Method: c.Method, Path: c.Path, Body: string(c.Body), BodySHA256: c.BodySHA256,
		Signature: c.Signature, Nonce: c.Nonce, Expires: c.Expires.Unix(), AuthVersion: c.AuthVersion, Deployment: c.Deployment}
}

// decisionRecord is the audit record of a decision: who asked for what,
// with the signature that proves it, and what was decided under which
// mandate version. A struct, not a map: it is marshalled on the hot path.
type decisionRecord struct {
	SpendID        string        `json:"spend_id"`
	AgentID        string        `json:"agent_id"`
	Rail           string        `json:"rail"`
	Host           string        `json:"host"`
	Payee          string        `json:"payee"`
	Asset          string        `json:"asset"`
	Network        string        `json:"network"`
	Amount         string        `json:"amount"`
	AmountUSD      string        `json:"amount_usd"`
	Status         Status        `json:"status"`
	Reasons        []string      `json:"reasons"`
	MandateVersion int64         `json:"mandate_version"`
	Day            string        `json:"day"`
	IdempotencyKey string        `json:"idempotency_key"`
	Intent         intentRecord  `json:"intent"`
	BudgetAlerts   []budgetAlert `json:"budget_alerts,omitempty"`
}

func spendDetails(sp *Spend, c Caller) decisionRecord {
	return decisionRecord{
		SpendID: sp.ID, AgentID: sp.AgentID, Rail: sp.Rail, Host: sp.Host, Payee: sp.Payee,
		Asset: sp.Asset, Network: sp.Network, Amount: sp.Amount.String(), AmountUSD: usd(sp.AmountUSD),
		Status: sp.Status, Reasons: sp.Reasons, MandateVersion: sp.MandateVersion, Day: sp.DayKey,
		IdempotencyKey: sp.IdempotencyKey, Intent: intentOf(c),
	}
}

func usd(v *big.Int) string {
	if v == nil {
		return "0"
	}
	return money.FormatAmount(v, money.USDDecimals)
}

// hold counts amount against the agent's daily and lifetime windows.
func (s *Service) hold(ctx context.Context, tx Tx, agentID, dayKey string, amount *big.Int) error {
	return tx.UsageAdd(ctx, agentID, []string{windowDay(dayKey), windowLifetime}, amount)
}

// finish moves a holding spend to a terminal (or unknown) status and
// adjusts the windows: captured keeps capturedUSD and gives back the rest
// of the hold; every other terminal status gives back the whole hold.
func (s *Service) finish(ctx context.Context, tx Tx, sp *Spend, to Status, captured *big.Int, now time.Time, reasons []string) error {
	if !sp.Status.Holding() {
		return Errorf(CodeInvalidState, "spend %s is %s", sp.ID, sp.Status)
	}
	release := new(big.Int).Set(sp.AmountUSD)
	if to == StatusCaptured {
		asset, err := s.cfg.Assets.Lookup(sp.Network, sp.Asset)
		if err != nil {
			return err
		}
		cusd, err := money.ToUSD(asset, captured)
		if err != nil {
			return err
		}
		if cusd.Cmp(sp.AmountUSD) > 0 { // rounding can never make a capture count more than its hold
			cusd.Set(sp.AmountUSD)
		}
		sp.Captured, sp.CapturedUSD = captured, cusd
		release.Sub(release, cusd)
	}
	if to.Holding() {
		release.SetInt64(0)
	}
	if release.Sign() != 0 {
		if err := s.hold(ctx, tx, sp.AgentID, sp.DayKey, new(big.Int).Neg(release)); err != nil {
			return err
		}
	}
	sp.Status, sp.UpdatedAt = to, now
	if to.Terminal() {
		sp.ExpiresAt = time.Time{}
	}
	if reasons != nil {
		sp.Reasons = reasons
	}
	return tx.SpendUpdate(ctx, sp)
}

// ownSpend loads a spend of agent a; another agent's spend is reported
// as not found, so an agent learns nothing about other agents.
func ownSpend(ctx context.Context, tx Tx, a *Agent, id string) (*Spend, error) {
	sp, err := tx.SpendGet(ctx, id)
	if errors.Is(err, ErrNotFound) || (err == nil && sp.AgentID != a.ID) {
		return nil, Errorf(CodeSpendNotFound, "no spend %q", id)
	}
	return sp, err
}

// AgentGetSpend returns one of the caller's spends (to poll an approval).
func (s *Service) AgentGetSpend(ctx context.Context, c Caller, id string) (*Spend, error) {
	var sp *Spend
	err := s.inTx(ctx, func(tx Tx) error {
		a, err := s.authAgent(ctx, tx, c, false)
		if err != nil {
			return err
		}
		sp, err = ownSpend(ctx, tx, a, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.withCosign(ctx, sp)
}

// Confirm executes an authorized (for example, approved) spend on its
// rail. For a rail Purser does not execute it returns the spend as is:
// the agent then pays and reports capture or release.
//
// A frozen agent's confirm is refused (spend_denied, agent_frozen) whatever
// the spend's state: after a freeze nothing of the agent is carried out,
// not even what an owner approved before it.
func (s *Service) Confirm(ctx context.Context, c Caller, id string) (*Spend, error) {
	var sp *Spend
	var status AgentStatus
	err := s.inTx(ctx, func(tx Tx) error {
		a, err := s.authAgent(ctx, tx, c, false)
		if err != nil {
			return err
		}
		status = a.Status
		sp, err = ownSpend(ctx, tx, a, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	if status != AgentActive {
		return nil, deniedErr(sp, []string{statusReason(status)})
	}
	switch sp.Status {
	case StatusAuthorized:
	case StatusPendingApproval:
		return nil, Errorf(CodeInvalidState, "spend %s is still waiting for an owner's approval", sp.ID).WithDetails(map[string]any{"status": sp.Status})
	default:
		return sp, nil // captured, released, …: confirming again changes nothing
	}
	if sp.RailRef != "" {
		return sp, nil // signed or executed already
	}
	return s.advance(ctx, sp)
}

// advance takes a committed, authorized spend through its rail: sign
// (for a Signer), then execute (for an Executor). A rail that does
// neither leaves the spend for the agent to settle.
func (s *Service) advance(ctx context.Context, sp *Spend) (*Spend, error) {
	rail := s.rails[sp.Rail]
	if sg, ok := rail.(Signer); ok && sp.RailRef == "" {
		var err error
		if sp, err = s.sign(ctx, sp, sg); err != nil || sp.Status != StatusAuthorized {
			return sp, err
		}
		if sp.RailRef == "" { // a co-signed instrument awaits the agent
			return s.withCosign(ctx, sp)
		}
	}
	if _, ok := rail.(Executor); ok {
		if _, signs := rail.(Signer); !signs {
			// Nothing recorded would show that money may move: record it
			// first (unknown), so a lost outcome keeps the hold.
			started, err := s.beginExecute(ctx, sp)
			if err != nil || started.Status != StatusUnknown {
				return started, err
			}
			sp = started
		}
		return s.execute(ctx, sp)
	}
	return sp, nil
}

// beginExecute records, before a rail that does not sign first moves
// money, that the spend's outcome is now unknown (spend.execute), after
// the same checks as a signature (lastCheck). If anything is lost between the
// rail's Execute and the settle, the hold stays until the rail's
// reconciler or an owner (spend resolve) settles it; expiry never
// releases an unknown spend. A spend another request began, or that is
// no longer authorized, is returned as it is and not executed again.
func (s *Service) beginExecute(ctx context.Context, sp *Spend) (*Spend, error) {
	out, _, err := s.beginExecuteStarted(ctx, sp)
	return out, err
}

// beginExecuteStarted is beginExecute that also reports whether this call
// began the execution (and so must carry it out).
func (s *Service) beginExecuteStarted(ctx context.Context, sp *Spend) (*Spend, bool, error) {
	var out *Spend
	var begun bool
	var refused error
	err := s.inTx(context.WithoutCancel(ctx), func(tx Tx) error {
		refused, begun = nil, false
		now := s.now()
		cur, a, err := spendLocked(ctx, tx, sp.ID)
		if err != nil {
			return err
		}
		out = cur
		if cur.Status != StatusAuthorized || cur.RailRef != "" {
			return nil
		}
		if refused, err = s.lastCheck(ctx, tx, a, cur, now); err != nil || refused != nil {
			return err
		}
		if err := s.finish(ctx, tx, cur, StatusUnknown, nil, now, nil); err != nil {
			return err
		}
		begun = true
		return appendAudit(ctx, tx, now, SystemActor, "spend.execute", "spend:"+cur.ID, map[string]any{
			"spend_id": cur.ID, "agent_id": cur.AgentID, "rail": cur.Rail, "status": cur.Status})
	})
	if err == nil && refused != nil {
		return nil, false, refused
	}
	return out, begun, err
}

// sign has the rail sign its instrument for sp and commits it. If another
// signing committed first, its instrument is returned and ours, never
// shown to anyone, is dropped.
func (s *Service) sign(ctx context.Context, sp *Spend, sg Signer) (*Spend, error) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ExecTimeout)
	defer cancel()
	ref, data, expires, err := sg.Sign(sctx, sp)
	var refusal *SignRefused
	if errors.As(err, &refusal) {
		return s.releaseUnsigned(context.WithoutCancel(ctx), sp.ID, refusal.Reasons)
	}
	var pending *CosignPending
	if errors.As(err, &pending) {
		return s.recordCosignPending(ctx, sp, pending)
	}
	if err != nil {
		var coded *Error
		if errors.As(err, &coded) {
			return nil, err
		}
		s.log.Warn("rail signing failed", "rail", sp.Rail, "spend_id", sp.ID, "err", err)
		return nil, Errorf(CodeRailFailed, "rail %s could not sign spend %s", sp.Rail, sp.ID)
	}
	if ref == "" {
		return nil, fmt.Errorf("spend: rail %s signed spend %s without a reference", sp.Rail, sp.ID)
	}
	var out *Spend
	var refused error
	err = s.inTx(context.WithoutCancel(ctx), func(tx Tx) error {
		refused = nil
		now := s.now()
		a, err := tx.AgentLock(ctx, sp.AgentID)
		if err != nil {
			return err
		}
		cur, err := tx.SpendGet(ctx, sp.ID)
		if err != nil {
			return err
		}
		out = cur
		if cur.Status != StatusAuthorized || cur.RailRef != "" {
			return nil // settled, expired or signed by a racing request
		}
		// The instrument leaves Purser only if this commit records it.
		if refused, err = s.lastCheck(ctx, tx, a, cur, now); err != nil || refused != nil {
			return err
		}
		cur.RailRef, cur.RailData, cur.UpdatedAt = ref, data, now
		if !expires.IsZero() {
			cur.ExpiresAt = expires.UTC().Truncate(time.Microsecond)
		}
		if err := tx.SpendUpdate(ctx, cur); err != nil {
			return err
		}
		return appendAudit(ctx, tx, now, SystemActor, "spend.sign", "spend:"+cur.ID, map[string]any{
			"spend_id": cur.ID, "agent_id": cur.AgentID, "rail": cur.Rail, "rail_ref": ref, "valid_until": cur.ExpiresAt.Unix()})
	})
	if err == nil && refused != nil {
		return nil, refused
	}
	return out, err
}

// recordCosignPending records the unsigned instrument of a co-signed
// wallet's spend (RailData; RailRef stays empty: nothing is signed) after
// the same checks as a signature, so that the agent and the server co-sign
// exactly it. The first recorded instrument wins: a replay or a confirm
// finds it and shows the same one.
func (s *Service) recordCosignPending(ctx context.Context, sp *Spend, p *CosignPending) (*Spend, error) {
	var out *Spend
	var refused error
	err := s.inTx(context.WithoutCancel(ctx), func(tx Tx) error {
		refused = nil
		now := s.now()
		a, err := tx.AgentLock(ctx, sp.AgentID)
		if err != nil {
			return err
		}
		cur, err := tx.SpendGet(ctx, sp.ID)
		if err != nil {
			return err
		}
		out = cur
		if cur.Status != StatusAuthorized || cur.RailRef != "" || len(cur.RailData) > 0 {
			return nil
		}
		if refused, err = s.lastCheck(ctx, tx, a, cur, now); err != nil || refused != nil {
			return err
		}
		cur.RailData, cur.UpdatedAt = p.Data, now
		if err := tx.SpendUpdate(ctx, cur); err != nil {
			return err
		}
		return appendAudit(ctx, tx, now, SystemActor, "spend.cosign_prepare", "spend:"+cur.ID, map[string]any{
			"spend_id": cur.ID, "agent_id": cur.AgentID, "rail": cur.Rail, "nonce": p.Ref})
	})
	if err == nil && refused != nil {
		return nil, refused
	}
	return out, err
}

// lastCheck re-checks, under the agent's lock (a is the locked agent), what
// must still hold at the last moment before an authorized spend is carried
// out (an instrument recorded, a rail run): the agent is active, the
// current mandate allows the spend (if it changed since the decision) and
// the hold has not expired. It is the last point at which a freeze, a
// tightened mandate or an expiry can stop the spend. A spend that fails
// is ended in tx and refused is the error for the caller.
func (s *Service) lastCheck(ctx context.Context, tx Tx, a *Agent, sp *Spend, now time.Time) (refused error, err error) {
	if a.Status != AgentActive || a.MandateVersion != sp.MandateVersion {
		reasons, err := s.recheck(ctx, tx, a, sp, now)
		if err != nil {
			return nil, err
		}
		if len(reasons) > 0 {
			if err := s.cancelSpend(ctx, tx, sp, StatusDenied, now, reasons); err != nil {
				return nil, err
			}
			return deniedErr(sp, reasons), nil
		}
	}
	if !now.Before(sp.ExpiresAt) {
		if err := s.expire(ctx, tx, sp, now); err != nil {
			return nil, err
		}
		return Errorf(CodeInvalidState, "the hold of spend %s expired at %s before it was carried out", sp.ID, sp.ExpiresAt.Format(time.RFC3339)).
			WithDetails(map[string]any{"spend_id": sp.ID, "status": StatusExpired}), nil
	}
	return nil, nil
}

// releaseUnsigned releases an authorized spend that was never signed (the
// rail refused before signing): nothing exists that could move money, so
// the hold goes back at once. A spend signed meanwhile by a racing request
// is left alone.
func (s *Service) releaseUnsigned(ctx context.Context, id string, reasons []string) (*Spend, error) {
	var out *Spend
	err := s.inTx(ctx, func(tx Tx) error {
		now := s.now()
		sp, _, err := spendLocked(ctx, tx, id)
		if err != nil {
			return err
		}
		out = sp
		if sp.Status != StatusAuthorized || sp.RailRef != "" {
			return nil
		}
		if err := s.finish(ctx, tx, sp, StatusReleased, nil, now, reasons); err != nil {
			return err
		}
		return appendAudit(ctx, tx, now, SystemActor, "spend.release", "spend:"+sp.ID, map[string]any{
			"spend_id": sp.ID, "agent_id": sp.AgentID, "status": sp.Status, "reasons": reasons, "released_usd": usd(sp.AmountUSD), "signed": false})
	})
	return out, err
}

// spendLocked reads spend id under its agent's row lock: the first read
// finds the agent, the one after the lock is what to act on.
func spendLocked(ctx context.Context, tx Tx, id string) (*Spend, *Agent, error) {
	sp, err := tx.SpendGet(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	a, err := tx.AgentLock(ctx, sp.AgentID)
	if err != nil {
		return nil, nil, err
	}
	sp, err = tx.SpendGet(ctx, id)
	return sp, a, err
}

// cancelSpend ends a holding spend that nothing was signed or executed for
// (a freeze, a mandate that now refuses it) and appends spend.cancel.
func (s *Service) cancelSpend(ctx context.Context, tx Tx, sp *Spend, to Status, now time.Time, reasons []string) error {
	released, from := usd(sp.AmountUSD), sp.Status
	if err := s.finish(ctx, tx, sp, to, nil, now, reasons); err != nil {
		return err
	}
	return appendAudit(ctx, tx, now, SystemActor, "spend.cancel", "spend:"+sp.ID, map[string]any{
		"spend_id": sp.ID, "agent_id": sp.AgentID, "status": sp.Status, "reasons": reasons, "released_usd": released, "from": from})
}

// deniedErr is the refusal of a spend the agent may not carry out (any
// more): code spend_denied, with the spend's id, status and reasons.
func deniedErr(sp *Spend, reasons []string) *Error {
	return Errorf(CodeSpendDenied, "spend %s is refused: %s", sp.ID, strings.Join(reasons, ", ")).
		WithDetails(map[string]any{"spend_id": sp.ID, "status": sp.Status, "reasons": reasons})
}

// statusReason is the reason code of an agent status that refuses spends.
func statusReason(st AgentStatus) string {
	if st == AgentRevoked {
		return "agent_revoked"
	}
	return "agent_frozen"
}

// execute runs the rail with a detached context and settles the outcome.
func (s *Service) execute(ctx context.Context, sp *Spend) (*Spend, error) {
	ex := s.rails[sp.Rail].(Executor)
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ExecTimeout)
	defer cancel()
	res, err := ex.Execute(ectx, sp)
	if err != nil {
		s.log.Warn("rail execution failed", "rail", sp.Rail, "spend_id", sp.ID, "err", err)
		if res.Outcome == "" {
			res.Outcome = OutcomeUnknown // an error is not proof that nothing moved
		}
	}
	out, err := s.settle(context.WithoutCancel(ctx), sp.ID, res, SystemActor)
	// A spend that was authorized (a signing rail) got its spend.unknown
	// from settle; one unknown since spend.execute got none.
	if err != nil || res.Outcome != OutcomeUnknown || sp.Status != StatusUnknown || out.Status != StatusUnknown {
		return out, err
	}
	return s.executedUnknown(context.WithoutCancel(ctx), sp.ID)
}

// executedUnknown records that the rail ran but could not tell whether
// money moved. The spend has been unknown since spend.execute (so that a
// crash during the run keeps the hold); this event says the run is over
// and its outcome is for reconciliation or the owner (webhook
// payment.unknown).
func (s *Service) executedUnknown(ctx context.Context, id string) (*Spend, error) {
	var out *Spend
	err := s.inTx(ctx, func(tx Tx) error {
		now := s.now()
		sp, _, err := spendLocked(ctx, tx, id)
		if err != nil {
			return err
		}
		out = sp
		if sp.Status != StatusUnknown {
			return nil
		}
		return appendAudit(ctx, tx, now, SystemActor, "spend.unknown", "spend:"+sp.ID, map[string]any{
			"spend_id": sp.ID, "agent_id": sp.AgentID, "status": sp.Status, "rail_ref": sp.RailRef, "executed": true})
	})
	return out, err
}

// Settle records what a rail found out about a spend (a reconciler's or a
// rail transport's verdict) with actor in the audit trail.
func (s *Service) Settle(ctx context.Context, id string, res ExecResult, actor audit.Actor) (*Spend, error) {
	return s.settle(ctx, id, res, actor)
}

// settle records a rail's outcome for a spend.
func (s *Service) settle(ctx context.Context, id string, res ExecResult, actor audit.Actor) (*Spend, error) {
	return s.settleBy(ctx, id, res, actor, nil)
}

// settleBy is settle with the signed request that led to it, when an
// agent's report did: every agent event carries its proof.
func (s *Service) settleBy(ctx context.Context, id string, res ExecResult, actor audit.Actor, intent *intentRecord) (*Spend, error) {
	var out *Spend
	err := s.inTx(ctx, func(tx Tx) error {
		var err error
		out, err = s.settleIn(ctx, tx, id, "", res, actor, intent, s.now())
		return err
	})
	return out, err
}

// Settlement is one rail outcome for SettleMany.
type Settlement struct {
	SpendID string
	AgentID string // the spend's agent, when known: saves a read
	Result  ExecResult
}

// SettleMany records many rail outcomes (SystemActor) in one transaction:
// a rail that settles a stream of calls (apiproxy) pays one commit for
// many. If the transaction fails, each is settled on its own, so one bad
// outcome does not hold back the others.
func (s *Service) SettleMany(ctx context.Context, items []Settlement) error {
	err := s.inTx(ctx, func(tx Tx) error {
		now := s.now()
		for _, it := range items {
			if _, err := s.settleIn(ctx, tx, it.SpendID, it.AgentID, it.Result, SystemActor, nil, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || len(items) == 1 {
		return err
	}
	var errs []error
	for _, it := range items {
		if _, err := s.settle(ctx, it.SpendID, it.Result, SystemActor); err != nil {
			errs = append(errs, fmt.Errorf("spend %s: %w", it.SpendID, err))
		}
	}
	return errors.Join(errs...)
}

// settleIn is settleBy's transaction body. agentID, when not empty, is
// the spend's agent (its lock is taken without reading the spend first).
func (s *Service) settleIn(ctx context.Context, tx Tx, id, agentID string, res ExecResult, actor audit.Actor, intent *intentRecord, now time.Time) (*Spend, error) {
	var sp *Spend
	var err error
	if agentID != "" {
		if _, err = tx.AgentLock(ctx, agentID); err == nil {
			sp, err = tx.SpendGet(ctx, id)
		}
		if err == nil && sp.AgentID != agentID {
			err = fmt.Errorf("spend: settle: spend %s is not agent %s's", id, agentID)
		}
	} else {
		sp, _, err = spendLocked(ctx, tx, id)
	}
	if err != nil {
		return nil, err
	}
	if !sp.Status.Holding() || res.Outcome == OutcomePending {
		return sp, nil // settled already (by a reconciler or an expiry), or nothing new
	}
	if res.Ref != "" {
		sp.RailRef = res.Ref
	}
	var action string
	switch res.Outcome {
	case OutcomeCaptured:
		amt := res.Captured
		if amt == nil || amt.Sign() < 0 || amt.Cmp(sp.Amount) > 0 {
			return nil, Errorf(CodeCaptureExceedsHold, "rail %s reported capturing %v, more than the %s held", sp.Rail, amt, sp.Amount)
		}
		err, action = s.finish(ctx, tx, sp, StatusCaptured, amt, now, nil), "spend.capture"
	case OutcomeFailed:
		err, action = s.finish(ctx, tx, sp, StatusReleased, nil, now, res.Reasons), "spend.release"
	default:
		if sp.Status == StatusUnknown {
			return sp, nil
		}
		err, action = s.finish(ctx, tx, sp, StatusUnknown, nil, now, nil), "spend.unknown"
	}
	if err != nil {
		return nil, err
	}
	details := map[string]any{
		"spend_id": sp.ID, "agent_id": sp.AgentID, "status": sp.Status, "captured": amountString(sp.Captured),
		"captured_usd": usd(sp.CapturedUSD), "rail_ref": sp.RailRef}
	if intent != nil {
		details["intent"] = intent
	}
	if res.Outcome == OutcomeFailed && len(res.Reasons) > 0 {
		details["reasons"] = res.Reasons
	}
	return sp, appendAudit(ctx, tx, now, actor, action, "spend:"+sp.ID, details)
}

func amountString(v *big.Int) string {
	if v == nil {
		return ""
	}
	return v.String()
}

// Capture records that an authorized spend on a rail Purser does not
// execute was paid: amount (asset units, decimal; "" for the full hold)
// is counted and the rest of the hold released. Capturing again with the
// same amount returns the spend unchanged.
func (s *Service) Capture(ctx context.Context, c Caller, id, amount string) (*Spend, error) {
	return s.agentSettle(ctx, c, id, StatusCaptured, amount)
}

// Release gives back an authorized or pending spend's whole hold: the
// agent did not pay.
func (s *Service) Release(ctx context.Context, c Caller, id string) (*Spend, error) {
	return s.agentSettle(ctx, c, id, StatusReleased, "")
}

func (s *Service) agentSettle(ctx context.Context, c Caller, id string, to Status, amount string) (*Spend, error) {
	var out *Spend
	err := s.inTx(ctx, func(tx Tx) error {
		now := s.now()
		a, err := s.authAgent(ctx, tx, c, true)
		if err != nil {
			return err
		}
		sp, err := ownSpend(ctx, tx, a, id)
		if err != nil {
			return err
		}
		switch s.rails[sp.Rail].(type) {
		case Executor, Signer:
			// Purser learns these outcomes from the rail or the chain;
			// an agent's word could release a hold on money that moved.
			return Errorf(CodeInvalidState, "rail %s settles its own spends", sp.Rail)
		}
		var amt *big.Int
		if to == StatusCaptured {
			asset, err := s.cfg.Assets.Lookup(sp.Network, sp.Asset)
			if err != nil {
				return err
			}
			if amount == "" {
				amt = new(big.Int).Set(sp.Amount)
			} else if amt, err = money.ParseAmount(amount, asset.Decimals); err != nil {
				return err
			}
			if amt.Cmp(sp.Amount) > 0 {
				return Errorf(CodeCaptureExceedsHold, "capture of %s %s exceeds the %s held", amount, sp.Asset, money.FormatAmount(sp.Amount, asset.Decimals))
			}
		}
		if sp.Status == to && (to != StatusCaptured || sp.Captured.Cmp(amt) == 0) {
			out = sp // a retried report changes nothing
			return nil
		}
		switch {
		case to == StatusCaptured && sp.Status != StatusAuthorized && sp.Status != StatusUnknown:
			return Errorf(CodeInvalidState, "spend %s is %s; only an authorized spend can be captured", sp.ID, sp.Status).WithDetails(map[string]any{"status": sp.Status})
		case to == StatusReleased && !sp.Status.Holding():
			return Errorf(CodeInvalidState, "spend %s is %s; nothing to release", sp.ID, sp.Status).WithDetails(map[string]any{"status": sp.Status})
		}
		if err := s.finish(ctx, tx, sp, to, amt, now, nil); err != nil {
			return err
		}
		out = sp
		action := "spend.capture"
		if to == StatusReleased {
			action = "spend.release"
		}
		return appendAudit(ctx, tx, now, agentActor(a), action, "spend:"+sp.ID, map[string]any{
			"spend_id": sp.ID, "agent_id": a.ID, "status": sp.Status, "captured": amountString(sp.Captured),
			"captured_usd": usd(sp.CapturedUSD), "intent": intentOf(c)})
	})
	return out, err
}
