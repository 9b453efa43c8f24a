package spend

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/purserhq/purser/internal/audit"
)

// An agent cannot make Purser store unbounded data (design invariant 12).
// Request sizes are bounded by the transport and by prepare; this file
// bounds rates and the audit trail's share of refusals:
//
//   - every agent request passes Admit before anything is written: a token
//     bucket per identity key (in memory, per process: a limit on what one
//     process writes, which is what it protects);
//   - requests refused because the agent is over that rate, frozen or
//     revoked are not stored one by one (no spend row, no audit event
//     each): they are counted per agent and minute and written as one
//     audit event, agent.refusals, with the count and the first and last
//     request (its signature, nonce and a digest of its body).
//
// Counts not yet written are lost if the process dies: they are refusals,
// which change no money, and the minute's event says how many it saw.

// CodeTooManyRequests is the error code of a request over the agent's
// request rate (HTTP 429).
const CodeTooManyRequests = "too_many_requests"

// RequestRate is the per-agent request limit of Admit: Burst requests at
// once, refilled at PerSecond. Zero PerSecond disables it.
type RequestRate struct {
	PerSecond float64
	Burst     int
}

type bucket struct {
	tokens float64
	last   time.Time
}

// refusalKey is one agent's minute.
type refusalKey struct {
	agent  string // agent id, or the identity address when the agent is not known
	minute int64  // Unix minute
}

type refusalAgg struct {
	actor       audit.Actor
	count       int64
	reasons     map[string]int64
	first, last requestRef
}

// requestRef identifies a refused request without storing its body.
type requestRef struct {
	Signer     string `json:"signer"`
	Nonce      string `json:"nonce"`
	Signature  string `json:"signature"`
	BodySHA256 string `json:"body_sha256"`
	At         int64  `json:"at"`
}

type gate struct {
	mu       sync.Mutex
	buckets  map[string]*bucket
	refusals map[refusalKey]*refusalAgg
}

// maxBuckets bounds the limiter's memory: past it, full (idle) buckets are
// dropped, which forgets nothing that limits anyone.
const maxBuckets = 100_000

// SetRequestRate changes the per-agent request rate (tests, and a
// server's reconfiguration); buckets refill at the new rate.
func (s *Service) SetRequestRate(r RequestRate) {
	s.gate.mu.Lock()
	s.cfg.RequestRate = r
	s.gate.mu.Unlock()
}

// Admit checks the caller's request rate before anything is written. A
// request over the rate is refused (rate_limited) and counted in the
// agent's aggregated refusal event.
func (s *Service) Admit(c Caller) error {
	g := &s.gate
	g.mu.Lock()
	r := s.cfg.RequestRate
	if r.PerSecond <= 0 {
		g.mu.Unlock()
		return nil
	}
	now := s.clock.Now()
	if g.buckets == nil {
		g.buckets = map[string]*bucket{}
	}
	b := g.buckets[c.Address]
	if b == nil {
		if len(g.buckets) >= maxBuckets {
			for k, o := range g.buckets {
				if o.tokens+now.Sub(o.last).Seconds()*r.PerSecond >= float64(r.Burst) {
					delete(g.buckets, k)
				}
			}
		}
		b = &bucket{tokens: float64(r.Burst), last: now}
		g.buckets[c.Address] = b
	}
	b.tokens = min(float64(r.Burst), b.tokens+now.Sub(b.last).Seconds()*r.PerSecond)
	b.last = now
	ok := b.tokens >= 1
	if ok {
		b.tokens--
	}
	g.mu.Unlock()
	if ok {
		return nil
	}
	s.countRefusal(audit.Actor{Type: "agent", ID: c.Address}, c, CodeTooManyRequests, now)
	return Errorf(CodeTooManyRequests, "too many requests from this agent: at most %g per second (burst %d); retry later", r.PerSecond, r.Burst).
		WithDetails(map[string]any{"retry_after_seconds": 1})
}

// countRefusal adds one refused request to its agent's minute.
func (s *Service) countRefusal(actor audit.Actor, c Caller, reason string, now time.Time) {
	sum := sha256.Sum256(c.Body)
	ref := requestRef{Signer: c.Address, Nonce: c.Nonce, Signature: c.Signature, BodySHA256: hex.EncodeToString(sum[:]), At: now.Unix()}
	k := refusalKey{agent: actor.ID, minute: now.Unix() / 60}
	g := &s.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.refusals == nil {
		g.refusals = map[refusalKey]*refusalAgg{}
	}
	a := g.refusals[k]
	if a == nil {
		a = &refusalAgg{actor: actor, reasons: map[string]int64{}, first: ref}
		g.refusals[k] = a
	}
	a.count++
	a.reasons[reason]++
	a.last = ref
}

// FlushRefusals writes one agent.refusals audit event per agent and
// minute counted so far; with all false only minutes that are over. The
// server calls it every few seconds and at shutdown.
func (s *Service) FlushRefusals(ctx context.Context, all bool) error {
	cur := s.clock.Now().Unix() / 60
	g := &s.gate
	g.mu.Lock()
	var keys []refusalKey
	for k := range g.refusals {
		if all || k.minute < cur {
			keys = append(keys, k)
		}
	}
	batch := make([]*refusalAgg, len(keys))
	for i, k := range keys {
		batch[i] = g.refusals[k]
		delete(g.refusals, k)
	}
	g.mu.Unlock()
	if len(keys) == 0 {
		return nil
	}
	sort.Slice(keys, func(i, j int) bool { // a stable order in the chain
		if keys[i].minute != keys[j].minute {
			return keys[i].minute < keys[j].minute
		}
		return keys[i].agent < keys[j].agent
	})
	err := s.inTx(ctx, func(tx Tx) error {
		now := s.now()
		for i, k := range keys {
			a := batch[i]
			details := map[string]any{"agent": k.agent, "minute": time.Unix(k.minute*60, 0).UTC().Format(time.RFC3339),
				"count": a.count, "reasons": a.reasons, "first_request": a.first, "last_request": a.last}
			if err := appendAudit(ctx, tx, now, a.actor, "agent.refusals", "agent:"+k.agent, details); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// Put them back: counted again at the next flush.
		g.mu.Lock()
		for i, k := range keys {
			if o := g.refusals[k]; o != nil {
				o.count += batch[i].count
				for r, n := range batch[i].reasons {
					o.reasons[r] += n
				}
				o.first = batch[i].first
			} else {
				g.refusals[k] = batch[i]
			}
		}
		g.mu.Unlock()
		return errors.Join(errors.New("spend: flush refusals"), err)
	}
	return nil
}
