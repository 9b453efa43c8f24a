package cosign

import (
	"context"
	"sync"
)

// SessionLedger records the signing sessions the server has run. Claim must
// be atomic and durable: it returns ErrSessionUsed when the id was claimed
// before, and the id stays claimed even if the session then fails, so that
// a session id (which the library hashes into its transcript) is never used
// twice with the server's share. Purser keeps it in its database, in the
// transaction that places the spend's hold.
type SessionLedger interface {
	Claim(ctx context.Context, sid SessionID) error
}

// MemoryLedger is a SessionLedger in memory, for tests and single-process
// tools. It forgets everything on restart, so a server must not use it.
type MemoryLedger struct {
	mu   sync.Mutex
	used map[SessionID]struct{}
}

// Claim implements SessionLedger.
func (l *MemoryLedger) Claim(_ context.Context, sid SessionID) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.used == nil {
		l.used = map[SessionID]struct{}{}
	}
	if _, ok := l.used[sid]; ok {
		return ErrSessionUsed
	}
	l.used[sid] = struct{}{}
	return nil
}
