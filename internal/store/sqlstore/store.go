package sqlstore

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/purserhq/purser/internal/audit"
	"github.com/purserhq/purser/internal/spend"
)

// Dialect states what differs between the engines.
type Dialect struct {
	Name string
	// Numbered placeholders ($1, $2, …) instead of '?'.
	Numbered bool
	// LockRows is appended to SELECTs that must lock the rows they read
	// (" FOR UPDATE"); empty where the single writer already excludes
	// every other writer (SQLite).
	LockRows string
	// LockAgentAndKey locks the agents row (a) and then the agent_keys
	// row (k) of a join of the two. The key row is locked too, not only
	// read: on PostgreSQL (READ COMMITTED) a row that is read but not
	// locked comes from the statement's snapshot, taken before the agent's
	// lock was granted, so a request that waited on the lock while a
	// rotation revoked its key would still see the key active. A locked
	// row is re-read at its newest version once the lock is granted.
	// Agents first, in every statement, so that two batches never take
	// the two in opposite orders.
	LockAgentAndKey string
	// NowMicros is a query for the database's clock in Unix
	// microseconds.
	NowMicros string
	// Committers is how many batches may run at once.
	Committers int
	// MaxBatch bounds the callers grouped into one transaction.
	MaxBatch int
	// Linger is how long a committer may wait for more callers when its
	// batch is small and, at the recent arrival rate, another caller is
	// due within that time (zero: never wait). See fill.
	Linger time.Duration
	// Retryable reports errors after which the whole batch may be run
	// again (deadlock, serialization failure, busy).
	Retryable func(error) bool
	// CacheStatements keeps prepared statements per query (for drivers
	// that do not cache them themselves).
	CacheStatements bool
	// Pipeline, if set, sends qs (dialect SQL) on the transaction's
	// connection (driverConn, as sql.Conn.Raw passes it) in one round
	// trip, runs them in order, and calls each one's Row for its rows;
	// it returns the first error. Without it, txn.run sends them one by
	// one.
	Pipeline func(ctx context.Context, driverConn any, qs []Query) error
	// LockMigrations serialises migration across processes.
	LockMigrations func(ctx context.Context, c *sql.Conn) (unlock func(), err error)
}

// Options configures New.
type Options struct {
	Writer     *sql.DB // read-write pool (one connection for SQLite)
	Reader     *sql.DB // read-only pool; may be Writer
	Dialect    Dialect
	Migrations fs.FS // NNNN_name.up.sql files
	Logger     *slog.Logger
	// BatchTimeout is the deadline of one group transaction.
	BatchTimeout time.Duration
	// Maintain, if set, runs in its own goroutine until Close (SQLite
	// uses it to checkpoint the WAL off the commit path).
	Maintain func(ctx context.Context)
	// OnClose runs after the pools are closed.
	OnClose func() error
	// SyncCommit, if set, makes committed batches durable: the writer
	// commits without waiting for the disk, starts the next batch, and
	// a second goroutine calls SyncCommit (one fsync for every batch
	// committed since the last) before answering the batches' callers.
	// SQLite uses it to take the fsync off the writer's path. It must
	// be safe to call from several goroutines.
	SyncCommit func() error
	// BetweenBatches, if set, runs on the committer between batches
	// (SQLite restarts its WAL there, where no writer can be locked out).
	BetweenBatches func(ctx context.Context)
}

// Observer receives the group committer's measurements, for metrics. Its
// functions run on the committer and the syncer, so they must be quick.
type Observer struct {
	// Batch reports each group transaction: how many callers it had, how
	// long the oldest of them waited in the queue, and how long the
	// transaction took (re-runs and retries included).
	Batch func(callers int, wait, run time.Duration)
	// Sync reports how long each SyncCommit took.
	Sync func(d time.Duration)
}

// SetObserver installs o (safe while the store runs).
func (s *Store) SetObserver(o Observer) { s.observer.Store(&o) }

