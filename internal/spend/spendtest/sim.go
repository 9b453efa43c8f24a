package spendtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/mandate"
	"github.com/purserhq/purser/internal/spend"
)

// SimConfig tunes a simulation run.
type SimConfig struct {
	Seed  uint64
	Steps int // default 200
	// Clients is how many operations each step runs concurrently
	// (default 4).
	Clients int
	// Open opens the store, and opens it again after a simulated crash.
	// With it, Simulate wraps the store in a CrashStore and injects
	// faults: a transaction fails before its commit, fails after it (the
	// caller sees an error for what committed), or the store stops, is
	// closed and reopened, and a new service takes over.
	Open func() (spend.Store, error)
}

// Simulate runs the simulation with faults on the store cfg.Open opens,
// with a SimRail (whose ledger is the ground truth of what was paid).
func Simulate(t *testing.T, cfg SimConfig) {
	t.Helper()
	st, err := cfg.Open()
	if err != nil {
		t.Fatal(err)
	}
	cs := NewCrashStore(st)
	t.Cleanup(func() { cs.Close() })
	rail := &SimRail{Committed: func(ctx context.Context, id string) (*spend.Spend, error) {
		var sp *spend.Spend
		err := cs.Inner().Read(ctx, func(tx spend.Tx) error {
			var err error
			sp, err = tx.SpendGet(ctx, id)
			return err
		})
		return sp, err
	}}
	e := NewEnv(t, cs, rail)
	rail.Clock = e.Clock
	run(t, e, cs, rail, cfg)
}

// RunSimulation runs the simulation on e without faults: any store, and
// the rails e has (the test Rail's outcomes are scripted here).
func RunSimulation(t *testing.T, e *Env, seed uint64, steps int) {
	t.Helper()
	sr, _ := e.Svc.Rail("simrail").(*SimRail)
	run(t, e, nil, sr, SimConfig{Seed: seed, Steps: steps})
}

// sim is one run: a seeded workload of concurrent clients — agents
// authorizing (sometimes under an idempotency key, retried after a
// failure), confirming, capturing and releasing; the owner approving,
// denying, freezing, unfreezing and changing mandates; expiry and
// reconciliation sweeps — with clock jumps between steps and, with a
// CrashStore, injected store faults and restarts. After every step the
// Auditor checks every invariant from the raw store and the audit chain.
type sim struct {
	t        *testing.T
	e        *Env
	cs       *CrashStore // nil: no faults
	open     func() (spend.Store, error)
	rails    []string
	mandates []string
	agents   []*Agent
	payees   []string

	mu       sync.Mutex
	spends   []simSpend        // every spend an answer named
	answered map[string]string // agent id + "/" + idempotency key → spend id
	stats    map[string]int    // outcomes, for the log
	broken   []string          // violations clients saw in answers
	restarts int
}

type simSpend struct {
	id    string
	agent *Agent
}

