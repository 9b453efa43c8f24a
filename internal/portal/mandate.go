package portal

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/purserhq/purser/internal/mandate"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/spend"
)

// mandateField is one field of the mandate form, in the mandate's JSON
// names so that the API's validation messages point at it.
type mandateField struct {
	Name, Label, Help string
	Kind              string // "amount", "text", "list", "bool"
}

var mandateFields = []mandateField{
	{"daily", "Daily budget (USD)", "The most the agent may commit in one day.", "amount"},
	{"per_tx_auto", "Approve automatically up to (USD)", "Payments above this wait for your approval.", "amount"},
	{"per_tx_max", "Largest single payment (USD)", "Anything above is refused outright.", "amount"},
	{"lifetime", "Lifetime budget (USD)", "The most the agent may ever spend.", "amount"},
	{"rate", "Rate limit", "For example 10/1m: at most 10 payments a minute.", "text"},
	{"hosts", "Allowed hosts", "One per line; *.example.com allows subdomains. Empty: any host.", "list"},
	{"payees", "Allowed payees", "One address per line. Empty: any payee.", "list"},
	{"deny_payees", "Refused payees", "Always refused, even if allowed above.", "list"},
	{"rails", "Payment methods", "x402, payout… one per line. Empty: any.", "list"},
	{"approve_new_payees", "Ask me before the first payment to a new payee", "", "bool"},
	{"pin_payees", "Pin each host to the first payee it was paid", "A different payee for the same host is refused.", "bool"},
	{"timezone", "Time zone of the daily budget", "An IANA name such as Europe/Berlin. Empty: UTC.", "text"},
	{"valid_from", "Valid from", "RFC 3339 time, optional.", "text"},
	{"valid_until", "Valid until", "RFC 3339 time, optional.", "text"},
}

// wireOf is a mandate in its JSON form, as a map (unset fields absent).
func wireOf(m *mandate.Mandate) map[string]any {
	out := map[string]any{}
	if m == nil {
		return out
	}
	b, err := json.Marshal(m)
	if err == nil {
		_ = json.Unmarshal(b, &out)
	}
	return out
}

// formValue is a wire value as a form field shows it.
func formValue(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case bool:
		if v {
			return "on"
		}
		return ""
	case []any:
		parts := make([]string, len(v))
		for i, p := range v {
			parts[i] = formValue(p)
		}
		return strings.Join(parts, "\n")
	}
	b, _ := json.Marshal(v)
	return string(b)
}

type fieldRow struct {
	Field mandateField
	Value string
	Old   string
	Error string
}

func describeMandate(w map[string]any) []fieldRow {
	var out []fieldRow
	for _, f := range mandateFields {
		if v, ok := w[f.Name]; ok {
			out = append(out, fieldRow{Field: f, Value: display(f, formValue(v))})
		}
	}
	return out
}

func display(f mandateField, v string) string {
	switch {
	case f.Kind == "bool" && v == "on":
		return "Yes"
	case f.Kind == "bool":
		return "No"
	case v == "":
		return "—"
	case f.Kind == "amount":
		if a, err := money.ParseAmount(v, money.USDDecimals); err == nil {
			return usd(a)
		}
		return "$" + v
	case f.Kind == "list":
		return strings.ReplaceAll(v, "\n", ", ")
	}
	return v
}

// mandateFromForm turns the form into the mandate's JSON body.
func mandateFromForm(r *http.Request) json.RawMessage {
	obj := map[string]any{}
	for _, f := range mandateFields {
		v := strings.TrimSpace(r.PostFormValue(f.Name))
		switch f.Kind {
		case "bool":
			if v != "" {
				obj[f.Name] = true
			}
		case "list":
			var items []string
			for _, line := range strings.FieldsFunc(v, func(c rune) bool { return c == '\n' || c == ',' }) {
				if line = strings.TrimSpace(line); line != "" {
					items = append(items, line)
				}
			}
			if len(items) > 0 {
				obj[f.Name] = items
			}
		default:
			if v != "" {
				obj[f.Name] = strings.TrimPrefix(v, "$")
			}
		}
	}
	b, _ := json.Marshal(obj)
	return b
}

