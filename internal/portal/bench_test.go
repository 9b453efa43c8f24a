package portal

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/audit"
	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/spend/spendtest"
)

// benchSpends is how many spends the benchmark's database holds.
const benchSpends = 100_000

// fillSpends writes n paid spends over the last 30 days, spread over the
// agents, with their budget counters and one audit event each, straight
// through the store (the pipeline would take minutes for 100,000).
func fillSpends(b *testing.B, env *spendtest.Env, agents []*spendtest.Agent, n int) {
	b.Helper()
	ctx := context.Background()
	now := env.Clock.Now().UTC()
	const batch = 2000
	for start := 0; start < n; start += batch {
		err := env.Store.InTx(ctx, func(tx spend.Tx) error {
			usage := map[string]map[string]*big.Int{}
			for i := start; i < min(start+batch, n); i++ {
				a := agents[i%len(agents)]
				at := now.Add(-time.Duration(i%(30*24*60)) * time.Minute).Truncate(time.Microsecond)
				amt := big.NewInt(int64(10_000 + i%990_000)) // $0.01 … $1
				day := at.Format(time.DateOnly)
				sp := &spend.Spend{ID: fmt.Sprintf("sp_bench%08d", i), AgentID: a.ID, Rail: "custom", Host: "api.example",
					Payee: "0x000000000000000000000000000000000000dEaD", Asset: "USDC", Network: "eip155:8453",
					Amount: amt, AmountUSD: amt, Captured: amt, CapturedUSD: amt, Status: spend.StatusCaptured,
					MandateVersion: 1, DayKey: day, Memo: "benchmark", IntentSig: "0x00", IntentNonce: fmt.Sprintf("0x%064x", i),
					CreatedAt: at, UpdatedAt: at}
				if err := tx.SpendCreate(ctx, sp); err != nil {
					return err
				}
				if usage[a.ID] == nil {
					usage[a.ID] = map[string]*big.Int{}
				}
				w := "day:" + day
				if usage[a.ID][w] == nil {
					usage[a.ID][w] = new(big.Int)
				}
				usage[a.ID][w].Add(usage[a.ID][w], amt)
				details, _ := json.Marshal(map[string]any{"spend_id": sp.ID, "agent_id": a.ID, "amount_usd": "0.01"})
				if err := tx.AuditAppend(ctx, &audit.Event{Time: at, Actor: audit.Actor{Type: "agent", ID: a.ID}, Action: "spend.capture",
					Subject: "spend:" + sp.ID, Details: details}); err != nil {
					return err
				}
			}
			for id, ws := range usage {
				for w, v := range ws {
					if err := tx.UsageAdd(ctx, id, []string{w}, v); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPages renders each page server-side with 100,000 spends (and
// as many audit events) in the database. Each must stay under 100 ms.
func BenchmarkPages(b *testing.B) {
	bd := setup(b)
	var agents []*spendtest.Agent
	for i := range 20 {
		agents = append(agents, bd.env.NewAgent(fmt.Sprintf("agent-%02d", i), `{"daily":"100000","per_tx_auto":"2"}`))
	}
	fillSpends(b, bd.env, agents, benchSpends)
	for range 30 { // a queue of pending approvals
		agents[0].MustAuthorize(spendtest.Custom("5"))
	}
	if _, err := bd.env.Svc.Checkpoint(context.Background()); err != nil {
		b.Fatal(err)
	}
	rare := agents[len(agents)-1].ID
	for _, p := range []struct{ name, path string }{
		{"overview", "/"},
		{"agents", "/agents"},
		{"agent", "/agents/" + agents[3].ID},
		{"approvals", "/approvals"},
		{"audit", "/audit"},
		{"audit-filtered", "/audit?action=spend.capture&agent=" + rare},
		{"audit-deep-page", "/audit?before=50000"},
	} {
		b.Run(p.name, func(b *testing.B) {
			h := bd.portal.Handler()
			get := func() time.Duration {
				req := httptest.NewRequest(http.MethodGet, p.path, nil)
				req.Host = "localhost:8402"
				req.AddCookie(&http.Cookie{Name: "sess", Value: bd.auth.cookie})
				w := httptest.NewRecorder()
				start := time.Now()
				h.ServeHTTP(w, req)
				d := time.Since(start)
				if w.Code != http.StatusOK {
					b.Fatalf("GET %s: %d %s", p.path, w.Code, w.Body.String())
				}
				return d
			}
			// The first read after the bulk load warms SQLite's page
			// cache; a server that has been running has it warm.
			get()
			var total time.Duration
			for b.Loop() {
				total += get()
			}
			mean := total / time.Duration(b.N)
			b.ReportMetric(float64(mean.Microseconds())/1000, "ms/page")
			if mean > 100*time.Millisecond {
				b.Errorf("GET %s takes %v on average with %d spends: over 100 ms", p.path, mean, benchSpends)
			}
		})
	}
}
