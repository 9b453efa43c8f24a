package app

import (
	"time"

	"github.com/purserhq/purser/internal/metrics"
	"github.com/purserhq/purser/internal/store/sqlstore"
)

// storeBuckets cover 0.1 ms to 1 s: a group commit takes milliseconds.
var storeBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}

// observeStore exports the group committer's measurements: how full its
// batches are, how long callers wait for one, how long a batch and a
// WAL fsync take. They tell an operator whether latency comes from the
// database (batch, sync) or from a backlog (wait).
func observeStore(reg *metrics.Registry, st *sqlstore.Store) {
	callers := reg.NewHistogramVec("purser_store_batch_callers", "Callers (authorizations, owner actions) per group transaction.",
		[]float64{1, 2, 4, 8, 16, 32, 64, 128})
	wait := reg.NewHistogramVec("purser_store_queue_wait_seconds", "How long the oldest caller of a group transaction waited for it to start.", storeBuckets)
	run := reg.NewHistogramVec("purser_store_batch_duration_seconds", "Duration of a group transaction, commit included.", storeBuckets)
	sync := reg.NewHistogramVec("purser_store_sync_duration_seconds", "Duration of the fsync that makes committed batches durable before their callers are answered (SQLite).", storeBuckets)
	st.SetObserver(sqlstore.Observer{
		Batch: func(n int, w, r time.Duration) {
			callers.ObserveValue(float64(n))
			wait.Observe(w)
			run.Observe(r)
		},
		Sync: func(d time.Duration) { sync.Observe(d) },
	})
}
