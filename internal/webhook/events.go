package webhook

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/purserhq/purser/internal/audit"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/spend"
)

// Event types (docs/webhooks.md).
const (
	TypeApprovalRequested = "approval.requested"
	TypeApprovalResolved  = "approval.resolved"
	TypeAgentFrozen       = "agent.frozen"
	TypeAgentRevoked      = "agent.revoked"
	TypeBudgetThreshold   = "budget.threshold"
	TypePaymentFailed     = "payment.failed"
	TypePaymentUnknown    = "payment.unknown"
	TypePing              = "ping"
)

// Types lists the event types an endpoint can ask for.
var Types = []string{TypeApprovalRequested, TypeApprovalResolved, TypeAgentFrozen, TypeAgentRevoked,
	TypeBudgetThreshold, TypePaymentFailed, TypePaymentUnknown}

// Payload is the body of every delivery.
type Payload struct {
	Type      string         `json:"type"`
	Timestamp time.Time      `json:"timestamp"`
	Data      map[string]any `json:"data"`
}

// event is one webhook event an audit event makes.
type event struct {
	Type string
	Data map[string]any
}

// details is what the mapping reads of an audit event's details.
type details struct {
	SpendID      string          `json:"spend_id"`
	AgentID      string          `json:"agent_id"`
	Status       string          `json:"status"`
	From         string          `json:"from"`
	Reasons      []string        `json:"reasons"`
	ReasonText   string          `json:"reason_text"`
	BudgetAlerts json.RawMessage `json:"budget_alerts"`
}

// mapper turns audit events into webhook events.
type mapper struct {
	svc       *spend.Service
	assets    *money.Registry
	publicURL string
}

// Map returns the webhook events an audit event makes, in order (none
// for most events).
func (m *mapper) Map(ctx context.Context, e *audit.Event) ([]event, error) {
	var d details
	if e.Action == "spend.authorize" && !bytes.Contains(e.Details, []byte(`"budget_alerts"`)) {
		return nil, nil // the common case, read without decoding
	}
	switch e.Action {
	case "spend.request_approval", "spend.authorize", "spend.approve", "spend.deny", "spend.expire", "spend.cancel",
		"spend.release", "spend.unknown", "agent.freeze", "agent.revoke":
		if err := json.Unmarshal(e.Details, &d); err != nil {
			return nil, err
		}
	default:
		return nil, nil
	}
	var out []event
	switch e.Action {
	case "agent.freeze", "agent.revoke":
		typ := TypeAgentFrozen
		if e.Action == "agent.revoke" {
			typ = TypeAgentRevoked
		}
		data, err := m.agentData(ctx, d.AgentID, e)
		if err != nil {
			return nil, err
		}
		return []event{{typ, data}}, nil
	case "spend.request_approval":
		data, err := m.spendData(ctx, d, e)
		if err != nil {
			return nil, err
		}
		out = append(out, event{TypeApprovalRequested, data})
	case "spend.approve", "spend.deny", "spend.expire", "spend.cancel":
		var decision string
		switch {
		case e.Action == "spend.approve":
			decision = "approved"
		case e.Action == "spend.deny" && e.Actor.Type == "owner": // an agent's denied request was never an approval
			decision = "denied"
		case e.Action == "spend.expire" && d.From == string(spend.StatusPendingApproval):
			decision = "expired"
		case e.Action == "spend.cancel" && d.From == string(spend.StatusPendingApproval):
			decision = "cancelled"
		default:
			return nil, nil
		}
		ev, err := m.resolved(ctx, d, e, decision)
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	case "spend.release":
		// The rail's verdict, not an agent's or an owner's choice; an
		// authorization that expired unused or was cancelled on purpose
		// is no failed payment.
		if e.Actor.Type != "system" {
			return nil, nil
		}
		data, err := m.spendData(ctx, d, e)
		if err != nil {
			return nil, err
		}
		if rail, _ := data["spend"].(map[string]any)["rail"].(string); rail == spend.RailAPIProxy {
			return nil, nil // a proxied call the upstream did not serve cost nothing: no failed payment
		}
		reasons, _ := data["spend"].(map[string]any)["reasons"].([]string) // the release's, as the spend keeps them
		if len(reasons) > 0 && !slices.ContainsFunc(reasons, func(r string) bool {
			return r != "authorization_expired_unused" && r != "authorization_cancelled"
		}) {
			return nil, nil
		}
		out = append(out, event{TypePaymentFailed, data})
	case "spend.unknown":
		data, err := m.spendData(ctx, d, e)
		if err != nil {
			return nil, err
		}
		out = append(out, event{TypePaymentUnknown, data})
	}
	if len(d.BudgetAlerts) > 0 && (e.Action == "spend.authorize" || e.Action == "spend.request_approval") {
		var alerts []map[string]any
		if err := json.Unmarshal(d.BudgetAlerts, &alerts); err != nil {
			return nil, err
		}
		for _, a := range alerts {
			data, err := m.spendData(ctx, d, e)
			if err != nil {
				return nil, err
			}
			data["budget"] = a
			data["portal_url"] = m.link("agents", d.AgentID)
			out = append(out, event{TypeBudgetThreshold, data})
		}
	}
	// An error is the store's: the event is mapped again on the next
	// pass, never sent with less.
	return out, nil
}

