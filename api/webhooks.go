package api

import "time"

// Webhook event types (docs/webhooks.md).
const (
	WebhookApprovalRequested = "approval.requested"
	WebhookApprovalResolved  = "approval.resolved"
	WebhookAgentFrozen       = "agent.frozen"
	WebhookAgentRevoked      = "agent.revoked"
	WebhookBudgetThreshold   = "budget.threshold"
	WebhookPaymentFailed     = "payment.failed"
	WebhookPaymentUnknown    = "payment.unknown"
	WebhookPing              = "ping"
)

// CreateWebhookRequest is the body of POST /v1/webhooks.
type CreateWebhookRequest struct {
	URL string `json:"url"`
	// Events are the event types to deliver; none: all of them.
	Events []string `json:"events,omitempty"`
	// Signing is "hmac" (default: v1, a secret for this endpoint) or
	// "ed25519" (v1a, the deployment's webhook key: receivers need no
	// secret).
	Signing string `json:"signing,omitempty"`
	// AllowPrivate lets deliveries reach private, loopback and
	// link-local addresses.
	AllowPrivate bool `json:"allow_private,omitempty"`
}

// Webhook is a webhook endpoint; its secret is never part of it.
type Webhook struct {
	ID           string   `json:"id"`
	URL          string   `json:"url"`
	Events       []string `json:"events"`
	Signing      string   `json:"signing"`
	AllowPrivate bool     `json:"allow_private"`
	// Status is "active" or "paused" (a refusing 4xx, or retries given
	// up: POST /v1/webhooks/{id}/resume).
	Status string `json:"status"`
	// Cursor is the last audit sequence number turned into messages.
	Cursor        int64      `json:"cursor"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
}

// CreatedWebhook is the answer of POST /v1/webhooks: the endpoint, and
// its secret (hmac) or the public key that verifies it (ed25519). The
// secret is shown here only.
type CreatedWebhook struct {
	Webhook
	Secret    string `json:"secret,omitempty"`
	PublicKey string `json:"public_key,omitempty"`
}

// Webhooks is the answer of GET /v1/webhooks.
type Webhooks struct {
	Webhooks []Webhook `json:"webhooks"`
}

// WebhookDelivery is one delivery attempt and the receiver's answer.
type WebhookDelivery struct {
	ID        int64  `json:"id"`
	MessageID string `json:"message_id"` // the webhook-id header
	Seq       int64  `json:"seq"`        // the audit event; 0 for a ping
	Type      string `json:"type"`
	Attempt   int    `json:"attempt"`
	// Outcome is "delivered", "failed" (retried later) or "paused".
	Outcome      string    `json:"outcome"`
	StatusCode   int       `json:"status_code"` // 0: no answer
	ResponseBody string    `json:"response_body"`
	Error        string    `json:"error,omitempty"`
	DurationMS   float64   `json:"duration_ms"`
	At           time.Time `json:"at"`
}

// WebhookDeliveries is the answer of GET /v1/webhooks/{id}/deliveries,
// newest first; NextBefore pages on (?before=).
type WebhookDeliveries struct {
	Deliveries []WebhookDelivery `json:"deliveries"`
	NextBefore int64             `json:"next_before,omitempty"`
}

// ResumeWebhookRequest is the body of POST /v1/webhooks/{id}/resume.
type ResumeWebhookRequest struct {
	// Skip passes over the message the endpoint stopped at.
	Skip bool `json:"skip,omitempty"`
}

// WebhookSigningKey is the answer of GET /v1/webhooks/signing-key: the
// Ed25519 key that verifies v1a signatures.
type WebhookSigningKey struct {
	PublicKey string `json:"public_key"` // whpk_<base64>
	Algorithm string `json:"algorithm"`  // "ed25519"
}
