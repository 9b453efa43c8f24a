package spend_test

import (
	"context"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/spend/spendtest"
)

// TestPruneNoncesUsesTheDatabaseClock: a server whose clock runs an hour
// ahead prunes nonces; a nonce whose signature is still valid by the
// database's clock (and so on any server in step with it) must survive,
// or its request could be replayed. One long expired is pruned.
func TestPruneNoncesUsesTheDatabaseClock(t *testing.T) {
	t.Parallel()
	e, _ := newEnv(t)
	a := e.NewAgent("clock", "")
	real := time.Now().UTC().Truncate(time.Second)
	e.Clock.Advance(real.Add(time.Hour).Sub(e.Clock.Now())) // this server's clock: an hour fast
	live, old := "0x"+"11"+spendtest.RandomAddress()[2:], "0x"+"22"+spendtest.RandomAddress()[2:]
	liveExp, oldExp := real.Add(2*time.Minute), real.Add(-10*time.Minute)
	if err := e.Store.InTx(context.Background(), func(tx spend.Tx) error {
		if _, err := tx.NonceUse(context.Background(), a.ID, live, liveExp); err != nil {
			return err
		}
		_, err := tx.NonceUse(context.Background(), a.ID, old, oldExp)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	n, err := e.Svc.PruneNonces(context.Background(), 5*time.Minute)
	if err != nil || n != 1 {
		t.Fatalf("PruneNonces = %d, %v; want the one nonce expired 10 minutes ago", n, err)
	}
	r := spendtest.Custom("0.01")
	c := a.Caller(r)
	c.Nonce, c.Expires = live, liveExp // the same signed request, sent again
	if _, err := e.Svc.Authorize(context.Background(), c, r); spend.CodeOf(err) != spend.CodeNonceReplayed {
		t.Fatalf("replay of a request still valid by the database's clock: err %v, want nonce_replayed", err)
	}
}