// Store is a spend.Store over database/sql.
type Store struct {
	w, r         *sql.DB
	d            Dialect
	log          *slog.Logger
	timeout      time.Duration
	queue        chan *request
	closing      chan struct{}
	drained      chan struct{} // closed once Close has answered every queued caller
	onClose      func() error
	stopMaintain context.CancelFunc
	wg           sync.WaitGroup
	once         sync.Once
	syncCommit   func() error
	between      func(ctx context.Context)
	syncQ        chan []*request // committed batches waiting for SyncCommit
	observer     atomic.Pointer[Observer]
	syncWG       sync.WaitGroup
	broken       atomic.Bool // SyncCommit failed: nothing more is accepted
	queries      sync.Map    // '?' query → dialect query
	stmtMu       sync.Mutex
	stmts        map[stmtKey]*sql.Stmt
	pending      map[stmtKey]struct{}
}

type stmtKey struct {
	db    *sql.DB
	query string
}

// prepare returns the prepared statement for query on db, or nil when it
// is not prepared yet. It never prepares while a transaction may hold the
// pool's only connection (SQLite has one writer): the query is queued and
// prepared by the committer between batches, when the connection is free.
func (s *Store) prepare(db *sql.DB, query string) *sql.Stmt {
	k := stmtKey{db, query}
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	if st, ok := s.stmts[k]; ok {
		return st
	}
	if len(s.pending) < 512 { // queries are a fixed set; this only guards against a bug
		s.pending[k] = struct{}{}
	}
	return nil
}

// preparePending prepares the queued statements; called with no
// transaction open.
func (s *Store) preparePending(ctx context.Context) {
	s.stmtMu.Lock()
	keys := make([]stmtKey, 0, len(s.pending))
	for k := range s.pending {
		keys = append(keys, k)
	}
	clear(s.pending)
	s.stmtMu.Unlock()
	for _, k := range keys {
		st, err := k.db.PrepareContext(ctx, k.query)
		if err != nil {
			s.log.Warn("store: prepare failed", "err", err)
			continue
		}
		s.stmtMu.Lock()
		if _, dup := s.stmts[k]; dup {
			st.Close()
		} else {
			s.stmts[k] = st
		}
		s.stmtMu.Unlock()
	}
}

var _ spend.Store = (*Store)(nil)

type request struct {
	ctx      context.Context
	queued   time.Time
	pre      *spend.Prefetch // nil: nothing to load up front
	fn       func(spend.Tx) error
	err      error
	excluded bool // dropped from its batch: err is final
	done     chan struct{}
}

// ErrClosed is returned by InTx after Close.
var ErrClosed = errors.New("sqlstore: store is closed")

// New migrates the database to the newest schema and starts the
// committers.
func New(ctx context.Context, o Options) (*Store, error) {
	if o.Reader == nil {
		o.Reader = o.Writer
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.BatchTimeout <= 0 {
		o.BatchTimeout = 10 * time.Second
	}
	if o.Dialect.Committers <= 0 {
		o.Dialect.Committers = 1
	}
	if o.Dialect.MaxBatch <= 0 {
		o.Dialect.MaxBatch = 64
	}
	s := &Store{w: o.Writer, r: o.Reader, d: o.Dialect, log: o.Logger, timeout: o.BatchTimeout,
		queue: make(chan *request, 4096), closing: make(chan struct{}), drained: make(chan struct{}), stmts: map[stmtKey]*sql.Stmt{}, pending: map[stmtKey]struct{}{}}
	if err := s.migrate(ctx, o.Migrations); err != nil {
		return nil, err
	}
	s.syncCommit, s.between = o.SyncCommit, o.BetweenBatches
	if s.syncCommit != nil {
		if err := s.syncCommit(); err != nil { // the migrations
			return nil, err
		}
		s.syncQ = make(chan []*request, 256)
		s.syncWG.Add(1)
		go s.syncLoop()
	}
	for range s.d.Committers {
		s.wg.Add(1)
		go s.commitLoop()
	}
	s.onClose = o.OnClose
	mctx, stop := context.WithCancel(context.Background())
	s.stopMaintain = stop
	if o.Maintain != nil {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); o.Maintain(mctx) }()
	}
	return s, nil
}

