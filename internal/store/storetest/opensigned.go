package storetest

import (
	"fmt"
	"testing"

	"github.com/purserhq/purser/internal/spend"
)

// testOpenSigned: SpendCountOpenSigned counts one agent's signed spends
// that are authorized or unknown, including ones created earlier in the
// same transaction (buffered by a batching store), and nothing else.
func testOpenSigned(t *testing.T, s spend.Store) {
	a := createAgent(t, s, "agt_o", "o", 0)
	b := createAgent(t, s, "agt_o2", "o2", 1)
	mk := func(id, agentID, ref string, st spend.Status) *spend.Spend {
		sp := newSpend(id, agentID, "", at, st)
		sp.RailRef = ref
		return sp
	}
	mustTx(t, s, func(tx spend.Tx) error {
		for _, sp := range []*spend.Spend{
			mk("spd_o1", a.ID, "n1", spend.StatusAuthorized), // counted
			mk("spd_o2", a.ID, "n2", spend.StatusUnknown),    // counted
			mk("spd_o3", a.ID, "", spend.StatusAuthorized),   // not signed
			mk("spd_o4", a.ID, "n4", spend.StatusCaptured),   // settled
			mk("spd_o5", a.ID, "n5", spend.StatusReleased),   // settled
			mk("spd_o6", b.ID, "n6", spend.StatusAuthorized), // another agent's
		} {
			if err := tx.SpendCreate(ctx, sp); err != nil {
				return err
			}
		}
		if n, err := tx.SpendCountOpenSigned(ctx, a.ID); err != nil || n != 2 {
			return fmt.Errorf("in the creating transaction: SpendCountOpenSigned = %d, %v; want 2", n, err)
		}
		return nil
	})
	count := func(want int64) {
		t.Helper()
		err := s.InTxPrefetch(ctx, prefetchFor(a.IdentityAddress, fmt.Sprintf("0xo%d", want), ""), func(tx spend.Tx) error {
			if _, _, _, err := tx.AgentLockByKey(ctx, a.IdentityAddress, ""); err != nil {
				return err
			}
			if n, err := tx.SpendCountOpenSigned(ctx, a.ID); err != nil || n != want {
				return fmt.Errorf("SpendCountOpenSigned = %d, %v; want %d", n, err, want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	count(2)
	mustTx(t, s, func(tx spend.Tx) error {
		sp, err := tx.SpendGet(ctx, "spd_o1")
		if err != nil {
			return err
		}
		sp.Status = spend.StatusCaptured
		if err := tx.SpendUpdate(ctx, sp); err != nil {
			return err
		}
		if sp, err = tx.SpendGet(ctx, "spd_o3"); err != nil {
			return err
		}
		sp.RailRef = "n3"
		return tx.SpendUpdate(ctx, sp)
	})
	count(2) // one settled, one signed
}
