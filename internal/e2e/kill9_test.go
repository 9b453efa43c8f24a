package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/store/storetest"
	"github.com/purserhq/purser/sdk"
)

// TestKill9LosesNoAcknowledgedDecision kills the server with SIGKILL while
// authorizations are in flight, restarts it on the same data, and checks
// that every decision a client was told about survived, that the budget
// counts exactly the holding spends, and that the audit chain is whole
// with one event per spend. It requires that the kill caught requests in
// flight: requests fully written to the server before the SIGKILL that
// never got an answer. A kill that caught none is repeated (bounded).
func TestKill9LosesNoAcknowledgedDecision(t *testing.T) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		kill9(t, "")
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		kill9(t, storetest.PostgresDSN(t))
	})
}

type ack struct {
	id, status, amount string
	afterRestart       bool
}

func kill9(t *testing.T, dsn string) {
	const (
		workers  = 16
		duration = 3 * time.Second
		killAt   = 1500 * time.Millisecond
		pace     = 75 * time.Millisecond // per worker between requests
		// Planned load: at most 16 workers × 40 requests of 0.015 USD on
		// average (3 of 0.01 auto-approved, 1 of 0.03 waiting for approval)
		// = 9.60 USD; with request latency and the restart's pause about
		// 8, so this budget runs out after ~60% of it, around the kill.
		budget = "5.00"
	)
	dir := t.TempDir()
	p := startServe(t, dir, dsn, "")
	n := newNode(t, p.url, dir)
	ctx := context.Background()
	key := n.newAgent(t, "k9", `{"per_tx_auto":"0.02","per_tx_max":"1","daily":"`+budget+`"}`)
	// One short timeout per request: a request to the killed server must
	// not hang past the test.
	tr := newFlightTracker(http.DefaultTransport)
	c, err := sdk.NewAgent(p.url, signer(t, key), sdk.WithHTTPClient(&http.Client{Timeout: 20 * time.Second, Transport: tr}))
	if err != nil {
		t.Fatal(err)
	}

	var (
		mu         sync.Mutex
		acks       []ack
		unexpected []string
		transport  atomic.Int64 // requests that got no HTTP answer
		restarted  atomic.Bool
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				amount := "0.01"
				if i%4 == 3 {
					amount = "0.03"
				}
				after := restarted.Load()
				sp, err := c.Authorize(ctx, sdk.AuthorizeRequest{Rail: "custom", Payee: payee, Amount: amount,
					IdempotencyKey: fmt.Sprintf("w%d-%d", w, i)})
				var ae *sdk.Error
				switch {
				case err == nil && sp.Status == sdk.StatusAuthorized || isPending(err) && sp.Status == sdk.StatusPendingApproval,
					errors.As(err, &ae) && ae.Code == "spend_denied":
					mu.Lock()
					acks = append(acks, ack{sp.SpendID, sp.Status, amount, after})
					mu.Unlock()
				case errors.As(err, &ae) || err == nil:
					mu.Lock()
					unexpected = append(unexpected, fmt.Sprintf("w%d-%d: %v %+v", w, i, err, sp))
					mu.Unlock()
				default: // no HTTP answer: the server was down or died mid-request
					transport.Add(1)
				}
				time.Sleep(pace)
			}
		})
	}

	start := time.Now()
	time.Sleep(killAt)
	const maxKills = 5
	var caught, acksBefore int
	for kill := 1; caught == 0; kill++ {
		if kill > maxKills {
			t.Fatalf("%d kills caught no request in flight", maxKills)
		}
		// Kill right after a request was written: the server cannot have
		// answered it yet, unless it is quicker than this goroutine.
		tr.nextWrite(t)
		mu.Lock()
		acksBefore = len(acks)
		mu.Unlock()
		caught = tr.kill(p.kill)
		t.Logf("kill %d after %s: %d requests written before it got no answer, %d decisions acknowledged", kill,
			time.Since(start).Round(time.Millisecond), caught, acksBefore)
		p = startServe(t, dir, dsn, p.addr) // same port: the workers carry on
		restarted.Store(true)
		t.Logf("restarted after %s", time.Since(start).Round(time.Millisecond))
	}
	time.Sleep(max(duration-time.Since(start), 500*time.Millisecond))
	close(stop)
	wg.Wait()

	for _, u := range unexpected {
		t.Errorf("unexpected answer: %s", u)
	}
	counts := map[string]int{}
	nAfter := 0
	for _, a := range acks {
		counts[a.status]++
		if a.afterRestart {
			nAfter++
		}
	}
	t.Logf("%d acknowledged (%v), %d after the restart; %d requests without an answer", len(acks), counts, nAfter, transport.Load())
	if acksBefore == 0 || nAfter == 0 {
		t.Fatalf("acknowledged %d decisions before the kill and %d after the restart; the test needs both", acksBefore, nAfter)
	}

	n = newNode(t, p.url, dir)
	// Every acknowledged decision survived, unchanged.
	for _, a := range acks {
		got, err := n.owner.Spend(ctx, a.id)
		if err != nil {
			t.Errorf("acknowledged spend %s (%s) lost after kill -9: %v", a.id, a.status, err)
			continue
		}
		if got.Status != a.status || got.Amount != a.amount {
			t.Errorf("spend %s: acknowledged %s %s, after the restart %s %s", a.id, a.status, a.amount, got.Status, got.Amount)
		}
	}
	list, err := sdk.Collect(n.owner.Spends(ctx, sdk.SpendFilter{Agent: "k9", Limit: 1000}))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) >= 1000 {
		t.Fatalf("%d spends: the list may be cut short at 1000; lower the load", len(list))
	}
	found := map[string]sdk.Spend{}
	var holding int64
	for _, s := range list {
		found[s.SpendID] = s
		switch s.Status {
		case sdk.StatusAuthorized, sdk.StatusPendingApproval:
			h := micro(t, s.HeldUSD)
			if s.CapturedUSD != nil {
				h += micro(t, *s.CapturedUSD)
			}
			if h != micro(t, s.AmountUSD) {
				t.Errorf("spend %s (%s) holds %d µUSD, its amount is %s", s.SpendID, s.Status, h, s.AmountUSD)
			}
			holding += h
		case sdk.StatusDenied:
			if micro(t, s.HeldUSD) != 0 {
				t.Errorf("denied spend %s holds %s", s.SpendID, s.HeldUSD)
			}
		default:
			t.Errorf("spend %s is %s; nothing should have moved it there", s.SpendID, s.Status)
		}
	}
	for _, a := range acks {
		if _, ok := found[a.id]; !ok {
			t.Errorf("acknowledged spend %s missing from the agent's spend list", a.id)
		}
	}
	l := n.limits(t, "k9")
	if used := micro(t, l.Daily.Used); used != holding {
		t.Errorf("daily used %s, but the authorized and pending spends hold %d µUSD", l.Daily.Used, holding)
	}
	v := n.verify(t)
	// agent.create (with its mandate) plus one decision event per spend.
	if want := int64(1 + len(list)); v.HeadSeq != want || v.Events != want {
		t.Errorf("audit head %d, %d events; want %d (agent.create + %d spends)", v.HeadSeq, v.Events, want, len(list))
	}
	t.Logf("%d spends after the restart (%d acknowledged), %d µUSD held; audit head %d", len(list), len(acks), holding, v.HeadSeq)
}

