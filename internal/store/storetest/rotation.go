package storetest

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/spend"
)

// lockProbes holds, per test, a function that counts the test's sessions
// waiting for a row lock. PostgresDSN registers one (its sessions carry
// the test's schema as application_name); engines with a single writer
// have none, since nothing there ever waits on a lock inside the database.
var lockProbes sync.Map // testing.TB → func(context.Context) (int, error)

func registerLockProbe(t testing.TB, base, appName string) {
	lockProbes.Store(t, func(ctx context.Context) (int, error) {
		db, err := sql.Open("pgx", base)
		if err != nil {
			return 0, err
		}
		defer db.Close()
		var n int
		err = db.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = $1 AND wait_event_type = 'Lock'`, appName).Scan(&n)
		return n, err
	})
	t.Cleanup(func() { lockProbes.Delete(t) })
}

// awaitLockWaiter returns once one of t's sessions waits for a row lock;
// at once where the engine has a single writer (a transaction queued
// behind another runs after it has committed).
func awaitLockWaiter(t *testing.T) {
	t.Helper()
	p, ok := lockProbes.Load(t)
	if !ok {
		return
	}
	probe := p.(func(context.Context) (int, error))
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		n, err := probe(ctx)
		if err != nil {
			t.Fatalf("lock probe: %v", err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no session started waiting for the agent's lock")
		}
		<-tick.C
	}
}

// testKeyRevokedWhileWaiting: a request signed with an agent's old key
// that waits on the agent's row lock while a rotation (or revocation)
// revokes that key must see the key revoked once the lock is granted,
// through the batched prefetch and through the plain path. On
// PostgreSQL (READ COMMITTED) a statement that locks only the agent row
// reads the key row from its pre-lock snapshot, so the request would be
// authorized by a key revoked before it got the lock.
func testKeyRevokedWhileWaiting(t *testing.T, s spend.Store) {
	for i, prefetched := range []bool{true, false} {
		a := createAgent(t, s, fmt.Sprintf("agt_rot%d", i), fmt.Sprintf("rot%d", i), uint32(i))
		old, next := a.IdentityAddress, fmt.Sprintf("0x%040x", 0xbeef+i)
		locked, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		rotated := make(chan error, 1)
		go func() {
			rotated <- s.InTx(ctx, func(tx spend.Tx) error {
				ag, err := tx.AgentLock(ctx, a.ID)
				if err != nil {
					return err
				}
				if err := tx.AgentKeysRevoke(ctx, a.ID, at); err != nil {
					return err
				}
				if err := tx.AgentKeyAdd(ctx, &spend.AgentKey{Address: next, AgentID: a.ID, CreatedAt: at}); err != nil {
					return err
				}
				ag.IdentityAddress = next
				if err := tx.AgentUpdate(ctx, ag); err != nil {
					return err
				}
				once.Do(func() { close(locked) })
				<-release // hold the lock until the request waits for it
				return appendEvent(tx, i)
			})
		}()
		<-locked
		var key *spend.AgentKey
		authed := make(chan error, 1)
		go func() {
			fn := func(tx spend.Tx) error {
				_, k, _, err := tx.AgentLockByKey(ctx, old, "k")
				key = k
				return err
			}
			if prefetched {
				authed <- s.InTxPrefetch(ctx, prefetchFor(old, fmt.Sprintf("0xrot%d", i), "k"), fn)
			} else {
				authed <- s.InTx(ctx, fn)
			}
		}()
		awaitLockWaiter(t)
		close(release)
		if err := <-rotated; err != nil {
			t.Fatalf("rotation: %v", err)
		}
		if err := <-authed; err != nil {
			t.Fatalf("request with the old key (prefetched %v): %v", prefetched, err)
		}
		if key == nil || key.RevokedAt == nil {
			t.Fatalf("prefetched %v: the old key read as active after the rotation that revoked it released the agent's lock: %+v", prefetched, key)
		}
	}
}
