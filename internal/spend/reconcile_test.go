package spend_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/spend/spendtest"
	"github.com/purserhq/purser/internal/store/sqlite"
)

// probeRail signs every spend and answers Reconcile through a hook,
// counting the calls and how many run at once.
type probeRail struct {
	clock *spendtest.Clock
	hook  func(sp *spend.Spend) spend.ExecResult

	mu       sync.Mutex
	calls    map[string]int
	inflight int
	maxIn    int
}

func (r *probeRail) Name() string { return "probe" }

func (r *probeRail) Sign(_ context.Context, sp *spend.Spend) (string, json.RawMessage, time.Time, error) {
	return "ref-" + sp.ID, json.RawMessage(`{}`), r.clock.Now().Add(time.Hour), nil
}

func (r *probeRail) Reconcile(_ context.Context, sp *spend.Spend) (spend.ExecResult, error) {
	r.mu.Lock()
	if r.calls == nil {
		r.calls = map[string]int{}
	}
	r.calls[sp.ID]++
	r.inflight++
	r.maxIn = max(r.maxIn, r.inflight)
	r.mu.Unlock()
	res := spend.ExecResult{Outcome: spend.OutcomePending}
	if r.hook != nil {
		res = r.hook(sp)
	}
	r.mu.Lock()
	r.inflight--
	r.mu.Unlock()
	return res, nil
}

func (r *probeRail) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[id]
}

func probeEnv(t *testing.T) (*spendtest.Env, *probeRail) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "purser.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pr := &probeRail{}
	e := spendtest.NewEnv(t, st, pr)
	pr.clock = e.Clock
	return e, pr
}

func signedSpends(t *testing.T, e *spendtest.Env, n int) []*spend.Spend {
	t.Helper()
	a := e.NewAgent(fmt.Sprintf("probe%d", n), `{"per_tx_auto":"1","per_tx_max":"1","daily":"100"}`)
	var out []*spend.Spend
	for range n {
		r := spendtest.Custom("0.01")
		r.Rail = "probe"
		sp := a.MustAuthorize(r)
		if sp.RailRef == "" {
			t.Fatalf("spend not signed: %s", spendtest.Describe(sp))
		}
		out = append(out, sp)
	}
	return out
}

// TestReconcileConcurrencyIsBounded: a pass over many open spends asks
// the rail about at most Workers of them at once, and does use them all.
func TestReconcileConcurrencyIsBounded(t *testing.T) {
	t.Parallel()
	e, pr := probeEnv(t)
	spends := signedSpends(t, e, 20)
	const workers = 4
	entered, release := make(chan struct{}, len(spends)), make(chan struct{})
	pr.hook = func(*spend.Spend) spend.ExecResult {
		entered <- struct{}{}
		<-release
		return spend.ExecResult{Outcome: spend.OutcomePending}
	}
	done := make(chan error, 1)
	go func() {
		_, err := e.Svc.NewReconcileScheduler(spend.ReconcileOptions{Workers: workers}).Pass(context.Background(), 7)
		done <- err
	}()
	for range workers { // the first four calls are in flight together
		<-entered
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if pr.maxIn != workers {
		t.Fatalf("%d reconciliations ran at once, want exactly %d", pr.maxIn, workers)
	}
	for _, sp := range spends {
		if c := pr.count(sp.ID); c != 1 {
			t.Fatalf("spend %s asked %d times in one pass", sp.ID, c)
		}
	}
}

// TestReconcileBacksOffPerSpend: a spend without news is asked again
// after 5 s, then 10 s, 20 s …; one that settles leaves the schedule; a
// new scheduler (a restart) asks every open spend at once.
func TestReconcileBacksOffPerSpend(t *testing.T) {
	t.Parallel()
	e, pr := probeEnv(t)
	spends := signedSpends(t, e, 2)
	quiet, settles := spends[0], spends[1]
	var mu sync.Mutex
	settled := false
	pr.hook = func(sp *spend.Spend) spend.ExecResult {
		mu.Lock()
		defer mu.Unlock()
		if sp.ID == settles.ID && settled {
			return spend.ExecResult{Outcome: spend.OutcomeCaptured, Captured: sp.Amount, Ref: "0xtx"}
		}
		return spend.ExecResult{Outcome: spend.OutcomePending}
	}
	sched := e.Svc.NewReconcileScheduler(spend.ReconcileOptions{BackoffMin: 5 * time.Second, BackoffMax: 20 * time.Second})
	pass := func() int {
		t.Helper()
		n, err := sched.Pass(context.Background(), 100)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Seconds after the first pass at which the quiet spend is asked:
	// 0, 5, 15 (5+10), 35 (15+20), 55 (capped at 20).
	asks := map[int]bool{0: true, 5: true, 15: true, 35: true, 55: true}
	want := 0
	for sec := 0; sec <= 60; sec++ {
		if sec == 5 {
			mu.Lock()
			settled = true
			mu.Unlock()
		}
		n := pass()
		if asks[sec] {
			want++
		}
		if got := pr.count(quiet.ID); got != want {
			t.Fatalf("at %d s the quiet spend was asked %d times, want %d", sec, got, want)
		}
		if sec == 5 && n != 1 {
			t.Fatalf("at 5 s %d spends changed, want the settled one", n)
		}
		e.Clock.Advance(time.Second)
	}
	if c := pr.count(settles.ID); c != 2 {
		t.Fatalf("the settled spend was asked %d times, want 2 (before and when it settled)", c)
	}
	if sp, _ := e.Svc.GetSpend(context.Background(), settles.ID); sp.Status != spend.StatusCaptured {
		t.Fatalf("settled spend: %s", spendtest.Describe(sp))
	}
	before := pr.count(quiet.ID)
	if _, err := e.Svc.NewReconcileScheduler(spend.ReconcileOptions{}).Pass(context.Background(), 100); err != nil {
		t.Fatal(err)
	}
	if pr.count(quiet.ID) != before+1 {
		t.Fatal("a new scheduler did not ask the open spend at once")
	}
}