// flightTracker is the workers' transport. It tells which requests were
// in flight when the server was killed: fully written to the server
// before the kill, and never answered.
type flightTracker struct {
	base    http.RoundTripper
	written chan struct{} // a request was written (buffered: the latest wins)

	mu    sync.Mutex
	epoch *killEpoch // the requests written since the last kill
}

type killEpoch struct {
	killed bool
	open   sync.WaitGroup // its requests that have not returned yet
	lost   atomic.Int64   // its requests that returned without an answer
}

func newFlightTracker(base http.RoundTripper) *flightTracker {
	return &flightTracker{base: base, written: make(chan struct{}, 1), epoch: &killEpoch{}}
}

func (f *flightTracker) RoundTrip(req *http.Request) (*http.Response, error) {
	var (
		ep       *killEpoch // set once the request is written, before a kill
		returned bool
	)
	trace := &httptrace.ClientTrace{WroteRequest: func(w httptrace.WroteRequestInfo) {
		if w.Err != nil {
			return
		}
		f.mu.Lock()
		if !returned && !f.epoch.killed {
			ep = f.epoch
			ep.open.Add(1)
		}
		f.mu.Unlock()
		select {
		case f.written <- struct{}{}:
		default:
		}
	}}
	resp, err := f.base.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
	f.mu.Lock()
	returned = true
	if ep != nil {
		if err != nil {
			ep.lost.Add(1)
		}
		ep.open.Done()
	}
	f.mu.Unlock()
	return resp, err
}

// nextWrite waits until a request has been written to the server.
func (f *flightTracker) nextWrite(t *testing.T) {
	t.Helper()
	select {
	case <-f.written: // an old one
	default:
	}
	select {
	case <-f.written:
	case <-time.After(30 * time.Second):
		t.Fatal("no request was written to the server within 30s")
	}
}

// kill runs killFn (which must return once the server is dead) and
// returns how many requests written before it never got an answer.
func (f *flightTracker) kill(killFn func()) int {
	f.mu.Lock()
	ep := f.epoch
	ep.killed = true
	f.epoch = &killEpoch{}
	f.mu.Unlock()
	killFn()
	ep.open.Wait()
	return int(ep.lost.Load())
}