func run(t *testing.T, e *Env, cs *CrashStore, sr *SimRail, cfg SimConfig) {
	t.Helper()
	if cfg.Steps <= 0 {
		cfg.Steps = 200
	}
	if cfg.Clients <= 0 {
		cfg.Clients = 4
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	s := &sim{t: t, e: e, cs: cs, open: cfg.Open, answered: map[string]string{}, stats: map[string]int{},
		payees: []string{"0x00000000000000000000000000000000000000a1", "0x00000000000000000000000000000000000000a2", "0x00000000000000000000000000000000000000a3"},
		mandates: []string{
			`{"per_tx_auto":"0.50","per_tx_max":"2","daily":"10","lifetime":"40"}`,
			`{"per_tx_auto":"0.10","per_tx_max":"1","daily":"3","approve_new_payees":true}`,
			`{"per_tx_max":"5","daily":"8","rate":"20/1h"}`,
			`{"per_tx_auto":"1","per_tx_max":"1","lifetime":"15","payees":["0x00000000000000000000000000000000000000a1","0x00000000000000000000000000000000000000a2"]}`,
		}}
	defer func() {
		if t.Failed() {
			t.Logf("simulation seed %d, %d steps × %d clients (rerun with -simseed %d; the interleaving of clients is the scheduler's)",
				cfg.Seed, cfg.Steps, cfg.Clients, cfg.Seed)
		}
	}()
	s.rails = []string{"custom"}
	if r, ok := e.Svc.Rail("testrail").(*Rail); ok {
		s.rails = append(s.rails, "testrail")
		r.Outcome = func(sp *spend.Spend) (spend.ExecResult, error) {
			switch sp.Amount.Int64() % 7 { // deterministic per amount, so replays agree
			case 0:
				return spend.ExecResult{Outcome: "failed"}, errors.New("rail refused")
			case 1:
				return spend.ExecResult{}, errors.New("rail timed out")
			case 2:
				half := new(big.Int).Div(sp.Amount, big.NewInt(2))
				return spend.ExecResult{Outcome: "captured", Captured: half, Ref: "partial"}, nil
			}
			return spend.ExecResult{Outcome: "captured", Captured: sp.Amount, Ref: "full"}, nil
		}
	}
	if sr != nil {
		s.rails = append(s.rails, "simrail")
	}
	for i := range 4 {
		s.agents = append(s.agents, e.NewAgent(fmt.Sprintf("sim-%d", i), s.mandates[i]))
	}
	aud := &Auditor{Env: e, Rail: sr}
	if cs != nil {
		aud.Store = cs.Inner
	}
	for step := range cfg.Steps {
		// Serial: time passes, and maybe a fault is armed to strike one
		// of this step's transactions.
		switch k := rng.IntN(100); {
		case k < 15:
			e.Clock.Advance(time.Duration(rng.IntN(20)) * time.Minute)
		case k < 18:
			e.Clock.Advance(time.Duration(rng.IntN(26)) * time.Hour) // crosses days
		}
		if cs != nil && rng.IntN(100) < 25 {
			f := []Fault{FaultBeforeCommit, FaultAfterCommit, FaultStop}[rng.IntN(3)]
			cs.Arm(f, rng.IntN(cfg.Clients), rng.IntN(2) == 0)
		}
		s.mu.Lock()
		known := append([]simSpend(nil), s.spends...)
		s.mu.Unlock()
		ops := make([]func() error, cfg.Clients)
		for i := range ops {
			ops[i] = s.pick(rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64())), known)
		}
		errs := make([]error, len(ops))
		var wg sync.WaitGroup
		for i, op := range ops {
			wg.Go(func() { errs[i] = op() })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("step %d, client %d: %v", step, i, err)
			}
		}
		if cs != nil {
			cs.Disarm()
			if cs.Stopped() {
				s.restart()
			}
		}
		s.mu.Lock()
		broken := s.broken
		s.mu.Unlock()
		if len(broken) > 0 {
			t.Fatalf("step %d: %s", step, strings.Join(broken, "; "))
		}
		if err := aud.Check(); err != nil {
			t.Fatalf("step %d: invariant broken: %v", step, err)
		}
	}
	if cs != nil {
		t.Logf("seed %d: %d steps × %d clients, %d spends, outcomes %v; faults %v, %d restarts",
			cfg.Seed, cfg.Steps, cfg.Clients, len(s.spends), s.stats, cs.Struck(), s.restarts)
	}
}

// restart closes the stopped store, reopens it and starts a new service
// on it, which first does what serve's background loops do.
func (s *sim) restart() {
	s.t.Helper()
	if err := s.cs.Inner().Close(); err != nil {
		s.t.Fatalf("close the stopped store: %v", err)
	}
	st, err := s.open()
	if err != nil {
		s.t.Fatalf("reopen the store: %v", err)
	}
	s.cs.Replace(st)
	s.e.Restart()
	if _, err := s.e.Svc.ReconcileDue(bg, 1000); err != nil {
		s.t.Fatalf("reconcile after restart: %v", err)
	}
	if _, err := s.e.Svc.ExpireDue(bg, 1000); err != nil {
		s.t.Fatalf("expire after restart: %v", err)
	}
	s.restarts++
}

