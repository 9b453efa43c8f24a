package facilitator

import (
	"encoding/hex"
	"strings"
	"sync"
	"time"
)

// key names the authorization on chain: the token's authorizationState
// is per (chain, token, authorizer, nonce). Requirements do not enter
// it: one authorization is one payment, whatever it is presented with.
func (c *checked) key() string {
	return c.chainID + "/" + strings.ToLower(c.token.Hex()) + "/" + strings.ToLower(c.auth.From.Hex()) + "/" + hex.EncodeToString(c.auth.Nonce[:])
}

// claims holds the authorizations being settled (until zero) and those
// spent (until when they may be forgotten). It never holds an answer to
// share: a claimed authorization only ever makes another settle fail.
type claims struct {
	mu        sync.Mutex
	m         map[string]time.Time
	nextSweep time.Time
}

func newClaims() *claims { return &claims{m: map[string]time.Time{}} }

// sweepEvery spaces the sweeps of forgotten entries.
const sweepEvery = time.Minute

func (c *claims) live(until, now time.Time) bool { return until.IsZero() || now.Before(until) }

// take claims key for one settlement; false if it is in flight or spent.
func (c *claims) take(key string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.After(c.nextSweep) {
		for k, until := range c.m {
			if !c.live(until, now) {
				delete(c.m, k)
			}
		}
		c.nextSweep = now.Add(sweepEvery)
	}
	if until, ok := c.m[key]; ok && c.live(until, now) {
		return false
	}
	c.m[key] = time.Time{}
	return true
}

// held reports whether key is in flight or spent.
func (c *claims) held(key string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	until, ok := c.m[key]
	return ok && c.live(until, now)
}

// keep marks a claimed key spent until the given time.
func (c *claims) keep(key string, until time.Time) {
	c.mu.Lock()
	c.m[key] = until
	c.mu.Unlock()
}

// drop releases a claim whose settlement sent nothing that could spend it.
func (c *claims) drop(key string) {
	c.mu.Lock()
	delete(c.m, key)
	c.mu.Unlock()
}
