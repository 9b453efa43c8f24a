package httpapi

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/internal/audit"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/spend"
)

func (s *Server) routes() {
	s.handle("GET /healthz", s.healthz)
	if s.metricsOwner {
		s.handle("GET /metrics", s.owner(s.metricsPage))
	} else {
		s.handle("GET /metrics", s.metricsPage)
	}
	s.handle("GET /v1/deployment", s.deployment)

	s.handle("POST /v1/agents", s.owner(s.createAgent))
	s.handle("GET /v1/agents", s.owner(s.listAgents))
	s.handle("GET /v1/agents/{ref}", s.owner(s.getAgent))
	s.handle("POST /v1/agents/{ref}/freeze", s.owner(s.freeze))
	s.handle("POST /v1/agents/{ref}/unfreeze", s.owner(s.agentStatus(s.svc.Unfreeze)))
	s.handle("POST /v1/agents/{ref}/revoke", s.owner(s.agentStatus(s.svc.Revoke)))
	s.handle("POST /v1/agents/{ref}/rotate-key", s.owner(s.rotateKey))
	s.handle("GET /v1/agents/{ref}/mandate", s.owner(s.getMandate))
	s.handle("PUT /v1/agents/{ref}/mandate", s.owner(s.setMandate))
	s.handle("GET /v1/agents/{ref}/limits", s.owner(s.ownerLimits))
	s.handle("GET /v1/spends", s.owner(s.listSpends))
	s.handle("GET /v1/spends/{id}", s.owner(s.getSpend))
	s.handle("POST /v1/spends/{id}/resolve", s.owner(s.resolveSpend))
	s.handle("GET /v1/approvals", s.owner(s.listApprovals))
	s.handle("POST /v1/approvals/{id}/approve", s.owner(s.approve))
	s.handle("POST /v1/approvals/{id}/deny", s.owner(s.deny))
	s.handle("GET /v1/audit/export", s.owner(s.auditExport))
	s.handle("GET /v1/audit/tail", s.owner(s.auditTail))
	s.handle("POST /v1/audit/verify", s.owner(s.auditVerify))
	s.handle("GET /v1/audit/key", s.owner(s.auditKey))

	s.handle("POST /v1/agent/spends", s.agent(s.authorize))
	s.handle("GET /v1/agent/spends/{id}", s.agent(s.agentGetSpend))
	s.handle("POST /v1/agent/spends/{id}/confirm", s.agent(s.agentSpendAction(s.svc.Confirm)))
	s.handle("POST /v1/agent/spends/{id}/capture", s.agent(s.capture))
	s.handle("POST /v1/agent/spends/{id}/release", s.agent(s.agentSpendAction(s.svc.Release)))
	s.handle("GET /v1/agent/limits", s.agent(s.agentLimits))
	s.handle("POST /v1/agent/spends/{id}/settlement", s.agent(s.reportSettlement))
	s.handle("GET /v1/agent/assets", s.agent(s.agentAssets))
	s.handle("GET /v1/agent/balances", s.agent(s.agentBalances))

	s.handle("GET /v1/chains", s.owner(s.chainsInfo))
	s.handle("GET /v1/agents/{ref}/balances", s.owner(s.ownerBalances))
	s.handle("POST /v1/agents/{ref}/fund", s.owner(s.fund))

	s.handle("/", s.noRoute)
}

