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

	"github.com/purserhq/purser/api"
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
	s.ownerRoutes()

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

	s.webhookRoutes()
	s.vaultRoutes()
	s.cosignRoutes()
	if s.portal != nil {
		// The API keeps /v1/ (unknown API paths answer JSON); the portal
		// has the rest.
		s.handle("/v1/", s.noRoute)
		s.mux.Handle("/", s.portal)
		return
	}
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
		if _, pattern := s.mux.Handler(&http.Request{Method: m, URL: r.URL, Host: r.Host}); pattern != "/" && pattern != "/v1/" && pattern != "" {
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
	return writeJSON(w, http.StatusOK, api.Deployment{
		DeploymentID: s.domain.DeploymentHex(),
		AuthVersions: versions,
		EIP712Domain: api.EIP712Domain{Name: "Purser", Version: "2", Salt: s.domain.DeploymentHex()},
	})
}

func (s *Server) metricsPage(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	s.reg.Write(w)
	return nil
}

// ---- JSON views ----

func agentView(a *spend.Agent) api.Agent {
	ws := make([]api.Wallet, len(a.Wallets))
	for i, w := range a.Wallets {
		ws[i] = api.Wallet{Network: w.Network, Address: w.Address, Custody: w.Custody, Path: w.Path}
	}
	custody := a.Custody
	if custody == "" {
		custody = spend.CustodyServer
	}
	return api.Agent{ID: a.ID, Name: a.Name, Status: string(a.Status), IdentityAddress: a.IdentityAddress, Custody: custody,
		Wallets: ws, MandateVersion: a.MandateVersion, CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt}
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

func (s *Server) spendView(sp *spend.Spend, replayed bool) api.Spend {
	dec := uint8(money.USDDecimals)
	if a, err := s.assets.Lookup(sp.Network, sp.Asset); err == nil {
		dec = a.Decimals
	}
	v := api.Spend{
		SpendID: sp.ID, AgentID: sp.AgentID, Status: string(sp.Status), Decision: decisionOf(sp.Status, sp.Reasons),
		Reasons: sp.Reasons, Rail: sp.Rail, Host: sp.Host, Payee: sp.Payee, Asset: sp.Asset, Network: sp.Network,
		Amount: money.FormatAmount(sp.Amount, dec), AmountUSD: usdString(sp.AmountUSD), HeldUSD: usdString(sp.Held()),
		MandateVersion: sp.MandateVersion, IdempotencyKey: sp.IdempotencyKey, Memo: sp.Memo, DenyReason: sp.DenyReason, RailRef: sp.RailRef,
		RailRequest: sp.RailRequest, CreatedAt: sp.CreatedAt, UpdatedAt: sp.UpdatedAt, Replayed: replayed,
	}
	if sp.Rail == "x402" && sp.Cosign == nil && !unsignedX402(sp.RailData) {
		// The x402 payment header is the agent's to send to its seller. A
		// payout's signed authorization is Purser's to relay, and whoever
		// held it could submit it: it is never shown. An unsigned
		// co-signed authorization is shown as the cosign block instead.
		v.RailData = sp.RailData
	}
	v.Cosign = cosignView(sp.Cosign)
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
	var req api.CreateAgentRequest
	if err := bindJSON(r, &req); err != nil {
		return err
	}
	cr := spend.CreateAgentRequest{Name: req.Name, IdentityAddress: req.IdentityAddress, Mandate: req.Mandate, Custody: req.Custody}
	if req.Recovery != nil {
		cr.RecoveryPublicKey, cr.RecoveryCiphertext = req.Recovery.PublicKey, req.Recovery.Ciphertext
	}
	a, err := s.svc.CreateAgent(r.Context(), cr)
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
	out := api.Agents{Agents: make([]api.Agent, len(as))}
	for i, a := range as {
		out.Agents[i] = agentView(a)
	}
	return writeJSON(w, http.StatusOK, out)
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

func (s *Server) freeze(w http.ResponseWriter, r *http.Request) error {
	var req api.FreezeRequest
	if err := bindJSON(r, &req); err != nil {
		return err
	}
	if !req.CancelSigned {
		a, err := s.svc.Freeze(r.Context(), r.PathValue("ref"))
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, api.FreezeResponse{Agent: agentView(a)})
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
	out := api.FreezeResponse{Agent: agentView(a), Cancellations: make([]api.Cancellation, len(results))}
	for i, c := range results {
		reasons := c.Spend.Reasons
		if reasons == nil {
			reasons = []string{}
		}
		out.Cancellations[i] = api.Cancellation{SpendID: c.Spend.ID, Status: string(c.Spend.Status), Reasons: reasons,
			RailRef: c.Spend.RailRef, Error: c.Err}
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request) error {
	var req api.RotateKeyRequest
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
	out := api.MandateView{AgentID: v.AgentID, Version: v.Version, Mandate: json.RawMessage("null")}
	if v.Mandate != nil {
		raw, err := json.Marshal(v.Mandate)
		if err != nil {
			return err
		}
		out.Mandate = raw
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
	var req api.SetMandateRequest
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
	return writeLimits(w, l)
}

func limitsView(l *spend.Limits) (api.Limits, error) {
	window := func(limit, used, remaining *big.Int) *api.Window {
		if limit == nil {
			return nil
		}
		return &api.Window{Limit: usdString(limit), Used: usdString(used), Remaining: usdString(remaining)}
	}
	out := api.Limits{
		AgentID: l.Agent.ID, Name: l.Agent.Name, Status: string(l.Agent.Status), MandateVersion: l.MandateVersion,
		Mandate: json.RawMessage("null"), Day: l.DayKey,
		DailyUsed: usdString(l.DailyUsedUSD), LifetimeUsed: usdString(l.LifetimeUsedUSD),
		Wallets: agentView(l.Agent).Wallets,
	}
	if m := l.Mandate; m != nil {
		raw, err := json.Marshal(m)
		if err != nil {
			return api.Limits{}, err
		}
		out.Mandate = raw
		out.Daily = window(m.Daily, l.DailyUsedUSD, l.DailyRemaining)
		out.Lifetime = window(m.Lifetime, l.LifetimeUsedUSD, l.LifetimeRemaining)
		if m.Rate != nil {
			out.Rate = &api.RateWindow{Limit: m.Rate.String(), Used: int64(l.RateUsed)}
		}
		if m.PerTxMax != nil {
			out.PerTxMax = usdString(m.PerTxMax)
		}
		if m.PerTxAuto != nil {
			out.PerTxAuto = usdString(m.PerTxAuto)
		}
	}
	return out, nil
}

// writeLimits answers with an agent's limits.
func writeLimits(w http.ResponseWriter, l *spend.Limits) error {
	v, err := limitsView(l)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, v)
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
	out := make([]api.Spend, len(list))
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
	var req api.DenyRequest
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
	out := api.AuditEvents{Events: make([]api.AuditEvent, len(evs))}
	for i, e := range evs {
		out.Events[i] = api.AuditEvent{Seq: e.Seq, Time: e.Time, Actor: api.AuditActor{Type: e.Actor.Type, ID: e.Actor.ID},
			Action: e.Action, Subject: e.Subject, Details: json.RawMessage(e.Details),
			PrevHash: hex.EncodeToString(e.PrevHash[:]), Hash: hex.EncodeToString(e.Hash[:])}
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) auditVerify(w http.ResponseWriter, r *http.Request) error {
	res, err := s.svc.VerifyAudit(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, api.AuditVerifyResult{OK: true, Events: int64(res.Events), Checkpoints: int64(res.Checkpoints),
		HeadSeq: res.HeadSeq, HeadHash: hex.EncodeToString(res.HeadHash[:]), KeyID: res.KeyID})
}

func (s *Server) auditKey(w http.ResponseWriter, r *http.Request) error {
	pub := s.svc.AuditPublicKey()
	return writeJSON(w, http.StatusOK, api.AuditKey{AuditKey: hex.EncodeToString(pub), KeyID: audit.KeyID(pub)})
}

// ---- agent handlers ----

func (s *Server) authorize(w http.ResponseWriter, r *http.Request, c spend.Caller) error {
	start := time.Now()
	var req api.AuthorizeRequest
	if err := decodeStrict(c.Body, &req); err != nil {
		return err
	}
	out, err := s.svc.Authorize(r.Context(), c, spend.AuthorizeRequest{Rail: req.Rail, Host: req.Host, Payee: req.Payee,
		Asset: req.Asset, Network: req.Network, Amount: req.Amount, IdempotencyKey: req.IdempotencyKey, Memo: req.Memo,
		RailRequest: req.RailRequest, DryRun: req.DryRun})
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
	var req api.CaptureRequest
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
	return writeLimits(w, l)
}

// resolveSpend settles an unknown spend on the owner's word, checked
// against the chain where one is connected (spend.Service.Resolve).
func (s *Server) resolveSpend(w http.ResponseWriter, r *http.Request) error {
	var req api.ResolveRequest
	if err := bindJSON(r, &req); err != nil {
		return err
	}
	sp, err := s.svc.Resolve(r.Context(), r.PathValue("id"), spend.ResolveRequest{CapturedTx: req.CapturedTx, Released: req.Released, Reason: req.Reason})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.spendView(sp, false))
}
