package spend_test

import (
	"context"
	"flag"
	"path/filepath"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/spend/spendtest"
	"github.com/purserhq/purser/internal/store/postgres"
	"github.com/purserhq/purser/internal/store/sqlite"
	"github.com/purserhq/purser/internal/store/storetest"
)

var (
	simSteps    = flag.Int("simsteps", 120, "steps of each seeded simulation run")
	simClients  = flag.Int("simclients", 4, "concurrent client operations per simulation step")
	simSeed     = flag.Uint64("simseed", 0, "seed of the simulation (0: new ones each run, printed on failure)")
	simSeeds    = flag.Int("simseeds", 2, "seeds to run, one after the other")
	simDuration = flag.Duration("simduration", 0, "run new seeds until this much time has passed (e.g. 5m); overrides -simseeds")
)

// TestSimulation runs the seeded simulation with concurrent clients and
// injected store faults (failures before and after commit, crashes with a
// close and reopen of the database file) on SQLite, and on PostgreSQL
// when PURSER_TEST_POSTGRES is set: short by default, for minutes with
// -simduration 5m (or -simseeds N, -simsteps N).
func TestSimulation(t *testing.T) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		simulate(t, *simSeeds, func(t *testing.T) func() (spend.Store, error) {
			path := filepath.Join(t.TempDir(), "sim.db")
			return func() (spend.Store, error) { return sqlite.Open(context.Background(), path, nil) }
		})
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		storetest.PostgresDSN(t) // skips without PURSER_TEST_POSTGRES
		seeds := *simSeeds
		if !flagGiven("simseeds") {
			seeds = 1 // a PostgreSQL round trip per statement: one seed keeps go test short
		}
		simulate(t, seeds, func(t *testing.T) func() (spend.Store, error) {
			dsn := storetest.PostgresDSN(t)
			return func() (spend.Store, error) { return postgres.Open(context.Background(), dsn, nil) }
		})
	})
}

func flagGiven(name string) bool {
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// simulate runs seeds seeds (or seeds for -simduration), each on a fresh
// database.
func simulate(t *testing.T, seeds int, opener func(t *testing.T) func() (spend.Store, error)) {
	deadline := time.Now().Add(*simDuration)
	for i := 0; ; i++ {
		if *simDuration > 0 && !time.Now().Before(deadline) || *simDuration == 0 && i >= seeds {
			return
		}
		seed := *simSeed + uint64(i)
		if *simSeed == 0 {
			seed = uint64(time.Now().UnixNano())
		}
		ok := t.Run("", func(t *testing.T) {
			spendtest.Simulate(t, spendtest.SimConfig{Seed: seed, Steps: *simSteps, Clients: *simClients, Open: opener(t)})
		})
		if !ok {
			return
		}
	}
}