// noRoute answers what no route matched. The catch-all "/" keeps the
// mux from answering 405 itself (in plain text), so it asks the mux
// which other methods the path has.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) error {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		if _, pattern := s.mux.Handler(&http.Request{Method: m, URL: r.URL, Host: r.Host}); pattern != "/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return &spend.Error{Code: "method_not_allowed", Message: r.Method + " is not allowed on " + r.URL.Path + "; it takes " + strings.Join(allow, ", "),
			Details: map[string]any{"allow": allow}}
	}
	return &spend.Error{Code: "not_found", Message: "no such endpoint: " + r.Method + " " + r.URL.Path}
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	if s.ready != nil {
		if err := s.ready(r.Context()); err != nil {
			s.log.Warn("health check failed", "err", err)
			return writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
		}
	}
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// deployment publishes what agents bind their signatures to. It needs no
// credentials: the id is not a secret, only a name for this deployment.
func (s *Server) deployment(w http.ResponseWriter, r *http.Request) error {
	versions := []int{agentauth.VersionBound}
	if s.acceptUnbound {
		versions = append(versions, agentauth.VersionUnbound)
	}
	return writeJSON(w, http.StatusOK, map[string]any{
		"deployment_id": s.domain.DeploymentHex(),
		"auth_versions": versions,
		"eip712_domain": map[string]string{"name": "Purser", "version": "2", "salt": s.domain.DeploymentHex()},
	})
}

func (s *Server) metricsPage(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	s.reg.Write(w)
	return nil
}

// ---- JSON views ----

type walletJSON struct {
	Network string `json:"network"`
	Address string `json:"address"`
	Custody string `json:"custody"`
	Path    string `json:"path"`
}

type agentJSON struct {
	ID              string       `json:"id"`
	Name            string       `json:"name"`
	Status          string       `json:"status"`
	IdentityAddress string       `json:"identity_address"`
	Wallets         []walletJSON `json:"wallets"`
	MandateVersion  int64        `json:"mandate_version"`
	CreatedAt       time.Time    `json:"created_at"`
	UpdatedAt       time.Time    `json:"updated_at"`
}

func agentView(a *spend.Agent) agentJSON {
	ws := make([]walletJSON, len(a.Wallets))
	for i, w := range a.Wallets {
		ws[i] = walletJSON{Network: w.Network, Address: w.Address, Custody: w.Custody, Path: w.Path}
	}
	return agentJSON{ID: a.ID, Name: a.Name, Status: string(a.Status), IdentityAddress: a.IdentityAddress,
		Wallets: ws, MandateVersion: a.MandateVersion, CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt}
}

type spendJSON struct {
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
	RailRef        string   `json:"rail_ref,omitempty"`
	// RailRequest is what the agent signed for the rail (an x402 offer);
	// RailData what the rail produced (an x402 payment header). Neither
	// holds a secret: a payment authorization can only pay its payee.
	RailRequest json.RawMessage `json:"rail_request,omitempty"`
	RailData    json.RawMessage `json:"rail_data,omitempty"`
	DryRun      bool            `json:"dry_run,omitempty"`
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
	ExpiresAt   *time.Time      `json:"expires_at"`
	Replayed    bool            `json:"replayed"`
}

// decisionOf is the authorization verdict a spend's status reflects.
func decisionOf(st spend.Status, reasons []string) string {
	switch st {
	case spend.StatusPendingApproval:
		return "needs_approval"
	case spend.StatusDenied:
		return "deny"
	case spend.StatusExpired:
		if len(reasons) > 0 {
			return "deny"
		}
	}
	// A released spend was allowed; its reasons (insufficient_funds,
	// authorization_expired_unused) say why the rail moved nothing.
	return "allow"
}

func usdString(v *big.Int) string {
	if v == nil {
		return "0"
	}
	return money.FormatAmount(v, money.USDDecimals)
}

