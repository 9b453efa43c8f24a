package spend_test

import (
	"context"
	"flag"
	"path/filepath"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/spend/spendtest"
	"github.com/purserhq/purser/internal/store/sqlite"
)

var (
	simSteps = flag.Int("simsteps", 400, "steps of the seeded pipeline simulation")
	simSeed  = flag.Uint64("simseed", 0, "seed of the simulation (0: a new one each run, printed on failure)")
)

// TestSimulation runs the seeded simulation on SQLite: short by default,
// longer with -run Sim -simsteps=N.
func TestSimulation(t *testing.T) {
	t.Parallel()
	seed := *simSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "sim.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e := spendtest.NewEnv(t, st, &spendtest.Rail{})
	spendtest.RunSimulation(t, e, seed, *simSteps)
}
