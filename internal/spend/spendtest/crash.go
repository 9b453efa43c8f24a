package spendtest

import (
	"context"
	"errors"
	"sync"

	"github.com/purserhq/purser/internal/audit"
	"github.com/purserhq/purser/internal/spend"
)

// Fault is where an injected failure strikes a write transaction.
type Fault int

const (
	FaultNone Fault = iota
	// FaultBeforeCommit runs the transaction's work, then fails it: nothing
	// is committed and the caller sees an error.
	FaultBeforeCommit
	// FaultAfterCommit commits the transaction, then fails the call: the
	// caller sees an error although everything is durable (the answer was
	// lost on the way).
	FaultAfterCommit
	// FaultStop crashes the store: the transaction commits or not (as
	// armed), and every later call fails with ErrStopped until the store
	// is reopened (Replace).
	FaultStop
)

func (f Fault) String() string {
	return [...]string{"none", "before-commit", "after-commit", "stop"}[f]
}

var (
	// ErrInjected is the error of a transaction a fault struck.
	ErrInjected = errors.New("spendtest: injected store failure")
	// ErrStopped is the error of every call to a stopped store.
	ErrStopped = errors.New("spendtest: store stopped (simulated crash)")
)

// CrashStore wraps a spend.Store and fails a chosen write transaction at
// a chosen point (Arm). Reads pass through until the store stops.
type CrashStore struct {
	mu      sync.Mutex
	inner   spend.Store
	fault   Fault
	skip    int  // write transactions to let through before the fault strikes
	commit  bool // FaultStop: whether the striking transaction commits
	stopped bool
	struck  map[Fault]int
}

var _ spend.Store = (*CrashStore)(nil)

// NewCrashStore wraps st.
func NewCrashStore(st spend.Store) *CrashStore {
	return &CrashStore{inner: st, struck: map[Fault]int{}}
}

// Arm makes the write transaction after the next skip ones fail with f;
// commit says whether a FaultStop transaction commits first.
func (c *CrashStore) Arm(f Fault, skip int, commit bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fault, c.skip, c.commit = f, skip, commit
}

// Disarm cancels a fault that has not struck.
func (c *CrashStore) Disarm() { c.Arm(FaultNone, 0, false) }

// Stopped reports whether a FaultStop struck and the store is down.
func (c *CrashStore) Stopped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopped
}

// Inner returns the wrapped store.
func (c *CrashStore) Inner() spend.Store {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inner
}

// Replace puts a reopened store in place of the stopped one.
func (c *CrashStore) Replace(st spend.Store) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inner, c.stopped, c.fault = st, false, FaultNone
}

// Struck returns how many faults of each kind struck.
func (c *CrashStore) Struck() map[Fault]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[Fault]int{}
	for k, v := range c.struck {
		out[k] = v
	}
	return out
}

// next decides the fate of one write transaction.
func (c *CrashStore) next() (inner spend.Store, f Fault, commit bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil, FaultNone, false, ErrStopped
	}
	if c.fault != FaultNone {
		if c.skip > 0 {
			c.skip--
		} else {
			f, commit = c.fault, c.commit
			c.fault = FaultNone
			c.struck[f]++
			if f == FaultStop {
				c.stopped = true
			}
		}
	}
	return c.inner, f, commit, nil
}

func (c *CrashStore) write(run func(st spend.Store, fn func(spend.Tx) error) error, fn func(spend.Tx) error) error {
	st, f, commit, err := c.next()
	if err != nil {
		return err
	}
	switch {
	case f == FaultBeforeCommit || f == FaultStop && !commit:
		err := run(st, func(tx spend.Tx) error {
			if err := fn(tx); err != nil {
				return err
			}
			return ErrInjected
		})
		if errors.Is(err, ErrInjected) || err == nil {
			return ErrInjected
		}
		return err
	case f == FaultAfterCommit || f == FaultStop:
		if err := run(st, fn); err != nil {
			return err
		}
		return ErrInjected
	}
	return run(st, fn)
}

func (c *CrashStore) live() (spend.Store, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil, ErrStopped
	}
	return c.inner, nil
}

// InTx runs fn, unless a fault strikes it.
func (c *CrashStore) InTx(ctx context.Context, fn func(tx spend.Tx) error) error {
	return c.write(func(st spend.Store, fn func(spend.Tx) error) error { return st.InTx(ctx, fn) }, fn)
}

// InTxPrefetch runs fn, unless a fault strikes it.
func (c *CrashStore) InTxPrefetch(ctx context.Context, p *spend.Prefetch, fn func(tx spend.Tx) error) error {
	return c.write(func(st spend.Store, fn func(spend.Tx) error) error { return st.InTxPrefetch(ctx, p, fn) }, fn)
}

// Read passes through while the store is up.
func (c *CrashStore) Read(ctx context.Context, fn func(tx spend.Tx) error) error {
	st, err := c.live()
	if err != nil {
		return err
	}
	return st.Read(ctx, fn)
}

// AuditEvents passes through while the store is up.
func (c *CrashStore) AuditEvents(ctx context.Context, afterSeq int64, limit int) ([]*audit.Event, error) {
	st, err := c.live()
	if err != nil {
		return nil, err
	}
	return st.AuditEvents(ctx, afterSeq, limit)
}

// AuditHead passes through while the store is up.
func (c *CrashStore) AuditHead(ctx context.Context) (int64, [32]byte, error) {
	st, err := c.live()
	if err != nil {
		return 0, [32]byte{}, err
	}
	return st.AuditHead(ctx)
}

// CheckpointAdd passes through while the store is up.
func (c *CrashStore) CheckpointAdd(ctx context.Context, cp audit.Checkpoint) error {
	st, err := c.live()
	if err != nil {
		return err
	}
	return st.CheckpointAdd(ctx, cp)
}

// Checkpoints passes through while the store is up.
func (c *CrashStore) Checkpoints(ctx context.Context, uptoSeq int64) ([]audit.Checkpoint, error) {
	st, err := c.live()
	if err != nil {
		return nil, err
	}
	return st.Checkpoints(ctx, uptoSeq)
}

// Close closes the wrapped store.
func (c *CrashStore) Close() error { return c.Inner().Close() }
