package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/purserhq/purser/api"
)

// Error is an error answer of the Purser server. Code is the stable
// machine code of docs/api.md (for an answer that is not a JSON error
// body, "http_<status>"); Details is the error's details object.
type Error struct {
	Status    int
	Code      string
	Message   string
	Details   map[string]any
	RequestID string

	rawDetails json.RawMessage
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%s (HTTP %d)", e.Code, e.Status)
	}
	return e.Message
}

// RawDetails returns details exactly as the server sent them.
func (e *Error) RawDetails() json.RawMessage { return e.rawDetails }

// Reasons returns details.reasons (the reason codes of spend_denied).
func (e *Error) Reasons() []string {
	l, _ := e.Details["reasons"].([]any)
	out := make([]string, 0, len(l))
	for _, v := range l {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// IsCode reports whether err is (or wraps) an *Error with the given code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// RefusedError is a spend the mandate refused (API code spend_denied):
// nothing was held or paid. Reasons are the reason codes of docs/api.md
// (daily_budget_exceeded, host_not_allowed, ...), which name the rule
// that refused. It wraps the server's *Error.
type RefusedError struct {
	SpendID string
	Reasons []string
	// Spend is the refused spend as the server recorded it (its SpendID is
	// empty for refusals that are not stored, such as a frozen agent's).
	Spend *Spend
	Err   *Error
}

func (e *RefusedError) Error() string {
	return "purser: the mandate refused the spend: " + strings.Join(e.Reasons, ", ")
}

// Unwrap returns the server's error.
func (e *RefusedError) Unwrap() error { return e.Err }

// ApprovalRequiredError is a spend that waits for an owner's decision: it
// is held against the budget but not paid. Wait for it with
// Agent.WaitForApproval (or poll Agent.Spend), then finish it with
// Agent.Confirm (a payout) or Agent.ConfirmFetch (an x402 payment), or,
// for a proxied call (Agent.Proxy), by sending the same request with the
// same Idempotency-Key. It is an outcome, not a failure: handle it with
// errors.As.
type ApprovalRequiredError struct {
	SpendID string
	// Reasons say which rule asked for approval (above_auto_approve, ...).
	Reasons []string
	Spend   *Spend
}

func (e *ApprovalRequiredError) Error() string {
	return "purser: spend " + e.SpendID + " waits for an owner's approval (" + strings.Join(e.Reasons, ", ") + ")"
}

// decodeError turns an error answer into an *Error, or a *RefusedError
// for spend_denied.
func decodeError(status int, raw []byte) error {
	var w api.Error
	if err := json.Unmarshal(raw, &w); err != nil || w.Code == "" {
		msg := strings.TrimSpace(string(raw))
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		if msg == "" {
			msg = http.StatusText(status)
		}
		return &Error{Status: status, Code: fmt.Sprintf("http_%d", status), Message: msg}
	}
	e := &Error{Status: status, Code: w.Code, Message: w.Message, RequestID: w.RequestID}
	if len(w.Details) > 0 && string(w.Details) != "null" {
		e.rawDetails = w.Details
		_ = json.Unmarshal(w.Details, &e.Details)
	}
	if e.Code == "spend_denied" {
		return refusal(e)
	}
	return e
}

// refusal builds the refusal of a spend_denied error: details.spend when
// present, else what details carries on its own.
func refusal(e *Error) *RefusedError {
	var d api.DeniedDetails
	_ = json.Unmarshal(e.rawDetails, &d)
	s := d.Spend
	if s == nil {
		s = &Spend{SpendID: d.SpendID, Status: d.Status, Reasons: d.Reasons}
	}
	if s.Status == "" {
		s.Status = api.StatusDenied
	}
	if s.Decision == "" {
		s.Decision = api.DecisionDeny
	}
	if len(s.Reasons) == 0 {
		s.Reasons = e.Reasons()
	}
	return &RefusedError{SpendID: s.SpendID, Reasons: s.Reasons, Spend: s, Err: e}
}
