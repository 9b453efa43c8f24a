package webhook

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/big"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/purserhq/purser/internal/egress"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/spend"
)

// RetryPolicy is how failed deliveries back off.
type RetryPolicy struct {
	// First is the wait after the first failure (default 5 s); each
	// further failure doubles it, up to Max (default 1 h), less up to
	// Jitter of it (default 0.2) at random.
	First, Max time.Duration
	Jitter     float64
	// GiveUp is how long after a message's first attempt a failing
	// endpoint is paused at it (default 26 h, so retries span more than
	// a day).
	GiveUp time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.First <= 0 {
		p.First = 5 * time.Second
	}
	if p.Max <= 0 {
		p.Max = time.Hour
	}
	if p.Jitter < 0 || p.Jitter >= 1 {
		p.Jitter = 0
	} else if p.Jitter == 0 {
		p.Jitter = 0.2
	}
	if p.GiveUp <= 0 {
		p.GiveUp = 26 * time.Hour
	}
	return p
}

// Backoff is the wait after the n-th failed attempt (n ≥ 1).
func (p RetryPolicy) Backoff(n int) time.Duration {
	d := p.Max
	if n < 40 {
		d = min(p.First*time.Duration(1<<(max(n, 1)-1)), p.Max)
	}
	if p.Jitter > 0 {
		j, err := rand.Int(rand.Reader, big.NewInt(math.MaxInt32))
		if err == nil {
			d -= time.Duration(float64(d) * p.Jitter * float64(j.Int64()) / math.MaxInt32)
		}
	}
	return d
}

// Config wires the webhook engine.
type Config struct {
	Service *spend.Service
	Assets  *money.Registry
	// PublicURL is where owners reach this Purser (serve --public-url):
	// payloads link to <PublicURL>/approvals/<spend id>.
	PublicURL string
	// SecretKey (32 bytes) encrypts the endpoints' HMAC secrets at rest.
	SecretKey []byte
	// SigningKey signs v1a (Ed25519) deliveries.
	SigningKey ed25519.PrivateKey
	Retry      RetryPolicy
	Clock      spend.Clock
	Logger     *slog.Logger
	// Timeout bounds one delivery attempt (default 15 s).
	Timeout time.Duration
	// Poll is how often the dispatcher looks for work (default 1 s).
	Poll time.Duration
	// LeaseTTL is how long a dispatcher's lease lasts unrenewed (default
	// 60 s): another node takes over that long after one crashes.
	LeaseTTL time.Duration
	// Concurrency bounds the endpoints delivered to at once (default 8).
	Concurrency int
	// OnAttempt, if set, is told the outcome of every attempt of a
	// queued message (delivered, failed, paused), for metrics.
	OnAttempt func(outcome string)
	// Retention is how long delivered and skipped messages and every
	// attempt are kept (default 30 days); a pending message is kept
	// until it is delivered.
	Retention time.Duration
}

// Webhooks is the engine: endpoint administration, the dispatcher and
// single deliveries (ping).
type Webhooks struct {
	cfg    Config
	svc    *spend.Service
	seal   *sealer
	signer Signer
	mapper mapper
	log    *slog.Logger
	clock  spend.Clock
	holder string
	// Pass's own state (its calls do not overlap):
	pruned time.Time // when it last pruned
	idleAt int64     // the audit head every endpoint had caught up with; 0: unknown
	// clients by allow_private: each checks the addresses it dials.
	public, private *http.Client
}