// pick chooses one client operation. It returns an error only for what
// must never happen; refusals the workload provokes are expected.
func (s *sim) pick(rng *rand.Rand, known []simSpend) func() error {
	a := s.agents[rng.IntN(len(s.agents))]
	var sp simSpend
	if len(known) > 0 {
		sp = known[rng.IntN(len(known))]
	}
	k := rng.IntN(100)
	switch {
	case k < 40 || sp.id == "":
		r := spend.AuthorizeRequest{Rail: s.rails[rng.IntN(len(s.rails))], Payee: s.payees[rng.IntN(len(s.payees))],
			Amount: fmt.Sprintf("%d.%02d", rng.IntN(3), 1+rng.IntN(99))}
		if rng.IntN(3) == 0 {
			r.IdempotencyKey = fmt.Sprintf("k%d", rng.IntN(30))
		}
		return func() error { return s.authorize(a, r) }
	case k < 52:
		deny := rng.IntN(3) == 0
		return func() error {
			var err error
			if deny {
				_, err = s.e.Svc.Deny(bg, sp.id, "sim")
			} else {
				_, err = s.e.Svc.Approve(bg, sp.id)
			}
			return s.outcome("owner decision", err)
		}
	case k < 66:
		what := rng.IntN(3)
		return func() error {
			var err error
			c := sp.agent.Caller(nil)
			switch what {
			case 0:
				_, err = s.e.Svc.Capture(bg, c, sp.id, "")
			case 1:
				_, err = s.e.Svc.Release(bg, c, sp.id)
			default:
				_, err = s.e.Svc.Confirm(bg, c, sp.id)
			}
			return s.outcome("agent settlement", err)
		}
	case k < 72:
		freeze := rng.IntN(2) == 0
		return func() error {
			var err error
			if freeze {
				_, err = s.e.Svc.Freeze(bg, a.Name)
			} else {
				_, err = s.e.Svc.Unfreeze(bg, a.Name)
			}
			return s.outcome("freeze", err)
		}
	case k < 76:
		m := s.mandates[rng.IntN(len(s.mandates))]
		return func() error {
			_, err := s.e.Svc.SetMandate(bg, a.Name, []byte(m), -1)
			return s.outcome("mandate", err)
		}
	case k < 90:
		return func() error {
			_, err := s.e.Svc.ExpireDue(bg, 1000)
			return s.outcome("expiry sweep", err)
		}
	default:
		return func() error {
			_, err := s.e.Svc.ReconcileDue(bg, 1000)
			return s.outcome("reconcile sweep", err)
		}
	}
}

// authorize asks for a spend; under an idempotency key, a request whose
// answer was lost is retried, and every answer under one key must name
// the same spend.
func (s *sim) authorize(a *Agent, r spend.AuthorizeRequest) error {
	for attempt := 0; ; attempt++ {
		out, err := a.Authorize(r)
		if err == nil && out.Spend.ID == "" {
			// A frozen or revoked agent's refusal is not stored (gate.go):
			// it answers nothing an idempotency key could be bound to.
			if out.Spend.Status != spend.StatusDenied {
				return fmt.Errorf("authorize: an unstored spend that is %s", out.Spend.Status)
			}
			return s.outcome("authorize", nil)
		}
		if err == nil {
			s.mu.Lock()
			s.spends = append(s.spends, simSpend{out.Spend.ID, a})
			if r.IdempotencyKey != "" {
				key := a.ID + "/" + r.IdempotencyKey
				if prev, ok := s.answered[key]; ok && prev != out.Spend.ID {
					s.broken = append(s.broken, fmt.Sprintf("idempotency key %s answered spend %s, then %s", key, prev, out.Spend.ID))
				} else {
					s.answered[key] = out.Spend.ID
				}
			}
			s.mu.Unlock()
		}
		if injected(err) && r.IdempotencyKey != "" && attempt == 0 {
			continue // the agent retries what it got no answer for
		}
		return s.outcome("authorize", err)
	}
}

