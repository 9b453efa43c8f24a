package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/sdk"
)

type benchOpts struct {
	agents           int
	duration, warmup time.Duration
	amount           string
	rate             float64 // open loop: authorizations/s offered in total; 0 = closed loop
	keep             bool    // leave the bench agents active
	proxy            bool    // measure proxied API calls against direct ones (benchproxy.go)
}

// maxBenchRate bounds --rate (authorizations per second, all agents together).
const maxBenchRate = 1_000_000

// lateAfter is how far behind its scheduled time an open-loop request may be
// sent before it counts as late.
const lateAfter = time.Millisecond

// benchPayee receives every bench spend (the custom rail moves nothing).
const benchPayee = "0x000000000000000000000000000000000000dEaD"

func benchCommand() *command {
	return &command{
		name:    "bench",
		args:    "[--agents 64] [--rate R] [--duration 10s] [--warmup 2s] [--amount 0.01] [--keep] [--proxy]",
		summary: "measure authorizations per second against a running server (creates bench agents, revoked afterwards unless --keep; the server's --agent-rate applies to each); with --proxy, proxied API calls against direct ones, side by side",
		kind:    kindOwner,
		flags: func(fs *flag.FlagSet, o *opts) {
			b := &o.bench
			fs.IntVar(&b.agents, "agents", 64, "concurrent agents, each with its own key")
			fs.DurationVar(&b.duration, "duration", 10*time.Second, "how long to measure")
			fs.DurationVar(&b.warmup, "warmup", 2*time.Second, "how long to run before measuring")
			fs.StringVar(&b.amount, "amount", "0.01", "`AMOUNT` of each spend")
			fs.BoolVar(&b.keep, "keep", false, "leave the bench agents active afterwards (default: revoke them)")
			fs.BoolVar(&b.proxy, "proxy", false, "measure calls to a local upstream (started by bench, on loopback) made directly and through Purser's "+
				"credential proxy, one phase after the other with the same agents and load; each proxied call is a spend of --amount "+
				"(the server must reach loopback: the credential is made with allow_private)")
			fs.Float64Var(&b.rate, "rate", 0, "open loop: offer `R` authorizations per second in total, spread evenly over the agents, "+
				"latency measured from each request's scheduled send time (0: closed loop, each agent sends as soon as its previous request is answered)")
		},
		run: runBench,
	}
}

// benchResult is the --json output of bench.
type benchResult struct {
	Agents          int              `json:"agents"`
	Mode            string           `json:"mode"`               // "closed" or "open"
	OfferedRateS    float64          `json:"offered_rate_per_s"` // --rate; 0 in closed mode
	DurationS       float64          `json:"duration_s"`
	Requests        int              `json:"requests"`
	Authorizations  int              `json:"authorizations"`
	AuthorizationsS float64          `json:"authorizations_per_s"`
	P50ms           float64          `json:"p50_ms"`
	P95ms           float64          `json:"p95_ms"`
	P99ms           float64          `json:"p99_ms"`
	P999ms          float64          `json:"p999_ms"`
	MaxMs           float64          `json:"max_ms"`
	Late            int              `json:"late"` // open mode: requests sent more than 1 ms after their scheduled time
	Errors          map[string]int64 `json:"errors"`
}

// benchWorker is one agent's loop and what it measured.
type benchWorker struct {
	c       *sdk.Agent
	call    func(ctx context.Context, seq int) string // one request: "" when it did what is measured, else an error code
	samples []time.Duration                           // latencies of authorizations in the window
	reqs    int
	late    int // open loop: requests in the window sent more than lateAfter behind schedule
	errs    map[string]int64
}