func (s *Server) mandateEdit(w http.ResponseWriter, r *http.Request, sess Session) error {
	mv, a, err := s.currentMandate(r)
	if err != nil {
		return err
	}
	cur := wireOf(mv.Mandate)
	rows := make([]fieldRow, len(mandateFields))
	for i, f := range mandateFields {
		rows[i] = fieldRow{Field: f, Value: formValue(cur[f.Name])}
	}
	s.render(w, http.StatusOK, "mandate_edit", &view{Title: "Mandate of " + a.Name, Nav: "agents", Session: sess, Data: map[string]any{
		"Agent": a, "Rows": rows, "Base": mv.Version}})
	return nil
}

func (s *Server) currentMandate(r *http.Request) (*spend.MandateView, *spend.Agent, error) {
	a, err := s.svc.GetAgent(r.Context(), r.PathValue("id"))
	if err != nil {
		return nil, nil, err
	}
	mv, err := s.svc.GetMandate(r.Context(), a.ID)
	return mv, a, err
}

// mandatePreview validates the form as the API does (mandate.Decode) and
// shows the change against the current version; nothing is saved yet.
func (s *Server) mandatePreview(w http.ResponseWriter, r *http.Request, sess Session) error {
	mv, a, err := s.currentMandate(r)
	if err != nil {
		return err
	}
	body := mandateFromForm(r)
	m, err := mandate.Decode(body)
	if err != nil {
		var ve *mandate.ValidationError
		if !errors.As(err, &ve) {
			return err
		}
		byField := map[string]string{}
		var general []string
		for _, f := range ve.Fields {
			if f.Field == "" {
				general = append(general, f.Message)
			} else if byField[f.Field] == "" {
				byField[f.Field] = f.Message
			}
		}
		rows := make([]fieldRow, len(mandateFields))
		for i, f := range mandateFields {
			rows[i] = fieldRow{Field: f, Value: r.PostFormValue(f.Name), Error: byField[f.Name]}
		}
		s.render(w, http.StatusBadRequest, "mandate_edit", &view{Title: "Mandate of " + a.Name, Nav: "agents", Session: sess, Data: map[string]any{
			"Agent": a, "Rows": rows, "Base": r.PostFormValue("base_version"), "Errors": len(ve.Fields), "General": general}})
		return nil
	}
	canon, err := json.Marshal(m)
	if err != nil {
		return err
	}
	old, next := wireOf(mv.Mandate), wireOf(m)
	var changes []fieldRow
	for _, f := range mandateFields {
		o, n := formValue(old[f.Name]), formValue(next[f.Name])
		if o != n {
			changes = append(changes, fieldRow{Field: f, Old: display(f, o), Value: display(f, n)})
		}
	}
	s.render(w, http.StatusOK, "mandate_preview", &view{Title: "Review the new mandate", Nav: "agents", Session: sess, Data: map[string]any{
		"Agent": a, "Changes": changes, "Body": string(canon), "Base": r.PostFormValue("base_version"),
		"Version": mv.Version, "First": mv.Mandate == nil}})
	return nil
}

func (s *Server) mandateSave(w http.ResponseWriter, r *http.Request, sess Session) error {
	base, err := strconv.ParseInt(r.PostFormValue("base_version"), 10, 64)
	if err != nil {
		return spend.Errorf(spend.CodeInvalidRequest, "the form lacks the version it was made from; open the mandate again")
	}
	mv, err := s.svc.SetMandate(r.Context(), r.PathValue("id"), json.RawMessage(r.PostFormValue("mandate")), base)
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/agents/"+url.PathEscape(mv.AgentID)+"?done=mandate", http.StatusSeeOther)
	return nil
}
