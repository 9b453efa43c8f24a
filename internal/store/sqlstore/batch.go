package sqlstore

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"iter"
	"math/big"
	"strings"
	"sync"

	"github.com/purserhq/purser/internal/spend"
)

// Set-based group transactions.
//
// A group transaction used to run each caller's statements one by one:
// about five per authorization (lock the agent, spend the nonce, read the
// counters, insert the spend, write the counters). On PostgreSQL each was
// a round trip, on SQLite a trip through database/sql and the VDBE; both
// cost more than the work itself. Now a batch
//
//  1. loads what its callers' hints (spend.Prefetch) name for all of them
//     at once: one statement locks every agent (in id order, so two
//     committers never deadlock on each other), one spends every nonce,
//     one finds every idempotency key, one reads every budget counter;
//  2. runs the callers' fns, which read through the batch (batchState)
//     and buffer their spend inserts and counter writes;
//  3. writes the buffered rows in a few multi-row statements.
//
// The counters are read by a statement that starts after the lock
// statement has returned, so on PostgreSQL (READ COMMITTED: a fresh
// snapshot per statement) they include every transaction that held one of
// those locks before us: reading them beside the lock would not
// (docs/performance.md).
//
// What a fn sees must be exactly what it would see if each earlier
// caller's statements had run one by one: its own buffered writes, then
// the batch's, then the prefetched rows, then the database. A statement
// the batch does not buffer first writes out everything buffered (flush)
// and, if it writes, drops the prefetched rows, which may be stale after
// it; later reads go to the database.

type idemKey struct{ agentID, key string }

type usageKey struct{ agentID, win string }

type nonceKey struct {
	expires int64
	nonce   string
}

type lockedKey struct {
	agent *spend.Agent
	key   *spend.AgentKey
}

// nonceResult is what the batch's nonce insert found for one caller.
type nonceResult struct {
	agentID string
	key     nonceKey
	fresh   bool
}

// batchState is what the callers of one attempt at a group transaction
// share.
type batchState struct {
	// Prefetched rows; valid until the first flush or unbuffered write.
	valid   bool
	keys    map[string]*lockedKey // identity address → agent and key; nil: no such key
	idem    map[idemKey]string    // spend id under a key ("": none)
	usageDB map[usageKey]*big.Int // counters as stored (zero if absent)
	// Nonces the batch spent, per caller; permanent for the attempt.
	nonces map[*request]nonceResult
	// Writes of callers that succeeded, not yet in the database.
	spends    []*spend.Spend
	spendByID map[string]*spend.Spend
	spendIdem map[idemKey]string
	usage     usageSet
}

func newBatchState() *batchState {
	return &batchState{
		keys: map[string]*lockedKey{}, idem: map[idemKey]string{}, usageDB: map[usageKey]*big.Int{},
		nonces: map[*request]nonceResult{}, spendByID: map[string]*spend.Spend{}, spendIdem: map[idemKey]string{},
	}
}

// invalidate drops the prefetched rows.
func (b *batchState) invalidate() {
	if b.valid {
		b.valid = false
		clear(b.keys)
		clear(b.idem)
		clear(b.usageDB)
	}
}

// pending is one caller's buffered writes, merged into the batch when
// its fn succeeds and dropped when it fails.
type pending struct {
	spends []*spend.Spend
	usage  usageSet
}

func (p *pending) empty() bool { return len(p.spends) == 0 && len(p.usage.order) == 0 }

// usageSet is counter values in the order they were first set: each key
// once, since a multi-row upsert may not touch a row twice.
type usageSet struct {
	vals  map[usageKey]*big.Int
	order []usageKey
}

func (u *usageSet) put(k usageKey, v *big.Int) {
	if u.vals == nil {
		u.vals = map[usageKey]*big.Int{}
	}
	if _, ok := u.vals[k]; !ok {
		u.order = append(u.order, k)
	}
	u.vals[k] = v
}

func (u *usageSet) reset() {
	u.order = nil
	clear(u.vals)
}