// New checks cfg and builds the engine.
func New(cfg Config) (*Webhooks, error) {
	var errs []error
	if cfg.Service == nil {
		errs = append(errs, errors.New("webhook: Config.Service is required"))
	}
	if cfg.Assets == nil {
		errs = append(errs, errors.New("webhook: Config.Assets is required"))
	}
	if len(cfg.SigningKey) != ed25519.PrivateKeySize {
		errs = append(errs, errors.New("webhook: Config.SigningKey must be an Ed25519 private key"))
	}
	if cfg.PublicURL == "" {
		errs = append(errs, errors.New("webhook: Config.PublicURL is required"))
	}
	seal, err := newSealer(cfg.SecretKey)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	cfg.Retry = cfg.Retry.withDefaults()
	if cfg.Clock == nil {
		cfg.Clock = spend.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = time.Minute
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 30 * 24 * time.Hour
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	return &Webhooks{
		cfg: cfg, svc: cfg.Service, seal: seal, signer: Signer{Key: cfg.SigningKey},
		mapper: mapper{svc: cfg.Service, assets: cfg.Assets, publicURL: cfg.PublicURL},
		log:    cfg.Logger, clock: cfg.Clock, holder: hex.EncodeToString(id[:]),
		public: newClient(false, cfg.Timeout), private: newClient(true, cfg.Timeout),
	}, nil
}

func newClient(allowPrivate bool, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:                 nil, // a proxy would connect for us, past the address check
			DialContext:           webhookDialer(allowPrivate).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: timeout,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       30 * time.Second,
		},
		// A redirect is a failed delivery (Standard Webhooks): following it
		// could lead anywhere, a private address included.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// PublicKey is the key that verifies v1a signatures.
func (w *Webhooks) PublicKey() ed25519.PublicKey {
	return w.cfg.SigningKey.Public().(ed25519.PublicKey)
}

func (w *Webhooks) now() time.Time { return w.clock.Now().UTC().Truncate(time.Microsecond) }

// Run dispatches until ctx ends, then gives up its lease so that another
// node (or this one, restarted) takes over at once.
func (w *Webhooks) Run(ctx context.Context) {
	t := time.NewTicker(w.cfg.Poll)
	defer t.Stop()
	for {
		if _, err := w.Pass(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn("webhook dispatch failed", "err", err)
		}
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			w.release(rctx)
			cancel()
			return
		case <-t.C:
		}
	}
}

func (w *Webhooks) release(ctx context.Context) {
	err := w.svc.InTx(ctx, func(tx spend.Tx) error {
		_, err := tx.WebhookLease(ctx, w.holder, 0)
		return err
	})
	if err != nil {
		w.log.Warn("webhook lease not released", "err", err)
	}
}

