package portal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/purserhq/purser/internal/audit"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/spend"
)

// ---- sign-in and enrolment (the ceremonies are the auth backend's) ----

func (s *Server) signin(w http.ResponseWriter, r *http.Request) error {
	s.render(w, http.StatusOK, "signin", &view{Title: "Sign in", Data: map[string]any{
		"Next": safeNext(r.URL.Query().Get("next")), "Available": s.cfg.AuthHandler != nil}})
	return nil
}

func (s *Server) enrol(w http.ResponseWriter, r *http.Request) error {
	s.render(w, http.StatusOK, "enrol", &view{Title: "Set up your passkey", Data: map[string]any{
		"Available": s.cfg.AuthHandler != nil}})
	return nil
}

// safeNext keeps a post-sign-in redirect on this site: a path, never a
// scheme-relative or absolute URL.
func safeNext(n string) string {
	if n == "" || !strings.HasPrefix(n, "/") || strings.HasPrefix(n, "//") || strings.HasPrefix(n, "/\\") || strings.ContainsAny(n, "\r\n") {
		return "/"
	}
	return n
}

// ---- overview ----

type pendingRow struct {
	Spend     *spend.Spend
	AgentName string
	Amount    string // in the asset
	Offer     offer
	Remaining *big.Int // today's budget left; nil: no daily budget
	HasDaily  bool
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request, sess Session) error {
	ctx := r.Context()
	days, usage, err := s.svc.UsageByDay(ctx, 30)
	if err != nil {
		return err
	}
	today, week, month := new(big.Int), new(big.Int), new(big.Int)
	for _, u := range usage {
		for i, v := range u.Days {
			month.Add(month, v)
			if i >= len(u.Days)-7 {
				week.Add(week, v)
			}
			if i == len(u.Days)-1 {
				today.Add(today, v)
			}
		}
	}
	pending, err := s.pending(ctx, 5)
	if err != nil {
		return err
	}
	events, err := s.svc.AuditBefore(ctx, 0, 8)
	if err != nil {
		return err
	}
	s.render(w, http.StatusOK, "overview", &view{Title: "Overview", Nav: "overview", Session: sess, Data: map[string]any{
		"Today": today, "Week": week, "Month": month, "Chart": buildChart(days, usage, 30, 720), "ChartNarrow": buildChart(days, usage, 14, 360),
		"Pending": pending, "Events": s.eventRows(ctx, events), "Agents": len(usage)}})
	return nil
}

// pending reads the newest pending approvals with what the owner needs
// to decide them.
func (s *Server) pending(ctx context.Context, limit int) ([]pendingRow, error) {
	list, err := s.svc.ListSpends(ctx, "", []spend.Status{spend.StatusPendingApproval}, limit)
	if err != nil {
		return nil, err
	}
	out := make([]pendingRow, 0, len(list))
	limits := map[string]*spend.Limits{}
	for _, sp := range list {
		l, ok := limits[sp.AgentID]
		if !ok {
			if l, err = s.svc.OwnerLimits(ctx, sp.AgentID); err != nil {
				return nil, err
			}
			limits[sp.AgentID] = l
		}
		out = append(out, s.pendingRow(sp, l))
	}
	return out, nil
}

func (s *Server) pendingRow(sp *spend.Spend, l *spend.Limits) pendingRow {
	row := pendingRow{Spend: sp, AgentName: l.Agent.Name, Amount: s.amount(sp), Offer: offerOf(sp.RailRequest)}
	if l.DailyRemaining != nil {
		row.HasDaily, row.Remaining = true, l.DailyRemaining
	}
	return row
}

// amount is a spend's amount in its asset, e.g. "12.5 USDC".
func (s *Server) amount(sp *spend.Spend) string {
	dec := uint8(money.USDDecimals)
	if a, err := s.cfg.Assets.Lookup(sp.Network, sp.Asset); err == nil {
		dec = a.Decimals
	}
	return money.FormatAmount(sp.Amount, dec) + " " + sp.Asset
}

// ---- agents ----

type agentRow struct {
	Agent      *spend.Agent
	DailyUsed  *big.Int
	DailyLimit *big.Int
	Percent    int
}

func (s *Server) agents(w http.ResponseWriter, r *http.Request, sess Session) error {
	ctx := r.Context()
	as, err := s.svc.ListAgents(ctx)
	if err != nil {
		return err
	}
	rows := make([]agentRow, 0, len(as))
	for _, a := range as {
		l, err := s.svc.OwnerLimits(ctx, a.ID)
		if err != nil {
			return err
		}
		row := agentRow{Agent: a, DailyUsed: l.DailyUsedUSD}
		if l.Mandate != nil && l.Mandate.Daily != nil {
			row.DailyLimit = l.Mandate.Daily
			row.Percent = pct(l.DailyUsedUSD, l.Mandate.Daily)
		}
		rows = append(rows, row)
	}
	s.render(w, http.StatusOK, "agents", &view{Title: "Agents", Nav: "agents", Session: sess, Data: map[string]any{"Rows": rows}})
	return nil
}

