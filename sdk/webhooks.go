package sdk

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/purserhq/purser/api"
)

// Webhook types (docs/webhooks.md).
type (
	Webhook              = api.Webhook
	CreatedWebhook       = api.CreatedWebhook
	CreateWebhookRequest = api.CreateWebhookRequest
	WebhookDelivery      = api.WebhookDelivery
	WebhookDeliveries    = api.WebhookDeliveries
	WebhookSigningKey    = api.WebhookSigningKey
)

// CreateWebhook registers a webhook endpoint. The answer's Secret (hmac
// signing) is shown this once: keep it.
func (o *Owner) CreateWebhook(ctx context.Context, req CreateWebhookRequest) (*CreatedWebhook, error) {
	var w CreatedWebhook
	if _, err := o.c.do(ctx, http.MethodPost, "/v1/webhooks", nil, req, authOwner, &w); err != nil {
		return nil, err
	}
	return &w, nil
}

// Webhooks lists the webhook endpoints, oldest first.
func (o *Owner) Webhooks(ctx context.Context) ([]Webhook, error) {
	var out api.Webhooks
	if _, err := o.c.do(ctx, http.MethodGet, "/v1/webhooks", nil, nil, authOwner, &out); err != nil {
		return nil, err
	}
	return out.Webhooks, nil
}

// Webhook fetches one endpoint.
func (o *Owner) Webhook(ctx context.Context, id string) (*Webhook, error) {
	return o.webhookCall(ctx, http.MethodGet, id, "", nil)
}

// DeleteWebhook removes an endpoint and returns it as it was.
func (o *Owner) DeleteWebhook(ctx context.Context, id string) (*Webhook, error) {
	return o.webhookCall(ctx, http.MethodDelete, id, "", nil)
}

// ResumeWebhook restarts a paused endpoint at the message it stopped at,
// or past it with skip.
func (o *Owner) ResumeWebhook(ctx context.Context, id string, skip bool) (*Webhook, error) {
	return o.webhookCall(ctx, http.MethodPost, id, "/resume", api.ResumeWebhookRequest{Skip: skip})
}

func (o *Owner) webhookCall(ctx context.Context, method, id, suffix string, in any) (*Webhook, error) {
	var w Webhook
	if _, err := o.c.do(ctx, method, "/v1/webhooks/"+escape(id)+suffix, nil, in, authOwner, &w); err != nil {
		return nil, err
	}
	return &w, nil
}

// TestWebhook sends a ping to an endpoint now and returns the attempt.
func (o *Owner) TestWebhook(ctx context.Context, id string) (*WebhookDelivery, error) {
	var d WebhookDelivery
	if _, err := o.c.do(ctx, http.MethodPost, "/v1/webhooks/"+escape(id)+"/test", nil, nil, authOwner, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// WebhookDeliveries returns an endpoint's attempts, newest first: up to
// limit (0: the server's default, 100) with ids below before (0: from the
// newest). NextBefore pages on.
func (o *Owner) WebhookDeliveries(ctx context.Context, id string, before int64, limit int) (*WebhookDeliveries, error) {
	q := url.Values{}
	if before > 0 {
		q.Set("before", strconv.FormatInt(before, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var d WebhookDeliveries
	if _, err := o.c.do(ctx, http.MethodGet, "/v1/webhooks/"+escape(id)+"/deliveries", q, nil, authOwner, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// WebhookSigningKey fetches the Ed25519 key that verifies v1a deliveries.
func (o *Owner) WebhookSigningKey(ctx context.Context) (*WebhookSigningKey, error) {
	var k WebhookSigningKey
	if _, err := o.c.do(ctx, http.MethodGet, "/v1/webhooks/signing-key", nil, nil, authOwner, &k); err != nil {
		return nil, err
	}
	return &k, nil
}
