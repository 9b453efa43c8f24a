package spend_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/spend/spendtest"
	"github.com/purserhq/purser/internal/store/sqlite"
)

// TestExecutedSpendSurvivesALostSettle: a rail that moves money without
// signing first executed a spend, and the transaction recording the
// outcome failed. The hold must stay (the spend is unknown until the rail
// or an owner settles it), never expire as if nothing had moved: the
// simulation found it expired, its money paid and uncounted.
func TestExecutedSpendSurvivesALostSettle(t *testing.T) {
	t.Parallel()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "purser.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cs := spendtest.NewCrashStore(st)
	rail := &spendtest.Rail{}
	e := spendtest.NewEnv(t, cs, rail)
	a := e.NewAgent("exec", `{"per_tx_auto":"1","per_tx_max":"1","daily":"10"}`)

	// Every write after the decision fails: the rail still runs once the
	// spend is recorded as being executed, and its outcome cannot be stored.
	r := spend.AuthorizeRequest{Rail: "testrail", Payee: "0x000000000000000000000000000000000000dEaD", Amount: "0.50"}
	var executed bool
	rail.Outcome = func(s *spend.Spend) (spend.ExecResult, error) {
		executed = true
		cs.Arm(spendtest.FaultBeforeCommit, 0, false)
		return spend.ExecResult{Outcome: spend.OutcomeCaptured, Captured: s.Amount}, nil
	}
	out, _ := a.Authorize(r)
	cs.Disarm()
	if !executed {
		t.Fatalf("the rail did not run: %+v", out)
	}
	list, err := e.Svc.ListSpends(bg, "exec", nil, 10)
	if err != nil || len(list) != 1 {
		t.Fatalf("spends: %v %v", list, err)
	}
	id := list[0].ID
	e.Clock.Advance(time.Hour)
	if _, err := e.Svc.ExpireDue(bg, 100); err != nil {
		t.Fatal(err)
	}
	got, err := e.Svc.GetSpend(bg, id)
	if err != nil || got.Status != spend.StatusUnknown {
		t.Fatalf("executed spend whose outcome was lost, an hour later: %s %v; want unknown, still holding", spendtest.Describe(got), err)
	}
	l, err := e.Svc.OwnerLimits(bg, "exec")
	if err != nil || l.LifetimeUsedUSD.Int64() != 500_000 {
		t.Fatalf("lifetime used %v (%v); want the 0.50 still counted", l.LifetimeUsedUSD, err)
	}
}

var bg = context.Background()