// Close stops the committers after the queued transactions ran and closes
// the pools.
func (s *Store) Close() error {
	err := ErrClosed
	s.once.Do(func() { err = s.close() })
	return err
}

func (s *Store) close() error {
	close(s.closing)
	s.stopMaintain()
	s.wg.Wait()
	if s.syncQ != nil {
		close(s.syncQ)
		s.syncWG.Wait()
	}
	// A caller that slipped into the queue after the committers drained
	// it must not wait forever.
	for {
		select {
		case r := <-s.queue:
			r.err = ErrClosed
			close(r.done)
			continue
		default:
		}
		break
	}
	close(s.drained)
	var errs []error
	s.stmtMu.Lock()
	for _, st := range s.stmts {
		errs = append(errs, st.Close())
	}
	s.stmtMu.Unlock()
	errs = append(errs, s.w.Close())
	if s.r != s.w {
		errs = append(errs, s.r.Close())
	}
	if s.onClose != nil {
		errs = append(errs, s.onClose())
	}
	return errors.Join(errs...)
}

// q rewrites a '?' query for the dialect (cached).
func (s *Store) q(query string) string {
	if !s.d.Numbered {
		return query
	}
	if v, ok := s.queries.Load(query); ok {
		return v.(string)
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	out := b.String()
	s.queries.Store(query, out)
	return out
}

// InTx implements spend.Store. The caller waits for the batch its fn ran
// in to commit (or fail); the batch has its own deadline, so the wait is
// bounded even when the caller's context has none. A caller whose context
// ended before its turn is skipped, so a vanished client never runs.
func (s *Store) InTx(ctx context.Context, fn func(spend.Tx) error) error {
	return s.InTxPrefetch(ctx, nil, fn)
}

// InTxPrefetch implements spend.Store: the batch loads (and locks) the
// rows its callers' hints name in a few set-based statements before any
// fn runs, and writes their spends and counters in a few multi-row
// statements after the last one (batch.go).
func (s *Store) InTxPrefetch(ctx context.Context, p *spend.Prefetch, fn func(spend.Tx) error) error {
	r := &request{ctx: ctx, queued: time.Now(), pre: p, fn: fn, done: make(chan struct{})}
	select {
	case <-s.closing:
		return ErrClosed
	default:
	}
	if s.broken.Load() {
		return errBroken
	}
	select {
	case s.queue <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return ErrClosed
	}
	select {
	case <-r.done:
		return r.err
	case <-s.drained:
		select {
		case <-r.done:
			return r.err
		default:
			return ErrClosed // queued after the last drain: it never ran
		}
	}
}

func (s *Store) commitLoop() {
	defer s.wg.Done()
	var rate arrivalRate
	for {
		var first *request
		select {
		case first = <-s.queue:
		case <-s.closing:
			// Drain what is queued so that no caller waits forever.
			for {
				select {
				case r := <-s.queue:
					s.answer([]*request{r}, s.runBatch([]*request{r}))
				default:
					return
				}
			}
		}
		batch := s.fill(first, &rate)
		start := time.Now()
		committed := s.runBatch(batch)
		if o := s.observer.Load(); o != nil && o.Batch != nil {
			o.Batch(len(batch), start.Sub(first.queued), time.Since(start))
		}
		s.answer(batch, committed)
		if s.d.CacheStatements {
			s.preparePendingOnce()
		}
		if s.between != nil {
			ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
			s.between(ctx)
			cancel()
		}
	}
}

// lingerBelow: batches of fewer callers than this may linger (Dialect.Linger).
const lingerBelow = 8

// fill adds queued callers to a batch that starts with first. A batch has
// a fixed cost several times a caller's (on SQLite ~180 µs against ~90 µs
// a caller: its statements run once per batch, and its commit writes the
// pages every caller shares), so under load a committer that takes the one
// caller in the queue spends most of its time on overhead: at 5,800
// authorizations/s two batches in three had a single caller. When the batch
// is small and another caller is due within Dialect.Linger at the recent
// arrival rate, fill waits that long, once, for more. A lightly loaded
// store never waits, since no caller is due; a busy one trades a fraction
// of a millisecond for fewer, fuller commits and less CPU per caller.
func (s *Store) fill(first *request, rate *arrivalRate) []*request {
	batch := []*request{first}
	lingered := s.d.Linger <= 0
	for len(batch) < s.d.MaxBatch {
		select {
		case r := <-s.queue:
			batch = append(batch, r)
			continue
		default:
		}
		if lingered || len(batch) >= lingerBelow || rate.perSec*s.d.Linger.Seconds() < 1 {
			break
		}
		lingered = true
		time.Sleep(s.d.Linger)
	}
	rate.observe(len(batch), time.Now())
	return batch
}

// arrivalRate estimates callers per second from the batches a committer
// takes: a moving average over about rateWindow of time (not of batches,
// so that after a pause the first batch alone resets it; under load the
// throughput is the arrival rate).
type arrivalRate struct {
	last   time.Time
	perSec float64
}

const rateWindow = 50 * time.Millisecond

func (a *arrivalRate) observe(n int, now time.Time) {
	if !a.last.IsZero() {
		if dt := now.Sub(a.last); dt > 0 {
			w := 1 - math.Exp(-float64(dt)/float64(rateWindow))
			a.perSec += w * (float64(n)/dt.Seconds() - a.perSec)
		}
	}
	a.last = now
}

// answer releases a batch's callers: at once, or, for a committed batch
// when commits are synced separately, once the sync covers it.
func (s *Store) answer(batch []*request, committed bool) {
	if committed && s.syncQ != nil {
		s.syncQ <- batch
		return
	}
	for _, r := range batch {
		close(r.done)
	}
}

// errBroken: a commit could not be made durable. What was committed may
// or may not survive a crash, so the store takes nothing more until an
// operator restarts it (and SQLite recovers its WAL).
var errBroken = &spend.Error{Code: spend.CodeUnavailable, Message: "the database could not make a commit durable; the server takes no more changes until it is restarted"}

// syncLoop makes committed batches durable, one SyncCommit for every
// batch that is waiting, and then answers their callers.
func (s *Store) syncLoop() {
	defer s.syncWG.Done()
	for first := range s.syncQ {
		batches := [][]*request{first}
	more:
		for {
			select {
			case b, ok := <-s.syncQ:
				if !ok {
					break more
				}
				batches = append(batches, b)
			default:
				break more
			}
		}
		start := time.Now()
		err := s.syncCommit()
		if o := s.observer.Load(); o != nil && o.Sync != nil {
			o.Sync(time.Since(start))
		}
		if err != nil {
			s.broken.Store(true)
			s.log.Error("store: commit could not be made durable; refusing further changes", "err", err)
		}
		for _, b := range batches {
			for _, r := range b {
				if err != nil && r.err == nil {
					r.err = errBroken
				}
				close(r.done)
			}
		}
	}
}

func (s *Store) preparePendingOnce() {
	s.stmtMu.Lock()
	n := len(s.pending)
	s.stmtMu.Unlock()
	if n == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	s.preparePending(ctx)
}

// runBatch runs the batch until it commits or fails for good, and
// reports whether it committed.
func (s *Store) runBatch(batch []*request) bool {
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		committed, err := s.tryBatch(ctx, batch)
		cancel()
		if err == nil {
			return committed
		}
		if errors.Is(err, errRerun) {
			attempt-- // each re-run excludes one more caller, so this ends
			continue
		}
		if s.d.Retryable != nil && s.d.Retryable(err) && attempt < 5 {
			s.log.Debug("store: retrying batch", "err", err, "attempt", attempt+1)
			time.Sleep(time.Duration(attempt+1) * time.Millisecond)
			continue
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = &spend.Error{Code: spend.CodeUnavailable, Message: "the database did not answer in time; nothing was changed"}
		}
		for _, r := range batch {
			// A caller refused inside the batch keeps its own refusal:
			// it was not going to commit anything anyway.
			if r.excluded || r.err != nil && isCoded(r.err) {
				continue
			}
			r.err = err
		}
		return false
	}
}