// Pass delivers what is due, if this dispatcher holds the deployment's
// lease, and returns how many messages were delivered. Calls of one
// Webhooks must not overlap (Run makes them one after another).
func (w *Webhooks) Pass(ctx context.Context) (int, error) {
	var all []*spend.WebhookEndpoint
	if err := w.svc.ReadTx(ctx, func(tx spend.Tx) (err error) {
		all, err = tx.WebhookList(ctx)
		return err
	}); err != nil {
		return 0, err
	}
	head, err := w.svc.AuditHeadSeq(ctx)
	if err != nil {
		return 0, err
	}
	now := w.now()
	var eps []*spend.WebhookEndpoint
	retrying := false
	for _, ep := range all {
		if ep.Status == spend.WebhookActive && !ep.NextAt.After(now) {
			eps = append(eps, ep)
			retrying = retrying || !ep.NextAt.IsZero()
		}
	}
	// Nothing due: no endpoint, or every one caught up at this head (a
	// new endpoint or a resume is an audit event, so it moves the head)
	// and none waiting for a retry. No lease is taken, nothing written.
	if len(eps) == 0 || head == w.idleAt && !retrying {
		return 0, nil
	}
	var leader bool
	err = w.svc.InTx(ctx, func(tx spend.Tx) (err error) {
		leader, err = tx.WebhookLease(ctx, w.holder, w.cfg.LeaseTTL)
		return err
	})
	if err != nil || !leader {
		return 0, err
	}
	if now.Sub(w.pruned) >= time.Hour {
		if err := w.prune(ctx, now); err != nil {
			w.log.Warn("webhook log not pruned", "err", err)
		}
	}
	// The lease must outlast the pass: no new attempt starts once the
	// one in flight could end after the lease does.
	deadline := time.Now().Add(max(w.cfg.LeaseTTL-2*w.cfg.Timeout, w.cfg.LeaseTTL/4))
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		delivered int
		busy      bool // an endpoint was left with work
		errs      []error
		sem       = make(chan struct{}, w.cfg.Concurrency)
	)
	for _, ep := range eps {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			n, drained, err := w.deliver(ctx, ep, deadline)
			mu.Lock()
			delivered += n
			busy = busy || !drained || err != nil
			if err != nil {
				errs = append(errs, fmt.Errorf("webhook %s: %w", ep.ID, err))
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if w.idleAt = 0; !busy {
		w.idleAt = head // every endpoint has every event up to head
	}
	return delivered, errors.Join(errs...)
}

// prune drops what Retention no longer keeps.
func (w *Webhooks) prune(ctx context.Context, now time.Time) error {
	err := w.svc.InTx(ctx, func(tx spend.Tx) error {
		_, err := tx.WebhookPrune(ctx, now.Add(-w.cfg.Retention))
		return err
	})
	if err == nil {
		w.pruned = now
	}
	return err
}

// deliver sends ep's messages in order until one fails, none is left
// (drained) or the pass is over.
func (w *Webhooks) deliver(ctx context.Context, ep *spend.WebhookEndpoint, deadline time.Time) (n int, drained bool, err error) {
	secret, err := w.seal.open(ep.ID, ep.Secret)
	if err != nil {
		return 0, false, err
	}
	for time.Now().Before(deadline) {
		m, err := w.head(ctx, ep)
		if errors.Is(err, errMore) {
			return n, false, nil // more events to read: the next pass goes on
		}
		if err != nil || m == nil {
			return n, err == nil, err
		}
		res := w.send(ctx, ep, secret, m.ID, m.Body)
		// An attempt cut short by a shutdown is recorded as failed too: the
		// receiver may have seen it, and the log shows every request.
		ok, err := w.record(ctx, ep, m, res)
		if err != nil || !ok || ctx.Err() != nil {
			return n, false, err
		}
		n++
	}
	return n, false, nil
}

// Outcomes of an attempt.
const (
	OutcomeDelivered = "delivered"
	OutcomeFailed    = "failed" // retried later
	OutcomePaused    = "paused" // the endpoint waits for its owner
)

// result is what one HTTP attempt returned.
type result struct {
	at         time.Time
	ts         int64
	code       int
	body       string
	err        error
	dur        time.Duration
	retryAfter time.Duration
}

// permanent reports an answer that retrying will not change: a 4xx other
// than 408 and 429 (410 Gone included), or a target on a refused address.
// A redirect (3xx) is a failure like a 5xx: it is retried, never
// followed.
func (r result) permanent() bool {
	if errors.Is(r.err, egress.ErrPrivateAddress) {
		return true
	}
	return r.code >= 400 && r.code < 500 && r.code != http.StatusRequestTimeout && r.code != http.StatusTooManyRequests
}

func (r result) ok() bool { return r.err == nil && r.code >= 200 && r.code < 300 }

func (r result) describe() string {
	switch {
	case r.err != nil:
		return r.err.Error()
	case r.ok():
		return ""
	default:
		return fmt.Sprintf("HTTP %d", r.code)
	}
}

// record writes an attempt and its consequence in one transaction:
// delivered (the next message may go), failed (back off), or paused.
func (w *Webhooks) record(ctx context.Context, ep *spend.WebhookEndpoint, m *spend.WebhookMessage, r result) (bool, error) {
	ctx = context.WithoutCancel(ctx)
	m.Attempts++
	if m.FirstAt.IsZero() {
		m.FirstAt = r.at
	}
	m.UpdatedAt = r.at
	outcome := OutcomeDelivered
	var next time.Time
	switch {
	case r.ok():
		m.Status = spend.MessageDelivered
	case r.permanent() || r.at.Sub(m.FirstAt) >= w.cfg.Retry.GiveUp:
		outcome = OutcomePaused
	default:
		outcome = OutcomeFailed
		wait := w.cfg.Retry.Backoff(m.Attempts)
		if r.retryAfter > wait {
			wait = min(r.retryAfter, w.cfg.Retry.Max)
		}
		next = r.at.Add(wait)
	}
	errText := r.describe()
	if outcome == OutcomePaused {
		switch {
		case errors.Is(r.err, egress.ErrPrivateAddress):
			errText = "paused: " + errText + " (register the endpoint with allow_private if this target is meant)"
		case r.permanent():
			errText = "paused: " + errText + " (a 4xx other than 408 and 429 is not retried; fix the receiver, then resume)"
		default:
			errText = fmt.Sprintf("paused: %s; retried for %s since the first attempt", errText, w.cfg.Retry.GiveUp)
		}
	}
	err := w.svc.InTx(ctx, func(tx spend.Tx) error {
		cur, err := tx.WebhookGet(ctx, ep.ID)
		if err != nil {
			return err
		}
		if err := tx.WebhookAttemptAdd(ctx, &spend.WebhookAttempt{EndpointID: ep.ID, Seq: m.Seq, MessageID: m.ID, Type: m.Type,
			Attempt: m.Attempts, At: r.at, Outcome: outcome, StatusCode: r.code, ResponseBody: r.body, Error: errText, Duration: r.dur}); err != nil {
			return err
		}
		if err := tx.WebhookMessageUpdate(ctx, m); err != nil {
			return err
		}
		cur.NextAt, cur.LastError, cur.UpdatedAt = next, errText, r.at
		if outcome == OutcomePaused {
			cur.Status = spend.WebhookPaused
		}
		return tx.WebhookUpdate(ctx, cur)
	})
	if errors.Is(err, spend.ErrNotFound) {
		return false, nil // deleted meanwhile
	}
	if err != nil {
		return false, err
	}
	if w.cfg.OnAttempt != nil {
		w.cfg.OnAttempt(outcome)
	}
	if outcome != OutcomeDelivered {
		w.log.Info("webhook delivery failed", "webhook_id", ep.ID, "message_id", m.ID, "attempt", m.Attempts, "outcome", outcome, "status", r.code, "err", r.describe())
	}
	return outcome == OutcomeDelivered, nil
}

// head returns ep's next message: the pending one, or one made from the
// next audit events the endpoint asked for (nil when there is none;
// errMore when it read a while and found none, but has not reached the
// end of the chain).
// Making messages and moving the cursor past their event is one commit,
// so an event becomes messages once.
func (w *Webhooks) head(ctx context.Context, ep *spend.WebhookEndpoint) (*spend.WebhookMessage, error) {
	for page := 0; page < 20; page++ {
		var m *spend.WebhookMessage
		err := w.svc.ReadTx(ctx, func(tx spend.Tx) error {
			var err error
			m, err = tx.WebhookMessageHead(ctx, ep.ID)
			return err
		})
		if err == nil {
			return m, nil
		}
		if !errors.Is(err, spend.ErrNotFound) {
			return nil, err
		}
		evs, err := w.svc.AuditEvents(ctx, ep.Cursor, 200)
		if err != nil || len(evs) == 0 {
			return nil, err
		}
		to := evs[len(evs)-1].Seq
		var msgs []*spend.WebhookMessage
		for _, e := range evs {
			mapped, err := w.mapper.Map(ctx, e)
			if err != nil {
				return nil, fmt.Errorf("audit event %d: %w", e.Seq, err)
			}
			now := w.now()
			for _, ev := range mapped {
				if len(ep.Events) > 0 && !slices.Contains(ep.Events, ev.Type) {
					continue
				}
				body, err := marshalPayload(Payload{Type: ev.Type, Timestamp: e.Time, Data: ev.Data})
				if err != nil {
					return nil, err
				}
				msgs = append(msgs, &spend.WebhookMessage{EndpointID: ep.ID, Seq: e.Seq, Part: len(msgs),
					ID: fmt.Sprintf("msg_%s_%d_%d", strings.TrimPrefix(ep.ID, "whk_"), e.Seq, len(msgs)), Type: ev.Type, Body: body,
					Status: spend.MessagePending, UpdatedAt: now})
			}
			if len(msgs) > 0 {
				to = e.Seq
				break
			}
		}
		from := ep.Cursor
		err = w.svc.InTx(ctx, func(tx spend.Tx) error {
			cur, err := tx.WebhookGet(ctx, ep.ID)
			if err != nil {
				return err
			}
			if cur.Cursor != from {
				return errMoved
			}
			for _, m := range msgs {
				if err := tx.WebhookMessageAdd(ctx, m); err != nil {
					return err
				}
			}
			cur.Cursor, cur.UpdatedAt = to, w.now()
			return tx.WebhookUpdate(ctx, cur)
		})
		if errors.Is(err, errMoved) || errors.Is(err, spend.ErrNotFound) {
			return nil, nil // another dispatcher, a resume or a delete moved it: next pass
		}
		if err != nil {
			return nil, err
		}
		ep.Cursor = to
		if len(msgs) > 0 {
			return msgs[0], nil
		}
	}
	return nil, errMore
}

var (
	errMoved = errors.New("webhook: the endpoint's cursor moved")
	errMore  = errors.New("webhook: more events to read")
)

// webhookDialer connects to public addresses only unless allowPrivate
// (the check and its ranges live in package egress); no keep-alive
// probes: deliveries are short.
func webhookDialer(allowPrivate bool) *net.Dialer {
	d := egress.Dialer(allowPrivate, 10*time.Second)
	d.KeepAlive = -1
	return d
}
