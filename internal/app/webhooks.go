package app

import (
	"context"
	"crypto/ed25519"
	"log/slog"

	"github.com/purserhq/purser/internal/keystore"
	"github.com/purserhq/purser/internal/metrics"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/webhook"
)

// newWebhooks builds the webhook engine: its keys derive from the master
// seed (one to seal endpoint secrets, one to sign v1a deliveries), so
// every node of a deployment signs alike and a restart keeps them.
func newWebhooks(cfg Config, public string, svc *spend.Service, assets *money.Registry, ks *keystore.Keystore, log *slog.Logger, reg *metrics.Registry) (*webhook.Webhooks, error) {
	attempts := reg.NewCounterVec("purser_webhook_attempts_total",
		"Webhook delivery attempts by outcome: delivered, failed (retried later), paused (the endpoint waits for its owner).", "outcome")
	return webhook.New(webhook.Config{
		Service: svc, Assets: assets, PublicURL: public, Logger: log,
		SecretKey:  ks.DeriveKey("webhook-secrets"),
		SigningKey: ed25519.NewKeyFromSeed(ks.DeriveKey("webhook-ed25519")),
		Retry:      cfg.WebhookRetry, Poll: cfg.WebhookPoll,
		OnAttempt: func(outcome string) { attempts.Inc(outcome) },
	})
}

// runWebhooks runs the dispatcher until ctx ends. Every node runs one;
// the store's lease lets one of them deliver at a time.
func (s *Server) runWebhooks(ctx context.Context, hooks *webhook.Webhooks) {
	s.bgWG.Add(1)
	go func() {
		defer s.bgWG.Done()
		hooks.Run(ctx)
	}()
}