func runBench(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args); err != nil {
		return err
	}
	b := o.bench
	if b.agents < 1 || b.agents > 10000 {
		return usagef(o.path, "--agents must be 1..10000")
	}
	if b.duration <= 0 || b.warmup < 0 {
		return usagef(o.path, "--duration must be positive and --warmup not negative")
	}
	if err := checkBenchRate(o.path, b.rate); err != nil {
		return err
	}
	tok, err := e.ownerToken(o)
	if err != nil {
		return err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 2 * b.agents
	tr.MaxIdleConnsPerHost = b.agents
	hc := &http.Client{Transport: tr, Timeout: sdk.DefaultTimeout}
	defer tr.CloseIdleConnections()
	owner, err := sdk.NewOwner(e.serverURL(o), tok, e.sdkOptions(sdk.WithHTTPClient(hc))...)
	if err != nil {
		return err
	}

	var rb [4]byte
	rand.Read(rb[:])
	run := hex.EncodeToString(rb[:])
	mandate := json.RawMessage(`{"per_tx_max":"1","daily":"1000000","lifetime":"1000000"}`)
	workers := make([]*benchWorker, b.agents)
	var created []string
	if !b.keep {
		defer func() { revokeBenchAgents(e, owner, created) }()
	}
	for i := range workers {
		key, err := agentauth.GenerateKey()
		if err != nil {
			return err
		}
		name := fmt.Sprintf("bench-%s-%d", run, i)
		if _, err := owner.CreateAgent(ctx, sdk.CreateAgentRequest{Name: name, IdentityAddress: agentauth.Address(key).Hex(), Mandate: mandate}); err != nil {
			return fmt.Errorf("create agent %s: %w", name, err)
		}
		created = append(created, name)
		signer, err := sdk.NewKey(key)
		if err != nil {
			return err
		}
		c, err := sdk.NewAgent(e.serverURL(o), signer, e.sdkOptions(sdk.WithHTTPClient(hc))...)
		if err != nil {
			return err
		}
		w := &benchWorker{c: c, errs: map[string]int64{}}
		w.call = func(ctx context.Context, seq int) string { return classify(w.authorize(ctx, run, i, seq, b.amount)) }
		workers[i] = w
	}
	if b.proxy {
		return benchProxy(ctx, e, o, owner, workers, run, hc)
	}
	if !o.json {
		offering := ""
		if b.rate > 0 {
			offering = fmt.Sprintf(", offering %.1f/s", b.rate)
		}
		fmt.Fprintf(e.stdio.Err, "bench: %d agents created (bench-%s-*); warming up %s, measuring %s%s\n", b.agents, run, b.warmup, b.duration, offering)
	}

	res, err := runPhase(ctx, workers, b)
	if err != nil {
		return err
	}
	if o.json {
		if err := writeJSON(e.stdio.Out, res); err != nil {
			return err
		}
	} else {
		printBench(e, res)
	}
	if res.Authorizations == 0 {
		return exitCode(ExitFailure)
	}
	return nil
}

// runPhase runs the workers' calls for b's warm-up and duration, in
// closed or open loop, and summarizes the measuring window.
func runPhase(ctx context.Context, workers []*benchWorker, b benchOpts) (benchResult, error) {
	for _, w := range workers {
		w.samples, w.reqs, w.late, w.errs = nil, 0, 0, map[string]int64{}
	}
	start := time.Now()
	measureFrom := start.Add(b.warmup)
	end := measureFrom.Add(b.duration)
	wctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if b.rate > 0 {
				w.openLoop(wctx, i, b, start, measureFrom, end)
			} else {
				w.loop(wctx, measureFrom)
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return benchResult{}, ctx.Err()
	}
	window := min(time.Since(measureFrom), b.duration)
	res := summarize(workers, window)
	res.Agents = len(workers)
	res.Mode, res.OfferedRateS = "closed", 0
	if b.rate > 0 {
		res.Mode, res.OfferedRateS = "open", b.rate
	}
	return res, nil
}

// revokeBenchAgents revokes the agents a bench run created, also when it
// was interrupted: a bench agent's key lives only in this process, so
// nothing could use it again, and revoked it cannot be misused either.
func revokeBenchAgents(e *env, owner *sdk.Owner, names []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	failed := 0
	for _, name := range names {
		if _, err := owner.Revoke(ctx, name); err != nil {
			failed++
		}
	}
	if failed > 0 {
		fmt.Fprintf(e.stdio.Err, "bench: %d of %d bench agents could not be revoked; revoke them with purser agent revoke\n", failed, len(names))
	}
}

// authorize sends agent i's request seq of the run.
func (w *benchWorker) authorize(ctx context.Context, run string, i, seq int, amount string) (*sdk.Spend, error) {
	return w.c.Authorize(ctx, sdk.AuthorizeRequest{
		Rail: "custom", Payee: benchPayee, Amount: amount,
		IdempotencyKey: fmt.Sprintf("bench-%s-%d-%d", run, i, seq),
	})
}

// loop makes calls until ctx ends, recording what happened from
// measureFrom on.
func (w *benchWorker) loop(ctx context.Context, measureFrom time.Time) {
	for seq := 0; ctx.Err() == nil; seq++ {
		t0 := time.Now()
		code := w.call(ctx, seq)
		lat := time.Since(t0)
		if ctx.Err() != nil {
			return // cut off by the end of the run: not an answer
		}
		if t0.Before(measureFrom) {
			continue
		}
		w.record(code, lat)
	}
}

// openLoop sends agent i's share of an open-loop run: request k is due at
// start + benchOffset(rate, agents, i, k). Requests stay sequential; one
// that falls due while the previous is outstanding goes as soon as that
// returns. Latency runs from the due time, not the actual send (so a stall
// is charged to every request it delayed: no coordinated omission).
func (w *benchWorker) openLoop(ctx context.Context, i int, b benchOpts, start, measureFrom, end time.Time) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	runLen := end.Sub(start)
	for k := 0; ; k++ {
		off := benchOffset(b.rate, b.agents, i, k)
		if off >= runLen {
			return // due after the end of the run
		}
		due := start.Add(off)
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
		sent := time.Now()
		code := w.call(ctx, k)
		lat := time.Since(due)
		if ctx.Err() != nil {
			return // cut off by the end of the run: not an answer
		}
		if due.Before(measureFrom) {
			continue
		}
		if sent.Sub(due) > lateAfter {
			w.late++
		}
		w.record(code, lat)
	}
}