func (s *Server) spendView(sp *spend.Spend, replayed bool) spendJSON {
	dec := uint8(money.USDDecimals)
	if a, err := s.assets.Lookup(sp.Network, sp.Asset); err == nil {
		dec = a.Decimals
	}
	v := spendJSON{
		SpendID: sp.ID, AgentID: sp.AgentID, Status: string(sp.Status), Decision: decisionOf(sp.Status, sp.Reasons),
		Reasons: sp.Reasons, Rail: sp.Rail, Host: sp.Host, Payee: sp.Payee, Asset: sp.Asset, Network: sp.Network,
		Amount: money.FormatAmount(sp.Amount, dec), AmountUSD: usdString(sp.AmountUSD), HeldUSD: usdString(sp.Held()),
		MandateVersion: sp.MandateVersion, IdempotencyKey: sp.IdempotencyKey, Memo: sp.Memo, RailRef: sp.RailRef,
		RailRequest: sp.RailRequest, CreatedAt: sp.CreatedAt, UpdatedAt: sp.UpdatedAt, Replayed: replayed,
	}
	if sp.Rail == "x402" {
		// The x402 payment header is the agent's to send to its seller. A
		// payout's signed authorization is Purser's to relay, and whoever
		// held it could submit it: it is never shown.
		v.RailData = sp.RailData
	}
	if v.Reasons == nil {
		v.Reasons = []string{}
	}
	if sp.Captured != nil {
		c, cu := money.FormatAmount(sp.Captured, dec), usdString(sp.CapturedUSD)
		v.Captured, v.CapturedUSD = &c, &cu
	}
	if !sp.ExpiresAt.IsZero() {
		e := sp.ExpiresAt
		v.ExpiresAt = &e
	}
	return v
}

// ---- owner handlers ----

func (s *Server) createAgent(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Name            string          `json:"name"`
		IdentityAddress string          `json:"identity_address"`
		Mandate         json.RawMessage `json:"mandate"`
	}
	if err := bindJSON(r, &req); err != nil {
		return err
	}
	a, err := s.svc.CreateAgent(r.Context(), spend.CreateAgentRequest{Name: req.Name, IdentityAddress: req.IdentityAddress, Mandate: req.Mandate})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, agentView(a))
}

func (s *Server) listAgents(w http.ResponseWriter, r *http.Request) error {
	as, err := s.svc.ListAgents(r.Context())
	if err != nil {
		return err
	}
	out := make([]agentJSON, len(as))
	for i, a := range as {
		out[i] = agentView(a)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"agents": out})
}

func (s *Server) getAgent(w http.ResponseWriter, r *http.Request) error {
	a, err := s.svc.GetAgent(r.Context(), r.PathValue("ref"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, agentView(a))
}

func (s *Server) agentStatus(fn func(ctx context.Context, ref string) (*spend.Agent, error)) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := bindJSON(r, &struct{}{}); err != nil {
			return err
		}
		a, err := fn(r.Context(), r.PathValue("ref"))
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, agentView(a))
	}
}

// freezeJSON is the answer of a freeze: the agent, and with
// cancel_signed what became of each signed authorization.
type freezeJSON struct {
	agentJSON
	Cancellations []cancellationJSON `json:"cancellations,omitempty"`
}

type cancellationJSON struct {
	SpendID string   `json:"spend_id"`
	Status  string   `json:"status"`
	Reasons []string `json:"reasons"`
	RailRef string   `json:"rail_ref,omitempty"`
	Error   string   `json:"error,omitempty"`
}

func (s *Server) freeze(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		CancelSigned bool `json:"cancel_signed"`
	}
	if err := bindJSON(r, &req); err != nil {
		return err
	}
	if !req.CancelSigned {
		a, err := s.svc.Freeze(r.Context(), r.PathValue("ref"))
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, freezeJSON{agentJSON: agentView(a)})
	}
	a, results, err := s.svc.FreezeCancelSigned(r.Context(), r.PathValue("ref"))
	if a == nil {
		return err
	}
	if err != nil {
		// The freeze holds; what could not be recorded says so in its
		// cancellation, and the reconciler records it from the chain.
		s.log.Warn("freeze --cancel-signed: a cancellation was not recorded", "agent", a.ID, "err", err)
	}
	out := freezeJSON{agentJSON: agentView(a), Cancellations: make([]cancellationJSON, len(results))}
	for i, c := range results {
		reasons := c.Spend.Reasons
		if reasons == nil {
			reasons = []string{}
		}
		out.Cancellations[i] = cancellationJSON{SpendID: c.Spend.ID, Status: string(c.Spend.Status), Reasons: reasons,
			RailRef: c.Spend.RailRef, Error: c.Err}
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		IdentityAddress string `json:"identity_address"`
	}
	if err := bindJSON(r, &req); err != nil {
		return err
	}
	a, err := s.svc.RotateKey(r.Context(), r.PathValue("ref"), req.IdentityAddress)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, agentView(a))
}