func isCoded(err error) bool { return spend.CodeOf(err) != "" }

// errRerun: a caller failed after writing, so the transaction holds part
// of its work; the batch is run again without it.
var errRerun = errors.New("sqlstore: re-run batch without a failed caller")

// tryBatch runs the batch in one transaction, optimistically without
// savepoints: a caller that refuses before writing anything (the common
// refusal: bad key, replayed nonce, conflict) just drops out; one that
// fails after writing makes the batch run again without it. A database
// error that loses the transaction fails (or retries) the whole batch.
func (s *Store) tryBatch(ctx context.Context, batch []*request) (committed bool, err error) {
	var conn *sql.Conn
	var beginner interface {
		BeginTx(context.Context, *sql.TxOptions) (*sql.Tx, error)
	} = s.w
	if s.d.Pipeline != nil { // pipelines need the transaction's own connection
		c, err := s.w.Conn(ctx)
		if err != nil {
			return false, fmt.Errorf("sqlstore: begin: %w", err)
		}
		defer c.Close()
		conn, beginner = c, c
	}
	sqlTx, err := beginner.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("sqlstore: begin: %w", err)
	}
	defer sqlTx.Rollback() //nolint:errcheck // after Commit this is a no-op
	for _, r := range batch {
		if !r.excluded && r.ctx.Err() != nil {
			r.err, r.excluded = r.ctx.Err(), true
		}
	}
	base := &txn{s: s, tx: sqlTx, conn: conn, ctx: ctx} // the batch's own statements
	b, err := base.prefetch(batch)
	if err != nil {
		return false, err
	}
	var events []*audit.Event
	ran := 0
	for _, r := range batch {
		if r.excluded {
			continue
		}
		r.err = nil
		if err := r.ctx.Err(); err != nil {
			r.err, r.excluded = err, true
			continue
		}
		t := &txn{s: s, tx: sqlTx, conn: conn, ctx: ctx, b: b, req: r}
		ferr := r.fn(t)
		if t.dbErr != nil && (s.d.Retryable != nil && s.d.Retryable(t.dbErr) || ctx.Err() != nil) {
			return false, t.dbErr // the transaction is lost: retry or fail the whole batch
		}
		if ferr != nil {
			r.err = ferr
			if t.wrote || t.dbErr != nil {
				r.excluded = true
				return false, errRerun
			}
			continue
		}
		b.merge(t)
		events = append(events, t.events...)
		ran++
	}
	if ran == 0 {
		return false, nil
	}
	// The buffered writes and the chain head's read go in one pipeline,
	// the audit inserts and the head's update in a second.
	final, err := base.flushQueries(b)
	if err != nil {
		return false, err
	}
	var head chainHead
	if len(events) > 0 {
		final = append(final, s.headQuery(&head))
	}
	if err := base.run(final); err != nil {
		return false, fmt.Errorf("sqlstore: write spends and counters, read audit head: %w", err)
	}
	b.flushed()
	if len(events) > 0 {
		if err := s.appendEvents(base, head, events); err != nil {
			return false, err
		}
	}
	if err := sqlTx.Commit(); err != nil {
		return false, fmt.Errorf("sqlstore: commit: %w", err)
	}
	return true, nil
}