// record counts one answered request of the measuring window: code ""
// is a measured success, anything else an error by its code.
func (w *benchWorker) record(code string, lat time.Duration) {
	w.reqs++
	if code == "" {
		w.samples = append(w.samples, lat)
		return
	}
	w.errs[code]++
}

// classify is an authorization's outcome: "" for a fresh authorization,
// else what it was (a status or an error code).
func classify(s *sdk.Spend, err error) string {
	switch {
	case err == nil && s.Status == sdk.StatusAuthorized && !s.Replayed:
		return ""
	case err == nil || (s != nil && errors.As(err, new(*sdk.ApprovalRequiredError))):
		return "status_" + s.Status
	}
	return errCode(err)
}

// errCode is an error's code for the bench's error counts.
func errCode(err error) string {
	var ae *sdk.Error
	if errors.As(err, &ae) {
		return ae.Code
	}
	return "network_error"
}

// checkBenchRate validates --rate. (Its bound keeps every agent's
// interval at 1µs or more whatever --agents is.)
func checkBenchRate(path string, rate float64) error {
	if !(rate >= 0 && rate <= maxBenchRate) { // also rejects NaN
		return usagef(path, "--rate must be 0 (closed loop) or a positive rate up to %d/s", maxBenchRate)
	}
	return nil
}

// benchOffset is when, after the start of an open-loop run offering rate
// requests/s over agents agents, agent i sends its request k:
// (k*agents + i) / rate seconds. Each agent sends at rate/agents per
// second, the agents staggered evenly. Offsets beyond time.Duration's
// range saturate.
func benchOffset(rate float64, agents, i, k int) time.Duration {
	ns := (float64(k)*float64(agents) + float64(i)) * 1e9 / rate
	if ns >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(ns)
}

func summarize(workers []*benchWorker, window time.Duration) benchResult {
	res := benchResult{DurationS: window.Seconds(), Errors: map[string]int64{}}
	var all []time.Duration
	for _, w := range workers {
		res.Requests += w.reqs
		res.Late += w.late
		all = append(all, w.samples...)
		for k, v := range w.errs {
			res.Errors[k] += v
		}
	}
	res.Authorizations = len(all)
	if window > 0 {
		res.AuthorizationsS = float64(len(all)) / window.Seconds()
	}
	sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
	res.P50ms = ms(percentile(all, 50))
	res.P95ms = ms(percentile(all, 95))
	res.P99ms = ms(percentile(all, 99))
	res.P999ms = ms(quantile(all, 999, 1000))
	if len(all) > 0 {
		res.MaxMs = ms(all[len(all)-1])
	}
	return res
}

// percentile is the nearest-rank percentile of sorted samples.
func percentile(sorted []time.Duration, p int) time.Duration {
	return quantile(sorted, p, 100)
}

// quantile is the nearest-rank num/den quantile of sorted samples (p99.9 is
// 999/1000), in integers so that no rank is off by float rounding.
func quantile(sorted []time.Duration, num, den int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (num*len(sorted) + den - 1) / den // ceil(num/den * n)
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func printBench(e *env, r benchResult) { printBenchOf(e, r, "authorizations") }

// printBenchOf prints r, naming what was measured what.
func printBenchOf(e *env, r benchResult, what string) {
	w := e.stdio.Out
	fmt.Fprintf(w, "agents          %d\n", r.Agents)
	if r.Mode == "open" {
		fmt.Fprintf(w, "offered         %.1f/s (open loop)\n", r.OfferedRateS)
	}
	fmt.Fprintf(w, "duration        %.1fs\n", r.DurationS)
	fmt.Fprintf(w, "requests        %d\n", r.Requests)
	fmt.Fprintf(w, "%-15s %d (%.1f/s)\n", what, r.Authorizations, r.AuthorizationsS)
	fmt.Fprintf(w, "latency         p50 %.2fms  p95 %.2fms  p99 %.2fms\n", r.P50ms, r.P95ms, r.P99ms)
	fmt.Fprintf(w, "tail            p99.9 %.2fms  max %.2fms\n", r.P999ms, r.MaxMs)
	if r.Mode == "open" {
		fmt.Fprintf(w, "late            %d (sent more than %s after their scheduled time)\n", r.Late, lateAfter)
	}
	if len(r.Errors) == 0 {
		fmt.Fprintf(w, "errors          none\n")
		return
	}
	for i, k := range sortedKeys(r.Errors) {
		label := ""
		if i == 0 {
			label = "errors"
		}
		fmt.Fprintf(w, "%-15s %s: %d\n", label, k, r.Errors[k])
	}
}