func injected(err error) bool { return errors.Is(err, ErrInjected) || errors.Is(err, ErrStopped) }

// outcome counts err and returns it if it is not one the workload
// provokes: a state race, a key reused for another request, a fault.
func (s *sim) outcome(op string, err error) error {
	code := spend.CodeOf(err)
	switch {
	case err == nil:
		code = "ok"
	case injected(err):
		code = "fault"
	case code == spend.CodeInvalidState, code == spend.CodeSpendNotFound, code == spend.CodeIdempotencyConflict,
		code == spend.CodeSpendDenied: // a frozen agent's confirm or replay
	default:
		return fmt.Errorf("%s: unexpected %v", op, err)
	}
	s.mu.Lock()
	s.stats[code]++
	s.mu.Unlock()
	return nil
}

// Auditor checks the pipeline's invariants from the raw store and the
// audit chain, never trusting the service's own view:
//   - every budget counter equals the sum of held plus captured amounts of
//     its window's spends, and no window is above the highest limit any
//     mandate version gave it;
//   - the audit chain verifies from genesis;
//   - replaying the chain's spend events through the state machine is
//     legal at every event and ends in each spend's stored status, so every
//     state change has exactly one event;
//   - no spend of an agent is authorized (or waits for approval, or is
//     approved) between the agent's freeze and its unfreeze;
//   - an idempotency key names at most one spend of an agent;
//   - with a SimRail: what the rail paid is captured (exactly) or still
//     held, never released; nothing is captured that the rail did not
//     pay; the rail never paid a spend twice or used an uncommitted
//     instrument.
type Auditor struct {
	Env   *Env
	Rail  *SimRail
	Store func() spend.Store // the raw store (default Env.Store)

	seq    int64                   // events replayed so far
	status map[string]spend.Status // spend id → status replayed from the chain
	frozen map[string]int64        // agent id → seq of the freeze in force
	last   map[string]string       // spend id → its last audit action
}

