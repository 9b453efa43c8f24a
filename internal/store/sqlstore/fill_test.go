package sqlstore

import (
	"testing"
	"time"
)

func queued(s *Store, n int) {
	for range n {
		s.queue <- &request{}
	}
}

// TestFillLingersOnlyWhenACallerIsDue: a small batch waits (once) for more
// callers only when the recent arrival rate says one is due within the
// linger; a quiet store, a full batch and a zero linger never wait.
func TestFillLingersOnlyWhenACallerIsDue(t *testing.T) {
	t.Parallel()
	const linger = 200 * time.Millisecond // long, so a slow CI machine still delivers the late callers within it
	newStore := func(l time.Duration) *Store {
		return &Store{queue: make(chan *request, 256), d: Dialect{MaxBatch: 128, Linger: l}}
	}
	busy := func() *arrivalRate { return &arrivalRate{perSec: 10_000, last: time.Now()} }

	// Busy: the caller that arrives during the linger joins the batch.
	s := newStore(linger)
	go func() {
		time.Sleep(linger / 20)
		queued(s, 3)
	}()
	start := time.Now()
	if b := s.fill(&request{}, busy()); len(b) != 4 {
		t.Fatalf("busy store: batch of %d, want 4 (the first and three that came during the linger)", len(b))
	}
	if d := time.Since(start); d < linger {
		t.Fatalf("busy store: filled in %v, want a linger of at least %v", d, linger)
	}

	// Quiet (no caller due within the linger): no wait.
	s = newStore(linger)
	start = time.Now()
	if b := s.fill(&request{}, &arrivalRate{perSec: 1, last: time.Now()}); len(b) != 1 {
		t.Fatalf("quiet store: batch of %d, want 1", len(b))
	}
	if d := time.Since(start); d >= linger {
		t.Fatalf("quiet store waited %v", d)
	}

	// Already big enough: no wait, and everything queued is taken.
	s = newStore(linger)
	queued(s, lingerBelow)
	start = time.Now()
	if b := s.fill(&request{}, busy()); len(b) != lingerBelow+1 {
		t.Fatalf("full batch: %d callers, want %d", len(b), lingerBelow+1)
	}
	if d := time.Since(start); d >= linger {
		t.Fatalf("full batch waited %v", d)
	}

	// No linger configured: no wait even when busy.
	s = newStore(0)
	start = time.Now()
	if b := s.fill(&request{}, busy()); len(b) != 1 || time.Since(start) >= linger {
		t.Fatalf("zero linger: batch of %d after %v", len(b), time.Since(start))
	}

	// MaxBatch bounds the batch; the rest stays queued.
	s = newStore(linger)
	s.d.MaxBatch = 5
	queued(s, 10)
	if b := s.fill(&request{}, busy()); len(b) != 5 || len(s.queue) != 6 {
		t.Fatalf("MaxBatch 5: batch of %d, %d left queued; want 5 and 6", len(b), len(s.queue))
	}
}

func TestArrivalRate(t *testing.T) {
	t.Parallel()
	var a arrivalRate
	now := time.Now()
	a.observe(5, now) // the first batch only starts the clock
	if a.perSec != 0 {
		t.Fatalf("rate after one batch = %v, want 0", a.perSec)
	}
	for i := 1; i <= 500; i++ { // 10 callers a millisecond for half a second
		now = now.Add(time.Millisecond)
		a.observe(10, now)
	}
	if a.perSec < 9_900 || a.perSec > 10_001 {
		t.Fatalf("rate = %.0f/s, want about 10,000/s", a.perSec)
	}
	// One caller after a second of silence: the burst is forgotten at once,
	// so the next small batch does not linger for callers that will not come.
	now = now.Add(time.Second)
	a.observe(1, now)
	if a.perSec > 2 {
		t.Fatalf("rate = %.1f/s after a second of silence, want about 1/s", a.perSec)
	}
	// A short gap under load barely moves it.
	a = arrivalRate{perSec: 10_000, last: now}
	a.observe(10, now.Add(time.Millisecond))
	if a.perSec < 9_900 {
		t.Fatalf("rate = %.0f/s after one more millisecond of load, want about 10,000/s", a.perSec)
	}
}
