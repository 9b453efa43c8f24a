package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/internal/client"
)

type benchOpts struct {
	agents           int
	duration, warmup time.Duration
	amount           string
}

// benchPayee receives every bench spend (the custom rail moves nothing).
const benchPayee = "0x000000000000000000000000000000000000dEaD"

func benchCommand() *command {
	return &command{
		name:    "bench",
		args:    "[--agents 64] [--duration 10s] [--warmup 2s] [--amount 0.01]",
		summary: "measure authorizations per second against a running server (creates bench agents)",
		kind:    kindOwner,
		flags: func(fs *flag.FlagSet, o *opts) {
			b := &o.bench
			fs.IntVar(&b.agents, "agents", 64, "concurrent agents, each with its own key")
			fs.DurationVar(&b.duration, "duration", 10*time.Second, "how long to measure")
			fs.DurationVar(&b.warmup, "warmup", 2*time.Second, "how long to run before measuring")
			fs.StringVar(&b.amount, "amount", "0.01", "`AMOUNT` of each spend")
		},
		run: runBench,
	}
}

// benchResult is the --json output of bench.
type benchResult struct {
	Agents          int              `json:"agents"`
	DurationS       float64          `json:"duration_s"`
	Requests        int              `json:"requests"`
	Authorizations  int              `json:"authorizations"`
	AuthorizationsS float64          `json:"authorizations_per_s"`
	P50ms           float64          `json:"p50_ms"`
	P95ms           float64          `json:"p95_ms"`
	P99ms           float64          `json:"p99_ms"`
	Errors          map[string]int64 `json:"errors"`
}

// benchWorker is one agent's loop and what it measured.
type benchWorker struct {
	c       *client.Client
	samples []time.Duration // latencies of authorizations in the window
	reqs    int
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
	tok, err := e.ownerToken(o)
	if err != nil {
		return err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 2 * b.agents
	tr.MaxIdleConnsPerHost = b.agents
	hc := &http.Client{Transport: tr, Timeout: client.DefaultTimeout}
	defer tr.CloseIdleConnections()
	owner, err := e.newClient(o, client.WithHTTPClient(hc), client.WithOwnerToken(tok))
	if err != nil {
		return err
	}

	var rb [4]byte
	rand.Read(rb[:])
	run := hex.EncodeToString(rb[:])
	mandate := json.RawMessage(`{"per_tx_max":"1","daily":"1000000","lifetime":"1000000"}`)
	workers := make([]*benchWorker, b.agents)
	for i := range workers {
		key, err := agentauth.GenerateKey()
		if err != nil {
			return err
		}
		name := fmt.Sprintf("bench-%s-%d", run, i)
		if _, err := owner.CreateAgent(ctx, client.CreateAgentRequest{Name: name, IdentityAddress: agentauth.Address(key).Hex(), Mandate: mandate}); err != nil {
			return fmt.Errorf("create agent %s: %w", name, err)
		}
		c, err := e.newClient(o, client.WithHTTPClient(hc), client.WithAgentKey(key))
		if err != nil {
			return err
		}
		workers[i] = &benchWorker{c: c, errs: map[string]int64{}}
	}
	if !o.json {
		fmt.Fprintf(e.stdio.Err, "bench: %d agents created (bench-%s-*); warming up %s, measuring %s\n", b.agents, run, b.warmup, b.duration)
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
			w.loop(wctx, run, i, b.amount, measureFrom)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	window := time.Since(measureFrom)
	if window > b.duration {
		window = b.duration
	}

	res := summarize(workers, window)
	res.Agents = b.agents
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

// loop authorizes spends until ctx ends, recording what happened from
// measureFrom on.
func (w *benchWorker) loop(ctx context.Context, run string, i int, amount string, measureFrom time.Time) {
	for seq := 0; ctx.Err() == nil; seq++ {
		t0 := time.Now()
		s, err := w.c.Authorize(ctx, client.AuthorizeRequest{
			Rail: "custom", Payee: benchPayee, Amount: amount,
			IdempotencyKey: fmt.Sprintf("bench-%s-%d-%d", run, i, seq),
		})
		lat := time.Since(t0)
		if ctx.Err() != nil {
			return // cut off by the end of the run: not an answer
		}
		if t0.Before(measureFrom) {
			continue
		}
		w.reqs++
		switch {
		case err == nil && s.Status == client.StatusAuthorized && !s.Replayed:
			w.samples = append(w.samples, lat)
		case err == nil:
			w.errs["status_"+s.Status]++
		default:
			var ae *client.APIError
			if errors.As(err, &ae) {
				w.errs[ae.Code]++
			} else {
				w.errs["network_error"]++
			}
		}
	}
}

func summarize(workers []*benchWorker, window time.Duration) benchResult {
	res := benchResult{DurationS: window.Seconds(), Errors: map[string]int64{}}
	var all []time.Duration
	for _, w := range workers {
		res.Requests += w.reqs
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
	return res
}

// percentile is the nearest-rank percentile of sorted samples.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 * n)
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func printBench(e *env, r benchResult) {
	w := e.stdio.Out
	fmt.Fprintf(w, "agents          %d\n", r.Agents)
	fmt.Fprintf(w, "duration        %.1fs\n", r.DurationS)
	fmt.Fprintf(w, "requests        %d\n", r.Requests)
	fmt.Fprintf(w, "authorizations  %d (%.1f/s)\n", r.Authorizations, r.AuthorizationsS)
	fmt.Fprintf(w, "latency         p50 %.2fms  p95 %.2fms  p99 %.2fms\n", r.P50ms, r.P95ms, r.P99ms)
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