func (b *batchState) merge(t *txn) {
	p := &t.pend
	for _, sp := range p.spends {
		b.addSpend(sp)
	}
	for _, k := range p.usage.order {
		b.usage.put(k, p.usage.vals[k])
	}
	*p = pending{}
}

func (b *batchState) addSpend(sp *spend.Spend) {
	b.spendByID[sp.ID] = sp
	b.spends = append(b.spends, sp)
	if sp.IdempotencyKey != "" {
		b.spendIdem[idemKey{sp.AgentID, sp.IdempotencyKey}] = sp.ID
	}
}

func cloneSpend(sp *spend.Spend) *spend.Spend {
	c := *sp
	for _, v := range []**big.Int{&c.Amount, &c.AmountUSD, &c.Captured, &c.CapturedUSD} {
		if *v != nil {
			*v = new(big.Int).Set(*v)
		}
	}
	c.Reasons = append([]string(nil), sp.Reasons...)
	if sp.Reasons != nil && c.Reasons == nil {
		c.Reasons = []string{}
	}
	c.RailRequest = append(json.RawMessage(nil), sp.RailRequest...)
	c.RailData = append(json.RawMessage(nil), sp.RailData...)
	return &c
}

// maxIn bounds the IN lists and multi-row statements; batches are
// smaller than this (MaxBatch).
const maxIn = 128

// pow2 rounds n up to a power of two: padded to it, IN lists of every
// batch size need only a handful of statement texts (each prepared once).
func pow2(n int) int {
	size := 1
	for size < n {
		size *= 2
	}
	return size
}

// placeholders returns "(?,?,…)" for an IN list of n values padded to
// pow2(n) marks, and that size; pad fills the extra marks.
func placeholders(n int) (string, int) {
	size := pow2(n)
	return valuesList(1, size), size
}

// pad extends args, rows of cols values, to size rows by repeating the
// last row, which an IN list ignores.
func pad(args []any, cols, size int) []any {
	for len(args) < cols*size {
		args = append(args, args[len(args)-cols:]...)
	}
	return args
}

// chunks splits n rows into power-of-two chunks (largest first, each at
// most maxIn) for multi-row statements, which cannot be padded, and
// yields each chunk's offset and size.
func chunks(n int) iter.Seq2[int, int] {
	return func(yield func(off, size int) bool) {
		for off := 0; off < n; {
			size := maxIn
			for size > n-off {
				size /= 2
			}
			if !yield(off, size) {
				return
			}
			off += size
		}
	}
}

// valuesList returns rows "(?,…)" tuples of cols marks. Batches ask for a
// handful of shapes (power-of-two row counts), each built once.
func valuesList(rows, cols int) string {
	k := [2]int{rows, cols}
	if v, ok := valuesLists.Load(k); ok {
		return v.(string)
	}
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + ")"
	v := strings.TrimSuffix(strings.Repeat(row+",", rows), ",")
	valuesLists.Store(k, v)
	return v
}

var valuesLists sync.Map // [2]int{rows, cols} → string