// chainHead is the audit chain's head row as a batch read it.
type chainHead struct {
	seq  int64
	hash string
	read bool
}

// headQuery reads (and locks) the chain head into h. The head row is
// locked only at the end of the batch, so that concurrent batches (and
// processes) serialise on the chain for as short as possible.
func (s *Store) headQuery(h *chainHead) Query {
	return Query{SQL: "SELECT seq, hash FROM audit_head WHERE id = 1" + s.d.LockRows, Row: func(sc Scanner) error {
		h.read = true
		return sc.Scan(&h.seq, &h.hash)
	}}
}

// appendEvents links events to the chain head h and inserts them. The
// inserts go in power-of-two chunks so that each is a cached prepared
// statement (parsing a 50-row insert each batch was 8 % of the SQLite
// writer's time).
func (s *Store) appendEvents(t *txn, h chainHead, events []*audit.Event) error {
	if !h.read {
		return errors.New("sqlstore: read audit head: no head row")
	}
	prev, err := decodeHash(h.hash)
	if err != nil {
		return fmt.Errorf("sqlstore: audit head: %w", err)
	}
	seq := h.seq
	for _, e := range events {
		seq++
		e.Seq = seq
		if err := e.Seal(prev); err != nil {
			return fmt.Errorf("sqlstore: seal audit event: %w", err)
		}
		prev = e.Hash
	}
	const cols = 9
	var qs []Query
	for off, n := range chunks(len(events)) {
		args := make([]any, 0, n*cols)
		for _, e := range events[off : off+n] {
			args = append(args, e.Seq, e.Time.UnixMicro(), e.Actor.Type, e.Actor.ID, e.Action, e.Subject,
				string(e.Details), hex.EncodeToString(e.PrevHash[:]), hex.EncodeToString(e.Hash[:]))
		}
		qs = append(qs, Query{SQL: "INSERT INTO audit_events (seq, at, actor_type, actor_id, action, subject, details, prev_hash, hash) VALUES " + valuesList(n, cols), Args: args})
	}
	qs = append(qs, Query{SQL: "UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", Args: []any{seq, hex.EncodeToString(prev[:])}})
	if err := t.run(qs); err != nil {
		return fmt.Errorf("sqlstore: append audit events: %w", err)
	}
	return nil
}

