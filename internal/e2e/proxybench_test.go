package e2e

import (
	"crypto/ecdsa"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/internal/app"
)

// BenchmarkProxyVsDirect measures, in one run and side by side, a call
// to a local upstream made directly and the same call made through
// Purser's proxy (priced: each is a spend held and captured on SQLite),
// with 64 agents calling at once. It reports calls/s and the medians of
// both, and what the proxy adds to the median (docs/performance.md).
func BenchmarkProxyVsDirect(b *testing.B) {
	const agents = 64
	const secret = "sk_bench_0123456789abcdef"
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Api-Key") != secret {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"results":[{"id":1,"title":"a result"},{"id":2,"title":"another"}]}`)
	}))
	defer upstream.Close()
	upstream.Client().Transport.(*http.Transport).MaxIdleConnsPerHost = agents
	n := startApp(b, app.Config{})
	if a := owner(b, n, "POST", "/v1/vault", api.PutCredentialRequest{Name: "bench", Upstream: upstream.URL,
		Inject: "header:X-Api-Key={secret}", Secret: secret, AllowPrivate: true}); a.status != 201 {
		b.Fatalf("vault put: %s", a)
	}
	keys := make([]*ecdsa.PrivateKey, agents)
	for i := range keys {
		k, _ := agentauth.GenerateKey()
		keys[i] = k
		name := fmt.Sprintf("bench-%d", i)
		if a := owner(b, n, "POST", "/v1/agents", map[string]any{"name": name, "identity_address": agentauth.Address(k).Hex(),
			"mandate": map[string]any{"per_tx_max": "1", "daily": "1000000"}}); a.status != 201 {
			b.Fatalf("create agent: %s", a)
		}
		if a := owner(b, n, "POST", "/v1/vault/bench/grants", api.GrantRequest{Agent: name, Methods: []string{"GET"},
			Paths: []string{"/v1/search"}, Price: "0.002"}); a.status != 201 {
			b.Fatalf("grant: %s", a)
		}
	}
	d, err := n.owner.Deployment(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	id, _ := agentauth.ParseDeployment(d.DeploymentID)
	dom := agentauth.DeploymentDomain(id)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: agents, MaxConnsPerHost: agents}}
	proxied := func(k *ecdsa.PrivateKey) error {
		const pq = "/v1/proxy/bench/v1/search?q=x"
		req, _ := http.NewRequest("GET", n.url+pq, nil)
		nonce, _ := agentauth.NewNonce()
		s, err := agentauth.Sign(k, dom, "GET", pq, nil, nonce, time.Now().Add(time.Minute))
		if err != nil {
			return err
		}
		s.Apply(req.Header)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("proxied call: HTTP %d %s", resp.StatusCode, resp.Header.Get(api.HeaderError))
		}
		return nil
	}
	direct := func(*ecdsa.PrivateKey) error {
		req, _ := http.NewRequest("GET", upstream.URL+"/v1/search?q=x", nil)
		req.Header.Set("X-Api-Key", secret)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("direct call: HTTP %d", resp.StatusCode)
		}
		return nil
	}
	// run makes total calls with the agents in closed loops and returns
	// calls/s and the sorted latencies.
	run := func(total int, call func(*ecdsa.PrivateKey) error) (float64, []time.Duration) {
		var next atomic.Int64
		lat := make([]time.Duration, total)
		var wg sync.WaitGroup
		var failed atomic.Value
		start := time.Now()
		for i := range agents {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					j := next.Add(1) - 1
					if j >= int64(total) {
						return
					}
					t0 := time.Now()
					if err := call(keys[i]); err != nil {
						failed.Store(err)
						return
					}
					lat[j] = time.Since(t0)
				}
			}()
		}
		wg.Wait()
		el := time.Since(start)
		if err, _ := failed.Load().(error); err != nil {
			b.Fatal(err)
		}
		slices.Sort(lat)
		return float64(total) / el.Seconds(), lat
	}
	// open makes calls for d at rate calls/s in all, each agent on its own
	// fixed schedule (open loop: a call's latency counts from when it was
	// due, so a stall is charged to every call it delays), and returns
	// the sorted latencies.
	open := func(rate float64, d time.Duration, call func(*ecdsa.PrivateKey) error) []time.Duration {
		per := time.Duration(float64(time.Second) * agents / rate)
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		var failed atomic.Value
		start := time.Now()
		for i := range agents {
			wg.Add(1)
			go func() {
				defer wg.Done()
				due := start.Add(per * time.Duration(i) / agents)
				for due.Before(start.Add(d)) {
					time.Sleep(time.Until(due))
					if err := call(keys[i]); err != nil {
						failed.Store(err)
						return
					}
					l := time.Since(due)
					mu.Lock()
					lat = append(lat, l)
					mu.Unlock()
					due = due.Add(per)
				}
			}()
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			b.Fatal(err)
		}
		slices.Sort(lat)
		return lat
	}
	// Warm both paths (connections, caches).
	run(2*agents, direct)
	run(4*agents, proxied)
	b.ResetTimer()
	var dRate, pRate float64
	var dMed, pMed, pP99, dCPU, pCPU time.Duration
	rounds := 0
	for b.Loop() {
		c0 := cpuTime()
		dr, _ := run(2000, direct)
		c1 := cpuTime()
		pr, _ := run(2000, proxied)
		waitSettled(b, n)
		c2 := cpuTime()
		dCPU += (c1 - c0) / 2000
		pCPU += (c2 - c1) / 2000
		dRate += dr
		pRate += pr
		dl := open(proxyBenchRate, time.Second, direct)
		pl := open(proxyBenchRate, time.Second, proxied)
		dMed += dl[len(dl)/2]
		pMed += pl[len(pl)/2]
		pP99 += pl[len(pl)*99/100]
		rounds++
	}
	f := float64(rounds)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / f / 1000 }
	b.ReportMetric(dRate/f, "direct-calls/s")
	b.ReportMetric(pRate/f, "proxied-calls/s")
	b.ReportMetric(ms(dMed), "direct-p50-ms")
	b.ReportMetric(ms(pMed), "proxied-p50-ms")
	b.ReportMetric(ms(pMed-dMed), "added-p50-ms")
	b.ReportMetric(ms(pP99), "proxied-p99-ms")
	b.ReportMetric(float64(dCPU.Microseconds())/f, "direct-cpu-µs/call")
	b.ReportMetric(float64(pCPU.Microseconds())/f, "proxied-cpu-µs/call")
}

// cpuTime is the process's CPU time so far (user and system), which is
// everything in a benchmark whose server, upstream and clients share
// the process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// proxyBenchRate is the open loop's offered load (calls/s, all 64 agents
// together) at which the medians are compared.
const proxyBenchRate = 1000
