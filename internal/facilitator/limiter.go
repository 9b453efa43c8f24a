package facilitator

import (
	"sync"
	"time"
)

// maxLimited bounds the keys a limiter tracks. A bucket that has refilled
// is the same as none, so sweeps drop those; if the table is still full,
// a new key is refused until some bucket refills (at most a second).
const maxLimited = 1 << 16

// limiter is a token bucket per key: rate tokens a second, bursts of rate.
type limiter struct {
	mu      sync.Mutex
	rate    float64
	now     func() time.Time
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(rate int, now func() time.Time) *limiter {
	return &limiter{rate: float64(rate), now: now, buckets: map[string]*bucket{}}
}

// allow takes a token for key; when none is left it says how long until
// one is.
func (l *limiter) allow(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxLimited {
			for k, o := range l.buckets {
				if l.level(o, now) >= l.rate {
					delete(l.buckets, k)
				}
			}
			if len(l.buckets) >= maxLimited {
				return false, time.Second
			}
		}
		b = &bucket{tokens: l.rate, at: now}
		l.buckets[key] = b
	}
	b.tokens, b.at = l.level(b, now), now
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	}
	b.tokens--
	return true, 0
}

// level is the bucket's tokens at now, refilled since its last use.
func (l *limiter) level(b *bucket, now time.Time) float64 {
	t := b.tokens
	if d := now.Sub(b.at); d > 0 {
		t += d.Seconds() * l.rate
	}
	return min(t, l.rate)
}
