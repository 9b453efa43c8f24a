package cosign

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

// TestConcurrentSessionsShareNothing runs signings in parallel over the same
// two shares: sessions use no pool and share no mutable state (the library
// deadlocked when two parties shared a pool.Pool), so they must all finish.
// Run with -race.
func TestConcurrentSessionsShareNothing(t *testing.T) {
	agent, server, _ := runKeygen(t)
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			b := binding(t)
			sig, _, _ := runSign(t, agent, server, b)
			if !validFor(sig, b.Digest, server) {
				t.Error("invalid signature")
			}
		})
	}
	wg.Wait()
}

func TestMemoryLedgerClaimsOnce(t *testing.T) {
	var l MemoryLedger
	var sid SessionID
	var ok, used atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			switch err := l.Claim(context.Background(), sid); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrSessionUsed):
				used.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || used.Load() != 49 {
		t.Fatalf("%d claims succeeded, %d refused", ok.Load(), used.Load())
	}
}
