package httpapi

import (
	"net/http"
	"strconv"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/webhook"
)

func (s *Server) webhookRoutes() {
	s.handle("POST /v1/webhooks", s.owner(s.webhooks(s.createWebhook)))
	s.handle("GET /v1/webhooks", s.owner(s.webhooks(s.listWebhooks)))
	s.handle("GET /v1/webhooks/signing-key", s.owner(s.webhooks(s.webhookSigningKey)))
	s.handle("GET /v1/webhooks/{id}", s.owner(s.webhooks(s.getWebhook)))
	s.handle("DELETE /v1/webhooks/{id}", s.owner(s.webhooks(s.deleteWebhook)))
	s.handle("GET /v1/webhooks/{id}/deliveries", s.owner(s.webhooks(s.webhookDeliveries)))
	s.handle("POST /v1/webhooks/{id}/test", s.owner(s.webhooks(s.testWebhook)))
	s.handle("POST /v1/webhooks/{id}/resume", s.owner(s.webhooks(s.resumeWebhook)))
}

// webhooks answers not_found where no webhook engine is configured.
func (s *Server) webhooks(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if s.hooks == nil {
			return spend.Errorf("not_found", "webhooks are not configured on this server")
		}
		return h(w, r)
	}
}

func webhookView(e webhook.Endpoint) api.Webhook {
	v := api.Webhook{ID: e.ID, URL: e.URL, Events: e.Events, Signing: e.Signing, AllowPrivate: e.AllowPrivate,
		Status: e.Status, Cursor: e.Cursor, LastError: e.LastError, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt}
	if !e.NextAt.IsZero() {
		n := e.NextAt
		v.NextAttemptAt = &n
	}
	return v
}

func deliveryView(a *webhook.Attempt) api.WebhookDelivery {
	return api.WebhookDelivery{ID: a.ID, MessageID: a.MessageID, Seq: a.Seq, Type: a.Type, Attempt: a.Attempt,
		Outcome: a.Outcome, StatusCode: a.StatusCode, ResponseBody: a.ResponseBody, Error: a.Error,
		DurationMS: float64(a.Duration.Microseconds()) / 1000, At: a.At}
}

func (s *Server) createWebhook(w http.ResponseWriter, r *http.Request) error {
	var req api.CreateWebhookRequest
	if err := bindJSON(r, &req); err != nil {
		return err
	}
	c, err := s.hooks.Create(r.Context(), webhook.CreateParams{URL: req.URL, Events: req.Events, Signing: req.Signing, AllowPrivate: req.AllowPrivate})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, api.CreatedWebhook{Webhook: webhookView(c.Endpoint), Secret: c.Secret, PublicKey: c.PublicKey})
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request) error {
	eps, err := s.hooks.List(r.Context())
	if err != nil {
		return err
	}
	out := api.Webhooks{Webhooks: make([]api.Webhook, len(eps))}
	for i, e := range eps {
		out.Webhooks[i] = webhookView(e)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) getWebhook(w http.ResponseWriter, r *http.Request) error {
	e, err := s.hooks.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, webhookView(*e))
}

func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request) error {
	e, err := s.hooks.Delete(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, webhookView(*e))
}

func (s *Server) webhookDeliveries(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	num := func(name string) (int64, error) {
		v := q.Get(name)
		if v == "" {
			return 0, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, spend.Errorf(spend.CodeInvalidRequest, "%s must be a non-negative integer", name).WithDetails(map[string]any{"field": name})
		}
		return n, nil
	}
	before, err := num("before")
	if err != nil {
		return err
	}
	limit, err := num("limit")
	if err != nil {
		return err
	}
	as, err := s.hooks.Attempts(r.Context(), r.PathValue("id"), before, int(min(limit, 500)))
	if err != nil {
		return err
	}
	out := api.WebhookDeliveries{Deliveries: make([]api.WebhookDelivery, len(as))}
	for i, a := range as {
		out.Deliveries[i] = deliveryView(a)
	}
	if n := len(as); n > 0 && (limit == 0 && n == 100 || limit > 0 && n == int(min(limit, 500))) {
		out.NextBefore = as[n-1].ID
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) testWebhook(w http.ResponseWriter, r *http.Request) error {
	a, err := s.hooks.Ping(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, deliveryView(a))
}

func (s *Server) resumeWebhook(w http.ResponseWriter, r *http.Request) error {
	var req api.ResumeWebhookRequest
	if err := bindJSON(r, &req); err != nil {
		return err
	}
	e, err := s.hooks.Resume(r.Context(), r.PathValue("id"), req.Skip)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, webhookView(*e))
}

func (s *Server) webhookSigningKey(w http.ResponseWriter, _ *http.Request) error {
	return writeJSON(w, http.StatusOK, api.WebhookSigningKey{PublicKey: webhook.FormatPublicKey(s.hooks.PublicKey()), Algorithm: "ed25519"})
}