// writeMandate renders a mandate version (mandate null when none is set).
func writeMandate(w http.ResponseWriter, v *spend.MandateView) error {
	out := map[string]any{"agent_id": v.AgentID, "version": v.Version, "mandate": nil}
	if v.Mandate != nil {
		out["mandate"] = v.Mandate
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) getMandate(w http.ResponseWriter, r *http.Request) error {
	v, err := s.svc.GetMandate(r.Context(), r.PathValue("ref"))
	if err != nil {
		return err
	}
	return writeMandate(w, v)
}

func (s *Server) setMandate(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Mandate     json.RawMessage `json:"mandate"`
		BaseVersion *int64          `json:"base_version"`
	}
	if err := bindJSON(r, &req); err != nil {
		return err
	}
	if len(req.Mandate) == 0 || string(req.Mandate) == "null" {
		return &spend.Error{Code: spend.CodeInvalidRequest, Message: `"mandate" is required`, Details: map[string]any{"field": "mandate"}}
	}
	base := int64(-1)
	if req.BaseVersion != nil {
		base = *req.BaseVersion
	}
	v, err := s.svc.SetMandate(r.Context(), r.PathValue("ref"), req.Mandate, base)
	if err != nil {
		return err
	}
	return writeMandate(w, v)
}

func (s *Server) ownerLimits(w http.ResponseWriter, r *http.Request) error {
	l, err := s.svc.OwnerLimits(r.Context(), r.PathValue("ref"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, limitsView(l))
}

func limitsView(l *spend.Limits) map[string]any {
	window := func(limit, used, remaining *big.Int) any {
		if limit == nil {
			return nil
		}
		return map[string]string{"limit": usdString(limit), "used": usdString(used), "remaining": usdString(remaining)}
	}
	out := map[string]any{
		"agent_id": l.Agent.ID, "name": l.Agent.Name, "status": l.Agent.Status, "mandate_version": l.MandateVersion,
		"mandate": l.Mandate, "day": l.DayKey, "daily": nil, "lifetime": nil, "rate": nil,
		"daily_used": usdString(l.DailyUsedUSD), "lifetime_used": usdString(l.LifetimeUsedUSD),
		"wallets": agentView(l.Agent).Wallets,
	}
	if m := l.Mandate; m != nil {
		out["daily"] = window(m.Daily, l.DailyUsedUSD, l.DailyRemaining)
		out["lifetime"] = window(m.Lifetime, l.LifetimeUsedUSD, l.LifetimeRemaining)
		if m.Rate != nil {
			out["rate"] = map[string]any{"limit": m.Rate.String(), "used": l.RateUsed}
		}
		if m.PerTxMax != nil {
			out["per_tx_max"] = usdString(m.PerTxMax)
		}
		if m.PerTxAuto != nil {
			out["per_tx_auto"] = usdString(m.PerTxAuto)
		}
	}
	return out
}

func parseStatuses(v string) ([]spend.Status, error) {
	if v == "" {
		return nil, nil
	}
	var out []spend.Status
	for _, p := range strings.Split(v, ",") {
		st := spend.Status(p)
		switch st {
		case spend.StatusPendingApproval, spend.StatusAuthorized, spend.StatusCaptured, spend.StatusReleased,
			spend.StatusDenied, spend.StatusExpired, spend.StatusUnknown:
			out = append(out, st)
		default:
			return nil, &spend.Error{Code: spend.CodeInvalidRequest, Message: "unknown status " + strconv.Quote(p), Details: map[string]any{"field": "status"}}
		}
	}
	return out, nil
}

func parseLimit(v string, def, max int) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		return 0, &spend.Error{Code: spend.CodeInvalidRequest, Message: "limit must be 1.." + strconv.Itoa(max), Details: map[string]any{"field": "limit"}}
	}
	return n, nil
}

