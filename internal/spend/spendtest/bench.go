package spendtest

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/purserhq/purser/internal/spend"
)

// BenchAuthorize measures in-process authorizations (no HTTP, no
// signature check) against st with `agents` concurrent agents, each with
// its own generous mandate: the pipeline plus durable group commits.
func BenchAuthorize(b *testing.B, st spend.Store, agents int) {
	e := NewEnv(b, st)
	as := make([]*Agent, agents)
	for i := range as {
		as[i] = e.NewAgent(fmt.Sprintf("bench-%d", i), `{"per_tx_max":"1","daily":"1000000","lifetime":"1000000"}`)
	}
	var next atomic.Int64
	b.SetParallelism((agents + 1) / 2) // GOMAXPROCS is 2 here: 2*ceil(agents/2) goroutines
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		a := as[int(next.Add(1)-1)%agents]
		for pb.Next() {
			out, err := a.Authorize(Custom("0.01"))
			if err != nil || out.Spend.Status != spend.StatusAuthorized {
				b.Errorf("authorize: %v %v", err, out)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "auth/s")
}
