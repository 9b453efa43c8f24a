package portal

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/webhook"
)

// Webhooks is what the webhooks page needs of the webhook engine
// (internal/webhook implements it).
type Webhooks interface {
	List(ctx context.Context) ([]webhook.Endpoint, error)
	Get(ctx context.Context, id string) (*webhook.Endpoint, error)
	Create(ctx context.Context, p webhook.CreateParams) (*webhook.Created, error)
	Delete(ctx context.Context, id string) (*webhook.Endpoint, error)
	Attempts(ctx context.Context, id string, before int64, limit int) ([]*webhook.Attempt, error)
}

var _ Webhooks = (*webhook.Webhooks)(nil)

var webhookTypeTexts = map[string]string{
	webhook.TypeApprovalRequested: "Approval requested",
	webhook.TypeApprovalResolved:  "Approval decided",
	webhook.TypeAgentFrozen:       "Agent frozen",
	webhook.TypeAgentRevoked:      "Agent revoked",
	webhook.TypeBudgetThreshold:   "80 % of a budget used",
	webhook.TypePaymentFailed:     "Payment failed",
	webhook.TypePaymentUnknown:    "Payment outcome unknown",
	webhook.TypePing:              "Test ping",
}

type webhookType struct{ Name, Text string }

func webhookTypes() []webhookType {
	out := make([]webhookType, len(webhook.Types))
	for i, t := range webhook.Types {
		out[i] = webhookType{t, webhookTypeTexts[t]}
	}
	return out
}

func (s *Server) noWebhooks() error {
	return spend.Errorf("not_found", "webhooks are not configured on this server")
}

func (s *Server) webhooksPage(w http.ResponseWriter, r *http.Request, sess Session) error {
	return s.renderWebhooks(w, r, sess, http.StatusOK, nil, "", webhook.CreateParams{})
}

func (s *Server) renderWebhooks(w http.ResponseWriter, r *http.Request, sess Session, status int, created *webhook.Created, problem string, form webhook.CreateParams) error {
	if s.cfg.Webhooks == nil {
		return s.noWebhooks()
	}
	eps, err := s.cfg.Webhooks.List(r.Context())
	if err != nil {
		return err
	}
	var flash string
	if r.URL.Query().Get("done") == "deleted" {
		flash = "Webhook removed."
	}
	s.render(w, status, "webhooks", &view{Title: "Webhooks", Nav: "webhooks", Session: sess, Flash: flash, Data: map[string]any{
		"Endpoints": eps, "Types": webhookTypes(), "Created": created, "Problem": problem, "Form": form}})
	return nil
}

func (s *Server) webhookCreate(w http.ResponseWriter, r *http.Request, sess Session) error {
	if s.cfg.Webhooks == nil {
		return s.noWebhooks()
	}
	if err := r.ParseForm(); err != nil {
		return spend.Errorf(spend.CodeInvalidRequest, "the form could not be read")
	}
	p := webhook.CreateParams{URL: strings.TrimSpace(r.PostForm.Get("url")), Events: r.PostForm["events"],
		Signing: r.PostForm.Get("signing"), AllowPrivate: r.PostForm.Get("allow_private") != ""}
	c, err := s.cfg.Webhooks.Create(r.Context(), p)
	if err != nil {
		if spend.CodeOf(err) == "" {
			return err
		}
		return s.renderWebhooks(w, r, sess, http.StatusBadRequest, nil, messageOf(err), p)
	}
	return s.renderWebhooks(w, r, sess, http.StatusOK, c, "", webhook.CreateParams{})
}

func (s *Server) webhookPage(w http.ResponseWriter, r *http.Request, sess Session) error {
	if s.cfg.Webhooks == nil {
		return s.noWebhooks()
	}
	ep, err := s.cfg.Webhooks.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	attempts, err := s.cfg.Webhooks.Attempts(r.Context(), ep.ID, 0, 50)
	if err != nil {
		return err
	}
	s.render(w, http.StatusOK, "webhook", &view{Title: "Webhook", Nav: "webhooks", Session: sess, Data: map[string]any{
		"Endpoint": ep, "Attempts": attempts, "TypeText": webhookTypeTexts}})
	return nil
}

func (s *Server) webhookDelete(w http.ResponseWriter, r *http.Request, sess Session) error {
	if s.cfg.Webhooks == nil {
		return s.noWebhooks()
	}
	if _, err := s.cfg.Webhooks.Delete(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	http.Redirect(w, r, "/webhooks?"+url.Values{"done": {"deleted"}}.Encode(), http.StatusSeeOther)
	return nil
}
