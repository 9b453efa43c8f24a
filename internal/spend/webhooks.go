package spend

import (
	"context"
	"time"

	"github.com/purserhq/purser/internal/audit"
)

// Webhook endpoint statuses.
const (
	// WebhookActive: events are delivered.
	WebhookActive = "active"
	// WebhookPaused: delivery stopped at the endpoint's head message (a
	// refusing 4xx, or retries given up); nothing is skipped until the
	// owner resumes it.
	WebhookPaused = "paused"
)

// Webhook message statuses.
const (
	MessagePending   = "pending"   // the endpoint's head: being (re)tried
	MessageDelivered = "delivered" // a 2xx answered it
	MessageSkipped   = "skipped"   // an owner resumed the endpoint past it
)

// WebhookEndpoint is a URL an owner registered for webhook events.
// Cursor is the sequence number of the last audit event the dispatcher
// has turned into a message for it (or passed over): events are
// delivered strictly after it, in sequence order.
type WebhookEndpoint struct {
	ID           string
	URL          string
	Events       []string // event types; empty: all
	Signing      string   // "hmac" (v1, a per-endpoint secret) or "ed25519" (v1a, the deployment's key)
	Secret       []byte   // the HMAC secret, sealed by the webhook package; never shown again
	AllowPrivate bool     // deliver to private, loopback or link-local addresses
	Status       string
	Cursor       int64
	NextAt       time.Time // no attempt before this (backoff); zero: now
	LastError    string
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// WebhookMessage is one webhook event for one endpoint, frozen at its first
// attempt: every retry sends the same id and the same body.
type WebhookMessage struct {
	EndpointID string
	Seq        int64 // the audit event's sequence number
	Part       int   // which of the event's messages (an event may make several)
	ID         string
	Type       string
	Body       []byte
	Status     string
	Attempts   int
	FirstAt    time.Time // first attempt; retries give up a while after it
	UpdatedAt  time.Time
}

// WebhookAttempt is one delivery attempt and what the receiver answered.
type WebhookAttempt struct {
	ID           int64 // assigned by the store
	EndpointID   string
	Seq          int64 // 0 for a ping
	MessageID    string
	Type         string
	Attempt      int
	At           time.Time
	Outcome      string // "delivered", "retry", "paused", "refused"
	StatusCode   int    // 0: no answer
	ResponseBody string // capped
	Error        string
	Duration     time.Duration
}

// InOwnerTx runs fn in a transaction and appends one owner audit event,
// action on subject with details, to the same commit. Packages beside
// spend (webhooks) use it so that their owner actions are audited like
// the service's own.
func (s *Service) InOwnerTx(ctx context.Context, action, subject string, fn func(tx Tx) (details any, err error)) error {
	return s.inTx(ctx, func(tx Tx) error {
		d, err := fn(tx)
		if err != nil {
			return err
		}
		return appendAudit(ctx, tx, s.now(), OwnerActor, action, subject, d)
	})
}

// InTx runs fn in a store transaction with the service's deadline.
func (s *Service) InTx(ctx context.Context, fn func(tx Tx) error) error { return s.inTx(ctx, fn) }

// ReadTx runs fn against a read-only view with the service's deadline.
func (s *Service) ReadTx(ctx context.Context, fn func(tx Tx) error) error { return s.read(ctx, fn) }

// AuditEvents returns up to limit events after afterSeq, in order.
func (s *Service) AuditEvents(ctx context.Context, afterSeq int64, limit int) ([]*audit.Event, error) {
	return s.store.AuditEvents(ctx, afterSeq, limit)
}

// AuditHeadSeq returns the chain head's sequence number.
func (s *Service) AuditHeadSeq(ctx context.Context) (int64, error) {
	seq, _, err := s.store.AuditHead(ctx)
	return seq, err
}

// NewWebhookID returns a fresh endpoint id.
func NewWebhookID() string { return newID("whk") }