type balanceRow struct {
	Network, Asset, Address, Amount string
	Failed                          bool
}

type spendRow struct {
	Spend  *spend.Spend
	Amount string
}

func (s *Server) agent(w http.ResponseWriter, r *http.Request, sess Session) error {
	ctx := r.Context()
	l, err := s.svc.OwnerLimits(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	list, err := s.svc.ListSpends(ctx, l.Agent.ID, nil, 20)
	if err != nil {
		return err
	}
	spends := make([]spendRow, len(list))
	for i, sp := range list {
		spends[i] = spendRow{Spend: sp, Amount: s.amount(sp)}
	}
	var flash string
	switch r.URL.Query().Get("done") {
	case "mandate":
		flash = fmt.Sprintf("Mandate saved as version %d.", l.MandateVersion)
	case "created":
		flash = "Agent created. Give it a mandate below so that it can spend."
	case "freeze":
		flash = "Agent frozen. Its payments are refused until you unfreeze it."
	case "unfreeze":
		flash = "Agent unfrozen."
	case "revoke":
		flash = "Agent revoked."
	}
	var mandateRows []fieldRow
	if l.Mandate != nil {
		mandateRows = describeMandate(wireOf(l.Mandate))
	}
	// One key serves every EVM network: one row per address.
	type walletRow struct{ Address, Networks string }
	var wallets []walletRow
	for _, wl := range l.Agent.Wallets {
		if n := len(wallets); n > 0 && wallets[n-1].Address == wl.Address {
			wallets[n-1].Networks += ", " + wl.Network
			continue
		}
		wallets = append(wallets, walletRow{Address: wl.Address, Networks: wl.Network})
	}
	s.render(w, http.StatusOK, "agent", &view{Title: l.Agent.Name, Nav: "agents", Session: sess, Flash: flash, Data: map[string]any{
		"L": l, "Wallets": wallets, "Balances": s.balances(ctx, l.Agent), "Spends": spends, "Mandate": mandateRows,
		"DailyPercent": pct(l.DailyUsedUSD, dailyOf(l))}})
	return nil
}

func dailyOf(l *spend.Limits) *big.Int {
	if l.Mandate == nil {
		return nil
	}
	return l.Mandate.Daily
}

// balances reads the agent's token balances on the connected networks.
func (s *Server) balances(ctx context.Context, a *spend.Agent) []balanceRow {
	if s.cfg.Chains == nil {
		return nil
	}
	var out []balanceRow
	for _, w := range a.Wallets {
		if !slices.Contains(s.cfg.Chains.Networks(), w.Network) {
			continue
		}
		for _, as := range s.cfg.Assets.Assets() {
			if as.Network != w.Network || as.Address == "" {
				continue
			}
			b := balanceRow{Network: w.Network, Asset: as.Symbol, Address: w.Address}
			if v, err := s.cfg.Chains.Balance(ctx, w.Network, as.Address, w.Address); err != nil {
				s.log.Warn("balance read failed", "network", w.Network, "err", err)
				b.Failed = true
			} else {
				b.Amount = money.FormatAmount(v, as.Decimals)
			}
			out = append(out, b)
		}
	}
	return out
}

func (s *Server) agentNew(w http.ResponseWriter, r *http.Request, sess Session) error {
	s.render(w, http.StatusOK, "agent_new", &view{Title: "New agent", Nav: "agents", Session: sess, Data: map[string]any{}})
	return nil
}

func (s *Server) agentCreate(w http.ResponseWriter, r *http.Request, sess Session) error {
	name, addr := strings.TrimSpace(r.PostFormValue("name")), strings.TrimSpace(r.PostFormValue("identity_address"))
	a, err := s.svc.CreateAgent(r.Context(), spend.CreateAgentRequest{Name: name, IdentityAddress: addr})
	if err != nil {
		if spend.CodeOf(err) == "" {
			return err
		}
		s.render(w, http.StatusBadRequest, "agent_new", &view{Title: "New agent", Nav: "agents", Session: sess, Data: map[string]any{
			"Name": name, "Address": addr, "Error": messageOf(err)}})
		return nil
	}
	http.Redirect(w, r, "/agents/"+url.PathEscape(a.ID)+"?done=created", http.StatusSeeOther)
	return nil
}

type agentActionInfo struct {
	Verb, Title, Explain string
	Danger               bool
}

var agentActions = map[string]agentActionInfo{
	"freeze":   {"Freeze", "Freeze this agent?", "Every payment it asks for is refused until you unfreeze it. Payments waiting for your approval are cancelled and their holds released.", false},
	"unfreeze": {"Unfreeze", "Unfreeze this agent?", "It can spend again within its mandate.", false},
	"revoke":   {"Revoke", "Revoke this agent for good?", "Its identity key stops working, every payment it asks for is refused, and this cannot be undone. Its history stays in the audit trail.", true},
}

func (s *Server) agentConfirm(w http.ResponseWriter, r *http.Request, sess Session) error {
	info, ok := agentActions[r.PathValue("action")]
	if !ok {
		return spend.Errorf("not_found", "no such action")
	}
	a, err := s.svc.GetAgent(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	s.render(w, http.StatusOK, "confirm", &view{Title: info.Title, Nav: "agents", Session: sess, Data: map[string]any{
		"Agent": a, "Action": r.PathValue("action"), "Info": info}})
	return nil
}

func (s *Server) agentAction(w http.ResponseWriter, r *http.Request, sess Session) error {
	action := r.PathValue("action")
	var fn func(context.Context, string) (*spend.Agent, error)
	switch action {
	case "freeze":
		fn = s.svc.Freeze
	case "unfreeze":
		fn = s.svc.Unfreeze
	case "revoke":
		fn = s.svc.Revoke
	default:
		return spend.Errorf("not_found", "no such action")
	}
	a, err := fn(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/agents/"+url.PathEscape(a.ID)+"?done="+action, http.StatusSeeOther)
	return nil
}

// ---- approvals ----

func (s *Server) approvals(w http.ResponseWriter, r *http.Request, sess Session) error {
	rows, err := s.pending(r.Context(), maxQueue)
	if err != nil {
		return err
	}
	var flash string
	switch r.URL.Query().Get("done") {
	case "denied":
		flash = "Payment denied. The agent was told your reason."
	case "approved":
		flash = "Payment approved."
	}
	s.render(w, http.StatusOK, "approvals", &view{Title: "Approvals", Nav: "approvals", Session: sess, Flash: flash, Data: map[string]any{"Rows": rows, "Max": maxQueue}})
	return nil
}

// maxQueue is how many pending approvals one page shows.
const maxQueue = 100

func (s *Server) approval(w http.ResponseWriter, r *http.Request, sess Session) error {
	ctx := r.Context()
	sp, err := s.svc.GetSpend(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	l, err := s.svc.OwnerLimits(ctx, sp.AgentID)
	if err != nil {
		return err
	}
	title := "Payment of " + s.amount(sp)
	if sp.Status == spend.StatusPendingApproval {
		title = "Approve " + s.amount(sp) + "?"
	}
	s.render(w, http.StatusOK, "approval", &view{Title: title, Nav: "approvals", Session: sess, Data: map[string]any{
		"Row": s.pendingRow(sp, l), "Pending": sp.Status == spend.StatusPendingApproval, "Identity": l.Agent.IdentityAddress}})
	return nil
}

func (s *Server) deny(w http.ResponseWriter, r *http.Request, sess Session) error {
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	// The audit event names the signed-in owner who denied it.
	if _, err := s.svc.DenyAsOwner(r.Context(), r.PathValue("id"), reason, sess.OwnerID); err != nil {
		return err
	}
	http.Redirect(w, r, "/approvals?done=denied", http.StatusSeeOther)
	return nil
}

// ---- shared ----

type eventRow struct {
	Event     *audit.Event
	What      string
	By        string // who: an owner's name, "agent", "Purser"
	AgentID   string
	AgentName string
	SpendID   string
}

// eventRows describes events for people: what happened, to which agent.
func (s *Server) eventRows(ctx context.Context, evs []*audit.Event) []eventRow {
	names := map[string]string{}
	if as, err := s.svc.ListAgents(ctx); err == nil {
		for _, a := range as {
			names[a.ID] = a.Name
		}
	}
	owners := map[string]string{}
	if os, err := s.svc.ListOwners(ctx); err == nil {
		for _, o := range os {
			owners[o.ID] = o.Name
		}
	}
	out := make([]eventRow, len(evs))
	for i, e := range evs {
		row := eventRow{Event: e, What: actionText(e.Action), By: e.Actor.Type}
		switch {
		case e.Actor.Type == "owner" && owners[e.Actor.ID] != "":
			row.By = owners[e.Actor.ID]
		case e.Actor.Type == "owner" && e.Actor.ID == "owner":
			row.By = "owner token"
		case e.Actor.Type == "system":
			row.By = "Purser"
		}
		if e.Action == "spend.approve" && bytes.Contains(e.Details, []byte(`"passkey"`)) {
			row.What = "Payment approved with a passkey"
		}
		row.AgentID = agentOf(e)
		row.AgentName = names[row.AgentID]
		if id, ok := strings.CutPrefix(e.Subject, "spend:"); ok {
			row.SpendID = id
		}
		out[i] = row
	}
	return out
}

// messageOf is an error's message for the owner: a coded error's safe
// message, else its text (only errors with a code reach here).
func messageOf(err error) string {
	var se *spend.Error
	if errors.As(err, &se) {
		return se.Message
	}
	return err.Error()
}
