package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/spend/spendtest"
	"github.com/purserhq/purser/internal/store/sqlite"
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
