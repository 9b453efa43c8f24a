package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/spend/spendtest"
	"github.com/purserhq/purser/internal/store/sqlite"
	"github.com/purserhq/purser/internal/store/sqlstore"
	"github.com/purserhq/purser/internal/store/storetest"
)

func newStore(t *testing.T) spend.Store {
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "purser.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) { storetest.Run(t, newStore) }

func TestPipeline(t *testing.T) { spendtest.RunPipeline(t, newStore) }

func BenchmarkAuthorize64(b *testing.B) {
	s, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	spendtest.BenchAuthorize(b, s, 64)
}

// TestReopen: migrations run once from empty, a second start is a no-op,
// and what was committed survives a close.
func TestReopen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "purser.db")
	s, err := sqlite.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := spendtest.NewEnv(t, s)
	e.NewAgent("keep", `{"daily":"1"}`)
	s.Close()
	s2, err := sqlite.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if v, err := s2.SchemaVersion(ctx); err != nil || v != 8 {
		t.Fatalf("schema version %d, %v; want 8", v, err)
	}
	err = s2.Read(ctx, func(tx spend.Tx) error {
		_, err := tx.AgentGet(ctx, "keep")
		return err
	})
	if err != nil {
		t.Fatalf("agent lost across a restart: %v", err)
	}
	if seq, _, err := s2.AuditHead(ctx); err != nil || seq != 1 {
		t.Fatalf("audit head %d, %v after restart; want 1", seq, err)
	}
}

// TestObserver: every group transaction reports its callers and times,
// and every WAL fsync that releases answers reports too; the callers
// reported add up to the calls made.
func TestObserver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "purser.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var mu sync.Mutex
	var callers, batches, syncs int
	var slowest time.Duration
	s.SetObserver(sqlstore.Observer{
		Batch: func(n int, wait, run time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			callers += n
			batches++
			slowest = max(slowest, wait, run)
		},
		Sync: func(time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			syncs++
		},
	})
	const calls = 40
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			err := s.InTx(ctx, func(tx spend.Tx) error {
				_, err := tx.NonceUse(ctx, "agt_x", fmt.Sprintf("n%d", i), time.Now().Add(time.Minute))
				return err
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if callers != calls || batches < 1 || batches > calls {
		t.Fatalf("observer saw %d callers in %d batches; want %d callers", callers, batches, calls)
	}
	if syncs < 1 || syncs > batches {
		t.Fatalf("observer saw %d syncs for %d batches", syncs, batches)
	}
	if slowest <= 0 || slowest > time.Minute {
		t.Fatalf("implausible batch times: slowest %v", slowest)
	}
}
