package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/spend/spendtest"
	"github.com/purserhq/purser/internal/store/postgres"
	"github.com/purserhq/purser/internal/store/storetest"
)

func newStore(t *testing.T) spend.Store {
	s, err := postgres.Open(context.Background(), storetest.PostgresDSN(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) { storetest.Run(t, newStore) }

func TestPipeline(t *testing.T) { spendtest.RunPipeline(t, newStore) }

func BenchmarkAuthorize64(b *testing.B) {
	s, err := postgres.Open(context.Background(), storetest.PostgresDSN(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	spendtest.BenchAuthorize(b, s, 64)
}

// TestSimulation runs the seeded pipeline simulation on PostgreSQL too.
func TestSimulation(t *testing.T) {
	t.Parallel()
	e := spendtest.NewEnv(t, newStore(t), &spendtest.Rail{})
	spendtest.RunSimulation(t, e, uint64(time.Now().UnixNano()), 300)
}