func (s *Server) listSpends(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	sts, err := parseStatuses(q.Get("status"))
	if err != nil {
		return err
	}
	limit, err := parseLimit(q.Get("limit"), 100, 1000)
	if err != nil {
		return err
	}
	list, err := s.svc.ListSpends(r.Context(), q.Get("agent"), sts, limit)
	if err != nil {
		return err
	}
	return s.writeSpends(w, "spends", list)
}

func (s *Server) writeSpends(w http.ResponseWriter, key string, list []*spend.Spend) error {
	out := make([]spendJSON, len(list))
	for i, sp := range list {
		out[i] = s.spendView(sp, false)
	}
	return writeJSON(w, http.StatusOK, map[string]any{key: out})
}

func (s *Server) getSpend(w http.ResponseWriter, r *http.Request) error {
	sp, err := s.svc.GetSpend(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.spendView(sp, false))
}

func (s *Server) listApprovals(w http.ResponseWriter, r *http.Request) error {
	list, err := s.svc.ListSpends(r.Context(), r.URL.Query().Get("agent"), []spend.Status{spend.StatusPendingApproval}, 1000)
	if err != nil {
		return err
	}
	return s.writeSpends(w, "approvals", list)
}

func (s *Server) approve(w http.ResponseWriter, r *http.Request) error {
	if err := bindJSON(r, &struct{}{}); err != nil {
		return err
	}
	sp, err := s.svc.Approve(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.spendView(sp, false))
}

func (s *Server) deny(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Reason string `json:"reason"`
	}
	if err := bindJSON(r, &req); err != nil {
		return err
	}
	sp, err := s.svc.Deny(r.Context(), r.PathValue("id"), req.Reason)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.spendView(sp, false))
}

func (s *Server) auditExport(w http.ResponseWriter, r *http.Request) error {
	format := r.URL.Query().Get("format")
	switch format {
	case "", "jsonl":
		w.Header().Set("Content-Type", "application/x-ndjson")
	case "csv":
		w.Header().Set("Content-Type", "text/csv")
	default:
		return &spend.Error{Code: spend.CodeInvalidRequest, Message: "format must be jsonl or csv", Details: map[string]any{"field": "format"}}
	}
	// Before any byte is out (a chain the checkpointer refuses to sign),
	// the error is a proper answer. Once bytes are out, an error can only
	// cut the stream short; the verifier then fails on the missing signed
	// tail, never silently.
	cw := &countingWriter{w: w}
	if err := s.svc.ExportAudit(r.Context(), cw, format); err != nil {
		if cw.n == 0 {
			return err
		}
		s.log.Error("audit export failed", "request_id", requestID(r), "err", err)
	}
	return nil
}

// countingWriter tells whether anything was written yet.
type countingWriter struct {
	w http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (s *Server) auditTail(w http.ResponseWriter, r *http.Request) error {
	n, err := parseLimit(r.URL.Query().Get("n"), 20, 1000)
	if err != nil {
		return err
	}
	evs, err := s.svc.AuditTail(r.Context(), n)
	if err != nil {
		return err
	}
	out := make([]map[string]any, len(evs))
	for i, e := range evs {
		out[i] = map[string]any{"seq": e.Seq, "time": e.Time, "actor": map[string]string{"type": e.Actor.Type, "id": e.Actor.ID},
			"action": e.Action, "subject": e.Subject, "details": json.RawMessage(e.Details),
			"prev_hash": hex.EncodeToString(e.PrevHash[:]), "hash": hex.EncodeToString(e.Hash[:])}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"events": out})
}

func (s *Server) auditVerify(w http.ResponseWriter, r *http.Request) error {
	res, err := s.svc.VerifyAudit(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"ok": true, "events": res.Events, "checkpoints": res.Checkpoints,
		"head_seq": res.HeadSeq, "head_hash": hex.EncodeToString(res.HeadHash[:]), "key_id": res.KeyID})
}