// resolved is an approval's outcome, with the audit event that decided
// it: its details (which carry the owner's approval, and will carry the
// passkey assertion), its hash and sequence number, so a receiver can
// match it against an audit export.
func (m *mapper) resolved(ctx context.Context, d details, e *audit.Event, decision string) (event, error) {
	data, err := m.spendData(ctx, d, e)
	if err != nil {
		return event{}, err
	}
	data["decision"] = decision
	data["approval"] = map[string]any{
		"seq": e.Seq, "time": e.Time, "actor": map[string]string{"type": e.Actor.Type, "id": e.Actor.ID},
		"action": e.Action, "details": e.Details, "hash": hex.EncodeToString(e.Hash[:]),
	}
	return event{TypeApprovalResolved, data}, nil
}

func (m *mapper) link(kind, id string) string {
	return strings.TrimRight(m.publicURL, "/") + "/" + kind + "/" + url.PathEscape(id)
}

// spendData describes the spend an event is about: its fixed fields from
// the store, its status and reasons as the event recorded them.
func (m *mapper) spendData(ctx context.Context, d details, e *audit.Event) (map[string]any, error) {
	var sp *spend.Spend
	var ag *spend.Agent
	err := m.svc.ReadTx(ctx, func(tx spend.Tx) error {
		var err error
		if sp, err = tx.SpendGet(ctx, d.SpendID); err != nil {
			return err
		}
		ag, err = tx.AgentGet(ctx, sp.AgentID)
		return err
	})
	if err != nil {
		if errors.Is(err, spend.ErrNotFound) {
			return map[string]any{"spend": map[string]any{"id": d.SpendID, "agent_id": d.AgentID}, "event_seq": e.Seq}, nil
		}
		return nil, err
	}
	dec := uint8(money.USDDecimals)
	if a, err := m.assets.Lookup(sp.Network, sp.Asset); err == nil {
		dec = a.Decimals
	}
	status, reasons := d.Status, d.Reasons
	if status == "" {
		status = string(sp.Status)
	}
	if reasons == nil {
		reasons = sp.Reasons
	}
	if reasons == nil {
		reasons = []string{}
	}
	s := map[string]any{
		"id": sp.ID, "agent_id": sp.AgentID, "status": status, "rail": sp.Rail, "amount": money.FormatAmount(sp.Amount, dec),
		"amount_usd": usdString(sp.AmountUSD), "asset": sp.Asset, "network": sp.Network, "payee": sp.Payee, "host": sp.Host,
		"memo": sp.Memo, "reasons": reasons, "created_at": sp.CreatedAt,
	}
	if sp.RailRef != "" {
		s["rail_ref"] = sp.RailRef
	}
	return map[string]any{
		"spend": s, "agent": agentSummary(ag), "event_seq": e.Seq, "portal_url": m.link("approvals", sp.ID),
	}, nil
}

func (m *mapper) agentData(ctx context.Context, agentID string, e *audit.Event) (map[string]any, error) {
	var ag *spend.Agent
	err := m.svc.ReadTx(ctx, func(tx spend.Tx) (err error) {
		ag, err = tx.AgentGet(ctx, agentID)
		return err
	})
	if err != nil && !errors.Is(err, spend.ErrNotFound) {
		return nil, err
	}
	var det map[string]any
	if err := json.Unmarshal(e.Details, &det); err != nil {
		return nil, err
	}
	data := map[string]any{"agent": map[string]any{"id": agentID}, "event_seq": e.Seq,
		"cancelled_spends": det["cancelled_spends"], "portal_url": m.link("agents", agentID)}
	if ag != nil {
		data["agent"] = agentSummary(ag)
	}
	if v, ok := det["cancel_signed"]; ok {
		data["cancel_signed"] = v
	}
	return data, nil
}

func agentSummary(a *spend.Agent) map[string]any {
	if a == nil {
		return nil
	}
	return map[string]any{"id": a.ID, "name": a.Name}
}

func usdString(v *big.Int) string {
	if v == nil {
		return "0"
	}
	return money.FormatAmount(v, money.USDDecimals)
}