// prefetch loads and locks what the batch's hints name. Requests without
// a hint (or excluded) are left to read as usual.
func (t *txn) prefetch(batch []*request) (*batchState, error) {
	s := t.s
	b := newBatchState()
	var addrs []any
	seen := map[string]bool{}
	for _, r := range batch {
		if r.excluded || r.pre == nil || seen[r.pre.Address] {
			continue
		}
		seen[r.pre.Address] = true
		addrs = append(addrs, r.pre.Address)
	}
	if len(addrs) == 0 || len(addrs) > maxIn {
		return b, nil
	}
	b.valid = true
	for _, a := range addrs {
		b.keys[a.(string)] = nil
	}

	// 1. Lock the agents, in id order, and their keys named (each after
	// its agent: Dialect.LockAgentAndKey says why the key rows too).
	in, size := placeholders(len(addrs))
	var agentIDs []any
	agentSeen := map[string]bool{}
	err := t.each(s.q(`SELECT `+agentCols+`, k.address, k.created_at, k.revoked_at
		FROM agent_keys k JOIN agents a ON a.id = k.agent_id WHERE k.address IN `+in+` ORDER BY a.id, k.address`+s.d.LockAgentAndKey), pad(addrs, 1, size), func(rows *sql.Rows) error {
		var k spend.AgentKey
		var created int64
		var revoked sql.NullInt64
		a, err := scanAgent(rows, &k.Address, &created, &revoked)
		if err != nil {
			return err
		}
		k.AgentID, k.CreatedAt = a.ID, fromMicros(created)
		if revoked.Valid {
			r := fromMicros(revoked.Int64)
			k.RevokedAt = &r
		}
		if !agentSeen[a.ID] { // an agent may have two keys: a revoked and a new one
			agentSeen[a.ID] = true
			agentIDs = append(agentIDs, a.ID)
		}
		b.keys[k.Address] = &lockedKey{agent: a, key: &k}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlstore: prefetch agents: %w", err)
	}
	if len(agentIDs) == 0 {
		return b, nil
	}

	// 2. Spend the nonces. The first caller of a nonce gets it; a second
	// caller in the batch, or any caller of a nonce already stored, is a
	// replay.
	var nrows []nonceResult
	var nreqs []*request
	for _, r := range batch {
		if r.excluded || r.pre == nil || r.pre.Nonce == "" {
			continue
		}
		lk := b.keys[r.pre.Address]
		if lk == nil {
			continue
		}
		nrows = append(nrows, nonceResult{agentID: lk.agent.ID, key: nonceKey{micros(r.pre.NonceExpires), r.pre.Nonce}})
		nreqs = append(nreqs, r)
	}
	// Steps 2-4 depend only on the locks of step 1, so they go in one
	// pipeline where the dialect has one; the counters' statement still
	// starts after the locks are held.
	var qs []Query
	inserted := map[nonceKey]bool{}
	for off, n := range chunks(len(nrows)) {
		args := make([]any, 0, 3*n)
		for _, nr := range nrows[off : off+n] {
			args = append(args, nr.key.expires, nr.key.nonce, nr.agentID)
		}
		qs = append(qs, Query{SQL: `INSERT INTO nonces (expires_at, nonce, agent_id) VALUES ` + valuesList(n, 3) + `
			ON CONFLICT (expires_at, nonce) DO NOTHING RETURNING expires_at, nonce`, Args: args, Row: func(sc Scanner) error {
			var k nonceKey
			if err := sc.Scan(&k.expires, &k.nonce); err != nil {
				return err
			}
			inserted[k] = true
			return nil
		}})
	}

	// 3. The spends under the callers' idempotency keys.
	var idem []any
	nidem := 0
	for _, r := range batch {
		if r.excluded || r.pre == nil || r.pre.IdempotencyKey == "" || b.keys[r.pre.Address] == nil {
			continue
		}
		k := idemKey{b.keys[r.pre.Address].agent.ID, r.pre.IdempotencyKey}
		if _, dup := b.idem[k]; dup {
			continue
		}
		b.idem[k] = ""
		idem = append(idem, k.agentID, k.key)
		nidem++
	}
	if nidem > 0 {
		size := pow2(nidem)
		idem = pad(idem, 2, size)
		qs = append(qs, Query{SQL: `SELECT agent_id, idempotency_key, id FROM spends
			WHERE idempotency_key IS NOT NULL AND (agent_id, idempotency_key) IN (VALUES ` + valuesList(size, 2) + `)`, Args: idem, Row: func(sc Scanner) error {
			var k idemKey
			var id string
			if err := sc.Scan(&k.agentID, &k.key, &id); err != nil {
				return err
			}
			b.idem[k] = id
			return nil
		}})
	}

	// 4. The budget counters of the windows named.
	var wins []any
	wseen := map[string]bool{}
	for _, r := range batch {
		if r.excluded || r.pre == nil {
			continue
		}
		for _, w := range r.pre.Windows {
			if !wseen[w] {
				wseen[w] = true
				wins = append(wins, w)
			}
		}
	}
	if len(wins) > 0 && len(wins) <= maxIn {
		for _, id := range agentIDs {
			for _, w := range wins {
				b.usageDB[usageKey{id.(string), w.(string)}] = new(big.Int)
			}
		}
		inA, sizeA := placeholders(len(agentIDs))
		inW, sizeW := placeholders(len(wins))
		qs = append(qs, Query{SQL: `SELECT agent_id, win, committed FROM budget_usage WHERE agent_id IN ` + inA + ` AND win IN ` + inW,
			Args: append(pad(agentIDs, 1, sizeA), pad(wins, 1, sizeW)...), Row: func(sc Scanner) error {
				var k usageKey
				var c string
				if err := sc.Scan(&k.agentID, &k.win, &c); err != nil {
					return err
				}
				v, ok := new(big.Int).SetString(c, 10)
				if !ok {
					return fmt.Errorf("budget counter %s/%s is not a number", k.agentID, k.win)
				}
				b.usageDB[k] = v
				return nil
			}})
	}
	if err := t.run(qs); err != nil {
		return nil, fmt.Errorf("sqlstore: prefetch nonces, idempotency keys and budget counters: %w", err)
	}
	for i, nr := range nrows {
		nr.fresh = inserted[nr.key]
		delete(inserted, nr.key) // a second caller of the same nonce is a replay
		b.nonces[nreqs[i]] = nr
	}
	return b, nil
}

// each runs a dialect query and calls scan for every row.
func (t *txn) each(query string, args []any, scan func(rows *sql.Rows) error) error {
	rows, err := t.query(query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// flush writes the batch's buffered spends and counters.
func (t *txn) flush(b *batchState) error {
	defer b.invalidate()
	qs, err := t.flushQueries(b)
	if err != nil {
		return err
	}
	if err := t.run(qs); err != nil {
		return fmt.Errorf("sqlstore: write buffered spends and counters: %w", err)
	}
	b.flushed()
	return nil
}

// flushQueries returns the multi-row statements that write the batch's
// buffered spends and counters; b.flushed forgets them once they ran.
func (t *txn) flushQueries(b *batchState) ([]Query, error) {
	var qs []Query
	for off, n := range chunks(len(b.spends)) {
		args := make([]any, 0, n*spendColCount)
		for _, sp := range b.spends[off : off+n] {
			a, err := spendArgs(sp)
			if err != nil {
				return nil, fmt.Errorf("sqlstore: create spends: %w", err)
			}
			args = append(args, a...)
		}
		qs = append(qs, Query{SQL: `INSERT INTO spends (` + spendCols + `) VALUES ` + valuesList(n, spendColCount), Args: args})
	}
	for off, n := range chunks(len(b.usage.order)) {
		args := make([]any, 0, 3*n)
		for _, k := range b.usage.order[off : off+n] {
			args = append(args, k.agentID, k.win, b.usage.vals[k].String())
		}
		qs = append(qs, Query{SQL: `INSERT INTO budget_usage (agent_id, win, committed) VALUES ` + valuesList(n, 3) + `
			ON CONFLICT (agent_id, win) DO UPDATE SET committed = excluded.committed`, Args: args})
	}
	return qs, nil
}

// flushed forgets the buffered writes flushQueries wrote.
func (b *batchState) flushed() {
	b.spends = nil
	clear(b.spendByID)
	clear(b.spendIdem)
	b.usage.reset()
}

// flushAll writes what the batch and this caller buffered, before a
// statement that must see it or may conflict with it.
func (t *txn) flushAll() error {
	b := t.b
	if b == nil {
		return nil
	}
	if !t.pend.empty() {
		t.wrote = true // part of this caller's work is now in the transaction
		b.merge(t)
	}
	return t.fail(t.flush(b))
}