func decodeHash(h string) ([32]byte, error) {
	var out [32]byte
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 32 {
		return out, fmt.Errorf("bad hash %q", h)
	}
	copy(out[:], b)
	return out, nil
}

// Read implements spend.Store.
func (s *Store) Read(ctx context.Context, fn func(spend.Tx) error) error {
	sqlTx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("sqlstore: begin read: %w", err)
	}
	defer sqlTx.Rollback() //nolint:errcheck // read-only
	return fn(&txn{s: s, tx: sqlTx, ctx: ctx, readOnly: true})
}

// AuditEvents implements spend.Store.
func (s *Store) AuditEvents(ctx context.Context, afterSeq int64, limit int) ([]*audit.Event, error) {
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT seq, at, actor_type, actor_id, action, subject, details, prev_hash, hash
		FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?`), afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: audit events: %w", err)
	}
	defer rows.Close()
	var out []*audit.Event
	for rows.Next() {
		var e audit.Event
		var at int64
		var details, prev, hash string
		if err := rows.Scan(&e.Seq, &at, &e.Actor.Type, &e.Actor.ID, &e.Action, &e.Subject, &details, &prev, &hash); err != nil {
			return nil, err
		}
		e.Time = time.UnixMicro(at).UTC()
		e.Details = []byte(details)
		// A stored hash that does not decode is tampering; let the
		// verifier report it at this seq rather than failing the read.
		e.PrevHash, _ = decodeHash(prev)
		e.Hash, _ = decodeHash(hash)
		out = append(out, &e)
	}
	return out, rows.Err()
}

// AuditHead implements spend.Store.
func (s *Store) AuditHead(ctx context.Context) (int64, [32]byte, error) {
	var seq int64
	var h string
	if err := s.r.QueryRowContext(ctx, "SELECT seq, hash FROM audit_head WHERE id = 1").Scan(&seq, &h); err != nil {
		return 0, [32]byte{}, fmt.Errorf("sqlstore: audit head: %w", err)
	}
	hash, err := decodeHash(h)
	return seq, hash, err
}

// CheckpointAdd implements spend.Store.
func (s *Store) CheckpointAdd(ctx context.Context, c audit.Checkpoint) error {
	_, err := s.w.ExecContext(ctx, s.q(`INSERT INTO audit_checkpoints (seq, hash, at, key_id, signature) VALUES (?,?,?,?,?)
		ON CONFLICT (seq) DO NOTHING`), c.Seq, hex.EncodeToString(c.Hash[:]), c.Time.UnixMicro(), c.KeyID, hex.EncodeToString(c.Signature))
	if err != nil {
		return fmt.Errorf("sqlstore: add checkpoint: %w", err)
	}
	if s.syncCommit != nil {
		return s.syncCommit() // outside a batch, so nobody else syncs it
	}
	return nil
}

// Checkpoints implements spend.Store.
func (s *Store) Checkpoints(ctx context.Context, uptoSeq int64) ([]audit.Checkpoint, error) {
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT seq, hash, at, key_id, signature FROM audit_checkpoints WHERE seq <= ? ORDER BY seq`), uptoSeq)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: checkpoints: %w", err)
	}
	defer rows.Close()
	var out []audit.Checkpoint
	for rows.Next() {
		c, err := scanCheckpoint(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// CheckpointLast implements spend.Store.
func (s *Store) CheckpointLast(ctx context.Context) (*audit.Checkpoint, error) {
	c, err := scanCheckpoint(s.r.QueryRowContext(ctx, `SELECT seq, hash, at, key_id, signature FROM audit_checkpoints ORDER BY seq DESC LIMIT 1`))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: last checkpoint: %w", err)
	}
	return &c, nil
}

// scanCheckpoint reads one checkpoint row. A stored hash or signature that
// does not decode is tampering: the verifier reports it at its seq.
func scanCheckpoint(sc Scanner) (audit.Checkpoint, error) {
	var c audit.Checkpoint
	var h, sig string
	var at int64
	if err := sc.Scan(&c.Seq, &h, &at, &c.KeyID, &sig); err != nil {
		return c, err
	}
	c.Hash, _ = decodeHash(h)
	c.Time = time.UnixMicro(at).UTC()
	c.Signature, _ = hex.DecodeString(sig)
	return c, nil
}

// migrate applies the embedded NNNN_name.up.sql files that are newer than
// the database, each in its own transaction.
func (s *Store) migrate(ctx context.Context, migrations fs.FS) error {
	names, err := fs.Glob(migrations, "*.up.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlstore: migrate: %w", err)
	}
	defer conn.Close()
	if s.d.LockMigrations != nil {
		unlock, err := s.d.LockMigrations(ctx, conn)
		if err != nil {
			return fmt.Errorf("sqlstore: migration lock: %w", err)
		}
		defer unlock()
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("sqlstore: migrations table: %w", err)
	}
	var current int64
	if err := conn.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("sqlstore: schema version: %w", err)
	}
	for _, name := range names {
		v, err := strconv.ParseInt(strings.SplitN(name, "_", 2)[0], 10, 64)
		if err != nil {
			return fmt.Errorf("sqlstore: migration %s: name must start with a number", name)
		}
		if v <= current {
			continue
		}
		body, err := fs.ReadFile(migrations, name)
		if err != nil {
			return err
		}
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		for _, stmt := range splitSQL(string(body)) {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				tx.Rollback() //nolint:errcheck
				return fmt.Errorf("sqlstore: migration %s: %w", name, err)
			}
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`), v, name, time.Now().UnixMicro()); err != nil {
			tx.Rollback() //nolint:errcheck
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("sqlstore: migration %s: %w", name, err)
		}
		s.log.Info("applied migration", "name", name)
	}
	return nil
}

// SchemaVersion returns the newest applied migration.
func (s *Store) SchemaVersion(ctx context.Context) (int64, error) {
	var v int64
	err := s.r.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

// splitSQL splits a migration into statements at semicolons that end a
// line, dropping comment lines. Migrations keep to that form.
func splitSQL(body string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(body, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(t, ";") {
			out = append(out, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	if strings.TrimSpace(cur.String()) != "" {
		out = append(out, cur.String())
	}
	return out
}

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.w.PingContext(ctx) }