func (s *Server) auditKey(w http.ResponseWriter, r *http.Request) error {
	pub := s.svc.AuditPublicKey()
	return writeJSON(w, http.StatusOK, map[string]string{"audit_key": hex.EncodeToString(pub), "key_id": audit.KeyID(pub)})
}

// ---- agent handlers ----

type authorizeBody struct {
	Rail           string `json:"rail"`
	Host           string `json:"host"`
	Payee          string `json:"payee"`
	Asset          string `json:"asset"`
	Network        string `json:"network"`
	Amount         string `json:"amount"`
	IdempotencyKey string `json:"idempotency_key"`
	Memo           string `json:"memo"`
	// RailRequest carries rail-specific data, e.g. the x402 offer.
	RailRequest json.RawMessage `json:"rail_request,omitempty"`
	DryRun      bool            `json:"dry_run,omitempty"`
}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request, c spend.Caller) error {
	start := time.Now()
	var req authorizeBody
	if err := decodeStrict(c.Body, &req); err != nil {
		return err
	}
	out, err := s.svc.Authorize(r.Context(), c, spend.AuthorizeRequest(req))
	if err != nil {
		return err
	}
	view := s.spendView(out.Spend, out.Replayed)
	if out.DryRun {
		view.DryRun = true
		return writeJSON(w, http.StatusOK, view)
	}
	s.authzLat.Observe(time.Since(start), view.Decision)
	if !out.Replayed {
		if len(view.Reasons) == 0 {
			s.decisions.Inc(view.Decision, "")
		}
		for _, reason := range view.Reasons {
			s.decisions.Inc(view.Decision, reason)
		}
	}
	switch view.Decision {
	case "deny":
		return &spend.Error{Code: spend.CodeSpendDenied, Message: "the mandate refused this spend: " + strings.Join(view.Reasons, ", "),
			Details: map[string]any{"spend_id": view.SpendID, "status": view.Status, "reasons": view.Reasons, "spend": view}}
	case "needs_approval":
		return writeJSON(w, http.StatusAccepted, view)
	}
	if out.Replayed {
		return writeJSON(w, http.StatusOK, view)
	}
	return writeJSON(w, http.StatusCreated, view)
}

func (s *Server) agentGetSpend(w http.ResponseWriter, r *http.Request, c spend.Caller) error {
	sp, err := s.svc.AgentGetSpend(r.Context(), c, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.spendView(sp, false))
}

// agentSpendAction serves the bodiless agent actions on one spend
// (confirm, release).
func (s *Server) agentSpendAction(fn func(context.Context, spend.Caller, string) (*spend.Spend, error)) agentHandler {
	return func(w http.ResponseWriter, r *http.Request, c spend.Caller) error {
		if err := decodeStrict(c.Body, &struct{}{}); err != nil {
			return err
		}
		sp, err := fn(r.Context(), c, r.PathValue("id"))
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, s.spendView(sp, false))
	}
}

func (s *Server) capture(w http.ResponseWriter, r *http.Request, c spend.Caller) error {
	var req struct {
		Amount string `json:"amount"`
	}
	if err := decodeStrict(c.Body, &req); err != nil {
		return err
	}
	sp, err := s.svc.Capture(r.Context(), c, r.PathValue("id"), req.Amount)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.spendView(sp, false))
}

func (s *Server) agentLimits(w http.ResponseWriter, r *http.Request, c spend.Caller) error {
	l, err := s.svc.AgentLimits(r.Context(), c)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, limitsView(l))
}

// resolveSpend settles an unknown spend on the owner's word, checked
// against the chain where one is connected (spend.Service.Resolve).
func (s *Server) resolveSpend(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		CapturedTx string `json:"captured_tx"`
		Released   bool   `json:"released"`
		Reason     string `json:"reason"`
	}
	if err := bindJSON(r, &req); err != nil {
		return err
	}
	sp, err := s.svc.Resolve(r.Context(), r.PathValue("id"), spend.ResolveRequest{CapturedTx: req.CapturedTx, Released: req.Released, Reason: req.Reason})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.spendView(sp, false))
}