// Check checks every invariant; it reads the events appended since the
// last call.
func (a *Auditor) Check() error {
	st := a.Env.Store
	if a.Store != nil {
		st = a.Store()
	}
	var errs []error
	if err := a.replay(st, &errs); err != nil {
		return err
	}
	err := st.Read(bg, func(tx spend.Tx) error {
		agents, err := tx.AgentList(bg)
		if err != nil {
			return err
		}
		var paid map[string]*big.Int
		if a.Rail != nil {
			paid = a.Rail.Paid()
			for _, v := range a.Rail.Violations() {
				errs = append(errs, errors.New(v))
			}
		}
		for _, ag := range agents {
			spends, err := tx.SpendList(bg, &spend.SpendListParams{AgentID: ag.ID, Limit: 1_000_000})
			if err != nil {
				return err
			}
			if err := a.checkAgent(tx, ag, spends, paid, &errs); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	// The service's verifier walks the chain from genesis through the raw
	// store; the service itself may be a fresh one after a restart.
	if _, err := a.Env.Svc.VerifyAudit(bg); err != nil {
		errs = append(errs, fmt.Errorf("audit chain: %w", err))
	}
	return errors.Join(errs...)
}

func (a *Auditor) checkAgent(tx spend.Tx, ag *spend.Agent, spends []*spend.Spend, paid map[string]*big.Int, errs *[]error) error {
	windows := map[string]*big.Int{"lifetime": new(big.Int)}
	keys := map[string]string{}
	for _, sp := range spends {
		if got := a.status[sp.ID]; got != sp.Status {
			*errs = append(*errs, fmt.Errorf("spend %s is %s, but its audit events lead to %q", sp.ID, sp.Status, got))
		}
		if k := sp.IdempotencyKey; k != "" {
			if prev, ok := keys[k]; ok {
				*errs = append(*errs, fmt.Errorf("agent %s: idempotency key %q names spends %s and %s", ag.Name, k, prev, sp.ID))
			}
			keys[k] = sp.ID
		}
		if paid != nil && sp.Rail == "simrail" {
			p := paid[sp.ID]
			switch {
			case p != nil && sp.Status == spend.StatusCaptured && (sp.Captured == nil || sp.Captured.Cmp(p) != 0):
				*errs = append(*errs, fmt.Errorf("spend %s: the rail paid %s, the spend captured %v", sp.ID, p, sp.Captured))
			case p != nil && sp.Status != spend.StatusCaptured && sp.Status != spend.StatusAuthorized && sp.Status != spend.StatusUnknown:
				*errs = append(*errs, fmt.Errorf("spend %s: the rail paid %s, but the spend is %s and counts nothing", sp.ID, p, sp.Status))
			case p == nil && sp.Status == spend.StatusCaptured:
				*errs = append(*errs, fmt.Errorf("spend %s is captured, but the rail paid nothing", sp.ID))
			}
		}
		var counted *big.Int
		switch {
		case sp.Status.Holding():
			counted = sp.AmountUSD
		case sp.Status == spend.StatusCaptured:
			counted = sp.CapturedUSD
			if sp.Captured == nil || sp.Captured.Cmp(sp.Amount) > 0 || sp.CapturedUSD.Cmp(sp.AmountUSD) > 0 {
				*errs = append(*errs, fmt.Errorf("spend %s captured %v of %v", sp.ID, sp.Captured, sp.Amount))
			}
		default:
			continue
		}
		day := "day:" + sp.DayKey
		if windows[day] == nil {
			windows[day] = new(big.Int)
		}
		windows[day].Add(windows[day], counted)
		windows["lifetime"].Add(windows["lifetime"], counted)
	}
	for w, want := range windows {
		got, err := tx.UsageGet(bg, ag.ID, []string{w})
		if err != nil {
			return err
		}
		if got[0].Cmp(want) != 0 {
			*errs = append(*errs, fmt.Errorf("agent %s window %s: counter %s, spends add up to %s", ag.Name, w, got[0], want))
		}
	}
	// Limits: no window may exceed the highest limit any mandate version
	// ever set (a mandate lowered later may leave older spends above the
	// new limit, which is allowed).
	var maxDaily, maxLife *big.Int
	for v := int64(1); v <= ag.MandateVersion; v++ {
		rec, err := tx.MandateGet(bg, ag.ID, v)
		if err != nil {
			return err
		}
		m, err := mandate.Decode(rec.Body)
		if err != nil {
			return err
		}
		maxDaily, maxLife = maxOf(maxDaily, m.Daily), maxOf(maxLife, m.Lifetime)
	}
	for w, used := range windows {
		limit := maxDaily
		if w == "lifetime" {
			limit = maxLife
		}
		if limit != nil && used.Cmp(limit) > 0 {
			*errs = append(*errs, fmt.Errorf("agent %s window %s: %s committed above every limit it ever had (%s)", ag.Name, w, used, limit))
		}
	}
	return nil
}

// transitions: for each spend action, the statuses it may leave (""
// for a new spend) and the one it enters.
var transitions = map[string]struct {
	from []spend.Status
	to   spend.Status
}{
	"spend.authorize":        {[]spend.Status{""}, spend.StatusAuthorized},
	"spend.request_approval": {[]spend.Status{""}, spend.StatusPendingApproval},
	"spend.approve":          {[]spend.Status{spend.StatusPendingApproval}, spend.StatusAuthorized},
	// spend.cancel: a freeze (or a mandate that now refuses it) ends what
	// was decided but never signed; its details say which status it took.
	"spend.cancel": {[]spend.Status{spend.StatusPendingApproval, spend.StatusAuthorized}, spend.StatusDenied},
	"spend.expire": {[]spend.Status{spend.StatusPendingApproval, spend.StatusAuthorized}, spend.StatusExpired},
	"spend.sign":   {[]spend.Status{spend.StatusAuthorized}, spend.StatusAuthorized},
	// A co-signed wallet's spend: its unsigned instrument recorded, then
	// (after spend.sign) the agent's finished signature.
	"spend.cosign_prepare": {[]spend.Status{spend.StatusAuthorized}, spend.StatusAuthorized},
	"spend.cosign_finish":  {[]spend.Status{spend.StatusAuthorized}, spend.StatusAuthorized},
	"spend.unknown":        {[]spend.Status{spend.StatusAuthorized}, spend.StatusUnknown},
	"spend.execute":        {[]spend.Status{spend.StatusAuthorized}, spend.StatusUnknown}, // a rail that does not sign first is about to move money
	"spend.capture":        {[]spend.Status{spend.StatusAuthorized, spend.StatusUnknown}, spend.StatusCaptured},
	"spend.release":        {[]spend.Status{spend.StatusPendingApproval, spend.StatusAuthorized, spend.StatusUnknown}, spend.StatusReleased},
	// spend.deny: an agent's refused request, or an owner's denial of a
	// pending spend (handled below).
}

// replay runs the events appended since the last call through the spend
// state machine and the freeze rule.
func (a *Auditor) replay(st spend.Store, errs *[]error) error {
	if a.status == nil {
		a.status, a.frozen, a.last = map[string]spend.Status{}, map[string]int64{}, map[string]string{}
	}
	for {
		evs, err := st.AuditEvents(bg, a.seq, 5000)
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			return nil
		}
		for _, ev := range evs {
			a.seq = ev.Seq
			var d struct {
				AgentID  string       `json:"agent_id"`
				Status   spend.Status `json:"status"`
				Executed bool         `json:"executed"`
			}
			json.Unmarshal(ev.Details, &d) //nolint:errcheck // details are JSON objects; a missing field stays empty
			switch ev.Action {
			case "agent.freeze":
				a.frozen[d.AgentID] = ev.Seq
				continue
			case "agent.unfreeze":
				delete(a.frozen, d.AgentID)
				continue
			}
			id, ok := strings.CutPrefix(ev.Subject, "spend:")
			if !ok {
				continue
			}
			from := a.status[id]
			tr, known := transitions[ev.Action]
			if ev.Action == "spend.deny" {
				known, tr.to = true, spend.StatusDenied
				tr.from = []spend.Status{spend.StatusPendingApproval}
				if ev.Actor.Type == "agent" {
					tr.from = []spend.Status{""}
				}
			}
			if ev.Action == "spend.unknown" && d.Executed {
				// The run of a rail that does not sign first ended without an
				// outcome: the spend has been unknown since spend.execute,
				// which must be the event just before (once per run).
				tr.from = []spend.Status{spend.StatusUnknown}
				if a.last[id] != "spend.execute" {
					*errs = append(*errs, fmt.Errorf("event %d: spend.unknown (executed) of spend %s after %s, not after spend.execute", ev.Seq, id, a.last[id]))
				}
			}
			if ev.Action == "spend.cancel" && (d.Status == spend.StatusReleased || d.Status == spend.StatusDenied) {
				tr.to = d.Status
			}
			switch {
			case !known:
				*errs = append(*errs, fmt.Errorf("event %d: unknown spend action %s", ev.Seq, ev.Action))
			case !containsStatus(tr.from, from):
				*errs = append(*errs, fmt.Errorf("event %d: %s of spend %s, which was %q", ev.Seq, ev.Action, id, from))
			}
			switch ev.Action {
			case "spend.authorize", "spend.request_approval", "spend.approve":
				if at, ok := a.frozen[d.AgentID]; ok {
					*errs = append(*errs, fmt.Errorf("event %d: %s of spend %s while its agent %s is frozen (since event %d)", ev.Seq, ev.Action, id, d.AgentID, at))
				}
			}
			a.status[id] = tr.to
			a.last[id] = ev.Action
		}
	}
}

func containsStatus(list []spend.Status, s spend.Status) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// unlimited is used where a mandate version had no limit for a window.
var unlimited = new(big.Int).Lsh(big.NewInt(1), 300)

func maxOf(cur, v *big.Int) *big.Int {
	if v == nil {
		v = unlimited
	}
	if cur == nil || v.Cmp(cur) > 0 {
		return v
	}
	return cur
}
