package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/purserhq/purser/internal/egress"
	"github.com/purserhq/purser/internal/spend"
)

// Error codes of the webhook API (internal/spend/codes.go).
const (
	CodeWebhookNotFound      = "webhook_not_found"
	CodeWebhookTargetPrivate = "webhook_target_private"
)

// MaxEndpoints bounds the endpoints of a deployment.
const MaxEndpoints = 50

// Endpoint is an endpoint as the owner sees it: never its secret.
type Endpoint struct {
	ID           string
	URL          string
	Events       []string
	Signing      string
	AllowPrivate bool
	Status       string
	Cursor       int64
	NextAt       time.Time
	LastError    string
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

func view(w *spend.WebhookEndpoint) Endpoint {
	ev := w.Events
	if ev == nil {
		ev = []string{}
	}
	return Endpoint{ID: w.ID, URL: w.URL, Events: ev, Signing: w.Signing, AllowPrivate: w.AllowPrivate, Status: w.Status,
		Cursor: w.Cursor, NextAt: w.NextAt, LastError: w.LastError, CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt}
}

// CreateParams is what an owner registers.
type CreateParams struct {
	URL          string
	Events       []string // empty: every type
	Signing      string   // "" or "hmac"; "ed25519"
	AllowPrivate bool
}

// Created is a new endpoint with its secret, shown this once.
type Created struct {
	Endpoint
	Secret    string // whsec_… for hmac; "" for ed25519
	PublicKey string // whpk_… for ed25519
}

// Create registers an endpoint. It receives the events committed after
// it. Its HMAC secret is returned here and never again.
func (w *Webhooks) Create(ctx context.Context, p CreateParams) (*Created, error) {
	u, err := checkURL(p.URL)
	if err != nil {
		return nil, err
	}
	events := slices.Clone(p.Events)
	for _, e := range events {
		if !slices.Contains(Types, e) {
			return nil, spend.Errorf(spend.CodeInvalidRequest, "unknown event type %q; use %s", e, strings.Join(Types, ", ")).
				WithDetails(map[string]any{"field": "events"})
		}
	}
	slices.Sort(events)
	events = slices.Compact(events)
	switch p.Signing {
	case "":
		p.Signing = SigningHMAC
	case SigningHMAC, SigningEd25519:
	default:
		return nil, spend.Errorf(spend.CodeInvalidRequest, "signing must be hmac or ed25519").WithDetails(map[string]any{"field": "signing"})
	}
	if !p.AllowPrivate {
		if err := checkTarget(ctx, u); err != nil {
			return nil, err
		}
	}
	head, err := w.svc.AuditHeadSeq(ctx)
	if err != nil {
		return nil, err
	}
	now := w.now()
	ep := &spend.WebhookEndpoint{ID: spend.NewWebhookID(), URL: u.String(), Events: events, Signing: p.Signing,
		AllowPrivate: p.AllowPrivate, Status: spend.WebhookActive, Cursor: head, CreatedAt: now, UpdatedAt: now, Secret: []byte{}}
	out := &Created{}
	if p.Signing == SigningHMAC {
		raw, shown, err := NewSecret()
		if err != nil {
			return nil, err
		}
		if ep.Secret, err = w.seal.seal(ep.ID, raw); err != nil {
			return nil, err
		}
		out.Secret = shown
	} else {
		out.PublicKey = FormatPublicKey(w.PublicKey())
	}
	err = w.svc.InOwnerTx(ctx, "webhook.create", "webhook:"+ep.ID, func(tx spend.Tx) (any, error) {
		all, err := tx.WebhookList(ctx)
		if err != nil {
			return nil, err
		}
		if len(all) >= MaxEndpoints {
			return nil, spend.Errorf(spend.CodeInvalidState, "a deployment has at most %d webhook endpoints", MaxEndpoints)
		}
		if err := tx.WebhookCreate(ctx, ep); err != nil {
			return nil, err
		}
		// Never the secret: the audit trail is exported and shown.
		return map[string]any{"webhook_id": ep.ID, "url": ep.URL, "events": view(ep).Events, "signing": ep.Signing,
			"allow_private": ep.AllowPrivate, "after_seq": ep.Cursor}, nil
	})
	if err != nil {
		return nil, err
	}
	out.Endpoint = view(ep)
	return out, nil
}

// checkURL accepts an absolute http(s) URL without credentials or
// fragment.
func checkURL(raw string) (*url.URL, error) {
	bad := func(why string) error {
		return spend.Errorf(spend.CodeInvalidRequest, "url: %s", why).WithDetails(map[string]any{"field": "url"})
	}
	if raw == "" || len(raw) > 2048 {
		return nil, bad("give an http or https URL of at most 2048 bytes")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, bad("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, bad("the scheme must be http or https")
	}
	if u.Hostname() == "" || u.Opaque != "" {
		return nil, bad("the URL names no host")
	}
	if u.User != nil {
		return nil, bad("credentials in the URL are refused: deliveries are signed instead")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return nil, bad("a fragment is never sent; remove it")
	}
	return u, nil
}

// checkTarget refuses, at registration, a host that is or resolves to an
// address a webhook may not reach. Delivery checks again at every
// connection (a name can resolve differently later).
func checkTarget(ctx context.Context, u *url.URL) error {
	host := u.Hostname()
	refuse := func(addr netip.Addr) error {
		return spend.Errorf(CodeWebhookTargetPrivate, "%s is %s, not a public address; set allow_private to deliver there", host, addr).
			WithDetails(map[string]any{"address": addr.String()})
	}
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		if !egress.Public(a) {
			return refuse(a)
		}
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(rctx, "ip", host)
	if err != nil {
		return nil // not resolvable yet; every connection is checked
	}
	for _, a := range addrs {
		if !egress.Public(a) {
			return refuse(a)
		}
	}
	return nil
}

func notFound(id string) error {
	return spend.Errorf(CodeWebhookNotFound, "no webhook endpoint %s", id)
}

func (w *Webhooks) get(ctx context.Context, tx spend.Tx, id string) (*spend.WebhookEndpoint, error) {
	ep, err := tx.WebhookGet(ctx, id)
	if errors.Is(err, spend.ErrNotFound) {
		return nil, notFound(id)
	}
	return ep, err
}

// List returns every endpoint, oldest first.
func (w *Webhooks) List(ctx context.Context) ([]Endpoint, error) {
	var out []Endpoint
	err := w.svc.ReadTx(ctx, func(tx spend.Tx) error {
		eps, err := tx.WebhookList(ctx)
		if err != nil {
			return err
		}
		out = make([]Endpoint, len(eps))
		for i, e := range eps {
			out[i] = view(e)
		}
		return nil
	})
	return out, err
}

// Get returns one endpoint.
func (w *Webhooks) Get(ctx context.Context, id string) (*Endpoint, error) {
	var out Endpoint
	err := w.svc.ReadTx(ctx, func(tx spend.Tx) error {
		ep, err := w.get(ctx, tx, id)
		if err != nil {
			return err
		}
		out = view(ep)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// Delete removes an endpoint, its messages and its delivery log, and
// returns it as it was.
func (w *Webhooks) Delete(ctx context.Context, id string) (*Endpoint, error) {
	var out Endpoint
	err := w.svc.InOwnerTx(ctx, "webhook.delete", "webhook:"+id, func(tx spend.Tx) (any, error) {
		ep, err := w.get(ctx, tx, id)
		if err != nil {
			return nil, err
		}
		if err := tx.WebhookDelete(ctx, id); err != nil {
			return nil, err
		}
		out = view(ep)
		return map[string]any{"webhook_id": id, "url": ep.URL, "cursor": ep.Cursor}, nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// Resume restarts a paused endpoint at the message it stopped at (the
// same webhook-id and body), or past it with skip.
func (w *Webhooks) Resume(ctx context.Context, id string, skip bool) (*Endpoint, error) {
	var out Endpoint
	err := w.svc.InOwnerTx(ctx, "webhook.resume", "webhook:"+id, func(tx spend.Tx) (any, error) {
		ep, err := w.get(ctx, tx, id)
		if err != nil {
			return nil, err
		}
		d := map[string]any{"webhook_id": id, "from": ep.Status}
		if skip {
			m, err := tx.WebhookMessageHead(ctx, id)
			switch {
			case err == nil:
				m.Status, m.UpdatedAt = spend.MessageSkipped, w.now()
				if err := tx.WebhookMessageUpdate(ctx, m); err != nil {
					return nil, err
				}
				d["skipped_message_id"], d["skipped_seq"] = m.ID, m.Seq
			case !errors.Is(err, spend.ErrNotFound):
				return nil, err
			}
		}
		ep.Status, ep.NextAt, ep.LastError, ep.UpdatedAt = spend.WebhookActive, time.Time{}, "", w.now()
		if err := tx.WebhookUpdate(ctx, ep); err != nil {
			return nil, err
		}
		out = view(ep)
		return d, nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// Attempt is one delivery attempt as the owner sees it.
type Attempt = spend.WebhookAttempt

// Attempts returns an endpoint's attempts, newest first, before the
// attempt id before (0: the newest), up to limit (1 to 500; default 100).
func (w *Webhooks) Attempts(ctx context.Context, id string, before int64, limit int) ([]*Attempt, error) {
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 500)
	var out []*Attempt
	err := w.svc.ReadTx(ctx, func(tx spend.Tx) error {
		if _, err := w.get(ctx, tx, id); err != nil {
			return err
		}
		var err error
		out, err = tx.WebhookAttemptList(ctx, id, before, limit)
		return err
	})
	return out, err
}

// Ping sends a ping event to an endpoint now, outside its queue, and
// records the attempt.
func (w *Webhooks) Ping(ctx context.Context, id string) (*Attempt, error) {
	var ep *spend.WebhookEndpoint
	if err := w.svc.ReadTx(ctx, func(tx spend.Tx) (err error) {
		ep, err = w.get(ctx, tx, id)
		return err
	}); err != nil {
		return nil, err
	}
	secret, err := w.seal.open(ep.ID, ep.Secret)
	if err != nil {
		return nil, err
	}
	now := w.now()
	msgID := fmt.Sprintf("msg_%s_ping_%d", strings.TrimPrefix(ep.ID, "whk_"), now.UnixMicro())
	body, err := marshalPayload(Payload{Type: TypePing, Timestamp: now, Data: map[string]any{"webhook_id": ep.ID,
		"portal_url": w.mapper.link("webhooks", ep.ID)}})
	if err != nil {
		return nil, err
	}
	r := w.send(ctx, ep, secret, msgID, body)
	a := &Attempt{EndpointID: ep.ID, MessageID: msgID, Type: TypePing, Attempt: 1, At: r.at, Outcome: OutcomeDelivered,
		StatusCode: r.code, ResponseBody: r.body, Error: r.describe(), Duration: r.dur}
	if !r.ok() {
		a.Outcome = OutcomeFailed
	}
	err = w.svc.InTx(context.WithoutCancel(ctx), func(tx spend.Tx) error { return tx.WebhookAttemptAdd(ctx, a) })
	return a, err
}
